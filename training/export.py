"""Export a fitted scikit-learn estimator or pipeline to ONNX, checked against scikit-learn first.

    .venv/bin/python -m training.export --estimator FILE --sample CSV --out FILE.onnx --name NAME

The file carries its own description in `metadata_props` (name, task, typed features with their
known categories, classes, scores, versions), which is what the service reads; nothing is written
unless onnxruntime answers as scikit-learn does on every sample row.
"""

import argparse
import hashlib
import json
import math
import re
import shlex
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import sklearn
from skl2onnx import convert_sklearn

# The registry of converters by class (update_registered_converter adds to it); the public
# supported_converters() lists aliases such as SklearnLinearClassifier, not the classes.
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
from sklearn.base import is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from function.errors import ModelUnavailable

# The keys and words of the file's metadata: the service reads them, so it defines them.
from function.model import (
    CLASSES_KEY,
    FEATURES_KEY,
    SCORES_KEY,
    SKLEARN_VERSION_KEY,
    VERSION_KEY,
    model_from_bytes,
)
from function.signature import (
    CLASSIFICATION,
    EXAMPLE_KEY,
    MODEL_NAME_PATTERN,
    NAME_KEY,
    NUMBER,
    REGRESSION,
    STRING,
    TASK_KEY,
    TYPED_CLASSES_KEY,
    TYPED_FEATURES_KEY,
)


# Every numeric feature in one matrix, as the iris model has always been served.
SINGLE_INPUT = "input"
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
PREDICTION_OUTPUT = "prediction"
PROBABILITY_TOLERANCE = 1e-5
RELATIVE_TOLERANCE = 1e-4

_ELEMENT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}
# Steps whose graph is affine end to end. onnxruntime runs these in double; tree, ensemble and
# imputer operators only in float, so any other step makes the whole graph float32.
_LINEAR_STEPS = (StandardScaler, MinMaxScaler, MaxAbsScaler)
_ENCODERS = (OneHotEncoder, OrdinalEncoder)


class ExportError(Exception):
    """The estimator or its sample cannot be exported as asked; nothing is written."""


class UnsupportedEstimator(ExportError):
    """A step skl2onnx cannot convert, or converts into a graph that answers wrongly."""


class ParityError(ExportError):
    """onnxruntime and scikit-learn answer differently on a sample row."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # NUMBER or STRING
    # What an encoder learned for the column: strings, or numbers for codes such as zones.
    categories: tuple[str, ...] | tuple[int | float, ...] | None = None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.categories is not None:
            described["categories"] = list(self.categories)
        return described


@dataclass(frozen=True)
class Parity:
    rows: int
    gap: float  # largest probability difference, or largest relative prediction difference


@dataclass(frozen=True)
class Exported:
    data: bytes
    version: str
    task: str
    features: tuple[Feature, ...]
    parity: Parity


def check_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name):
        raise ExportError(
            f"name: expected 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a "
            f"letter or digit (it becomes part of a storage path and a URL), got {name!r}"
        )
    return name


def sample_frame(sample: Any, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The sample as a DataFrame with one column per feature: numbers as float64, text as str."""
    if isinstance(sample, pd.DataFrame):
        if feature_names is not None and list(feature_names) != [str(c) for c in sample.columns]:
            raise ExportError(
                f"feature_names: expected the DataFrame's own columns {list(sample.columns)}, "
                f"got {list(feature_names)}"
            )
        frame = sample.copy()
    else:
        array = np.asarray(sample)
        if array.ndim != 2:
            raise ExportError(
                f"sample: expected a table of rows, got an array of shape {list(array.shape)}"
            )
        if feature_names is None:
            raise ExportError(
                f"feature_names: a NumPy sample needs its {array.shape[1]} column names, got none"
            )
        if len(feature_names) != array.shape[1]:
            raise ExportError(
                f"feature_names: expected {array.shape[1]} names, one per column, "
                f"got {len(feature_names)}: {list(feature_names)}"
            )
        frame = pd.DataFrame(array, columns=list(feature_names))
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise ExportError(
            f"sample: expected at least one row and one column, got shape {list(frame.shape)}"
        )
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise ExportError(f"sample: expected distinct column names, got duplicates {duplicated}")
    return pd.DataFrame({name: _typed_column(name, frame[name]) for name in frame.columns})


