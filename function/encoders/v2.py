"""Open Inference Protocol V2, out: an inference response's tensors.

`{"model_name": ..., "model_version": ..., "id": <the request's, when given>, "outputs": [...]}`
with, for a classifier, `label` (`BYTES`, `[N]`: the most probable class) and `probabilities`
(`[N, C]`, columns in the order of the model's classes), for a regressor `prediction` (`[N]`);
numbers in the datatype the graph really gives (`FP32` or `FP64`), data flat in row-major order.
Only the outputs the request names, when it names some.
"""

from typing import Any, NamedTuple

from function.signature import CLASSIFICATION, FLOAT32, Batch, Prediction, Signature

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
PREDICTION_OUTPUT = "prediction"
CLASSIFIER_OUTPUTS = (LABEL_OUTPUT, PROBABILITIES_OUTPUT)
REGRESSOR_OUTPUTS = (PREDICTION_OUTPUT,)
RESPONSE_SCHEMA = "V2InferResponse"


class Context(NamedTuple):
    """What the encoder takes from the request (the decoder puts it in the batch's `context`):
    the id to echo, the outputs asked for (None: all of them)."""

    id: str | None
    outputs: tuple[str, ...] | None


def output_names(signature: Signature) -> tuple[str, ...]:
    return CLASSIFIER_OUTPUTS if signature.task == CLASSIFICATION else REGRESSOR_OUTPUTS


def numeric_datatype(dtype: str) -> str:
    return "FP32" if dtype == FLOAT32 else "FP64"


def output_metadata(signature: Signature) -> list[dict[str, Any]]:
    """The outputs as the model metadata lists them: name, datatype, shape (-1: any size)."""
    datatype = numeric_datatype(signature.output_dtype)
    if signature.task == CLASSIFICATION:
        return [
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {
                "name": PROBABILITIES_OUTPUT,
                "datatype": datatype,
                "shape": [-1, len(signature.classes)],
            },
        ]
    return [{"name": PREDICTION_OUTPUT, "datatype": datatype, "shape": [-1]}]


def encode(prediction: Prediction, batch: Batch, signature: Signature) -> dict[str, Any]:
    rows = len(batch.rows)
    datatype = numeric_datatype(prediction.dtype)
    if prediction.probabilities is not None:
        tensors = {
            LABEL_OUTPUT: {"datatype": "BYTES", "shape": [rows], "data": prediction.labels},
            PROBABILITIES_OUTPUT: {
                "datatype": datatype,
                "shape": [rows, len(signature.classes)],
                "data": [p for row in prediction.probabilities for p in row],
            },
        }
    else:
        tensors = {
            PREDICTION_OUTPUT: {"datatype": datatype, "shape": [rows], "data": prediction.values}
        }
    context = batch.context
    wanted = (context.outputs if context is not None else None) or tuple(tensors)
    body: dict[str, Any] = {"model_name": signature.name, "model_version": signature.version}
    if context is not None and context.id is not None:
        body["id"] = context.id
    body["outputs"] = [{"name": name, **tensors[name]} for name in wanted]
    return body


def answer_schema(signature: Signature) -> tuple[dict, dict[str, dict]]:
    """(the answer's schema, the component schemas it refers to by name)."""
    tensors = []
    for output in output_metadata(signature):
        element = {"type": "string"} if output["datatype"] == "BYTES" else {"type": "number"}
        if output["name"] == LABEL_OUTPUT:
            element = {"type": "string", "enum": list(signature.classes)}
        tensors.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": output["name"]},
                    "datatype": {"const": output["datatype"]},
                    "shape": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "minItems": len(output["shape"]),
                        "maxItems": len(output["shape"]),
                    },
                    "data": {"type": "array", "items": element},
                },
                "required": ["name", "datatype", "shape", "data"],
            }
        )
    body = {
        "type": "object",
        "properties": {
            "model_name": {"const": signature.name},
            "model_version": {"const": signature.version},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"oneOf": tensors}},
        },
        "required": ["model_name", "model_version", "outputs"],
    }
    return {"$ref": f"#/components/schemas/{RESPONSE_SCHEMA}"}, {RESPONSE_SCHEMA: body}


def answer_examples(signature: Signature) -> dict[str, dict]:
    """The model's real answer to the documented example row, as tensors."""
    prediction = signature.example_answer
    if prediction is None:
        return {}
    batch = Batch([signature.example_row()], False, "", Context("1", None))
    answer = encode(prediction, batch, signature)
    return {"one row": {"summary": "The answer to one row", "value": answer}}
