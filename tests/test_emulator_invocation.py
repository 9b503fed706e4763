"""Hosted-agent invocation in the emulator (issue 29 item 6; docs/emulator.md#invoke-input):
``response.create`` with ``invoke_input`` on a session bound to a hosted agent, and the agent's
non-speech events as ``response.invocation.delta``. Through the official SDK (1.3.0 added both)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.ai.voicelive.aio import connect
from azure.ai.voicelive.models import ResponseCreateParams, ServerEventResponseInvocationDelta
from azure.core.credentials import AzureKeyCredential

from runner.emulator import running_emulator
from tests.helpers import events_until

INVOKE = {"customer_id": "c-42", "channel": "phone"}


def agent(endpoint: str, version: str = "2026-07-15", **kw: Any) -> Any:
    binding = kw or {"agent_name": "concierge", "project_name": "proj"}
    return connect(
        endpoint=endpoint, credential=AzureKeyCredential("k"), api_version=version, **binding
    )


async def start(conn: Any) -> None:
    await events_until(conn, "session.created")
    await conn.session.update(session={"turn_detection": None, "modalities": ["text"]})
    await events_until(conn, "session.updated")


async def test_invoke_input_reaches_the_stand_in_which_says_no_agent_ran() -> None:
    # source: docs/emulator.md#invoke-input
    async with running_emulator(speed=0) as emu, agent(emu.endpoint) as conn:
        await start(conn)
        await conn.response.create(response=ResponseCreateParams(invoke_input=INVOKE))
        events = await events_until(conn, "response.done")
    deltas = [e for e in events if e.type == "response.invocation.delta"]
    assert len(deltas) == 1 and isinstance(deltas[0], ServerEventResponseInvocationDelta)
    delta = deltas[0].delta
    assert delta["agent"] == "concierge"
    assert delta["invoke_input_keys"] == ["channel", "customer_id"]
    assert delta["message"].startswith("[emulator] no hosted agent was invoked")
    assert "c-42" not in str(delta)  # the values (caller data) are never echoed
    kinds = [e.type for e in events]
    assert kinds.index("response.created") < kinds.index("response.invocation.delta")
    assert events[-1].response.status == "completed"
    sent = [e for e in emu.sessions[0].received if e["type"] == "response.create"]
    assert sent[0]["response"]["invoke_input"] == INVOKE


async def test_a_plain_response_create_sends_no_invocation_delta() -> None:
    async with running_emulator(speed=0) as emu, agent(emu.endpoint) as conn:
        await start(conn)
        await conn.response.create()
        events = await events_until(conn, "response.done")
    assert "response.invocation.delta" not in [e.type for e in events]


async def _refusal(version: str, **binding: Any) -> dict[str, Any]:
    async with running_emulator(speed=0) as emu:
        if not binding:
            conn_cm = connect(
                endpoint=emu.endpoint,
                credential=AzureKeyCredential("k"),
                model="gpt-realtime",
                api_version=version,
            )
        else:
            conn_cm = agent(emu.endpoint, version, **binding)
        async with conn_cm as conn:
            await start(conn)
            await conn.send({"type": "response.create", "response": {"invoke_input": INVOKE}})
            events = await events_until(conn, "error")
    error = events[-1].error
    return {"param": error.param, "message": error.message}


async def test_a_model_session_refuses_invoke_input() -> None:
    refused = await _refusal("2026-07-15")
    assert refused["param"] == "response.invoke_input"
    assert "hosted agent" in refused["message"]


@pytest.mark.parametrize("version", ["2026-04-10", "2026-01-01-preview"])
async def test_versions_before_2026_06_01_refuse_invoke_input(version: str) -> None:
    refused = await _refusal(version, agent_name="concierge", project_name="proj")
    assert refused["param"] == "response.invoke_input"
    assert "2026-06-01-preview" in refused["message"]


async def test_a_classic_agent_session_refuses_invoke_input() -> None:
    import json

    from websockets.asyncio.client import connect as ws_connect

    async with running_emulator(speed=0) as emu:
        base = emu.endpoint.replace("http://", "ws://")
        query = "api-version=2026-07-15&agent-id=asst_1&agent-project-name=proj"
        async with ws_connect(f"{base}/voice-live/realtime?{query}") as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {}}))
            create = {"type": "response.create", "response": {"invoke_input": INVOKE}}
            await ws.send(json.dumps(create))
            while (event := json.loads(await ws.recv()))["type"] != "error":
                assert event["type"] != "response.created", event
    assert event["error"]["param"] == "response.invoke_input"
    assert "agent-name" in event["error"]["message"]
