"""Calling tools: validation, errors the model can recover from, timeouts, concurrency, context."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.plugins import Registry, ToolContext, ToolResult, tool
from runner.redact import forget_secrets, register_secret

DATA = Path(__file__).parent / "data" / "plugins"
CASES = Registry.discover([DATA / "schema_cases"], entry_points=False)
JSON_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def error_of(result: ToolResult) -> dict:
    assert not result.ok
    body = json.loads(result.output)
    assert set(body) == {"error"}
    assert body["error"]["type"] == result.error_type
    assert body["error"]["message"] == result.error
    return body["error"]


# ---------------------------------------------------------------- arguments


async def test_valid_call_returns_json_output() -> None:
    result = await CASES.dispatch(
        "primitives", "call_1", '{"text": "a", "count": 2, "ratio": 0.5, "flag": true}'
    )
    assert result.ok and result.error is None and result.error_type is None
    assert (result.call_id, result.name) == ("call_1", "primitives")
    assert json.loads(result.output) == {"text": "a", "count": 2, "ratio": 0.5, "flag": True}
    assert result.duration_s >= 0


async def test_bad_json_is_an_error_result() -> None:
    result = await CASES.dispatch("primitives", "c", '{"text": "a", ')
    error = error_of(result)
    assert error["type"] == "invalid_arguments"
    assert "not valid JSON" in error["message"] and "'primitives'" in error["message"]


async def test_non_object_arguments() -> None:
    error = error_of(await CASES.dispatch("primitives", "c", '["a", 1]'))
    assert "must be a JSON object, not list" in error["message"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"count": 2, "ratio": 0.5, "flag": true}', "'text' is a required property"),
        ('{"text": 1, "count": 2, "ratio": 0.5, "flag": true}', "argument 'text': 1 is not of"),
        ('{"text": "a", "count": 2.5, "ratio": 0.5, "flag": true}', "argument 'count'"),
        ('{"text": "a", "count": 2, "ratio": 0.5, "flag": "yes"}', "argument 'flag'"),
        (
            '{"text": "a", "count": 2, "ratio": 0.5, "flag": true, "colour": "red"}',
            "'colour' was unexpected",
        ),
    ],
)
async def test_schema_invalid_arguments_name_the_problem(arguments: str, expected: str) -> None:
    error = error_of(await CASES.dispatch("primitives", "c", arguments))
    assert error["type"] == "invalid_arguments"
    assert expected in error["message"]


async def test_unexpected_argument_lists_the_real_parameters() -> None:
    error = error_of(await CASES.dispatch("literals", "c", '{"mode": "fast", "speed": 3}'))
    assert "the parameters are: mode, level" in error["message"]


async def test_enum_violation_lists_allowed_values() -> None:
    error = error_of(await CASES.dispatch("literals", "c", '{"mode": "medium"}'))
    assert "'medium' is not one of ['fast', 'slow']" in error["message"]


async def test_empty_arguments_for_a_tool_without_parameters() -> None:
    for arguments in ("", "  ", "{}"):
        result = await CASES.dispatch("no_parameters", "c", arguments)
        assert result.ok and result.value == "ok"


async def test_unknown_tool_suggests_a_name() -> None:
    error = error_of(await CASES.dispatch("primitive", "c", "{}"))
    assert error["type"] == "unknown_tool"
    assert "did you mean 'primitives'" in error["message"]


# ---------------------------------------------------------------- conversion


async def test_enum_and_float_values_are_converted() -> None:
    result = await CASES.dispatch("enums", "c", '{"unit": "fahrenheit", "priority": 2}')
    assert result.value == {"unit": "Unit", "value": "fahrenheit", "priority": "HIGH"}
    ints_as_floats = await CASES.dispatch(
        "primitives", "c", '{"text": "", "count": 1, "ratio": 3, "flag": false}'
    )
    assert ints_as_floats.output == '{"text": "", "count": 1, "ratio": 3.0, "flag": false}'


async def test_dataclass_and_nested_values_are_converted() -> None:
    result = await CASES.dispatch(
        "objects", "c", '{"where": {"lat": 1, "lon": 2}, "filters": {"tags": ["x"]}}'
    )
    assert result.value == {"where_type": "Point", "lat": 1.0, "filters": {"tags": ["x"]}}
    nested = await CASES.dispatch(
        "nested",
        "c",
        '{"points": [{"lat": 1, "lon": 2}, {"lat": 3, "lon": 4, "label": "b"}],'
        ' "by_unit": {"a": ["celsius", "fahrenheit"]}}',
    )
    assert nested.value == {"types": ["Point", "Point"], "units": {"a": ["CELSIUS", "FAHRENHEIT"]}}


async def test_tuples_arrive_as_tuples() -> None:
    result = await CASES.dispatch("lists", "c", '{"names": ["a"], "pair": [2, "b"], "many": [1]}')
    assert result.value == {"names": ["a"], "scores": None, "pair": [2, "b"], "many": [1]}


# ---------------------------------------------------------------- results


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Reading:
    at: dt.datetime
    colour: Colour
    tags: set[str]
    elapsed: dt.timedelta


class PydanticLike:
    def model_dump(self, mode: str = "python") -> dict:
        assert mode == "json"
        return {"model": True}


@tool
def rich_result() -> dict:
    """Return everything a tool might return."""
    return {
        "reading": Reading(
            dt.datetime(2026, 1, 2, 3, 4, 5), Colour.RED, {"b", "a"}, dt.timedelta(90)
        ),
        "day": dt.date(2026, 1, 2),
        "model": PydanticLike(),
        "pair": (1, 2),
    }


@tool
def unserialisable() -> object:
    """Return something JSON cannot hold."""
    return threading.Lock()


async def test_results_are_json_serialised() -> None:
    result = await Registry.of(rich_result).dispatch("rich_result", "c", "{}")
    assert result.value == {
        "reading": {
            "at": "2026-01-02T03:04:05",
            "colour": "red",
            "tags": ["a", "b"],
            "elapsed": 90 * 86400.0,
        },
        "day": "2026-01-02",
        "model": {"model": True},
        "pair": [1, 2],
    }


async def test_unserialisable_result_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    error = error_of(await Registry.of(unserialisable).dispatch("unserialisable", "c", "{}"))
    assert error["type"] == "bad_result"
    assert "not JSON-serialisable" in caplog.text


# ---------------------------------------------------------------- failures


@tool
def explodes(what: str) -> None:
    """Always fails."""
    raise ValueError(f"cannot handle {what}")


@pytest.fixture
def secret() -> Iterator[str]:
    value = "sk-test-SECRET-0123456789"
    register_secret(value)
    yield value
    forget_secrets()


async def test_exception_becomes_a_message_and_the_traceback_goes_to_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="vlrun.tools")
    result = await Registry.of(explodes).dispatch("explodes", "call_9", '{"what": "mondays"}')
    error = error_of(result)
    assert error == {"type": "tool_error", "message": "ValueError: cannot handle mondays"}
    assert "Traceback" not in result.output
    record = next(r for r in caplog.records if "call_9" in r.getMessage())
    assert "Traceback" in record.getMessage() and "in explodes" in record.getMessage()


async def test_secrets_never_reach_the_model_or_the_log(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = await Registry.of(explodes).dispatch("explodes", "c", json.dumps({"what": secret}))
    assert secret not in result.output and "***" in result.output
    assert secret not in caplog.text


async def test_context_logger_receives_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("vlrun.test.session42")
    context = ToolContext(session_id="s42", logger=logger)
    await Registry.of(explodes).dispatch("explodes", "c", '{"what": "x"}', context=context)
    (record,) = [r for r in caplog.records if r.name == "vlrun.test.session42"]
    assert "Traceback" in record.getMessage()
    assert "ValueError: cannot handle x" in caplog.text


@tool
async def raises_its_own_timeout() -> None:
    """An upstream timeout is the tool's error, not ours."""
    raise TimeoutError("upstream took too long")


