"""A connection's background tasks end with it, within a bound: one that ignores its cancel
is left (and logged) instead of holding the connection's end, and the emulator's stop, for
ever."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runner.emulator.outbox import Tasks

WAIT_S = 10.0


async def test_close_waits_for_its_tasks_within_a_bound(caplog: pytest.LogCaptureFixture) -> None:
    release, running = asyncio.Event(), asyncio.Event()
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        running.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancels += 1  # ignored: as a task blocked in a cleanup would

    async def polite() -> None:
        await asyncio.Event().wait()

    tasks = Tasks()
    held, ended = tasks.spawn(stubborn()), tasks.spawn(polite())
    await asyncio.wait_for(running.wait(), WAIT_S)  # in its loop, where a cancel is ignored
    with caplog.at_level(logging.WARNING, logger="runner.emulator.outbox"):
        await asyncio.wait_for(tasks.close(timeout=0.2), WAIT_S)
    assert ended.cancelled() and not held.done() and cancels == 1
    assert "1 emulator task(s) did not end when cancelled" in caplog.text
    release.set()
    await asyncio.wait_for(held, WAIT_S)


async def test_a_task_that_fails_is_logged_when_it_fails(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("the ticker broke")

    tasks = Tasks()
    with caplog.at_level(logging.ERROR, logger="runner.emulator.outbox"):
        task = tasks.spawn(broken())
        await asyncio.wait({task}, timeout=WAIT_S)
        assert "an emulator task failed: RuntimeError('the ticker broke')" in caplog.text
    await tasks.close()  # nothing left to wait for
