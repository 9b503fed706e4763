"""Built-in web_search and file_search tools in the emulator (issue 29 item 4;
docs/emulator.md#builtin-search): accepted from 2026-04-10 on dated versions, run by the
"service" inside the response with the SDK's documented events, and answered with a sentence
that says nothing was searched. Through the official SDK, which models those items and events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.ai.voicelive.models import (
    ResponseFileSearchCallItem,
    ResponseWebSearchCallItem,
    ServerEvent,
    ServerEventResponseFileSearchCallCompleted,
    ServerEventResponseWebSearchCallCompleted,
    ServerEventResponseWebSearchCallInProgress,
    ServerEventResponseWebSearchCallSearching,
)
from azure.core.credentials import AzureKeyCredential
from websockets.asyncio.client import connect as ws_connect

from runner.emulator import running_emulator
from tests.helpers import WEATHER_TOOL, events_until, say_text

FILES = {"type": "file_search", "vector_store_ids": ["vs_menu"], "max_num_results": 3}


def sdk(endpoint: str, version: str = "2026-07-15") -> Any:
    return connect(
        endpoint=endpoint,
        credential=AzureKeyCredential("k"),
        model="gpt-realtime",
        api_version=version,
    )


async def configure(conn: VoiceLiveConnection, **session: Any) -> None:
    await events_until(conn, "session.created")
    body = {"turn_detection": None, "modalities": ["text"], **session}
    await conn.send({"type": "session.update", "session": body})
    done = await events_until(conn, "session.updated")
    assert not [e for e in done if e.type == "error"], done


def spoken(events: list[ServerEvent]) -> str:
    return " ".join(e.text for e in events if e.type == "response.text.done")


async def test_a_web_search_runs_inside_the_response_and_says_it_is_emulated() -> None:
    # source: docs/emulator.md#builtin-search
    async with running_emulator(speed=0) as emu, sdk(emu.endpoint) as conn:
        await configure(conn, tools=[{"type": "web_search"}, WEATHER_TOOL])
        await say_text(conn, "What is the latest news about the Oslo marathon?")
        events = await events_until(conn, "response.done")
    kinds = [e.type for e in events]
    search = [k for k in kinds if k.startswith("response.web_search_call.")]
    assert search == [
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
    ]
    # the SDK reads them as its own models, each with the documented fields
    typed = [e for e in events if e.type.startswith("response.web_search_call.")]
    assert isinstance(typed[0], ServerEventResponseWebSearchCallInProgress)
    assert isinstance(typed[1], ServerEventResponseWebSearchCallSearching)
    assert isinstance(typed[2], ServerEventResponseWebSearchCallCompleted)
    assert [e.sequence_number for e in typed] == [0, 1, 2]
    item = next(e.item for e in events if e.type == "response.output_item.done")
    assert isinstance(item, ResponseWebSearchCallItem) and item.status == "completed"
    assert all(e.item_id == item.id and e.output_index == 0 for e in typed)
    # the search item comes first, then the answer, which never pretends to have searched
    assert kinds.index("response.web_search_call.completed") < kinds.index("response.text.done")
    said = spoken(events)
    assert said.startswith("[emulator] web search is emulated: no search was run")
    assert "Oslo marathon" in said
    assert "response.function_call_arguments.done" not in kinds  # the client runs nothing
    assert emu.sessions[0].fidelity == ["builtin-search"]
    done = events[-1].response
    assert [o["type"] for o in done.output] == ["web_search_call", "message"]


async def test_a_file_search_names_its_stores_and_returns_emulated_results_when_included() -> None:
    # source: docs/emulator.md#builtin-search (include file_search_call.results: SDK 1.2.0)
    async with running_emulator(speed=0) as emu, sdk(emu.endpoint) as conn:
        await configure(
            conn,
            tools=[{"type": "web_search"}, FILES],
            include=["file_search_call.results"],
        )
        await say_text(conn, "Search the menu document for vegan dishes")
        events = await events_until(conn, "response.done")
    completed = [e for e in events if isinstance(e, ServerEventResponseFileSearchCallCompleted)]
    assert len(completed) == 1
    item = next(e.item for e in events if e.type == "response.output_item.done")
    assert isinstance(item, ResponseFileSearchCallItem)
    assert item.queries == ["Search the menu document for vegan dishes"]
    assert item.results and item.results[0].text == "[emulator] no file was searched"
    assert "no file in vs_menu was read" in spoken(events)
    assert not [e for e in events if e.type.startswith("response.web_search_call.")]


async def test_file_search_results_are_left_out_unless_included() -> None:
    async with running_emulator(speed=0) as emu, sdk(emu.endpoint) as conn:
        await configure(conn, tools=[FILES])
        await say_text(conn, "Which file has the opening hours?")
        events = await events_until(conn, "response.done")
    item = next(e.item for e in events if e.type == "response.output_item.done")
    assert item.type == "file_search_call" and "results" not in item


async def test_a_script_can_call_a_built_in_search_with_its_own_query() -> None:
    script = {
        "turns": [
            {
                "match": "weekend",
                "say": "Let me look.",
                "tools": [{"name": "web_search", "arguments": {"query": "Oslo weekend events"}}],
            }
        ]
    }
    async with running_emulator(speed=0, scenario=script) as emu, sdk(emu.endpoint) as conn:
        await configure(conn, tools=[{"type": "web_search"}])
        await say_text(conn, "Anything on this weekend?")
        events = await events_until(conn, "response.done")
    item = next(
        e.item
        for e in events
        if e.type == "response.output_item.done" and e.item.type == "web_search_call"
    )
    assert item["action"] == {"type": "search", "query": "Oslo weekend events"}
    assert spoken(events).startswith("Let me look. [emulator] web search is emulated")


async def test_tool_choice_none_stops_built_in_searches() -> None:
    async with running_emulator(speed=0) as emu, sdk(emu.endpoint) as conn:
        await configure(conn, tools=[{"type": "web_search"}], tool_choice="none")
        await say_text(conn, "Search the web for Oslo news")
        events = await events_until(conn, "response.done")
    assert not [e for e in events if e.type.startswith("response.web_search_call.")]
    assert spoken(events) == "[emulator] You said: Search the web for Oslo news"


async def _update_errors(version: str, session: dict[str, Any]) -> list[dict[str, Any]]:
    async with running_emulator(speed=0) as emu:
        base = emu.endpoint.replace("http://", "ws://")
        address = f"{base}/voice-live/realtime?api-version={version}&model=gpt-realtime"
        async with ws_connect(address) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": session}))
            await ws.send(json.dumps({"type": "response.cancel", "event_id": "marker"}))
            errors = []
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if event["type"] == "error":
                    if event["error"].get("event_id") == "marker":
                        return errors
                    errors.append(event["error"])


@pytest.mark.parametrize("version", ["2026-04-10", "2026-06-01-preview", "2026-07-15"])
async def test_versions_from_2026_04_10_take_the_built_in_tools(version: str) -> None:
    assert await _update_errors(version, {"tools": [{"type": "web_search"}, FILES]}) == []


@pytest.mark.parametrize("version", ["2025-10-01", "2026-01-01-preview"])
async def test_older_versions_refuse_the_built_in_tools(version: str) -> None:
    errors = await _update_errors(version, {"tools": [{"type": "web_search"}]})
    assert [(e["param"], e["code"]) for e in errors] == [("session.tools[0].type", "invalid_value")]


async def test_v1_refuses_the_built_in_tools() -> None:
    # v1/models.tsp SessionToolType: function and mcp only
    errors = await _update_errors("v1", {"type": "realtime", "tools": [{"type": "web_search"}]})
    assert [e["param"] for e in errors] == ["session.tools[0].type"]


async def test_built_in_tool_definitions_are_checked() -> None:
    bad = [
        {"type": "file_search"},
        {"type": "file_search", "vector_store_ids": [], "max_num_results": 0},
        {"type": "web_search", "search_context_size": "huge", "site": "x"},
    ]
    errors = await _update_errors("2026-07-15", {"tools": bad})
    assert sorted((e["param"], e["code"]) for e in errors) == [
        ("session.tools[0].vector_store_ids", "missing_required_parameter"),
        ("session.tools[1].max_num_results", "invalid_value"),
        ("session.tools[1].type", "invalid_value"),  # a second file_search
        ("session.tools[1].vector_store_ids", "invalid_value"),
        ("session.tools[2].search_context_size", "invalid_value"),
        ("session.tools[2].site", "unknown_parameter"),
    ]
