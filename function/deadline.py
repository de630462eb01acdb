"""A deadline on the reading of request bodies, for a body shorter than its Content-Length or a
chunked body that stalls: without one, the request waits until Cloud Run's request timeout.

One timer per event loop checks every read in flight, rather than a timer per read: uvloop's
`call_later` and `asyncio.timeout` cost about 8 to 13 us a request, a fifth of what a whole
prediction costs, where registering a read costs a dictionary entry. A read is cut between
`timeout` and `timeout` plus one check interval after it began.
"""

import asyncio

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
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._interval = min(_MAX_CHECK_INTERVAL, timeout / 4)
        # Per event loop (a test may run several, each in its own thread).
        self._loops: dict[asyncio.AbstractEventLoop, _Reads] = {}

    def start(self) -> "tuple[_Reads, asyncio.Task]":
        task = asyncio.current_task()
        assert task is not None, "a body is read in a task"
        loop = task.get_loop()
        reads = self._loops.get(loop)
        if reads is None:
            reads = self._loops[loop] = _Reads()
        if reads.timer is None:
            reads.timer = loop.call_later(self._interval, self._check, loop, reads)
        reads.deadlines[task] = loop.time() + self.timeout
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

    def _check(self, loop: asyncio.AbstractEventLoop, reads: "_Reads") -> None:
        now = loop.time()
        late = [task for task, deadline in reads.deadlines.items() if deadline <= now]
        for task in late:
            del reads.deadlines[task]
            reads.cut.add(task)
            task.cancel()
        reads.timer = (
            loop.call_later(self._interval, self._check, loop, reads) if reads.deadlines else None
        )


class _Reads:
    """One event loop's reads in flight by task, with their deadlines; the tasks cut."""

    __slots__ = ("deadlines", "cut", "timer")

    def __init__(self) -> None:
        self.deadlines: dict[asyncio.Task, float] = {}
        self.cut: set[asyncio.Task] = set()
        self.timer: asyncio.TimerHandle | None = None
