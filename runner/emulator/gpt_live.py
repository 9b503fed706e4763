"""The emulator's GPT-Live endpoint: a full-duplex stand-in that says it is an emulator.

The wire is docs/gpt-live.md (GPT-Live's own protocol on ``/openai/v1/live``: ``session.start``,
``session.input_audio.append``, ``session.output_audio.delta``, timed transcript fragments,
delegation, no turns); the emulator's own rules are the ``gl-*`` rows of docs/emulator.md. Nothing
here is a model: replies come from the model script (runner/emulator/model.py), every spoken
output starts with ``[emulator]``, and an ``info`` event says so after ``session.started``.

Timing. The session timeline is the caller's audio: each appended chunk moves it on, and the
emulator's rules (backchannels, end of turn, yielding) read it there, inside the handler of that
append, so they are deterministic. A reply is released on the same clock, 100 ms of reply per
100 ms of the caller's stream (a GPT-Live client streams audio all the time, silence included, as
a phone line does). When the caller's stream is idle (text turns, or before any audio), a reply
goes out at ``speed`` x real time on the wall clock instead.

:class:`LiveDesk` is the HTTP side (the handshake, its refusals) and keeps its sessions' sockets
and tasks so the emulator can close them; :class:`LiveSession` is one session.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from runner import speedups
from runner.aio import cancel_and_wait
from runner.config.gpt_live import MODELS as GPT_LIVE_MODELS
from runner.config.voices import GPT_LIVE_VOICES
from runner.emulator import protocol as P
from runner.emulator.fidelity import Fidelity
from runner.emulator.model import Plan, Script, ScriptedModel, spoken
from runner.emulator.outbox import CLOSE_TIMEOUT_S, HEARTBEAT_S, Outbox, Tasks
from runner.emulator.record import SessionRecord
from runner.emulator.speech import g711_decode, g711_encode, speak
from runner.emulator.vad import EnergyVad

log = logging.getLogger(__name__)

__all__ = ["PATHS", "LiveDesk", "LiveSession", "voice_live_refusal"]

#: docs/gpt-live.md "Connection": FHOW/FREF's path, and FREF's other copies' and OpenAI's
PATHS = ("/openai/v1/live", "/openai/v1/live/sessions")
# the models and built-in voices as vlrun check knows them (one list: docs/gpt-live.md's
# "Supported models" and openai-python types/live/built_in_voice.py)
MODELS, VOICES = GPT_LIVE_MODELS, GPT_LIVE_VOICES
SESSION_FIELDS = ("model", "instructions", "input", "audio", "delegation", "store")
RESPONSES_FIELDS = (
    "model",
    "instructions",
    "max_output_tokens",
    "parallel_tool_calls",
    "reasoning",
    "service_tier",
    "text",
    "tool_choice",
    "tools",
)
CLIENT_EVENTS = (
    "session.start",
    "session.update",
    "session.input_audio.append",
    "session.input_audio.mute",
    "session.input_audio.unmute",
    "session.instructions.append",
    "session.thinking.append",
    "session.commentary.append",
    "response.item.create",
    "response.create",
    "session.close",
)
CHUNK_MS = 100
APPEND_MAX_CHARS = 2000  # 500 tokens at 4 characters a token (docs/gpt-live.md)
INSTRUCTIONS_MAX_CHARS = 16384 * 4
INPUT_MAX_MESSAGES, INPUT_MAX_CHARS = 128, 8192 * 4
# the emulator's full-duplex rules, docs/emulator.md#gl-backchannel .. #gl-yield
BACKCHANNEL_EVERY_MS = 2000
BACKCHANNEL_MS = 400
# a reply starts this long after a backchannel's end at the earliest: vlrun tells utterances
# apart by a 500 ms gap (docs/gpt-live.md "Full duplex"), so a reply any closer would be heard
# as the backchannel going on
BACKCHANNEL_GAP_MS = 500
TURN_END_SILENCE_MS = 600
YIELD_VOICED_MS = 600
USAGE_EVERY_MS = 60_000
IDLE_S = 1.0  # no caller audio for this long (wall): a reply goes on at --speed
TICK_S = 0.02
DELEGATION_TIMEOUT_S = 30.0
MAX_WAITING = 16  # replies scheduled, or typed turns held, at once (a bound, not a documented one)
# delegations a session remembers: past it the oldest answered ones are forgotten (their ids are
# then unknown, refused as any unknown id is); one still waiting is never forgotten
MAX_DELEGATIONS = 64
FILLER = "[emulator] One moment."
BACKCHANNEL = "[emulator] mm-hmm"
#: docs/gpt-live.md "Greeting, translation": the one sentence vlrun writes for translation
TRANSLATION = re.compile(
    r"Translate everything the caller says from (?P<source>.+?) into (?P<target>.+?), "
    r"and speak only the translation\."
)


def voice_live_refusal(model: str | None) -> str | None:
    """Why the Voice Live realtime path refuses this model (None: it does not).

    source: docs/emulator.md#gl-path (no source documents GPT-Live on /voice-live/realtime; the
    stricter reading refuses it and names GPT-Live's own endpoint)."""
    if model and model.lower().startswith("gpt-live"):
        return (
            f"Model '{model}' is a GPT-Live model: connect to /openai/v1/live and send "
            "session.start (docs/gpt-live.md); /voice-live/realtime does not serve it."
        )
    return None


# --- the HTTP side --------------------------------------------------------------------------------


