"""The service's own JSON dialect, in: the seed's request and its batch.

- one instance, named: `{"sepal_length": 5.1, ...}` (the model's features as fields);
- a batch: `{"instances": [{named features} or [values in feature order], ...]}`.

A body keyed as other servers expect (`{"data": ...}`, `{"inputs": ...}`) is answered with the
way to say it here, and the routes of other dialects this service speaks (`elsewhere`).
"""

import json
from collections.abc import Sequence
from typing import Any

from function.errors import BadRequest, PayloadTooLarge, cut, name_mismatch, quoted_names
from function.schema import INSTANCES_KEY, describe, preview
from function.signature import NUMBER, STRING, Batch, Feature, Signature

# Top-level keys other model servers read their rows from (MLflow, TF Serving, Seldon, KServe).
FOREIGN_KEYS = ("data", "inputs", "dataframe_split", "dataframe_records", "ndarray")
SINGLE_ROW_LABEL = "the row"
ROW_SCHEMA = "PredictRow"
POSITIONAL_ROW_SCHEMA = "PredictRowValues"
BATCH_SCHEMA = "PredictBatch"
REQUEST_SCHEMA = "PredictRequest"
_EXAMPLE_CHARS = 160


def decode(
    payload: Any,
    signature: Signature,
    max_rows: int,
    *,
    elsewhere: Sequence[tuple[str, str]] = (),
) -> Batch:
    """The rows of a request body. `elsewhere`: (what, "METHOD /path") of other dialects' routes,
    for the hint given to a body keyed as another server expects."""
    features = signature.features
    if type(payload) is not dict:
        raise BadRequest(
            f"expected a JSON object with features {list(signature.feature_names)} or "
            f'{{"{INSTANCES_KEY}": [...]}}, got {describe(payload)}'
        )
    if INSTANCES_KEY not in payload:
        row = signature.plain_row(payload)
        if row is not None:
            return Batch([row], True, SINGLE_ROW_LABEL)
        try:
            row = _named_row(payload, features, "")
        except BadRequest:
            _refuse_foreign(payload, signature, elsewhere)
            raise
        return Batch([row], True, SINGLE_ROW_LABEL)

    if len(payload) != 1:
        extra = (k for k in payload if k != INSTANCES_KEY)
        raise BadRequest(
            f'expected only the key "{INSTANCES_KEY}" in a batch, got also {quoted_names(extra)}'
        )
    instances = payload[INSTANCES_KEY]
    if type(instances) is not list:
        raise BadRequest(
            f'expected "{INSTANCES_KEY}" to be a list of rows, got {describe(instances)}'
        )
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
                f"{where}: expected an object of features {list(signature.feature_names)} or a "
                f"list of {len(features)} values in that order, got {describe(instance)}"
            )
    return Batch(rows)


def _named_row(instance: dict, features: Sequence[Feature], where: str) -> list[Any]:
    try:
        values = [instance[feature.name] for feature in features]
    except KeyError:
        values = None
    if values is None or len(instance) != len(features):
        names = [feature.name for feature in features]
        raise BadRequest(
            f"{where + ': ' if where else ''}expected features {names}, "
            f"got {quoted_names(instance)}: {name_mismatch(names, instance)}"
        )
    return [feature.accept(value, where) for feature, value in zip(features, values)]


def _positional_row(instance: list, features: Sequence[Feature], where: str) -> list[Any]:
    if len(instance) != len(features):
        names = [feature.name for feature in features]
        raise BadRequest(
            f"{where}: expected {len(features)} {_values_word(features)} in the order {names}, "
            f"got {len(instance)}: {preview(instance)}"
        )
    return [feature.accept(value, where) for feature, value in zip(features, instance)]


def _values_word(features: Sequence[Feature]) -> str:
    return "numbers" if all(feature.type == NUMBER for feature in features) else "values"


def _refuse_foreign(
    payload: dict, signature: Signature, elsewhere: Sequence[tuple[str, str]]
) -> None:
    names = set(signature.feature_names)
    foreign = [key for key in payload if key in FOREIGN_KEYS and key not in names]
    if not foreign:
        return
    example = cut(json.dumps({INSTANCES_KEY: [dict(signature.example)]}), _EXAMPLE_CHARS)
    others = "".join(
        f", or {what} to {route.format(name=signature.name, version=signature.version)}"
        for what, route in elsewhere
    )
    raise BadRequest(
        f"expected the features {list(signature.feature_names)} as one object, or "
        f'{{"{INSTANCES_KEY}": [rows]}}, got a body keyed {quoted_names(foreign)} as another '
        f"server expects: send {example} here{others} (GET / shows the body this model takes)"
    )


def feature_schema(feature: Feature) -> dict[str, Any]:
    """The JSON Schema of one feature's value."""
    schema: dict[str, Any]
    if feature.type == STRING:
        schema = {"type": "string"}
    else:
        schema = {"type": "number", "description": feature.expected()}
    if feature.categories is not None:
        schema["enum"] = list(feature.categories)
    return schema


def request_schema(signature: Signature, max_rows: int) -> tuple[dict, dict[str, dict]]:
    """(the body's schema, the component schemas it refers to by name)."""
    features = signature.features
    row = {
        "type": "object",
        "description": "One row: the model's features by name.",
        "properties": {feature.name: feature_schema(feature) for feature in features},
        "required": [feature.name for feature in features],
        "additionalProperties": False,
    }
    positional = {
        "type": "array",
        "description": f"One row: the values of {[f.name for f in features]}, in that order.",
        "prefixItems": [feature_schema(feature) for feature in features],
        "items": False,
        "minItems": len(features),
        "maxItems": len(features),
    }
    batch = {
        "type": "object",
        "description": f"Up to {max_rows} rows, answered in order.",
        "properties": {
            INSTANCES_KEY: {
                "type": "array",
                "items": {"oneOf": [_ref(ROW_SCHEMA), _ref(POSITIONAL_ROW_SCHEMA)]},
                "minItems": 1,
                "maxItems": max_rows,
            }
        },
        "required": [INSTANCES_KEY],
        "additionalProperties": False,
    }
    body = {"oneOf": [_ref(ROW_SCHEMA), _ref(BATCH_SCHEMA)]}
    return _ref(REQUEST_SCHEMA), {
        ROW_SCHEMA: row,
        POSITIONAL_ROW_SCHEMA: positional,
        BATCH_SCHEMA: batch,
        REQUEST_SCHEMA: body,
    }


def request_examples(signature: Signature) -> dict[str, dict]:
    """OpenAPI example objects: one row, and a batch of the same row named and positional."""
    row = dict(signature.example)
    what = (
        "placeholders of the right types"
        if signature.example_is_placeholder
        else "the model's example row"
    )
    return {
        "one row": {"summary": f"One row ({what})", "value": row},
        "batch": {
            "summary": "A batch: rows by name or as values in feature order",
            "value": {INSTANCES_KEY: [row, signature.example_row()]},
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
