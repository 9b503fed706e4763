"""GPT-Live in the emulator (issue 29 item 2; docs/gpt-live.md, docs/emulator.md rows gl-*): its
own endpoint and events, strict where the documents are, full duplex by stated rules
(backchannels on a schedule, end of turn, yielding), delegation, translation stated, and always
saying it is an emulator. Raw WebSocket JSON on real loopback sockets: no SDK carries GPT-Live.

The desk is served here on its own aiohttp app (the same routes the emulator mounts)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from runner.emulator.fidelity import Fidelity
from runner.emulator.gpt_live import LiveDesk, voice_live_refusal
from runner.emulator.model import load_script
from runner.emulator.record import SessionRecord
from tests.loopback import on_loopback

RATE = 24000
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
RESPONSES = {"type": "responses", "responses": {"model": "gpt-5.4-mini", "tools": [WEATHER]}}


@contextlib.asynccontextmanager
async def live(
    script: dict[str, Any] | None = None,
    *,
    api_key: str | None = None,
    delegation_timeout_s: float = 30.0,
    record_audio: bool = True,
) -> AsyncIterator[tuple[LiveDesk, str]]:
    sessions: list[SessionRecord] = []
    desk = LiveDesk(
        sessions,
        lambda: None,
        Fidelity(),
        script=load_script(script) if script is not None else None,
        speed=0,
        api_key=api_key,
        session_limit_s=3600,
        use_espeak=False,
        record_audio=record_audio,
        delegation_timeout_s=delegation_timeout_s,
    )
    app = web.Application()
    desk.add_routes(app)
    async with on_loopback(app) as port:
        try:
            yield desk, f"ws://127.0.0.1:{port}"
        finally:
            await desk.close()


async def recv(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def next_of(ws: ClientConnection, *types: str, timeout: float = 5) -> dict[str, Any]:
    while True:
        event = await recv(ws, timeout)
        if event["type"] in types:
            return event


async def until(ws: ClientConnection, done: Any, timeout: float = 5) -> list[dict[str, Any]]:
    """Events up to and including the first for which ``done(event)`` holds."""
    out: list[dict[str, Any]] = []
    while True:
        event = await recv(ws, timeout)
        out.append(event)
        if done(event):
            return out


async def send(ws: ClientConnection, event: dict[str, Any]) -> None:
    await ws.send(json.dumps(event))


async def started(ws: ClientConnection, **session: Any) -> dict[str, Any]:
    await send(ws, {"type": "session.start", "session": {"model": "gpt-live-1", **session}})
    return await next_of(ws, "session.started", "error")


async def marker(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything the emulator sent before its answer to a marker command (events are
    answered in order, so nothing sent before is missed)."""
    await send(ws, {"type": "session.input_audio.mute", "event_id": "marker"})
    seen = await until(ws, lambda e: e.get("client_event_id") == "marker")
    await send(ws, {"type": "session.input_audio.unmute"})
    await next_of(ws, "session.input_audio.unmuted")
    return seen[:-1]


