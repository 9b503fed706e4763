"""GPT-Live at the console: one full-duplex conversation over GPT-Live's own WebSocket.

GPT-Live (``gpt-live-1``, ``gpt-live-1-mini``) is not the Voice Live realtime protocol: its
contract is docs/gpt-live.md. The SDK (azure-ai-voicelive 1.3.1) has no model for it, so the
documented JSON goes over an aiohttp WebSocket to ``<endpoint>/openai/v1/live`` (credentials in
headers only, no query). The runner:

- sends ``session.start`` (compiled by runner/config/gpt_live.py) and waits for
  ``session.started``; a greeting is a ``session.commentary.append``;
- streams the source as ``session.input_audio.append`` and plays ``session.output_audio.delta``;
- tells backchannels from replies (:mod:`runner.live.duplex`): a backchannel is shown as such
  and is **not** a barge-in (no cancel, playback is never cut); the model decides when to yield,
  and a reply it stopped is marked ``[interrupted]``;
- shows and traces delegations; under Responses delegation runs the profile's tool plugins for
  the backend's function calls (``response.item.create`` of each output, then
  ``response.create``), and sends typed turns as ``response.item.create`` user messages;
- closes with ``session.close`` and waits (bounded) for ``session.closed``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from runner.errors import ConfigError, ConnectError, VlrunError
from runner.live.audio import Player, Source
from runner.live.connect import Target, connect_failure
from runner.live.duplex import Duplex
from runner.live.inputs import start_line_reader
from runner.live.lines import TypedTurns
from runner.live.state import Life, Metrics, Phase, TaskGroup, TurnState
from runner.live.transcript import ConsoleFailed, Transcript, session_logging
from runner.redact import clean_line, register_secret

log = logging.getLogger("vlrun.live.gpt_live")

PATH = "/openai/v1/live"  # docs/gpt-live.md "Connection" (FHOW, FREF)
#: Entra scope for the Azure OpenAI resource GPT-Live is served from
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
START_TIMEOUT_S = 10.0  # session.start -> session.started
CLOSE_TIMEOUT_S = 5.0  # session.close -> session.closed, after q or the end of input
STOP_CLOSE_TIMEOUT_S = 0.5  # ... after Ctrl+C (ends now: the close is a courtesy)
#: wall-clock quiet after the last fragment that ends an utterance on screen (the timeline's
#: own gap is 500 ms; audio arrives at real time, so a little more than that)
QUIET_S = 2.0
#: the caller's audio above this level is voice (speech is -30 to -10 dBFS; a quiet room -60)
VOICED_DBFS = -45.0
#: a pause this long in the caller's stream (wall clock) lets the session's timeline move on
#: without it: its audio then resumes at the latest timeline point the service reported
RESUME_GAP_S = 0.5
_QUIT_WORDS = frozenset({"q", "quit", "exit", "/q", "/quit"})
_MAX_FRAME = 16 * 1024 * 1024


def is_gpt_live_start(payload: Mapping[str, Any]) -> bool:
    """A compiled payload for GPT-Live (``session.start``), not a Voice Live session.update."""
    return payload.get("type") == "session.start"


def live_url(endpoint: str) -> str:
    """``https://host/...`` -> ``wss://host/openai/v1/live`` (no query: GPT-Live takes none)."""
    parts = urlsplit(endpoint)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}{PATH}"


def audio_fields(session: Mapping[str, Any]) -> dict[str, Any]:
    """The session's format and voice in the dated words the audio edges and the console read
    (``input_audio_format``, ``input_audio_sampling_rate``, ``output_audio_format``, ``voice``)."""
    word, rate = session_format(session)
    out: dict[str, Any] = {"input_audio_format": word if word.startswith("g711") else "pcm16"}
    if not word.startswith("g711"):
        out["input_audio_sampling_rate"] = rate
    out["output_audio_format"] = word
    voice = ((session.get("audio") or {}).get("output") or {}).get("voice")
    if voice:
        out["voice"] = voice
    return out


