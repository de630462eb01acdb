"""The HTTP side: routes, request bodies, answers and the one place errors become JSON.

`create_predict()` returns the async function that `main.py` registers with
`functions_framework.aio.http`, so functions-framework serves it with Starlette under uvicorn.
"""

import asyncio
import functools
import math
import time
import traceback
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from function._log import TRACE_HEADER, log
from function.errors import (
    INVALID_MODEL,
    BadRequest,
    MethodNotAllowed,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    UnprocessableEntity,
    UnsupportedMediaType,
    cut,
    first_line,
    quoted,
)
from function.model import LazyModel, Model, load_model
from function.schema import INSTANCES_KEY, PREDICTIONS_KEY, parse_rows
from function.settings import Settings

PREDICT_PATHS = ("/", "/inference", "/inference/", "/predict")
METADATA_PATH = "/"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
VERSION_HEADER = "X-Model-Version"
JSON_MEDIA_TYPE = "application/json"

# A Content-Length of more digits is over any limit; int() of thousands of digits is slow.
_MAX_LENGTH_DIGITS = 18

Endpoint = Callable[[Request], Awaitable[Response]]


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
        routes: dict[str, dict[str, Endpoint]] = {path: {"POST": self._predict} for path in PREDICT_PATHS}
        for path, endpoint in (
            (METADATA_PATH, self._metadata),
            (HEALTH_PATH, self._health),
            (READY_PATH, self._ready),
        ):
            routes.setdefault(path, {}).update(GET=endpoint, HEAD=endpoint)
        self._routes = routes

    async def handle(self, request: Request) -> Response:
        scope = request.scope
        try:
            methods = self._routes.get(scope["path"])
            if methods is None:
                raise NotFound(
                    f"expected one of the paths {sorted(self._routes)}, got {quoted(scope['path'])}"
                )
            endpoint = methods.get(scope["method"])
            if endpoint is None:
                raise MethodNotAllowed(
                    f"expected {' or '.join(methods)} on {cut(scope['path'])}, "
                    f"got {cut(scope['method'])}",
                    allowed=tuple(methods),
                )
            return await endpoint(request)
        except ServiceError as error:
            return _json({"error": error.message}, error.status, error.headers)
        except ClientDisconnect:
            # Nobody is left to answer; not the server's fault, so no traceback.
            log(
                "INFO",
                f"client disconnected before sending the whole body of {scope['method']} "
                f"{cut(scope['path'])}",
                project=self.settings.project,
                trace_header=request.headers.get(TRACE_HEADER),
            )
            return _json({"error": "client disconnected"}, 400)
        except Exception as error:  # the server's own fault: say so, keep serving
            log(
                "ERROR",
                f"unhandled error on {scope['method']} {scope['path']}: {error!r}",
                project=self.settings.project,
                trace_header=request.headers.get(TRACE_HEADER),
                traceback=traceback.format_exc(),
            )
            return _json({"error": "internal error; see the service's logs"}, 500)

    async def _predict(self, request: Request) -> Response:
        payload = await self._read_json(request)
        model = await self._ready_model(request)
        rows, batch = parse_rows(payload, model.features, self.settings.max_batch_rows)
        output = model.predict_proba(rows)
        probabilities = output.tolist()
        # One sum of the whole output finds any NaN or infinity: they propagate through it.
        if not math.isfinite(output.sum()):
            _refuse_non_finite(probabilities, batch)
        keys = _probability_keys(model.classes)
        classes = model.classes
        answers = [dict(zip(keys, row), target=classes[row.index(max(row))]) for row in probabilities]
        body = {PREDICTIONS_KEY: answers} if batch else answers[0]
        return _json(body, headers={VERSION_HEADER: model.version})

    async def _metadata(self, request: Request) -> Response:
        model = await self._ready_model(request)
        body = {**model.metadata, "max_batch_rows": self.settings.max_batch_rows}
        return _json(body, headers={VERSION_HEADER: model.version})

    async def _health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def _ready(self, request: Request) -> Response:
        try:
            model = await self._ready_model(request)
        except ModelUnavailable as error:
            body = {"error": error.message, "next_attempt_in_seconds": round(error.retry_after, 1)}
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
            model_version=model.version,
            seconds=round(time.perf_counter() - started, 3),
        )
        return model

    async def _read_json(self, request: Request) -> object:
        # The raw ASGI headers, not request.headers: one pass, no mapping built per request.
        content_type = content_length = None
        for name, value in request.scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE and not media_type.endswith("+json"):
            raise UnsupportedMediaType(
                f"expected Content-Type {JSON_MEDIA_TYPE}, got {quoted(content_type or 'none')}"
                " (with curl, add -H 'Content-Type: application/json')"
            )
        body = await self._read_body(request, content_length)
        if not body:
            raise BadRequest("expected a JSON body, got an empty body")
        try:
            # orjson refuses NaN, Infinity, invalid UTF-8 and nesting past 1024 levels.
            return orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequest(f"expected a JSON body, got invalid JSON: {error}") from None

    async def _read_body(self, request: Request, declared: bytes | None) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = f"expected a body of at most {limit} bytes, got"
        if declared is not None:
            # bytes.isdigit() accepts ASCII digits only, whatever HTTP parser ran before.
            if not declared.isdigit():
                raise BadRequest(
                    f"expected a Content-Length of ASCII digits, got "
                    f"{quoted(declared.decode('latin-1'))}"
                )
            if len(declared) > _MAX_LENGTH_DIGITS or int(declared) > limit:
                raise PayloadTooLarge(f"{too_large} {cut(declared.decode('latin-1'))}")
            return await request.body()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"{too_large} more")
            chunks.append(chunk)
        return b"".join(chunks)


def _refuse_non_finite(probabilities: list[list[float]], batch: bool) -> None:
    for index, row in enumerate(probabilities):
        if not all(map(math.isfinite, row)):
            where = f"{INSTANCES_KEY}[{index}]" if batch else "the row"
            raise UnprocessableEntity(
                f"{where}: expected the model to give finite probabilities, got {cut(str(row))}; "
                "the features are probably far outside the range it was trained on"
            )


@functools.lru_cache(maxsize=8)
def _probability_keys(classes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{name}_probability" for name in classes)


class _JSONResponse(Response):
    """A Response with its raw headers laid down directly: Starlette's header mapping costs
    several microseconds a request, a tenth of what the whole prediction costs."""

    media_type = JSON_MEDIA_TYPE

    def __init__(self, body: bytes, status: int, headers: dict[str, str] | None):
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
        ]


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return _JSONResponse(orjson.dumps(body), status, headers)