class LiveDesk:
    """GPT-Live's endpoint on the emulator: the handshake, and the sessions it started."""

    def __init__(
        self,
        sessions: list[SessionRecord],
        notify: Callable[[], None],
        fidelity: Fidelity,
        *,
        script: Script | None,
        speed: float,
        api_key: str | None,
        session_limit_s: float,
        use_espeak: bool,
        record_audio: bool = True,
        delegation_timeout_s: float = DELEGATION_TIMEOUT_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.sessions, self.notify, self.fidelity = sessions, notify, fidelity
        self.heartbeat_s = heartbeat_s
        self.script, self.speed, self.api_key = script, speed, api_key
        self.session_limit_s, self.use_espeak = session_limit_s, use_espeak
        self.record_audio = record_audio  # False: appends are counted, audio is not kept
        self.delegation_timeout_s = delegation_timeout_s
        self._open: dict[web.WebSocketResponse, asyncio.Task[None]] = {}

    def add_routes(self, app: web.Application) -> None:
        for path in PATHS:
            app.router.add_route("*", path, self.handle)

    async def close(self) -> None:
        """Close every GPT-Live socket (1001) and end its session."""
        for ws in list(self._open):
            await ws.close(code=1001, message=b"emulator stopping")
        tasks = list(self._open.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=1.0)
            stuck = await cancel_and_wait(late, timeout=CLOSE_TIMEOUT_S)
            if stuck:  # left, and said: the emulator's stop is not held for ever
                log.warning("%d GPT-Live session(s) did not end when cancelled", len(stuck))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # source: docs/emulator.md#gl-connect (docs/gpt-live.md "Connection")
        if request.query:
            if "model" in request.query:
                return _http_error(
                    400,
                    "GPT-Live takes no 'model' query parameter: send the model in "
                    "session.start's session object.",
                )
            self.fidelity.note("gl-query")
            return _http_error(400, "GPT-Live takes no query parameters.")
        if not self._authorised(request):
            return _http_error(401, "Access denied due to invalid subscription key or token.")
        # pinged: a client that vanished without a close ends its session (not the session
        # limit, an hour later)
        ws = web.WebSocketResponse(
            max_msg_size=32 * 1024 * 1024, autoping=True, heartbeat=self.heartbeat_s
        )
        if not ws.can_prepare(request).ok:
            return _http_error(426, "This endpoint only accepts WebSocket connections.")
        await ws.prepare(request)
        record = SessionRecord(
            number=len(self.sessions) + 1, query={}, headers=_masked(request.headers)
        )
        self.sessions.append(record)
        session = LiveSession(ws, record, self, abort=lambda: _abort(request))
        task = asyncio.get_running_loop().create_task(session.run())
        self._open[ws] = task
        try:
            await task
        finally:
            self._open.pop(ws, None)
            self.notify()
        return ws

    def _authorised(self, request: web.Request) -> bool:
        # headers only: GPT-Live takes no query parameters at all (docs/gpt-live.md)
        if self.api_key is None:
            return True
        given = request.headers.get("api-key")
        bearer = request.headers.get("Authorization") or ""
        if bearer.lower().startswith("bearer "):
            given = given or bearer[7:].strip()
        return given == self.api_key


def _http_error(status: int, message: str) -> web.Response:
    body = {"error": {"type": "invalid_request_error", "code": str(status), "message": message}}
    return web.json_response(body, status=status)


def _masked(headers: Mapping[str, str]) -> dict[str, str]:
    secret = ("api-key", "authorization")
    return {k: ("***" if k.lower() in secret else v) for k, v in headers.items()}


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


# --- one session ----------------------------------------------------------------------------------


class LiveError(Exception):
    """A refused command: one GPT-Live ``error`` event."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass
class Reply:
    """One spoken output: its audio in chunks, and its words spread over them."""

    text: str
    chunks: list[bytes]
    start_ms: int
    words: list[str]
    sent: int = 0  # chunks sent
    said: int = 0  # words sent
    stopped: bool = False  # the emulator yielded

    @property
    def end_ms(self) -> int:
        return self.start_ms + len(self.chunks) * CHUNK_MS


@dataclass
class Delegation:
    id: str
    target: str  # client | responses
    response_id: str | None = None
    calls: dict[str, str] = field(default_factory=dict)  # call_id -> tool name, not answered
    outputs: list[dict[str, Any]] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def settled(self) -> bool:
        """Nothing more is waited for: a client delegation answered (or timed out), a Responses
        one with no function call and no output left to run."""
        if self.target == "client":
            return self.answered.is_set()
        return not self.calls and not self.outputs


class LiveSession:
    """One GPT-Live session on one socket: the reader loop and the full-duplex rules."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        record: SessionRecord,
        desk: LiveDesk,
        *,
        abort: Callable[[], None],
    ) -> None:
        self._ws, self._record, self._desk = ws, record, desk
        self.outbox = Outbox(
            ws,
            record,
            faults=None,
            record_audio=desk.record_audio,
            fidelity=desk.fidelity,
            abort=abort,
        )
        self._tasks = Tasks()
        self._model = ScriptedModel(desk.script)
        self._speed = desk.speed
        self.session: dict[str, Any] | None = None  # the public session resource once started
        self._closing = False
        self._muted = False
        self._rate, self._law = 24000, ""
        self._vad: EnergyVad | None = None
        self.clock_ms = 0  # the session timeline: the caller's audio so far
        self._last_audio = -math.inf  # monotonic time of the last append
        self._turns = 0
        self._backchannels = 0  # backchannels said in the current caller utterance
        self._cue_end_ms = -math.inf  # where the last backchannel's audio ends on the timeline
        self._utterance_during_reply = False
        self._yielded = False  # the caller's current utterance stopped a reply
        self._offset_ms = 0  # timeline the wall clock added while the caller's stream was idle
        self._replies: list[Reply] = []  # scheduled on the timeline, the current one first
        self._wake = asyncio.Event()  # a reply was scheduled: the idle ticker looks again
        self._sending = asyncio.Lock()  # the reader and the idle ticker both release chunks
        self._typed: list[str] = []  # typed caller turns waiting for response.create
        self._delegations: dict[str, Delegation] = {}
        self._next_usage_ms = USAGE_EVERY_MS
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "session.update": self._update,
            "session.input_audio.append": self._append,
            "session.input_audio.mute": self._mute,
            "session.input_audio.unmute": self._mute,
            "session.instructions.append": self._context,
            "session.thinking.append": self._context,
            "session.commentary.append": self._context,
            "response.item.create": self._item_create,
            "response.create": self._response_create,
            "session.close": self._close,
        }

    # --- the reader loop --------------------------------------------------------------------------

    async def run(self) -> None:
        self._tasks.spawn(self._ticker())
        self._tasks.spawn(self._expire())
        try:
            async for msg in self._ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self._error(
                        LiveError("invalid_value", "Binary frames are not supported."), None
                    )
                else:
                    break
        finally:
            await self._tasks.close()
            self._record.closed = True
            if self._record.close_code is None:
                self._record.close_code = self._ws.close_code

    async def _on_text(self, data: str) -> None:
        try:
            event = speedups.loads(data)
        except ValueError as exc:
            await self._error(LiveError("invalid_json", f"The event is not valid JSON: {exc}."))
            return
        if not isinstance(event, dict):
            await self._error(LiveError("invalid_json", "The event must be a JSON object."))
            return
        kind = event.get("type")
        if kind == "session.input_audio.append" and not self._desk.record_audio:
            # long runs: one kept dict per chunk would grow without bound (as on Voice Live)
            self._record.stats["appends"] = self._record.stats.get("appends", 0) + 1
        else:
            self._record.received.append(event)
            self._desk.notify()
        try:
            await self._dispatch(kind, event)
        except LiveError as err:
            await self._error(err, event)
        except Exception as exc:  # noqa: BLE001 - a client frame must never kill the session
            log.exception("GPT-Live emulator failed on %s", kind)
            await self._error(LiveError("server_error", f"[emulator] {exc!r}"), event)

    async def _dispatch(self, kind: Any, event: dict[str, Any]) -> None:
        if kind == "session.start":
            await self._start(event)
            return
        handler = self._handlers.get(str(kind))
        if handler is None:
            # source: docs/emulator.md#gl-refused: a Voice Live event is not GPT-Live's
            raise LiveError(
                "invalid_value",
                f"Invalid value: {kind!r}. Supported values are: "
                + ", ".join(f"'{t}'" for t in CLIENT_EVENTS)
                + ".",
                "type",
            )
        if self.session is None:
            raise LiveError(
                "session_not_started",
                f"'{kind}' was sent before session.started; send session.start first.",
                "type",
            )
        if self._closing:
            raise LiveError("session_closing", "The session is closing; no new commands.")
        await handler(event)

    async def _error(self, err: LiveError, event: dict[str, Any] | None = None) -> None:
        # source: docs/emulator.md#gl-errors (FREF "one error envelope"; OSDK Error)
        body: dict[str, Any] = {
            "type": "server_error" if err.code == "server_error" else "invalid_request_error",
            "code": err.code,
            "message": err.message,
        }
        if err.param is not None:
            body["param"] = err.param
        if isinstance(event, dict) and event.get("event_id") is not None:
            body["client_event_id"] = event["event_id"]
        await self.outbox.send({"type": "error", "error": body})

    # --- startup ----------------------------------------------------------------------------------

    async def _start(self, event: dict[str, Any]) -> None:
        if self.session is not None:
            raise LiveError("session_already_started", "The session has already started.")
        raw = event.get("session")
        if not isinstance(raw, dict):
            raise LiveError(
                "missing_required_parameter", "Missing required parameter: 'session'.", "session"
            )
        # source: docs/emulator.md#gl-session (FREF: "a strict configuration object")
        check_session(raw, self.outbox.note)
        fmt = (raw.get("audio") or {}).get("format") or {"type": "audio/pcm", "rate": 24000}
        self._rate = 8000 if fmt["type"] != "audio/pcm" else int(fmt.get("rate", 24000))
        self._law = {"audio/pcmu": "ulaw", "audio/pcma": "alaw"}.get(fmt["type"], "")
        self._vad = EnergyVad(
            self._rate, prefix_padding_ms=0, silence_duration_ms=TURN_END_SILENCE_MS
        )
        sid = P.new_id("sess")
        self._record.id = sid
        self.session = {
            "id": sid,
            "expires_at": int(time.time() + self._desk.session_limit_s),
            "model": raw["model"],
            "instructions": raw.get("instructions")
            or "[emulator] GPT-Live stand-in: replies are scripted, not generated by a model.",
            "audio": {
                "output": {
                    "voice": (raw.get("audio") or {}).get("output", {}).get("voice", "marin")
                }
            },
            "delegation": raw.get("delegation") or {"type": "client"},
        }
        if "format" in (raw.get("audio") or {}):
            self.session["audio"]["format"] = fmt
        await self.outbox.send({"type": "session.started", "session": dict(self.session)})
        # source: docs/emulator.md#gl-identity: it says what it is, in a documented event
        await self.outbox.send(
            {
                "type": "info",
                "code": "emulator",
                "message": "vlrun GPT-Live EMULATOR (not Azure, not a model): replies are "
                "scripted, backchannels and yields follow stated rules (docs/emulator.md).",
            }
        )
        self.outbox.note("gl-full-duplex")
        translation = TRANSLATION.search(self.session["instructions"])
        if translation is not None:
            self.outbox.note("gl-translation")

    # --- audio in: the session clock and the full-duplex rules ------------------------------------

    async def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str) or not audio:
            raise LiveError(
                "invalid_audio", "session.input_audio.append needs non-empty audio.", "audio"
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise LiveError("invalid_audio", "The audio is not valid base64.", "audio") from None
        if not data:
            raise LiveError("invalid_audio", "The audio is empty.", "audio")
        if self._law:
            samples = g711_decode(data, self._law)
        else:
            if len(data) % 2:
                # source: docs/emulator.md#gl-audio (FREF's own error example)
                raise LiveError(
                    "invalid_audio", "PCM16 audio must contain an even number of bytes", "audio"
                )
            samples = np.frombuffer(data, dtype=np.int16)
        self._last_audio = time.monotonic()
        assert self._vad is not None
        before = self._vad.position_ms
        events = [] if self._muted else self._vad.feed(samples)
        if self._muted:
            self._vad.windows_seen += samples.size * 100 // self._rate  # time passes, unheard
        self.clock_ms = self._vad.position_ms + self._offset_ms
        for vad_event in events:
            if vad_event.kind == "started":
                self._utterance_started()
            else:
                await self._utterance_ended(vad_event.ms)
        self.clock_ms = self._vad.position_ms + self._offset_ms
        if self._vad.in_speech and not self._muted:
            await self._during_speech()
        await self._release()
        if self.clock_ms >= self._next_usage_ms > before:
            self._next_usage_ms += USAGE_EVERY_MS
            await self.outbox.send(
                {
                    "type": "session.usage.updated",
                    "usage": {"seconds": self.clock_ms // 1000},
                    "context_window": {"usage_ratio": round(min(1.0, self.clock_ms / 3.6e6), 3)},
                }
            )

    def _speaking(self) -> Reply | None:
        """The reply the timeline is in now (it has begun and has not ended or stopped)."""
        reply = self._replies[0] if self._replies else None
        if reply is None or reply.stopped or reply.start_ms > self.clock_ms:
            return None
        return reply

    def _utterance_started(self) -> None:
        self._backchannels = 0
        self._yielded = False
        self._utterance_during_reply = self._speaking() is not None

    async def _during_speech(self) -> None:
        assert self._vad is not None
        reply = self._speaking()
        if reply is not None:
            if self._vad.voiced_ms >= YIELD_VOICED_MS:
                # source: docs/emulator.md#gl-yield: 600 ms of the caller's voice stops it,
                # and what was still to say after it is dropped
                reply.stopped = True
                self._yielded = True
                self._replies.clear()
            return
        if self._utterance_during_reply or self._replies:
            # a burst that began during a reply is not backchanneled, nor is speech while a
            # reply waits to begin (the cue would run into it)
            return
        if self._vad.quiet_ms:
            # the caller is not voiced now: this may be the silence that ends the turn, and a
            # cue in it would come after the caller stopped, just before the reply
            return
        spoken_ms = self._vad.position_ms - self._vad.onset_ms  # up to the latest voiced audio
        due = spoken_ms // BACKCHANNEL_EVERY_MS
        if due > self._backchannels:
            # source: docs/emulator.md#gl-backchannel: once per 2 s of continuous speech
            self._backchannels = due
            await self._backchannel()

    async def _utterance_ended(self, end_ms: int) -> None:
        # source: docs/emulator.md#gl-turn-end: 600 ms of the caller's silence ends a turn
        assert self._vad is not None
        # on the session timeline: the caller's audio plus any idle time the wall clock added
        onset = self._vad.onset_ms + self._offset_ms
        voiced = self._vad.voiced_ms
        speech_end = max(onset, end_ms + self._offset_ms - TURN_END_SILENCE_MS)
        seconds = max(0, speech_end - onset) / 1000
        short = voiced < YIELD_VOICED_MS
        if self._utterance_during_reply and short and not self._yielded:
            # source: docs/emulator.md#gl-yield: the caller's own backchannel: no turn, no reply
            await self._input_transcript(f"[emulator] ({seconds:.1f} s)", onset, speech_end)
            return
        self._turns += 1
        said = self._model.audio_transcript(self._turns)
        text = said if said is not None else None
        heard = said if said is not None else f"[emulator] {seconds:.1f} seconds of audio"
        # source: docs/emulator.md#gl-transcript
        await self._input_transcript(heard, onset, speech_end)
        await self._answer(text, int(seconds * 1000))

    async def _input_transcript(self, text: str, start: int, end: int) -> None:
        words = text.split()
        groups = [words[i : i + 3] for i in range(0, len(words), 3)] or [[""]]
        span = max(1, end - start)
        for i, group in enumerate(groups):
            a = start + span * i // len(groups)
            b = start + span * (i + 1) // len(groups)
            delta = " ".join(group) if i == 0 else " " + " ".join(group)
            await self.outbox.send(
                {
                    "type": "session.input_transcript.delta",
                    "delta": delta,
                    "start_ms": a,
                    "end_ms": b,
                }
            )

    async def _mute(self, event: dict[str, Any]) -> None:
        self._muted = event["type"].endswith(".mute")
        kind = "muted" if self._muted else "unmuted"
        await self.outbox.send({"type": f"session.input_audio.{kind}", **_correlated(event)})

    # --- what the emulator says -------------------------------------------------------------------

    async def _answer(self, text: str | None, audio_ms: int | None) -> None:
        """Reply to a caller turn: translation, delegation, or the script's reply."""
        assert self.session is not None
        translation = TRANSLATION.search(self.session["instructions"])
        if translation is not None:
            heard = text or f"{(audio_ms or 0) / 1000:.1f} seconds of audio"
            target = translation.group("target")
            # source: docs/emulator.md#gl-translation: stated, never performed
            await self._say(f"[emulator] (translation into {target} not performed) {heard}")
            return
        plan = self._model.plan_turn(self._turns, text, audio_ms, self._tool_view())
        kind = self.session["delegation"]["type"]
        wants = bool(plan.calls) or plan.search is not None
        if kind == "client" and (wants or "?" in (text or "")):
            await self._delegate_client(plan)
            return
        if kind == "responses" and wants:
            await self._delegate_responses(plan)
            return
        await self._say(self._text_of(plan, text))

    def _text_of(self, plan: Plan, heard: str | None = None) -> str:
        """What a plan says, always marked; a rule that only gave a transcript says what the
        built-in reply would."""
        text = plan.say or (f"You said: {heard}" if heard else "I heard you.")
        return text if text.startswith("[emulator") else f"[emulator] {text}"

    def _tool_view(self) -> dict[str, Any]:
        """The delegated backend's tools as the script model reads a session's."""
        assert self.session is not None
        delegation = self.session["delegation"]
        backend = delegation.get("responses") or {} if delegation["type"] == "responses" else {}
        return {
            "tools": list(backend.get("tools") or []),
            "tool_choice": backend.get("tool_choice", "auto"),
            "parallel_tool_calls": backend.get("parallel_tool_calls", True),
        }

    async def _say(self, text: str) -> None:
        """Schedule a reply on the timeline, after what is already to be said, and send what
        of it is due now."""
        pcm = (await speak(text, self._rate, use_espeak=self._desk.use_espeak)).pcm
        if self._law:
            pcm = g711_encode(pcm, self._law)
        size = self._rate * CHUNK_MS // 1000 * (1 if self._law else 2)
        chunks = [pcm[i : i + size] for i in range(0, len(pcm), size)] or [b""]
        after = self._replies[-1].end_ms if self._replies else 0
        # source: docs/emulator.md#gl-backchannel: never while a backchannel's audio plays, and
        # apart from it (BACKCHANNEL_GAP_MS)
        cue = self._cue_end_ms + BACKCHANNEL_GAP_MS
        start = int(max(self.clock_ms, after, cue))
        self._replies.append(Reply(text, chunks, start, text.split()))
        self._wake.set()
        await self._release()

    async def _release(self) -> None:
        """Send every scheduled chunk whose start the timeline has reached."""
        async with self._sending:
            await self._release_due()

    async def _release_due(self) -> None:
        while self._replies:
            reply = self._replies[0]
            while not reply.stopped and reply.sent < len(reply.chunks):
                if reply.start_ms + reply.sent * CHUNK_MS > self.clock_ms:
                    return
                await self._chunk(reply)
            if self._replies and self._replies[0] is reply:
                self._replies.pop(0)

    async def _ticker(self) -> None:
        """While the caller's stream is idle, the wall clock moves the timeline (at --speed)."""
        while True:
            await self._wake.wait()
            if not self._replies:
                self._wake.clear()
                continue
            if time.monotonic() - self._last_audio < IDLE_S:
                await asyncio.sleep(IDLE_S / 10)
                continue
            if self._speed <= 0:
                step = self._replies[-1].end_ms - self.clock_ms  # as fast as possible
            else:
                step = int(TICK_S * 1000 * self._speed)
            if step > 0:
                self._offset_ms += step
                self.clock_ms += step
            await self._release()
            await asyncio.sleep(TICK_S if self._speed > 0 else 0)

    async def _chunk(self, reply: Reply) -> None:
        k = reply.sent
        start = reply.start_ms + k * CHUNK_MS
        due = math.ceil((k + 1) * len(reply.words) / len(reply.chunks))
        if due > reply.said:
            words = reply.words[reply.said : due]
            groups = [words[i : i + 3] for i in range(0, len(words), 3)]
            for group in groups:
                delta = " ".join(group) if reply.said == 0 else " " + " ".join(group)
                reply.said += len(group)
                await self.outbox.send(
                    {
                        "type": "session.output_transcript.delta",
                        "delta": delta,
                        "start_ms": start,
                        "end_ms": start + CHUNK_MS,
                    }
                )
        await self.outbox.send(
            {
                "type": "session.output_audio.delta",
                "delta": base64.b64encode(reply.chunks[k]).decode("ascii"),
                "start_ms": start,
                "end_ms": start + CHUNK_MS,
            }
        )
        reply.sent += 1

    async def _backchannel(self) -> None:
        """A listening cue over the caller's speech, sent at once (it overlaps the caller)."""
        pcm = (await speak("mm-hmm", self._rate, use_espeak=self._desk.use_espeak)).pcm
        size = self._rate * 2 * CHUNK_MS // 1000
        pcm = pcm[: size * (BACKCHANNEL_MS // CHUNK_MS)]
        if self._law:
            pcm = g711_encode(pcm, self._law)
            size //= 2
        start = self.clock_ms
        self._cue_end_ms = start + BACKCHANNEL_MS
        await self.outbox.send(
            {
                "type": "session.output_transcript.delta",
                "delta": BACKCHANNEL,
                "start_ms": start,
                "end_ms": start + BACKCHANNEL_MS,
            }
        )
        for k in range(0, max(1, len(pcm)), size):
            await self.outbox.send(
                {
                    "type": "session.output_audio.delta",
                    "delta": base64.b64encode(pcm[k : k + size]).decode("ascii"),
                    "start_ms": start + k // size * CHUNK_MS,
                    "end_ms": start + (k // size + 1) * CHUNK_MS,
                }
            )

    # --- context appends, greeting, client delegation ---------------------------------------------

    async def _context(self, event: dict[str, Any]) -> None:
        # source: docs/emulator.md#gl-append (FREF: plain-string content of up to 500 tokens and
        # a required delegation_id, null for session context)
        content = event.get("content")
        if not isinstance(content, str) or not content:
            raise LiveError(
                "missing_required_parameter", "Missing required parameter: 'content'.", "content"
            )
        if len(content) > APPEND_MAX_CHARS:
            raise LiveError("invalid_value", "content is over 500 tokens.", "content")
        if "delegation_id" not in event:
            raise LiveError(
                "missing_required_parameter",
                "Missing required parameter: 'delegation_id' (null for session context).",
                "delegation_id",
            )
        did = event["delegation_id"]
        delegation = None
        if did is not None:
            delegation = self._delegations.get(str(did))
            if delegation is None or delegation.target != "client":
                raise LiveError(
                    "invalid_value", f"No client delegation with id {did!r}.", "delegation_id"
                )
        kind = event["type"].split(".")[1]
        assert self.session is not None
        if kind == "instructions" and (
            len(self.session["instructions"]) + 1 + len(content) > INSTRUCTIONS_MAX_CHARS
        ):
            # appends add up: without this bound a client could grow them without end
            raise LiveError(
                "invalid_value",
                "The instructions would be over 16384 tokens with this append.",
                "content",
            )
        if kind == "commentary" and len(self._replies) >= MAX_WAITING:
            raise LiveError(
                "invalid_request", "Too much is still to be said; append after it is spoken."
            )
        await self.outbox.send(
            {
                "type": f"session.{kind}.appended",
                **_correlated(event),
                "start_ms": self.clock_ms,
                "end_ms": self.clock_ms,
            }
        )
        if kind == "instructions":
            self.session["instructions"] += "\n" + content
        elif kind == "commentary":
            # a greeting (null) or a delegation's result: said aloud, verbatim after [emulator]
            if delegation is not None:
                delegation.answered.set()
            await self._say(content if content.startswith("[emulator") else f"[emulator] {content}")
        elif delegation is not None:
            delegation.answered.set()  # quiet context: taken, never said

    async def _delegate_client(self, plan: Plan) -> None:
        # source: docs/emulator.md#gl-delegation (FDEL "Handle client delegation")
        delegation = Delegation(P.new_id("item_delegation"), "client")
        self._remember(delegation)
        await self._say(FILLER)
        await self.outbox.send(
            {
                "type": "session.delegation.created",
                "offset_ms": self.clock_ms,
                "delegation": {"id": delegation.id, "type": "delegation", "target": "client"},
            }
        )
        self._tasks.spawn(self._await_client(delegation))

    def _remember(self, delegation: Delegation) -> None:
        """Keep ``delegation``, forgetting the oldest settled ones past MAX_DELEGATIONS (a long
        call delegates again and again; each answered one was kept for the whole session)."""
        self._delegations[delegation.id] = delegation
        over = len(self._delegations) - MAX_DELEGATIONS
        if over > 0:
            old = [d for d in self._delegations.values() if d is not delegation and d.settled]
            for forgotten in old[:over]:
                del self._delegations[forgotten.id]

    async def _await_client(self, delegation: Delegation) -> None:
        try:
            await asyncio.wait_for(delegation.answered.wait(), self._desk.delegation_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            delegation.answered.set()  # settled: said to have failed, nothing more to wait for
            self.outbox.note("gl-delegation-timeout")
            await self._say("[emulator] The backend did not answer.")

    # --- Responses delegation ---------------------------------------------------------------------

    def _backend(self) -> dict[str, Any]:
        assert self.session is not None
        return dict(self.session["delegation"].get("responses") or {})

    async def _envelope(self, delegation: Delegation, event: dict[str, Any]) -> None:
        await self.outbox.send(
            {"type": "response.event", "delegation_id": delegation.id, "event": event}
        )

    async def _response_created(self, delegation: Delegation, response_id: str) -> None:
        """The backend's Responses call begins (its ``response.created``, in the envelope)."""
        await self._envelope(delegation, self._response_event(response_id, "in_progress"))

    async def _response_completed(
        self, delegation: Delegation, response_id: str, output: list[dict[str, Any]]
    ) -> None:
        """The backend's Responses call ends with ``output`` (``response.completed``)."""
        await self._envelope(delegation, self._response_event(response_id, "completed", output))

    def _response_event(
        self, response_id: str, status: str, output: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        response = {
            "id": response_id,
            "object": "response",
            "status": status,
            "model": self._backend().get("model", ""),
            **({"output": output} if output is not None else {}),
        }
        kind = "response.created" if status == "in_progress" else "response.completed"
        return {"type": kind, "response": response}

    async def _delegate_responses(self, plan: Plan, *, filler: bool = True) -> None:
        # source: docs/emulator.md#gl-delegation (FDEL "Handle Responses delegation")
        response_id = P.new_id("resp")
        delegation = Delegation(P.new_id("item_delegation"), "responses", response_id)
        self._remember(delegation)
        if filler:
            await self._say(FILLER)
        await self.outbox.send(
            {
                "type": "session.delegation.created",
                "offset_ms": self.clock_ms,
                "delegation": {
                    "id": delegation.id,
                    "type": "delegation",
                    "target": "responses",
                    "response_id": response_id,
                },
            }
        )
        await self._response_created(delegation, response_id)
        output: list[dict[str, Any]] = []
        if plan.search is not None:
            text = await self._backend_search(delegation, dict(plan.search), output)
            await self._backend_text(delegation, response_id, text, output)
            return
        if not plan.calls:
            await self._backend_text(delegation, response_id, self._text_of(plan), output)
            return
        for call in plan.calls:
            index = len(output)
            call_id = P.new_id("call")
            item = {
                "type": "function_call",
                "id": P.new_id("fc"),
                "call_id": call_id,
                "name": call.name,
                "arguments": "",
                "status": "in_progress",
            }
            await self._envelope(
                delegation,
                {"type": "response.output_item.added", "output_index": index, "item": dict(item)},
            )
            base = {"item_id": item["id"], "output_index": index}
            await self._envelope(
                delegation,
                {"type": "response.function_call_arguments.delta", **base, "delta": call.arguments},
            )
            await self._envelope(
                delegation,
                {
                    "type": "response.function_call_arguments.done",
                    **base,
                    "arguments": call.arguments,
                    "name": call.name,
                },
            )
            item.update(arguments=call.arguments, status="completed")
            await self._envelope(
                delegation,
                {"type": "response.output_item.done", "output_index": index, "item": dict(item)},
            )
            output.append(item)
            delegation.calls[call_id] = call.name
        await self._response_completed(delegation, response_id, output)

    async def _backend_search(
        self, delegation: Delegation, search: dict[str, Any], output: list[dict[str, Any]]
    ) -> str:
        """A hosted web search in the backend: server-side, the client does nothing."""
        self.outbox.note("builtin-search")
        index = len(output)
        item: dict[str, Any] = {
            "type": "web_search_call",
            "id": P.new_id("ws"),
            "status": "in_progress",
        }
        await self._envelope(
            delegation,
            {"type": "response.output_item.added", "output_index": index, "item": dict(item)},
        )
        for step in ("in_progress", "searching", "completed"):
            await self._envelope(
                delegation,
                {
                    "type": f"response.web_search_call.{step}",
                    "item_id": item["id"],
                    "output_index": index,
                },
            )
        item.update(status="completed", action={"type": "search", "query": search["query"]})
        await self._envelope(
            delegation,
            {"type": "response.output_item.done", "output_index": index, "item": dict(item)},
        )
        output.append(item)
        return f'no web search was run; an emulated result for "{search["query"]}"'

    async def _backend_text(
        self, delegation: Delegation, response_id: str, text: str, output: list[dict[str, Any]]
    ) -> None:
        """The backend's answer: streamed in envelopes, then said by the live model."""
        model = self._backend().get("model", "")
        plain = text.removeprefix("[emulator] ")
        answer = f"[emulator] (backend {model}) {plain}"  # every spoken output: [emulator]
        index = len(output)
        item: dict[str, Any] = {
            "type": "message",
            "id": P.new_id("msg"),
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await self._envelope(
            delegation,
            {"type": "response.output_item.added", "output_index": index, "item": dict(item)},
        )
        base = {"item_id": item["id"], "output_index": index, "content_index": 0}
        words = answer.split(" ")
        for i in range(0, len(words), 4):
            piece = " ".join(words[i : i + 4])
            await self._envelope(
                delegation,
                {
                    "type": "response.output_text.delta",
                    **base,
                    "delta": piece if i == 0 else " " + piece,
                },
            )
        await self._envelope(
            delegation, {"type": "response.output_text.done", **base, "text": answer}
        )
        item.update(status="completed", content=[{"type": "output_text", "text": answer}])
        await self._envelope(
            delegation,
            {"type": "response.output_item.done", "output_index": index, "item": dict(item)},
        )
        output.append(item)
        await self._response_completed(delegation, response_id, output)
        # FDEL: "Delegated output text is also injected into the live session"
        await self._say(answer)

    def _responses_only(self, kind: str) -> None:
        assert self.session is not None
        if self.session["delegation"]["type"] != "responses":
            # source: docs/emulator.md#gl-refused (SPIKE, reported; FREF "With Responses
            # delegation")
            raise LiveError("invalid_request", f"{kind} requires Responses delegation.")

    async def _item_create(self, event: dict[str, Any]) -> None:
        self._responses_only("response.item.create")
        item = event.get("item")
        if not isinstance(item, dict):
            raise LiveError(
                "missing_required_parameter", "Missing required parameter: 'item'.", "item"
            )
        if item.get("type") == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):  # (a list or object would not even hash)
                raise LiveError(
                    "invalid_type",
                    "Invalid type for 'item.call_id': expected a string.",
                    "item.call_id",
                )
            owner = next((d for d in self._delegations.values() if call_id in d.calls), None)
            if owner is None or "output" not in item:
                raise LiveError(
                    "invalid_value",
                    f"No function call with call_id {call_id!r} is waiting for its output.",
                    "item.call_id",
                )
            name = owner.calls.pop(str(call_id))
            owner.outputs.append({"name": name, "call_id": call_id, "output": str(item["output"])})
            return
        if item.get("type") == "message" and item.get("role") == "user":
            parts = item.get("content") or []
            text = " ".join(str(p.get("text") or "") for p in parts if isinstance(p, dict)).strip()
            if not text:
                raise LiveError("invalid_value", "A user message needs input_text.", "item.content")
            if len(text) > INPUT_MAX_CHARS:  # 16 of them may wait: each is bounded
                raise LiveError(
                    "invalid_value", "The user message is over 8192 tokens.", "item.content"
                )
            if len(self._typed) >= MAX_WAITING:
                raise LiveError(
                    "invalid_request", "Too many user messages wait for response.create."
                )
            self._typed.append(text)
            return
        raise LiveError(
            "invalid_value",
            "item must be a function_call_output or a user message.",
            "item.type",
        )

    async def _response_create(self, event: dict[str, Any]) -> None:
        self._responses_only("response.create")
        waiting = [d for d in self._delegations.values() if d.outputs or d.calls]
        for delegation in waiting:
            if delegation.calls:
                # source: docs/emulator.md#gl-delegation (FDEL: submit every result first)
                missing = ", ".join(sorted(delegation.calls))
                raise LiveError(
                    "invalid_value",
                    f"Function calls without an output: {missing}; submit each one first.",
                    "item.call_id",
                )
        for delegation in waiting:
            outputs, delegation.outputs = delegation.outputs, []
            plan = (
                self._model.plan_followup(outputs)
                if self._model.waiting_for_tools
                else Plan(
                    say="[emulator] "
                    + "; ".join(f"{o['name']} returned {spoken(o['output'])}" for o in outputs)
                )
            )
            response_id = P.new_id("resp")
            await self._response_created(delegation, response_id)
            await self._backend_text(delegation, response_id, self._text_of(plan), [])
        typed, self._typed = self._typed, []
        if not waiting and not typed:
            raise LiveError(
                "invalid_request",
                "response.create: there is no user message or function output to run.",
            )
        for text in typed:
            # a typed caller turn goes to the backend (docs/gpt-live.md "a typed caller turn")
            self._turns += 1
            plan = self._model.plan_turn(self._turns, text, None, self._tool_view())
            await self._delegate_responses(plan, filler=False)

    # --- session.update, close, expiry ------------------------------------------------------------

    async def _update(self, event: dict[str, Any]) -> None:
        # source: docs/emulator.md#gl-update (FREF "Update a live session")
        raw = event.get("session")
        if not isinstance(raw, dict):
            raise LiveError(
                "missing_required_parameter", "Missing required parameter: 'session'.", "session"
            )
        for key in raw:
            if key not in SESSION_FIELDS:
                raise LiveError(
                    "unknown_parameter", f"Unknown parameter: 'session.{key}'.", f"session.{key}"
                )
            if key != "delegation":
                raise LiveError(
                    "invalid_value",
                    f"session.{key} cannot change after startup; only delegation.responses can.",
                    f"session.{key}",
                )
        assert self.session is not None
        if "delegation" in raw:
            check_delegation(raw["delegation"])
            new = raw["delegation"] or {"type": "client"}
            if new["type"] != self.session["delegation"]["type"]:
                raise LiveError(
                    "invalid_value",
                    "The delegation mode cannot change; start a new session to change it.",
                    "session.delegation.type",
                )
            self.session["delegation"] = new
        await self.outbox.send({"type": "session.updated", "session": dict(self.session)})

    async def _close(self, event: dict[str, Any]) -> None:
        await self._finish("close_requested", event)

    async def _finish(self, reason: str, event: dict[str, Any] | None = None) -> None:
        # source: docs/emulator.md#gl-close (FHOW: drain, then session.closed, then the close)
        self._closing = True
        self._replies.clear()
        assert self.session is not None
        await self.outbox.send(
            {
                "type": "session.closed",
                **(_correlated(event) if event else {}),
                "reason": reason,
                "usage": {"seconds": self.clock_ms // 1000},
                "session": {**self.session, "status": "active"},
            }
        )
        self._record.close_code = 1000
        await self._ws.close(code=1000, message=reason.encode())

    async def _expire(self) -> None:
        await asyncio.sleep(self._desk.session_limit_s)
        if self.session is not None and not self._closing:
            await self._finish("expired")


def _correlated(event: dict[str, Any] | None) -> dict[str, Any]:
    eid = event.get("event_id") if isinstance(event, dict) else None
    return {"client_event_id": eid} if eid is not None else {}


# --- session.start checks -------------------------------------------------------------------------


def check_session(raw: dict[str, Any], note: Callable[[str], None]) -> None:
    """``session.start``'s session object, strictly (raises :class:`LiveError`)."""
    for key in raw:
        if key not in SESSION_FIELDS:
            # Voice Live's fields are GPT-Live's refusals (docs/gpt-live.md "Refused")
            raise LiveError(
                "unknown_parameter", f"Unknown parameter: 'session.{key}'.", f"session.{key}"
            )
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise LiveError(
            "missing_required_parameter",
            "Missing required parameter: 'session.model'.",
            "session.model",
        )
    if model not in MODELS:
        if not model.startswith("gpt-live-"):
            raise LiveError(
                "invalid_value",
                f"Invalid value: {model!r}. Supported values are: 'gpt-live-1', 'gpt-live-1-mini'.",
                "session.model",
            )
        note("gl-model")
    instructions = raw.get("instructions")
    if instructions is not None and (
        not isinstance(instructions, str) or len(instructions) > INSTRUCTIONS_MAX_CHARS
    ):
        raise LiveError(
            "invalid_value",
            "instructions: a string of at most 16,384 tokens.",
            "session.instructions",
        )
    _check_input(raw.get("input"))
    _check_audio(raw.get("audio"))
    check_delegation(raw.get("delegation"))
    if "store" in raw and not isinstance(raw["store"], bool):
        raise LiveError("invalid_type", "session.store: expected a boolean.", "session.store")


def _check_input(items: Any) -> None:
    if items is None:
        return
    p = "session.input"
    if not isinstance(items, list) or len(items) > INPUT_MAX_MESSAGES:
        raise LiveError("invalid_value", "input: at most 128 text messages.", p)
    total = 0
    for i, item in enumerate(items):
        q = f"{p}[{i}]"
        if not isinstance(item, dict) or item.get("role") not in ("developer", "user", "assistant"):
            raise LiveError(
                "invalid_value", "a message with role developer, user or assistant.", f"{q}.role"
            )
        content = item.get("content")
        if not isinstance(content, list) or len(content) != 1 or not isinstance(content[0], dict):
            raise LiveError("invalid_value", "one text part per message.", f"{q}.content")
        total += len(str(content[0].get("text") or ""))
    if total > INPUT_MAX_CHARS:
        raise LiveError("invalid_value", "input: at most 8,192 tokens in all.", p)


def _check_audio(audio: Any) -> None:
    if audio is None:
        return
    p = "session.audio"
    if not isinstance(audio, dict):
        raise LiveError("invalid_type", "session.audio: expected an object.", p)
    for key in audio:
        if key not in ("format", "output"):
            raise LiveError("unknown_parameter", f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}")
    fmt = audio.get("format")
    if fmt is not None:
        ok = isinstance(fmt, dict) and (
            (fmt.get("type") == "audio/pcm" and fmt.get("rate", 24000) in (16000, 24000))
            or (fmt.get("type") in ("audio/pcmu", "audio/pcma") and fmt.get("rate", 8000) == 8000)
        )
        if not ok or set(fmt) - {"type", "rate"}:
            raise LiveError(
                "invalid_value",
                "audio.format: {type: audio/pcm, rate: 16000|24000}, or audio/pcmu or "
                "audio/pcma at 8000.",
                f"{p}.format",
            )
    output = audio.get("output")
    if output is None:
        return
    if not isinstance(output, dict) or set(output) - {"voice"}:
        raise LiveError("unknown_parameter", "audio.output takes voice only.", f"{p}.output")
    voice = output.get("voice")
    if isinstance(voice, str) and voice in VOICES:
        return
    if isinstance(voice, dict) and set(voice) == {"id"} and isinstance(voice["id"], str):
        return
    raise LiveError(
        "invalid_value",
        f"Invalid value: {voice!r}. A built-in GPT-Live voice ({', '.join(VOICES[:6])}, …) or "
        "{id: <custom voice>}.",
        f"{p}.output.voice",
    )


def check_delegation(value: Any) -> None:
    p = "session.delegation"
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") not in ("client", "responses"):
        raise LiveError(
            "invalid_value", "delegation: {type: client} or {type: responses, ...}.", f"{p}.type"
        )
    if value["type"] == "client":
        if set(value) != {"type"}:
            key = sorted(set(value) - {"type"})[0]
            raise LiveError("unknown_parameter", f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}")
        return
    if set(value) - {"type", "responses"}:
        key = sorted(set(value) - {"type", "responses"})[0]
        raise LiveError("unknown_parameter", f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}")
    backend = value.get("responses")
    q = f"{p}.responses"
    if not isinstance(backend, dict):
        raise LiveError("missing_required_parameter", f"Missing required parameter: '{q}'.", q)
    for key in backend:
        if key not in RESPONSES_FIELDS:
            raise LiveError("unknown_parameter", f"Unknown parameter: '{q}.{key}'.", f"{q}.{key}")
    if not isinstance(backend.get("model"), str) or not backend["model"]:
        raise LiveError(
            "missing_required_parameter", f"Missing required parameter: '{q}.model'.", f"{q}.model"
        )
    tier = backend.get("service_tier")
    if tier is not None and tier not in ("auto", "default", "flex", "priority"):
        raise LiveError(
            "invalid_value", "service_tier: auto, default, flex or priority.", f"{q}.service_tier"
        )
    names: set[str] = set()
    for i, tool in enumerate(backend.get("tools") or []):
        t = f"{q}.tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "web_search" and set(tool) == {"type"}:
            continue
        if kind != "function":
            raise LiveError(
                "invalid_value",
                f"GPT-Live's backend takes function and web_search tools, not {kind!r}.",
                f"{t}.type",
            )
        for key in tool:
            if key not in ("type", "name", "description", "parameters", "strict"):
                raise LiveError(
                    "unknown_parameter", f"Unknown parameter: '{t}.{key}'.", f"{t}.{key}"
                )
        name = tool.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise LiveError("invalid_value", "each function tool needs its own name.", f"{t}.name")
        names.add(name)
