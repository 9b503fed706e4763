"""The process's park of idle tool threads (issue 27): every session's ``ToolThreads`` borrows
its threads from it, so a busy worker does not start (and end) an OS thread per tool call on
the event loop, while each session keeps its own limit, daemons, skips and ``running()``."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import random
import sys
import threading
from typing import Any

import pytest

from runner.plugins import Registry, ToolThreads, tool
from runner.plugins import _dispatch as dispatch

WAIT_S = 5.0  # every wait of these tests has this deadline


def where() -> tuple[int, str]:
    return threading.get_ident(), threading.current_thread().name


async def test_a_second_sessions_call_runs_on_the_first_sessions_parked_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two sessions made as a live session makes its own (runner/live/tool_calls.py), on the
    # process's park (a fresh one: other tests' hung tools are not this test's). Before: each
    # session's idle thread waited 2 s for that session only, so the second session's call
    # started an OS thread of its own, a different ident, on the event loop.
    park = dispatch.ThreadPark()
    monkeypatch.setattr(dispatch, "PARK", park)
    first, second = ToolThreads(prefix="vlrun-tool"), ToolThreads(prefix="vlrun-tool")
    ident, name = await first.submit(where, {}, "now")
    assert name == "vlrun-tool-1"
    assert park.settled(WAIT_S)  # the first call's thread is back in the park
    assert await second.submit(where, {}, "now") == (ident, "vlrun-tool-1")
    assert park.started == 1  # lent, not started


async def test_sessions_one_after_another_start_one_thread_in_all() -> None:
    park = dispatch.ThreadPark()
    seen = set()
    for session in range(20):
        threads = ToolThreads(prefix=f"s{session}", park=park)
        ident, name = await threads.submit(where, {}, "now")
        assert name == f"s{session}-1"  # named for the session it works for
        seen.add(ident)
        assert park.settled(WAIT_S)
    assert park.started == 1 and len(seen) == 1
    assert park.parked() == 1 and park.alive() == 1


async def test_a_parked_thread_is_named_as_parked_and_is_a_daemon() -> None:
    park = dispatch.ThreadPark(name="parked-here")
    threads = ToolThreads(prefix="named", park=park)
    thread = await threads.submit(threading.current_thread, {}, "me")
    assert park.settled(WAIT_S)
    assert thread.daemon and thread.name == "parked-here"


async def test_a_hung_tool_holds_its_own_sessions_limit_and_nothing_of_another() -> None:
    release = threading.Event()

    @tool
    def hang() -> str:
        """Never returns until the test ends."""
        release.wait(WAIT_S * 2)
        return "late"

    @tool
    def quick(n: int) -> int:
        """Doubles."""
        return n * 2

    park = dispatch.ThreadPark()
    a, b = ToolThreads(limit=1, park=park), ToolThreads(limit=1, park=park)
    registry = Registry.of(hang, quick)
    try:
        hung = await registry.dispatch("hang", "a1", "{}", timeout_s=0.05, threads=a)
        assert hung.error_type == "timeout"
        assert a.running() == ["hang"]  # its thread is still in the call
        # B's calls run, one after another, on one thread of the park beside the hung one
        for n in range(5):
            result = await registry.dispatch("quick", f"b{n}", f'{{"n": {n}}}', threads=b)
            assert result.ok and result.value == n * 2
        assert b.running() == [] and a.running() == ["hang"]
        assert park.started == 2
        # A's limit (1) still holds for A: its next call waits for the hung one, and times out
        late = await registry.dispatch("quick", "a2", '{"n": 1}', timeout_s=0.05, threads=a)
        assert late.error_type == "timeout"
        assert park.started == 2  # no thread was taken for it
    finally:
        release.set()
    # once the hung call returns, A runs again
    result = await registry.dispatch("quick", "a3", '{"n": 4}', timeout_s=WAIT_S, threads=a)
    assert result.ok and result.value == 8
    assert a.running() == []


@pytest.mark.parametrize("bound", [0, 2])
async def test_at_most_the_bound_of_idle_threads_stay_parked(bound: int) -> None:
    park = dispatch.ThreadPark(idle_s=30, max_idle=bound)  # none ends for want of work here
    threads = ToolThreads(limit=6, prefix="wide", park=park)
    gate, running = threading.Event(), threading.Semaphore(0)
    seen: list[threading.Thread] = []

    def hold() -> None:
        seen.append(threading.current_thread())
        running.release()
        gate.wait(WAIT_S)

    futures = []
    for _ in range(6):
        futures.append(threads.submit(hold, {}, "hold"))
        assert await asyncio.to_thread(running.acquire, True, WAIT_S)  # one thread each
    assert park.started == 6 and len({t.ident for t in seen}) == 6
    gate.set()
    await asyncio.gather(*futures)
    assert park.settled(WAIT_S)
    assert park.parked() == bound and park.alive() == bound
    for thread in seen:
        if thread.name != park.name:  # not parked: it ended instead
            thread.join(WAIT_S)
    assert sum(t.is_alive() for t in seen) == bound


async def test_a_parked_thread_ends_after_idle_s() -> None:
    park = dispatch.ThreadPark(idle_s=0.02)
    threads = ToolThreads(park=park)
    thread = await threads.submit(threading.current_thread, {}, "me")
    await asyncio.to_thread(thread.join, WAIT_S)
    assert not thread.is_alive()
    assert park.alive() == 0 and park.parked() == 0
    # the next call starts a thread again, and it works
    assert await threads.submit(lambda: "again", {}, "again") == "again"
    assert park.started == 2


def test_the_idle_time_and_the_bound_are_the_documented_ones() -> None:
    assert dispatch.ThreadPark().idle_s == dispatch.IDLE_S == 2.0  # docs/architecture.md
    assert dispatch.PARK.max_idle == dispatch.PARKED_MAX == 32


async def test_contextvars_of_one_session_never_reach_anothers_call_on_the_same_thread() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")
    park = dispatch.ThreadPark()
    a, b = ToolThreads(park=park), ToolThreads(park=park)

    def read_and_set() -> tuple[int, str]:
        seen = var.get()
        var.set("changed by the tool")  # in the call's own copy: it stays there
        return threading.get_ident(), seen

    token = var.set("session A")
    try:
        ident_a, seen_a = await a.submit(read_and_set, {}, "read")
    finally:
        var.reset(token)
    assert park.settled(WAIT_S)
    ident_b, seen_b = await b.submit(read_and_set, {}, "read")
    assert ident_a == ident_b  # the same OS thread served both
    assert (seen_a, seen_b) == ("session A", "nobody")
    assert var.get() == "nobody"


async def test_a_thread_the_os_refuses_fails_the_call_and_frees_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: the pool counted a worker that never started, so with limit=1 every later call
    # of that session waited for a thread that would never come.
    park = dispatch.ThreadPark()
    threads = ToolThreads(limit=1, park=park)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start"):
            threads.submit(lambda: "never", {}, "never")
    assert park.alive() == 0
    assert await asyncio.wait_for(threads.submit(lambda: "next", {}, "next"), WAIT_S) == "next"


async def test_a_tools_keyboard_interrupt_reaches_the_caller_and_the_thread_goes_on() -> None:
    park = dispatch.ThreadPark()
    threads = ToolThreads(park=park)

    def interrupts() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await threads.submit(interrupts, {}, "interrupts")
    assert await threads.submit(lambda: "after", {}, "after") == "after"
    assert park.started == 1


class Stop(BaseException):
    """Neither an Exception nor an exit: the worker does not catch it."""


async def test_an_uncaught_base_exception_ends_its_thread_but_not_the_call_or_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ended: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: ended.append(args.exc_type))
    park = dispatch.ThreadPark()
    threads = ToolThreads(limit=1, park=park)

    def stops() -> None:
        raise Stop

    thread_of: list[threading.Thread] = []

    def stops_here() -> None:
        thread_of.append(threading.current_thread())
        stops()

    with pytest.raises(RuntimeError, match="thread was ended"):
        await asyncio.wait_for(threads.submit(stops_here, {}, "stops"), WAIT_S)
    await asyncio.to_thread(thread_of[0].join, WAIT_S)
    assert not thread_of[0].is_alive() and ended == [Stop]
    assert park.alive() == 0 and threads.running() == []
    assert await asyncio.wait_for(threads.submit(lambda: "next", {}, "next"), WAIT_S) == "next"


# ------------------------------------------------------------------ many loops, many sessions


def run_sessions(
    park: dispatch.ThreadPark, seed: int, sessions: int, calls: int
) -> list[tuple[Any, Any]]:
    """One event loop of its own: ``sessions`` pools submit ``calls`` calls each in a random
    order and mix (values, failures, calls that hold until later ones, calls given up)."""
    rng = random.Random(seed)

    async def main() -> list[tuple[Any, Any]]:
        problems: list[dict[str, Any]] = []  # e.g. a late result set on a cancelled future
        asyncio.get_running_loop().set_exception_handler(lambda _, c: problems.append(c))
        pools = [
            ToolThreads(limit=rng.randint(1, 3), prefix=f"r{seed}-{s}", park=park)
            for s in range(sessions)
        ]
        meter = Meter()

        def submit(pool: ToolThreads, work: Any, kwargs: dict[str, Any]) -> Any:
            metered = {"meter": meter, "pool": pool, "work": work, "kwargs": kwargs}
            return pool.submit(_metered, metered, work.__name__)

        gate = threading.Event()
        outcomes: list[tuple[Any, Any]] = []  # (expected, future)
        pending: list[tuple[Any, asyncio.Future[Any]]] = []
        for n in range(sessions * calls):
            pool = rng.choice(pools)
            kind = rng.choice(["value", "value", "fail", "hold", "give up"])
            key = f"{seed}:{n}"
            if kind == "value":
                pending.append((key, submit(pool, _value, {"key": key})))
            elif kind == "fail":
                pending.append((KeyError(key), submit(pool, _fail, {"key": key})))
            elif kind == "hold":
                pending.append((key, submit(pool, _hold, {"gate": gate, "key": key})))
            else:
                future = submit(pool, _value, {"key": "given up"})
                future.cancel()  # its deadline passed at once
                pending.append((None, future))
            if rng.random() < 0.3:
                await asyncio.sleep(0)  # let results in between submissions
            if rng.random() < 0.1:
                gate.set()
                gate = threading.Event()
        gate.set()
        done, not_done = await asyncio.wait([f for _, f in pending], timeout=WAIT_S * 4)
        assert not not_done, f"{len(not_done)} calls never resolved"
        for expected, future in pending:
            if expected is None:
                outcomes.append((None, future.cancelled()))
            elif isinstance(expected, KeyError):
                error = future.exception()
                outcomes.append((repr(expected), repr(error)))
            else:
                outcomes.append((expected, future.result()))
        for pool in pools:
            assert pool.running() == []
        # the results of calls given up arrive (or not) after the wait: one more call on each
        # pool, answered after them, shows any was dropped quietly
        for pool in pools:
            assert await pool.submit(lambda: "last", {}, "last") == "last"
        assert problems == []
        for pool in pools:  # each session's limit held at every moment, whoever's thread
            assert 1 <= meter.peak[pool.prefix] <= pool.limit
        assert meter.misnamed == []
        return outcomes

    return asyncio.run(main())


class Meter:
    """How many calls of each pool ran at once, at most, and on threads named for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.misnamed: list[str] = []


