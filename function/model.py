"""The model: an ONNX graph with its own signature, loaded once per process on first use.

The ONNX file carries everything the service needs in `metadata_props` (see
`function.signature`): the features with their types, the task, the classes, training scores and
a content-derived version. The signature is checked against the graph's inputs and outputs when
the file loads, and a trial run on the example row checks the answer's shape; any mismatch fails
the load. The model answers a `Batch` with a `Prediction` and knows nothing of HTTP.
"""

import dataclasses
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

from function.errors import (
    INVALID_MODEL,
    ModelUnavailable,
    ServiceError,
    UnprocessableEntity,
    cut,
    first_line,
    quoted,
)
from function.settings import DEFAULT_MODEL_MAX_BYTES
from function.signature import (
    CLASSES_KEY,
    CLASSIFICATION,
    DEFAULT_MODEL_NAME,
    FEATURES_KEY,
    FLOAT32,
    FLOAT64,
    NAME_KEY,
    SCORES_KEY,
    SKLEARN_VERSION_KEY,
    STRING,
    TEXT_PLACEHOLDER,
    TYPED_FEATURES_KEY,
    VERSION_KEY,
    Batch,
    Feature,
    Prediction,
    Signature,
    checked_example,
    parse_example,
    read_signature,
)
from function.storage import read_model_bytes

__all__ = [  # the metadata keys are imported from here by the exporter and its tests
    "CLASSES_KEY",
    "FEATURES_KEY",
    "SCORES_KEY",
    "SKLEARN_VERSION_KEY",
    "VERSION_KEY",
    "LazyModel",
    "Model",
    "load_model",
    "model_from_bytes",
]

# numpy and onnxruntime are imported by the first load, not by main.py: functions-framework's
# arbiter process imports main.py too, and never serves.
_NUMERIC_TYPES = {"tensor(double)": FLOAT64, "tensor(float)": FLOAT32}
_STRING_TYPE = "tensor(string)"
# The names `training.export` gives the graph's outputs; other files are matched by shape.
PROBABILITIES_OUTPUT = "probabilities"
PREDICTION_OUTPUT = "prediction"
# After a failed load: no attempt for 1 s, doubling to 30 s (with jitter), far below the 240 s
# Cloud Run's startup probe allows, so a bucket that comes back is noticed in time.
FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 30.0
# Name and version go into response headers and paths: printable ASCII, no outer spaces.
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")
# The name is one segment of some routes' paths.
_PATH_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Model:
    session: Any = field(repr=False)
    uri: str
    signature: Signature
    # Either one matrix input for every feature (`matrix_input`), or one [N, 1] input per
    # feature, named as the feature (`column_inputs`: (name, numpy dtype) in feature order).
    matrix_input: str | None
    input_dtype: Any  # the matrix's numpy dtype
    column_inputs: tuple[tuple[str, Any], ...]
    output_name: str
    array: Callable[..., Any] = field(repr=False)  # numpy.array, imported with the first load
    load_seconds: float
    # Passing RunOptions spares onnxruntime's wrapper a per-call lookup: 19 -> 11 us a call here.
    run_options: Any = field(repr=False)
    # The signature's answers to what every prediction asks, kept at hand: a microsecond a call.
    _class_names: tuple[str, ...] | None = field(default=None, init=False, repr=False)
    _output_dtype: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        classifier = self.signature.task == CLASSIFICATION
        object.__setattr__(self, "_class_names", self.signature.classes if classifier else None)
        object.__setattr__(self, "_output_dtype", self.signature.output_dtype)

    @property
    def version(self) -> str:
        return self.signature.version

    @property
    def name(self) -> str:
        return self.signature.name

    @property
    def features(self) -> tuple[str, ...]:
        return self.signature.feature_names

    @property
    def classes(self) -> tuple[str, ...]:
        return self.signature.classes

    @property
    def metadata(self) -> dict[str, Any]:
        """What clients may learn of the model: its name, version and signature. Never its
        URI: a `gs://` bucket and path describe the deployment, and stay in the log."""
        return self.signature.describe()

    def predict(self, batch: Batch) -> Prediction:
        """The answer to every row of `batch`; UnprocessableEntity, naming the first row, when
        the graph's answer for it is not finite."""
        output = self.run(batch.rows)
        if len(output) == 1:
            # NaN and infinity propagate through a sum, so one sum checks the whole answer: in
            # Python for one row (a third of numpy's cost there), in numpy for a batch.
            answers = output.tolist()
            return self.prediction(answers, batch, math.isfinite(sum(answers[0])))
        finite = math.isfinite(output.sum())
        if finite and self._class_names is not None:
            output.clip(0.0, 1.0, out=output)  # as `prediction` does for one row
        return self.prediction(output.tolist(), batch, finite)

    def prediction(self, answers: list[list[float]], batch: Batch, finite: bool) -> Prediction:
        """The `Prediction` of `batch` from the graph's rows of output (`run(...).tolist()`);
        `finite`: whether the caller found every number finite, else the first row that is not
        is refused."""
        if not finite:
            _refuse_non_finite(answers, batch, self.signature.task)
        classes = self._class_names
        if classes is not None:
            if len(answers) == 1:
                row = answers[0]
                top = max(row)
                # A float32 forest's sum of tree votes lands a rounding step outside [0, 1]
                # (1.0000001, and -1.2e-7 for its complement), which no probability can be.
                # Checked after the finite check, so that no infinity passes as a 1.
                if top > 1.0 or min(row) < 0.0:
                    answers = [[min(max(p, 0.0), 1.0) for p in row]]
                return Prediction([classes[row.index(top)]], answers, None, self._output_dtype)
            labels = [classes[row.index(max(row))] for row in answers]
            return Prediction(labels, answers, None, self._output_dtype)
        return Prediction(None, None, [row[0] for row in answers], self._output_dtype)

    def predict_proba(self, rows: list[list[float]]) -> Any:
        """A classifier's probabilities (a numpy array) for rows of values in feature order."""
        return self.run(rows)

    def run(self, rows: list[list[Any]]) -> Any:
        """The graph's output for rows of values in feature order: a numpy array of one row per
        row. Each model input is stacked from its column of the rows."""
        if self.matrix_input is not None:
            feeds = {self.matrix_input: self.array(rows, dtype=self.input_dtype)}
        else:
            feeds = self._column_feeds(rows)
        output = self.session.run([self.output_name], feeds, self.run_options)[0]
        if len(output) != len(rows):
            # Answers paired with rows by position would go to the wrong requests, or to none.
            raise RuntimeError(
                f"the model answered {len(output)} rows of output to {len(rows)} rows of input"
            )
        # A regressor's graph may give [N] rather than [N, 1].
        return output.reshape(-1, 1) if output.ndim == 1 else output

    def _column_feeds(self, rows: list[list[Any]]) -> dict[str, Any]:
        return {
            name: self.array([row[index] for row in rows], dtype=dtype).reshape(-1, 1)
            for index, (name, dtype) in enumerate(self.column_inputs)
        }


