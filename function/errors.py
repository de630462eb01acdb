"""Every failure the service reports, each with its HTTP status.

One handler (`function.app`) renders any `ServiceError` as `{"error": message}`.
"""

import math
from collections.abc import Iterable, Sequence

# The most characters of a received value any message quotes: an error never echoes a body back.
PREVIEW_CHARS = 60


class ServiceError(Exception):
    """Base class: `status` is the HTTP status the client receives."""

    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    status = 400


class NotFound(ServiceError):
    status = 404


class MethodNotAllowed(ServiceError):
    status = 405

    def __init__(self, message: str, *, allowed: tuple[str, ...]):
        super().__init__(message, headers={"Allow": ", ".join(allowed)})


class PayloadTooLarge(ServiceError):
    """The connection is closed after the answer: the rest of an oversized body is never read."""

    status = 413

    def __init__(self, message: str):
        super().__init__(message, headers={"Connection": "close"})


class RequestTimeout(ServiceError):
    """The body did not arrive in time; the connection is closed, as its rest may never come."""

    status = 408

    def __init__(self, message: str):
        super().__init__(message, headers={"Connection": "close"})


class UnsupportedMediaType(ServiceError):
    status = 415


class UnprocessableEntity(ServiceError):
    """Well-formed input the model cannot answer, such as values so large its output overflows."""

    status = 422


# The kinds of load failure a client may learn; the details stay in the log.
NOT_FOUND = "not found"
PERMISSION_DENIED = "permission denied"
TIMEOUT = "timeout"
INVALID_MODEL = "invalid model"
TOO_LARGE = "too large"
UNREACHABLE = "storage unreachable"
STORAGE_ERROR = "storage error"


class ModelUnavailable(ServiceError):
    """The model cannot be loaded now.

    `str(error)` is the full cause with the model's URI, for the log; `message`, which clients
    see, names only the kind of cause, since the URI and the libraries' text describe the
    deployment. `retry_after` is set once the loader has decided when it tries again.
    """

    status = 503

    def __init__(self, detail: str, *, kind: str, retry_after: float | None = None):
        message = f"the model is unavailable ({kind})"
        headers = {}
        if retry_after is not None:
            seconds = max(1, math.ceil(retry_after))
            message += f"; next attempt in {seconds} s"
            headers["Retry-After"] = str(seconds)
        super().__init__(message, headers=headers)
        self.args = (detail,)
        self.detail = detail
        self.kind = kind
        self.retry_after = retry_after

    def retrying_in(self, seconds: float) -> "ModelUnavailable":
        return ModelUnavailable(self.detail, kind=self.kind, retry_after=seconds)


class ConfigError(ValueError):
    """A setting is invalid: raised at start-up, naming the variable and its value."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's text, for one-line error messages."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def cut(text: str, limit: int = PREVIEW_CHARS) -> str:
    """`text`, shortened to `limit` characters with "..." when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quoted(text: str) -> str:
    """`repr` of a received string, cut to a preview."""
    return repr(text) if len(text) <= PREVIEW_CHARS else repr(text[: PREVIEW_CHARS - 3]) + "..."


def quoted_names(names: Iterable[object]) -> str:
    """Received names as Python shows a list, `['a', 'b']`, cut short after a preview's worth."""
    parts: list[str] = []
    size = 0
    for name in names:
        if size > PREVIEW_CHARS:
            parts.append("...")
            break
        part = quoted(name) if type(name) is str else cut(repr(name))
        parts.append(part)
        size += len(part) + 2
    return "[" + ", ".join(parts) + "]"


def name_mismatch(expected: Sequence[str], received: Iterable[str]) -> str:
    """`missing [...]; unexpected [...]`: how the received names differ from the expected ones."""
    # Sets: a body may carry a hundred thousand names, a model hundreds of features.
    received = list(received)
    received_set, expected_set = set(received), set(expected)
    missing = [name for name in expected if name not in received_set]
    unexpected = [name for name in received if name not in expected_set]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if unexpected:
        parts.append(f"unexpected {quoted_names(unexpected)}")
    return "; ".join(parts)
