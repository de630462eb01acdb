"""The HTTP side: routes, request bodies, answers and the one place errors become JSON.

`create_predict()` returns the async function that `main.py` registers with
`functions_framework.aio.http`, so functions-framework serves it with Starlette under uvicorn.
Each prediction route is a dialect: a decoder module turns its body into a `Batch` typed by the
model's signature, the model answers with a `Prediction`, an encoder module writes the answer
(`function.decoders`, `function.encoders`). Every route describes itself for /openapi.json.
"""

import asyncio
import functools
import gc
import math
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from function import docs, open_inference, openapi
from function._log import TRACE_HEADER, log
from function.coalesce import Coalescer
from function.deadline import BodyDeadlines
from function.decoders import seed as seed_decoder
from function.encoders import seed as seed_encoder
from function.duplicates import refuse_duplicate_keys
from function.errors import (
    INVALID_MODEL,
    BadRequest,
    MethodNotAllowed,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
    cut,
    first_line,
    quoted,
)
from function.model import LazyModel, Model, load_model
from function.openapi import PREDICT_ERRORS, Operation
from function.prediction_log import MESSAGE as PREDICTION_MESSAGE
from function.prediction_log import entry_fields
from function.routes import (
    DOCS_PATH,
    HEALTH_PATH,
    METADATA_PATH,
    OPENAPI_PATH,
    PREDICT_PATHS,
    READY_PATH,
    Endpoint,
    Route,
    Router,
)
from function.settings import Settings
from function.signature import Signature

__all__ = [  # the routes, importable from here as from function.routes
    "DOCS_PATH",
    "HEALTH_PATH",
    "METADATA_PATH",
    "OPENAPI_PATH",
    "PREDICT_PATHS",
    "READY_PATH",
    "Service",
    "create_predict",
]

VERSION_HEADER = "X-Model-Version"
PRIMARY_PREDICT_PATH = "/predict"
JSON_MEDIA_TYPE = "application/json"
_JSON_CONTENT_TYPE = JSON_MEDIA_TYPE.encode()

# A Content-Length of more digits is over any limit; int() of thousands of digits is slow.
_MAX_LENGTH_DIGITS = 18
# Collections of the youngest generation once per this many new container objects, not 700:
# under load the default collects every few requests, for nothing that lives past one.
GC_YOUNGEST_THRESHOLD = 20_000


