"""What the check for keys given twice costs: `python -m bench.duplicates [model.onnx]`.

The service's handler in-process (as `bench.inprocess`), one single-row request at a time, with
the body parsed as it is served and with the parse alone (orjson, no check), in interleaved
rounds; prints each round and the medians, in microseconds of this process's CPU a request (CPU
time, not wall time: on a shared machine, other processes' load moves wall time far more than
the difference looked for). Then the same for the parse alone, without the handler around it.
"""

import asyncio
import statistics
import sys
import time

import orjson
import uvloop

from bench.inprocess import BODY, ROOT, request

ROUNDS = 9
CALLS = 20_000


def _unchecked(body: bytes, headers: list) -> object:
    """The parse as it was before the check: orjson alone."""
    return orjson.loads(body)


async def handler_rounds(model_path: str) -> dict[str, list[float]]:
    from function import app
    from function.settings import Settings

    checked = app._parse_json
    service = app.Service(Settings(model_uri=model_path))
    await service.handle(request())  # loads the model
    figures: dict[str, list[float]] = {"with the check": [], "without": []}
    try:
        for _ in range(ROUNDS):
            for name, parse in (("with the check", checked), ("without", _unchecked)):
                app._parse_json = parse
                started = time.process_time()
                for _ in range(CALLS):
                    await service.handle(request())
                figures[name].append((time.process_time() - started) / CALLS * 1e6)
    finally:
        app._parse_json = checked
    return figures


def parse_rounds() -> dict[str, list[float]]:
    from function.app import _parse_json

    figures: dict[str, list[float]] = {"with the check": [], "without": []}
    for _ in range(ROUNDS):
        for name, parse in (("with the check", _parse_json), ("without", _unchecked)):
            started = time.process_time()
            for _ in range(CALLS * 10):
                parse(BODY, [])
            figures[name].append((time.process_time() - started) / (CALLS * 10) * 1e6)
    return figures


def main() -> int:
    model = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "artifacts" / "model.onnx")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        whole = runner.run(handler_rounds(model))
    for title, figures in (("single-row request, handler", whole), ("parse alone", parse_rounds())):
        print(title)
        for name, values in figures.items():
            shown = " ".join(f"{value:.2f}" for value in values)
            print(f"  {name:>14}: median {statistics.median(values):.2f} us  (rounds: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
