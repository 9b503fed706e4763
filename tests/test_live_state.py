"""The turn state and the task group on their own: each transition, each phase, each failure.

docs/live-session.md has the table these tests walk through.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from runner.live.state import Phase, Response, TaskGroup, ToolRun, TurnState
from runner.plugins import Registry, ToolThreads, tool


def ready_state(**kwargs: Any) -> TurnState:
    state = TurnState(**kwargs)
    state.connecting()
    state.ready()
    return state


def test_a_new_state_is_reconnecting_then_listening() -> None:
    state = TurnState()
    assert state.phase is Phase.RECONNECTING
    assert state.connecting() == 1
    assert state.phase is Phase.RECONNECTING and not state.connected
    state.ready()
    assert state.phase is Phase.LISTENING and state.connected
    assert state.between_turns() and state.idle() and not state.reply_owed()
    assert state.history[-1] == ("session.updated", Phase.LISTENING)


def test_a_typed_turn_and_its_response() -> None:
    state = ready_state()
    state.typed()
    assert state.phase is Phase.AWAITING_RESPONSE and state.owed
    assert not state.between_turns() and state.reply_owed() and not state.idle()
    state.response_requested()
    assert state.requested == 1
    resp = Response("r1")
    state.response_created(resp)
    assert state.requested == 0 and state.active is resp and state.responses == {"r1": resp}
    assert state.phase is Phase.RESPONDING
    assert state.response_done("r1", "completed") is resp
    assert state.active is None and not state.owed and state.responses == {}
    assert state.phase is Phase.LISTENING and state.between_turns()


@pytest.mark.parametrize("status", ["completed", "failed", "incomplete"])
def test_a_finished_response_pays_the_turn(status: str) -> None:
    state = ready_state()
    state.typed()
    state.response_created(Response("r"))
    state.response_done("r", status)
    assert not state.owed and state.phase is Phase.LISTENING


def test_a_cancelled_response_still_owes_unless_muted() -> None:
    state = ready_state()
    state.typed()
    state.response_created(Response("r"))
    state.response_done("r", "cancelled")
    assert state.owed and state.phase is Phase.AWAITING_RESPONSE
    muted = Response("m", muted=True)
    state.response_created(muted)
    state.response_done("m", "cancelled")
    assert not state.owed


def test_a_response_with_calls_keeps_the_turn_owed() -> None:
    state = ready_state()
    state.typed()
    resp = Response("r", calls=[("t", "c1", "{}")])
    state.response_created(resp)
    assert state.response_done("r", "completed") is resp
    assert state.owed
    run = ToolRun("t", "c1", "{}", state.generation)
    state.tools_started([run])
    assert state.calls == {"c1": run} and state.phase is Phase.RUNNING_TOOLS
    assert not state.between_turns() and state.reply_owed()
    state.tools_finished([run])
    assert state.calls == {} and state.phase is Phase.AWAITING_RESPONSE


def test_a_cancelled_response_with_calls_pays_nothing() -> None:
    state = ready_state()
    state.typed()
    state.response_created(Response("r", calls=[("t", "c1", "{}")]))
    state.response_done("r", "cancelled")
    assert state.owed


def test_done_for_another_response_keeps_the_active_one() -> None:
    state = ready_state()
    a, b = Response("a"), Response("b")
    state.response_created(a)
    state.response_created(b)
    assert state.response_done("a", "completed") is a
    assert state.active is b and state.phase is Phase.RESPONDING
    assert state.response_done("zzz", "completed") is None


def test_refused_response_create() -> None:
    state = ready_state()
    state.response_requested()
    state.response_requested()
    state.response_refused()
    assert state.requested == 1 and state.phase is Phase.AWAITING_RESPONSE
    state.response_refused()
    state.response_refused()  # never below zero
    assert state.requested == 0 and state.phase is Phase.LISTENING
    state.response_created(Response("x"))  # created without a request in flight
    assert state.requested == 0


def test_speech() -> None:
    state = ready_state()
    state.speech_started()
    assert state.speaking and state.phase is Phase.USER_SPEAKING and not state.idle()
    assert state.between_turns()  # speaking alone does not block a typed turn
    state.speech_stopped()
    assert not state.speaking and state.owed and state.phase is Phase.AWAITING_RESPONSE


def test_speaking_over_a_reply_is_user_speaking_tools_win() -> None:
    state = ready_state()
    state.response_created(Response("r"))
    state.speech_started()
    assert state.phase is Phase.USER_SPEAKING
    run = ToolRun("t", "c", "{}", state.generation)
    state.tools_started([run])
    assert state.phase is Phase.RUNNING_TOOLS
    state.approval_pending("a1")
    assert state.phase is Phase.AWAITING_APPROVAL


def test_a_reconnect_fences_what_was_in_flight() -> None:
    state = ready_state()
    state.typed()
    state.response_requested()
    state.speech_started()
    state.response_created(Response("r"))
    run = ToolRun("t", "c1", "{}", state.generation)
    state.tools_started([run])
    state.approval_pending("a1")
    state.disconnected()
    assert state.phase is Phase.RECONNECTING and not state.connected
    assert state.connecting() == 2
    assert (state.active, state.requested, state.speaking, state.owed) == (None, 0, False, False)
    assert state.calls == {} and state.approvals == set() and state.responses == {}
    old = ToolRun("t", "c2", "{}", 1)
    state.tools_started([old])  # a call of connection 1 is not one of connection 2
    assert state.calls == {}
    state.ready()
    state.tools_finished([run])  # an old run finishing changes nothing
    assert state.phase is Phase.LISTENING


def test_tools_finished_removes_only_its_own_runs() -> None:
    state = ready_state()
    a = ToolRun("t", "c1", "{}", state.generation)
    b = ToolRun("t", "c2", "{}", state.generation)
    state.tools_started([a, b])
    imposter = ToolRun("t", "c1", "{}", state.generation)
    state.tools_finished([imposter])
    assert set(state.calls) == {"c1", "c2"}
    state.tools_finished([a])
    assert set(state.calls) == {"c2"}


def test_approvals() -> None:
    state = ready_state()
    state.approval_pending("a1")
    assert state.phase is Phase.AWAITING_APPROVAL and not state.between_turns()
    assert state.reply_owed()
    state.approval_decided("a1")
    state.approval_decided("a1")  # twice is harmless
    assert state.phase is Phase.LISTENING


async def test_questions_are_shown_and_answered_oldest_first() -> None:
    shown: list[str] = []
    state = ready_state(on_question=shown.append)
    assert not state.answer("y")  # no question: the line is not an answer
    first = state.ask("first?")
    second = state.ask("second?")
    assert shown == ["first?"]  # one question on the console at a time
    assert state.answer("y")
    assert first.result() == "y" and shown == ["first?", "second?"]
    assert state.answer("n")
    assert second.result() == "n" and shown == ["first?", "second?"]
    assert not state.answer("again")


async def test_a_question_whose_asker_left_is_skipped() -> None:
    shown: list[str] = []
    state = ready_state(on_question=shown.append)
    gone = state.ask("gone?")
    kept = state.ask("kept?")
    third = state.ask("third?")
    gone.cancel()
    assert state.answer("y")
    assert kept.result() == "y"
    kept_shown = shown[-1]
    assert kept_shown == "third?"
    third.cancel()
    assert not state.answer("n")
    assert not state.questions


def test_closing_and_stopping_win_over_everything() -> None:
    state = ready_state()
    state.approval_pending("a")
    state.close()
    assert state.closing and state.phase is Phase.CLOSING
    other = ready_state()
    other.disconnected()
    other.stop()
    assert other.stopped and other.phase is Phase.CLOSING


async def test_until_wakes_on_a_transition() -> None:
    state = ready_state()
    state.typed()
    waiter = asyncio.create_task(state.until(state.between_turns))
    await asyncio.sleep(0)
    assert not waiter.done()
    state.response_created(Response("r"))
    await asyncio.sleep(0)
    assert not waiter.done()
    state.response_done("r", "completed")
    await asyncio.wait_for(waiter, 1)
    await asyncio.wait_for(state.until(state.between_turns), 1)  # true already: no wait


def test_history_is_bounded() -> None:
    state = ready_state()
    for _ in range(600):
        state.typed()
    assert len(state.history) <= 500


# ---------------------------------------------------------------------------- task group


async def test_a_failing_task_is_reported_and_recovered() -> None:
    reported: list[tuple[str, BaseException]] = []
    recovered: list[BaseException] = []
    group = TaskGroup(lambda name, exc: reported.append((name, exc)))

    async def boom() -> None:
        raise ValueError("boom")

    task = group.spawn(boom(), "the-boom", on_error=recovered.append)
    assert len(group) == 1
    await asyncio.wait({task})
    await asyncio.sleep(0)
    assert len(group) == 0
    assert [n for n, _ in reported] == ["the-boom"] and isinstance(reported[0][1], ValueError)
    assert group.failures == reported
    assert [str(e) for e in recovered] == ["boom"]


async def test_a_failing_recovery_is_reported_too() -> None:
    reported: list[str] = []
    group = TaskGroup(lambda name, exc: reported.append(name))

    async def boom() -> None:
        raise ValueError("boom")

    def recover(exc: BaseException) -> None:
        raise RuntimeError("again")

    await asyncio.wait({group.spawn(boom(), "t", on_error=recover)})
    await asyncio.sleep(0)
    assert reported == ["t", "t (recovery)"]


async def test_a_cancelled_or_finished_task_is_not_a_failure() -> None:
    reported: list[str] = []
    group = TaskGroup(lambda name, exc: reported.append(name))
    ok = group.spawn(asyncio.sleep(0), "ok")
    slow = group.spawn(asyncio.sleep(10), "slow")
    await asyncio.wait({ok})
    assert await group.close() == []
    assert slow.cancelled() and reported == [] and group.failures == []
    assert await group.close() == []


async def test_close_is_bounded_by_a_task_that_ignores_cancellation() -> None:
    group = TaskGroup(lambda name, exc: None)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    task = group.spawn(stubborn(), "stubborn")
    await asyncio.sleep(0)
    started = time.perf_counter()
    assert await group.close(timeout=0.1) == [task]
    assert time.perf_counter() - started < 0.5
    release.set()
    task.cancel()
    await asyncio.wait({task})


async def test_cancelling_the_closer_propagates() -> None:
    group = TaskGroup(lambda name, exc: None)
    release, asked = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                asked.set()
                continue

    task = group.spawn(stubborn(), "stubborn")
    await asyncio.sleep(0)
    closer = asyncio.create_task(group.close(timeout=5))
    await asyncio.wait_for(asked.wait(), 5)  # the closer cancelled it and now waits for it
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    release.set()
    task.cancel()
    await asyncio.wait({task})


# ---------------------------------------------------------------------------- tool threads


async def test_tool_threads_are_daemons_named_and_bounded() -> None:
    threads = ToolThreads(limit=2, prefix="t")
    gate, both = threading.Event(), threading.Event()
    seen: list[threading.Thread] = []

    def held(n: int) -> int:
        seen.append(threading.current_thread())
        if len(seen) == 2:
            both.set()
        gate.wait(5)
        return n

    futures = [threads.submit(held, {"n": i}, f"held{i}") for i in range(3)]
    assert await asyncio.to_thread(both.wait, 5)
    assert threads.running() == ["held0", "held1"]  # the third waits for a thread
    assert all(t.daemon for t in seen) and seen[0].name.startswith("t-")
    gate.set()
    assert await asyncio.gather(*futures) == [0, 1, 2]
    assert threads.running() == []


async def test_a_job_whose_deadline_passed_before_a_thread_was_free_never_runs() -> None:
    threads = ToolThreads(limit=1)
    gate = threading.Event()
    ran: list[str] = []

    def first() -> str:
        gate.wait(5)
        return "first"

    def second() -> str:
        ran.append("second")
        return "second"

    one = threads.submit(first, {}, "first")
    two = threads.submit(second, {}, "second")
    two.cancel()
    gate.set()
    assert await one == "first"
    # the one worker takes its calls in order: once a later one is answered, "second" is past
    assert await threads.submit(lambda: "third", {}, "third") == "third"
    assert ran == []


async def test_a_tool_exception_crosses_the_thread() -> None:
    threads = ToolThreads()

    def bad() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await threads.submit(bad, {}, "bad")


async def test_an_abandoned_result_is_dropped() -> None:
    threads = ToolThreads(limit=1)
    gate = threading.Event()
    future = threads.submit(lambda: gate.wait(5), {}, "late")
    future.cancel()
    gate.set()
    assert await threads.submit(lambda: "next", {}, "next") == "next"  # the late one is past
    assert future.cancelled() and threads.running() == []


async def test_a_hung_sync_tool_times_out_and_its_thread_is_left_behind() -> None:
    gate = threading.Event()

    @tool
    def hang() -> str:
        """Hang."""
        gate.wait(10)
        return "late"

    threads = ToolThreads(limit=1)
    registry = Registry.of(hang)
    result = await registry.dispatch("hang", "c1", "{}", timeout_s=0.05, threads=threads)
    assert result.error_type == "timeout"
    assert threads.running() == ["hang"]
    gate.set()
    assert await threads.submit(lambda: "next", {}, "next") == "next"  # after the hung one
    assert threads.running() == []
