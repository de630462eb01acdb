"""Open Inference Protocol V2 (the REST dialect of KServe, MLServer and Triton), in: an
inference request's tensors.

`{"id": "...", "inputs": [{"name": <feature>, "datatype": "FP64", "shape": [N], "data": [...]},
...], "outputs": [{"name": "label"}], "parameters": {...}}`: one tensor per feature, named as the
feature, shape `[N]` or `[N, 1]`, data flat or nested; `FP32`, `FP64`, `INT32` or `INT64` for a
numeric feature, `BYTES` for a categorical one. Every feature, the same N for all. `id` and
`outputs` are optional and go to the encoder through the batch's `context`.

Only JSON tensors: the binary tensor extension (a body whose JSON header is followed by raw
tensors, `Inference-Header-Content-Length`; `binary_data` parameters) is refused with the way to
ask for JSON tensors, as is a request for binary outputs.
"""

from collections.abc import Iterable
from typing import Any

from function.decoders.seed import feature_schema
from function.encoders.v2 import Context, output_names
from function.errors import (
    BadRequest,
    PayloadTooLarge,
    ServiceError,
    cut,
    name_mismatch,
    quoted,
    quoted_names,
)
from function.schema import describe
from function.signature import FLOAT32, NUMBER, Batch, Feature, Signature

INPUTS_KEY = "inputs"
OUTPUTS_KEY = "outputs"
ID_KEY = "id"
PARAMETERS_KEY = "parameters"
REQUEST_KEYS = (ID_KEY, PARAMETERS_KEY, INPUTS_KEY, OUTPUTS_KEY)
TENSOR_KEYS = ("name", "datatype", "shape", "data", PARAMETERS_KEY)
BYTES = "BYTES"
# Integers must fit the declared width; floats are checked against the model's own range.
INTEGER_BOUNDS = {"INT32": 2**31, "INT64": 2**63}
NUMERIC_DATATYPES = ("FP32", "FP64", "INT32", "INT64")
ROW_LABEL = "row {} of the input tensors"
# The binary tensor extension's markers: the header, and the parameters that ask for it.
BINARY_HEADER = b"inference-header-content-length"
BINARY_SIZE_PARAMETER = "binary_data_size"
BINARY_OUTPUT_PARAMETER = "binary_data_output"
BINARY_DATA_PARAMETER = "binary_data"
JSON_TENSORS_ONLY = (
    "this server takes and gives JSON tensors only, not the binary tensor extension; with "
    "tritonclient, call set_data_from_numpy(array, binary_data=False) on each input and pass "
    "outputs=[InferRequestedOutput(name, binary_data=False), ...] naming the outputs wanted"
)
REQUEST_SCHEMA = "V2InferRequest"
# The protocol's parameters: `$parameter = $string : $string | $number | $boolean`. The bounds
# are this service's: far above what clients send (tritonclient and KServe's send one or two).
MAX_PARAMETERS = 64
MAX_PARAMETER_NAME_CHARS = 128
MAX_PARAMETER_STRING_CHARS = 1024
PARAMETER_TYPES = (str, int, float, bool)
_NO_PARAMETERS: dict[str, Any] = {}
PARAMETERS_SCHEMA = {
    "type": "object",
    "description": "Names to a string, a number or a boolean (the protocol's parameters).",
    "maxProperties": MAX_PARAMETERS,
    "propertyNames": {"maxLength": MAX_PARAMETER_NAME_CHARS},
    "additionalProperties": {
        "type": ["string", "number", "boolean"],
        "maxLength": MAX_PARAMETER_STRING_CHARS,
    },
}


def declared_datatype(feature: Feature) -> str:
    """The datatype the model metadata declares for a feature: the one its graph takes."""
    if feature.type != NUMBER:
        return BYTES
    return "FP32" if feature.dtype == FLOAT32 else "FP64"


def accepted_datatypes(feature: Feature) -> tuple[str, ...]:
    return NUMERIC_DATATYPES if feature.type == NUMBER else (BYTES,)