def quiet(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def voice(ms: int) -> np.ndarray:
    t = np.arange(RATE * ms // 1000) / RATE
    return np.round(np.sin(2 * np.pi * 220 * t) * 6000).astype(np.int16)


async def stream(ws: ClientConnection, *parts: np.ndarray) -> None:
    """The caller's audio in 100 ms appends, as a phone line streams it."""
    audio = np.concatenate(parts)
    step = RATE // 10
    for i in range(0, audio.size, step):
        chunk = base64.b64encode(audio[i : i + step].tobytes()).decode()
        await send(ws, {"type": "session.input_audio.append", "audio": chunk})


def said(events: list[dict[str, Any]]) -> str:
    """What the emulator said, one space between utterances."""
    out = ""
    for e in events:
        if e["type"] == "session.output_transcript.delta":
            d = e["delta"]
            out += d if not out or d.startswith(" ") else " " + d
    return out


def heard(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "session.input_transcript.delta")


# --- connection -----------------------------------------------------------------------------------


async def test_both_documented_paths_start_a_session_that_says_it_is_an_emulator() -> None:
    # source: docs/emulator.md#gl-connect, #gl-identity
    async with live() as (desk, base):
        for path in ("/openai/v1/live", "/openai/v1/live/sessions"):
            async with connect(base + path) as ws:
                start = await started(ws, instructions="Be brief.")
                assert start["type"] == "session.started", start
                session = start["session"]
                assert session["id"].startswith("sess_") and session["model"] == "gpt-live-1"
                assert session["audio"] == {"output": {"voice": "marin"}}
                assert session["delegation"] == {"type": "client"}
                info = await recv(ws)
                assert (
                    info["type"] == "info"
                    and "EMULATOR (not Azure, not a model)" in (info["message"])
                )
        assert len(desk.sessions) == 2


async def test_the_model_never_goes_in_the_query_and_keys_only_in_headers() -> None:
    # source: docs/emulator.md#gl-connect (OSDK: "do not pass it as a URL query parameter")
    async with live(api_key="k-1") as (_, base):
        for query in ("?model=gpt-live-1", "?api-version=v1", "?api-key=k-1"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(base + "/openai/v1/live" + query):
                    pass
            assert refused.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as denied:
            async with connect(base + "/openai/v1/live"):
                pass
        assert denied.value.response.status_code == 401
        async with connect(base + "/openai/v1/live", additional_headers={"api-key": "k-1"}) as ws:
            assert (await started(ws))["type"] == "session.started"
        bearer = {"Authorization": "Bearer k-1"}
        async with connect(base + "/openai/v1/live", additional_headers=bearer) as ws:
            assert (await started(ws))["type"] == "session.started"


def test_the_voice_live_path_refuses_gpt_live_models() -> None:
    # source: docs/emulator.md#gl-path (the server's handshake asks this)
    refusal = voice_live_refusal("gpt-live-1-mini")
    assert refusal is not None and "/openai/v1/live" in refusal
    assert voice_live_refusal("gpt-realtime") is None and voice_live_refusal(None) is None


# --- session.start --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session", "param", "code"),
    [
        ({"model": "gpt-realtime"}, "session.model", "invalid_value"),
        ({}, "session.model", "missing_required_parameter"),
        ({"model": "gpt-live-1", "turn_detection": None}, "session.turn_detection", None),
        ({"model": "gpt-live-1", "modalities": ["text"]}, "session.modalities", None),
        (
            {"model": "gpt-live-1", "input_audio_noise_reduction": {"type": "near_field"}},
            "session.input_audio_noise_reduction",
            None,
        ),
        ({"model": "gpt-live-1", "tools": [WEATHER]}, "session.tools", None),
        ({"model": "gpt-live-1", "voice": "alloy"}, "session.voice", None),
        (
            {"model": "gpt-live-1", "audio": {"output": {"voice": "en-US-AvaNeural"}}},
            "session.audio.output.voice",
            "invalid_value",
        ),
        (
            {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 44100}}},
            "session.audio.format",
            "invalid_value",
        ),
        (
            {"model": "gpt-live-1", "delegation": {"type": "client", "responses": {}}},
            "session.delegation.responses",
            None,
        ),
        (
            {"model": "gpt-live-1", "delegation": {"type": "responses", "responses": {}}},
            "session.delegation.responses.model",
            "missing_required_parameter",
        ),
        (
            {
                "model": "gpt-live-1",
                "delegation": {
                    "type": "responses",
                    "responses": {"model": "m", "tools": [{"type": "file_search"}]},
                },
            },
            "session.delegation.responses.tools[0].type",
            "invalid_value",
        ),
        (
            {
                "model": "gpt-live-1",
                "delegation": {
                    "type": "responses",
                    "responses": {"model": "m", "tools": [{"type": "mcp", "server_label": "x"}]},
                },
            },
            "session.delegation.responses.tools[0].type",
            "invalid_value",
        ),
    ],
)
async def test_session_start_is_strict_and_refuses_what_gpt_live_does_not_take(
    session: dict[str, Any], param: str, code: str | None
) -> None:
    # source: docs/emulator.md#gl-session (FREF: a strict object; docs/gpt-live.md "Refused")
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await send(ws, {"type": "session.start", "event_id": "s1", "session": session})
        error = await recv(ws)
        assert error["type"] == "error", error
        assert error["error"]["param"] == param
        assert error["error"]["code"] == (code or "unknown_parameter")
        assert error["error"]["client_event_id"] == "s1"
        # a startup error starts nothing; a corrected session.start does
        assert (await started(ws))["type"] == "session.started"


