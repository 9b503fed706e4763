"""Edges of one tool call that the dispatch tests left open (found by scripts/mutate.py):
validation without the compiled checker, how many problems a message names, and the tool
threads' bookkeeping."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pytest

from runner.plugins import Registry, ToolThreads, tool
from runner.plugins import _dispatch as dispatch


@tool
def many(a: int, b: int, c: int, d: int, e: int) -> int:
    """Five numbers."""
    return a + b + c + d + e


def test_the_default_pool_size_is_the_documented_16() -> None:
    assert dispatch.TOOL_THREADS == 16 and ToolThreads().limit == 16  # docs/plugins.md


@pytest.mark.parametrize("compiled", [True, False], ids=["checker", "jsonschema"])
def test_validation_is_the_same_without_the_compiled_checker(compiled: bool) -> None:
    spec = Registry.of(many).get("many")
    if not compiled:
        spec = dataclasses.replace(spec, checker=None)
    args, problem = dispatch.parse_arguments(spec, '{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}')
    assert problem is None and args == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    args, problem = dispatch.parse_arguments(spec, '{"a": "x"}')
    assert args == {} and problem is not None and problem.startswith("Invalid arguments")


def test_a_message_names_the_best_problem_first_and_three_at_most() -> None:
    spec = Registry.of(many).get("many")
    _, problem = dispatch.parse_arguments(
        spec, '{"a": "x", "b": "x", "c": "x", "d": "x", "e": "x"}'
    )
    assert problem is not None
    parts = problem.removeprefix("Invalid arguments for 'many': ").rstrip(".").split("; ")
    assert len(parts) == 3, parts
    assert len(set(parts)) == 3, parts  # the best match is not repeated


async def test_a_worker_that_ended_frees_its_place() -> None:
    threads = ToolThreads(limit=1, park=dispatch.ThreadPark(idle_s=0.01))
    worker = await threads.submit(threading.current_thread, {}, "one")
    await asyncio.to_thread(worker.join, 5)  # the idle worker has ended
    assert not worker.is_alive()
    gate, running = threading.Event(), threading.Event()

    def hold() -> bool:
        running.set()
        return gate.wait(5)

    first = threads.submit(hold, {}, "first")
    second = threads.submit(hold, {}, "second")
    assert await asyncio.to_thread(running.wait, 5)
    assert threads.running() == ["first"]  # still one at a time
    gate.set()
    assert await asyncio.gather(first, second) == [True, True]


async def test_an_idle_worker_takes_the_next_call() -> None:
    threads = ToolThreads(limit=4)
    names: list[str] = []
    for _ in range(3):
        await threads.submit(lambda: names.append(threading.current_thread().name), {}, "x")
    assert len(set(names)) == 1  # one thread, reused


async def test_a_result_that_comes_after_the_deadline_is_dropped_quietly() -> None:
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    try:
        # One worker runs the calls in order and hands results over in that order, so once
        # the call after a late one is answered, the late result has reached the loop.
        threads = ToolThreads(limit=1)
        for work in (_late_value, _late_failure):
            gate, running = threading.Event(), threading.Event()
            future = threads.submit(work, {"gate": gate, "running": running}, "late")
            assert await asyncio.to_thread(running.wait, 5)
            future.cancel()  # the deadline passes while the tool still runs
            gate.set()
            assert await threads.submit(lambda: "next", {}, "next") == "next"
            assert future.cancelled()
    finally:
        loop.set_exception_handler(None)
    assert problems == []


def _late_value(gate: threading.Event, running: threading.Event) -> str:
    running.set()
    gate.wait(5)
    return "late"


def _late_failure(gate: threading.Event, running: threading.Event) -> None:
    running.set()
    gate.wait(5)
    raise KeyError("late failure")


def test_a_failure_is_not_ok_and_timed_from_its_start() -> None:
    start = time.perf_counter()
    result = dispatch.failure("c1", "t", start, "timeout", "slow")
    assert result.ok is False and result.error_type == "timeout" and result.error == "slow"
    assert 0 <= result.duration_s < 1


def test_values_a_tool_may_return() -> None:
    import datetime as dt
    import decimal
    import enum
    import json
    import uuid
    from pathlib import Path
    from types import MappingProxyType

    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int

    value = {
        "text": "café ☕",
        "decimal": decimal.Decimal("1.5"),
        "uuid": uuid.UUID(int=1),
        "path": Path("/tmp/x"),
        "bytes": b"caf\xc3\xa9 \xff",
        "mapping": MappingProxyType({"a": 1}),
        "set": {3, 1},
        "enum": Colour.RED,
        "point": Point(2),
        "when": dt.date(2026, 1, 2),
        "delta": dt.timedelta(seconds=90),
        "tuple": (1, 2),
    }
    text = dispatch.to_json(value)
    assert "café ☕" in text  # not \\u escapes: the model reads the text as it is
    assert json.loads(text) == {
        "text": "café ☕",
        "decimal": 1.5,
        "uuid": "00000000-0000-0000-0000-000000000001",
        "path": "/tmp/x",
        "bytes": "café \ufffd",
        "mapping": {"a": 1},
        "set": [1, 3],
        "enum": "red",
        "point": {"x": 2},
        "when": "2026-01-02",
        "delta": 90.0,
        "tuple": [1, 2],
    }
    with pytest.raises(ValueError):
        dispatch.to_json(float("nan"))  # not JSON


def test_an_object_with_a_dict_method_is_not_taken_for_pydantic() -> None:
    class Shop:
        def dict(self) -> dict[str, int]:
            return {"sold": 1}

    with pytest.raises(TypeError, match="Shop is not JSON serialisable"):
        dispatch.to_json(Shop())

    class Legacy:
        __fields__ = {"sold": None}

        def dict(self) -> dict[str, int]:
            return {"sold": 1}

    assert dispatch.to_json(Legacy()) == '{"sold": 1}'
