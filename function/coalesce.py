"""Single rows that arrive together go through the model together.

While the event loop is busy with one request, others arrive on other connections. Each request
of one row adds its row here and waits; the first one schedules a flush with `loop.call_soon`, to
run in the loop's turn after next: once every request already in the loop's queue, and those read
from the sockets in the next turn, have added their own. The rows then go to the model as one
batch (one `session.run` instead of one per request) and each request gets its own row of the
output. No timer: a quiet service answers two loop turns later than alone (microseconds), a busy
one batches whatever is waiting.
"""

import asyncio
from collections import Counter
from typing import Any

from function.model import Model


class Coalescer:
    """Collects single rows for one model, per event loop, and runs each collection at once.

    What tests and the benchmark read: `sizes` counts the collections by their number of rows,
    `rerun_alone` the rows run again one by one after the graph refused their collection.
    """

    def __init__(self, model: Model):
        self.model = model
        self.sizes: Counter[int] = Counter()
        self.rerun_alone = 0
        # One collection per event loop: a process serves on one, but a test may run several
        # loops, each in its own thread, against one service.
        self._waiting: dict[asyncio.AbstractEventLoop, list[tuple[list[Any], asyncio.Future]]] = {}

    def output(self, row: list[Any]) -> "asyncio.Future[list[float]]":
        """A future of the graph's output row for `row` (values in feature order)."""
        loop = asyncio.get_running_loop()
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = []
            # A call_soon that schedules the flush: it runs in the turn after the next, when the
            # next poll's requests have joined. Flushing in the next turn left collections of a
            # few rows under steady load, and cost about 5 us more CPU a request.
            loop.call_soon(loop.call_soon, self._flush, loop)
        future = loop.create_future()
        waiting.append((row, future))
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting.pop(loop)
        self.sizes[len(waiting)] += 1
        try:
            outputs = self.model.run([row for row, _ in waiting]).tolist()
        except Exception as error:
            if len(waiting) == 1:
                _settle(waiting[0][1], error=error)
            else:
                self._row_by_row(waiting)
            return
        for (_, future), output in zip(waiting, outputs):
            if not future.done():  # a waiter cancelled in the meantime takes no answer
                future.set_result(output)

    def _row_by_row(self, waiting: list[tuple[list[Any], asyncio.Future]]) -> None:
        """The graph refused one of the rows, and with it the whole run: each row alone now, so
        that a row's failure is its own request's and no other's."""
        for row, future in waiting:
            self.rerun_alone += 1
            try:
                (output,) = self.model.run([row]).tolist()
            except Exception as error:
                _settle(future, error=error)
            else:
                _settle(future, output)


def _settle(future: asyncio.Future, output: Any = None, *, error: Exception | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(output)
