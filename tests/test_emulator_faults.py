"""Faults on demand: drops, close codes, delays, injected errors, refused auth."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from azure.ai.voicelive.aio import ConnectionClosed as SdkConnectionClosed
from azure.ai.voicelive.aio import connect as sdk_connect
from azure.core.credentials import AzureKeyCredential
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runner.emulator import Faults, running_emulator


def url(endpoint: str) -> str:
    return endpoint.replace("http://", "ws://") + "/voice-live/realtime?model=gpt-realtime"


async def read_all(ws: Any, timeout: float = 5) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    """Events until the server ends the connection; returns them and the closing exception."""
    events: list[dict[str, Any]] = []
    try:
        while True:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except ConnectionClosed as exc:
        return events, exc


async def update(ws: Any, n: int) -> None:
    for i in range(n):
        await ws.send(json.dumps({"type": "session.update", "event_id": f"u{i}", "session": {}}))


async def test_drop_after_n_events_with_close_code() -> None:
    faults = Faults(drop_after_events=3, close_code=1011)
    async with running_emulator(speed=0, faults=faults) as emu, connect(url(emu.endpoint)) as ws:
        await update(ws, 5)
        events, closed = await read_all(ws)
        assert [e["type"] for e in events] == [
            "session.created",
            "session.updated",
            "session.updated",
        ]
        assert closed.rcvd is not None and closed.rcvd.code == 1011
    assert emu.sessions[0].closed


async def test_abrupt_drop_sends_no_close_frame() -> None:
    async with running_emulator(speed=0, faults=Faults(drop_after_events=1)) as emu:
        async with sdk_connect(
            endpoint=emu.endpoint, credential=AzureKeyCredential("k"), model="m"
        ) as conn:
            assert (await conn.recv()).type == "session.created"
            # SDK 1.3.1 maps aiohttp's CLOSED (TCP gone, no close frame) to ConnectionClosed(1000)
            with pytest.raises(SdkConnectionClosed):
                await asyncio.wait_for(conn.recv(), 5)
        async with connect(url(emu.endpoint)) as ws:
            events, closed = await read_all(ws)
            assert [e["type"] for e in events] == ["session.created"]
            assert closed.rcvd is None  # abnormal closure, 1006 on the client side


async def test_drop_at_time_t() -> None:
    faults = Faults(drop_at_s=0.2, close_code=4000)
    async with running_emulator(speed=0, faults=faults) as emu, connect(url(emu.endpoint)) as ws:
        loop = asyncio.get_running_loop()
        start = loop.time()
        events, closed = await read_all(ws)
        assert loop.time() - start >= 0.15
        assert [e["type"] for e in events] == ["session.created"]
        assert closed.rcvd is not None and closed.rcvd.code == 4000


async def test_faults_can_target_one_connection() -> None:
    faults = Faults(drop_after_events=1, close_code=1012, connections=(1,))
    async with running_emulator(speed=0, faults=faults) as emu:
        async with connect(url(emu.endpoint)) as ws:
            _, closed = await read_all(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1012
        async with connect(url(emu.endpoint)) as ws:  # the reconnect works
            await update(ws, 1)
            assert json.loads(await ws.recv())["type"] == "session.created"
            assert json.loads(await ws.recv())["type"] == "session.updated"


async def test_delay_holds_selected_event_types() -> None:
    faults = Faults(delay_ms=250, delay_types=("session.updated",))
    async with running_emulator(speed=0, faults=faults) as emu, connect(url(emu.endpoint)) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        loop = asyncio.get_running_loop()
        start = loop.time()
        await update(ws, 1)
        assert json.loads(await ws.recv())["type"] == "session.updated"
        assert loop.time() - start >= 0.2


async def test_error_injected_after_n_events_and_on_a_client_event() -> None:
    faults = Faults(
        error_after_events=2,
        error_on_client_event="response.cancel",
        error_code="rate_limit_exceeded",
        error_message="[emulator] slow down",
    )
    async with running_emulator(speed=0, faults=faults) as emu, connect(url(emu.endpoint)) as ws:
        await update(ws, 2)
        kinds = [json.loads(await ws.recv()) for _ in range(4)]
        assert [k["type"] for k in kinds] == [
            "session.created",
            "session.updated",
            "error",
            "session.updated",
        ]
        assert kinds[2]["error"]["code"] == "rate_limit_exceeded"
        await ws.send(json.dumps({"type": "response.cancel", "event_id": "c1"}))
        injected, not_active = json.loads(await ws.recv()), json.loads(await ws.recv())
        assert (
            injected["error"]["code"] == "rate_limit_exceeded"
            and injected["error"]["event_id"] == "c1"
        )
        assert not_active["error"]["code"] == "response_cancel_not_active"


async def test_refuse_auth() -> None:
    async with running_emulator(speed=0, faults=Faults(refuse_auth=True)) as emu:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(emu.endpoint), additional_headers={"api-key": "anything"}):
                pass
        assert refused.value.response.status_code == 401


def test_faults_parse_from_command_line_strings() -> None:
    parsed = Faults.parse(
        [
            "drop_after_events=20",
            "close-code=1011",
            "delay_ms=12.5",
            "delay_types=a,b",
            "refuse_auth=true",
            "connections=1,3",
        ]
    )
    assert parsed == Faults(
        drop_after_events=20,
        close_code=1011,
        delay_ms=12.5,
        delay_types=("a", "b"),
        refuse_auth=True,
        connections=(1, 3),
    )
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse(["explode=1"])