def _typed_column(name: str, column: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return column.astype(np.float64)
    values = column.dropna().tolist()
    if all(isinstance(v, str) for v in values):
        missing = int(column.isna().sum())
        if missing:
            raise ExportError(
                f"sample column {name!r}: expected a string in every row of a categorical column "
                f"(requests will carry one), got {missing} missing; fill them with a category of "
                f"their own, such as 'missing', before fitting"
            )
        return column.astype(object)
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return column.astype(np.float64)
    kinds = sorted({type(v).__name__ for v in values})
    raise ExportError(f"sample column {name!r}: expected only numbers or only strings, got {kinds}")


def read_csv_sample(path: Path, estimator: Any) -> pd.DataFrame:
    """A CSV sample, typed by what the estimator knows rather than by pandas' guess from the text.

    A column is a string feature when an encoder of the estimator learned string categories for it
    (so zip codes such as 01234 stay strings) or when a value is not a number; numeric otherwise.
    """
    try:
        text = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise ExportError(
            f"sample {path}: expected a CSV file with a header row ({_first_line(error)})"
        ) from error
    names = [str(c) for c in text.columns]
    string_columns = {
        name for name, categories in _known_categories(estimator, names).items()
        if any(isinstance(c, str) for c in categories)
    }  # fmt: skip
    columns = {}
    for name in names:
        raw = text[name]
        numbers = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
        unparsed = numbers.isna() & ~raw.str.strip().str.lower().isin(["", "nan"])
        is_text = name in string_columns or bool(unparsed.any())
        columns[name] = raw.astype(object) if is_text else numbers.astype(np.float64)
    return sample_frame(pd.DataFrame(columns, columns=names))


# Every scikit-learn estimator pickles its version beside its state: `_sklearn_version` as a
# pickle string (SHORT_BINUNICODE, or BINUNICODE), readable even when unpickling fails.
_PICKLED_VERSION = re.compile(rb"_sklearn_version\x94?(?:\x8c(.)|X(....))")


def _pickled_sklearn_version(path: Path) -> str | None:
    """The scikit-learn version an uncompressed joblib or pickle file was written by, if it says."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    match = _PICKLED_VERSION.search(data)
    if match is None:
        return None
    size = match.group(1)[0] if match.group(1) else int.from_bytes(match.group(2), "little")
    version = data[match.end() : match.end() + size]
    if not re.fullmatch(rb"[0-9A-Za-z.+-]{1,40}", version):
        return None
    return version.decode("ascii")


def load_estimator(path: Path, trusted: Sequence[str] = ()) -> tuple[Any, list[str]]:
    """(estimator, warnings for the user) from a joblib/pickle file or a skops file (`.skops`).

    skops loads only the types it trusts: scikit-learn's own and those named in `trusted`.
    """
    if not path.is_file():
        raise ExportError(
            f"estimator: expected a joblib, pickle or skops file, got {str(path)!r}: no such file"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        if path.suffix == ".skops":
            estimator = _load_skops(path, trusted)
        else:
            import joblib

            try:
                estimator = joblib.load(path)
            except Exception as error:
                fitted_with = _pickled_sklearn_version(path)
                if fitted_with is not None and fitted_with != sklearn.__version__:
                    raise ExportError(
                        f"estimator {path}: fitted with scikit-learn {fitted_with}, which "
                        f"scikit-learn {sklearn.__version__} here cannot load "
                        f"({type(error).__name__}: {_first_line(error)}); refit with "
                        f"scikit-learn=={sklearn.__version__} (requirements-train.txt)"
                    ) from error
                raise ExportError(
                    f"estimator {path}: expected a joblib or pickle file ({type(error).__name__}: "
                    f"{_first_line(error)})"
                ) from error
    # scikit-learn warns once per object unpickled: one note per version, naming the classes.
    fitted_with: dict[tuple[str, str], list[str]] = {}
    for warning in caught:
        if isinstance(warning.message, InconsistentVersionWarning):
            message = warning.message
            versions = (message.original_sklearn_version, message.current_sklearn_version)
            names = fitted_with.setdefault(versions, [])
            if message.estimator_name not in names:
                names.append(message.estimator_name)
    notes = [
        f"{path} was fitted with scikit-learn {original} ({', '.join(names)}) and is loaded here "
        f"with {current}: the parity check compares against {current}; refit, or install "
        f"scikit-learn=={original} to export what was fitted"
        for (original, current), names in fitted_with.items()
    ]
    return estimator, notes


def _load_skops(path: Path, trusted: Sequence[str]) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        # scikit-learn's own classes (Tree, TreePredictor...) are the ones fitted models hold.
        unknown = [t for t in untrusted if not t.startswith("sklearn.") and t not in trusted]
        if unknown:
            raise ExportError(
                f"estimator {path}: skops refuses to load types outside scikit-learn: {unknown}; "
                f"if you trust them, name each with --trust"
            )
        return skops.io.load(path, trusted=untrusted)
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(
            f"estimator {path}: expected a skops file ({type(error).__name__}: {_first_line(error)})"
        ) from error


def describe_features(estimator: Any, frame: pd.DataFrame) -> tuple[Feature, ...]:
    expected = getattr(estimator, "feature_names_in_", None)
    names = list(frame.columns)
    if expected is not None and list(expected) != names:
        raise ExportError(
            f"sample: expected the columns the estimator was fitted on, in order, {list(expected)}, "
            f"got {names}"
        )
    fitted_width = getattr(estimator, "n_features_in_", None)
    if fitted_width is not None and fitted_width != len(names):
        raise ExportError(
            f"sample: expected {fitted_width} columns, as the estimator was fitted on, "
            f"got {len(names)}: {names}"
        )
    known = _known_categories(estimator, names)
    features = []
    for name in names:
        if frame[name].dtype == object:
            categories = [c for c in known.get(name, ()) if isinstance(c, str)]
            features.append(Feature(name, STRING, tuple(categories) if categories else None))
        else:
            features.append(Feature(name, NUMBER, _numeric_categories(known.get(name, ()))))
    return tuple(features)


def _numeric_categories(found: Sequence[Any]) -> tuple[int | float, ...] | None:
    """An encoder's numeric categories, whole numbers as integers (`[1, 2, 3]` in the file),
    without NaN (an encoder's category for missing values, which JSON cannot carry); None when
    it learned none, or not only numbers."""
    numbers = [c for c in found if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if len(numbers) != len(found):
        return None
    finite = [c for c in numbers if math.isfinite(c)]
    return tuple(int(c) if float(c).is_integer() else float(c) for c in finite) or None


def _known_categories(estimator: Any, columns: Sequence[str]) -> dict[str, list]:
    """Categories an encoder learned for each input column it sees untransformed."""
    if isinstance(estimator, _ENCODERS) and hasattr(estimator, "categories_"):
        return {name: [c.item() if hasattr(c, "item") else c for c in found]
                for name, found in zip(columns, estimator.categories_, strict=False)}  # fmt: skip
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            if isinstance(step, (*_ENCODERS, ColumnTransformer, Pipeline)):
                return _known_categories(step, columns)
            # An imputer keeps each column in place: the encoder after it still sees the inputs.
            if (
                not (isinstance(step, SimpleImputer) and not step.add_indicator)
                and step != "passthrough"
            ):
                return {}
        return {}
    if isinstance(estimator, ColumnTransformer) and hasattr(estimator, "transformers_"):
        known: dict[str, list] = {}
        for _, transformer, selected in estimator.transformers_:
            if isinstance(transformer, str):
                continue
            known.update(_known_categories(transformer, _selected_names(selected, columns)))
        return known
    return {}


def _selected_names(selected: Any, columns: Sequence[str]) -> list[str]:
    if isinstance(selected, str):
        return [selected]
    if isinstance(selected, slice) or np.asarray(selected).dtype.kind in "biu":
        return [str(c) for c in np.asarray(columns, dtype=object)[selected]]
    return [str(c) for c in selected]


def _steps(estimator: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, step) for every step whose own converter skl2onnx runs, pipelines unfolded."""
    if isinstance(estimator, Pipeline):
        for name, step in estimator.steps:
            if step is not None and step != "passthrough":
                yield from _steps(step, f"{path}{name}/")
    elif isinstance(estimator, ColumnTransformer):
        for name, transformer, _ in getattr(estimator, "transformers_", estimator.transformers):
            if not isinstance(transformer, str):
                yield from _steps(transformer, f"{path}{name}/")
    elif isinstance(estimator, FeatureUnion):
        for name, transformer in estimator.transformer_list:
            if not isinstance(transformer, str):
                yield from _steps(transformer, f"{path}{name}/")
    else:
        yield path.rstrip("/") or type(estimator).__name__, estimator


def _refuse_what_converts_wrongly(estimator: Any) -> None:
    for path, step in _steps(estimator):
        if type(step) not in sklearn_operator_name_map:
            raise UnsupportedEstimator(
                f"step {path!r} ({type(step).__name__}): skl2onnx has no converter for it; "
                f"nothing written"
            )
        categorical = getattr(step, "is_categorical_", None)
        if (
            type(step).__name__.startswith("HistGradientBoosting")
            and categorical is not None
            and categorical.any()
        ):
            names = getattr(step, "feature_names_in_", None)
            which = (
                list(np.asarray(names)[categorical])
                if names is not None
                else np.flatnonzero(categorical).tolist()
            )
            raise UnsupportedEstimator(
                f"step {path!r} ({type(step).__name__}) splits natively on categorical features "
                f"{which}: skl2onnx converts such splits into a graph that answers wrongly. Encode "
                f"those columns instead, with an OrdinalEncoder (or OneHotEncoder) in a "
                f"ColumnTransformer before it, and fit it with categorical_features=None; "
                f"nothing written"
            )


def _element_type(estimator: Any) -> type:
    linear = all(
        type(step).__module__.startswith("sklearn.linear_model") or isinstance(step, _LINEAR_STEPS)
        for _, step in _steps(estimator)
    )  # fmt: skip
    return np.float64 if linear else np.float32


def _selects_columns_by_name(estimator: Any) -> bool:
    if isinstance(estimator, ColumnTransformer):
        return True
    if isinstance(estimator, Pipeline):
        return any(_selects_columns_by_name(step) for _, step in estimator.steps)
    if isinstance(estimator, FeatureUnion):
        return any(_selects_columns_by_name(step) for _, step in estimator.transformer_list)
    return False


def _task(estimator: Any) -> str:
    if is_classifier(estimator):
        if not hasattr(estimator, "predict_proba"):
            raise UnsupportedEstimator(
                f"{type(estimator).__name__}: expected a classifier with predict_proba (the service "
                f"answers class probabilities), got one without; nothing written"
            )
        return CLASSIFICATION
    if is_regressor(estimator):
        return REGRESSION
    raise UnsupportedEstimator(
        f"{type(estimator).__name__}: expected a fitted classifier or regressor (or a pipeline ending "
        f"in one), got neither; nothing written"
    )


def _graph_inputs(
    features: Sequence[Feature], element: type, per_feature: bool
) -> list[tuple[str, Any]]:
    tensor = DoubleTensorType if element is np.float64 else FloatTensorType
    if not per_feature:
        return [(SINGLE_INPUT, tensor([None, len(features)]))]
    return [
        (f.name, StringTensorType([None, 1]) if f.type == STRING else tensor([None, 1]))
        for f in features
    ]  # fmt: skip


def _convert(estimator: Any, features: Sequence[Feature], task: str, name: str) -> onnx.ModelProto:
    _refuse_what_converts_wrongly(estimator)
    element = _element_type(estimator)
    per_feature = any(f.type == STRING for f in features) or _selects_columns_by_name(estimator)
    tensor = DoubleTensorType if element is np.float64 else FloatTensorType
    options = {id(estimator): {"zipmap": False}} if task == CLASSIFICATION else None
    final_types = None if task == CLASSIFICATION else [(PREDICTION_OUTPUT, tensor([None, 1]))]
    try:
        proto = convert_sklearn(
            estimator,
            initial_types=_graph_inputs(features, element, per_feature),
            final_types=final_types,
            options=options,
            # skl2onnx names the graph with a random UUID otherwise: the version would vary.
            name=name,
        )
    except Exception as error:
        raise UnsupportedEstimator(
            f"{_failing_step(estimator, error)}: skl2onnx cannot convert it "
            f"({type(error).__name__}: {_first_line(error)}); nothing written"
        ) from error
    expected = (
        [LABEL_OUTPUT, PROBABILITIES_OUTPUT] if task == CLASSIFICATION else [PREDICTION_OUTPUT]
    )
    produced = [output.name for output in proto.graph.output]
    if produced != expected:
        raise UnsupportedEstimator(
            f"{type(estimator).__name__}: expected graph outputs {expected}, skl2onnx produced "
            f"{produced}; nothing written"
        )
    if per_feature:
        _name_inputs_as_features(proto, features)
    return proto


def _name_inputs_as_features(proto: onnx.ModelProto, features: Sequence[Feature]) -> None:
    """skl2onnx turns `petal length (cm)` into `petal_length__cm_`: requests use the real names."""
    graph = proto.graph
    taken = {name for node in graph.node for name in node.output}
    taken |= {tensor.name for tensor in graph.initializer} | {
        output.name for output in graph.output
    }
    for graph_input, feature in zip(graph.input, features, strict=True):
        if graph_input.name == feature.name:
            continue
        if feature.name in taken:
            raise ExportError(
                f"feature {feature.name!r}: the graph already has a tensor of that name (the outputs "
                f"are {[o.name for o in graph.output]}); rename the column before fitting"
            )
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name == graph_input.name:
                    node.input[index] = feature.name
        graph_input.name = feature.name


def _failing_step(estimator: Any, error: Exception) -> str:
    """The step an error message names by its class, else the whole estimator."""
    for path, step in _steps(estimator):
        if type(step).__name__ in str(error):
            return f"step {path!r} ({type(step).__name__})"
    return type(estimator).__name__


def _classes(estimator: Any, class_names: Sequence[str] | None) -> list[str]:
    fitted = [str(c) for c in estimator.classes_]
    if class_names is None:
        return fitted
    names = [str(c) for c in class_names]
    if len(names) != len(fitted) or len(set(names)) != len(names):
        raise ExportError(
            f"class_names: expected {len(fitted)} distinct names, one for each class {fitted}, "
            f"got {names}"
        )
    return names


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _metadata(
    name: str,
    task: str,
    features: Sequence[Feature],
    classes: Sequence[str] | None,
    scores: Mapping[str, float] | None,
    example: Mapping[str, Any] | None,
) -> dict[str, str]:
    props = {
        NAME_KEY: name,
        TASK_KEY: task,
        TYPED_FEATURES_KEY: json.dumps([f.describe() for f in features]),
        FEATURES_KEY: json.dumps([f.name for f in features]),
    }
    if classes is not None:
        props[TYPED_CLASSES_KEY] = json.dumps(list(classes))
        props[CLASSES_KEY] = json.dumps(list(classes))
    if scores is not None:
        props[SCORES_KEY] = json.dumps(dict(scores), allow_nan=False)
    props[SKLEARN_VERSION_KEY] = sklearn.__version__
    if example is not None:
        props[EXAMPLE_KEY] = json.dumps(dict(example), allow_nan=False)
    return props


def _example(frame: pd.DataFrame, features: Sequence[Feature]) -> dict[str, Any]:
    row = frame.iloc[0]
    example: dict[str, Any] = {}
    for feature in features:
        value = row[feature.name]
        if feature.type == STRING:
            example[feature.name] = value if isinstance(value, str) else None
        else:
            example[feature.name] = None if math.isnan(value) else float(value)
    return example


def _check_scores(scores: Mapping[str, float]) -> dict[str, float]:
    checked = {}
    for key, value in scores.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ExportError(f"scores[{key!r}]: expected a finite number, got {value!r}")
        checked[str(key)] = float(value)
    return checked


def build(
    estimator: Any,
    sample: Any,
    *,
    name: str,
    feature_names: Sequence[str] | None = None,
    scores: Mapping[str, float] | None = None,
    example_row: bool = False,
    class_names: Sequence[str] | None = None,
) -> Exported:
    """The ONNX file's bytes, converted and checked against scikit-learn; nothing is written."""
    check_name(name)
    scores = _check_scores(scores) if scores is not None else None
    frame = sample_frame(sample, feature_names)
    task = _task(estimator)
    features = describe_features(estimator, frame)
    proto = _convert(estimator, features, task, name)
    classes = _classes(estimator, class_names) if task == CLASSIFICATION else None
    example = _example(frame, features) if example_row else None
    metadata = _metadata(name, task, features, classes, scores, example)
    onnx.helper.set_model_props(proto, metadata)
    version = hashlib.sha256(proto.SerializeToString()).hexdigest()[:16]
    onnx.helper.set_model_props(proto, {**metadata, VERSION_KEY: version})
    data = proto.SerializeToString()
    parity = check_parity(data, estimator, frame)
    check_the_service_loads(data, name)
    return Exported(data=data, version=version, task=task, features=features, parity=parity)


def export_model(
    estimator: Any,
    sample: Any,
    path: str | Path,
    *,
    name: str,
    feature_names: Sequence[str] | None = None,
    scores: Mapping[str, float] | None = None,
    example_row: bool = False,
    class_names: Sequence[str] | None = None,
) -> Exported:
    """Converts `estimator`, checks it on every row of `sample`, then writes it to `path`.

    `sample` is a DataFrame (its columns and dtypes give the features: numbers are numeric,
    strings categorical) or a 2-D NumPy array with `feature_names`. `class_names` names the
    classes of a classifier fitted on codes (0, 1, 2), in the order of `classes_`. ExportError,
    and no file, when the estimator cannot be converted or the converted graph answers differently.
    """
    exported = build(
        estimator,
        sample,
        name=name,
        feature_names=feature_names,
        scores=scores,
        example_row=example_row,
        class_names=class_names,
    )
    write_file(Path(path), exported.data)
    return exported


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)  # never leave a half-written model where the service looks
    finally:
        partial.unlink(missing_ok=True)


def check_the_service_loads(data: bytes, name: str) -> None:
    """The service's own load of the file, its trial run included: a file the service would
    refuse forever is never written."""
    uri = f"{name}.onnx"
    try:
        model_from_bytes(data, uri)
    except ModelUnavailable as error:
        detail = error.detail.removeprefix(f"cannot load model {uri}: ")
        raise ExportError(
            f"the service cannot load the converted file: {detail}; nothing written"
        ) from error


def check_parity(data: bytes, estimator: Any, frame: pd.DataFrame) -> Parity:
    """onnxruntime on the file `data` against scikit-learn on every row of `frame`; ParityError."""
    session = _session(data)
    props = session.get_modelmeta().custom_metadata_map
    task = props.get(TASK_KEY, CLASSIFICATION)
    try:
        onnx_answers = session.run(None, _feeds(session, frame))
    except Exception as error:
        raise UnsupportedEstimator(
            f"onnxruntime cannot run the converted graph on the sample ({_first_line(error)}); "
            f"nothing written"
        ) from error
    reference = _sklearn_rows(estimator, frame)
    try:
        if task == CLASSIFICATION:
            return _classifier_parity(estimator, reference, frame, *onnx_answers)
        return _regressor_parity(estimator, reference, frame, onnx_answers[0])
    except ExportError:
        raise
    except (
        Exception
    ) as error:  # the estimator's own complaint about the rows, e.g. NaN without an imputer
        raise ExportError(
            f"sample: scikit-learn cannot predict its rows "
            f"({type(error).__name__}: {_first_line(error)}); "
            f"nothing written"
        ) from error


def _session(data: bytes) -> Any:
    try:
        return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise UnsupportedEstimator(
            f"onnxruntime cannot load the converted graph ({_first_line(error)}); nothing written"
        ) from error


def _feeds(session: Any, frame: pd.DataFrame) -> dict[str, Any]:
    inputs = session.get_inputs()
    if len(inputs) == 1 and inputs[0].name == SINGLE_INPUT:
        return {SINGLE_INPUT: frame.to_numpy(dtype=_ELEMENT_TYPES[inputs[0].type])}
    feeds = {}
    for graph_input in inputs:
        column = frame[graph_input.name]
        if graph_input.type == "tensor(string)":
            feeds[graph_input.name] = column.to_numpy(dtype=object).reshape(-1, 1)
        else:
            feeds[graph_input.name] = column.to_numpy(
                dtype=_ELEMENT_TYPES[graph_input.type]
            ).reshape(-1, 1)
    return feeds


def _sklearn_rows(estimator: Any, frame: pd.DataFrame) -> Any:
    """The rows as the estimator was fitted on them: named columns, or a bare matrix."""
    if hasattr(estimator, "feature_names_in_"):
        return frame
    return frame.to_numpy(dtype=object if (frame.dtypes == object).any() else np.float64)


def _classifier_parity(
    estimator: Any, reference: Any, frame: pd.DataFrame, onnx_labels: Any, onnx_probabilities: Any
) -> Parity:
    expected = estimator.predict_proba(reference)
    classes = [str(c) for c in estimator.classes_]
    expected_labels = [str(label) for label in estimator.predict(reference)]
    labels = [_label(label, classes) for label in onnx_labels]
    gaps = np.abs(np.asarray(onnx_probabilities, dtype=np.float64) - expected).max(axis=1)
    top_two = (
        np.sort(expected, axis=1)[:, -2:] if expected.shape[1] > 1 else np.zeros((len(expected), 2))
    )
    tied = (top_two[:, 1] - top_two[:, 0]) <= PROBABILITY_TOLERANCE
    wrong_label = np.array([a != b for a, b in zip(labels, expected_labels, strict=True)]) & ~tied
    bad = wrong_label | ~(gaps <= PROBABILITY_TOLERANCE)  # NaN counts as a disagreement
    if bad.any():
        worst = (
            int(np.flatnonzero(wrong_label)[0])
            if wrong_label.any()
            else int(np.nan_to_num(gaps, nan=np.inf).argmax())
        )
        raise ParityError(
            f"onnxruntime and scikit-learn disagree on {int(bad.sum())} of {len(frame)} sample rows "
            f"(expected probabilities within {PROBABILITY_TOLERANCE:g} and the same label); worst, row "
            f"{worst} {_row(frame, worst)}: scikit-learn {expected_labels[worst]!r} "
            f"{expected[worst].tolist()}, onnxruntime {labels[worst]!r} "
            f"{np.asarray(onnx_probabilities[worst], dtype=np.float64).tolist()}; nothing written"
        )
    return Parity(rows=len(frame), gap=float(gaps.max()))


def _label(label: Any, classes: Sequence[str]) -> str:
    """onnxruntime's label as scikit-learn prints it: skl2onnx labels boolean classes 0 and 1."""
    text = str(label)
    if text in classes or classes != ["False", "True"]:
        return text
    return classes[int(label)]


def _regressor_parity(
    estimator: Any, reference: Any, frame: pd.DataFrame, onnx_predictions: Any
) -> Parity:
    expected = np.asarray(estimator.predict(reference), dtype=np.float64)
    if expected.ndim != 1:
        raise UnsupportedEstimator(
            f"{type(estimator).__name__}: expected one prediction per row, got shape "
            f"{list(expected.shape)}; nothing written"
        )
    served = np.asarray(onnx_predictions, dtype=np.float64).reshape(-1)
    relative = np.abs(served - expected) / np.maximum(1.0, np.abs(expected))
    bad = ~(relative <= RELATIVE_TOLERANCE)  # NaN counts as a disagreement
    if bad.any():
        worst = int(np.nan_to_num(relative, nan=np.inf).argmax())
        raise ParityError(
            f"onnxruntime and scikit-learn disagree on {int(bad.sum())} "
            f"of {len(frame)} sample rows (expected predictions within {RELATIVE_TOLERANCE:g} x "
            f"max(1, |prediction|)); worst, row {worst} {_row(frame, worst)}: scikit-learn "
            f"{float(expected[worst])!r}, onnxruntime {float(served[worst])!r}; nothing written"
        )
    return Parity(rows=len(frame), gap=float(relative.max()))


def _row(frame: pd.DataFrame, index: int) -> str:
    row = frame.iloc[index]
    return json.dumps(
        {
            name: (row[name] if isinstance(row[name], str) else float(row[name]))
            for name in frame.columns
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--estimator", type=Path, required=True, help="joblib/pickle file, or a .skops file"
    )
    parser.add_argument(
        "--sample", type=Path, required=True, help="CSV with a header row: the features"
    )
    parser.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    parser.add_argument("--name", required=True, help="the model's name, e.g. churn")
    parser.add_argument(
        "--example-row", action="store_true",
        help="store the sample's first row in the file as the documented example "
        "(it may be real data)",
    )  # fmt: skip
    parser.add_argument(
        "--trust", action="append", default=[], help="a type skops may load (repeatable)"
    )
    args = parser.parse_args(argv)

    try:
        check_name(args.name)
        estimator, notes = load_estimator(args.estimator, args.trust)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        frame = read_csv_sample(args.sample, estimator)
        exported = export_model(
            estimator, frame, args.out, name=args.name, example_row=args.example_row
        )
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    kinds = ", ".join(f"{f.name} ({f.type})" for f in exported.features)
    print(
        f"wrote {args.out} ({len(exported.data)} bytes, {exported.task}, "
        f"version {exported.version}); "
        f"features: {kinds}; onnxruntime matches scikit-learn within {exported.parity.gap:.1e} "
        f"on {exported.parity.rows} rows"
    )
    print(f"serve it: make run MODEL_URI={shlex.quote(str(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
