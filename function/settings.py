"""The service's settings: read once from the environment when the app is built."""

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from function.errors import ConfigError
from function.storage import is_gcs_uri, parse_gcs_uri

DEFAULT_MODEL_URI = "artifacts/model.onnx"
DEFAULT_MAX_BATCH_ROWS = 1000
DEFAULT_MODEL_LOAD_TIMEOUT = 30.0
DEFAULT_MODEL_MAX_BYTES = 256 * 1024 * 1024
# The default most bytes of a request body; `MAX_BODY_BYTES` sets it.
MAX_BODY_BYTES = 1024 * 1024
# Cloud Run refuses an HTTP/1 request of more than 32 MiB before it reaches the service.
MAX_BODY_BYTES_CEILING = 32 * 1024 * 1024
# The most seconds a request's body may take to arrive once its headers have: see
# `Settings.body_read_timeout`.
DEFAULT_BODY_READ_TIMEOUT = 10.0
DEFAULT_PREDICTION_LOG_RATE = 0.0

T = TypeVar("T", int, float)

# Every variable the service reads, as the settings reference (docs/settings.md) lists it:
# (name, default, meaning). A test fails when from_env reads one that is not here.
REFERENCE = (
    ("MODEL_URI", f"`{DEFAULT_MODEL_URI}`", "`gs://bucket/object` or a local path to the ONNX model"),
    ("MAX_BATCH_ROWS", f"`{DEFAULT_MAX_BATCH_ROWS}`", "most rows in one batch request"),
    ("MODEL_LOAD_TIMEOUT", f"`{DEFAULT_MODEL_LOAD_TIMEOUT:g}`",
     "seconds the whole model fetch may take: connecting, the status line and headers, every "
     "retry and the body; for a local path (such as a Cloud Storage FUSE mount), the open and "
     "every read"),
    ("MODEL_MAX_BYTES", f"`{DEFAULT_MODEL_MAX_BYTES}` (256 MiB)",
     "largest model file accepted, local or in Cloud Storage; checked before the body is read; "
     "memory grows with the bytes read, not with the cap"),
    ("PREDICTION_LOG_RATE", "`0`",
     "fraction of answered predictions logged, each as one entry with the rows, the answers and "
     "the model's name and version (`0.01`: one in a hundred)"),
    ("MAX_BODY_BYTES", f"`{MAX_BODY_BYTES}` (1 MiB)",
     f"most bytes of a request body, at most {MAX_BODY_BYTES_CEILING} (Cloud Run's own limit); a "
     "larger body is a 413 (the infrastructure checks it with `CONCURRENCY` against the memory)"),
    ("BODY_READ_TIMEOUT", f"`{DEFAULT_BODY_READ_TIMEOUT:g}`",
     "seconds a body may take to arrive after its headers (the default 1 MiB arrives in 8.4 s at "
     "1 Mbit/s); a body that stops arriving is a 408 that closes the connection"),
    ("GOOGLE_CLOUD_PROJECT", "unset", "attaches the request's trace to log entries"),
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    model_uri: str = DEFAULT_MODEL_URI
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    # Bounds the whole fetch, retries included, so a cold request cannot hang on a dead bucket.
    model_load_timeout: float = DEFAULT_MODEL_LOAD_TIMEOUT
    # Checked before the file is read whole: /dev/zero or a huge object cannot fill the memory.
    model_max_bytes: int = DEFAULT_MODEL_MAX_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    # A body shorter than its Content-Length, or a chunked body that stalls, would otherwise
    # hold its request (and its share of the concurrency) until Cloud Run's request timeout.
    # Ten seconds: the default 1 MiB body arrives in that time at 1 Mbit/s, and a prediction's
    # body of a few hundred bytes arrives with its headers.
    body_read_timeout: float = DEFAULT_BODY_READ_TIMEOUT
    # The fraction of answered predictions logged with their rows, answers and model version.
    prediction_log_rate: float = DEFAULT_PREDICTION_LOG_RATE
    # Only used to attach Cloud Logging traces to log entries.
    project: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            model_uri=_model_uri(environ.get("MODEL_URI", "").strip() or DEFAULT_MODEL_URI),
            max_batch_rows=_positive_int(environ, "MAX_BATCH_ROWS", DEFAULT_MAX_BATCH_ROWS),
            model_load_timeout=_positive_float(
                environ, "MODEL_LOAD_TIMEOUT", DEFAULT_MODEL_LOAD_TIMEOUT
            ),
            model_max_bytes=_positive_int(environ, "MODEL_MAX_BYTES", DEFAULT_MODEL_MAX_BYTES),
            max_body_bytes=_number(
                environ, "MAX_BODY_BYTES", MAX_BODY_BYTES, int,
                lambda v: 1 <= v <= MAX_BODY_BYTES_CEILING,
                f"a whole number of bytes from 1 to {MAX_BODY_BYTES_CEILING} (Cloud Run's own "
                "limit on a request)",
            ),  # fmt: skip
            body_read_timeout=_positive_float(
                environ, "BODY_READ_TIMEOUT", DEFAULT_BODY_READ_TIMEOUT
            ),
            prediction_log_rate=_fraction(
                environ, "PREDICTION_LOG_RATE", DEFAULT_PREDICTION_LOG_RATE
            ),
            project=environ.get("GOOGLE_CLOUD_PROJECT") or None,
        )


def _model_uri(value: str) -> str:
    if is_gcs_uri(value):
        try:
            parse_gcs_uri(value)
        except ValueError as error:
            raise ConfigError(f"MODEL_URI: {error}") from None
    return value


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    return _number(environ, name, default, int, lambda v: v >= 1, "a positive whole number")


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    return _number(
        environ, name, default, float, lambda v: math.isfinite(v) and v > 0,
        "a positive number of seconds",
    )  # fmt: skip


def _fraction(environ: Mapping[str, str], name: str, default: float) -> float:
    # NaN fails the comparison too.
    return _number(
        environ, name, default, float, lambda v: 0 <= v <= 1, "a fraction from 0 to 1, such as 0.01"
    )


def _number(
    environ: Mapping[str, str],
    name: str,
    default: T,
    parse: Callable[[str], T],
    acceptable: Callable[[T], bool],
    expected: str,
) -> T:
    """The variable parsed, or its default when unset; ConfigError naming it when unacceptable."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not acceptable(value):
        raise ConfigError(f"{name}: expected {expected}, got {raw!r}")
    return value
