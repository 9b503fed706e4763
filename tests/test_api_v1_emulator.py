"""Issue 29 item 1, the emulator side: api-version v1 speaks the v1 (GA) session shape strictly,
dated versions keep the dated shape, auth is header-only on v1, and VoiceLive-Features is
checked (docs/emulator.md#conformance rows v1-*)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from azure.ai.voicelive.aio import connect as sdk_connect
from azure.core.credentials import AzureKeyCredential
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from runner.config.service import V1_SESSION_ORDER
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
        # source: docs/emulator.md#v1-echo: echoed in the v1 shape, with the values it set
        echoed = done["session"]
        assert echoed["type"] == "realtime"
        assert echoed["output_modalities"] == ["audio"]
        assert echoed["audio"]["output"]["voice"] == "alloy"
        assert echoed["audio"]["output"]["voice_type"] == "openai"
        assert echoed["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        assert echoed["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}


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


# the dated top-level fields a v1 session echo must never carry (docs/emulator.md#v1-echo)
DATED_ONLY = {
    "modalities",
    "voice",
    "input_audio_format",
    "input_audio_sampling_rate",
    "output_audio_format",
    "turn_detection",
    "input_audio_transcription",
    "input_audio_noise_reduction",
    "input_audio_echo_cancellation",
    "max_response_output_tokens",
}


async def test_v1_echoes_session_created_and_updated_in_the_v1_shape() -> None:
    # source: docs/emulator.md#v1-echo (v1/events.tsp: session.created/updated carry the v1
    # Session). Before the fix both echoed the dated field names on v1.
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, "v1")) as ws:
        created = (await next_of(ws, "session.created"))["session"]
        assert created["type"] == "realtime"
        assert not DATED_ONLY & set(created), sorted(DATED_ONLY & set(created))
        shaped = [k for k in created if k in V1_SESSION_ORDER]
        assert shaped == sorted(shaped, key=V1_SESSION_ORDER.index)  # the compiler's key order
        assert created["id"].startswith("sess_") and created["model"] == "gpt-realtime"
        update = {"type": "realtime", "max_output_tokens": 300, "output_modalities": ["text"]}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        updated = (await next_of(ws, "session.updated"))["session"]
        assert updated["max_output_tokens"] == 300 and updated["output_modalities"] == ["text"]
        assert not DATED_ONLY & set(updated)
    # a dated version still echoes the dated shape
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, "2026-07-15")) as ws:
        created = (await next_of(ws, "session.created"))["session"]
        assert created["voice"] == {"type": "openai", "name": "alloy"} and "type" not in created


async def test_the_sdk_on_v1_reads_the_v1_echo() -> None:
    # source: docs/emulator.md#v1-echo, through the official SDK (1.3.1 takes api_version and
    # sends a dict as is; its key goes in the api-key header, as v1 requires)
    async with running_emulator(speed=0, api_key="test-key") as emu:
        async with sdk_connect(
            endpoint=emu.endpoint,
            credential=AzureKeyCredential("test-key"),
            model="gpt-realtime",
            api_version="v1",
        ) as conn:
            await conn.send({"type": "session.update", "session": V1_EXAMPLE})
            async for event in conn:
                if event.type == "session.updated":
                    break
                assert event.type != "error", event
            session = dict(event.session)
        assert emu.sessions[0].query["api-version"] == "v1"
        assert session["type"] == "realtime"
        assert session["audio"]["output"]["voice"] == "alloy"
        assert not DATED_ONLY & set(session)


async def test_v1_history_rules_read_the_dated_fields_a_v1_update_chose() -> None:
    # source: docs/emulator.md#v1-echo (client fields from the dated form), #azure-speech-vad
    # and #partial-update. Before the fix the connection remembered the v1 keys ("audio"), so
    # a v1 client that chose server_vad got only a fidelity note for azure-speech, and
    # re-sending the same whole v1 session was noted as a partial update.
    chose_vad = {
        "type": "realtime",
        "audio": {"input": {"turn_detection": {"type": "server_vad"}}},
    }
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, "v1")) as ws:
        await next_of(ws, "session.created")
        for _ in range(2):  # the whole session twice: no partial-update note
            await ws.send(json.dumps({"type": "session.update", "session": chose_vad}))
            assert (await next_of(ws, "session.updated", "error"))["type"] == "session.updated"
        assert emu.sessions[0].fidelity == []
        speech = {
            "type": "realtime",
            "audio": {"input": {"transcription": {"model": "azure-speech"}}},
        }
        await ws.send(json.dumps({"type": "session.update", "session": speech}))
        refused = await next_of(ws, "session.updated", "error")
        assert refused["type"] == "error", refused
        assert refused["error"]["param"] == "session.turn_detection.type"


async def _response_errors(response: dict[str, Any], version: str = "v1") -> list[dict[str, Any]]:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, version)) as ws:
        await next_of(ws, "session.created")
        session = {"type": "realtime"} if version == "v1" else {"voice": "alloy"}
        session["audio" if version == "v1" else "turn_detection"] = (
            {"input": {"turn_detection": None}} if version == "v1" else None
        )
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        assert (await next_of(ws, "session.updated", "error"))["type"] == "session.updated"
        await ws.send(json.dumps({"type": "response.create", "response": response}))
        first = await next_of(ws, "response.created", "error")
        if first["type"] == "response.created":
            await next_of(ws, "response.done")
            return []
        return [first["error"]]


async def test_v1_response_create_takes_the_ga_shape_and_refuses_the_dated_one() -> None:
    # source: docs/emulator.md#v1-response-create (v1/models.tsp ResponseCreateParams)
    ga = {
        "output_modalities": ["text"],
        "instructions": "Answer briefly.",
        "audio": {"output": {"voice": "alloy", "format": {"type": "audio/pcm", "rate": 24000}}},
        "max_output_tokens": 50,
    }
    assert await _response_errors(ga) == []
    dated = await _response_errors({"modalities": ["text"], "voice": "alloy"})
    assert [e["param"] for e in dated] == ["response.modalities"]
    assert dated[0]["code"] == "unknown_parameter"
    bad = await _response_errors({"output_modalities": ["text", "audio"]})
    assert [e["param"] for e in bad] == ["response.output_modalities"]
    voice = await _response_errors({"audio": {"output": {"voice": "nobody"}}})
    assert [e["param"] for e in voice] == ["response.voice.name"]


async def test_v1_response_create_output_modalities_take_effect() -> None:
    # source: docs/emulator.md#v1-response-create: ["text"] gives a text-only reply
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, "v1")) as ws:
        await next_of(ws, "session.created")
        session = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await next_of(ws, "session.updated")
        await ws.send(
            json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}})
        )
        seen: list[str] = []
        while (event := await next_of(ws, *_REPLY_TYPES))["type"] != "response.done":
            seen.append(event["type"])
        assert "response.text.delta" in seen and "response.audio.delta" not in seen


_REPLY_TYPES = ("response.text.delta", "response.audio.delta", "response.done")


async def test_v1_response_create_keeps_voice_live_extensions_with_a_fidelity_note() -> None:
    # source: docs/emulator.md#v1-response-create: pre_generated_assistant_message is spoken
    greeting = {
        "pre_generated_assistant_message": {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "Hello from the greeting."}],
        }
    }
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, "v1")) as ws:
        await next_of(ws, "session.created")
        session = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await next_of(ws, "session.updated")
        await ws.send(json.dumps({"type": "response.create", "response": greeting}))
        said = await next_of(ws, "response.audio_transcript.done")
        assert said["transcript"] == "Hello from the greeting."
        assert emu.sessions[0].fidelity == ["v1-response-extension"]
