"""The function's own cost per request, without a server: `python -m bench.inprocess`.

Calls the service's handler and the ceiling's with the same ASGI request, in one process, and
prints the medians of several rounds in microseconds. Answers "how much does our code add?"
without the noise of sockets and a load generator.
"""

import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path

from starlette.requests import Request

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


def request() -> Request:
    async def receive():
        return {"type": "http.request", "body": BODY, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/inference/", "headers": HEADERS, "query_string": b""}
    return Request(scope, receive)


async def per_call_us(handler, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await handler(request())
    return (time.perf_counter() - started) / calls * 1e6


async def measure(model_path: str, rounds: int = 5, calls: int = 20_000) -> dict:
    ceiling = _load_ceiling()

    from function.app import Service
    from function.settings import Settings

    service = Service(Settings(model_uri=model_path))
    await service.handle(request())  # loads the model
    service_us, ceiling_us = [], []
    for _ in range(rounds):
        service_us.append(await per_call_us(service.handle, calls))
        ceiling_us.append(await per_call_us(ceiling.predict, calls))
    return {"service_us": statistics.median(service_us), "ceiling_us": statistics.median(ceiling_us)}


def _load_ceiling():
    """bench/ceiling/main.py under its own module name: "main" may be the service's already."""
    spec = importlib.util.spec_from_file_location("bench_ceiling", ROOT / "bench" / "ceiling" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    model = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "artifacts" / "model.onnx")
    figures = asyncio.run(measure(model))
    added = figures["service_us"] - figures["ceiling_us"]
    print(f"service {figures['service_us']:.1f} us, ceiling {figures['ceiling_us']:.1f} us a request: {added:.1f} us added")
    return 0


if __name__ == "__main__":
    sys.exit(main())