def _refuse_non_finite(output: list, batch: Batch, task: str) -> None:
    what = "finite probabilities" if task == CLASSIFICATION else "a finite prediction"
    for index, row in enumerate(output):
        if not all(map(math.isfinite, row if type(row) is list else [row])):
            where = "the row" if batch.single else batch.row_label.format(index)
            raise UnprocessableEntity(
                f"{where}: expected the model to give {what}, got {cut(str(row))}; "
                "the features are probably far outside the range it was trained on"
            )


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
    version = _version(props, uri) or hashlib.sha256(data).hexdigest()[:16]
    signature = dataclasses.replace(
        read_signature(props, uri, version),
        name=_path_safe(props, NAME_KEY, uri) or DEFAULT_MODEL_NAME,
        scores=_scores(props, uri),
        sklearn_version=_header_safe(props, SKLEARN_VERSION_KEY, uri),
    )
    matrix_input, column_inputs, features = _inputs(session, signature.features, uri)
    output_name, output_dtype = _output(session, signature, uri)
    signature = dataclasses.replace(signature, features=features, output_dtype=output_dtype)
    signature = _with_example(signature, parse_example(props), uri)
    model = Model(
        session=session,
        uri=uri,
        signature=signature,
        matrix_input=matrix_input,
        input_dtype=numpy.dtype(features[0].dtype) if matrix_input is not None else None,
        column_inputs=tuple(
            (name, numpy.dtype(object if feature.type == STRING else feature.dtype))
            for name, feature in zip(column_inputs, features)
        ),
        output_name=output_name,
        array=numpy.array,
        load_seconds=0.0,
        run_options=onnxruntime.RunOptions(),
    )
    answer = _trial(model, uri)
    return dataclasses.replace(
        model,
        signature=dataclasses.replace(signature, example_answer=answer),
        load_seconds=time.perf_counter() - started,
    )