async def test_commands_before_the_start_and_voice_live_events_are_refused() -> None:
    # source: docs/emulator.md#gl-refused
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await send(ws, {"type": "session.input_audio.mute", "event_id": "early"})
        early = await recv(ws)
        assert early["error"]["code"] == "session_not_started"
        await started(ws)
        await recv(ws)  # info
        for kind in ("session.update", "input_audio_buffer.append", "conversation.item.create"):
            payload: dict[str, Any] = {"type": kind}
            if kind == "session.update":
                payload["session"] = {"turn_detection": {"type": "server_vad"}}
            await send(ws, payload)
            refused = await next_of(ws, "error")
            assert refused["error"]["code"] in ("unknown_parameter", "invalid_value"), refused
        await send(ws, {"type": "session.start", "session": {"model": "gpt-live-1"}})
        assert (await next_of(ws, "error"))["error"]["code"] == "session_already_started"


async def test_an_update_changes_only_the_backend_within_its_mode() -> None:
    # source: docs/emulator.md#gl-update (FREF "Update a live session"; FDEL mode change)
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws, delegation=RESPONSES)
        await recv(ws)
        backend = {"type": "responses", "responses": {"model": "gpt-5.5", "tools": []}}
        await send(
            ws, {"type": "session.update", "event_id": "u", "session": {"delegation": backend}}
        )
        updated = await next_of(ws, "session.updated", "error")
        assert updated["type"] == "session.updated"
        assert updated["session"]["delegation"] == backend
        assert "client_event_id" not in updated  # only errors echo it (FREF)
        for change, param in (
            ({"instructions": "New."}, "session.instructions"),
            ({"audio": {"output": {"voice": "cedar"}}}, "session.audio"),
            ({"delegation": {"type": "client"}}, "session.delegation.type"),
            ({"delegation": None}, "session.delegation.type"),
        ):
            await send(ws, {"type": "session.update", "session": change})
            refused = await next_of(ws, "error", "session.updated")
            assert refused["type"] == "error" and refused["error"]["param"] == param, change


# --- audio, transcripts, full duplex --------------------------------------------------------------


async def test_odd_pcm_is_refused_with_the_documented_error() -> None:
    # source: docs/emulator.md#gl-audio (FREF's own example)
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        await recv(ws)
        odd = base64.b64encode(b"\x00\x01\x02").decode()
        await send(ws, {"type": "session.input_audio.append", "event_id": "a1", "audio": odd})
        error = await next_of(ws, "error")
        assert error["error"] == {
            "type": "invalid_request_error",
            "code": "invalid_audio",
            "message": "PCM16 audio must contain an even number of bytes",
            "param": "audio",
            "client_event_id": "a1",
        }


