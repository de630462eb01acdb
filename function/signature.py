"""What a model takes and gives, read from its file's metadata, and the values it accepts.

Every dialect's decoder turns a request into a `Batch` of rows typed by the model's `Signature`;
the model answers a batch with a `Prediction`; every dialect's encoder writes that answer. Only
this module says what a valid value of a feature is, so every dialect refuses the same values
with the same words.
"""

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from function.errors import (
    INVALID_MODEL,
    PREVIEW_CHARS,
    BadRequest,
    ModelUnavailable,
    UnprocessableEntity,
    quoted,
)
from function.schema import INSTANCES_KEY, describe

# Keys of the ONNX metadata_props written by `training.export` and read here. The first five
# are the original ones; a file with only those is a classifier of numeric features.
FEATURES_KEY = "feature_names"
CLASSES_KEY = "class_names"
SCORES_KEY = "scores"
SKLEARN_VERSION_KEY = "sklearn_version"
VERSION_KEY = "model_version"
NAME_KEY = "model_name"
TASK_KEY = "task"
TYPED_FEATURES_KEY = "features"
TYPED_CLASSES_KEY = "classes"
EXAMPLE_KEY = "example"

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)
NUMBER = "number"
STRING = "string"
FEATURE_TYPES = (NUMBER, STRING)
# The name a file without one is served under (it is part of some routes' paths).
DEFAULT_MODEL_NAME = "model"
# What the exporter writes and publishing requires: the name becomes part of a Cloud Storage object
# path and of a URL, so lower case, no slashes, no spaces.
MODEL_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# Element types of numeric inputs and outputs, as onnxruntime names them.
FLOAT32 = "float32"
FLOAT64 = "float64"
_FINITE_LIMITS = {FLOAT32: 3.4028234663852886e38, FLOAT64: 1.7976931348623157e308}
# How many known categories an error message lists before it points to GET /.
_CATEGORIES_SHOWN = 20
# A documented placeholder for a string feature whose categories the file does not list.
TEXT_PLACEHOLDER = "text"