def _with_example(signature: Signature, example: Any, uri: str) -> Signature:
    """The file's example when it is a valid request, else typed placeholders, with a warning."""
    if example is not None:
        try:
            row = checked_example(example, signature.features)
        except ServiceError as error:
            from function._log import log

            log(
                "WARNING",
                f"model {uri}: its example row is not a valid request ({error.message}); "
                "the documentation shows typed placeholders instead",
                model_uri=uri,
            )
        else:
            return dataclasses.replace(signature, example=row, example_is_placeholder=False)
    row = {feature.name: feature.placeholder() for feature in signature.features}
    return dataclasses.replace(signature, example=row, example_is_placeholder=True)


def _trial(model: Model, uri: str) -> Prediction:
    """The answer to the example row: proves the graph runs and answers in the declared shape."""
    signature = model.signature
    row = signature.example_row()
    try:
        output = model.run([row])
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load model {uri}: the model fails on the example row "
            f"{cut(str(signature.example))} ({first_line(error)})",
            kind=INVALID_MODEL,
        ) from error
    if signature.task == CLASSIFICATION:
        if output.shape != (1, len(signature.classes)):
            raise ModelUnavailable(
                f"cannot load model {uri}: expected probabilities for {len(signature.classes)} "
                f"classes {list(signature.classes)} per row, got an output of shape "
                f"{list(output.shape)}",
                kind=INVALID_MODEL,
            )
    elif output.size != 1:
        raise ModelUnavailable(
            f"cannot load model {uri}: expected one prediction per row, got an output of shape "
            f"{list(output.shape)}",
            kind=INVALID_MODEL,
        )
    if not math.isfinite(output.sum()):
        # Served, such a model would answer every request with a 422 that blames its rows.
        raise ModelUnavailable(
            f"cannot load model {uri}: expected finite numbers from the model on the example row "
            f"{cut(str(signature.example))}, got {cut(str(output.tolist()[0]))}: the model is "
            "broken (are its fitted parameters NaN or infinite?)",
            kind=INVALID_MODEL,
        )
    # Rows are stacked into one run (a batch, or concurrent requests), so each must get its own
    # row of output: a graph of a fixed batch of 1, or one that reduces over the rows, does not.
    try:
        model.run([row, row])  # `run` refuses an answer of another number of rows
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load model {uri}: expected the model to answer each of 2 rows run together "
            f"(the example row twice), got {first_line(error)}: export it with a dynamic first "
            "dimension, one row of output per row of input",
            kind=INVALID_MODEL,
        ) from error
    _check_categories(model, row, uri)
    return model.predict(Batch([row], single=True))


def _check_categories(model: Model, row: list[Any], uri: str) -> None:
    """Every category the metadata lists passes the request's checks, and any string does for a
    string feature listed without categories, so the graph must take them: one run of the
    example row with each in turn, then one by one to name the first the graph refuses."""
    variants, origins = [], []
    for index, feature in enumerate(model.signature.features):
        if feature.categories is not None:
            values = feature.categories
        elif feature.type == STRING:
            values = (TEXT_PLACEHOLDER,)
        else:
            continue
        for value in values:
            variant = list(row)
            variant[index] = feature.accept(value, "")
            variants.append(variant)
            origins.append((feature, value))
    if not variants:
        return
    try:
        model.run(variants)
        return
    except Exception:
        pass
    for variant, (feature, value) in zip(variants, origins):
        try:
            model.run([variant])
        except Exception as error:
            shown = quoted(value) if type(value) is str else repr(value)
            promise = (
                f"lists {shown} among the categories of {feature.name!r}"
                if feature.categories is not None
                else f"lists no categories: it takes any string for {feature.name!r}"
            )
            raise ModelUnavailable(
                f"cannot load model {uri}: metadata {TYPED_FEATURES_KEY!r} {promise}, but the "
                f"model fails on {shown} ({first_line(error)})",
                kind=INVALID_MODEL,
            ) from error


