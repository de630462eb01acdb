"""What the request guards cost the single-row request: `python -m bench.guards [model.onnx]`.

Two guards sit on the hot path: the check for JSON keys given twice (`function.duplicates`, one
count of colons for a row) and the deadline on reading the body (`function.deadline`, a
dictionary entry). The service's handler runs in-process (as `bench.inprocess`), one single-row
request at a time, with both, with either and with neither, in interleaved rounds in one process;
prints the median and the least of each, in microseconds of this process's CPU a request (CPU
time, not wall time: on a shared machine, other processes' load moves wall time far more than
the difference looked for).
"""

import asyncio
import statistics
import sys
import time

import orjson
import uvloop

from bench.inprocess import ROOT, request

ROUNDS = 9
CALLS = 20_000


class _NoDeadline:
    """The body read as before the deadline: nothing registered, nothing cut."""

    def start(self) -> None:
        return None

    def finish(self, ticket: None) -> None:
        pass

    def raise_if_cut(self, ticket: None) -> None:
        pass


def _unchecked(body: bytes, headers: list) -> object:
    """The parse as before the check: orjson alone."""
    return orjson.loads(body)


async def rounds(model_path: str) -> dict[str, list[float]]:
    from function import app
    from function.settings import Settings

    service = app.Service(Settings(model_uri=model_path))
    await service.handle(request())  # loads the model
    deadlines, checked = service._body_deadlines, app._parse_json
    variants = {
        "both guards": (deadlines, checked),
        "no deadline": (_NoDeadline(), checked),
        "no key check": (deadlines, _unchecked),
        "neither": (_NoDeadline(), _unchecked),
    }
    figures: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(ROUNDS):
            for name, (deadline, parse) in variants.items():
                service._body_deadlines, app._parse_json = deadline, parse
                started = time.process_time()
                for _ in range(CALLS):
                    await service.handle(request())
                figures[name].append((time.process_time() - started) / CALLS * 1e6)
    finally:
        service._body_deadlines, app._parse_json = deadlines, checked
    return figures


def main() -> int:
    model = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "artifacts" / "model.onnx")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(rounds(model))
    for name, values in figures.items():
        print(
            f"{name:>12}: median {statistics.median(values):.2f} us, least {min(values):.2f} us "
            "of CPU a single-row request"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
