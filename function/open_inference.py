"""The routes of the Open Inference Protocol V2 (KServe, MLServer, Triton), so that their
clients and tooling work unchanged:

    GET  /v2                                   server metadata: name, version, extensions
    GET  /v2/health/live, /v2/health/ready     200 while live / once the model is loaded
    GET  /v2/models/{name}[/versions/{version}]          model metadata: inputs, outputs
    GET  /v2/models/{name}[/versions/{version}]/ready    200 once that model is loaded
    POST /v2/models/{name}[/versions/{version}]/infer    tensors in, tensors out

`{name}` is the model's name from its metadata (`model`, for a file without one), `{version}`
its version; any other is a 404. Requests and answers are written by `function.decoders.v2`
and `function.encoders.v2`; the model runs as for every dialect.
"""

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from function.decoders import v2 as v2_decoder
from function.encoders import v2 as v2_encoder
from function.openapi import PREDICT_ERRORS, Operation
from function.routes import Endpoint, Route
from function.settings import Settings
from function.signature import Signature

if TYPE_CHECKING:
    from function.app import Service

SERVER_PATH = "/v2"
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
MODEL_PATH = "/v2/models/{name}"
VERSION_PATH = "/v2/models/{name}/versions/{version}"
MODEL_PATHS = (MODEL_PATH, VERSION_PATH)
MODEL_READY_PATHS = tuple(f"{path}/ready" for path in MODEL_PATHS)
INFER_PATHS = tuple(f"{path}/infer" for path in MODEL_PATHS)
SERVER_NAME = "inference-on-secure-cloud-run"
# The service has no release number of its own: it names the version of the protocol it speaks.
SERVER_VERSION = "2"
# No extension: binary tensors are refused, models are not loaded or listed on demand.
EXTENSIONS: tuple[str, ...] = ()
# Triton's name for a model run by ONNX Runtime.
PLATFORM = "onnxruntime_onnx"
TAKES = "Open Inference Protocol V2 tensors"
TAG = "open inference protocol v2"


def routes(service: "Service") -> list[Route]:
    """Every V2 route, in the order the documentation lists them."""
    predict = service.prediction_endpoint(
        v2_decoder.decode, v2_encoder, json_content_type=False
    )

    async def infer(request: Request) -> Response:
        v2_decoder.refuse_binary_body(request.scope["headers"])
        return await predict(request)

    async def server(request: Request) -> Response:
        return _json(server_metadata())

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        await service.model_for(request)
        return _json({"ready": True})

    async def model(request: Request) -> Response:
        found = await service.model_for(request)
        return _json(model_metadata(found.signature))

    async def model_ready(request: Request) -> Response:
        found = await service.model_for(request)
        return _json({"name": found.name, "ready": True})

    def each(paths: tuple[str, ...], method: str, endpoint: Endpoint, operation: Any) -> list:
        return [
            # The unversioned route is the one a body sent to the seed's routes is pointed to.
            Route(path, method, endpoint, operation, TAKES if path == INFER_PATHS[0] else None)
            for path in paths
        ]

    return [
        *each(INFER_PATHS, "POST", infer, _infer_operation),
        *each(MODEL_PATHS, "GET", model, _model_operation),
        *each(MODEL_READY_PATHS, "GET", model_ready, _model_ready_operation),
        Route(SERVER_PATH, "GET", server, _server_operation),
        Route(LIVE_PATH, "GET", live, _live_operation),
        Route(READY_PATH, "GET", ready, _ready_operation),
    ]


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


def model_metadata(signature: Signature) -> dict[str, Any]:
    """Each input with the datatype its graph takes (`FP32`/`FP64`, `BYTES` for a category; any
    numeric datatype is accepted) and shape `[-1]` (`[N, 1]` is accepted too); the outputs."""
    return {
        "name": signature.name,
        "versions": [signature.version],
        "platform": PLATFORM,
        "inputs": [
            {
                "name": feature.name,
                "datatype": v2_decoder.declared_datatype(feature),
                "shape": [-1],
            }
            for feature in signature.features
        ],
        "outputs": v2_encoder.output_metadata(signature),
    }


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


_TENSOR_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["name", "datatype", "shape"],
}


def _infer_operation(signature: Signature, settings: Settings) -> Operation:
    outputs = ", ".join(f"`{name}`" for name in v2_encoder.output_names(signature))
    return Operation(
        summary="Predict with Open Inference Protocol V2 tensors",
        description="One input tensor per feature, named as the feature, of shape [N] or "
        "[N, 1]; FP32, FP64, INT32 or INT64 for a numeric feature, BYTES for a categorical one. "
        f"Answers the outputs {outputs} (those named in `outputs`, when given). JSON tensors "
        "only: the binary tensor extension is refused. A missing Content-Type is taken as JSON.",
        tag=TAG,
        request=v2_decoder.request_schema(signature, settings.max_batch_rows),
        request_examples=v2_decoder.request_examples(signature),
        answer=v2_encoder.answer_schema(signature),
        answer_examples=v2_encoder.answer_examples(signature),
        errors=PREDICT_ERRORS,
    )


def _model_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="V2 model metadata: the inputs with their datatypes and shapes, the outputs",
        tag=TAG,
        answer=(
            {
                "type": "object",
                "properties": {
                    "name": {"const": signature.name},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": _TENSOR_METADATA},
                    "outputs": {"type": "array", "items": _TENSOR_METADATA},
                },
                "required": ["name", "platform", "inputs", "outputs"],
            },
            {},
        ),
        answer_examples={"this model": {"value": model_metadata(signature)}},
        errors=(404, 503),
    )


def _status_answer(key: str, **properties: dict) -> tuple[dict, dict]:
    return (
        {
            "type": "object",
            "properties": {**properties, key: {"const": True}},
            "required": [*properties, key],
        },
        {},
    )


def _model_ready_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="V2 model readiness: 200 once the model is loaded, 503 until then",
        tag=TAG,
        answer=_status_answer("ready", name={"const": signature.name}),
        errors=(404, 503),
    )


def _server_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="V2 server metadata: name, version and protocol extensions",
        tag=TAG,
        answer=(
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "extensions": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name", "version", "extensions"],
            },
            {},
        ),
        answer_examples={"this server": {"value": server_metadata()}},
    )


def _live_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="V2 liveness: 200 while the process serves", tag=TAG, answer=_status_answer("live")
    )


def _ready_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="V2 readiness: 200 once the model is loaded (loading it if needed), 503 until then",
        tag=TAG,
        answer=_status_answer("ready"),
        errors=(503,),
    )
