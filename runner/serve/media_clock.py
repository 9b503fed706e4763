"""One media clock per worker: every call's due outbound frames on one timer.

A player per call used to own a task that slept until its caller's buffer was down to the
refill mark: one timer and one task wake-up per call every 60 ms, about 3,300 wake-ups a
second at 200 calls, each costing more than the frames it sent. The clock ticks at
most every 20 ms for the whole worker (50 wake-ups a second whatever the number of calls; at
each refill only, with one call; none while no call has audio to send) and, at each tick,
asks every player with something to send to send what is due (:meth:`CallPlayer.service`).
A pass learns when each player next needs it (:meth:`CallPlayer.next_due`), and the next tick
is the soonest of those, never sooner than a tick away.

Two things do not wait for the tick:
- a player whose caller is about to run dry (the first frame of a reply, whose caller has
  nothing buffered) asks for an *urgent* service: the clock wakes at once for that player
  alone, so the first audio of a reply is not held back by the tick;
- a barge-in's ``clear`` / ``StopAudio`` is urgent too.

The clock never waits on one call's socket: a player whose socket has a backlog (its peer
stopped reading) is skipped until it drains (:meth:`CallPlayer.service` checks), and a send
that fails ends that player's outbound audio only. Each pass starts at a random player, so no
call is always the last one served. The clock's task runs while at least
one player is registered; it is owned here and awaited by :meth:`MediaClock.close`.

A player is served when its caller's buffer is down to the refill mark (``lead_ms -
refill_ms``, 240 ms of 360): it then sends two 60 ms messages and their mark in one socket
write (:mod:`runner.serve.ws_batch`), so a call costs about 8 writes a second of reply, not 50.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Protocol


class CallPlayer(Protocol):
    """What the clock drives (runner.serve.calls.CallPlayer is one): the clock depends on
    this much of a call's player, and calls depend on the clock, not both ways."""

    clock: MediaClock | None  # the clock serving it (set by MediaClock.add)
    clock_due: float  # when the clock plans to serve it next

    def next_due(self) -> float: ...
    def has_work(self) -> bool: ...
    async def service(self, now: float, due_at: float) -> None: ...
    def failed(self, exc: Exception) -> None: ...


log = logging.getLogger("vlrun.serve.clock")

TICK_MS = 20  # one frame: each active player tops its caller's buffer up to its lead
IDLE_WAIT_S = 1.0  # the longest an idle clock waits before looking again
CLOSE_TIMEOUT_S = 5.0  # close() waits this long for the clock's last pass


