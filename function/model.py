"""The model: an ONNX classifier with its own metadata, loaded once per process on first use.

The ONNX file carries everything the service needs in `metadata_props`: feature and class
names (which shape the requests and answers), training scores and a content-derived version.
"""

import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from function.errors import INVALID_MODEL, ModelUnavailable, first_line, quoted
from function.schema import INSTANCES_KEY
from function.settings import DEFAULT_MODEL_MAX_BYTES
from function.storage import read_model_bytes

# Keys of the ONNX metadata_props written by `training.train` and read here.
FEATURES_KEY = "feature_names"
CLASSES_KEY = "class_names"
SCORES_KEY = "scores"
SKLEARN_VERSION_KEY = "sklearn_version"
VERSION_KEY = "model_version"

# numpy and onnxruntime are imported by the first load, not by main.py: functions-framework's
# arbiter process imports main.py too, and never serves.
_INPUT_DTYPES = {"tensor(double)": "float64", "tensor(float)": "float32"}
# After a failed load: no attempt for 1 s, doubling to 30 s (with jitter), far below the 240 s
# Cloud Run's startup probe allows, so a bucket that comes back is noticed in time.
FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 30.0
# The version goes into a response header: printable ASCII, no leading or trailing space.
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")


@dataclass(frozen=True)
class Model:
    session: Any = field(repr=False)
    uri: str
    version: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    metadata: Mapping[str, Any]
    input_name: str
    output_name: str
    input_dtype: Any  # a numpy dtype
    array: Callable[..., Any] = field(repr=False)  # numpy.array, imported with the first load
    load_seconds: float
    # Passing RunOptions spares onnxruntime's wrapper a per-call lookup: 19 -> 11 us a call here.
    run_options: Any = field(repr=False)

    def predict_proba(self, rows: list[list[float]]) -> Any:
        """Class probabilities (a numpy array), one row per input row, columns in `classes` order."""
        matrix = self.array(rows, dtype=self.input_dtype)
        return self.session.run([self.output_name], {self.input_name: matrix}, self.run_options)[0]


def load_model(uri: str, timeout: float, max_bytes: int = DEFAULT_MODEL_MAX_BYTES) -> Model:
    """Fetch the model at `uri` and build its session; ModelUnavailable on any failure."""
    started = time.perf_counter()
    data = read_model_bytes(uri, timeout, max_bytes)
    return model_from_bytes(data, uri, started=started)


def model_from_bytes(data: bytes, uri: str, *, started: float | None = None) -> Model:
    started = time.perf_counter() if started is None else started
    import numpy
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One vCPU per Cloud Run instance: extra threads only contend with the event loop.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load model {uri}: not a valid ONNX model ({first_line(error)})",
            kind=INVALID_MODEL,
        ) from error

    props = session.get_modelmeta().custom_metadata_map
    features = _name_list(props, FEATURES_KEY, uri)
    classes = _name_list(props, CLASSES_KEY, uri)
    input_name, input_dtype = _input(session, len(features), uri)
    output_name = _probability_output(session, uri)

    try:
        trial = session.run(
            [output_name], {input_name: numpy.zeros((1, len(features)), input_dtype)}
        )[0]
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load model {uri}: the model fails on a row of zeros ({first_line(error)})",
            kind=INVALID_MODEL,
        ) from error
    if trial.shape != (1, len(classes)):
        raise ModelUnavailable(
            f"cannot load model {uri}: expected probabilities for {len(classes)} classes "
            f"{list(classes)} per row, got an output of shape {list(trial.shape)}",
            kind=INVALID_MODEL,
        )

    version = _header_safe(props, VERSION_KEY, uri) or hashlib.sha256(data).hexdigest()[:16]
    metadata = {
        "version": version,
        "uri": uri,
        "features": list(features),
        "classes": list(classes),
        "scores": _scores(props, uri),
        "sklearn_version": _header_safe(props, SKLEARN_VERSION_KEY, uri),
    }
    return Model(
        session=session,
        uri=uri,
        version=version,
        features=features,
        classes=classes,
        metadata=metadata,
        input_name=input_name,
        output_name=output_name,
        input_dtype=numpy.dtype(input_dtype),
        array=numpy.array,
        load_seconds=time.perf_counter() - started,
        run_options=onnxruntime.RunOptions(),
    )