async def test_a_tools_own_timeout_error_is_not_reported_as_our_timeout() -> None:
    error = error_of(
        await Registry.of(raises_its_own_timeout).dispatch(
            "raises_its_own_timeout", "c", "{}", timeout_s=5
        )
    )
    assert error == {"type": "tool_error", "message": "TimeoutError: upstream took too long"}


async def test_async_timeout_cancels_the_tool() -> None:
    cancelled = asyncio.Event()

    @tool
    async def hangs() -> None:
        """Never finishes."""
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    result = await Registry.of(hangs).dispatch("hangs", "c", "{}", timeout_s=0.05)
    error = error_of(result)
    assert error["type"] == "timeout" and "within 0.05 s" in error["message"]
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_sync_timeout_returns_while_the_thread_is_still_busy() -> None:
    release, finished = threading.Event(), threading.Event()

    @tool
    def blocks() -> str:
        """Blocks its worker thread until released."""
        release.wait(10)
        finished.set()
        return "late"

    result = await Registry.of(blocks).dispatch("blocks", "c", "{}", timeout_s=0.05)
    assert error_of(result)["type"] == "timeout"
    assert not finished.is_set()  # the answer did not wait for the thread
    release.set()
    assert await asyncio.to_thread(finished.wait, 5)


async def test_sync_tools_run_off_the_event_loop() -> None:
    # The tool waits for an event the loop sets; if the tool blocked the loop, this deadlocks.
    loop_ran = threading.Event()
    main_thread = threading.get_ident()

    @tool
    def waits_for_loop() -> bool:
        """Needs the loop to keep running."""
        return loop_ran.wait(5) and threading.get_ident() != main_thread

    async def mark() -> None:
        loop_ran.set()

    result, _ = await asyncio.gather(
        Registry.of(waits_for_loop).dispatch("waits_for_loop", "c", "{}", timeout_s=10), mark()
    )
    assert result.ok and result.value is True