def _metered(meter: Meter, pool: ToolThreads, work: Any, kwargs: dict[str, Any]) -> Any:
    name = threading.current_thread().name
    with meter.lock:
        meter.now[pool.prefix] += 1
        meter.peak[pool.prefix] = max(meter.peak[pool.prefix], meter.now[pool.prefix])
        prefix, _, place = name.rpartition("-")
        if prefix != pool.prefix or not 1 <= int(place) <= pool.limit:
            meter.misnamed.append(name)
    try:
        return work(**kwargs)
    finally:
        with meter.lock:
            meter.now[pool.prefix] -= 1


def _value(key: str) -> str:
    return key


def _fail(key: str) -> None:
    raise KeyError(key)


def _hold(gate: threading.Event, key: str) -> str:
    gate.wait(WAIT_S)
    return key


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_sessions_on_several_loops_all_get_their_results_and_leak_no_thread(
    seed: int,
) -> None:
    park = dispatch.ThreadPark(max_idle=4)
    results: dict[int, list[tuple[Any, Any]]] = {}
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        try:
            results[index] = run_sessions(park, seed * 10 + index, sessions=6, calls=25)
        except Exception as exc:
            errors.append(exc)

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: more interleavings
    try:
        loops = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(4)]
        for thread in loops:
            thread.start()
        for thread in loops:
            thread.join(WAIT_S * 6)
    finally:
        sys.setswitchinterval(before)
    assert not any(t.is_alive() for t in loops), "a loop never finished"
    assert errors == []
    assert len(results) == 4
    for outcomes in results.values():
        assert len(outcomes) == 150
        for expected, got in outcomes:
            if expected is None:
                assert got is True  # given up: a result that comes later is dropped
            else:
                assert got == expected
    assert park.settled(WAIT_S)
    assert park.alive() <= 4 and park.parked() == park.alive()  # the bound: no thread leak