async def test_a_turn_is_transcribed_and_answered_after_600_ms_of_silence() -> None:
    # source: docs/emulator.md#gl-turn-end, #gl-transcript
    script = {"turns": [{"turn": 1, "transcript": "what time is it in Paris", "say": "Noon."}]}
    async with live(script) as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        await stream(ws, voice(1000), quiet(500))
        before = await marker(ws)
        assert heard(before) == "" and said(before) == ""  # 500 ms of quiet: still the turn
        await stream(ws, quiet(200), quiet(1500))
        after = await marker(ws)
        fragments = [e for e in after if e["type"] == "session.input_transcript.delta"]
        assert heard(after) == "what time is it in Paris"
        assert [f["delta"] for f in fragments] == ["what time is", " it in Paris"]
        assert fragments[0]["start_ms"] == 0 and fragments[-1]["end_ms"] == 1000
        assert said(after) == "[emulator] Noon."
        audio = [e for e in after if e["type"] == "session.output_audio.delta"]
        # the reply starts where the turn ended and goes with the caller's stream, 100 ms each
        assert audio[0]["start_ms"] == 1600
        assert [a["end_ms"] - a["start_ms"] for a in audio] == [100] * len(audio)
        assert all(b["start_ms"] == a["end_ms"] for a, b in zip(audio, audio[1:], strict=False))


async def test_long_speech_gets_a_backchannel_every_two_seconds_without_a_reply() -> None:
    # source: docs/emulator.md#gl-backchannel
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        await stream(ws, voice(4500))
        during = await marker(ws)
        cues = [e for e in during if e["type"] == "session.output_transcript.delta"]
        assert [c["delta"] for c in cues] == ["[emulator] mm-hmm", "[emulator] mm-hmm"]
        assert [c["start_ms"] for c in cues] == [2000, 4000]  # over the caller, on the timeline
        assert heard(during) == ""  # the caller has not finished: no turn yet
        assert [e for e in during if e["type"] == "session.output_audio.delta"]