class LazyModel:
    """Builds the model once per process, on first use, however many callers race.

    One attempt runs at a time, in its own thread, and every caller that arrives meanwhile
    shares its outcome. After a failure no attempt starts for a back-off that doubles from
    FIRST_RETRY_SECONDS to LONGEST_RETRY_SECONDS, with jitter so that instances spread out;
    callers in that time get the last error at once, with the seconds until the next attempt.
    """

    def __init__(self, load: Callable[..., Model], clock: Callable[[], float] = time.monotonic):
        self._load = load
        self._clock = clock
        self._lock = threading.Lock()
        self._model: Model | None = None
        self._attempt: Future | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._last_error: ModelUnavailable | None = None

    @property
    def loaded(self) -> Model | None:
        return self._model

    def attempt(self, *args: Any) -> Future:
        """A future of the model: done if loaded, else the attempt under way, started now if
        due (passing `args` to the loader). In back-off, raises the last error instead."""
        with self._lock:
            if self._attempt is not None:
                return self._attempt
            future: Future = Future()
            if self._model is not None:
                future.set_result(self._model)
                return future
            wait = self._next_attempt - self._clock()
            if wait > 0 and self._last_error is not None:
                raise self._last_error.retrying_in(wait)
            # Running, so that a waiter giving up (asyncio cancels what it wraps) cannot cancel it.
            future.set_running_or_notify_cancel()
            self._attempt = future
        threading.Thread(target=self._run, args=(future, args), name="model-load", daemon=True).start()
        return future

    def get(self, *args: Any) -> Model:
        """The model, waiting for the attempt if one is needed; ModelUnavailable otherwise."""
        return self.attempt(*args).result()

    def _run(self, future: Future, args: tuple) -> None:
        try:
            model = self._load(*args)
        except BaseException as error:  # the waiters must learn the outcome, whatever it is
            if not isinstance(error, ModelUnavailable):
                error = ModelUnavailable(
                    f"cannot load model: {type(error).__name__}: {first_line(error)}",
                    kind=INVALID_MODEL,
                )
            with self._lock:
                self._failures += 1
                longest = min(LONGEST_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** min(self._failures - 1, 30))
                delay = longest / 2 + random.uniform(0, longest / 2)
                self._next_attempt = self._clock() + delay
                self._last_error = error
                self._attempt = None
            future.set_exception(error.retrying_in(delay))
            return
        with self._lock:
            self._model = model
            self._failures = 0
            self._last_error = None
            self._attempt = None
        future.set_result(model)


def _name_list(props: Mapping[str, str], key: str, uri: str) -> tuple[str, ...]:
    raw = props.get(key)
    try:
        names = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        names = None
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise ModelUnavailable(
            f"cannot load model {uri}: expected metadata {key!r} as a JSON list of names "
            f"(written by `make train`), got {quoted(raw) if raw is not None else None}",
            kind=INVALID_MODEL,
        )
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ModelUnavailable(
            f"cannot load model {uri}: expected distinct names in metadata {key!r}, "
            f"got {duplicates} more than once",
            kind=INVALID_MODEL,
        )
    if key == FEATURES_KEY and INSTANCES_KEY in names:
        raise ModelUnavailable(
            f"cannot load model {uri}: expected feature names other than {INSTANCES_KEY!r} "
            f"in metadata {key!r}, which marks a batch in requests",
            kind=INVALID_MODEL,
        )
    return tuple(names)


def _header_safe(props: Mapping[str, str], key: str, uri: str) -> str | None:
    raw = props.get(key)
    if raw is None or _HEADER_SAFE.fullmatch(raw):
        return raw
    raise ModelUnavailable(
        f"cannot load model {uri}: expected metadata {key!r} as 1 to 128 printable ASCII "
        f"characters without leading or trailing spaces, got {quoted(raw)}",
        kind=INVALID_MODEL,
    )


def _scores(props: Mapping[str, str], uri: str) -> dict[str, float]:
    raw = props.get(SCORES_KEY)
    if raw is None:
        return {}
    try:
        scores = json.loads(raw)
    except (ValueError, RecursionError):
        scores = None
    if not (
        isinstance(scores, dict)
        and all(
            type(value) in (int, float) and math.isfinite(value) for value in scores.values()
        )
    ):
        raise ModelUnavailable(
            f"cannot load model {uri}: expected metadata {SCORES_KEY!r} as a JSON object of "
            f"finite numbers, got {quoted(raw)}",
            kind=INVALID_MODEL,
        )
    return scores


def _input(session: Any, width: int, uri: str) -> tuple[str, str]:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelUnavailable(
            f"cannot load model {uri}: expected 1 input, got {len(inputs)}: "
            f"{[i.name for i in inputs]}",
            kind=INVALID_MODEL,
        )
    (only,) = inputs
    dtype = _INPUT_DTYPES.get(only.type)
    shape = only.shape
    if dtype is None or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
        raise ModelUnavailable(
            f"cannot load model {uri}: expected a float input of shape [N, {width}] "
            f"for {width} features, got {only.type} of shape {shape}",
            kind=INVALID_MODEL,
        )
    return only.name, dtype


def _probability_output(session: Any, uri: str) -> str:
    for output in session.get_outputs():
        if output.type in _INPUT_DTYPES and len(output.shape) == 2:
            return output.name
    raise ModelUnavailable(
        f"cannot load model {uri}: expected a float output of shape [N, classes] "
        f"(export with zipmap disabled), got "
        f"{[(o.name, o.type, o.shape) for o in session.get_outputs()]}",
        kind=INVALID_MODEL,
    )

