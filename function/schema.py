"""Request bodies to feature rows, with messages that say what was expected and what came.

Two shapes are accepted (feature names come from the model):
- one instance, named: `{"sepal_length": 5.1, ...}`;
- a batch: `{"instances": [{named features} or [numbers in feature order], ...]}`.
"""

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

from function.errors import PREVIEW_CHARS, BadRequest, PayloadTooLarge, quoted_names

INSTANCES_KEY = "instances"
PREDICTIONS_KEY = "predictions"


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
        extra = (k for k in payload if k != INSTANCES_KEY)
        raise BadRequest(
            f'expected only the key "{INSTANCES_KEY}" in a batch, got also {quoted_names(extra)}'
        )
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
                f"unexpected {quoted_names(unexpected)}" if unexpected else "",
            )
            if part
        )
        raise BadRequest(
            f"{where + ': ' if where else ''}expected features {list(features)}, "
            f"got {quoted_names(instance)}: {detail}"
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
    """The start of `value` as JSON, at most PREVIEW_CHARS long. Iterative and lazy: a value
    nested a thousand levels deep or a megabyte long costs no more than a short one."""
    parts, size = [], 0
    for part in _json_parts(value):
        parts.append(part)
        size += len(part)
        if size > PREVIEW_CHARS:
            break
    text = "".join(parts)
    if len(text) > PREVIEW_CHARS:
        text = text[: PREVIEW_CHARS - 3] + "..."
    return text


class _Text(str):
    """Punctuation to emit as is, told apart from string values in the parts' stream."""


_END = object()


def _json_parts(value: Any) -> Iterator[str]:
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        item = next(stack[-1], _END)
        kind = type(item)
        if item is _END:
            stack.pop()
        elif kind is _Text:
            yield item
        elif kind is list:
            stack.append(_list_items(item))
        elif kind is dict:
            stack.append(_dict_items(item))
        elif kind is str:
            # Only the start of a long string can show.
            yield json.dumps(item[: PREVIEW_CHARS + 1], ensure_ascii=False)
        elif kind is int and item.bit_length() > 64:
            yield "(a number of more than 19 digits)"  # str() of a huge int is slow or refused
        else:
            yield json.dumps(item)


def _list_items(items: list) -> Iterator[Any]:
    yield _Text("[")
    for index, item in enumerate(items):
        if index:
            yield _Text(", ")
        yield item
    yield _Text("]")


def _dict_items(items: dict) -> Iterator[Any]:
    yield _Text("{")
    for index, (key, item) in enumerate(items.items()):
        yield _Text((", " if index else "") + json.dumps(str(key)[: PREVIEW_CHARS + 1], ensure_ascii=False) + ": ")
        yield item
    yield _Text("}")
