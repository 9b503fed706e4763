"""The emulator's handshake and session behaviour, seen by a raw `websockets` client."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runner.emulator import running_emulator
from runner.emulator.protocol import EMULATOR_NOTE


def url(endpoint: str, **query: str) -> str:
    q = {"api-version": "2026-07-15", "model": "gpt-realtime", **query}
    qs = "&".join(f"{k}={v}" for k, v in q.items() if v is not None)
    return endpoint.replace("http://", "ws://") + "/voice-live/realtime?" + qs


async def next_of(ws: ClientConnection, *types: str, timeout: float = 5) -> dict[str, Any]:
    """Read events until one of ``types`` arrives."""
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event["type"] in types:
            return event


async def errors_until_updated(ws: ClientConnection) -> tuple[list[dict[str, Any]], dict | None]:
    """Collect errors up to a sentinel session.update answered with session.updated."""
    await ws.send(json.dumps({"type": "session.update", "event_id": "sentinel", "session": {}}))
    errors = []
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == "error":
            errors.append(event)
        elif event["type"] == "session.updated":
            return errors, event["session"]


async def test_session_created_first_with_emulator_marker_and_expiry() -> None:
    async with (
        running_emulator(speed=0) as emu,
        connect(url(emu.endpoint, **{"x-ms-client-sdk": "t"})) as ws,
    ):
        first = json.loads(await ws.recv())
        assert first["type"] == "session.created"
        session = first["session"]
        assert session["id"].startswith("sess_")
        assert first["event_id"].startswith("event_")
        assert session["instructions"] == EMULATOR_NOTE and "[emulator]" in session["instructions"]
        assert abs(session["expires_at"] - (time.time() + 3600)) < 60
        assert session["model"] == "gpt-realtime"
        assert session["turn_detection"]["type"] == "server_vad"
        assert emu.sessions[0].query["x-ms-client-sdk"] == "t"


async def test_session_update_returns_full_effective_session() -> None:
    # gpt-4.1 is cascaded: azure-speech transcription with server_vad is allowed there only
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, model="gpt-4.1")) as ws:
        await next_of(ws, "session.created")
        update = {
            "voice": {"type": "azure-standard", "name": "en-US-AvaNeural"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
            "input_audio_transcription": {"model": "azure-speech", "language": "en-US"},
        }
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        session = (await next_of(ws, "session.updated"))["session"]
        # full session: untouched fields are echoed, nested objects get their defaults filled in
        assert session["input_audio_format"] == "pcm16" and session["tools"] == []
        assert session["voice"] == update["voice"]
        assert session["turn_detection"]["silence_duration_ms"] == 300
        assert session["turn_detection"]["threshold"] == 0.5
        assert session["turn_detection"]["prefix_padding_ms"] == 400
        assert session["input_audio_transcription"]["model"] == "azure-speech"
        assert emu.sessions[0].received[0]["type"] == "session.update"


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"voise": "alloy"}, "unknown_parameter", "session.voise"),
        ({"voice": "nobody"}, "invalid_value", "session.voice"),
        ({"modalities": ["audio"]}, "invalid_value", "session.modalities"),
        ({"input_audio_format": "mp3"}, "invalid_value", "session.input_audio_format"),
        ({"temperature": 7}, "invalid_value", "session.temperature"),
        ({"temperature": "hot"}, "invalid_type", "session.temperature"),
        ({"max_response_output_tokens": 0}, "invalid_value", "session.max_response_output_tokens"),
        (
            {"turn_detection": {"type": "server_vad", "threshold": 2}},
            "invalid_value",
            "session.turn_detection.threshold",
        ),
        ({"turn_detection": {"type": "loud"}}, "invalid_value", "session.turn_detection.type"),
        ({"tools": [{"type": "function"}]}, "missing_required_parameter", "session.tools[0].name"),
        (
            {"tool_choice": {"type": "function", "name": "nope"}},
            "invalid_value",
            "session.tool_choice.name",
        ),
        (
            {"input_audio_echo_cancellation": {"type": "server_echo_cancellation", "channels": 2}},
            "invalid_ec_channels_requires_client",
            "session.input_audio_echo_cancellation.channels",
        ),
        (
            {"input_audio_transcription": {"language": "en"}},
            "missing_required_parameter",
            "session.input_audio_transcription.model",
        ),
        ({"metadata": {"k": 5}}, "invalid_type", "session.metadata.k"),
    ],
)
async def test_invalid_session_update_is_an_error_and_socket_stays_open(
    session: dict[str, Any], code: str, param: str
) -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        before = (await next_of(ws, "session.created"))["session"]
        await ws.send(
            json.dumps({"type": "session.update", "event_id": "evt_1", "session": session})
        )
        errors, after = await errors_until_updated(ws)
        assert [(e["error"]["code"], e["error"]["param"]) for e in errors] == [(code, param)]
        assert errors[0]["error"]["event_id"] == "evt_1"
        assert (
            errors[0]["error"]["type"] == "invalid_request_error" and errors[0]["error"]["message"]
        )
        assert after == {**before, "expires_at": after["expires_at"]}  # unchanged


async def test_every_bad_field_gets_its_own_error() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        bad = {"voice": "nobody", "temperature": 9, "colour": "red"}
        await ws.send(json.dumps({"type": "session.update", "session": bad}))
        errors, _ = await errors_until_updated(ws)
        assert sorted(e["error"]["param"] for e in errors) == [
            "session.colour",
            "session.temperature",
            "session.voice",
        ]


@pytest.mark.parametrize(
    ("api_version", "eou", "ok"),
    [
        (
            "2025-05-01-preview",
            {"model": "semantic_detection_v1", "threshold": 0.01, "timeout": 2},
            True,
        ),
        ("2025-05-01-preview", {"model": "semantic_detection_v1", "threshold_level": "low"}, False),
        (
            "2026-07-15",
            {"model": "semantic_detection_v1", "threshold_level": "low", "timeout_ms": 900},
            True,
        ),
        ("2026-07-15", {"model": "semantic_detection_v1", "threshold": 0.01, "timeout": 2}, False),
    ],
)
async def test_end_of_utterance_shape_follows_api_version(
    api_version: str, eou: dict, ok: bool
) -> None:
    async with (
        running_emulator(speed=0) as emu,
        connect(url(emu.endpoint, **{"api-version": api_version})) as ws,
    ):
        await next_of(ws, "session.created")
        td = {"type": "azure_semantic_vad", "end_of_utterance_detection": eou}
        await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": td}}))
        errors, session = await errors_until_updated(ws)
        assert (not errors) is ok
        if ok:
            assert session["turn_detection"]["end_of_utterance_detection"] == eou
        else:
            assert all(e["error"]["code"] == "unknown_parameter" for e in errors)


async def test_malformed_frames_get_errors_and_never_close_the_socket() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
        await next_of(ws, "session.updated")
        frames: list[str | bytes] = [
            "{not json",
            "[1, 2]",
            json.dumps({"event_id": "e1"}),
            json.dumps({"type": "no.such.event", "event_id": "e2"}),
            json.dumps(
                {"type": "input_audio_buffer.append", "audio": "%%%not base64%%%", "event_id": "e3"}
            ),
            json.dumps({"type": "input_audio_buffer.append", "event_id": "e4"}),
            json.dumps(
                {"type": "conversation.item.create", "item": {"type": "weird"}, "event_id": "e5"}
            ),
            b"\x00\x01binary",
        ]
        for frame in frames:
            await ws.send(frame)
        errors, session = await errors_until_updated(ws)
        assert session is not None
        codes = [e["error"]["code"] for e in errors]
        assert codes == [
            "invalid_json",
            "invalid_json",
            "missing_required_parameter",
            "invalid_value",
            "invalid_value",
            "missing_required_parameter",
            "invalid_value",
            "invalid_value",
        ]
        assert [e["error"]["event_id"] for e in errors][2:7] == ["e1", "e2", "e3", "e4", "e5"]
        assert (
            errors[3]["error"]["param"] == "type"
            and "response.create" in errors[3]["error"]["message"]
        )
        assert not emu.sessions[0].closed


async def test_api_key_required_when_configured() -> None:
    async with running_emulator(speed=0, api_key="s3cret-key") as emu:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(emu.endpoint), additional_headers={"api-key": "wrong"}):
                pass
        assert refused.value.response.status_code == 401
        body = json.loads(refused.value.response.body)
        assert body["error"]["code"] == "401" and "Access denied" in body["error"]["message"]
        with pytest.raises(InvalidStatus):
            async with connect(url(emu.endpoint)):
                pass
        async with connect(url(emu.endpoint), additional_headers={"api-key": "s3cret-key"}) as ws:
            assert (await next_of(ws, "session.created"))["type"] == "session.created"
        async with connect(
            url(emu.endpoint), additional_headers={"Authorization": "Bearer s3cret-key"}
        ) as ws:
            assert (await next_of(ws, "session.created"))["type"] == "session.created"
        assert emu.sessions[-1].headers["Authorization"] == "***"  # never kept in the record
        assert len(emu.sessions) == 2  # refused handshakes never became sessions


async def test_model_or_agent_is_required_and_agents_are_described() -> None:
    async with running_emulator(speed=0) as emu:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(emu.endpoint, model=None)):
                pass
        assert refused.value.response.status_code == 400
        current = {"model": None, "agent-name": "helper", "agent-project-name": "proj"}
        async with connect(url(emu.endpoint, **current)) as ws:
            agent = (await next_of(ws, "session.created"))["session"]["agent"]
            assert agent["name"] == "helper" and agent["description"].startswith("[emulator]")
        legacy = {
            "model": None,
            "agent-id": "asst_1",
            "agent-project-name": "proj",
            "agent-access-token": "tok",
        }
        async with connect(url(emu.endpoint, **legacy)) as ws:
            agent = (await next_of(ws, "session.created"))["session"]["agent"]
            assert agent["agent_id"] == "asst_1"
        with pytest.raises(InvalidStatus):
            async with connect(url(emu.endpoint, model=None, **{"agent-name": "only"})):
                pass


async def test_wrong_path_and_plain_http_are_refused() -> None:
    async with running_emulator(speed=0) as emu, aiohttp.ClientSession() as http:
        async with http.get(emu.endpoint + "/openai/realtime") as resp:
            assert resp.status == 404
        async with http.get(emu.endpoint + "/voice-live/realtime?model=m") as resp:
            assert resp.status == 426
        async with http.get(emu.endpoint + "/") as resp:
            assert "emulator" in (await resp.json())["service"]


async def test_pings_are_answered() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        pong = await ws.ping()
        latency = await pong
        assert latency >= 0


async def test_session_expires_at_the_configured_limit() -> None:
    async with (
        running_emulator(speed=0, session_limit_s=0.3) as emu,
        connect(url(emu.endpoint)) as ws,
    ):
        created = await next_of(ws, "session.created")
        assert created["session"]["expires_at"] <= time.time() + 1
        expired = await next_of(ws, "error")
        assert expired["error"]["code"] == "session_expired"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


async def test_wait_for_sees_client_events_in_any_session() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await ws.send(
            json.dumps(
                {
                    "type": "input_audio_buffer.append",
                    "audio": base64.b64encode(b"\0\0" * 240).decode(),
                }
            )
        )
        event = await emu.wait_for(lambda ev: ev["type"] == "input_audio_buffer.append", timeout=5)
        assert event["audio"]
        with pytest.raises(TimeoutError):
            await emu.wait_for(lambda ev: ev["type"] == "input_audio_buffer.append", timeout=0.2)


def test_emulator_thread_serves_synchronous_callers() -> None:
    from websockets.sync.client import connect as sync_connect

    from runner.emulator import emulator_thread

    with emulator_thread(speed=0) as emu, sync_connect(url(emu.endpoint)) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
        ws.send(json.dumps({"type": "session.update", "session": {"voice": "echo"}}))
        assert json.loads(ws.recv(timeout=5))["session"]["voice"] == "echo"
    assert emu.sessions[0].received[0]["session"] == {"voice": "echo"}
