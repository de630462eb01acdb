"""The function's own cost per request, without a server: `python -m bench.inprocess`.

Calls the service's handler and the ceiling's with the same ASGI request, in one process, and
prints the medians of several rounds in microseconds: one request at a time, and 16 at a time
(as 16 connections deliver them to a busy server, where the service's single rows go through the
model together). Answers "how much does our code add?" without the noise of sockets and a load
generator.
"""

import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import uvloop
from starlette.requests import Request

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'


def request(body: bytes = BODY, path: str = "/inference/") -> Request:
    """A POST of `body` as JSON, as Starlette hands it to the function."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}
    return Request(scope, receive)


CONCURRENT = 16


async def per_call_us(handler, calls: int, concurrent: int = 1) -> float:
    started = time.perf_counter()
    if concurrent == 1:
        for _ in range(calls):
            await handler(request())
    else:
        for _ in range(calls // concurrent):
            await asyncio.gather(*(handler(request()) for _ in range(concurrent)))
    return (time.perf_counter() - started) / calls * 1e6


async def measure(model_path: str, rounds: int = 5, calls: int = 20_000) -> dict:
    ceiling = _load_ceiling()

    from function.app import Service
    from function.settings import Settings

    service = Service(Settings(model_uri=model_path))
    await service.handle(request())  # loads the model
    figures = {}
    for concurrent in (1, CONCURRENT):
        service_us, ceiling_us = [], []
        for _ in range(rounds):
            service_us.append(await per_call_us(service.handle, calls, concurrent))
            ceiling_us.append(await per_call_us(ceiling.predict, calls, concurrent))
        figures[concurrent] = {
            "service_us": statistics.median(service_us),
            "ceiling_us": statistics.median(ceiling_us),
        }
    return figures


def _load_ceiling():
    """bench/ceiling/main.py under its own module name: "main" may be the service's already."""
    spec = importlib.util.spec_from_file_location("bench_ceiling", ROOT / "bench" / "ceiling" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    model = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "artifacts" / "model.onnx")
    # uvloop, as uvicorn picks it in the container.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(measure(model))
    for concurrent, each in figures.items():
        added = each["service_us"] - each["ceiling_us"]
        print(
            f"{concurrent:>2} at a time: service {each['service_us']:.1f} us, ceiling "
            f"{each['ceiling_us']:.1f} us a request: {added:.1f} us added"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