def session_format(session: Mapping[str, Any]) -> tuple[str, int]:
    """The one audio format both ways (docs/gpt-live.md "Startup"): (wire word, rate)."""
    fmt = (session.get("audio") or {}).get("format") or {}
    kind = str(fmt.get("type") or "audio/pcm")
    if kind == "audio/pcmu":
        return "g711_ulaw", 8000
    if kind == "audio/pcma":
        return "g711_alaw", 8000
    rate = int(fmt.get("rate") or 24000)
    return ("pcm16" if rate == 24000 else f"pcm16_{rate}hz"), rate


class GptLiveSession:
    """One GPT-Live conversation; :meth:`run` returns the exit code. The console drives it
    through the same surface as a :class:`~runner.live.session.LiveSession` (``feed_line``,
    ``stop``, ``turn``, ``metrics``, ``transcript``, ``talk``)."""

    push_to_talk = False
    talk_state = "off"
    talk_key = "enter"
    talk_notices = False

    def __init__(
        self,
        start: Mapping[str, Any],
        *,
        target: Target,
        endpoint: str,
        credential: Any,
        transcript: Transcript,
        player: Player,
        source: Source | None = None,
        registry: Any = None,
        greeting: Mapping[str, Any] | None = None,
        lines: bool = True,
        end_when_input_ends: bool = False,
        finish_timeout_s: float = 60.0,
        tool_timeouts: Mapping[str, float] | float = 10.0,
        profile_name: str = "",
        profile_vars: Mapping[str, Any] | None = None,
        handle_signals: bool = True,
        client_backend: Any = None,
    ) -> None:
        self.start_event = dict(start)
        self.session_config: dict[str, Any] = dict(start.get("session") or {})
        self.target = target
        self.endpoint = endpoint
        self.credential = credential
        self.transcript = transcript
        self.player = player
        self.source = source
        self.registry = registry
        self.greeting = dict(greeting) if greeting else None
        self.lines = lines
        self.end_when_input_ends = end_when_input_ends
        self.finish_timeout_s = finish_timeout_s
        self.tool_timeouts = tool_timeouts
        self.profile_name = profile_name
        self.profile_vars = dict(profile_vars or {})
        self.handle_signals = handle_signals
        # answers client delegations (runner/live/agent_backend.py); None: nobody does
        self.client_backend = client_backend
        self._asked: list[str] = []  # the caller's words since the last client delegation
        self.life = Life()
        self.turn = TurnState()
        self.metrics = Metrics()
        self.tasks = TaskGroup(self.report)
        self.typed = TypedTurns()
        self.duplex = Duplex(self)
        self.session_id = ""
        self.end_reason: str | None = None
        self.delegations: dict[str, dict[str, Any]] = {}  # id -> the delegation
        self._calls: dict[str, list[tuple[str, str, str]]] = {}  # delegation -> its calls
        self._open: set[str] = set()  # delegations whose answer has not come yet
        self._started: asyncio.Future[Any] | None = None
        self._closed = asyncio.Event()
        self._ws: Any = None
        self._quiet: asyncio.TimerHandle | None = None
        self._timeline_ms = 0
        self._replies_done = 0
        self._caller_turns = 0
        self._graceful = False  # q or the end of input (not Ctrl+C): the close is waited for

    # ------------------------------------------------------------------ the console surface

    @property
    def delegation_type(self) -> str:
        return str((self.session_config.get("delegation") or {}).get("type") or "client")

    @property
    def ready(self) -> asyncio.Event:
        return self.life.ready

    def stop(self) -> None:
        self.life.end()

    def talk(self) -> None:  # no push-to-talk: GPT-Live listens all the time
        return

    def feed_line(self, line: str | None) -> None:
        """A console line: ``q``, or a typed caller turn (Responses delegation only)."""
        if line is None:
            self.typed.end()
            self.turn.moved("end of input")
            return
        text = line.strip()
        if not text or self.turn.closing:
            return
        if text.lower() in _QUIT_WORDS:
            self.turn.close()
            self.tasks.spawn(self._finish(), "vlrun-gpt-live-quit")
            return
        if self.delegation_type != "responses":
            self.transcript.error(
                "GPT-Live takes typed turns only with a delegation deployment "
                "(gpt_live.delegation.deployment); speak instead"
            )
            return
        self.typed.put(text)
        self.turn.moved("line typed")

    # ------------------------------------------------------------------ the edge API

    def forbid_reconnect(self) -> None:
        """One connection always: a drop ends a GPT-Live conversation."""

    async def send_text(self, text: str) -> None:
        """A typed caller turn (Responses delegation only), after the reply owed; returns once
        it is sent. Raises :class:`~runner.errors.UsageError` under client delegation."""
        from runner.errors import UsageError

        if self.delegation_type != "responses":
            raise UsageError(
                "GPT-Live takes typed turns only with a delegation deployment "
                "(gpt_live.delegation.deployment)"
            )
        turns = self._caller_turns
        self.typed.put(text.strip())
        self.turn.moved("line typed")
        await self.turn.until(lambda: self._caller_turns > turns or self.life.stopping.is_set())

    async def send_image(self, data: bytes, mime: str, text: str | None = None) -> None:
        """GPT-Live documents no image event on its WebSocket (docs/gpt-live.md)."""
        from runner.live.images import ImageError

        raise ImageError(
            "GPT-Live takes no image turns (its WebSocket has no image event)",
            hint="use a gpt-realtime model for image turns",
        )

    async def finish_reply(self, timeout: float | None = None) -> None:
        """Wait until the reply owed (and any delegation's answer) has been said and played."""
        from runner.aio import Deadline

        deadline = Deadline(timeout)
        if not await self.turn.until(
            lambda: not self._awaiting_reply() or self.life.stopping.is_set(), deadline.left()
        ):
            raise asyncio.TimeoutError
        await deadline.run(self.player.drain())

    def report(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, ConsoleFailed):
            self.life.failure = self.life.failure or exc
            self.stop()
            return
        log.error("%s failed", what, exc_info=exc)
        self.transcript.error(f"internal error in {what}: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ running

    async def run(self) -> int:
        import signal

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            if self.handle_signals:
                loop.add_signal_handler(signal.SIGINT, self.stop)
        try:
            with session_logging(self.transcript):
                try:
                    await self._run()
                    self.end_reason = self.end_reason or "stopped"
                except Exception:
                    self.end_reason = self.end_reason or "error"
                    raise
                finally:
                    self._cancel_quiet()
                    self.duplex.flush()
                    await self.tasks.close(timeout=0.5)
                    if self.source is not None:
                        self.source.close()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                if self.handle_signals:
                    loop.remove_signal_handler(signal.SIGINT)
        if self.life.failure is not None:
            raise self.life.failure
        return self.life.exit_code

    async def _run(self) -> None:
        import aiohttp

        try:
            auth = await self._auth_headers()
        except Exception as exc:  # no key and no Entra sign-in: one line, as connect says it
            self.end_reason = "connect_failed"
            raise connect_failure(exc, self.endpoint, self.target) from None
        headers = {**auth, **dict(self.target.options.get("headers") or {})}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.target.connect_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                ws = await asyncio.wait_for(
                    http.ws_connect(
                        live_url(self.endpoint),
                        headers=headers,
                        heartbeat=self.target.heartbeat_s,
                        max_msg_size=_MAX_FRAME,
                    ),
                    self.target.connect_timeout_s,
                )
            except asyncio.TimeoutError:
                self.end_reason = "connect_failed"
                raise ConnectError(
                    f"{self.endpoint} did not answer the handshake within "
                    f"{self.target.connect_timeout_s:g} s",
                    hint="check the endpoint URL and the network; --connect-timeout sets the wait",
                ) from None
            except Exception as exc:
                self.end_reason = "connect_failed"
                raise connect_failure(exc, self.endpoint, self.target) from None
            self._ws = ws
            try:
                await self._converse(ws)
            finally:
                self._ws = None
                self.life.ready.clear()
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _auth_headers(self) -> dict[str, str]:
        """docs/gpt-live.md "Connection": ``api-key`` or ``Authorization: Bearer``, never the
        query."""
        key = getattr(self.credential, "key", None)
        if isinstance(key, str) and key:
            return {"api-key": key}
        if hasattr(self.credential, "get_token"):
            token = await self.credential.get_token(ENTRA_SCOPE)
            register_secret(token.token)
            return {"Authorization": f"Bearer {token.token}"}
        return {}

    async def _converse(self, ws: Any) -> None:
        self._started = asyncio.get_running_loop().create_future()
        recv = asyncio.create_task(self._receive(ws), name="vlrun-gpt-live-recv")
        try:
            await self._send(self.start_event)
            done, _ = await asyncio.wait(
                {recv, self._started}, timeout=START_TIMEOUT_S, return_when="FIRST_COMPLETED"
            )
            if self._started.done():
                self._started.result()  # a refused session.start raises its ConfigError
            elif recv in done:
                recv.result()
                raise ConnectError("the service closed the connection before session.started")
            else:
                raise ConnectError(
                    f"the service did not start the session (no session.started within "
                    f"{START_TIMEOUT_S:g} s)"
                )
            self.turn.ready()
            self.life.ready.set()
            if self.greeting:
                self._reply_mark = self._replies_done  # typed turns wait until it is said
                await self._send(self.greeting)
            if self.lines and sys.stdin is not None:
                start_line_reader(asyncio.get_running_loop(), self._take_line)
            elif self.lines:
                self.feed_line(None)
            self.tasks.spawn(self._turn_sender(), "vlrun-gpt-live-turns")
            if self.source is not None:
                self.tasks.spawn(self._input_pump(), "vlrun-gpt-live-input")
            stop = asyncio.create_task(self.life.stopping.wait(), name="vlrun-gpt-live-stop")
            try:
                await asyncio.wait({recv, stop}, return_when="FIRST_COMPLETED")
            finally:
                stop.cancel()
                await asyncio.wait({stop})
            if recv.done() and not recv.cancelled() and recv.exception() is not None:
                raise recv.exception()  # type: ignore[misc]
            if not recv.done():
                await self._close_session(recv)
        finally:
            if not recv.done():
                recv.cancel()
            await asyncio.wait({recv})

    async def _close_session(self, recv: asyncio.Task[None]) -> None:
        """``session.close``; the service drains and answers ``session.closed`` (bounded)."""
        with contextlib.suppress(Exception):
            await self._send({"type": "session.close"})
        wait = CLOSE_TIMEOUT_S if self._graceful else STOP_CLOSE_TIMEOUT_S
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._closed.wait()), wait)

    def _take_line(self, line: str | None, taken: Any) -> None:
        self.feed_line(line)
        taken.set()

    async def _send(self, event: Mapping[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectError("the GPT-Live connection is closed")
        kind = str(event.get("type"))
        self.metrics.sent_events[kind] = self.metrics.sent_events.get(kind, 0) + 1
        if self.transcript.tracing and kind != "session.input_audio.append":
            self.transcript.trace("out", dict(event))
        await ws.send_str(json.dumps(event))

    # ------------------------------------------------------------------ input

    async def _input_pump(self) -> None:
        from runner import g711
        from runner.live.audio import level_dbfs

        assert self.source is not None
        word, rate = session_format(self.session_config)
        law = g711.law_of(word)
        per_ms = rate / 1000 * (1 if law else 2)
        sent_ms = 0.0
        last = -math.inf  # monotonic time of the last chunk sent
        async for chunk in self.source.frames():
            if self.life.stopping.is_set() or self.turn.closing:
                break
            level = level_dbfs(g711.decode(chunk, law) if law else chunk)
            if self.transcript.meter_enabled or self.transcript.on_meter is not None:
                self.transcript.meter(level)
            now = time.monotonic()
            if now - last >= RESUME_GAP_S:
                # the stream paused (before the first words, or between turns): the session's
                # timeline went on without it (a greeting, a reply said meanwhile), so the
                # audio resumes where the service last said the timeline was
                sent_ms = max(sent_ms, float(self._timeline_ms))
            last = now
            # where this audio sits on the session's timeline, and whether the caller speaks
            start, sent_ms = sent_ms, sent_ms + len(chunk) / per_ms
            self.duplex.caller_audio(int(start), int(sent_ms), level > VOICED_DBFS)
            await self._send(
                {
                    "type": "session.input_audio.append",
                    "audio": base64.b64encode(chunk).decode("ascii"),
                }
            )
        self.life.input_done = True
        if self.end_when_input_ends:
            await self._finish(after_caller=True)

    async def _turn_sender(self) -> None:
        """Typed turns, each once the reply to the one before has been said."""
        while True:
            await self.turn.until(lambda: bool(self.typed))
            if not await self.turn.until(
                lambda: not self._awaiting_reply() or self.typed.next_is_end(),
                self.finish_timeout_s,
            ):
                self.transcript.notice("no reply came; sending the next typed turn")
                self._reply_mark = -1
            text = self.typed.pop()
            if text is None:
                if self.source is None and self.end_when_input_ends:
                    await self._finish()
                return
            self.duplex.caller_typed()  # what was said before the typed turn is over
            self._caller_turns += 1
            self._reply_mark = self._replies_done
            item_id = f"typed_{self._caller_turns}"
            self.transcript.user(item_id, text)
            self.life.user_turn_ended("Enter -> first audio")
            await self._send(
                {
                    "type": "response.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": text}],
                    },
                }
            )
            await self._send({"type": "response.create"})
            self.turn.moved("typed turn sent")

    _reply_mark = -1

    def _awaiting_reply(self) -> bool:
        """A reply is owed (to the caller's last turn, or a delegation's answer), or a
        delegation is still being worked on (its answer is said when it comes)."""
        owed = self._reply_mark >= 0 and self._replies_done <= self._reply_mark
        return owed or bool(self._open)

    async def _finish(self, *, after_caller: bool = False) -> None:
        """End after the turns typed before it and the reply owed (a typed turn's, or the last
        spoken one's, and any delegation's answer); each wait bounded by finish_timeout_s."""
        if after_caller:
            self._reply_mark = self._replies_done if self._caller_turns else -1

        def pending() -> bool:
            return (
                len(self.typed) > 0
                or self._awaiting_reply()
                or self._calls_running()
                or (after_caller and self._caller_turns == 0)
            )

        if pending():
            if self.turn.closing:
                self.transcript.notice("ending after this reply (Ctrl+C ends now)")
            try:
                await asyncio.wait_for(
                    self.turn.until(lambda: not pending()), self.finish_timeout_s
                )
            except asyncio.TimeoutError:
                self.transcript.notice("no reply came; stopping")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.player.drain(), self.finish_timeout_s)
        self._graceful = True
        self.stop()

    def _calls_running(self) -> bool:
        return any(self._calls.values())

    # ------------------------------------------------------------------ events in

    async def _receive(self, ws: Any) -> None:
        import aiohttp

        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                    break
                continue
            try:
                event = json.loads(message.data)
                kind = str(event["type"])
            except (ValueError, KeyError, TypeError):
                log.warning("skipped a GPT-Live frame vlrun could not read: %s", message.data[:200])
                continue
            if self.transcript.tracing and kind != "session.output_audio.delta":
                self.transcript.trace("in", event)
            self.transcript.event(kind, payload=event)
            handler = self._handlers().get(kind)
            if handler is None:
                continue
            try:
                result = handler(event)
                if asyncio.iscoroutine(result):
                    await result
            except (ConfigError, ConnectError):
                raise
            except Exception as exc:  # one bad event must not end the conversation
                self.report(f"the handler for {kind}", exc)
            if kind == "session.closed":
                break
        if not self._closed.is_set() and not self.life.stopping.is_set():
            code = ws.close_code
            self.end_reason = "dropped"  # one connection: a drop ends the conversation
            raise ConnectError(f"the GPT-Live connection ended (close code {code})")

    def _handlers(self) -> dict[str, Any]:
        return {
            "session.started": self._on_started,
            "session.updated": lambda e: None,
            "info": self._on_info,
            "error": self._on_error,
            "session.output_audio.delta": self._on_audio,
            "session.output_transcript.delta": self._on_output_transcript,
            "session.input_transcript.delta": self._on_input_transcript,
            "session.delegation.created": self._on_delegation,
            "response.event": self._on_backend_event,
            "session.usage.updated": self._on_usage,
            "session.closed": self._on_closed,
        }

    def _on_started(self, event: Mapping[str, Any]) -> None:
        session = event.get("session") or {}
        self.session_id = str(session.get("id") or "")
        self.transcript.conv_note(f"session {self.session_id} started (GPT-Live)")
        if self._started is not None and not self._started.done():
            self._started.set_result(session)

    def _on_info(self, event: Mapping[str, Any]) -> None:
        message = clean_line(str(event.get("message") or ""))
        self.transcript.notice(f"service: {message}")

    def _on_error(self, event: Mapping[str, Any]) -> None:
        err = event.get("error") or {}
        code = err.get("code") or err.get("type") or "error"
        message = clean_line(str(err.get("message") or ""))
        param = err.get("param")
        if self._started is not None and not self._started.done():
            self._started.set_exception(
                ConfigError(
                    f"GPT-Live refused the session: {message}" + (f" ({param})" if param else ""),
                    hint="fix the profile setting; `vlrun check PROFILE` catches most of these",
                )
            )
            return
        self.transcript.error(f"service error {code}: {message}")

    def _on_audio(self, event: Mapping[str, Any]) -> None:
        pcm = base64.b64decode(str(event.get("delta") or ""))
        item = self.duplex.assistant.id if self.duplex.assistant is not None else "gpt-live"
        self.player.write(item, pcm)
        start, end = event.get("start_ms"), event.get("end_ms")
        if isinstance(start, int) and isinstance(end, int):  # optional (docs/gpt-live.md)
            self.duplex.assistant_audio(start, end)
            self._timeline(end)
            self._rearm_quiet()
        if self.life.eos_at is not None:
            latency = time.perf_counter() - self.life.eos_at
            self.metrics.turn_latency.append(latency)
            self.transcript.latency(latency * 1000, self.life.eos_label)
            self.life.eos_at = None

    def _fragment(self, event: Mapping[str, Any]) -> tuple[str, int, int]:
        start = int(event.get("start_ms") or self._timeline_ms)
        end = int(event.get("end_ms") or start)
        return str(event.get("delta") or ""), start, end

    def _on_output_transcript(self, event: Mapping[str, Any]) -> None:
        delta, start, end = self._fragment(event)
        self.duplex.assistant_fragment(delta, start, end)
        self._timeline(end)
        self._rearm_quiet()

    def _on_input_transcript(self, event: Mapping[str, Any]) -> None:
        delta, start, end = self._fragment(event)
        self.duplex.caller_fragment(delta, start, end)
        self._timeline(end)
        self._rearm_quiet()

    def _on_usage(self, event: Mapping[str, Any]) -> None:
        self.transcript.trace_note({"type": "gpt_live_usage", "usage": event.get("usage")})

    def _on_closed(self, event: Mapping[str, Any]) -> None:
        reason = str(event.get("reason") or "closed")
        if reason != "close_requested":
            self.transcript.notice(f"GPT-Live closed the session ({reason})")
        self._closed.set()
        self.stop()

    def _timeline(self, now_ms: int) -> None:
        self._timeline_ms = max(self._timeline_ms, now_ms)

    def _rearm_quiet(self) -> None:
        """After a moment with no fragment at all, the open utterances are over: the wire
        has no done event, and the screen should not wait for the next one to say so."""
        self._cancel_quiet()
        loop = asyncio.get_running_loop()
        self._quiet = loop.call_later(QUIET_S, self._quiet_now)

    def _cancel_quiet(self) -> None:
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None

    def _quiet_now(self) -> None:
        self._quiet = None
        self.duplex.flush()

    # ------------------------------------------------------------------ what the duplex saw

    def caller_said(self, utterance_id: str, text: str) -> None:
        self._asked = [*self._asked[-19:], text]
        self._caller_turns += 1
        self._reply_mark = self._replies_done
        self.transcript.user(utterance_id, text)
        self.life.user_turn_ended()
        self.turn.moved("caller spoke")

    def reply_delta(self, utterance_id: str, delta: str) -> None:
        if self.transcript.streaming != utterance_id:
            delta = delta.lstrip()  # its line starts again (a caller's line came in between)
        self.transcript.assistant_delta(utterance_id, delta)

    def reply_done(self, utterance_id: str, text: str, *, yielded: bool) -> None:
        self.transcript.assistant_done(utterance_id, text, interrupted=yielded)
        if yielded:
            self.transcript.trace_note({"type": "yield", "item_id": utterance_id})
            self.transcript.conv_note("(the assistant yielded to the caller)")
        self._replies_done += 1
        self.turn.moved("reply said")

    def backchannel(self, utterance_id: str, text: str) -> None:
        # never a barge-in: nothing is cancelled and the player is left alone
        self.transcript.notice(f"backchannel: {text}")
        self.transcript.trace_note({"type": "backchannel", "item_id": utterance_id, "text": text})

    # ------------------------------------------------------------------ delegation

    def _on_delegation(self, event: Mapping[str, Any]) -> None:
        delegation = dict(event.get("delegation") or {})
        did = str(delegation.get("id") or "")
        self.delegations[did] = delegation
        target = str(delegation.get("target") or "?")
        self.transcript.notice(f"delegation {did} to {target}")
        self.transcript.conv_note(f"GPT-Live delegated {did} to {target}")
        self.transcript.trace_note({"type": "delegation", **delegation})
        self._open.add(did)
        self.turn.moved("delegation")
        if target == "client":
            self.tasks.spawn(self._answer_client(did), f"vlrun-delegation-{did}")

    async def _answer_client(self, delegation_id: str) -> None:
        """Client delegation: the caller's words since the last one go to the profile's Foundry
        agent, and its answer comes back as commentary (said aloud). With no agent, or one
        that cannot answer, the model is told quietly that there is no answer."""
        open_caller = self.duplex.caller.text if self.duplex.caller is not None else ""
        question = " ".join([*self._asked, open_caller]).strip()
        self._asked = []
        answer: str | None = None
        backend = self.client_backend
        try:
            if backend is None:
                self.transcript.warning(
                    "GPT-Live asked vlrun to answer a delegation and the profile names no "
                    "agent (gpt_live.delegation.agent); the model is told there is no answer"
                )
            else:
                try:
                    answer = await backend.ask(question or "(the caller said nothing yet)")
                except VlrunError as exc:
                    self.transcript.warning(f"{exc.message}; the model is told there is no answer")
            if answer:
                self.transcript.notice(f"{backend.describe()} answered delegation {delegation_id}")
                self.transcript.conv_note(f"agent answer ({delegation_id}): {clean_line(answer)}")
                await self._send(
                    {
                        "type": "session.commentary.append",
                        "delegation_id": delegation_id,
                        "content": answer,
                    }
                )
            else:
                await self._send(
                    {
                        "type": "session.thinking.append",
                        "delegation_id": delegation_id,
                        "content": "No backend answered this delegation; say you cannot look "
                        "it up.",
                    }
                )
        finally:
            self._open.discard(delegation_id)
            self.turn.moved("delegation answered")

    async def _on_backend_event(self, event: Mapping[str, Any]) -> None:
        """Responses delegation: the backend's streaming events, nested (docs/gpt-live.md)."""
        did = str(event.get("delegation_id") or "")
        inner = event.get("event") or {}
        kind = str(inner.get("type") or "")
        if kind == "response.output_item.done":
            item = inner.get("item") or {}
            if item.get("type") == "function_call":
                call = (
                    str(item.get("name") or ""),
                    str(item.get("call_id") or ""),
                    str(item.get("arguments") or "{}"),
                )
                self.transcript.tool_call(call[1], call[0], call[2])
                self._calls.setdefault(did, []).append(call)
                self.turn.moved("backend call")
        elif kind.startswith("response.web_search_call.") and kind.endswith(".completed"):
            self.transcript.notice("the backend searched the web")
        elif kind == "response.output_text.done":
            text = clean_line(str(inner.get("text") or ""))
            self.transcript.conv_note(f"backend ({did}): {text}")
        elif kind in ("response.completed", "response.done", "response.failed"):
            calls = self._calls.get(did) or []
            if calls:
                self.tasks.spawn(self._run_calls(did, list(calls)), f"vlrun-backend-{did}")
                return
            # the backend's answer is in: the live model says it next (a reply is owed)
            self._open.discard(did)
            if kind != "response.failed":
                self._reply_mark = self._replies_done
            else:
                self.transcript.warning(f"the delegation backend failed ({did})")
            self.turn.moved("delegation answered")

    async def _run_calls(self, delegation_id: str, calls: list[tuple[str, str, str]]) -> None:
        """Run the backend's function calls with the profile's plugins; outputs, then go on."""
        try:
            results = await asyncio.gather(*(self._call(*call) for call in calls))
            for result in results:
                shown = result.output if result.ok else (result.error or result.output)
                self.transcript.tool_result(
                    result.call_id, result.name, result.ok, shown, result.duration_s
                )
                await self._send(
                    {
                        "type": "response.item.create",
                        "item": {
                            "type": "function_call_output",
                            "call_id": result.call_id,
                            "output": result.output,
                        },
                    }
                )
            await self._send({"type": "response.create"})
        finally:
            self._calls.pop(delegation_id, None)
            self.turn.moved("backend calls answered")

    async def _call(self, name: str, call_id: str, arguments: str) -> Any:
        from runner.plugins import DEFAULT_TIMEOUT_S, ToolContext, ToolResult

        timeout = self.tool_timeouts
        limit = (
            float(timeout.get(name, DEFAULT_TIMEOUT_S))
            if isinstance(timeout, Mapping)
            else float(timeout)
        )
        if self.registry is None:
            message = "no tools are loaded"
            output = json.dumps({"error": {"type": "unknown_tool", "message": message}})
            return ToolResult(call_id, name, False, output, message, 0.0, "unknown_tool")
        context = ToolContext(
            session_id=self.session_id,
            profile_name=self.profile_name,
            vars=self.profile_vars,
            logger=logging.getLogger("vlrun.tools"),
        )
        (result,) = await self.registry.dispatch_many(
            [(name, call_id, arguments)], context=context, timeout_s=limit
        )
        return result

    # ------------------------------------------------------------------ for the console

    @property
    def phase(self) -> Phase:
        return self.turn.phase