def refuse_binary_body(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """A body in the binary tensor extension is not JSON: refuse it before it is parsed."""
    for name, value in headers:
        if name == BINARY_HEADER:
            raise BadRequest(
                f"expected a JSON body, got binary tensors (Inference-Header-Content-Length: "
                f"{quoted(value.decode('latin-1'))}): {JSON_TENSORS_ONLY}"
            )


def decode(payload: Any, signature: Signature, max_rows: int) -> Batch:
    if type(payload) is not dict:
        raise BadRequest(
            f'expected a JSON object with "{INPUTS_KEY}": [tensors], got {describe(payload)}'
        )
    unexpected = [key for key in payload if key not in REQUEST_KEYS]
    if unexpected:
        raise BadRequest(
            f"expected only the keys {list(REQUEST_KEYS)} in an inference request, got also "
            f"{quoted_names(unexpected)}"
        )
    request_id = payload.get(ID_KEY)
    if request_id is not None and type(request_id) is not str:
        raise BadRequest(f'expected "{ID_KEY}" to be a string, got {describe(request_id)}')
    parameters = _parameters(payload, "the request")
    if parameters.get(BINARY_OUTPUT_PARAMETER):
        raise BadRequest(
            f'expected JSON outputs, got parameters {{"{BINARY_OUTPUT_PARAMETER}": true}} '
            f"(tritonclient sends it when no outputs are named): {JSON_TENSORS_ONLY}"
        )
    tensors = _tensors(payload, signature)
    rows_count = _rows_count(tensors, max_rows)
    columns = [
        _column(tensors[feature.name], feature, rows_count) for feature in signature.features
    ]
    rows = [list(row) for row in zip(*columns)]
    outputs = _outputs(payload.get(OUTPUTS_KEY), signature)
    return Batch(rows, False, ROW_LABEL, Context(request_id, outputs))


def _parameters(holder: dict, where: str) -> dict:
    """The holder's `parameters` as the protocol defines them: a flat object of names to a
    string, a number or a boolean; bounded, so that what a client may send is no larger than
    what any server of the protocol reads there."""
    parameters = holder.get(PARAMETERS_KEY)
    if parameters is None:
        return _NO_PARAMETERS
    if type(parameters) is not dict:
        raise BadRequest(
            f'{where}: expected "{PARAMETERS_KEY}" to be an object, got {describe(parameters)}'
        )
    if len(parameters) > MAX_PARAMETERS:
        raise BadRequest(
            f'{where}: expected at most {MAX_PARAMETERS} "{PARAMETERS_KEY}", got {len(parameters)}'
        )
    for name, value in parameters.items():
        if len(name) > MAX_PARAMETER_NAME_CHARS:
            raise BadRequest(
                f'{where}: expected "{PARAMETERS_KEY}" named in at most '
                f"{MAX_PARAMETER_NAME_CHARS} characters, got {len(name)}: {quoted(name)}"
            )
        kind = type(value)
        if kind is str:
            if len(value) > MAX_PARAMETER_STRING_CHARS:
                raise BadRequest(
                    f"{where}: expected parameter {quoted(name)} to be a string of at most "
                    f"{MAX_PARAMETER_STRING_CHARS} characters, got {len(value)}"
                )
        elif kind not in PARAMETER_TYPES:
            raise BadRequest(
                f"{where}: expected parameter {quoted(name)} to be a string, a number or a "
                f"boolean, got {describe(value)}"
            )
    return parameters


def _tensors(payload: dict, signature: Signature) -> dict[str, dict]:
    """The input tensors by name, exactly one per feature, each well-formed but its data."""
    names = list(signature.feature_names)
    inputs = payload.get(INPUTS_KEY)
    if type(inputs) is not list or not inputs:
        raise BadRequest(
            f'expected "{INPUTS_KEY}" to be a list of tensors, one per feature {names}, got '
            f"{'nothing' if inputs is None else describe(inputs)}"
        )
    tensors: dict[str, dict] = {}
    for index, tensor in enumerate(inputs):
        where = f"{INPUTS_KEY}[{index}]"
        if type(tensor) is not dict or type(tensor.get("name")) is not str:
            raise BadRequest(
                f'{where}: expected a tensor object with a "name" among {names}, '
                f"got {describe(tensor)}"
            )
        name = tensor["name"]
        if name in tensors:
            raise BadRequest(f"expected one input tensor per feature, got {quoted(name)} twice")
        tensors[name] = tensor
    if set(tensors) != set(names):
        raise BadRequest(
            f"expected one input tensor per feature, named {names}, got "
            f"{quoted_names(tensors)}: {name_mismatch(names, tensors)}"
        )
    for feature in signature.features:
        _check_tensor(tensors[feature.name], feature)
    return tensors


def _check_tensor(tensor: dict, feature: Feature) -> None:
    where = f"input {quoted(feature.name)}"
    unexpected = [key for key in tensor if key not in TENSOR_KEYS]
    if unexpected:
        raise BadRequest(
            f"{where}: expected only the keys {list(TENSOR_KEYS)}, got also "
            f"{quoted_names(unexpected)}"
        )
    parameters = _parameters(tensor, where)
    if BINARY_SIZE_PARAMETER in parameters:
        raise BadRequest(f"{where}: expected JSON data, got binary data: {JSON_TENSORS_ONLY}")
    datatype = tensor.get("datatype")
    accepted = accepted_datatypes(feature)
    if datatype not in accepted:
        got = quoted(datatype) if type(datatype) is str else describe(datatype)
        raise BadRequest(
            f"{where}: expected datatype {' or '.join(accepted)} for a {feature.type} feature, "
            f"got {got}"
        )
    shape = tensor.get("shape")
    if not (
        type(shape) is list
        and len(shape) in (1, 2)
        and all(type(size) is int and size >= 0 for size in shape)
        and shape[1:] in ([], [1])
    ):
        raise BadRequest(
            f"{where}: expected shape [N] or [N, 1] (one value per row), got {describe(shape)}"
        )
    if type(tensor.get("data")) is not list:
        raise BadRequest(
            f'{where}: expected "data" to be a list of {shape[0]} values, '
            f"got {describe(tensor.get('data'))}"
        )


def _rows_count(tensors: dict[str, dict], max_rows: int) -> int:
    counts = {name: tensor["shape"][0] for name, tensor in tensors.items()}
    found = set(counts.values())
    if len(found) > 1:
        shown = ", ".join(f"{quoted(name)}: {count}" for name, count in counts.items())
        raise BadRequest(
            f"expected every input tensor to have the same number of rows (first dimension of "
            f"its shape), got {cut(shown, 240)}"
        )
    (count,) = found
    if count == 0:
        raise BadRequest("expected at least 1 row in the input tensors, got shape [0]")
    if count > max_rows:
        raise PayloadTooLarge(
            f"expected at most {max_rows} rows in the input tensors, got {count}"
        )
    return count


def _column(tensor: dict, feature: Feature, count: int) -> list[Any]:
    """The tensor's values, checked as the model takes them, one per row."""
    name = feature.name
    where = f"input {quoted(name)}"
    data = tensor["data"]
    if len(data) != count:
        raise BadRequest(
            f"{where}: expected {count} values for shape {tensor['shape']}, got {len(data)}"
        )
    if len(tensor["shape"]) == 2 and data and type(data[0]) is list:
        if not all(type(item) is list and len(item) == 1 for item in data):
            bad = next(i for i, item in enumerate(data) if type(item) is not list or len(item) != 1)
            raise BadRequest(
                f"{where} data[{bad}]: expected [value] as the shape is {tensor['shape']}, "
                f"got {describe(data[bad])}"
            )
        data = [item[0] for item in data]
    bound = INTEGER_BOUNDS.get(tensor["datatype"])
    column = []
    for index, value in enumerate(data):
        if bound is not None and not (type(value) is int and -bound <= value < bound):
            raise BadRequest(
                f"{where} data[{index}]: expected an integer of datatype {tensor['datatype']}, "
                f"got {describe(value)}"
            )
        try:
            column.append(feature.accept(value, ""))
        except ServiceError as error:
            # accept() names the feature first; say which element of which tensor instead.
            detail = error.message.removeprefix(name)
            raise type(error)(f"{where} data[{index}]{detail}") from None
    return column


def _outputs(requested: Any, signature: Signature) -> tuple[str, ...] | None:
    if requested is None:
        return None
    known = output_names(signature)
    if type(requested) is not list:
        raise BadRequest(
            f'expected "{OUTPUTS_KEY}" to be a list of {{"name": ...}} among {list(known)}, '
            f"got {describe(requested)}"
        )
    names: list[str] = []
    for index, output in enumerate(requested):
        where = f"{OUTPUTS_KEY}[{index}]"
        name = output.get("name") if type(output) is dict else None
        if name not in known:
            got = quoted(name) if type(name) is str else describe(output)
            raise BadRequest(f"{where}: expected an output named one of {list(known)}, got {got}")
        if _parameters(output, where).get(BINARY_DATA_PARAMETER):
            raise BadRequest(
                f'{where}: expected a JSON output, got parameters {{"{BINARY_DATA_PARAMETER}": '
                f"true}} (tritonclient's default for InferRequestedOutput): {JSON_TENSORS_ONLY}"
            )
        if name not in names:
            names.append(name)
    return tuple(names) or None


def request_schema(signature: Signature, max_rows: int) -> tuple[dict, dict[str, dict]]:
    """(the body's schema, the component schemas it refers to by name)."""
    tensors = [_tensor_schema(feature, max_rows) for feature in signature.features]
    body = {
        "type": "object",
        "description": "One input tensor per feature, named as the feature, each with the same "
        f"number of rows N (at most {max_rows}). JSON tensors only.",
        "properties": {
            ID_KEY: {"type": "string", "description": "Echoed in the answer."},
            PARAMETERS_KEY: PARAMETERS_SCHEMA,
            INPUTS_KEY: {
                "type": "array",
                "items": {"oneOf": tensors},
                "minItems": len(tensors),
                "maxItems": len(tensors),
            },
            OUTPUTS_KEY: {
                "type": "array",
                "description": "The outputs wanted (all when absent).",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"enum": list(output_names(signature))},
                        PARAMETERS_KEY: PARAMETERS_SCHEMA,
                    },
                    "required": ["name"],
                },
            },
        },
        "required": [INPUTS_KEY],
        "additionalProperties": False,
    }
    return {"$ref": f"#/components/schemas/{REQUEST_SCHEMA}"}, {REQUEST_SCHEMA: body}


