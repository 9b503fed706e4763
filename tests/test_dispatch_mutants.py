"""The tool threads' bookkeeping seen from outside (which threads exist, their names), the
size limit as documented, and error text as the model reads it: what scripts/mutate.py
showed the dispatch tests did not pin down."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.plugins import Registry, ToolContext, ToolThreads
from runner.plugins import _dispatch as dispatch

_prefixes = itertools.count()


def fresh_prefix() -> str:
    return f"vlrun-mutants-{next(_prefixes)}"


async def test_threads_are_numbered_from_one_in_the_order_they_start() -> None:
    prefix = fresh_prefix()
    threads = ToolThreads(prefix=prefix)
    gate, running = threading.Event(), threading.Semaphore(0)
    names: list[str] = []

    def hold() -> None:
        names.append(threading.current_thread().name)
        running.release()
        gate.wait(5)

    futures = []
    for tool in ("a", "b", "c"):
        futures.append(threads.submit(hold, {}, tool))
        # the calls before it hold their threads: each call takes a thread of its own (a
        # worker that is quick enough may otherwise take two calls, one after the other)
        assert await asyncio.to_thread(running.acquire, True, 5)
    gate.set()
    await asyncio.gather(*futures)
    assert names == [f"{prefix}-1", f"{prefix}-2", f"{prefix}-3"]


async def test_calls_one_after_another_use_one_thread() -> None:
    park = dispatch.ThreadPark()  # its own park: it counts the threads this pool started
    threads = ToolThreads(limit=4, prefix=fresh_prefix(), park=park)
    for n in range(5):
        assert await threads.submit(lambda n=n: n * 2, {}, "double") == n * 2
    assert park.started == 1


async def test_calls_one_after_another_use_one_thread_even_when_threads_switch_often() -> None:
    # The result reaches the loop before the worker is back waiting: it must count as free
    # then too. Frequent thread switches make that moment likely.
    park = dispatch.ThreadPark()
    threads = ToolThreads(limit=16, prefix=fresh_prefix(), park=park)
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for n in range(200):
            assert await threads.submit(lambda n=n: n, {}, "echo") == n
    finally:
        sys.setswitchinterval(before)
    assert park.started == 1


async def test_a_call_skipped_after_its_deadline_leaves_the_worker_counted_free() -> None:
    park = dispatch.ThreadPark()
    threads = ToolThreads(limit=1, prefix=fresh_prefix(), park=park)
    gate, ran = threading.Event(), []

    def hold() -> str:
        gate.wait(5)
        return "held"

    first = threads.submit(hold, {}, "hold")
    skipped = threads.submit(lambda: ran.append("skipped"), {}, "skipped")
    after = threads.submit(lambda: "after", {}, "after")
    skipped.cancel()  # its deadline passed while it waited for the one thread
    gate.set()
    assert await asyncio.gather(first, after) == ["held", "after"]
    assert ran == []
    threads.limit = 4  # room for more threads: none is needed for a call at a time
    for _ in range(3):
        assert await threads.submit(lambda: "next", {}, "next") == "next"
    assert park.started == 1


async def test_an_idle_worker_ends_after_idle_s_and_the_next_call_starts_a_new_one() -> None:
    park = dispatch.ThreadPark(idle_s=0.05)
    prefix = fresh_prefix()
    threads = ToolThreads(limit=1, prefix=prefix, park=park)
    worker = await threads.submit(threading.current_thread, {}, "one")
    await asyncio.to_thread(worker.join, 5)
    assert not worker.is_alive(), "an idle worker never ended"

    def where() -> tuple[threading.Thread, str]:
        return threading.current_thread(), threading.current_thread().name

    again, name = await threads.submit(where, {}, "two")
    assert again is not worker and name == f"{prefix}-1"  # the pool's first place again
    assert park.started == 2


# ------------------------------------------------------------------ what the model reads


def test_an_error_is_sent_as_readable_text_not_escapes() -> None:
    result = dispatch.failure("c1", "météo", time.perf_counter(), "tool_error", "pas trouvé")
    assert "pas trouvé" in result.output
    assert json.loads(result.output) == {"error": {"type": "tool_error", "message": "pas trouvé"}}


def test_an_error_without_text_is_named_by_its_type() -> None:
    assert dispatch.describe_error(KeyError()) == "KeyError"
    assert dispatch.describe_error(ValueError("  bad  ")) == "ValueError: bad"


@pytest.fixture
def big_registry(tmp_path: Path) -> Iterator[Registry]:
    (tmp_path / "t.py").write_text(
        "from runner.plugins import tool\n\n\n@tool\ndef big(n: int) -> str:\n"
        '    """Return n two-byte characters."""\n    return "é" * n\n'
    )
    yield Registry.discover([tmp_path], entry_points=False)


@pytest.mark.parametrize(("n", "ok"), [(65535, True), (65536, False)])
async def test_the_result_limit_is_128_kib(big_registry: Registry, n: int, ok: bool) -> None:
    # docs: at most 128 KiB = 131072 bytes; 65535 "é" and two quotes are exactly that
    result = await big_registry.dispatch(
        "big", "c", json.dumps({"n": n}), context=ToolContext(call_id="c"), timeout_s=30
    )
    assert result.ok is ok
    if not ok:
        error = json.loads(result.output)["error"]
        assert error["type"] == "result_too_large"
        assert "131074 bytes; at most 131072" in error["message"]
