"""Turn-state facts the state tests left open (found by scripts/mutate.py): a fresh state
before any connection, the technical log of phase changes, the bounded history, the
counters a session starts from."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runner.live.state import Metrics, Phase, Response, TaskGroup, TurnState


def test_a_session_starts_with_no_counts() -> None:
    metrics = Metrics()
    assert (metrics.reconnects, metrics.rollovers) == (0, 0)
    assert metrics.sent_events == {} and metrics.turn_latency == []


def test_a_fresh_state_before_any_connection_owes_nothing() -> None:
    state = TurnState()
    assert state.phase is Phase.RECONNECTING and state.generation == 0
    assert state.idle() and not state.reply_owed() and not state.speaking
    assert not state.between_turns()  # not connected yet
    assert (state.closing, state.stopped, state.requested) == (False, False, 0)


def test_a_phase_change_is_logged_and_a_transition_that_keeps_it_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = TurnState()
    state.connecting()
    with caplog.at_level(logging.DEBUG, logger="vlrun.live.session"):
        state.ready()
        state.typed()
        state.typed()  # still awaiting a response: no line
    lines = [r.getMessage() for r in caplog.records if r.name == "vlrun.live.session"]
    assert lines == [
        "turn: reconnecting -> listening (session.updated)",
        "turn: listening -> awaiting response (typed turn)",
    ]


def test_the_history_keeps_the_newest_transitions_and_drops_the_oldest_half() -> None:
    state = TurnState()
    state.connecting()  # entry 0
    for n in range(1, 500):  # entries 1..499: odd ones ask, even ones answer
        if n % 2:
            state.approval_pending("r")
        else:
            state.approval_decided("r")
    assert len(state.history) == 500 and state.history[0][0] == "connecting"
    state.approval_decided("r")  # entry 500: one too many, entries 0..249 go
    assert len(state.history) == 251
    assert [t for t, _ in state.history[:2]] == ["approval answered", "mcp_approval_request"]
    assert state.history[-1] == ("approval answered", Phase.RECONNECTING)


def test_each_created_response_answers_one_request() -> None:
    state = TurnState()
    state.connecting()
    state.ready()
    state.response_created(Response("unasked"))  # the server's own (a greeting): none owed
    assert state.requested == 0
    state.response_done("unasked", "completed")
    state.response_requested()
    state.response_requested()
    state.response_created(Response("r1"))
    assert state.requested == 1 and state.active is not None and state.active.id == "r1"
    state.response_done("r1", "completed")
    assert state.phase is Phase.AWAITING_RESPONSE and state.reply_owed()
    state.response_created(Response("r2"))
    assert state.requested == 0


async def test_asking_and_answering_are_transitions() -> None:
    # a transition is what wakes TurnState.until's waiters (test_live_state shows that)
    state = TurnState()
    answer = state.ask("Delete it?")
    assert state.history[-1] == ("question asked", Phase.RECONNECTING)
    assert state.answer("yes")
    assert await answer == "yes"
    assert state.history[-1] == ("question answered", Phase.RECONNECTING)


async def test_after_an_answer_the_next_question_shown_skips_askers_that_left() -> None:
    shown: list[str] = []
    state = TurnState(on_question=shown.append)
    first = state.ask("first?")
    second = state.ask("second?")
    third = state.ask("third?")
    second.cancel()  # its asker went away while the first was open
    assert state.answer("a")
    assert shown == ["first?", "third?"]
    assert [q.text for q in state.questions] == ["third?"]
    assert await first == "a" and not third.done()


async def test_a_cancelled_task_raises_nothing_in_the_loop() -> None:

    loop = asyncio.get_running_loop()
    problems: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    try:
        group = TaskGroup(lambda name, exc: None)
        task = group.spawn(asyncio.Event().wait(), "waits")
        task.cancel()
        await asyncio.wait({task})
        assert await group.close() == []
    finally:
        loop.set_exception_handler(None)
    assert problems == [] and group.failures == [] and len(group) == 0


def test_a_reconnect_from_a_live_connection_forgets_requests_in_flight() -> None:
    state = TurnState()
    state.connecting()
    state.ready()
    state.response_requested()
    assert state.phase is Phase.AWAITING_RESPONSE  # the request is a transition of its own
    assert state.history[-1] == ("response.create", Phase.AWAITING_RESPONSE)
    assert state.connecting() == 2  # without disconnected() first: a roll-over
    assert not state.connected and state.phase is Phase.RECONNECTING
    assert state.requested == 0
    state.ready()
    assert state.between_turns() and state.phase is Phase.LISTENING
