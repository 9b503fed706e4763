"""TurnState.until on runner.aio.Changes (issue 25, "Shared asyncio primitives"): the wait an
edge (and every part of the session) uses on the turn state has a deadline of its own, and
every transition still wakes every waiter."""

from __future__ import annotations

import asyncio

from runner.live.state import Phase, Response, TurnState


async def test_until_with_a_deadline_says_whether_the_condition_came() -> None:
    state = TurnState()
    # nothing changes: False at the deadline, not an exception and not a hang
    assert await state.until(lambda: state.connected, timeout=0.05) is False
    # already true: True at once, even with no time left
    state.ready()
    assert await state.until(lambda: state.connected, timeout=0) is True


async def test_every_transition_wakes_every_waiter() -> None:
    state = TurnState()
    state.connecting()
    connected = [asyncio.create_task(state.until(lambda: state.connected, 5)) for _ in range(3)]
    replying = asyncio.create_task(state.until(lambda: state.active is not None, 5))
    await asyncio.sleep(0)  # let them all start waiting (a scheduling step, not a delay)
    assert not any(t.done() for t in [*connected, replying])
    state.ready()
    assert await asyncio.gather(*connected) == [True, True, True]
    assert not replying.done()
    state.response_requested()
    state.response_created(Response("resp_1"))
    assert await replying is True
    assert state.phase is Phase.RESPONDING


async def test_a_condition_that_comes_and_goes_between_checks_is_not_missed() -> None:
    """A transition made before the waiter first checks is seen (no lost wake-up)."""
    state = TurnState()
    state.connecting()
    waiter = asyncio.create_task(state.until(lambda: state.responses_ended >= 1, 5))
    state.ready()
    state.response_requested()
    state.response_refused()  # counts as a response that ended (say() relies on it)
    assert await waiter is True
    assert state.requested == 0
