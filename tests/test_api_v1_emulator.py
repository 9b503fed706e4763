"""Issue 29 item 1, the emulator side: api-version v1 speaks the v1 (GA) session shape strictly,
dated versions keep the dated shape, auth is header-only on v1, and VoiceLive-Features is
checked (docs/emulator.md#conformance rows v1-*)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from runner.emulator import running_emulator

# source: azure-rest-api-specs VoiceLive/v1/examples/v1/SessionUpdate.json (its session, as is)
V1_EXAMPLE: dict[str, Any] = {
    "type": "realtime",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "turn_detection": {"type": "server_vad"},
        },
        "output": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "voice": "alloy",
            "voice_type": "openai",
        },
    },
}


def url(endpoint: str, version: str, **query: str) -> str:
    q = {"api-version": version, "model": "gpt-realtime", **query}
    return (
        endpoint.replace("http://", "ws://")
        + "/voice-live/realtime?"
        + "&".join(f"{k}={v}" for k, v in q.items())
    )


async def next_of(ws: ClientConnection, *types: str, timeout: float = 5) -> dict[str, Any]:
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event["type"] in types:
            return event


async def _errors(version: str, session: dict[str, Any]) -> list[dict[str, Any]]:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, version)) as ws:
        await next_of(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        first = await next_of(ws, "session.updated", "error")
        if first["type"] == "session.updated":
            return []
        errors = [first["error"]]
        # a refused update leaves the session unconfigured: a marker event is refused too,
        # after every error of the update (events are answered in order)
        await ws.send(json.dumps({"type": "response.create", "event_id": "marker"}))
        while True:
            event = await next_of(ws, "error")
            if event["error"].get("event_id") == "marker":
                return errors
            errors.append(event["error"])


async def test_v1_takes_the_spec_example_session() -> None:
    # source: docs/emulator.md#v1-shape
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, "v1")) as ws:
        await next_of(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": V1_EXAMPLE}))
        done = await next_of(ws, "session.updated", "error")
        assert done["type"] == "session.updated", done
        # the example's values took effect (read back through the emulator's session)
        session = emu.sessions[0]
        assert [e["session"] for e in session.received if e["type"] == "session.update"] == [
            V1_EXAMPLE
        ]
        assert done["session"]["voice"] == {"type": "openai", "name": "alloy"}
        assert done["session"]["modalities"] == ["text", "audio"]
        assert done["session"]["turn_detection"]["type"] == "server_vad"


async def test_v1_refuses_the_dated_shape_and_dated_versions_refuse_v1() -> None:
    # source: docs/emulator.md#v1-shape: each shape only on its versions
    dated = {"voice": "alloy", "modalities": ["text", "audio"], "input_audio_format": "pcm16"}
    v1_errors = await _errors("v1", {"type": "realtime", **dated})
    assert sorted(e["param"] for e in v1_errors) == [
        "session.input_audio_format",
        "session.modalities",
        "session.voice",
    ]
    assert {e["code"] for e in v1_errors} == {"unknown_parameter"}
    dated_errors = await _errors("2026-07-15", V1_EXAMPLE)
    assert sorted(e["param"] for e in dated_errors) == [
        "session.audio",
        "session.output_modalities",
        "session.type",
    ]


async def test_v1_needs_session_type_realtime() -> None:
    # source: docs/emulator.md#v1-session-type
    missing = await _errors("v1", {"instructions": "Hi"})
    assert [(e["param"], e["code"]) for e in missing] == [
        ("session.type", "missing_required_parameter")
    ]
    wrong = await _errors("v1", {"type": "transcription"})
    assert [(e["param"], e["code"]) for e in wrong] == [("session.type", "invalid_value")]


async def test_v1_output_modalities_is_text_or_audio_alone() -> None:
    # source: docs/emulator.md#v1-output-modalities
    both = await _errors("v1", {"type": "realtime", "output_modalities": ["text", "audio"]})
    assert [e["param"] for e in both] == ["session.output_modalities"]
    assert await _errors("v1", {"type": "realtime", "output_modalities": ["text"]}) == []


async def test_v1_formats_are_objects_and_g711_has_no_rate() -> None:
    # source: docs/emulator.md#v1-format
    ok = {
        "type": "realtime",
        "audio": {
            "input": {"format": {"type": "audio/pcmu"}},
            "output": {"format": {"type": "audio/pcm", "rate": 16000}},
        },
    }
    assert await _errors("v1", ok) == []
    bad = {
        "type": "realtime",
        "audio": {
            "input": {"format": {"type": "audio/pcma", "rate": 8000}},
            "output": {"format": "pcm16"},
        },
    }
    assert sorted(e["param"] for e in await _errors("v1", bad)) == [
        "session.audio.input.format.rate",
        "session.audio.output.format",
    ]


async def test_v1_takes_credentials_in_headers_only() -> None:
    # source: docs/emulator.md#v1-auth-headers
    async with running_emulator(speed=0, api_key="k-123") as emu:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(emu.endpoint, "v1", **{"api-key": "k-123"})):
                pass
        assert refused.value.response.status_code == 401
        # a dated version still takes the query parameter, and v1 the header
        async with connect(url(emu.endpoint, "2026-07-15", **{"api-key": "k-123"})) as ws:
            await next_of(ws, "session.created")
        async with connect(url(emu.endpoint, "v1"), additional_headers={"api-key": "k-123"}) as ws:
            await next_of(ws, "session.created")


async def test_v1_features_header_is_checked() -> None:
    # source: docs/emulator.md#v1-features-header
    async with running_emulator(speed=0) as emu:
        good = {"VoiceLive-Features": "BargeIn=V1Preview, Transcription=V1Preview"}
        async with connect(url(emu.endpoint, "v1"), additional_headers=good) as ws:
            await next_of(ws, "session.created")
        assert emu.sessions[0].headers["VoiceLive-Features"] == good["VoiceLive-Features"]
        bad = {"VoiceLive-Features": "BargeIn=on"}
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(emu.endpoint, "v1"), additional_headers=bad):
                pass
        assert refused.value.response.status_code == 400
        # dated versions carry preview in the version; the header is not theirs to check
        async with connect(url(emu.endpoint, "2026-07-15"), additional_headers=bad) as ws:
            await next_of(ws, "session.created")


async def test_v1_updates_keep_the_history_rules() -> None:
    # source: docs/emulator.md#v1-shape (read as the dated fields) and #td-type-locked
    def td(kind: str) -> dict[str, Any]:
        return {"type": "realtime", "audio": {"input": {"turn_detection": {"type": kind}}}}

    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, "v1")) as ws:
        await next_of(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": td("azure_semantic_vad")}))
        assert (await next_of(ws, "session.updated", "error"))["type"] == "session.updated"
        await ws.send(json.dumps({"type": "session.update", "session": td("server_vad")}))
        refused = await next_of(ws, "session.updated", "error")
        assert refused["type"] == "error"
        assert refused["error"]["param"] == "session.turn_detection.type"
        assert emu.sessions[0].fidelity == []
