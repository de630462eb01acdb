"""The OpenAPI 3.1 document of the service as it is now: built from the loaded model's signature
and the router's routes, each of which describes itself with an `Operation`.

A new route, in any dialect, documents itself by giving its `Route` an `operation` function;
nothing here changes. Schemas that operations name go into `components.schemas`.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from function.routes import Route
from function.settings import Settings
from function.signature import Signature

OPENAPI_VERSION = "3.1.0"
ERROR_SCHEMA = "Error"
JSON = "application/json"
# What each error status means here; an operation lists the ones it can answer.
ERROR_DESCRIPTIONS = {
    400: "The body is not what this route takes; `error` says what was expected and what came.",
    404: "No such path, or not this model's name or version.",
    405: "The path does not take this method (the Allow header lists those it takes).",
    413: "The body, or the batch, is over its limit.",
    415: "The body is not JSON (send Content-Type: application/json).",
    422: "Well-formed values the model cannot take or answer: an unknown category, a number out "
    "of its range, an answer that is not finite.",
    503: "The model cannot be loaded now; Retry-After says when the next attempt is.",
}
PREDICT_ERRORS = (400, 404, 405, 413, 415, 422, 503)
SchemaWithComponents = tuple[dict, Mapping[str, dict]]


@dataclass(frozen=True)
class Operation:
    """One route in the document. `answer` and `request` are (schema, component schemas)."""

    summary: str
    answer: SchemaWithComponents
    description: str = ""
    tag: str = "model"
    answer_media_type: str = JSON
    answer_examples: Mapping[str, Any] = field(default_factory=dict)
    request: SchemaWithComponents | None = None
    request_examples: Mapping[str, Any] = field(default_factory=dict)
    errors: tuple[int, ...] = ()


def document(signature: Signature, routes: Iterable[Route], settings: Settings) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        ERROR_SCHEMA: {
            "type": "object",
            "description": "Every refusal: what was expected, and what was received.",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        }
    }
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.operation is None:
            continue
        operation = route.operation(signature, settings)
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, operation, signature, schemas
        )
    described = "classifier" if signature.classes else "regressor"
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"{signature.name} ({signature.task})",
            "version": signature.version,
            "description": (
                f"A scikit-learn {described} exported to ONNX, served as model "
                f"`{signature.name}` version `{signature.version}`. Its features: "
                + ", ".join(f"`{f.name}` ({f.type})" for f in signature.features)
                + "."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _operation(
    route: Route, operation: Operation, signature: Signature, schemas: dict[str, Any]
) -> dict[str, Any]:
    answer_schema, components = operation.answer
    schemas.update(components)
    success: dict[str, Any] = {"schema": answer_schema}
    if operation.answer_examples:
        success["examples"] = dict(operation.answer_examples)
    described: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": operation.summary,
        "tags": [operation.tag],
        "responses": {
            "200": {
                "description": operation.summary,
                "content": {operation.answer_media_type: success},
            },
            **{
                str(status): {
                    "description": ERROR_DESCRIPTIONS[status],
                    "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}},
                }
                for status in operation.errors
            },
        },
    }
    if operation.description:
        described["description"] = operation.description
    if route.parameters:
        values = {"name": signature.name, "version": signature.version}
        described["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {
                    "type": "string",
                    **({"enum": [values[name]]} if name in values else {}),
                },
            }
            for name in route.parameters
        ]
    if operation.request is not None:
        request_schema, components = operation.request
        schemas.update(components)
        content: dict[str, Any] = {"schema": request_schema}
        if operation.request_examples:
            content["examples"] = dict(operation.request_examples)
        described["requestBody"] = {"required": True, "content": {JSON: content}}
    return described


def _operation_id(route: Route) -> str:
    words = re.findall(r"[A-Za-z0-9]+", route.path) or ["root"]
    if route.path.endswith("/") and route.path != "/":
        words.append("slash")  # /inference and /inference/ are two routes
    return route.method.lower() + "_" + "_".join(words)