def _tensor_schema(feature: Feature, max_rows: int) -> dict[str, Any]:
    value = feature_schema(feature)
    rows = {"type": "integer", "minimum": 1, "maximum": max_rows}
    return {
        "type": "object",
        "description": f"Feature {feature.name!r} ({feature.type}), one value per row.",
        "properties": {
            "name": {"const": feature.name},
            "datatype": {"enum": list(accepted_datatypes(feature))},
            "shape": {
                "oneOf": [
                    {"type": "array", "prefixItems": [rows], "items": False, "minItems": 1},
                    {
                        "type": "array",
                        "prefixItems": [rows, {"const": 1}],
                        "items": False,
                        "minItems": 2,
                    },
                ]
            },
            "data": {
                "type": "array",
                "items": {
                    "oneOf": [
                        value,
                        {"type": "array", "items": value, "minItems": 1, "maxItems": 1},
                    ]
                },
                "minItems": 1,
                "maxItems": max_rows,
            },
            PARAMETERS_KEY: PARAMETERS_SCHEMA,
        },
        "required": ["name", "datatype", "shape", "data"],
        "additionalProperties": False,
    }


def request_examples(signature: Signature) -> dict[str, dict]:
    """OpenAPI example objects: the example row as tensors, once and twice."""

    def tensors(rows: int) -> list[dict[str, Any]]:
        return [
            {
                "name": feature.name,
                "datatype": declared_datatype(feature),
                "shape": [rows],
                "data": [signature.example[feature.name]] * rows,
            }
            for feature in signature.features
        ]

    return {
        "one row": {"summary": "One row", "value": {ID_KEY: "1", INPUTS_KEY: tensors(1)}},
        "two rows": {"summary": "A batch of two rows", "value": {INPUTS_KEY: tensors(2)}},
    }
