"""The clock replies are paced on: one timer per emulator for every connection's audio deltas.

Each connection used to pace its own 100 ms deltas with ``asyncio.wait_for(wake.wait(), s)``:
per chunk a task for the event's wait, a timer, a cancel and its clean-up, and one loop
wake-up per connection per chunk (20 a second per call at speed 2; 5,000 a second at 250
calls). :class:`PaceClock` keeps every waiting reply on one heap and one timer, which fires on
a grid of :data:`TICK_S` and releases everything due by then: at most 1/TICK_S wake-ups a
second whatever the number of calls, and a wait is a bare future.

The pacing rule stays what docs/emulator.md#pacing-and-writes says: a chunk goes out once the one
before it is due, never before; the grid only rounds *up* (a chunk may go out up to a tick
late; the lateness does not add up, as each reply's waits are counted from its first chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import time

#: the shared clock's grid: every wait ends on a multiple of it (100 wake-ups a second at most)
TICK_S = 0.010
#: a timer may fire this much before its time (uvloop counts in whole milliseconds): what is
#: due within it goes in the same pass rather than on a timer of its own
SLACK_S = 0.001


class Wake(asyncio.Event):
    """A response's cancel signal, which also ends a wait on the shared clock at once
    (:meth:`set` resolves the pending wait's future: no task waits on the event)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        super().set()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class PaceClock:
    """Where a response's pacing reads the time and waits: the monotonic clock, one timer.

    One per emulator (``Emulator`` makes it): every connection's waits share its heap and its
    timer. A test passes its own (virtual time that moves when waited on) to check the pace a
    reply is sent at without timing anything (tests/test_emulator_pace.py).
    """

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0  # ties in the heap go in the order they were asked
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self.wakeups = 0  # timer passes (benchmarks and tests read them)
        self.released = 0  # waits ended by their time (not by a cancel)

    def now(self) -> float:
        return time.monotonic()

    async def wait(self, wake: asyncio.Event, seconds: float) -> None:
        """Wait ``seconds`` (ended on the next tick of the grid), or less if ``wake`` is set."""
        if wake.is_set():
            return
        if not isinstance(wake, Wake):  # a plain event cannot end a bare future: the old way
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), seconds)
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an emulator restarted on another loop: a fresh heap
            self._heap, self._timer, self._timer_at, self._loop = [], None, math.inf, loop
        # source: docs/emulator.md#pacing-and-writes: up to the grid, never down (never early)
        due = math.ceil((self.now() + seconds) / self.tick_s) * self.tick_s
        waiter: asyncio.Future[None] = loop.create_future()
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, waiter))
        if due < self._timer_at:
            self._arm(due)
        wake.waiter = waiter
        try:
            await waiter
        finally:
            wake.waiter = None

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = due
        self._timer = self._loop.call_later(max(0.0, due - self.now()), self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self.wakeups += 1
        heap = self._heap
        limit = self.now() + SLACK_S
        while heap and heap[0][0] <= limit:
            waiter = heapq.heappop(heap)[2]
            if not waiter.done():  # a cancelled reply's wait ended already
                waiter.set_result(None)
                self.released += 1
        if heap:
            self._arm(heap[0][0])
