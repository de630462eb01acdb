"""The words of the service's own JSON dialect, and short renderings of received JSON values
for error messages (`describe`): bounded whatever the value's size or depth."""

import json
from collections.abc import Iterator
from typing import Any

from function.errors import PREVIEW_CHARS

INSTANCES_KEY = "instances"
PREDICTIONS_KEY = "predictions"


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
    return f"{preview(value)} ({kind})"


def preview(value: Any) -> str:
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
        name = json.dumps(str(key)[: PREVIEW_CHARS + 1], ensure_ascii=False)
        yield _Text(f"{', ' if index else ''}{name}: ")
        yield item
    yield _Text("}")