def _release(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():  # a wake-up may have come first, in the same loop iteration
        waiter.set_result(False)


class MediaClock:
    """Paces every registered player's outbound audio on one timer (one per worker)."""

    def __init__(self, tick_ms: int = TICK_MS) -> None:
        self.tick_s = tick_ms / 1000
        self._players: dict[CallPlayer, None] = {}  # registered (an ordered set)
        self._active: dict[CallPlayer, None] = {}  # with something to send or a clear owed
        self._urgent: dict[CallPlayer, float] = {}  # -> when it became urgent
        self._task: asyncio.Task[None] | None = None
        self._next_tick = math.inf  # when the clock serves its active players next
        self._waiter: asyncio.Future[bool] | None = None
        self.ticks = 0  # timer wake-ups that served every active player
        self.urgent_wakeups = 0  # wake-ups for a player about to run dry, or a clear
        self._random = random.Random().randrange  # where each pass starts in the order
        self.idle_timeouts = 0  # idle waits that ended by their deadline, not a wake-up
        self.failed = 0  # players whose socket failed a send (their outbound audio ended)

    # ------------------------------------------------------------------ players

    def add(self, player: CallPlayer) -> None:
        """Register a call's player; the clock runs while any is registered."""
        player.clock = self
        player.clock_due = 0.0
        self._players[player] = None
        if player.has_work():
            self._active[player] = None
        if self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled() and self._task.exception():
                log.error("the media clock stopped: %s", self._task.exception())
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="vlrun-media-clock"
            )

    def remove(self, player: CallPlayer) -> None:
        """Unregister a player (its call ended); safe mid-tick and more than once."""
        self._players.pop(player, None)
        self._active.pop(player, None)
        self._urgent.pop(player, None)
        if player.clock is self:
            player.clock = None
        if not self._players:
            self._wake()  # so the task sees it has nothing left and ends

    def due(self, player: CallPlayer, *, urgent: bool) -> None:
        """``player`` has something to send; ``urgent``: now, not at the next tick."""
        if player not in self._players:
            return
        if urgent:
            self._active[player] = None
            player.clock_due = 0.0  # served at once, then planned again
            if player not in self._urgent:
                self._urgent[player] = time.monotonic()
                self._wake()
            return
        if player in self._active:
            return  # already on the clock's plan
        self._active[player] = None
        need = player.clock_due = player.next_due()
        if need < self._next_tick:
            # the clock sleeps longer than this caller can wait (or it is idle): it wakes now
            # and plans again
            self._next_tick = max(need, time.monotonic())
            self._wake()

    def __len__(self) -> int:
        return len(self._players)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stopped(self, timeout: float) -> bool:
        """Wait (bounded) until the clock's task has ended; False if it still runs."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout)
        return not self.running

    async def close(self) -> None:
        """Unregister every player and wait (bounded) for the clock's task to end."""
        for player in list(self._players):
            self.remove(player)
        task, self._task = self._task, None
        if task is None:
            return
        self._wake()
        done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)

    # ------------------------------------------------------------------ the timer

    def _wake(self) -> None:
        if self._waiter is not None:
            _release(self._waiter)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._next_tick = time.monotonic() + self.tick_s
        while self._players:
            now = time.monotonic()
            if self._urgent:
                urgent, self._urgent = self._urgent, {}
                self.urgent_wakeups += 1
                for player, since in urgent.items():
                    need = player.clock_due = await self._serve(player, now, since)
                    self._next_tick = min(self._next_tick, need)  # the rest of its audio
                continue
            if not self._active:
                # Nothing to send (calls between replies): no tick until a player has
                # something (due() wakes the clock); the deadline only bounds the wait.
                self._next_tick = math.inf
                if not await self._wait(loop, IDLE_WAIT_S):
                    self.idle_timeouts += 1
                continue
            if now < self._next_tick:
                # a deadline on the wait: the planned tick, or earlier if a player needs it
                await self._wait(loop, min(self._next_tick - now, IDLE_WAIT_S))
                continue
            due_at = self._next_tick
            self.ticks += 1
            order = list(self._active)
            # A random start: no call is always served last, and no call's refill period can
            # line up with a rotation's
            k = self._random(len(order))
            soonest = math.inf
            # A call whose buffer is above its refill mark is not served (it would send
            # nothing): its need, learnt when it was last served, is only compared.
            horizon = time.monotonic() + self.tick_s / 2
            for player in order[k:] + order[:k]:
                need = player.clock_due
                if need > horizon:
                    soonest = min(soonest, need)
                    continue
                need = player.clock_due = await self._serve(player, time.monotonic(), due_at)
                soonest = min(soonest, need)
            # The next tick: when the neediest call needs it, at most one a tick (with one
            # call, one wake-up per refill; with many, one every 20 ms). A late loop does not
            # burst through missed ticks: the lead covers it.
            now = time.monotonic()
            self._next_tick = max(soonest, due_at + self.tick_s, now)

    async def _wait(self, loop: asyncio.AbstractEventLoop, timeout: float) -> bool:
        """Until woken (a player is urgent, or has work for an idle clock): True; or until
        ``timeout``: False."""
        waiter = self._waiter = loop.create_future()
        handle = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            handle.cancel()
            self._waiter = None

    async def _serve(self, player: CallPlayer, now: float, due_at: float) -> float:
        """Serve one player; when it next needs the clock (inf: not until it has audio)."""
        if player not in self._players:
            return math.inf  # its call ended mid-tick
        try:
            await player.service(now, due_at)
        except Exception as exc:  # that call's socket failed: its outbound audio ends, not ours
            self.failed += 1
            player.failed(exc)
            self.remove(player)
            return math.inf
        if not player.has_work():
            self._active.pop(player, None)
            return math.inf
        return player.next_due()
