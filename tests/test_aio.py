"""runner/aio.py: the shared asyncio primitives, under randomised schedules."""

from __future__ import annotations

import asyncio
import random

import pytest

from runner.aio import (
    Changes,
    Channel,
    ChannelClosed,
    Deadline,
    LagMonitor,
    ReconnectPolicy,
    cancel_and_wait,
)


async def test_changes_wakes_every_waiter_without_losing_a_notify() -> None:
    changes = Changes()
    state = {"n": 0}
    waiters = [
        asyncio.create_task(changes.until(lambda k=k: state["n"] >= k, timeout=5)) for k in (1, 3)
    ]
    for _ in range(3):
        await asyncio.sleep(0)  # let the waiters reach their wait between changes
        state["n"] += 1
        changes.notify()
    assert await asyncio.gather(*waiters) == [True, True]


async def test_changes_until_times_out_with_false() -> None:
    assert await Changes().until(lambda: False, timeout=0.01) is False
    assert await Changes().until(lambda: True, timeout=0) is True


async def test_channel_drop_oldest_keeps_the_newest_and_counts() -> None:
    channel: Channel[int] = Channel(3, "drop_oldest")
    for i in range(5):
        assert channel.put(i)
    assert channel.dropped == 2
    assert channel.drain() == [2, 3, 4]


async def test_channel_refuse_keeps_the_oldest_and_says_so() -> None:
    channel: Channel[int] = Channel(2, "refuse")
    assert [channel.put(i) for i in range(4)] == [True, True, False, False]
    assert channel.dropped == 2
    assert [await channel.get(), await channel.get()] == [0, 1]


async def test_channel_close_ends_readers_after_what_is_left() -> None:
    channel: Channel[int] = Channel(4, "refuse")
    channel.put(1)
    reader = asyncio.create_task(_collect(channel))
    channel.put(2)
    channel.close()
    assert await asyncio.wait_for(reader, 5) == [1, 2]
    with pytest.raises(ChannelClosed):
        channel.put(3)
    with pytest.raises(asyncio.TimeoutError):
        await Channel(1, "refuse").get(timeout=0.01)


async def _collect(channel: Channel[int]) -> list[int]:
    return [item async for item in channel]


@pytest.mark.parametrize("seed", range(20))
async def test_channel_interleavings_lose_nothing_under_bound(seed: int) -> None:
    """A writer and a reader on random schedules: every item arrives once, in order."""
    rng = random.Random(seed)
    channel: Channel[int] = Channel(1000, "refuse")

    async def writer() -> None:
        for i in range(200):
            if rng.random() < 0.3:
                await asyncio.sleep(0)
            assert channel.put(i)
        channel.close()

    got, _ = await asyncio.gather(_collect(channel), writer())
    assert got == list(range(200))


async def test_cancel_and_wait_ends_tasks_and_retrieves_their_errors() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise RuntimeError("boom")

    failing = asyncio.create_task(fails())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(forever())
    pending = await cancel_and_wait([failing, waiting], timeout=5)
    assert pending == set()
    assert waiting.cancelled() and failing.done()


async def test_cancel_and_wait_reports_a_task_that_ignores_cancellation() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a bug in someone's task: the owner must learn of it

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout=0.05) == {task}
    release.set()
    await asyncio.wait_for(task, 5)


def test_reconnect_policy_full_jitter_within_ceilings_and_spread() -> None:
    policy = ReconnectPolicy(base_s=0.5, cap_s=4.0)
    assert [policy.ceiling(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    rng = random.Random(7)
    delays = [policy.delay(3, rng) for _ in range(150)]
    assert all(0 <= d <= 2.0 for d in delays)
    # 150 calls that lost the service together do not come back together
    assert len({round(d, 3) for d in delays}) > 100


def test_reconnect_budget_is_spent_once_per_attempt() -> None:
    budget = ReconnectPolicy(budget=2).budget_for()
    assert [budget.spend(), budget.spend(), budget.spend()] == [True, True, False]
    assert budget.left == 0


async def test_deadline_shared_by_waits() -> None:
    deadline = Deadline(0.05)
    with pytest.raises(asyncio.TimeoutError):
        await deadline.run(asyncio.Event().wait())
    assert deadline.expired() and deadline.left() == 0
    assert Deadline(None).left() is None and not Deadline(None).expired()


async def test_lag_monitor_sees_a_blocked_loop() -> None:
    import time

    seen: list[float] = []
    changes = Changes()

    def observe(lag: float) -> None:
        seen.append(lag)
        changes.notify()

    monitor = LagMonitor(observe, interval_s=0.01)
    task = asyncio.create_task(monitor.run())
    assert await changes.until(lambda: len(seen) >= 1, timeout=5)
    time.sleep(0.1)  # noqa: ASYNC251 - blocking the loop is what the monitor must see
    assert await changes.until(lambda: len(seen) >= 2, timeout=5)
    await cancel_and_wait(task)
    assert monitor.worst_s >= 0.05


async def test_changes_next_wakes_on_the_next_notify_or_times_out() -> None:
    changes = Changes()
    waiter = asyncio.create_task(changes.next(5))
    await asyncio.sleep(0)  # the waiter is waiting
    changes.notify()
    assert await waiter is True
    assert await changes.next(0.01) is False
