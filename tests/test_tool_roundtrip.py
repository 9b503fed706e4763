"""The whole loop with real parts: the official SDK talks to the emulator, the emulated model
calls our tools, the Registry runs them, the outputs go back as function_call_output items,
and the model's next reply uses them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.ai.voicelive.models import FunctionCallOutputItem
from azure.core.credentials import AzureKeyCredential

from runner.emulator import running_emulator
from runner.plugins import Registry, ToolContext, ToolResult
from tests.helpers import events_until, say_text

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = Registry.discover([ROOT / "tools"], entry_points=False)

SCRIPT = {
    "description": "Calls the example tools; used by the tool round-trip tests.",
    "turns": [
        {
            "match": "two things",
            "tools": [
                {"name": "calculate", "arguments": {"expression": "6 * 7"}},
                {"name": "current_time", "arguments": {"timezone": "Asia/Tokyo"}},
            ],
            "then": "The answer is {outputs.0.result} and in Tokyo it is {outputs.1.time}.",
        },
        {
            "match": "broken arguments",
            "tools": [{"name": "current_time", "arguments": '{"timezone": 5}'}],
            "then": "The tool said: {output.error.message}",
        },
    ],
}


@pytest.fixture
async def conn() -> AsyncIterator[VoiceLiveConnection]:
    async with (
        running_emulator(speed=0, scenario=SCRIPT) as emu,
        connect(
            endpoint=emu.endpoint, credential=AzureKeyCredential("any"), model="gpt-realtime"
        ) as c,
    ):
        await events_until(c, "session.created")
        tools = [REGISTRY.get(name).definition() for name in REGISTRY.names()]
        await c.session.update(
            session={"turn_detection": None, "modalities": ["text"], "tools": tools}
        )
        await events_until(c, "session.updated")
        yield c


async def turn(conn: VoiceLiveConnection, text: str) -> tuple[list[ToolResult], str]:
    """One user turn: run every tool call the way the live runner does; return the reply text."""
    await say_text(conn, text)
    events = await events_until(conn, "response.done")
    calls = [
        (e.name, e.call_id, e.arguments)
        for e in events
        if e.type == "response.function_call_arguments.done"
    ]
    assert calls, f"the model called no tool for {text!r}"
    context = ToolContext(session_id="roundtrip", profile_name="examples")
    results = await REGISTRY.dispatch_many(calls, context=context, timeout_s=5)
    for result in results:
        await conn.conversation.item.create(
            item=FunctionCallOutputItem(call_id=result.call_id, output=result.output)
        )
    await conn.response.create()
    events = await events_until(conn, "response.done")
    reply = "".join(e.delta for e in events if e.type == "response.text.delta")
    return results, reply


async def test_default_model_calls_current_time_and_speaks_its_output(
    conn: VoiceLiveConnection,
) -> None:
    # No scripted rule matches: the emulated model picks the tool by its name and description
    # and fills the arguments from the sentence, using the schema our registry built.
    [result], reply = await turn(conn, "What time is it in Europe/Paris?")
    assert result.name == "current_time" and result.ok, result.output
    output: dict[str, Any] = json.loads(result.output)
    assert output["timezone"] == "Europe/Paris"
    assert output["time"] in reply and output["iso"] in reply


async def test_parallel_calls_return_in_order_and_the_reply_uses_both(
    conn: VoiceLiveConnection,
) -> None:
    results, reply = await turn(conn, "Tell me two things please")
    assert [r.name for r in results] == ["calculate", "current_time"]
    assert all(r.ok for r in results)
    tokyo = json.loads(results[1].output)["time"]
    assert reply == f"The answer is 42 and in Tokyo it is {tokyo}."


async def test_invalid_arguments_reach_the_model_as_a_recoverable_error(
    conn: VoiceLiveConnection,
) -> None:
    [result], reply = await turn(conn, "Try broken arguments")
    assert result.error_type == "invalid_arguments"
    assert reply == f"The tool said: {result.error}"
    assert "argument 'timezone': 5 is not of type 'string'" in reply