def create_predict(settings: Settings | None = None) -> Callable[[Request], Awaitable[Response]]:
    """The `predict` function; settings default to the environment, read now."""
    service = Service(settings or Settings.from_env())

    async def predict(request: Request) -> Response:
        return await service.handle(request)

    return predict


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.model = LazyModel(self._load)
        self.router = Router(self._routes())
        # Other dialects' prediction routes, named in the hint to a body meant for them.
        self._elsewhere = tuple(
            (route.takes, f"{route.method} {route.path}")
            for route in self.router.routes
            if route.takes
        )
        self._openapi: tuple[Model, bytes] | None = None
        self._coalescer: Coalescer | None = None
        self._body_deadlines = BodyDeadlines(settings.body_read_timeout)

    def _routes(self) -> list[Route]:
        """Every route, in the order the documentation lists them."""
        seed = self.prediction_endpoint(self._decode_seed, seed_encoder)
        # /predict first: the document lists it as the route, the others as its aliases.
        paths = sorted(PREDICT_PATHS, key=lambda path: path != PRIMARY_PREDICT_PATH)
        predict = [
            Route(path, "POST", seed, _seed_operation(path == PRIMARY_PREDICT_PATH))
            for path in paths
        ]
        described = [
            Route(METADATA_PATH, "GET", self._metadata, _metadata_operation),
            Route(OPENAPI_PATH, "GET", self._openapi_document, _openapi_operation),
            Route(DOCS_PATH, "GET", self._docs_page, _docs_operation),
            Route(HEALTH_PATH, "GET", self._health, _health_operation),
            Route(READY_PATH, "GET", self._ready, _ready_operation),
        ]
        assets = [Route(path, "GET", self._docs_asset) for path in docs.ASSET_PATHS]
        return [*predict, *described, *open_inference.routes(self), *assets]

    async def handle(self, request: Request) -> Response:
        scope = request.scope
        try:
            found = self.router.match(scope["path"])
            if found is None:
                raise NotFound(
                    f"expected one of the paths {self.router.paths}, got {quoted(scope['path'])}"
                )
            methods, params = found
            route = methods.get(scope["method"])
            if route is None:
                raise MethodNotAllowed(
                    f"expected {' or '.join(methods)} on {cut(scope['path'])}, "
                    f"got {cut(scope['method'])}",
                    allowed=tuple(methods),
                )
            if params:
                scope["path_params"] = params
            return await route.endpoint(request)
        except ServiceError as error:
            return _json({"error": error.message}, error.status, self._error_headers(error.headers))
        except ClientDisconnect:
            # Nobody is left to answer; not the server's fault, so no traceback.
            log(
                "INFO",
                f"client disconnected before sending the whole body of {scope['method']} "
                f"{cut(scope['path'])}",
                project=self.settings.project,
                trace_header=request.headers.get(TRACE_HEADER),
            )
            return _json({"error": "client disconnected"}, 400, self._error_headers())
        except Exception as error:  # the server's own fault: say so, keep serving
            log(
                "ERROR",
                f"unhandled error on {scope['method']} {scope['path']}: {error!r}",
                project=self.settings.project,
                trace_header=request.headers.get(TRACE_HEADER),
                traceback=traceback.format_exc(),
            )
            return _json(
                {"error": "internal error; see the service's logs"}, 500, self._error_headers()
            )

    def _error_headers(self, headers: dict[str, str] | None = None) -> dict[str, str] | None:
        """An error's headers, with the model's version once one is loaded: during a canary, a
        refusal is traced to the arm that gave it."""
        model = self.model.loaded
        if model is None:
            return headers
        return {**(headers or {}), VERSION_HEADER: model.version}

    def prediction_endpoint(
        self,
        decode: Callable[[Any, Signature, int], Any],
        encoder: ModuleType,
        *,
        json_content_type: bool = True,
    ) -> Endpoint:
        """A POST endpoint for one dialect: `decode(payload, signature, max_rows) -> Batch`, then
        the model, then `encoder.encode(prediction, batch, signature)`. `json_content_type`:
        refuse a body not declared as JSON (some clients of other dialects declare none)."""

        encode = encoder.encode
        max_rows = self.settings.max_batch_rows
        rate = self.settings.prediction_log_rate

        async def endpoint(request: Request) -> Response:
            body = await self._read_json_body(request, require_content_type=json_content_type)
            # Inline rather than `await self.model_for()`: a coroutine less on the hot path.
            model = self.model.loaded
            if model is None:
                _parse_json(body, request.scope["headers"])  # bad JSON is a 400 all the same
                model = await self._ready_model(request)
            signature = model.signature
            params = request.scope.get("path_params")
            if params:
                _check_path(params, signature)
            # Parsed only now, and the parse dropped as soon as decoded: from here on the request
            # holds its typed rows only, not a parsed body many times the size of its bytes.
            batch = decode(_parse_json(body, request.scope["headers"]), signature, max_rows)
            del body
            if len(batch.rows) == 1:
                # One row waits for the others arriving with it, to go through the model with
                # them; a batch goes through as it is.
                output = await self.coalescer(model).output(batch.rows[0])
                prediction = model.prediction([output], batch, math.isfinite(sum(output)))
            else:
                prediction = model.predict(batch)
            body = encode(prediction, batch, signature)
            if rate and random.random() < rate:
                self._log_prediction(request, signature, batch, prediction)
            return _JSONResponse(orjson.dumps(body), 200, None, _version_header(signature.version))

        return endpoint

    def coalescer(self, model: Model) -> Coalescer:
        """The coalescer of single rows for `model`: the tests read its counts."""
        coalescer = self._coalescer
        if coalescer is None or coalescer.model is not model:
            coalescer = self._coalescer = Coalescer(model)
        return coalescer

    def _decode_seed(self, payload: Any, signature: Signature, max_rows: int) -> Any:
        return seed_decoder.decode(payload, signature, max_rows, elsewhere=self._elsewhere)

    async def model_for(self, request: Request) -> Model:
        """The loaded model, if it is the one the path names (`{name}`, `{version}`); else 404.
        Every route of a dialect that names the model in its path gets the model from here."""
        model = await self._ready_model(request)
        params = request.scope.get("path_params")
        if params:
            _check_path(params, model.signature)
        return model

    def _log_prediction(
        self, request: Request, signature: Signature, batch: Any, prediction: Any
    ) -> None:
        log(
            "INFO",
            PREDICTION_MESSAGE,
            project=self.settings.project,
            trace_header=request.headers.get(TRACE_HEADER),
            route=f"{request.scope['method']} {cut(request.scope['path'])}",
            **entry_fields(signature, batch, prediction),
        )

    async def _metadata(self, request: Request) -> Response:
        model = await self._ready_model(request)
        body = {
            **model.metadata,
            "max_batch_rows": self.settings.max_batch_rows,
            "how_to_call": _how_to_call(model.signature, self.router.routes, self.settings),
        }
        return _json(body, headers={VERSION_HEADER: model.version})

    async def _openapi_document(self, request: Request) -> Response:
        model = await self._ready_model(request)
        cached = self._openapi
        if cached is None or cached[0] is not model:
            document = openapi.document(model.signature, self.router.routes, self.settings)
            cached = self._openapi = (model, orjson.dumps(document))
        return _JSONResponse(cached[1], 200, {VERSION_HEADER: model.version})

    async def _docs_page(self, request: Request) -> Response:
        return _RawResponse(
            docs.PAGE,
            docs.HTML_MEDIA_TYPE,
            {"Content-Security-Policy": docs.CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
        )

    async def _docs_asset(self, request: Request) -> Response:
        content, media_type = docs.asset(docs.ASSET_PATHS[request.scope["path"]])
        return _RawResponse(content, media_type, {"Cache-Control": docs.ASSET_CACHE_CONTROL})

    async def _health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def _ready(self, request: Request) -> Response:
        try:
            model = await self._ready_model(request)
        except ModelUnavailable as error:
            body: dict[str, object] = {"error": error.message}
            if error.retry_after is not None:
                body["next_attempt_in_seconds"] = round(error.retry_after, 1)
            return _json(body, error.status, error.headers)
        return _json(
            {"status": "ready", "model_version": model.version},
            headers={VERSION_HEADER: model.version},
        )

    async def _ready_model(self, request: Request) -> Model:
        model = self.model.loaded
        if model is None:
            # Cold path only: the load runs in its own thread, shared by every waiting request.
            attempt = self.model.attempt(request.headers.get(TRACE_HEADER))
            model = await asyncio.wrap_future(attempt)
        return model

    def _load(self, trace: str | None) -> Model:
        uri = self.settings.model_uri
        started = time.perf_counter()
        try:
            model = load_model(uri, self.settings.model_load_timeout, self.settings.model_max_bytes)
        except Exception as error:
            unexpected = not isinstance(error, ModelUnavailable)
            if unexpected:
                error = ModelUnavailable(
                    f"cannot load model {uri}: {type(error).__name__}: {first_line(error)}",
                    kind=INVALID_MODEL,
                )
            log(
                "ERROR",
                error.detail,
                project=self.settings.project,
                trace_header=trace,
                model_uri=uri,
                cause=error.kind,
                seconds=round(time.perf_counter() - started, 3),
                **({"traceback": traceback.format_exc()} if unexpected else {}),
            )
            raise error from None
        log(
            "INFO",
            f"model loaded from {uri}",
            project=self.settings.project,
            trace_header=trace,
            model_uri=uri,
            model_name=model.name,
            model_version=model.version,
            task=model.signature.task,
            seconds=round(time.perf_counter() - started, 3),
        )
        _settle_heap()
        return model

    async def _read_json_body(
        self, request: Request, *, require_content_type: bool = True
    ) -> bytes:
        """The body of a request that must carry JSON, not yet parsed (`_parse_json`)."""
        # The raw ASGI headers, not request.headers: one pass, no mapping built per request.
        content_type = content_length = None
        for name, value in request.scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
        if content_type != _JSON_CONTENT_TYPE:  # the common case in one comparison
            _check_content_type(content_type, require_content_type)
        body = await self._read_body(request, content_length)
        if not body:
            raise BadRequest("expected a JSON body, got an empty body")
        return body

    async def _read_body(self, request: Request, declared: bytes | None) -> bytes:
        limit = self.settings.max_body_bytes
        if declared is not None:
            # bytes.isdigit() accepts ASCII digits only, whatever HTTP parser ran before.
            if not declared.isdigit():
                raise BadRequest(
                    f"expected a Content-Length of ASCII digits, got "
                    f"{quoted(declared.decode('latin-1'))}"
                )
            if len(declared) > _MAX_LENGTH_DIGITS:
                declared = declared.lstrip(b"0") or b"0"  # HTTP allows leading zeros
            if len(declared) > _MAX_LENGTH_DIGITS or int(declared) > limit:
                raise PayloadTooLarge(_too_large(limit, cut(declared.decode("latin-1"))))
        # The ASGI messages themselves, not Starlette's request.body(): a few microseconds less a
        # request, and the limit applies to a body of no declared length as it arrives.
        receive = request.receive
        chunks, size = [], 0
        deadlines = self._body_deadlines
        ticket = deadlines.start()
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(_too_large(limit, "more"))
                if not message.get("more_body", False):
                    if not chunks:
                        return chunk
                    chunks.append(chunk)
                    return b"".join(chunks)
                chunks.append(chunk)
        except asyncio.CancelledError:
            deadlines.raise_if_cut(ticket)
            raise
        finally:
            deadlines.finish(ticket)


def _parse_json(body: bytes, headers: list[tuple[bytes, bytes]]) -> object:
    try:
        # orjson refuses NaN, Infinity, invalid UTF-8 and nesting past 1024 levels.
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        _refuse_content_encoding(headers)
        raise BadRequest(f"expected a JSON body, got invalid JSON: {error}") from None
    # orjson keeps the last of a key given twice, where another reader (a WAF) may judge the
    # first. Each key of the body has its colon: an object with as many keys as the body has
    # colons (a row, a batch of rows as lists) lost none, and holds no other object. Otherwise,
    # without escapes in the body every colon of it is a key's or a string's, and the payload
    # written back has as many unless a key was dropped: then, and for a body with escapes, the
    # body is read again for a key given twice.
    colons = body.count(b":")
    if type(payload) is dict and len(payload) == colons:
        return payload
    if colons and (b"\\" in body or _colons_written(payload) != colons):
        refuse_duplicate_keys(body)
    return payload


def _colons_written(payload: object) -> int:
    """The colons of `payload` written as JSON; -1 where orjson cannot write it (nesting past
    its 255 levels, integers past 64 bits), which the full reading then settles."""
    try:
        return orjson.dumps(payload).count(b":")
    except orjson.JSONEncodeError:
        return -1


def _check_content_type(raw: bytes | None, required: bool) -> None:
    """UnsupportedMediaType unless `raw` declares JSON (`+json` too, any parameters), or is absent
    where a dialect does not require it."""
    content_type = None if raw is None else raw.decode("latin-1")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if (
        media_type != JSON_MEDIA_TYPE
        and not media_type.endswith("+json")
        and (required or content_type is not None)
    ):
        raise UnsupportedMediaType(
            f"expected Content-Type {JSON_MEDIA_TYPE}, got {quoted(content_type or 'none')}"
            " (with curl, add -H 'Content-Type: application/json')"
        )


def _refuse_content_encoding(headers: list[tuple[bytes, bytes]]) -> None:
    """Looked for only once a body fails to parse: the common request pays nothing for it."""
    for name, value in headers:
        if name == b"content-encoding" and value.strip().lower() != b"identity":
            raise UnsupportedMediaType(
                f"expected an uncompressed JSON body, got Content-Encoding "
                f"{quoted(value.decode('latin-1'))}"
            )


def _too_large(limit: int, got: str) -> str:
    return f"expected a body of at most {limit} bytes, got {got}"


def _settle_heap() -> None:
    """Once the model is loaded, everything alive is the process's for good (libraries, the
    graph, the settings): frozen, the collector never walks it again, and the young generation
    is collected less often. Under load the collector otherwise cost about 10 us of CPU a
    request (`make bench`, README "Speed, measured"); this costs about 30 ms once."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, *gc.get_threshold()[1:])


def _check_path(params: dict[str, str], signature: Signature) -> None:
    for key, served in (("name", signature.name), ("version", signature.version)):
        asked = params.get(key)
        if asked is not None and asked != served:
            raise NotFound(f"expected model {key} {served!r}, got {quoted(asked)}")


def _how_to_call(
    signature: Signature, routes: tuple[Route, ...], settings: Settings
) -> dict[str, Any]:
    """GET /'s guide: the routes, the body with its fields' types, an example and its answer."""
    fields = {}
    for feature in signature.features:
        fields[feature.name] = feature.expected() + (
            f": {list(feature.categories)}" if feature.categories is not None else ""
        )
    examples = seed_encoder.answer_examples(signature)
    return {
        "routes": [
            {"method": route.method, "path": route.path, "summary": operation.summary}
            for route in routes
            if route.operation is not None
            for operation in (route.operation(signature, settings),)
        ],
        "request": {
            "method": "POST",
            "paths": list(PREDICT_PATHS),
            "content_type": JSON_MEDIA_TYPE,
            "fields": fields,
            "example": dict(signature.example),
            "example_is_placeholder": signature.example_is_placeholder,
            "batch": f'{{"{seed_decoder.INSTANCES_KEY}": [rows as objects like the example, or '
            f"lists of values in the order {list(signature.feature_names)}]}}, at most "
            f"{settings.max_batch_rows} rows",
        },
        "answer_example": examples["one row"]["value"] if examples else None,
        "openapi": OPENAPI_PATH,
        "docs": DOCS_PATH,
    }


def _seed_operation(primary: bool) -> Callable[[Signature, Settings], Operation]:
    def describe(signature: Signature, settings: Settings) -> Operation:
        return Operation(
            summary="Predict: one row, or a batch of rows"
            + ("" if primary else " (same as POST /predict)"),
            description="The body carries the model's features by name (one row), or "
            '`{"instances": [...]}` with rows by name or as values in feature order. A classifier '
            "answers each class's probability and the most probable class (`target`); a "
            "regressor answers `prediction`.",
            tag="predict",
            request=seed_decoder.request_schema(signature, settings.max_batch_rows),
            request_examples=seed_decoder.request_examples(signature),
            answer=seed_encoder.answer_schema(signature),
            answer_examples=seed_encoder.answer_examples(signature),
            errors=PREDICT_ERRORS,
        )

    return describe


_METADATA_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "task": {"type": "string", "enum": ["classification", "regression"]},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "type": {"type": "string", "enum": ["number", "string"]},
                    "categories": {"type": "array", "items": {"type": ["string", "number"]}},
                },
                "required": ["name", "type"],
            },
        },
        "classes": {"type": "array", "items": {"type": "string"}},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
        "sklearn_version": {"type": ["string", "null"]},
        "max_batch_rows": {"type": "integer"},
        "how_to_call": {"type": "object"},
    },
    "required": ["name", "version", "task", "features", "how_to_call"],
}


def _metadata_operation(signature: Signature, settings: Settings) -> Operation:
    example = {
        **signature.describe(),
        "max_batch_rows": settings.max_batch_rows,
        "how_to_call": {"...": "the routes, the body's fields and an example"},
    }
    return Operation(
        summary="How to call the model: its routes, features, classes, scores and an example",
        answer=({"$ref": "#/components/schemas/Metadata"}, {"Metadata": _METADATA_SCHEMA}),
        answer_examples={"this model": {"value": example}},
        errors=(503,),
    )


def _openapi_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="The OpenAPI 3.1 document of this API, generated from the loaded model",
        tag="documentation",
        answer=({"type": "object"}, {}),
        errors=(503,),
    )


def _docs_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="The interactive documentation of this API (Swagger UI)",
        tag="documentation",
        answer=({"type": "string"}, {}),
        answer_media_type="text/html",
    )


def _health_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="Liveness: 200 while the process serves",
        tag="health",
        answer=(
            {
                "type": "object",
                "properties": {"status": {"const": "ok"}},
                "required": ["status"],
            },
            {},
        ),
    )


def _ready_operation(signature: Signature, settings: Settings) -> Operation:
    return Operation(
        summary="Readiness: 200 once the model is loaded (loading it if needed), 503 until then",
        tag="health",
        answer=(
            {
                "type": "object",
                "properties": {"status": {"const": "ready"}, "model_version": {"type": "string"}},
                "required": ["status", "model_version"],
            },
            {},
        ),
        errors=(503,),
    )


class _RawResponse(Response):
    """A fixed body of any media type, headers laid down directly as for JSON."""

    def __init__(self, body: bytes, media_type: str, headers: dict[str, str]):
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", media_type.encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ]


class _JSONResponse(Response):
    """A Response with its raw headers laid down directly: Starlette's header mapping costs
    several microseconds a request, a tenth of what the whole prediction costs."""

    media_type = JSON_MEDIA_TYPE

    def __init__(
        self,
        body: bytes,
        status: int,
        headers: dict[str, str] | None,
        raw: tuple[tuple[bytes, bytes], ...] = (),
    ):
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
            *raw,
        ]


@functools.lru_cache(maxsize=4)
def _version_header(version: str) -> tuple[tuple[bytes, bytes], ...]:
    """The model version header, encoded once per model rather than once per answer."""
    return ((VERSION_HEADER.lower().encode(), version.encode()),)


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return _JSONResponse(orjson.dumps(body), status, headers)