# ---------------------------------------------------------------- concurrency


async def test_parallel_calls_run_concurrently_and_keep_call_order() -> None:
    first_started, second_done = asyncio.Event(), asyncio.Event()

    @tool
    async def first(n: int) -> int:
        """Finishes only after the second call has finished."""
        first_started.set()
        await second_done.wait()
        return n

    @tool
    async def second(n: int) -> int:
        """Needs the first call to be running already."""
        await first_started.wait()
        second_done.set()
        return n * 10

    registry = Registry.of(first, second)
    results = await registry.dispatch_many(
        [("first", "call_a", '{"n": 1}'), ("second", "call_b", '{"n": 2}')], timeout_s=5
    )
    assert [(r.call_id, r.value) for r in results] == [("call_a", 1), ("call_b", 20)]


async def test_parallel_sync_tools_use_separate_threads() -> None:
    barrier = threading.Barrier(3, timeout=5)

    @tool
    def meet(i: int) -> int:
        """Waits until all three calls are running at once."""
        barrier.wait()
        return i

    registry = Registry.of(meet)
    calls = [("meet", f"c{i}", json.dumps({"i": i})) for i in range(3)]
    results = await registry.dispatch_many(calls, timeout_s=10)
    assert [r.value for r in results] == [0, 1, 2]


async def test_per_tool_timeouts_and_failures_stay_separate() -> None:
    @tool
    async def slow() -> None:
        """Never finishes."""
        await asyncio.Event().wait()

    registry = Registry.of(slow, explodes, rich_result)
    results = await registry.dispatch_many(
        [("slow", "1", "{}"), ("explodes", "2", '{"what": "x"}'), ("rich_result", "3", "")],
        timeout_s={"slow": 0.05},
    )
    assert [r.error_type for r in results] == ["timeout", "tool_error", None]
    assert [r.call_id for r in results] == ["1", "2", "3"]


# ---------------------------------------------------------------- context


async def test_context_is_injected_per_call() -> None:
    said: list[tuple[str, str]] = []

    async def speak(ctx: ToolContext, text: str) -> None:
        said.append((ctx.call_id, text))

    @tool
    async def uses_context(ctx: ToolContext, city: str) -> dict:
        """Reads the context and speaks."""
        await ctx.say(f"Looking up {city}")
        return {
            "session": ctx.session_id,
            "profile": ctx.profile_name,
            "unit": ctx.vars["unit"],
            "call": ctx.call_id,
            "tool": ctx.tool_name,
        }

    context = ToolContext(
        session_id="sess_1", profile_name="weather", vars={"unit": "celsius"}, say_handler=speak
    )
    registry = Registry.of(uses_context)
    results = await registry.dispatch_many(
        [
            ("uses_context", "call_x", '{"city": "Oslo"}'),
            ("uses_context", "call_y", '{"city": "Rome"}'),
        ],
        context=context,
        timeout_s=5,
    )
    assert [r.value for r in results] == [
        {
            "session": "sess_1",
            "profile": "weather",
            "unit": "celsius",
            "call": "call_x",
            "tool": "uses_context",
        },
        {
            "session": "sess_1",
            "profile": "weather",
            "unit": "celsius",
            "call": "call_y",
            "tool": "uses_context",
        },
    ]
    assert sorted(said) == [("call_x", "Looking up Oslo"), ("call_y", "Looking up Rome")]
    assert context.call_id == ""  # the caller's context is not changed