class _Kinds:
    """What vlrun's duplex rule (runner.live.duplex) makes of the emulator's output."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def caller_said(self, utterance_id: str, text: str) -> None:
        self.log.append(("caller", text))

    def reply_delta(self, utterance_id: str, delta: str) -> None:
        pass

    def reply_done(self, utterance_id: str, text: str, *, yielded: bool) -> None:
        self.log.append(("reply", text))

    def backchannel(self, utterance_id: str, text: str) -> None:
        self.log.append(("backchannel", text))


@pytest.mark.parametrize("voiced_ms", [5900, 5500, 6100])
async def test_backchannels_come_while_the_caller_is_voiced_and_apart_from_the_reply(
    voiced_ms: int,
) -> None:
    # source: docs/emulator.md#gl-backchannel. The 2 s count stops at the caller's last voiced
    # audio: 5.9 s and 5.5 s of speech got a cue at 6000 ms, in the silence that ends the turn
    # (just before the reply, or over it); 6.1 s gets one at 6000 ms, and the reply waits until
    # it has played and 500 ms more, so vlrun does not hear the two as one utterance.
    from runner.live.duplex import Duplex

    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        await stream(ws, voice(voiced_ms), quiet(2000))
        seen = await marker(ws)
    speech_end = max(e["end_ms"] for e in seen if e["type"] == "session.input_transcript.delta")
    assert speech_end == voiced_ms
    out = [e for e in seen if e["type"] == "session.output_transcript.delta"]
    cues = [e for e in out if e["delta"] == "[emulator] mm-hmm"]
    assert [c["start_ms"] for c in cues] == list(range(2000, voiced_ms, 2000))
    assert all(c["start_ms"] < speech_end for c in cues)  # over the caller, not after
    reply = [e for e in out if e["delta"] != "[emulator] mm-hmm"]
    assert reply and reply[0]["start_ms"] >= cues[-1]["end_ms"] + 500
    audio = sorted(
        (e["start_ms"], e["end_ms"]) for e in seen if e["type"] == "session.output_audio.delta"
    )
    assert all(a[1] <= b[0] for a, b in zip(audio, audio[1:], strict=False))  # never two at once
    kinds = _Kinds()
    duplex = Duplex(kinds)
    duplex.caller_audio(0, voiced_ms, voiced=True)
    for e in seen:
        if e["type"] == "session.output_transcript.delta":
            duplex.assistant_fragment(e["delta"], e["start_ms"], e["end_ms"])
        elif e["type"] == "session.output_audio.delta":
            duplex.assistant_audio(e["start_ms"], e["end_ms"])
        elif e["type"] == "session.input_transcript.delta":
            duplex.caller_fragment(e["delta"], e["start_ms"], e["end_ms"])
    duplex.flush()
    assert (duplex.backchannels, duplex.replies) == (len(cues), 1), kinds.log
    assert not any(k == "reply" and "mm-hmm" in text for k, text in kinds.log)


async def _speaking(ws: ClientConnection) -> tuple[int, int]:
    """Start a reply (a 300 ms turn, then silence): where it began, and where its last chunk
    sent so far begins."""
    await stream(ws, voice(300), quiet(700))
    first = await marker(ws)
    audio = [e for e in first if e["type"] == "session.output_audio.delta"]
    assert audio, "the reply did not start"
    assert audio[0]["start_ms"] == 300 + 600  # the turn ended after 600 ms of silence
    return int(audio[0]["start_ms"]), int(audio[-1]["start_ms"])


async def said_until(ws: ClientConnection, ending: str) -> list[dict[str, Any]]:
    """Events until the emulator's words end with ``ending`` (the idle caller's stream lets
    the rest of a reply go out at once: the desk runs at speed 0)."""
    out: list[dict[str, Any]] = []
    while not said(out).endswith(ending):
        out.append(await recv(ws))
    return out


async def test_the_emulator_does_not_yield_to_a_short_caller_backchannel() -> None:
    # source: docs/emulator.md#gl-yield: under 600 ms of the caller's voice the reply goes on
    script = {"turns": [{"turn": 1, "say": "one two three four five six seven eight nine ten"}]}
    async with live(script) as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        _, last = await _speaking(ws)
        await stream(ws, quiet(200), voice(300), quiet(1000))
        rest = await marker(ws)
        rest += await said_until(ws, "nine ten")
        audio = [e for e in rest if e["type"] == "session.output_audio.delta"]
        starts = [last] + [a["start_ms"] for a in audio]
        assert all(b - a == 100 for a, b in zip(starts, starts[1:], strict=False))  # no gap
        # the caller's 'mm-hmm' is transcribed but is no turn: nothing answers it
        assert heard(rest) == "[emulator] (0.3 s)"  # three words at most, as vlrun counts
        assert said(rest).count("[emulator]") == 0


async def test_the_emulator_yields_to_600_ms_of_the_callers_voice() -> None:
    # source: docs/emulator.md#gl-yield
    script = {
        "turns": [
            {"turn": 1, "say": " ".join(["word"] * 40)},
            {"turn": 2, "transcript": "stop please", "say": "Sorry, go on."},
        ]
    }
    async with live(script) as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        _, _ = await _speaking(ws)
        await stream(ws, quiet(300), voice(800))
        cut = await marker(ws)
        last = max(a["end_ms"] for a in cut if a["type"] == "session.output_audio.delta")
        barge = 1000 + 300  # where the caller's voice begins on the timeline
        assert barge + 600 <= last <= barge + 600 + 100  # stopped within a chunk of 600 ms
        await stream(ws, quiet(1000))
        after = await marker(ws)
        assert heard(after) == "stop please"
        after += await said_until(ws, "go on.")
        assert said(after) == "[emulator] Sorry, go on."  # the stopped reply is not resumed


async def test_muted_audio_is_not_heard() -> None:
    # docs/gpt-live.md "Audio and transcripts": muted audio is not heard by the model
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        await send(ws, {"type": "session.input_audio.mute", "event_id": "m"})
        muted = await next_of(ws, "session.input_audio.muted")
        assert muted["client_event_id"] == "m"
        await stream(ws, voice(4500), quiet(1000))
        seen = await marker(ws)
        assert heard(seen) == "" and said(seen) == ""  # no turn, no backchannel
        # unmuted, the same audio is heard (the marker unmuted it)
        await stream(ws, voice(2500), quiet(700))
        assert said(await marker(ws)).startswith("[emulator] mm-hmm")


# --- delegation -----------------------------------------------------------------------------------


async def test_responses_delegation_calls_the_profiles_tool_and_speaks_the_result() -> None:
    # source: docs/emulator.md#gl-delegation (FDEL "Handle Responses delegation")
    script = {
        "turns": [
            {
                "turn": 1,
                "transcript": "what is the weather in Oslo",
                "tools": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
            }
        ]
    }
    async with live(script) as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws, delegation=RESPONSES)
        await stream(ws, voice(800), quiet(700))
        events = await marker(ws)
        created = next(e for e in events if e["type"] == "session.delegation.created")
        delegation = created["delegation"]
        assert delegation["target"] == "responses" and delegation["response_id"].startswith("resp")
        assert said(events).startswith("[emulator]")  # the filler has begun
        nested = [e["event"] for e in events if e["type"] == "response.event"]
        assert all(
            e["delegation_id"] == delegation["id"] for e in events if e["type"] == "response.event"
        )
        assert [n["type"] for n in nested] == [
            "response.created",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
        call = nested[4]["item"]
        assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Oslo"}
        # the backend's response: begun, then completed with the call as its output
        first, last = nested[0]["response"], nested[-1]["response"]
        assert first["id"] == last["id"] == delegation["response_id"]
        assert (first["status"], last["status"]) == ("in_progress", "completed")
        assert first["model"] == last["model"] == "gpt-5.4-mini" and "output" not in first
        assert [o["type"] for o in last["output"]] == ["function_call"]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"c": 7}'}
        await send(ws, {"type": "response.create", "event_id": "early"})
        early = await next_of(ws, "error")
        assert early["error"]["param"] == "item.call_id"  # every result first (FDEL)
        await send(ws, {"type": "response.item.create", "item": output})
        await send(ws, {"type": "response.create"})
        answer = await until(
            ws,
            lambda e: e["type"] == "response.event" and e["event"]["type"] == "response.completed",
        )
        text = next(
            e["event"]["text"]
            for e in answer
            if e["type"] == "response.event" and e["event"]["type"] == "response.output_text.done"
        )
        done = answer[-1]["event"]["response"]
        assert done["status"] == "completed" and done["model"] == "gpt-5.4-mini"
        assert done["output"][-1]["content"][0]["text"] == "[emulator] (backend gpt-5.4-mini) " + (
            "get_weather returned c 7"
        )
        assert text == "[emulator] (backend gpt-5.4-mini) get_weather returned c 7"
        spoken_part = await said_until(ws, "returned c 7")
        # the live model says the backend's words, after its filler
        assert said(events + answer + spoken_part) == "[emulator] One moment. " + text


async def test_a_typed_turn_goes_to_the_backend_and_a_web_search_runs_there() -> None:
    # source: docs/emulator.md#gl-delegation (FREF: response.item.create "user message")
    backend = {
        "type": "responses",
        "responses": {"model": "gpt-5.4-mini", "tools": [{"type": "web_search"}]},
    }
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws, delegation=backend)
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "latest news from Oslo"}],
        }
        await send(ws, {"type": "response.item.create", "item": item})
        await send(ws, {"type": "response.create"})
        events = await until(
            ws,
            lambda e: e["type"] == "response.event" and e["event"]["type"] == "response.completed",
        )
        nested = [e["event"]["type"] for e in events if e["type"] == "response.event"]
        assert nested[:5] == [
            "response.created",
            "response.output_item.added",
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
        ]
        spoken_text = await said_until(ws, 'for "latest news from Oslo"')
        assert said(events + spoken_text) == (
            "[emulator] (backend gpt-5.4-mini) no web search was run; an emulated result for "
            '"latest news from Oslo"'
        )


async def test_client_delegation_waits_for_the_commentary_and_says_it() -> None:
    # source: docs/emulator.md#gl-delegation (FDEL "Handle client delegation")
    script = {"turns": [{"turn": 1, "transcript": "is the shop open?"}]}
    async with live(script) as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        await stream(ws, voice(600), quiet(700))
        events = await marker(ws)
        created = next(e for e in events if e["type"] == "session.delegation.created")
        did = created["delegation"]["id"]
        assert created["delegation"] == {"id": did, "type": "delegation", "target": "client"}
        for bad, param in (({"delegation_id": "nope"}, "delegation_id"), ({}, "delegation_id")):
            await send(ws, {"type": "session.commentary.append", "content": "x", **bad})
            assert (await next_of(ws, "error"))["error"]["param"] == param
        await send(
            ws,
            {
                "type": "session.thinking.append",
                "event_id": "t",
                "delegation_id": did,
                "content": "quiet",
            },
        )
        ack = await next_of(ws, "session.thinking.appended")
        assert ack["client_event_id"] == "t"
        await send(
            ws,
            {
                "type": "session.commentary.append",
                "delegation_id": did,
                "content": "It is open until six.",
            },
        )
        await next_of(ws, "session.commentary.appended")
        rest = await said_until(ws, "until six.")
        assert said(events + rest) == "[emulator] One moment. [emulator] It is open until six."
        assert "quiet" not in said(events + rest)


async def test_a_delegation_nobody_answers_is_said_to_have_failed() -> None:
    # source: docs/emulator.md#gl-delegation (the 30 s wait is an assumption; shortened here)
    script = {"turns": [{"turn": 1, "transcript": "is the shop open?"}]}
    async with live(script, delegation_timeout_s=0.2) as (desk, base):
        async with connect(base + "/openai/v1/live") as ws:
            await started(ws)
            await stream(ws, voice(600), quiet(700))
            events = await said_until(ws, "did not answer.")
            assert said(events) == "[emulator] One moment. [emulator] The backend did not answer."
        assert "gl-delegation-timeout" in desk.sessions[0].fidelity


async def test_response_events_need_responses_delegation() -> None:
    # source: docs/emulator.md#gl-refused (SPIKE: "response.item.create requires Responses
    # delegation.")
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        await send(ws, {"type": "response.item.create", "item": {"type": "message"}})
        error = await next_of(ws, "error")
        assert error["error"]["message"] == "response.item.create requires Responses delegation."


# --- greeting, translation, close -----------------------------------------------------------------


async def test_a_greeting_is_a_session_commentary_said_verbatim() -> None:
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        greeting = {
            "type": "session.commentary.append",
            "delegation_id": None,
            "content": "Hello! Ask me the time.",
        }
        await send(ws, greeting)
        events = await until(ws, lambda e: "time." in str(e.get("delta", "")))
        assert said(events) == "[emulator] Hello! Ask me the time."


async def test_translation_is_stated_never_performed() -> None:
    # source: docs/emulator.md#gl-translation (docs/gpt-live.md: the sentence vlrun writes)
    sentence = (
        "Translate everything the caller says from English into French, and speak only the "
        "translation."
    )
    script = {"turns": [{"turn": 1, "transcript": "good morning"}]}
    async with live(script) as (desk, base), connect(base + "/openai/v1/live") as ws:
        await started(ws, instructions="You interpret.\n" + sentence)
        await stream(ws, voice(600), quiet(700))
        events = await said_until(ws, "good morning")
        assert said(events) == "[emulator] (translation into French not performed) good morning"
    assert "gl-translation" in desk.sessions[0].fidelity


async def test_close_drains_and_reports_usage_then_closes_the_socket() -> None:
    # source: docs/emulator.md#gl-close (FHOW "Close a session gracefully")
    async with live() as (desk, base), connect(base + "/openai/v1/live") as ws:
        await started(ws)
        await stream(ws, quiet(2500))
        await send(ws, {"type": "session.close", "event_id": "bye"})
        closed = await next_of(ws, "session.closed")
        assert closed["reason"] == "close_requested" and closed["usage"] == {"seconds": 2}
        assert closed["client_event_id"] == "bye"
        with pytest.raises(Exception):  # noqa: B017 - the socket closes after session.closed
            await recv(ws, timeout=2)
    assert desk.sessions[0].close_code == 1000


async def test_the_emulator_serves_gpt_live_beside_voice_live() -> None:
    # source: docs/emulator.md#gl-path, #gl-connect, through the emulator vlrun starts
    from runner.emulator import running_emulator

    async with running_emulator(speed=0) as emu:
        if not hasattr(emu, "live"):
            pytest.skip("runner/emulator/server.py does not mount the GPT-Live desk yet")
        base = emu.endpoint.replace("http://", "ws://")
        async with connect(base + "/openai/v1/live") as ws:
            assert (await started(ws))["type"] == "session.started"
        with pytest.raises(InvalidStatus) as refused:
            query = "?api-version=2026-07-15&model=gpt-live-1"
            async with connect(base + "/voice-live/realtime" + query):
                pass
        assert refused.value.response.status_code == 400
        assert b"/openai/v1/live" in bytes(refused.value.response.body)
        assert len(emu.sessions) == 1 and emu.sessions[0].id.startswith("sess_")
        start = await emu.wait_for(lambda e: e["type"] == "session.start", timeout=5)
        assert start["session"]["model"] == "gpt-live-1"


async def test_what_waits_to_be_said_is_bounded() -> None:
    # every queue has a bound: commentary the emulator has not said yet, typed turns held
    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        await started(ws, delegation=RESPONSES)
        for i in range(20):
            if i % 4 == 0:  # the caller's stream stays live: nothing is flushed by the idle clock
                await stream(ws, quiet(100))
            append = {"type": "session.commentary.append", "delegation_id": None, "content": "hi"}
            await send(ws, {**append, "event_id": f"c{i}"})
        refusals = await until(ws, lambda e: e.get("type") == "error")
        # 16 wait to be said (one may be said meanwhile: ~0.9 s each, 0.5 s streamed)
        assert refusals[-1]["error"]["client_event_id"] in ("c16", "c17")
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
        for i in range(17):
            await send(ws, {"type": "response.item.create", "event_id": f"t{i}", "item": item})
        typed = await until(
            ws, lambda e: str(e.get("error", {}).get("client_event_id", "")).startswith("t")
        )
        assert typed[-1]["error"]["client_event_id"] == "t16"


async def test_a_record_without_audio_counts_appends_and_keeps_no_audio() -> None:
    # as `vlrun emulate` runs: long sessions keep neither the caller's nor the emulator's audio
    async with live(record_audio=False) as (desk, base):
        async with connect(base + "/openai/v1/live") as ws:
            await started(ws)
            await stream(ws, voice(600), quiet(1500))
            await marker(ws)
        sessions = desk.sessions
    record = sessions[0]
    assert record.stats["appends"] == 21
    assert not [e for e in record.received if e["type"] == "session.input_audio.append"]
    assert not [e for e in record.sent if e["type"] == "session.output_audio.delta"]
    assert [e for e in record.sent if e["type"] == "session.output_transcript.delta"]


async def test_a_g711_session_hears_and_speaks_mu_law_at_8_khz() -> None:
    # docs/gpt-live.md "Startup": audio.format {type: audio/pcmu, rate: 8000}, one format both ways
    from runner.g711 import encode

    async with live() as (_, base), connect(base + "/openai/v1/live") as ws:
        start = await started(ws, audio={"format": {"type": "audio/pcmu", "rate": 8000}})
        assert start["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
        t = np.arange(8000 * 3 // 10) / 8000
        speech = np.round(np.sin(2 * np.pi * 220 * t) * 6000).astype(np.int16)
        audio = np.concatenate((speech, np.zeros(8000, dtype=np.int16)))
        for i in range(0, audio.size, 800):
            law = encode(audio[i : i + 800].tobytes(), "ulaw")
            chunk = base64.b64encode(law).decode()
            await send(ws, {"type": "session.input_audio.append", "audio": chunk})
        events = await marker(ws)
        audio_out = [e for e in events if e["type"] == "session.output_audio.delta"]
        assert audio_out and all(len(base64.b64decode(a["delta"])) == 800 for a in audio_out[:-1])
        assert heard(events) == "[emulator] 0.3 seconds of audio"
