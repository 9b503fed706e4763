"""runner.testing: plugin authors call their tools exactly as the model would."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runner.plugins import Registry, ToolContext, tool
from runner.testing import ToolCallError, ToolHarness, acall_tool, call_tool, make_context

DATA = Path(__file__).parent / "data" / "plugins"


@tool
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@tool
async def announce(context: ToolContext, text: str) -> str:
    """Say something, then return what the profile variable says."""
    await context.say(text)
    return f"{context.profile_name}:{context.vars.get('lang', '?')}"


def test_call_tool_with_keywords_json_or_mapping() -> None:
    assert call_tool(add, a=2, b=3) == 5
    assert call_tool(add, '{"a": 2}') == 3
    assert call_tool(add, {"a": 40, "b": 2}) == 42


def test_call_tool_raises_with_the_error_the_model_would_get() -> None:
    with pytest.raises(ToolCallError) as info:
        call_tool(add, '{"a": "two"}')
    assert info.value.result.error_type == "invalid_arguments"
    assert "argument 'a'" in str(info.value)


def test_call_tool_refuses_both_argument_forms() -> None:
    with pytest.raises(TypeError):
        call_tool(add, '{"a": 1}', b=2)


async def test_call_tool_inside_a_loop_points_to_acall_tool() -> None:
    with pytest.raises(RuntimeError, match="acall_tool"):
        call_tool(add, a=1)
    assert await acall_tool(add, a=1) == 2


def test_harness_records_spoken_lines_and_results() -> None:
    harness = ToolHarness(announce, add, vars={"lang": "fr"})
    assert harness.call(name="announce", text="One moment") == "test-profile:fr"
    assert harness.call(name="add", a=1) == 2
    assert harness.said == ["One moment"]
    assert [r.call_id for r in harness.results] == ["call_1", "call_2"]
    failed = harness.result(name="add", a="x")
    assert not failed.ok and failed.error_type == "invalid_arguments"


def test_harness_needs_a_name_when_it_holds_several_tools() -> None:
    with pytest.raises(ValueError, match="name="):
        ToolHarness(announce, add).call(a=1)


def test_harness_from_path_loads_like_vlrun() -> None:
    harness = ToolHarness.from_path(DATA / "folder_a", vars={"region": "eu"})
    assert harness.call('{"name": "Ada"}', name="greet") == "Hello, Ada!"
    order = harness.call('{"order_id": "A1"}', name="lookup_order")
    assert order == {"order_id": "A1", "profile": "test-profile", "vars": {"region": "eu"}}
    assert harness.definition("greet")["parameters"]["required"] == ["name"]


def test_harness_accepts_a_registry() -> None:
    harness = ToolHarness(Registry.of(add))
    assert harness.call(a=1, b=1) == 2


def test_make_context_collects_say() -> None:
    said: list[str] = []
    context = make_context(said=said, vars={"x": 1})
    asyncio.run(context.say("hello"))
    assert said == ["hello"] and context.vars["x"] == 1
    with pytest.raises(TypeError):
        context.vars["y"] = 2  # type: ignore[index]


def test_every_testing_helper_is_documented() -> None:
    import runner.testing

    docs = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for name in runner.testing.__all__:
        assert f"`{name}" in docs or f"{name}(" in docs, f"{name} is not in docs/plugins.md"
    for variable in ("VLRUN_TOOLS_ONLY", "VLRUN_TOOLS_ENTRY_POINTS", "VLRUN_WEATHER_API_URL"):
        assert variable in docs