async def test_say_without_a_runner_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vlrun.tools")
    await ToolContext(tool_name="t").say("One moment")
    assert "tool t would say: One moment" in caplog.text


async def test_sync_tool_gets_context_too() -> None:
    result = await CASES.dispatch(
        "renamed_tool", "call_7", '{"value": 3}', context=ToolContext(), timeout_s=5
    )
    assert result.value == {"call_id": "call_7", "tool_name": "renamed_tool", "value": 3}


async def test_slow_calls_say_one_status_line() -> None:
    release = asyncio.Event()
    said: list[tuple[str, str]] = []
    spoke = asyncio.Event()

    async def speak(ctx: ToolContext, text: str) -> None:
        said.append((ctx.tool_name, text))
        spoke.set()

    @tool
    async def slow_lookup(n: int) -> int:
        """Waits until the status line has been spoken."""
        await release.wait()
        return n

    async def release_after_status() -> None:
        await spoke.wait()
        release.set()

    registry = Registry.of(slow_lookup)
    calls = [("slow_lookup", "a", '{"n": 1}'), ("slow_lookup", "b", '{"n": 2}')]
    results, _ = await asyncio.gather(
        registry.dispatch_many(
            calls,
            context=ToolContext(say_handler=speak),
            timeout_s=5,
            slow_status=(0.01, "Still looking, one moment."),
        ),
        release_after_status(),
    )
    assert [r.value for r in results] == [1, 2]
    assert said == [("slow_lookup", "Still looking, one moment.")]  # once per batch


async def test_fast_calls_say_nothing() -> None:
    said: list[str] = []

    async def speak(ctx: ToolContext, text: str) -> None:
        said.append(text)

    results = await CASES.dispatch_many(
        [("no_parameters", "a", "")],
        context=ToolContext(say_handler=speak),
        slow_status=(5.0, "Still looking"),
    )
    assert results[0].value == "ok" and said == []


async def test_sync_tools_use_their_own_threads() -> None:
    @tool
    def thread_name() -> str:
        """Where am I running?"""
        return threading.current_thread().name

    result = await Registry.of(thread_name).dispatch("thread_name", "c", "")
    assert result.value.startswith("vlrun-tool")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("[" * 100_000, "nested too deeply"),
        ('{"text": "a", "count": 1, "ratio": NaN, "flag": true}', "NaN is not a JSON value"),
        ('{"text": "a", "count": 1, "ratio": -Infinity, "flag": true}', "-Infinity"),
    ],
)
async def test_hostile_json_is_refused_cleanly(arguments: str, expected: str) -> None:
    error = error_of(await CASES.dispatch("primitives", "c", arguments))
    assert error["type"] == "invalid_arguments" and expected in error["message"]


@settings(max_examples=200, deadline=None)
@given(arguments=st.one_of(st.text(max_size=40), st.builds(json.dumps, JSON_ANY)))
async def test_dispatch_never_raises_whatever_the_model_sends(arguments: str) -> None:
    for name in ("primitives", "objects", "nested", "enums"):
        result = await CASES.dispatch(name, "c", arguments, timeout_s=5)
        json.loads(result.output)  # always valid JSON for the model
        assert result.ok or result.error_type == "invalid_arguments"


async def test_call_control_without_a_call_says_where_it_works() -> None:
    registry = Registry.of(rich_result)
    result = await registry.dispatch("transfer", "c", '{"target": "+15551234567"}')
    assert not result.ok and result.error_type == "unknown_tool"
    assert "controls a phone call" in (result.error or "")
    other = await registry.dispatch("rich_reslt", "c", "{}")
    assert "There is no tool named 'rich_reslt'" in (other.error or "")
