"""The model: an ONNX classifier with its own metadata, loaded once per process on first use.

The ONNX file carries everything the service needs in `metadata_props`: feature and class
names (which shape the requests and answers), training scores and a content-derived version.
"""

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from function.errors import ModelUnavailable, first_line
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


def load_model(uri: str, timeout: float) -> Model:
    """Fetch the model at `uri` and build its session; ModelUnavailable on any failure."""
    started = time.perf_counter()
    data = read_model_bytes(uri, timeout)
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
            f"cannot load model {uri}: not a valid ONNX model ({first_line(error)})"
        ) from error

    props = session.get_modelmeta().custom_metadata_map
    features = _name_list(props, FEATURES_KEY, uri)
    classes = _name_list(props, CLASSES_KEY, uri)
    input_name, input_dtype = _input(session, len(features), uri)
    output_name = _probability_output(session, uri)

    trial = session.run([output_name], {input_name: numpy.zeros((1, len(features)), input_dtype)})[0]
    if trial.shape != (1, len(classes)):
        raise ModelUnavailable(
            f"cannot load model {uri}: expected probabilities for {len(classes)} classes "
            f"{list(classes)} per row, got an output of shape {list(trial.shape)}"
        )

    version = props.get(VERSION_KEY) or hashlib.sha256(data).hexdigest()[:16]
    metadata = {
        "version": version,
        "uri": uri,
        "features": list(features),
        "classes": list(classes),
        "scores": json.loads(props.get(SCORES_KEY, "{}")),
        "sklearn_version": props.get(SKLEARN_VERSION_KEY),
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
    """Builds the model exactly once per process, on first use, however many callers race.

    A failed load is not cached: callers that were waiting on that attempt share its error,
    and the next caller after it tries again.
    """

    def __init__(self, load: Callable[[], Model]):
        self._load = load
        self._lock = threading.Lock()
        self._model: Model | None = None
        self._attempts = 0
        self._last_error: ModelUnavailable | None = None

    @property
    def loaded(self) -> Model | None:
        return self._model

    def get(self) -> Model:
        model = self._model
        if model is not None:
            return model
        attempts_seen = self._attempts
        with self._lock:
            if self._model is not None:
                return self._model
            if self._attempts != attempts_seen and self._last_error is not None:
                raise self._last_error
            try:
                self._model = self._load()
            except ModelUnavailable as error:
                self._last_error = error
                raise
            finally:
                self._attempts += 1
            self._last_error = None
            return self._model


def _name_list(props: Mapping[str, str], key: str, uri: str) -> tuple[str, ...]:
    raw = props.get(key)
    try:
        names = json.loads(raw) if raw is not None else None
    except ValueError:
        names = None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ModelUnavailable(
            f"cannot load model {uri}: expected metadata {key!r} as a JSON list of names "
            f"(written by `make train`), got {raw!r}"
        )
    return tuple(names)


def _input(session: Any, width: int, uri: str) -> tuple[str, str]:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelUnavailable(
            f"cannot load model {uri}: expected 1 input, got {len(inputs)}: "
            f"{[i.name for i in inputs]}"
        )
    (only,) = inputs
    dtype = _INPUT_DTYPES.get(only.type)
    shape = only.shape
    if dtype is None or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
        raise ModelUnavailable(
            f"cannot load model {uri}: expected a float input of shape [N, {width}] "
            f"for {width} features, got {only.type} of shape {shape}"
        )
    return only.name, dtype


def _probability_output(session: Any, uri: str) -> str:
    for output in session.get_outputs():
        if output.type in _INPUT_DTYPES and len(output.shape) == 2:
            return output.name
    raise ModelUnavailable(
        f"cannot load model {uri}: expected a float output of shape [N, classes] "
        f"(export with zipmap disabled), got "
        f"{[(o.name, o.type, o.shape) for o in session.get_outputs()]}"
    )