@dataclass(frozen=True)
class Feature:
    """One input column. `dtype` is the element type the graph takes for a number.
    `categories`: the values an encoder of the model learned, strings or numbers (codes such as
    a zone 1, 2, 3); a value outside them is refused before the graph runs."""

    name: str
    type: str  # NUMBER or STRING
    categories: tuple[str, ...] | tuple[float, ...] | None = None
    dtype: str = FLOAT64
    _known: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
    _limit: float = field(default=math.inf, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_known", frozenset(self.categories or ()))
        object.__setattr__(self, "_limit", _FINITE_LIMITS.get(self.dtype, math.inf))

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.categories is not None:
            described["categories"] = list(self.categories)
        return described

    def placeholder(self) -> float | str:
        """A value of the right type for documentation, never taken from real data."""
        if self.type == NUMBER:
            return float(self.categories[0]) if self.categories else 0.0
        return self.categories[0] if self.categories else TEXT_PLACEHOLDER

    def expected(self) -> str:
        """What a request must carry for this feature, in words."""
        if self.type == NUMBER:
            if self.categories is not None:
                return f"a number, one of the {len(self.categories)} known categories"
            if self.dtype == FLOAT32:
                limit = f"{self._limit:.4g}"
                return f"a number between -{limit} and {limit} (the model takes 32-bit floats)"
            return "a finite number"
        if self.categories is None:
            return "a string"
        return f"a string, one of the {len(self.categories)} known categories"

    def accept(self, value: Any, where: str) -> float | str:
        """`value` as the model takes it; BadRequest for a wrong type, UnprocessableEntity for a
        number out of the model's range or a category it never saw. `where` prefixes the name."""
        kind = type(value)  # not isinstance: JSON true/false are Python ints
        if self.type == NUMBER:
            if kind is float or kind is int:
                try:
                    number = float(value)
                except OverflowError:
                    number = math.inf
                if -self._limit <= number <= self._limit:  # NaN fails both
                    if self.categories is None or number in self._known:
                        return number
                    raise UnprocessableEntity(
                        f"{self.place(where)}: expected one of the categories the model knows, "
                        f"{self.known_values()}, got {describe(value)}"
                    )
                if math.isfinite(number):
                    raise UnprocessableEntity(
                        f"{self.place(where)}: expected {self.expected()}, got {describe(value)}"
                    )
            raise BadRequest(
                f"{self.place(where)}: expected a finite number, got {describe(value)}"
            )
        if kind is str:
            if self.categories is None or value in self._known:
                return value
            raise UnprocessableEntity(
                f"{self.place(where)}: expected one of the categories the model knows, "
                f"{self.known_values()}, got {quoted(value)}"
            )
        raise BadRequest(f"{self.place(where)}: expected {self.expected()}, got {describe(value)}")

    def place(self, where: str) -> str:
        return f"{where}.{self.name}" if where else self.name

    def known_values(self) -> str:
        """The known categories as a list, cut short for a long list (GET / has them all)."""
        categories = self.categories or ()
        shown: list[str] = []
        size = 0
        for category in categories[:_CATEGORIES_SHOWN]:
            part = quoted(category) if type(category) is str else json.dumps(category)
            if size + len(part) > PREVIEW_CHARS * 4:
                break
            shown.append(part)
            size += len(part) + 2
        if len(shown) == len(categories):
            return "[" + ", ".join(shown) + "]"
        return "[" + ", ".join([*shown, "..."]) + f"] ({len(categories)} in all, listed by GET /)"


@dataclass(frozen=True)
class Signature:
    """The model as its callers see it: name, task, typed features, classes, and an example row
    (the file's own, else typed placeholders). `example_answer` is the model's answer to it."""

    name: str
    version: str
    task: str
    features: tuple[Feature, ...]
    classes: tuple[str, ...]  # empty for a regressor
    scores: Mapping[str, float]
    sklearn_version: str | None
    example: Mapping[str, Any]
    example_is_placeholder: bool
    output_dtype: str = FLOAT64
    example_answer: "Prediction | None" = None
    # For `plain_row`: the names in order; the one limit of numbers when every feature is a
    # number of one type, else per feature as `_plain_check` gives it.
    _names: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _limit: float | None = field(default=None, init=False, repr=False, compare=False)
    _plain: tuple[tuple[float | None, frozenset | None], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", tuple(f.name for f in self.features))
        plain = tuple(_plain_check(f) for f in self.features)
        object.__setattr__(self, "_plain", plain)
        limits = {limit for limit, _ in plain}
        if len(limits) == 1 and None not in limits:
            object.__setattr__(self, "_limit", limits.pop())

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._names

    def plain_row(self, instance: dict) -> list[Any] | None:
        """The row of a named instance that is plainly valid, in the fewest steps: exactly the
        features, each number a float within the model's range, each string one it takes. None
        for anything else (integers too), which `Feature.accept` then takes or explains."""
        if len(instance) != len(self._names):
            return None
        try:
            row = [instance[name] for name in self._names]
        except KeyError:
            return None
        limit = self._limit
        if limit is not None:
            for value in row:
                if type(value) is not float or not -limit <= value <= limit:
                    return None
            return row
        for value, (limit, known) in zip(row, self._plain):
            if limit is not None:
                if type(value) is not float or not -limit <= value <= limit:
                    return None
            elif type(value) is not str or (known is not None and value not in known):
                return None
        return row

    def example_row(self) -> list[float | str]:
        return [self.example[f.name] for f in self.features]

    def describe(self) -> dict[str, Any]:
        """The metadata every dialect shows: JSON-ready."""
        described: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "features": [f.describe() for f in self.features],
        }
        if self.task == CLASSIFICATION:
            described["classes"] = list(self.classes)
        described["scores"] = dict(self.scores)
        described["sklearn_version"] = self.sklearn_version
        return described


def _plain_check(feature: Feature) -> tuple[float | None, frozenset | None]:
    """(limit, None) for a number, (None, known categories or None) for a string."""
    if feature.type == STRING:
        return None, feature._known if feature.categories else None
    if feature.categories is None:
        return feature._limit, None
    # A categorical number is never plain, `Feature.accept` checks it: the string branch of
    # `plain_row` with no category known lets neither a number nor a string through.
    return None, frozenset()


class Batch(NamedTuple):
    """Validated rows, each a list of values in the signature's feature order: floats for
    numbers, strings for categories. `single`: the request carried one instance, not a list, and
    is answered as one. `row_label` names row i (`row_label.format(i)`) in the request's terms.
    `context`: what the dialect's encoder needs from the request besides the rows (an id to echo,
    the outputs asked for), opaque to the model."""

    rows: list[list[Any]]
    single: bool = False
    row_label: str = INSTANCES_KEY + "[{}]"
    context: Any = None


class Prediction(NamedTuple):
    """The model's answer to a batch, one entry per row. A classifier fills `labels` (the class
    of highest probability) and `probabilities` (columns in the signature's class order); a
    regressor fills `values`. `dtype` is the element type the graph produced."""

    labels: list[str] | None
    probabilities: list[list[float]] | None
    values: list[float] | None
    dtype: str


def read_signature(props: Mapping[str, str], uri: str, version: str) -> Signature:
    """The signature the file's metadata declares, before it is checked against the graph.

    The example is kept as found (a mapping, or None when absent); `checked_example` validates it.
    """
    task = props.get(TASK_KEY, CLASSIFICATION)
    if task not in TASKS:
        _refuse(
            uri, f"expected metadata {TASK_KEY!r} to be one of {list(TASKS)}, got {quoted(task)}"
        )
    features = _features(props, uri)
    classes: tuple[str, ...] = ()
    if task == CLASSIFICATION:
        classes = _classes(props, uri)
    return Signature(
        name=props.get(NAME_KEY) or DEFAULT_MODEL_NAME,
        version=version,
        task=task,
        features=features,
        classes=classes,
        scores={},
        sklearn_version=props.get(SKLEARN_VERSION_KEY),
        example={},
        example_is_placeholder=True,
    )


def parse_example(props: Mapping[str, str]) -> Any:
    raw = props.get(EXAMPLE_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def checked_example(example: Any, features: Sequence[Feature]) -> dict[str, Any]:
    """The example as a valid row; ServiceError (of the request kind) saying why not."""
    if type(example) is not dict:
        raise BadRequest(f"expected an object of the features, got {describe(example)}")
    names = [f.name for f in features]
    if sorted(example) != sorted(names):
        raise BadRequest(f"expected the features {names}, got {sorted(example)}")
    return {f.name: f.accept(example[f.name], "") for f in features}


def _features(props: Mapping[str, str], uri: str) -> tuple[Feature, ...]:
    legacy = _json_list(props, FEATURES_KEY, uri)
    typed = _json_list(props, TYPED_FEATURES_KEY, uri, "features")
    if typed is None:
        if legacy is None:
            _refuse(
                uri,
                f"expected metadata {TYPED_FEATURES_KEY!r} (or {FEATURES_KEY!r}) listing the "
                f"features (written by `make export`), got neither",
            )
        names = _names(legacy, FEATURES_KEY, uri)
        return tuple(Feature(name, NUMBER) for name in names)
    features = []
    for index, item in enumerate(typed):
        where = f"metadata {TYPED_FEATURES_KEY!r}[{index}]"
        if not (type(item) is dict and type(item.get("name")) is str and item["name"]):
            _refuse(
                uri,
                f'{where}: expected an object with a non-empty "name", '
                f"got {quoted(json.dumps(item))}",
            )
        kind = item.get("type")
        if kind not in FEATURE_TYPES:
            _refuse(
                uri,
                f'{where}: expected "type" to be one of {list(FEATURE_TYPES)}, '
                f"got {quoted(str(kind))}",
            )
        categories = item.get("categories")
        if categories is not None:
            if not (
                type(categories) is list
                and categories
                and all(map(_CATEGORY_CHECKS[kind], categories))
                and len(set(categories)) == len(categories)
            ):
                _refuse(
                    uri,
                    f'{where}: expected "categories" of a {kind} feature as a list of distinct '
                    f"{'strings' if kind == STRING else 'finite numbers'}, "
                    f"got {quoted(json.dumps(categories))}",
                )
            categories = tuple(categories)
        features.append(Feature(item["name"], kind, categories))
    names = _names([f.name for f in features], TYPED_FEATURES_KEY, uri)
    if legacy is not None and list(legacy) != list(names):
        _refuse(
            uri,
            f"expected metadata {FEATURES_KEY!r} to name the features of {TYPED_FEATURES_KEY!r} "
            f"in order, {list(names)}, got {quoted(json.dumps(legacy))}",
        )
    return tuple(features)


_CATEGORY_CHECKS = {
    STRING: lambda c: type(c) is str,
    NUMBER: lambda c: type(c) in (int, float) and math.isfinite(c),
}


def _classes(props: Mapping[str, str], uri: str) -> tuple[str, ...]:
    legacy = _json_list(props, CLASSES_KEY, uri)
    typed = _json_list(props, TYPED_CLASSES_KEY, uri)
    if typed is None and legacy is None:
        _refuse(
            uri,
            f"expected metadata {TYPED_CLASSES_KEY!r} (or {CLASSES_KEY!r}) listing the classes of "
            f"a classifier, got neither",
        )
    if typed is not None and legacy is not None and typed != legacy:
        _refuse(
            uri,
            f"expected metadata {CLASSES_KEY!r} and {TYPED_CLASSES_KEY!r} to agree, got "
            f"{quoted(json.dumps(legacy))} and {quoted(json.dumps(typed))}",
        )
    key = TYPED_CLASSES_KEY if typed is not None else CLASSES_KEY
    return _names(typed if typed is not None else legacy, key, uri)


def _json_list(props: Mapping[str, str], key: str, uri: str, what: str = "names") -> list | None:
    raw = props.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = None
    if type(value) is not list or not value:
        _refuse(
            uri,
            f"expected metadata {key!r} as a JSON list of {what} (written by `make export`), "
            f"got {quoted(raw)}",
        )
    return value


def _names(names: list, key: str, uri: str) -> tuple[str, ...]:
    if not all(type(n) is str and n for n in names):
        _refuse(
            uri,
            f"expected metadata {key!r} as a JSON list of names (written by `make export`), "
            f"got {quoted(json.dumps(names))}",
        )
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        _refuse(
            uri, f"expected distinct names in metadata {key!r}, got {duplicates} more than once"
        )
    if key in (FEATURES_KEY, TYPED_FEATURES_KEY) and INSTANCES_KEY in names:
        _refuse(
            uri,
            f"expected feature names other than {INSTANCES_KEY!r} in metadata {key!r}, "
            f"which marks a batch in requests",
        )
    return tuple(names)


def _refuse(uri: str, detail: str) -> None:
    raise ModelUnavailable(f"cannot load model {uri}: {detail}", kind=INVALID_MODEL)
