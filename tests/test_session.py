"""The live loop end to end, in-process: the real SDK against the emulator.

Each test builds a LiveSession the way `vlrun run` does (profile -> compile -> connect) and
drives it through what a user does: type, speak, interrupt, lose the network.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from runner.config.compile import compile_session, greeting_event
from runner.config.load import load_profile
from runner.emulator import Faults, running_emulator
from runner.live.audio import CHUNK_MS, AudioFormat, ClockPlayer, read_wav
from runner.live.connect import resolve_target
from runner.live.drift import session_differences
from runner.live.session import LiveSession
from runner.live.transcript import Transcript
from runner.plugins import Registry
from tests.live_harness import Harness, LiveMic, is_assistant

ROOT = Path(__file__).resolve().parents[1]
FMT = AudioFormat(24000)
KEY = "session-test-key-0123456789"


def write_profile(tmp: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


PLAIN = """\
name: plain
instructions: Be brief.
voice: alloy
turn_detection: server_vad
"""


def build(
    profile_path: Path,
    endpoint: str,
    tmp: Path,
    *,
    player: Any = None,
    source: Any = None,
    registry: Registry | None = None,
    greeting: bool = True,
    **options: Any,
) -> Harness:
    profile = load_profile(profile_path)
    target = resolve_target(profile, endpoint=endpoint, env={"AZURE_VOICELIVE_API_KEY": KEY})
    schemas = registry.schemas() if registry is not None else None
    payload = compile_session(profile, tool_schemas=schemas)
    transcript = Transcript(
        logs_dir=tmp / "logs",
        trace_path=tmp / "trace.jsonl",
        out=io.StringIO(),
        err=io.StringIO(),
        name=profile.name,
    )
    session = LiveSession(
        target=target,
        endpoint=endpoint,
        credential=AzureKeyCredential(KEY),
        session_update=payload,
        transcript=transcript,
        player=player or ClockPlayer(FMT, realtime=False),
        source=source,
        lines=False,
        greeting=greeting_event(profile) if greeting else None,
        registry=registry,
        profile_name=profile.name,
        backoff_s=0.05,
        **options,
    )
    return Harness(session, transcript)


async def test_session_update_is_sent_first_and_confirmed(tmp_path: Path, emulator: Any) -> None:
    h = build(write_profile(tmp_path, PLAIN), emulator.endpoint, tmp_path)
    h.start()
    first = await emulator.wait_for(lambda e: True)
    assert first["type"] == "session.update"
    assert first["session"]["voice"] == "alloy"
    await h.session.send_text("hello there")
    await h.turn(is_assistant("You said: hello there"))
    assert await h.stop() == 0
    assert h.session.session_id.startswith("sess_")
    h.transcript.close()  # the logs are written off the loop: complete once closed
    log = h.transcript.conversation_path.read_text()  # type: ignore[union-attr]
    assert "user: hello there" in log and "You said: hello there" in log


async def test_greeting_makes_the_assistant_speak_first(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, PLAIN + "greeting: Greet the user briefly\n")
    script = {"description": "greets", "greeting": "Hello, nice to meet you.", "turns": []}
    async with running_emulator(speed=0, scenario=script) as emu:
        h = build(profile, emu.endpoint, tmp_path)
        h.start()
        turn = await h.turn(lambda t: t.role == "assistant")
        assert await h.stop() == 0
        sent = [e["type"] for e in emu.sessions[0].received]
    assert "Hello, nice to meet you." in turn.text
    assert sent[:2] == ["session.update", "response.create"]  # no user input before the greeting
    assert not [t for t in h.transcript.turns if t.role == "user"]


async def test_tool_call_round_trip(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, PLAIN + "tools: [current_time]\n")
    registry = Registry.discover([ROOT / "tools"], entry_points=False)
    script = {
        "description": "clock",
        "turns": [
            {
                "match": "Tokyo",
                "tools": [{"name": "current_time", "arguments": {"timezone": "Asia/Tokyo"}}],
                "then": "In Tokyo it is {outputs.0.time}.",
            }
        ],
    }
    async with running_emulator(speed=0, scenario=script) as emu:
        h = build(profile, emu.endpoint, tmp_path, registry=registry)
        h.start()
        await h.session.send_text("What time is it in Tokyo?")
        reply = await h.turn(is_assistant("In Tokyo it is"))
        assert await h.stop() == 0
        received = emu.sessions[0].received
    outputs = [
        e
        for e in received
        if e["type"] == "conversation.item.create" and e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1
    value = json.loads(outputs[0]["item"]["output"])
    assert value["timezone"] == "Asia/Tokyo"
    assert value["time"] in reply.text  # the model's answer used our tool's output
    after = received[received.index(outputs[0]) + 1 :]
    assert after and after[0]["type"] == "response.create"
    tool_turns = [t for t in h.transcript.turns if t.role == "tool"]
    assert len(tool_turns) == 1 and "current_time" in tool_turns[0].text


async def test_server_error_is_shown_and_the_conversation_continues(tmp_path: Path) -> None:
    faults = Faults(error_on_client_event="response.create", connections=(1,))
    async with running_emulator(speed=0, faults=faults) as emu:
        h = build(write_profile(tmp_path, PLAIN), emu.endpoint, tmp_path)
        h.start()
        await h.session.send_text("still there?")
        await h.turn(is_assistant("You said: still there?"))
        assert await h.stop() == 0
    err = h.transcript.err.getvalue()  # type: ignore[attr-defined]
    assert "service error server_error: [emulator] injected fault" in err
    assert h.session.metrics.reconnects == 0


async def _turn_events(tmp_path: Path, text: str) -> int:
    """How many server events one typed exchange takes (from a clean run)."""
    async with running_emulator(speed=0) as emu:
        h = build(write_profile(tmp_path, PLAIN, "count.yaml"), emu.endpoint, tmp_path / "count")
        h.start()
        await h.session.send_text(text)
        await h.turn(is_assistant(f"You said: {text}"))
        await h.stop()
        return len(emu.sessions[0].sent)


async def test_reconnect_after_a_drop_loses_and_repeats_no_turn(tmp_path: Path) -> None:
    first_exchange = await _turn_events(tmp_path, "first question")
    # Cut the TCP connection in the middle of the second reply.
    faults = Faults(drop_after_events=first_exchange + 6, connections=(1,))
    async with running_emulator(speed=0, faults=faults) as emu:
        h = build(write_profile(tmp_path, PLAIN), emu.endpoint, tmp_path)
        h.start()
        await h.session.send_text("first question")
        await h.turn(is_assistant("You said: first question"))
        await h.session.send_text("second question")
        # The client reconnects and re-sends the session on connection 2.
        await emu.wait_for(lambda e: e["type"] == "session.update")
        await emu.wait_for(lambda e: e["type"] == "session.update", timeout=10)
        await h.session.send_text("third question")
        await h.turn(is_assistant("You said: third question"))
        assert await h.stop() == 0
        second = emu.sessions[1].received
    assert h.session.metrics.reconnects == 1
    texts = [(t.role, t.text) for t in h.transcript.turns]
    for turn in [
        ("user", "first question"),
        ("assistant", "[emulator] You said: first question"),
        ("user", "second question"),
        ("user", "third question"),
        ("assistant", "[emulator] You said: third question"),
    ]:
        assert texts.count(turn) == 1, (turn, texts)
    # The new session was given the earlier conversation as context.
    replayed = [
        e["item"]["content"][0]["text"] for e in second if e["type"] == "conversation.item.create"
    ]
    assert replayed[:2] == ["first question", "[emulator] You said: first question"]
    h.transcript.close()  # the logs are written off the loop: complete once closed
    log = h.transcript.conversation_path.read_text()  # type: ignore[union-attr]
    assert log.count("user: first question") == 1
    assert log.count("assistant: [emulator] You said: first question") == 1
    assert "reconnected" in h.transcript.err.getvalue()  # type: ignore[attr-defined]


async def test_rolls_over_before_the_session_limit(tmp_path: Path) -> None:
    async with running_emulator(speed=0, session_limit_s=3) as emu:
        h = build(write_profile(tmp_path, PLAIN), emu.endpoint, tmp_path, rollover_margin_s=1.0)
        h.start()
        await emu.wait_for(lambda e: e["type"] == "session.update")
        await emu.wait_for(lambda e: e["type"] == "session.update", timeout=10)
        await h.session.send_text("after the roll-over")
        await h.turn(is_assistant("You said: after the roll-over"))
        assert await h.stop() == 0
        assert len(emu.sessions) >= 2
        assert emu.sessions[0].close_code != 1006  # we closed it, no drop
    assert h.session.metrics.rollovers >= 1
    assert h.session.metrics.reconnects == 0


class WatchedPlayer(ClockPlayer):
    """ClockPlayer that tells the test when assistant audio starts."""

    def __init__(self) -> None:
        super().__init__(FMT, realtime=True)
        self.started = asyncio.Event()

    def write(self, item_id: str, pcm: bytes) -> None:
        super().write(item_id, pcm)
        self.started.set()


async def test_barge_in_silences_cancels_and_truncates(
    tmp_path: Path, long_speech_wav: Path
) -> None:
    speech = read_wav(long_speech_wav, FMT)
    mic, player = LiveMic(), WatchedPlayer()
    script = {
        "description": "long reply",
        "turns": [
            {
                "match": "story",
                "say": "Once upon a time there was a very long story that went on and on "
                "and on, far longer than anyone wanted to listen to it.",
            }
        ],
    }
    async with running_emulator(speed=1, scenario=script) as emu:
        h = build(write_profile(tmp_path, PLAIN), emu.endpoint, tmp_path, player=player, source=mic)
        h.start()
        await h.session.send_text("tell me a story")
        await asyncio.wait_for(player.started.wait(), 10)
        mic.say(speech)  # the user talks over the assistant
        cancel = await emu.wait_for(lambda e: e["type"] == "response.cancel", timeout=10)
        truncate = await emu.wait_for(
            lambda e: e["type"] == "conversation.item.truncate", timeout=10
        )
        pending_after = player.pending_ms()
        assert await h.stop() == 0
    assert cancel
    assert player.silenced_at is not None and pending_after == 0
    item = truncate["item_id"]
    received = h.session.received_ms(item)
    assert truncate["content_index"] == 0
    # Cut where playback really was: some audio played, never more than arrived.
    assert 0 < truncate["audio_end_ms"] <= received
    reply = next(t for t in h.transcript.turns if t.role == "assistant")
    assert reply.interrupted and reply.item_id == item
    assert h.session.metrics.sent_events["response.cancel"] == 1  # one barge-in, one cancel


@pytest.mark.parametrize("socket_fast_path", [True, False], ids=["raw-socket", "sdk-send"])
async def test_wav_input_ends_after_the_reply(
    tmp_path: Path, speech_wav: Path, monkeypatch: pytest.MonkeyPatch, socket_fast_path: bool
) -> None:
    from azure.ai.voicelive.aio import VoiceLiveConnection

    from runner.live import outbox
    from runner.live.audio import WavSource

    # Appends skip conn.send when the SDK connection exposes its aiohttp socket; either way
    # the service must get the same audio.
    via_sdk: list[str] = []
    real_send = VoiceLiveConnection.send

    async def spy(self: Any, event: Any) -> None:
        via_sdk.append(str(event["type"]) if isinstance(event, dict) else str(event.type))
        await real_send(self, event)

    monkeypatch.setattr(VoiceLiveConnection, "send", spy)
    if not socket_fast_path:
        monkeypatch.setattr(outbox, "raw_socket", lambda conn: None)
    source = WavSource(speech_wav, FMT, fast=True)
    async with running_emulator(speed=0) as emu:
        h = build(
            write_profile(tmp_path, PLAIN),
            emu.endpoint,
            tmp_path,
            source=source,
            end_when_input_ends=True,
        )
        h.start()
        assert await asyncio.wait_for(h.task, 30) == 0  # type: ignore[arg-type]
        appended = [
            base64.b64decode(e["audio"])
            for e in emu.sessions[0].received
            if e["type"] == "input_audio_buffer.append"
        ]
    assert b"".join(appended) == source.pcm  # every byte of the file, in order
    assert len(appended) == -(-len(source.pcm) // FMT.bytes_for_ms(CHUNK_MS))  # one per chunk
    assert ("input_audio_buffer.append" in via_sdk) is not socket_fast_path
    assert "session.update" in via_sdk  # everything else still goes through the SDK
    user = [t for t in h.transcript.turns if t.role == "user"]
    assistant = [t for t in h.transcript.turns if t.role == "assistant"]
    assert len(user) == 1 and user[0].text.startswith("[speech")
    assert len(assistant) == 1 and "I heard" in assistant[0].text


def test_session_differences_names_dropped_and_rewritten_fields() -> None:
    sent = {
        "voice": "alloy",
        "temperature": 0.8,
        "instructions": "hi",
        "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500},
        "tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "b"}],
    }
    got = {
        "voice": {"type": "openai", "name": "alloy"},
        "temperature": 0.80000001,
        "turn_detection": {"type": "server_vad", "threshold": 0.7},
        "tools": [{"type": "function", "name": "a"}],
        "id": "sess_1",
    }
    lines = session_differences(sent, got)
    assert "the service dropped session.instructions (sent 'hi')" in lines
    assert "the service rewrote session.turn_detection.threshold: sent 0.5, got 0.7" in lines
    assert "the service dropped session.turn_detection.silence_duration_ms (sent 500)" in lines
    assert "the service dropped tool 'b'" in lines
    assert len(lines) == 4  # voice name and float noise are not differences