def _inputs(
    session: Any, features: tuple[Feature, ...], uri: str
) -> tuple[str | None, tuple[str, ...], tuple[Feature, ...]]:
    """(matrix input or None, column inputs in feature order, features with their dtypes)."""
    inputs = session.get_inputs()
    names = [f.name for f in features]
    found = [(i.name, i.type, i.shape) for i in inputs]
    by_name = {i.name: i for i in inputs}
    if len(inputs) == len(features) and set(by_name) == set(names):
        typed = []
        for feature in features:
            graph_input = by_name[feature.name]
            dtype = _NUMERIC_TYPES.get(graph_input.type)
            fits = graph_input.type == _STRING_TYPE if feature.type == STRING else dtype is not None
            shape = graph_input.shape
            if not fits or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != 1):
                wanted = (
                    "tensor(string)"
                    if feature.type == STRING
                    else "tensor(float) or tensor(double)"
                )
                raise ModelUnavailable(
                    f"cannot load model {uri}: feature {feature.name!r} is a {feature.type} in the "
                    f"metadata: expected a {wanted} input of shape [N, 1], got "
                    f"{graph_input.type} of shape {shape}",
                    kind=INVALID_MODEL,
                )
            typed.append(dataclasses.replace(feature, dtype=dtype or FLOAT64))
        return None, tuple(names), tuple(typed)
    if len(inputs) == 1:
        (only,) = inputs
        dtype = _NUMERIC_TYPES.get(only.type)
        shape = only.shape
        width = len(features)
        strings = [f.name for f in features if f.type == STRING]
        if strings:
            raise ModelUnavailable(
                f"cannot load model {uri}: string features {strings} need one input each, named "
                f"as the feature; expected inputs {names}, got {found}",
                kind=INVALID_MODEL,
            )
        if dtype is None or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
            raise ModelUnavailable(
                f"cannot load model {uri}: expected a float input of shape [N, {width}] "
                f"for {width} features, got {only.type} of shape {shape}",
                kind=INVALID_MODEL,
            )
        return only.name, (), tuple(dataclasses.replace(f, dtype=dtype) for f in features)
    raise ModelUnavailable(
        f"cannot load model {uri}: expected one input of shape [N, {len(features)}], or one "
        f"input per feature named as the features {names}, got {cut(str(found), 240)}",
        kind=INVALID_MODEL,
    )


def _output(session: Any, signature: Signature, uri: str) -> tuple[str, str]:
    outputs = session.get_outputs()
    numeric = [o for o in outputs if o.type in _NUMERIC_TYPES]
    if signature.task == CLASSIFICATION:
        named = [o for o in numeric if o.name == PROBABILITIES_OUTPUT]
        candidates = named or [o for o in numeric if len(o.shape) == 2]
        wanted = "a float output of shape [N, classes] (export with zipmap disabled)"
    else:
        named = [o for o in numeric if o.name == PREDICTION_OUTPUT]
        candidates = named or (numeric if len(outputs) == 1 else [])
        wanted = f"a float output {PREDICTION_OUTPUT!r} of shape [N, 1]"
    if not candidates:
        raise ModelUnavailable(
            f"cannot load model {uri}: a {signature.task} model: expected {wanted}, got "
            f"{cut(str([(o.name, o.type, o.shape) for o in outputs]), 240)}",
            kind=INVALID_MODEL,
        )
    chosen = candidates[0]
    return chosen.name, _NUMERIC_TYPES[chosen.type]


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
        loading = threading.Thread(target=self._run, args=(future, args), daemon=True)
        loading.start()
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
                doubled = FIRST_RETRY_SECONDS * 2 ** min(self._failures - 1, 30)
                longest = min(LONGEST_RETRY_SECONDS, doubled)
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


def _header_safe(props: Mapping[str, str], key: str, uri: str) -> str | None:
    raw = props.get(key)
    if raw is None or _HEADER_SAFE.fullmatch(raw):
        return raw
    raise ModelUnavailable(
        f"cannot load model {uri}: expected metadata {key!r} as 1 to 128 printable ASCII "
        f"characters without leading or trailing spaces, got {quoted(raw)}",
        kind=INVALID_MODEL,
    )


def _version(props: Mapping[str, str], uri: str) -> str | None:
    """The version goes into a header and, as one segment, into the V2 routes' paths: a '/'
    would split it, and clients drop a '.' or '..' segment, so its route would never match."""
    version = _header_safe(props, VERSION_KEY, uri)
    if version is not None and ("/" in version or version in (".", "..")):
        raise ModelUnavailable(
            f"cannot load model {uri}: expected metadata {VERSION_KEY!r} to be one segment of a "
            f"URL path (no '/', not '.' or '..'), got {quoted(version)}",
            kind=INVALID_MODEL,
        )
    return version


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


def _path_safe(props: Mapping[str, str], key: str, uri: str) -> str | None:
    raw = props.get(key)
    if raw is None or _PATH_SAFE.fullmatch(raw):
        return raw
    raise ModelUnavailable(
        f"cannot load model {uri}: expected metadata {key!r} as 1 to 128 letters, digits, '.', "
        f"'_' or '-', starting with a letter or digit (it is part of URLs), got {quoted(raw)}",
        kind=INVALID_MODEL,
    )
