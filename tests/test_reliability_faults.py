"""Reliability under faults: a real LiveSession, the real SDK, the emulator's fault injection.

Each conversation is spoken (tone bursts the emulator's VAD hears as turns), so drops can land
during user speech, mid-response and mid-tool-call. The oracle is the emulator's own record of
what it completed: every assistant message it finished and every user turn it transcribed on a
connection must be in the conversation exactly once, however often the line was cut.

Malformed and unknown server events cannot come from the emulator (it only speaks valid
protocol), so a small WebSocket relay between the SDK and the emulator injects raw frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from azure.core.credentials import AzureKeyCredential

from runner.emulator import Faults, running_emulator
from runner.live.audio import AudioFormat, ClockPlayer
from runner.live.connect import Target
from runner.live.session import LiveSession
from runner.live.transcript import Transcript
from runner.plugins import Registry, tool
from tests.relay import relay

pytestmark = pytest.mark.timeout(60)

FMT = AudioFormat(24000)
KEY = "reliability-test-key-0123456789"
WAIT_S = 10.0  # bound on any single wait for the conversation to move on

SESSION_UPDATE: dict[str, Any] = {
    "type": "session.update",
    "session": {
        "modalities": ["text", "audio"],
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 100,
            "silence_duration_ms": 200,
        },
        "input_audio_transcription": {"model": "whisper-1"},  # azure-speech needs azure VAD
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": "Look a city up.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ],
    },
}

# Turn 2 calls a tool; every other turn gets the emulator's built-in reply to audio.
SCRIPT: dict[str, Any] = {
    "turns": [
        {
            "turn": 2,
            "tools": [{"name": "lookup", "arguments": {"city": "Oslo"}}],
            "then": "Oslo is {output.temp} degrees.",
        }
    ]
}


@tool
def lookup(city: str) -> dict[str, Any]:
    """Look a city up."""
    return {"city": city, "temp": 7}


# ---------------------------------------------------------------------------------- harness


class WatchedTranscript(Transcript):
    """A Transcript that wakes waiters whenever the conversation moves (turn, reconnect, error)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reconnects = 0
        self.errors: list[str] = []
        self._moved = asyncio.Condition()

    def _poke(self) -> None:
        async def notify() -> None:
            async with self._moved:
                self._moved.notify_all()

        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(notify())

    def user(self, item_id: str, text: str) -> None:
        super().user(item_id, text)
        self._poke()

    def assistant_done(self, item_id: str, text: str, *, interrupted: bool = False) -> None:
        super().assistant_done(item_id, text, interrupted=interrupted)
        self._poke()

    def notice(self, text: str) -> None:
        super().notice(text)
        if text.startswith("reconnected"):
            self.reconnects += 1
        self._poke()

    def error(self, text: str) -> None:
        super().error(text)
        self.errors.append(text)
        self._poke()

    def failed_replies(self) -> int:
        return sum(1 for e in self.errors if e.startswith("the response failed"))

    def assistant_count(self) -> int:
        return sum(1 for t in self.turns if t.role == "assistant")

    async def wait_moved(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        """Wait (bounded) until ``predicate`` holds; False on timeout."""
        with contextlib.suppress(asyncio.TimeoutError):
            async with self._moved:
                await asyncio.wait_for(self._moved.wait_for(predicate), timeout)
        return predicate()


def tone(ms: int, amplitude: int = 8000) -> bytes:
    n = FMT.rate * ms // 1000
    t = np.arange(n) / FMT.rate
    return (amplitude * np.sin(2 * math.pi * 440 * t)).astype("<i2").tobytes()


@dataclass
class SpokenTurns:
    """A microphone that speaks ``turns`` bursts and, like a person, waits for each answer.

    Before a turn it waits until the session can take audio; after it, until an assistant turn
    arrives, the connection was re-established, or the reply failed (bounded).
    """

    turns: list[int]  # speech length of each turn, ms
    transcript: WatchedTranscript
    live: LiveSession | None = None
    silence_ms: int = 400
    stalls: int = 0  # turns after which the conversation did not move on within WAIT_S

    async def frames(self) -> AsyncIterator[bytes]:
        assert self.live is not None
        step = FMT.frame_bytes
        for speech_ms in self.turns:
            await asyncio.wait_for(self.live.ready.wait(), WAIT_S)
            answered = self.transcript.assistant_count()
            reconnects = self.transcript.reconnects
            failed = self.transcript.failed_replies()
            pcm = tone(speech_ms) + bytes(FMT.bytes_for_ms(self.silence_ms))
            for offset in range(0, len(pcm), step):
                chunk = pcm[offset : offset + step]
                yield chunk + bytes(step - len(chunk))

            def moved_on(a: int = answered, r: int = reconnects, f: int = failed) -> bool:
                t = self.transcript
                return t.assistant_count() > a or t.reconnects > r or t.failed_replies() > f

            if not await self.transcript.wait_moved(moved_on):
                self.stalls += 1

    def close(self) -> None:
        pass


@dataclass
class Outcome:
    live: LiveSession
    transcript: WatchedTranscript
    sessions: list[Any]
    conversation_log: str
    stderr: str
    extra: dict[str, Any] = field(default_factory=dict)


async def converse(
    tmp_path: Path,
    *,
    turns: list[int],
    faults: Faults | None = None,
    script: dict[str, Any] | None = None,
    registry: Registry | None = None,
    tool_timeouts: dict[str, float] | float = 5.0,
    relay: Callable[[str], Any] | None = None,
) -> Outcome:
    """One spoken conversation against the emulator; returns what both sides recorded."""
    err = io.StringIO()
    transcript = WatchedTranscript(
        logs_dir=tmp_path / "logs", trace_path=tmp_path / "trace.jsonl", out=io.StringIO(), err=err
    )
    async with running_emulator(
        scenario=script or SCRIPT, speed=0, api_key=KEY, faults=faults, use_espeak=False
    ) as emu:
        async with _maybe_relay(emu.endpoint, relay) as endpoint:
            source = SpokenTurns(turns, transcript)
            live = LiveSession(
                target=Target(endpoint, "test", KEY, "test", "gpt-realtime"),
                endpoint=endpoint,
                credential=AzureKeyCredential(KEY),
                session_update=SESSION_UPDATE,
                transcript=transcript,
                player=ClockPlayer(FMT, realtime=False),
                source=source,
                lines=False,
                registry=registry if registry is not None else Registry.of(lookup),
                tool_timeouts=tool_timeouts,
                end_when_input_ends=True,
                backoff_s=0.01,
                finish_timeout_s=WAIT_S,
            )
            source.live = live
            await asyncio.wait_for(live.run(), 45)
        sessions = list(emu.sessions)
    transcript.close()
    assert transcript.conversation_path is not None
    assert transcript.technical_path is not None
    log_text = transcript.conversation_path.read_text(encoding="utf-8")
    kept = {
        "technical": transcript.technical_path.read_text(encoding="utf-8"),
        "trace": (tmp_path / "trace.jsonl").read_text(encoding="utf-8"),
    }
    kept["stalls"] = source.stalls
    return Outcome(live, transcript, sessions, log_text, err.getvalue(), kept)


# ---------------------------------------------------------------------------------- oracle


def completed_by_emulator(sessions: list[Any]) -> tuple[dict[str, str], set[str]]:
    """Assistant replies the emulator finished (item id -> text) and user items it transcribed.

    A reply counts as finished once its full transcript was sent (``*_transcript.done`` /
    ``text.done``): from then on the client holds the whole text, whatever happens next.
    """
    assistant: dict[str, str] = {}
    users: set[str] = set()
    cancelled: set[str] = set()
    for record in sessions:
        for event in record.sent:
            kind = event.get("type")
            if kind in ("response.audio_transcript.done", "response.text.done"):
                assistant[event["item_id"]] = event.get("transcript") or event.get("text") or ""
            elif kind == "response.done" and event["response"].get("status") == "cancelled":
                cancelled.update(o.get("id") for o in event["response"].get("output") or [])
            elif kind == "conversation.item.input_audio_transcription.completed":
                users.add(event["item_id"])
    return {k: v for k, v in assistant.items() if k not in cancelled}, users


def assert_every_completed_turn_once(out: Outcome, *, cut: int | None = None) -> None:
    """Each turn at most once; every turn the emulator completed is there, nothing else.

    ``cut`` names a connection that ended by a TCP cut: what it sent last may never have
    reached the client, so its turns are allowed to be missing (never duplicated or invented).
    """
    assert out.extra["stalls"] == 0, (
        "the conversation stalled: a turn was neither answered nor lost"
    )
    turns = out.transcript.turns
    ids = [t.item_id for t in turns]
    assert len(ids) == len(set(ids)), f"a turn was recorded twice: {ids}"
    sure = [r for r in out.sessions if r.number != cut]
    must_a, must_u = completed_by_emulator(sure)
    may_a, may_u = completed_by_emulator(out.sessions)
    got_a = {t.item_id: t.text for t in turns if t.role == "assistant" and not t.interrupted}
    got_u = {t.item_id for t in turns if t.role == "user"}
    missing = {k: v for k, v in must_a.items() if got_a.get(k) != v}
    invented = {k: v for k, v in got_a.items() if may_a.get(k) != v}
    assert not missing, f"completed replies missing from the conversation: {missing}"
    assert not invented, f"replies the emulator never completed: {invented}"
    assert must_u <= got_u <= may_u, (must_u - got_u, got_u - may_u)
    # ... and the conversation log holds each recorded reply's line exactly once
    for text in set(got_a.values()):
        expected = sum(1 for v in got_a.values() if v == text)
        assert out.conversation_log.count(f"assistant: {text}\n") == expected, text
    assert "Traceback" not in out.conversation_log + out.stderr


# ---------------------------------------------------------------------------------- relay


@contextlib.asynccontextmanager
async def _maybe_relay(endpoint: str, inject: Callable[[str], Any] | None) -> AsyncIterator[str]:
    if inject is None:
        yield endpoint
        return
    async with relay(endpoint, inject=inject) as url:
        yield url


# ---------------------------------------------------------------------------------- tests

TURNS = [300, 500, 700, 400]  # four spoken turns; the second one calls a tool


async def test_clean_conversation_baseline(tmp_path: Path) -> None:
    out = await converse(tmp_path, turns=TURNS)
    assert out.live.metrics.reconnects == 0
    assistant, users = completed_by_emulator(out.sessions)
    assert len(users) == 4 and len(assistant) == 4  # tool turn: spoken answer after the tool
    assert "Oslo is 7 degrees." in assistant.values()
    assert_every_completed_turn_once(out)


# ---------------------------------------------------------------------------------- drops

_REFERENCE: list[str] = []


async def reference_events(tmp_path: Path) -> list[str]:
    """Server event types of a clean run of the same conversation (where each drop lands)."""
    if not _REFERENCE:
        out = await converse(tmp_path / "reference", turns=TURNS)
        _REFERENCE.extend(out.sessions[0].sent_types())
    return _REFERENCE


def _nth(types: list[str], kind: str, n: int = 1, *, middle: bool = False) -> int:
    """1-based position of the n-th event of ``kind`` (or the middle one)."""
    hits = [i + 1 for i, t in enumerate(types) if t == kind]
    assert hits, f"the reference conversation has no {kind}"
    return hits[len(hits) // 2] if middle else hits[n - 1]


def _after(types: list[str], kind: str, start: int) -> int:
    """1-based position of the first ``kind`` after position ``start``."""
    return next(i + 1 for i, t in enumerate(types) if i >= start and t == kind)


PHASES: dict[str, Callable[[list[str]], int]] = {
    "before the session is configured": lambda t: 1,
    "during user speech, turn 1": lambda t: _nth(t, "input_audio_buffer.speech_started"),
    "during user speech, turn 2": lambda t: _nth(t, "input_audio_buffer.speech_started", 2),
    "after commit, before the transcript": lambda t: _nth(t, "input_audio_buffer.committed"),
    "mid-response audio": lambda t: _nth(t, "response.audio.delta", middle=True),
    "reply finished, response not done": lambda t: _nth(t, "response.output_item.done"),
    "mid-tool-call arguments": lambda t: _nth(t, "response.function_call_arguments.delta"),
    "tool call complete, response not done": lambda t: _nth(
        t, "response.function_call_arguments.done"
    ),
    "while the tool result is pending": lambda t: _nth(t, "response.done", 2),
    "mid follow-up after the tool": lambda t: _nth(t, "response.audio_transcript.delta", 9),
    "turn 3, mid-response": lambda t: (
        _after(t, "response.audio.delta", _nth(t, "input_audio_buffer.speech_started", 3)) + 3
    ),
}


@pytest.mark.parametrize("close_code", [1011, None], ids=["close-frame", "tcp-cut"])
@pytest.mark.parametrize("phase", list(PHASES))
async def test_drop_at_phase_resumes_and_keeps_every_turn_once(
    tmp_path: Path, phase: str, close_code: int | None
) -> None:
    types = await reference_events(tmp_path)
    at = PHASES[phase](types)
    faults = Faults(drop_after_events=at, close_code=close_code, connections=(1,))
    out = await converse(tmp_path, turns=TURNS, faults=faults)
    assert out.live.metrics.reconnects >= 1, "the drop was not noticed"
    assert len(out.sessions) >= 2
    # the conversation went on after the drop: the last spoken turn was answered
    assistant, users = completed_by_emulator(out.sessions[1:])
    assert assistant, "no turn completed after reconnecting"
    assert_every_completed_turn_once(out, cut=1 if close_code is None else None)


SWEEP_STRIDE = 7


async def test_drop_sweep_over_the_whole_conversation(tmp_path: Path) -> None:
    """A drop after every 7th server event of the conversation, alternating close frame / cut."""
    types = await reference_events(tmp_path)
    survived = 0
    for n, at in enumerate(range(2, len(types), SWEEP_STRIDE)):
        code = 1011 if n % 2 else None
        faults = Faults(drop_after_events=at, close_code=code, connections=(1,))
        out = await converse(tmp_path / f"at{at}", turns=TURNS, faults=faults)
        assert out.live.metrics.reconnects >= 1, f"drop after event {at} ({types[at - 1]})"
        assert_every_completed_turn_once(out, cut=1 if code is None else None)
        survived += 1
    assert survived >= len(types) // SWEEP_STRIDE - 1


async def test_three_drops_in_a_row_of_turns_still_finish(tmp_path: Path) -> None:
    """Connections 1-3 each die mid-conversation; the fourth carries it to the end."""
    faults = Faults(drop_after_events=12, close_code=1011, connections=(1, 2, 3))
    out = await converse(tmp_path, turns=[300, 500, 700, 400, 600], faults=faults)
    assert out.live.metrics.reconnects == 3
    assistant, _ = completed_by_emulator(out.sessions[3:])
    assert assistant, "nothing completed on the connection that survived"
    assert_every_completed_turn_once(out)


async def test_connections_that_keep_dying_end_with_one_clear_error(tmp_path: Path) -> None:
    """Every connection dies before the session is configured: a ConnectError, not a hang."""
    from runner.errors import ConnectError

    faults = Faults(drop_after_events=1, close_code=1011)
    with pytest.raises(ConnectError, match="could not reconnect after 6 attempts"):
        await converse(tmp_path, turns=[300], faults=faults)


# ---------------------------------------------------------------------------------- bad events

BAD_FRAMES = {
    "not JSON": ("{this is not json", "not json"),
    "JSON but not an object": ("[1, 2, 3]", "[1, 2, 3]"),
    "unknown event type": (
        json.dumps({"type": "response.hologram.delta", "event_id": "e1"}),
        "response.hologram.delta",
    ),
    "no type": (json.dumps({"event_id": "evt_no_type", "delta": "x"}), "evt_no_type"),
    "known type, missing fields": (
        json.dumps({"type": "response.audio.delta", "event_id": "evt_missing"}),
        "evt_missing",
    ),
    "known type, wrong field types": (
        json.dumps({"type": "response.output_item.added", "response_id": 7, "item": "nope"}),
        "response.output_item.added",
    ),
    "huge unknown event": (json.dumps({"type": "x.big", "blob": "A" * 2_000_000}), "x.big"),
}


def inject_after_first(kind: str, frame: str) -> Callable[[str], list[str]]:
    done = False

    def inject(data: str) -> list[str]:
        nonlocal done
        if done or json.loads(data).get("type") != kind:
            return []
        done = True
        return [frame]

    return inject


@pytest.mark.parametrize(
    "what",
    [*BAD_FRAMES],
)
async def test_malformed_or_unknown_server_event_is_logged_and_skipped(
    tmp_path: Path, what: str
) -> None:
    """A bad event mid-response: logged, skipped; the reply goes on, nothing reconnects."""
    frame, mark = BAD_FRAMES[what]
    inject = inject_after_first("response.audio.delta", frame)
    out = await converse(tmp_path, turns=[300, 500], relay=inject)
    assert out.live.metrics.reconnects == 0, "a bad event must not cost the connection"
    assistant, users = completed_by_emulator(out.sessions)
    assert len(assistant) == 2 and len(users) == 2
    assert_every_completed_turn_once(out)
    kept = out.extra["technical"] + out.extra["trace"]
    assert mark in kept or "handler for" in out.extra["technical"], "the bad event left no trace"


# ---------------------------------------------------------------------------------- error events


async def test_server_error_event_mid_response_is_shown_and_the_reply_goes_on(
    tmp_path: Path,
) -> None:
    types = await reference_events(tmp_path)
    at = _nth(types, "response.audio.delta", middle=True)
    faults = Faults(error_after_events=at, error_code="server_error", error_message="hiccup 42")
    out = await converse(tmp_path, turns=TURNS, faults=faults)
    assert any("server_error" in e and "hiccup 42" in e for e in out.transcript.errors)
    assert "hiccup 42" in out.conversation_log  # the user can see it afterwards too
    assert out.live.metrics.reconnects == 0
    assistant, users = completed_by_emulator(out.sessions)
    assert len(assistant) == 4 and len(users) == 4
    assert_every_completed_turn_once(out)


async def test_error_answering_the_tool_follow_up_does_not_stall_the_conversation(
    tmp_path: Path,
) -> None:
    faults = Faults(error_on_client_event="response.create", error_message="busy, try later")
    out = await converse(tmp_path, turns=TURNS, faults=faults)
    assert any("busy, try later" in e for e in out.transcript.errors)
    assistant, users = completed_by_emulator(out.sessions)
    assert len(users) == 4 and len(assistant) == 4
    assert_every_completed_turn_once(out)


async def test_failed_response_is_reported_and_the_next_turn_is_answered(tmp_path: Path) -> None:
    script = {
        "turns": [{"turn": 1, "error": {"code": "server_error", "message": "model fell over"}}]
    }
    out = await converse(tmp_path, turns=[300, 500], script=script)
    assert any("model fell over" in e for e in out.transcript.errors)
    # a failed response closes the socket (reported; docs/emulator.md#failed-close), and the
    # runner reconnects and goes on
    assert out.sessions[0].close_code == 1011 and len(out.sessions) >= 2
    assert_every_completed_turn_once(out)


# ---------------------------------------------------------------------------------- tool faults


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"backend down: {reason}")


@tool
async def hang(city: str) -> str:
    """Never answers."""
    await asyncio.Event().wait()
    return city


TOOL_SCRIPT: dict[str, Any] = {
    "turns": [
        {
            "turn": 1,
            "tools": [
                {"name": "explode", "arguments": {"reason": "disk"}},
                {"name": "hang", "arguments": {"city": "Rome"}},
                {"name": "lookup", "arguments": '{"city": "Par'},
                {"name": "lookup", "arguments": {"city": 5}},
                {"name": "nosuch", "arguments": {}},
                {"name": "lookup", "arguments": {"city": "Oslo"}},
            ],
            "then": "Got {outputs.5.temp} degrees.",
        }
    ]
}


async def test_tool_failures_reach_the_model_as_error_results(tmp_path: Path) -> None:
    registry = Registry.of(lookup, explode, hang)
    timeouts = {"explode": 2.0, "hang": 0.2, "lookup": 2.0}
    out = await converse(
        tmp_path, turns=[300, 500], script=TOOL_SCRIPT, registry=registry, tool_timeouts=timeouts
    )
    sent = [
        e["item"]
        for r in out.sessions
        for e in r.received
        if e.get("type") == "conversation.item.create"
        and e["item"].get("type") == "function_call_output"
    ]
    assert len(sent) == 6, "every call gets exactly one result"
    results = [json.loads(item["output"]) for item in sent]
    kinds = [r.get("error", {}).get("type") for r in results]
    assert kinds == [
        "tool_error",
        "timeout",
        "invalid_arguments",
        "invalid_arguments",
        "unknown_tool",
        None,
    ]
    assert "backend down: disk" in results[0]["error"]["message"]
    assert results[5] == {"city": "Oslo", "temp": 7}
    # the model was asked to go on with the results, and answered
    assistant, _ = completed_by_emulator(out.sessions)
    assert "Got 7 degrees." in assistant.values()
    assert out.live.metrics.reconnects == 0
    assert "Traceback" not in out.conversation_log + out.stderr
    assert_every_completed_turn_once(out)


# ---------------------------------------------------------------------------------- long haul


async def test_more_drops_than_max_reconnects_spread_over_a_conversation(tmp_path: Path) -> None:
    faults = Faults(drop_after_events=9, close_code=1011, connections=tuple(range(1, 8)))
    out = await converse(
        tmp_path, turns=[300, 500, 700, 400, 600, 300, 500, 700, 400], faults=faults
    )
    assert out.live.metrics.reconnects == 7
    assert_every_completed_turn_once(out)


# ---------------------------------------------------------------------------------- typed turns


async def test_turn_typed_right_after_the_greeting_is_answered(tmp_path: Path) -> None:
    err = io.StringIO()
    transcript = WatchedTranscript(logs_dir=tmp_path / "logs", out=io.StringIO(), err=err)
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        live = LiveSession(
            target=Target(emu.endpoint, "test", KEY, "test", "gpt-realtime"),
            endpoint=emu.endpoint,
            credential=AzureKeyCredential(KEY),
            session_update=SESSION_UPDATE,
            transcript=transcript,
            player=ClockPlayer(FMT, realtime=False),
            lines=False,
            greeting={"type": "response.create"},
            backoff_s=0.01,
        )
        task = asyncio.create_task(live.run())
        try:
            await asyncio.wait_for(live.ready.wait(), WAIT_S)
            await live.send_text("Please say something about Paris")
            await transcript.wait_moved(lambda: transcript.assistant_count() >= 2, timeout=3)
        finally:
            live.stop()
            await asyncio.wait_for(task, WAIT_S)
    transcript.close()
    roles = [t.role for t in transcript.turns]
    assert not [e for e in transcript.errors if "already_has_active_response" in e]
    assert roles.count("assistant") == 2 and roles.index("user") < len(roles) - 1
