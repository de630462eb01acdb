"""Request bodies to feature rows, with messages that say what was expected and what came.

Two shapes are accepted (feature names come from the model):
- one instance, named: `{"sepal_length": 5.1, ...}`;
- a batch: `{"instances": [{named features} or [numbers in feature order], ...]}`.
"""

import json
import math
from collections.abc import Sequence
from typing import Any

from function.errors import BadRequest, PayloadTooLarge

INSTANCES_KEY = "instances"
PREDICTIONS_KEY = "predictions"
_PREVIEW_CHARS = 60


def parse_rows(
    payload: Any, features: Sequence[str], max_rows: int
) -> tuple[list[list[float]], bool]:
    """The feature rows of a request body, and whether it was a batch."""
    if type(payload) is not dict:
        raise BadRequest(
            f"expected a JSON object with features {list(features)} or "
            f'{{"{INSTANCES_KEY}": [...]}}, got {describe(payload)}'
        )
    if INSTANCES_KEY not in payload:
        return [_named_row(payload, features, "")], False

    if len(payload) != 1:
        extra = sorted(k for k in payload if k != INSTANCES_KEY)
        raise BadRequest(f'expected only the key "{INSTANCES_KEY}" in a batch, got also {extra}')
    instances = payload[INSTANCES_KEY]
    if type(instances) is not list:
        raise BadRequest(f'expected "{INSTANCES_KEY}" to be a list of rows, got {describe(instances)}')
    if not instances:
        raise BadRequest(f'expected at least 1 row in "{INSTANCES_KEY}", got 0')
    if len(instances) > max_rows:
        raise PayloadTooLarge(
            f'expected at most {max_rows} rows in "{INSTANCES_KEY}", got {len(instances)}'
        )
    rows = []
    for index, instance in enumerate(instances):
        where = f"{INSTANCES_KEY}[{index}]"
        kind = type(instance)
        if kind is dict:
            rows.append(_named_row(instance, features, where))
        elif kind is list:
            rows.append(_positional_row(instance, features, where))
        else:
            raise BadRequest(
                f"{where}: expected an object of features {list(features)} or a list of "
                f"{len(features)} numbers, got {describe(instance)}"
            )
    return rows, True


def _named_row(instance: dict, features: Sequence[str], where: str) -> list[float]:
    try:
        values = [instance[name] for name in features]
    except KeyError:
        values = None
    if values is None or len(instance) != len(features):
        missing = [name for name in features if name not in instance]
        unexpected = [key for key in instance if key not in features]
        detail = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {unexpected}" if unexpected else "",
            )
            if part
        )
        raise BadRequest(
            f"{where + ': ' if where else ''}expected features {list(features)}, "
            f"got {list(instance)}: {detail}"
        )
    return [_number(value, where, name) for value, name in zip(values, features)]


def _positional_row(instance: list, features: Sequence[str], where: str) -> list[float]:
    if len(instance) != len(features):
        raise BadRequest(
            f"{where}: expected {len(features)} numbers in the order {list(features)}, "
            f"got {len(instance)}: {_preview(instance)}"
        )
    return [_number(value, where, name) for value, name in zip(instance, features)]


def _number(value: Any, where: str, name: str) -> float:
    kind = type(value)  # not isinstance: JSON true/false are Python ints
    if kind is float or kind is int:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    place = f"{where}.{name}" if where else name
    raise BadRequest(f"{place}: expected a finite number, got {describe(value)}")


def describe(value: Any) -> str:
    """A short rendering of a JSON value with its JSON type: `"abc" (string)`, `null`."""
    if value is None:
        return "null"
    kind = {
        bool: "boolean",
        str: "string",
        list: "array",
        dict: "object",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)
    return f"{_preview(value)} ({kind})"


def _preview(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > _PREVIEW_CHARS:
        text = text[: _PREVIEW_CHARS - 3] + "..."
    return text
