"""A deadline on the reading of request bodies, for a body shorter than its Content-Length or a
chunked body that stalls: without one, the request waits until Cloud Run's request timeout.

One timer per event loop checks every read in flight, rather than a timer per read: uvloop's
`call_later` and `asyncio.timeout` cost about 8 to 13 us a request, a fifth of what a whole
prediction costs, where registering a read costs a dictionary entry.
"""

import asyncio
import math
from asyncio import current_task, get_running_loop

from function.errors import RequestTimeout

# The most seconds between two checks; shorter for a shorter timeout (a quarter of it).
_MAX_CHECK_INTERVAL = 1.0


class BodyDeadlines:
    """Around the reading of one body:

        ticket = deadlines.start()
        try:
            ...  # await the body
        except asyncio.CancelledError:
            deadlines.raise_if_cut(ticket)
            raise
        finally:
            deadlines.finish(ticket)

    Time is counted in checks, not read from a clock: a read begun after check n (and before
    n + 1) is cut at check n + 1 + ceil(timeout / interval), between `timeout` and `timeout`
    plus one interval after it began.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._interval = min(_MAX_CHECK_INTERVAL, timeout / 4)
        self._checks = math.ceil(timeout / self._interval)
        # Per event loop (a test may run several, each in its own thread); the last one used
        # first, as a process serves on one.
        self._loops: dict[asyncio.AbstractEventLoop, _Reads] = {}
        self._last: _Reads | None = None

    def start(self) -> "tuple[_Reads, asyncio.Task]":
        loop = get_running_loop()
        reads = self._last
        if reads is None or reads.loop is not loop:
            reads = self._last = self._loops.setdefault(loop, _Reads(loop))
        if reads.timer is None:
            reads.timer = loop.call_later(self._interval, self._check, reads)
        task = current_task()
        reads.deadlines[task] = reads.checked + 1 + self._checks
        return reads, task

    @staticmethod
    def finish(ticket: "tuple[_Reads, asyncio.Task]") -> None:
        ticket[0].deadlines.pop(ticket[1], None)

    def raise_if_cut(self, ticket: "tuple[_Reads, asyncio.Task]") -> None:
        """RequestTimeout if the deadline cancelled this read (and nothing else cancelled it
        too); otherwise nothing, and the cancellation goes on."""
        reads, task = ticket
        if task in reads.cut:
            reads.cut.discard(task)
            if task.uncancel() == 0:
                raise RequestTimeout(
                    f"expected the whole body within {self.timeout:g} s of the headers, got "
                    "only part of it"
                ) from None

    def _check(self, reads: "_Reads") -> None:
        reads.checked += 1
        late = [task for task, last in reads.deadlines.items() if last <= reads.checked]
        for task in late:
            del reads.deadlines[task]
            reads.cut.add(task)
            task.cancel()
        reads.timer = (
            reads.loop.call_later(self._interval, self._check, reads) if reads.deadlines else None
        )


class _Reads:
    """One event loop's reads in flight by task, with the check that cuts each; the tasks cut."""

    __slots__ = ("loop", "deadlines", "cut", "timer", "checked")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.deadlines: dict[asyncio.Task, int] = {}
        self.cut: set[asyncio.Task] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.checked = 0  # checks run so far
