"""The live loop: one conversation over the SDK, across reconnects and session roll-overs.

Per connection: send the compiled ``session.update``, wait for ``session.updated`` (warn about
fields the service dropped or rewrote), then run three things side by side:
- the receive loop, which dispatches each server event through a type -> handler table;
- the input pump, which streams microphone / WAV frames as ``input_audio_buffer.append``;
- the line reader (typed turns in text mode, ``q`` to quit, answers to approval questions).

A dropped connection reconnects with backoff and re-sends the session; the transcript lives
outside the connection, so no completed turn is lost or printed twice. Before ``expires_at``
the session rolls over the same way, between turns.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.audio import CHUNK_MS, Player, Source, level_dbfs
from runner.connect import Target, open_connection
from runner.errors import ConnectError, VlrunError
from runner.transcript import Transcript

log = logging.getLogger("runner.session")

Handler = Callable[..., Awaitable[None] | None]
_TIMED = frozenset({"response.audio.delta", "input_audio_buffer.speech_started"})
# The stream of deltas is most of what arrives; building SDK models for them costs more than the
# work itself, so their handlers read the JSON object directly (same attribute names).
_RAW = frozenset({"response.audio.delta", "response.audio_transcript.delta", "response.text.delta"})
_APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
_SOCKET_ERRORS = (ConnectionError, RuntimeError)  # a closing socket (aiohttp raises either)
_QUIT_WORDS = frozenset({"q", "quit", "exit", "/q", "/quit"})
_IGNORED_DIFF_KEYS = frozenset({"id", "object", "expires_at", "agent", "model"})


@dataclass
class Metrics:
    """Timings the benchmark reads (seconds, perf_counter based)."""

    write_latency: list[float] = field(
        default_factory=list
    )  # audio delta received -> player.write done
    silence_latency: list[float] = field(
        default_factory=list
    )  # speech_started received -> playback silenced
    turn_latency: list[float] = field(default_factory=list)  # end of speech -> first audio written
    barge_in_arrivals: list[float] = field(default_factory=list)  # speech_started while playing
    reconnects: int = 0
    rollovers: int = 0
    sent_events: dict[str, int] = field(default_factory=dict)


@dataclass
class _Response:
    id: str
    items: dict[str, str] = field(default_factory=dict)  # item id -> item type
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (name, call_id, arguments)
    muted: bool = False  # barge-in: drop the rest of its audio and text
    first_audio: bool = False


class _Drop(Exception):
    """The connection ended without us asking (network, server fault)."""


class _Rollover(Exception):
    """The session is near its time limit: open a fresh one."""


class LiveSession:
    """Runs one conversation; :meth:`run` returns the exit code."""

    def __init__(
        self,
        *,
        target: Target,
        endpoint: str,
        credential: Any,
        session_update: Mapping[str, Any],
        transcript: Transcript,
        player: Player,
        source: Source | None = None,
        lines: bool = True,
        greeting: Mapping[str, Any] | None = None,
        registry: Any = None,
        tool_timeouts: Mapping[str, float] | float = 10.0,
        mcp_policies: Mapping[str, Any] | None = None,
        profile_name: str = "",
        profile_vars: Mapping[str, Any] | None = None,
        api_version: str | None = None,
        end_when_input_ends: bool = False,
        max_reconnects: int = 6,
        backoff_s: float = 0.25,
        rollover_margin_s: float = 120.0,
        finish_timeout_s: float = 60.0,
        replay_history: bool = True,
        send_ms: int = CHUNK_MS,
    ) -> None:
        self.target = target
        self.endpoint = endpoint
        self.credential = credential
        self.session_update = dict(session_update)
        self.transcript = transcript
        self.player = player
        self.source = source
        self.read_lines = lines
        self.greeting = greeting
        self.registry = registry
        self.tool_timeouts = tool_timeouts
        self.mcp_policies = dict(mcp_policies or {})
        self.profile_name = profile_name
        self.profile_vars = dict(profile_vars or {})
        self.api_version = api_version
        self.end_when_input_ends = end_when_input_ends
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.rollover_margin_s = rollover_margin_s
        self.finish_timeout_s = finish_timeout_s
        self.replay_history = replay_history and not target.agent_kwargs and not target.agent_query
        self.send_ms = send_ms
        self.metrics = Metrics()
        self.session_id = ""
        self.conn: Any = None
        self._ready = asyncio.Event()  # set while a configured connection is usable
        self._stop = asyncio.Event()
        self._updated: asyncio.Future[Any] | None = None
        self._responses: dict[str, _Response] = {}
        self._active: _Response | None = None
        self._no_active = asyncio.Event()
        self._no_active.set()
        self._changed = asyncio.Event()  # replaced and set on every turn-state change
        self._speech_ms: dict[str, float] = {}  # user audio item -> speech start (audio ms)
        self._received_ms: dict[str, float] = {}  # assistant item -> ms of audio received
        self._eos_at: float | None = None  # end of the user's last turn (perf_counter)
        self._speaking = False
        self._awaiting_reply = False
        self._input_done = False
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._question: asyncio.Future[str] | None = None
        self._cancel_sent_at = 0.0
        self._expires_at: float | None = None
        self._configured_once = False
        self._heard_speech = False  # the service has detected speech at least once
        self._connection_worked = False  # the current connection got as far as session.updated
        self._requested = 0  # response.create sent, response.created not seen yet
        self._handlers: dict[str, Handler] = {
            "session.created": self._on_session_created,
            "session.updated": self._on_session_updated,
            "error": self._on_error,
            "warning": self._on_warning,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "conversation.item.input_audio_transcription.completed": self._on_user_transcript,
            "conversation.item.input_audio_transcription.failed": self._on_transcription_failed,
            "conversation.item.created": self._on_item_created,
            "response.created": self._on_response_created,
            "response.output_item.added": self._on_output_item_added,
            "response.audio.delta": self._on_audio_delta,
            "response.audio_transcript.delta": self._on_text_delta,
            "response.text.delta": self._on_text_delta,
            "response.audio_transcript.done": self._on_text_done,
            "response.text.done": self._on_text_done,
            "response.output_item.done": self._on_output_item_done,
            "response.function_call_arguments.done": self._on_call_arguments_done,
            "response.mcp_call.completed": self._on_mcp_call,
            "response.mcp_call.failed": self._on_mcp_call,
            "response.done": self._on_response_done,
        }

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        """Connect, converse until the user quits or the input ends; reconnect on drops."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, self.stop)
        self._line_queue: asyncio.Queue[str | None] = asyncio.Queue()
        background = []
        if self.read_lines:
            _start_line_reader(loop, self._line_queue)
            background.append(asyncio.create_task(self._line_pump(), name="vlrun-lines"))
        if self.source is not None:
            background.append(asyncio.create_task(self._input_pump(), name="vlrun-input"))
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    await self._connection(first=not self._configured_once)
                    break  # ended on purpose
                except _Rollover:
                    self.metrics.rollovers += 1
                    self.transcript.notice("session time limit near: continuing in a new session")
                    attempt = 0
                except (_Drop, ConnectError) as exc:
                    if self._connection_worked:
                        attempt = 0  # count failures in a row, not drops over a whole conversation
                    if not self._configured_once and isinstance(exc, ConnectError):
                        raise  # cannot connect at all: one clear line, non-zero exit
                    if self._stop.is_set():
                        break
                    attempt += 1
                    if attempt > self.max_reconnects:
                        raise ConnectError(
                            f"lost the connection to {self.endpoint} and could not reconnect "
                            f"after {self.max_reconnects} attempts ({exc})"
                        ) from None
                    delay = min(8.0, self.backoff_s * 2 ** (attempt - 1))
                    self.transcript.notice(
                        f"connection lost ({exc}); "
                        f"reconnecting in {delay:.2g} s (attempt {attempt})"
                    )
                    self.metrics.reconnects += 1
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    continue
        finally:
            self._stop.set()
            for task in (*background, *self._tool_tasks):
                task.cancel()
            for task in (*background, *self._tool_tasks):
                with contextlib.suppress(BaseException):
                    await task
            if self.source is not None:
                self.source.close()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGINT)
        return 0

    @property
    def ready(self) -> asyncio.Event:
        """Set while a configured connection accepts input (cleared during reconnects)."""
        return self._ready

    @property
    def tools_running(self) -> bool:
        """Whether tool calls of this session are still being run."""
        return bool(self._tool_tasks)

    def stop(self) -> None:
        """End the conversation (Ctrl+C, ``q``, end of input)."""
        self._stop.set()

    async def _connection(self, *, first: bool) -> None:
        """One connection from connect to close; raises _Drop / _Rollover to go round again."""
        self._connection_worked = False
        async with open_connection(
            self.target, self.endpoint, self.credential, api_version=self.api_version
        ) as conn:
            self.conn = conn
            # A new connection starts between turns: whatever was in flight is gone.
            self._responses.clear()
            self._active = None
            self._no_active.set()
            self._speaking = self._awaiting_reply = False
            self._requested = 0
            self._speech_ms.clear()
            self._poke_idle()
            try:
                await self._configure(conn)
                self._configured_once = self._connection_worked = True
                if not first:
                    await self._replay(conn)
                    self.transcript.notice("reconnected; the conversation continues")
                elif self.greeting:
                    await self._send(self.greeting)
                self._ready.set()
                await self._receive_until_done(conn)
            finally:
                self._ready.clear()
                self.conn = None
                self._finish_interrupted_text()

    async def _configure(self, conn: Any) -> None:
        loop = asyncio.get_running_loop()
        self._updated = loop.create_future()
        await self._send(self.session_update)
        recv = asyncio.create_task(self._receive(conn), name="vlrun-recv")
        try:
            done, _ = await asyncio.wait(
                {recv, self._updated}, timeout=30, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            recv.cancel()
            raise
        if self._updated.done():
            self._recv_task = recv
            return
        recv.cancel()
        with contextlib.suppress(BaseException):
            await recv
        if recv in done and recv.exception() is not None:
            exc = recv.exception()
            if isinstance(exc, _Drop):
                raise exc
        raise _Drop("the service did not confirm the session (no session.updated)")

    async def _receive_until_done(self, conn: Any) -> None:
        recv = self._recv_task
        stop = asyncio.create_task(self._stop.wait(), name="vlrun-stopwait")
        waiters: set[asyncio.Task[Any]] = {recv, stop}
        roll = None
        if self._expires_at is not None:
            roll = asyncio.create_task(self._rollover_due(), name="vlrun-rollover")
            waiters.add(roll)
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()
            for task in waiters:
                with contextlib.suppress(BaseException):
                    await task
        if stop in done or self._stop.is_set():
            return
        if roll is not None and roll in done:
            raise _Rollover()
        exc = recv.exception() if not recv.cancelled() else None
        if exc is not None:
            raise exc
        raise _Drop("the service closed the connection")

    async def _receive(self, conn: Any) -> None:
        from azure.ai.voicelive.aio import ConnectionClosed
        from azure.ai.voicelive.models import ServerEvent

        while True:
            try:
                # Raw frames, parsed here the way the SDK's recv() does, so that one frame it
                # cannot read is logged (with its text) and skipped instead of ending the turn.
                raw = await conn.recv_bytes()
            except ConnectionClosed as exc:
                raise _Drop(f"closed with code {exc.code}") from None
            if not raw:
                raise _Drop("empty frame (connection closed)")
            try:
                payload = json.loads(raw)
                if not isinstance(payload, dict):
                    raise ValueError(f"a JSON {type(payload).__name__}, not an event object")
                kind = payload.get("type")
                if kind in _RAW:
                    event: Any = _RawEvent(payload)
                else:
                    event = ServerEvent._deserialize(payload, [])  # noqa: SLF001 - as recv() does
                    kind = _val(event.type)
            except Exception as exc:  # a malformed frame is the service's bug, not a reason to stop
                text = raw[:300].decode("utf-8", "replace")
                log.warning("skipped a server frame vlrun could not read (%s): %s", exc, text)
                continue
            arrived = time.perf_counter()
            if self.transcript.tracing:
                self.transcript.trace("in", payload)
            handler = self._handlers.get(kind)
            self.transcript.event(kind)
            if handler is None:
                continue
            try:
                # The two timed paths get the arrival time (benchmarks measure from it).
                result = handler(event, arrived) if kind in _TIMED else handler(event)
                if result is not None:
                    await result
            except (VlrunError, _Drop):
                raise
            except Exception:  # one bad event must not end the conversation
                log.exception("handler for %s failed", kind)

    async def _send(self, event: Mapping[str, Any] | Any) -> None:
        """Send a dict or SDK model; a failed send means the connection dropped."""
        from azure.ai.voicelive.aio import ConnectionError as SdkConnectionError

        conn = self.conn
        if conn is None:
            raise _Drop("not connected")
        data = event if isinstance(event, Mapping) else event.as_dict()
        kind = str(data.get("type", "?"))
        self.metrics.sent_events[kind] = self.metrics.sent_events.get(kind, 0) + 1
        if kind == "response.create":
            self._requested += 1  # in flight until response.created (or an error) comes back
        if self.transcript.tracing:
            self.transcript.trace("out", dict(data))
        log.debug("send %s", kind)
        try:
            await conn.send(event)
        except SdkConnectionError as exc:
            raise _Drop(f"send failed: {exc}") from None

    async def _rollover_due(self) -> None:
        assert self._expires_at is not None
        remaining = self._expires_at - time.time()
        margin = min(self.rollover_margin_s, max(0.0, remaining) * 0.1)
        await asyncio.sleep(max(0.0, remaining - margin))
        # Wait for a pause between turns (bounded by the margin itself).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._between_turns(), timeout=max(0.5, margin / 2))

    async def _between_turns(self) -> None:
        await self._wait_until(
            lambda: self._active is None and not self._speaking and not self._tool_tasks
        )

    async def _replay(self, conn: Any) -> None:
        """Give a fresh session the conversation so far, as text items (not re-printed)."""
        if not self.replay_history:
            return
        from azure.ai.voicelive.models import (
            AssistantMessageItem,
            InputTextContentPart,
            OutputTextContentPart,
            UserMessageItem,
        )

        for turn in self.transcript.turns[-40:]:
            if not turn.text or turn.role not in ("user", "assistant"):
                continue
            item = (
                UserMessageItem(content=[InputTextContentPart(text=turn.text)])
                if turn.role == "user"
                else AssistantMessageItem(content=[OutputTextContentPart(text=turn.text)])
            )
            await self._send({"type": "conversation.item.create", "item": item.as_dict()})

    # ---------------------------------------------------------------- input side

    async def _input_pump(self) -> None:
        assert self.source is not None
        meter = self.transcript.meter_enabled
        live = getattr(self.source, "live", True)
        # One append per chunk of at least send_ms: every event costs a JSON encode, a WebSocket
        # frame and a wake-up, and the service needs the audio, not the capture cadence.
        fmt = getattr(self.source, "fmt", self.player.fmt)
        batch = fmt.bytes_for_ms(self.send_ms)
        pending = bytearray()
        if not live:
            await self._ready.wait()  # a file loses nothing: start once the session is ready
        try:
            async for chunk in self.source.frames():
                if self._stop.is_set():
                    return
                if meter:
                    self.transcript.meter(level_dbfs(chunk))
                if not self._ready.is_set():
                    if live:
                        continue  # (re)connecting: live audio from now cannot be delivered
                    await self._ready.wait()
                if not pending and len(chunk) >= batch:
                    await self._append(chunk)  # the usual case: one device chunk, one append
                    continue
                pending += chunk
                if len(pending) >= batch:
                    await self._append(bytes(pending))
                    pending.clear()
            if pending and self._ready.is_set():
                await self._append(bytes(pending))  # the end of a file is audio too
        except VlrunError as exc:
            self.transcript.error(exc.message)
            self.stop()
            return
        self._input_done = True
        if self.end_when_input_ends:
            await self._finish_after_reply()

    async def _append(self, pcm: bytes) -> None:
        """Microphone audio, ten times a second: the lean path (no tracing, no debug log).

        The JSON is built by hand (base64 needs no escaping) and written to the SDK
        connection's own WebSocket: ``conn.send`` would re-scan the 6 KB string with
        ``json.dumps``, which is most of the client's CPU per append. Any other connection
        object goes through ``conn.send``.
        """
        from azure.ai.voicelive.aio import ConnectionError as SdkConnectionError

        conn = self.conn
        if conn is None:
            return
        sent = self.metrics.sent_events
        sent["input_audio_buffer.append"] = sent.get("input_audio_buffer.append", 0) + 1
        audio = base64.b64encode(pcm).decode("ascii")
        ws = _raw_socket(conn)
        with contextlib.suppress(SdkConnectionError, *_SOCKET_ERRORS):  # receive sees the drop
            if ws is not None:
                await ws.send_str(_APPEND_HEAD + audio + '"}')
            else:
                await conn.send({"type": "input_audio_buffer.append", "audio": audio})

    async def _line_pump(self) -> None:
        while True:
            line = await self._line_queue.get()
            if line is None:  # end of stdin
                if self.source is None:
                    self._input_done = True
                    if self.end_when_input_ends:
                        await self._finish_after_reply()
                return
            text = line.strip()
            if self._question is not None and not self._question.done():
                self._question.set_result(text)
                continue
            if text.lower() in _QUIT_WORDS:
                if self._reply_owed():
                    # Lines are turns in order: a reply already asked for is part of the
                    # conversation, so it is heard (and logged) before the session ends.
                    self.transcript.notice("ending after this reply (Ctrl+C ends now)")
                    if self.source is not None:
                        self.source.close()  # no new turns from the microphone meanwhile
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            self._wait_until(lambda: not self._reply_owed()),
                            self.finish_timeout_s,
                        )
                        await asyncio.wait_for(self.player.drain(), self.finish_timeout_s)
                self.stop()
                return
            if text:
                await self._ready.wait()
                await self.send_text(text)

    async def send_text(self, text: str) -> None:
        """A typed user turn: a message item, then a response (after the previous reply ends)."""
        from azure.ai.voicelive.models import InputTextContentPart, UserMessageItem

        await self._wait_until(
            lambda: (
                not self._awaiting_reply
                and self._active is None
                and not self._requested
                and not self._tool_tasks
            )
        )
        await self._ready.wait()
        item_id = f"typed_{len(self.transcript.turns)}_{int(time.time() * 1000)}"
        self.transcript.user(item_id, text)
        self._eos_at = time.perf_counter()
        self._awaiting_reply = True
        with contextlib.suppress(_Drop):
            item = UserMessageItem(content=[InputTextContentPart(text=text)])
            await self._send({"type": "conversation.item.create", "item": item.as_dict()})
            await self._send({"type": "response.create"})

    async def _finish_after_reply(self) -> None:
        """End of input: wait for the reply in progress, let it play out, then stop."""
        try:
            if self.source is not None:
                # A file sent with --fast can end before the service has even heard the
                # speech in it: the turn starts when it says so, not when sending stops.
                await asyncio.wait_for(
                    self._wait_until(lambda: self._heard_speech), timeout=self.finish_timeout_s
                )
            await asyncio.wait_for(self._idle(), timeout=self.finish_timeout_s)
        except asyncio.TimeoutError:
            self.transcript.notice("input ended; no reply came, stopping")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.player.drain(), timeout=self.finish_timeout_s)
        self.stop()

    def _reply_owed(self) -> bool:
        """A reply was asked for and has not finished (its response or its tools still run)."""
        return bool(self._awaiting_reply or self._active is not None or self._tool_tasks)

    async def _idle(self) -> None:
        await self._wait_until(lambda: not (self._speaking or self._reply_owed()))

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait for a condition on the turn state; every state change wakes the waiters."""
        while not predicate():
            await self._changed.wait()

    def _poke_idle(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # ---------------------------------------------------------------- handlers: session

    def _on_session_created(self, event: Any) -> None:
        session = getattr(event, "session", None)
        self.session_id = getattr(session, "id", "") or self.session_id

    def _on_session_updated(self, event: Any) -> None:
        session = event.session
        self.session_id = getattr(session, "id", "") or self.session_id
        received = _as_dict(session)
        for line in session_differences(self.session_update.get("session", {}), received):
            self.transcript.warning(line)
        expires = getattr(session, "expires_at", None)
        if isinstance(expires, datetime):
            self._expires_at = expires.timestamp()
        elif isinstance(expires, (int, float)) and expires > 0:
            self._expires_at = float(expires)
        self.transcript.conv_note(f"session {self.session_id} configured")
        if self._updated is not None and not self._updated.done():
            self._updated.set_result(session)

    def _on_error(self, event: Any) -> None:
        err = getattr(event, "error", None)
        code = getattr(err, "code", None) or getattr(err, "type", None) or "error"
        message = getattr(err, "message", "") or ""
        if self._requested and "response" in str(code):
            self._requested -= 1  # that response.create was refused: it will not be created
            self._poke_idle()
        if code == "response_cancel_not_active" and time.monotonic() - self._cancel_sent_at < 5:
            log.info("server: %s (the service had already ended the response)", code)
            return
        self.transcript.error(f"service error {code}: {message}")

    def _on_warning(self, event: Any) -> None:
        warning = getattr(event, "warning", None)
        self.transcript.warning(f"service warning: {getattr(warning, 'message', warning)}")

    # ---------------------------------------------------------------- handlers: user speech

    async def _on_speech_started(self, event: Any, arrived: float | None = None) -> None:
        t0 = arrived if arrived is not None else time.perf_counter()
        self._speaking = self._heard_speech = True
        self._poke_idle()
        self._speech_ms[str(event.item_id)] = float(getattr(event, "audio_start_ms", 0) or 0)
        was_playing = self.player.pending_ms() > 0
        item_id, played_ms = self.player.interrupt()  # silence first, talk to the service after
        if was_playing:
            self.metrics.silence_latency.append(time.perf_counter() - t0)
            self.metrics.barge_in_arrivals.append(t0)
        active = self._active
        interrupted = False
        if active is not None and not active.muted:
            active.muted = True
            interrupted = True
            self._cancel_sent_at = time.monotonic()
            await self._send({"type": "response.cancel"})
        still_generating = active is not None and item_id in active.items
        if item_id is not None and (
            still_generating or played_ms + 1 < self._received_ms.get(item_id, 0.0)
        ):
            # Tell the service what the user actually heard, so the model's memory matches.
            interrupted = True
            await self._send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": int(played_ms),
                }
            )
            log.info(
                "barge-in: truncated %s at %d ms of %.0f ms",
                item_id,
                played_ms,
                self._received_ms.get(item_id, 0.0),
            )
        if interrupted:
            self._finish_interrupted_text()
            self.transcript.event("barge-in", f"played {played_ms} ms")

    def _on_speech_stopped(self, event: Any) -> None:
        self._speaking = False
        if not self.session_update.get("session", {}).get("input_audio_transcription"):
            # No transcription configured: still keep the user's turn in the transcript.
            start = self._speech_ms.pop(str(event.item_id), None)
            end = float(getattr(event, "audio_end_ms", 0) or 0)
            length = f" {(end - start) / 1000:.1f} s" if start is not None and end > start else ""
            self.transcript.user(str(event.item_id), f"[speech{length}]")
        self._eos_at = time.perf_counter()
        self._awaiting_reply = True
        self._poke_idle()

    def _on_user_transcript(self, event: Any) -> None:
        text = (getattr(event, "transcript", "") or "").strip()
        self.transcript.user(str(event.item_id), text or "(inaudible)")

    def _on_transcription_failed(self, event: Any) -> None:
        err = getattr(event, "error", None)
        self.transcript.warning(f"could not transcribe your speech: {getattr(err, 'message', err)}")

    async def _on_item_created(self, event: Any) -> None:
        item = event.item
        if getattr(item, "type", None) == "mcp_approval_request":
            await self._answer_approval(item)

    # ---------------------------------------------------------------- handlers: responses

    def _on_response_created(self, event: Any) -> None:
        rid = str(event.response.id)
        resp = _Response(rid)
        self._requested = max(0, self._requested - 1)
        self._responses[rid] = resp
        self._active = resp
        self._no_active.clear()

    def _on_output_item_added(self, event: Any) -> None:
        resp = self._responses.get(str(event.response_id))
        if resp is not None:
            resp.items[str(event.item.id)] = str(getattr(event.item, "type", ""))

    def _on_audio_delta(self, event: Any, arrived: float | None = None) -> None:
        resp = self._responses.get(str(event.response_id))
        if resp is not None and resp.muted:
            return
        pcm = event.delta or b""
        if isinstance(pcm, str):
            pcm = base64.b64decode(pcm)
        item_id = str(event.item_id)
        self.player.write(item_id, pcm)
        now = time.perf_counter()
        if arrived is not None:
            self.metrics.write_latency.append(now - arrived)
        self._received_ms[item_id] = self._received_ms.get(
            item_id, 0.0
        ) + self.player.fmt.ms_for_bytes(len(pcm))
        if resp is not None and not resp.first_audio:
            resp.first_audio = True
            if self._eos_at is not None:
                latency = now - self._eos_at
                self.metrics.turn_latency.append(latency)
                self.transcript.latency(latency * 1000)
                self._eos_at = None

    def _on_text_delta(self, event: Any) -> None:
        resp = self._responses.get(str(event.response_id))
        if resp is not None and resp.muted:
            return
        self.transcript.assistant_delta(str(event.item_id), event.delta or "")

    def _on_text_done(self, event: Any) -> None:
        resp = self._responses.get(str(event.response_id))
        text = getattr(event, "transcript", None) or getattr(event, "text", None) or ""
        if resp is not None and resp.muted:
            self.transcript.assistant_done(str(event.item_id), "", interrupted=True)
            return
        self.transcript.assistant_done(str(event.item_id), text)

    def _on_output_item_done(self, event: Any) -> None:
        item = event.item
        if getattr(item, "type", None) != "message" or getattr(item, "role", None) != "assistant":
            return
        resp = self._responses.get(str(event.response_id))
        muted = resp is not None and resp.muted
        texts = [
            getattr(p, "transcript", None) or getattr(p, "text", None) or ""
            for p in (getattr(item, "content", None) or [])
        ]
        text = " ".join(t for t in texts if t)
        self.transcript.assistant_done(
            str(item.id),
            "" if muted else text,
            interrupted=muted or getattr(item, "status", "") == "incomplete",
        )

    def _on_call_arguments_done(self, event: Any) -> None:
        resp = self._responses.get(str(event.response_id))
        call = (str(event.name or ""), str(event.call_id), str(event.arguments or "{}"))
        self.transcript.tool_call(call[1], call[0], call[2])
        if resp is not None:
            resp.calls.append(call)

    def _on_mcp_call(self, event: Any) -> None:
        kind = getattr(event.type, "value", event.type)
        self.transcript.notice(f"MCP call {event.item_id}: {kind.rsplit('.', 1)[-1]}")

    def _on_response_done(self, event: Any) -> None:
        response = event.response
        rid = str(response.id)
        resp = self._responses.pop(rid, None)
        if self._active is not None and self._active.id == rid:
            self._active = None
            self._no_active.set()
        status = _val(getattr(response, "status", ""))
        details = getattr(response, "status_details", None)
        if status == "failed":
            err = getattr(details, "error", None)
            self.transcript.error(
                f"the response failed: {getattr(err, 'message', None) or err or 'no details'}"
            )
        if resp is not None and resp.calls and status != "cancelled":
            task = asyncio.create_task(self._run_tools(resp.calls), name="vlrun-tools")
            self._tool_tasks.add(task)
            task.add_done_callback(self._tool_done)
        elif status in ("completed", "failed", "incomplete") or (resp is not None and resp.muted):
            self._awaiting_reply = False
        self._poke_idle()

    def _tool_done(self, task: asyncio.Task[None]) -> None:
        self._tool_tasks.discard(task)
        self._poke_idle()

    def _finish_interrupted_text(self) -> None:
        """Record what the user saw of a reply that was cut off (barge-in or a drop)."""
        streaming = self.transcript._streaming
        if streaming is not None:
            self.transcript.assistant_done(streaming, "", interrupted=True)

    # ---------------------------------------------------------------- tools

    async def _run_tools(self, calls: list[tuple[str, str, str]]) -> None:
        from azure.ai.voicelive.models import FunctionCallOutputItem

        if self.registry is None:
            results = [_no_registry_result(c) for c in calls]
        else:
            from runner.plugins import ToolContext

            context = ToolContext(
                session_id=self.session_id,
                profile_name=self.profile_name,
                vars=self.profile_vars,
                logger=logging.getLogger("runner.tools"),
                say_handler=self._tool_says,
            )
            results = await self.registry.dispatch_many(
                calls, context=context, timeout_s=self.tool_timeouts
            )
        for r in results:
            self.transcript.tool_result(
                r.call_id, r.name, r.ok, r.output if r.ok else (r.error or r.output), r.duration_s
            )
        try:
            for r in results:
                item = FunctionCallOutputItem(call_id=r.call_id, output=r.output)
                await self._send({"type": "conversation.item.create", "item": item.as_dict()})
            await self._wait_until(lambda: self._active is None and not self._requested)
            await self._send({"type": "response.create"})
        except _Drop:
            self.transcript.warning("the connection dropped before the tool results were sent")

    async def _tool_says(self, context: Any, text: str) -> None:
        self.transcript.notice(f"{context.tool_name}: {text}")

    async def _answer_approval(self, item: Any) -> None:
        from azure.ai.voicelive.models import MCPApprovalResponseRequestItem

        from runner.mcp import decide

        label, name = str(item.server_label), str(item.name)
        decision = decide(self.mcp_policies.get(label), label, name)
        if decision == "ask":
            if not (self.read_lines and sys.stdin.isatty()):
                decision = "deny"
                self.transcript.notice(f"MCP {label}.{name}: approval needs a person; denied")
            else:
                loop = asyncio.get_running_loop()
                self._question = loop.create_future()
                self.transcript.banner(f"approve MCP call {label}.{name}({item.arguments})? [y/N]")
                answer = await self._question
                self._question = None
                decision = "approve" if answer.lower() in ("y", "yes") else "deny"
        self.transcript.conv_note(f"MCP {label}.{name}: {decision}")
        reply = MCPApprovalResponseRequestItem(
            approval_request_id=str(item.id), approve=decision == "approve"
        )
        await self._send({"type": "conversation.item.create", "item": reply.as_dict()})


# -------------------------------------------------------------------- helpers


def profile_settings(profile: Any) -> dict[str, Any]:
    """The LiveSession keyword arguments that come from a profile (tool timeouts, MCP policy)."""
    default = float(getattr(profile, "tool_timeout_s", 10.0) or 10.0)
    timeouts = {b.name: float(b.timeout_s or default) for b in getattr(profile, "tools", ())}
    return {
        "tool_timeouts": timeouts or default,
        "mcp_policies": {s.label: s.approval for s in getattr(profile, "mcp_servers", ())},
        "profile_name": str(profile.name),
        "profile_vars": dict(getattr(profile, "vars", {}) or {}),
    }


def session_differences(
    sent: Mapping[str, Any], received: Mapping[str, Any], path: str = "session"
) -> list[str]:
    """Fields of ``sent`` that ``received`` lacks or holds with another value, one line each."""
    out: list[str] = []
    for key, want in sent.items():
        if key in _IGNORED_DIFF_KEYS and path == "session":
            continue
        where = f"{path}.{key}"
        if key not in received or (received[key] is None and want is not None):
            out.append(f"the service dropped {where} (sent {_short(want)})")
            continue
        got = received[key]
        if isinstance(want, Mapping) and isinstance(got, Mapping):
            out.extend(session_differences(want, got, where))
        elif key == "voice" and isinstance(want, str) and isinstance(got, Mapping):
            if got.get("name") != want:
                out.append(f"the service rewrote {where}: sent {_short(want)}, got {_short(got)}")
        elif key == "tools" and isinstance(want, list) and isinstance(got, list):
            names = {t.get("name") or t.get("server_label") for t in got if isinstance(t, Mapping)}
            for tool in want:
                name = tool.get("name") or tool.get("server_label")
                if name not in names:
                    out.append(f"the service dropped tool {name!r}")
        elif not _same(want, got):
            out.append(f"the service rewrote {where}: sent {_short(want)}, got {_short(got)}")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) < 1e-6
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            (not session_differences(x, y, ""))
            if isinstance(x, Mapping) and isinstance(y, Mapping)
            else _same(x, y)
            for x, y in zip(a, b, strict=True)
        )
    return bool(a == b)


def _raw_socket(conn: Any) -> Any:
    """The aiohttp WebSocket inside an SDK connection, or None if this SDK keeps it elsewhere."""
    from aiohttp import ClientWebSocketResponse

    ws = getattr(conn, "_connection", None)
    return ws if isinstance(ws, ClientWebSocketResponse) else None


class _RawEvent(dict):  # type: ignore[type-arg]
    """A server event's JSON object read like an SDK model: a missing field is None."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def _val(value: Any) -> str:
    """Wire string of an SDK enum or plain string (``str()`` of an enum is its class name)."""
    return str(getattr(value, "value", value) or "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _as_dict(model: Any) -> dict[str, Any]:
    if isinstance(model, Mapping):
        return dict(model)
    as_dict = getattr(model, "as_dict", None)
    if as_dict is None:
        return {}
    try:
        return dict(as_dict())
    except Exception:  # a model the SDK cannot serialise back; the trace is best-effort
        return {"type": str(getattr(model, "type", "?"))}


def _no_registry_result(call: tuple[str, str, str]) -> Any:
    from runner.plugins import ToolResult

    name, call_id, _ = call
    output = '{"error": {"type": "unknown_tool", "message": "no tools are loaded"}}'
    return ToolResult(call_id, name, False, output, "no tools are loaded", 0.0)


def _start_line_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin on a daemon thread (a blocking read cannot be cancelled) and hand lines over."""

    def reader() -> None:
        stream = sys.stdin
        try:
            for line in stream:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)

    if sys.stdin is None:
        queue.put_nowait(None)
        return
    threading.Thread(target=reader, name="vlrun-stdin", daemon=True).start()
