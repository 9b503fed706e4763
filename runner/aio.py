"""The asyncio primitives vlrun's concurrent parts share, in one place.

- :class:`Changes`: a change condition. State changes call :meth:`Changes.notify`; waiters say
  what they wait for with :meth:`Changes.until` (a predicate and a deadline), so no wake-up is
  lost between a check and a wait.
- :class:`Channel`: a bounded, closable FIFO with a declared overflow policy (drop the oldest,
  or refuse the newest). A reader of a closed, empty channel ends instead of waiting for ever.
- :func:`cancel_and_wait`: cancel tasks and wait for them, bounded; the owner's way to end what
  it started without leaving a task for the loop to collect.
- :class:`Deadline`: one absolute deadline that several waits share.
- :class:`ReconnectPolicy` and :class:`ReconnectBudget`: exponential backoff with full jitter
  (so a hundred calls that lost the same service do not come back in lockstep) and a budget
  per call (after it, the caller is told and the call ends).
- :class:`LagMonitor`: how late the event loop runs its callbacks, the first sign of blocking
  work on the loop.

Everything here catches ``Exception`` at most, never ``BaseException``: cancellation and exits
belong to whoever owns the task.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

Overflow = Literal["drop_oldest", "refuse"]


class Changes:
    """A change condition: ``notify()`` after a change, ``await until(predicate)`` to wait."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        """Something changed: every waiter re-checks its predicate."""
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def next(self, timeout: float | None = None) -> bool:
        """Wait for the next notify; False if ``timeout`` seconds passed first. (A waiter with
        a condition of its own that also moves with time, such as a deadline that tool time
        extends, re-checks it after each.)"""
        if self._event is None:
            self._event = asyncio.Event()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def until(self, predicate: Callable[[], object], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` is true; False if ``timeout`` seconds passed first."""
        deadline = Deadline(timeout)
        while not predicate():
            if self._event is None:
                self._event = asyncio.Event()
            event = self._event
            if deadline.expired():
                return False
            try:
                await asyncio.wait_for(event.wait(), deadline.left())
            except asyncio.TimeoutError:
                return bool(predicate())
        return True


class ChannelClosed(Exception):
    """A put on a closed channel, or a get on a closed and empty one."""


class Channel(Generic[T]):
    """A bounded FIFO between one writer side and one reader side.

    ``bound`` is how many items it holds; past it, ``overflow`` says what gives: the oldest
    item (``drop_oldest``: live audio, where the newest matters) or the new one (``refuse``:
    the writer learns from ``put``'s False). ``dropped`` counts what was lost either way.
    """

    def __init__(self, bound: int, overflow: Overflow) -> None:
        if bound < 1:
            raise ValueError("a channel holds at least one item")
        self.bound = bound
        self.overflow = overflow
        self._items: collections.deque[T] = collections.deque()
        self._changes = Changes()
        self.closed = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Queue ``item``; False if it was refused (full, ``refuse``). Never blocks."""
        if self.closed:
            raise ChannelClosed("put on a closed channel")
        if len(self._items) >= self.bound:
            self.dropped += 1
            if self.overflow == "refuse":
                return False
            self._items.popleft()
        self._items.append(item)
        self._changes.notify()
        return True

    async def get(self, timeout: float | None = None) -> T:
        """The next item; ChannelClosed once closed and empty; TimeoutError past ``timeout``."""
        if not await self._changes.until(lambda: self._items or self.closed, timeout):
            raise asyncio.TimeoutError
        if self._items:
            return self._items.popleft()
        raise ChannelClosed("the channel is closed")

    def drain(self) -> list[T]:
        """Everything queued now, without waiting."""
        items = list(self._items)
        self._items.clear()
        return items

    def close(self) -> None:
        """No more puts; readers get what is left, then ChannelClosed."""
        self.closed = True
        self._changes.notify()

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except ChannelClosed:
                return


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future[Any]] | asyncio.Future[Any], timeout: float | None = None
) -> set[asyncio.Future[Any]]:
    """Cancel ``tasks`` and wait until they have ended; returns those still running after
    ``timeout`` (a task that ignores cancellation). The tasks' own exceptions are theirs: they
    are retrieved, not raised. Cancelling the caller still cancels the caller."""
    group = {tasks} if isinstance(tasks, asyncio.Future) else set(tasks)
    for task in group:
        task.cancel()
    if not group:
        return set()
    _, pending = await asyncio.wait(group, timeout=timeout)
    for task in group - pending:
        if not task.cancelled():
            task.exception()  # retrieved: the owner has seen it end
    return pending


class Deadline:
    """An absolute deadline on the monotonic clock (``None`` seconds: never)."""

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        """Seconds left (never below 0), or None for no deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work`` within what is left (TimeoutError past it)."""
        return await asyncio.wait_for(work, self.left())


@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff between reconnection attempts: full jitter over an exponential ceiling.

    ``attempts`` is per drop (then the drop is final), ``budget`` per conversation (a call
    that keeps losing its service ends instead of reconnecting for ever).
    """

    base_s: float = 0.25
    cap_s: float = 8.0
    attempts: int = 6
    budget: int = 12

    def ceiling(self, attempt: int) -> float:
        """The most the ``attempt``-th retry (from 1) waits."""
        return min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A delay drawn uniformly below the ceiling (AWS's "full jitter")."""
        return (rng or _RNG).uniform(0.0, self.ceiling(attempt))

    def budget_for(self) -> ReconnectBudget:
        return ReconnectBudget(self)


class ReconnectBudget:
    """One conversation's reconnections: how many are left of the policy's budget."""

    def __init__(self, policy: ReconnectPolicy) -> None:
        self.policy = policy
        self.spent = 0

    def spend(self) -> bool:
        """Take one attempt; False when the budget is used up."""
        if self.spent >= self.policy.budget:
            return False
        self.spent += 1
        return True

    @property
    def left(self) -> int:
        return max(0, self.policy.budget - self.spent)


_RNG = random.Random()


class LagMonitor:
    """Measures how late the loop wakes a timer: ``observe(seconds)`` gets each lateness.

    One sample every ``interval_s``; the owner runs :meth:`run` as a task and cancels it.
    """

    def __init__(self, observe: Callable[[float], None], interval_s: float = 0.25) -> None:
        self.observe = observe
        self.interval_s = interval_s
        self.worst_s = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - due)
            self.worst_s = max(self.worst_s, lag)
            with contextlib.suppress(Exception):  # a metrics sink must not stop the monitor
                self.observe(lag)
