"""One emulated Voice Live session: the state machine behind one WebSocket connection.

The reader loop handles client events in order and never waits on a response: responses run
as a task so ``response.cancel``, barge-in and truncation arrive while audio is streaming.
Every server event goes through :meth:`Connection.send`, where faults apply and the event is
recorded for tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from runner.emulator import protocol as P
from runner.emulator.faults import Faults
from runner.emulator.model import Plan, Script, ScriptedModel, ToolCall
from runner.emulator.speech import g711_decode, g711_encode, synthesize
from runner.emulator.vad import EnergyVad

log = logging.getLogger(__name__)

AUDIO_CHUNK_MS = 100  # size of each response.audio.delta (the service's size is undocumented)
MIN_COMMIT_MS = 100  # OpenAI-beta: commits with less audio are input_audio_buffer_commit_empty

CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)


@dataclass
class SessionRecord:
    """What tests see of one connection: every event both ways, in order."""

    number: int
    query: dict[str, str]
    headers: dict[str, str]
    id: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    stats: dict[str, float] = field(
        default_factory=lambda: {
            "frames": 0,
            "max_lag_ms": 0.0,
            "probes": 0,
            "max_probe_lag_ms": 0.0,
            "probes_over_50ms": 0,
            "probes_over_100ms": 0,
        }
    )

    def sent_types(self) -> list[str]:
        return [e["type"] for e in self.sent]


@dataclass
class _Response:
    id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    task: asyncio.Task[None] | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    audio_item: str | None = None
    audio_started: float | None = None
    audio_sent_ms: float = 0.0


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        record: SessionRecord,
        *,
        api_version: str,
        model: str | None,
        agent: dict[str, Any] | None,
        script: Script | None,
        speed: float,
        faults: Faults | None,
        session_limit_s: float,
        use_espeak: bool,
        record_audio: bool,
        on_client_event: Callable[[], None],
    ) -> None:
        self.ws, self.record = ws, record
        self.api_version, self.speed = api_version, speed
        self.faults = faults if faults is not None and faults.applies_to(record.number) else None
        self.session_limit_s, self.use_espeak, self.record_audio = (
            session_limit_s,
            use_espeak,
            record_audio,
        )
        self._notify = on_client_event
        sid = P.new_id("sess")
        record.id = sid
        self.session = P.default_session(
            model, api_version, sid, int(time.time() + session_limit_s), agent
        )
        self.model = ScriptedModel(script)
        self.items: dict[str, dict[str, Any]] = {}
        self.last_item_id: str | None = None
        self.vad: EnergyVad | None = None
        self._vad_key: tuple[Any, ...] | None = None
        self.manual_ms = 0.0  # uncommitted audio in manual mode
        self.speech_item: str | None = None
        self.speech_start_ms = 0
        self.user_turns = 0
        self.pending_input: list[dict[str, Any]] = []
        self.tool_outputs: list[dict[str, Any]] = []
        self.open_calls: dict[str, str] = {}  # call_id -> tool name
        self.mcp_listed: set[str] = set()
        self.mcp_approvals: dict[str, dict[str, Any]] = {}
        self.mcp_approved: list[dict[str, Any]] = []
        self.mcp_results: list[dict[str, Any]] = []
        self.active: _Response | None = None
        self.last_task: asyncio.Task[None] | None = None
        self.voice_locked = False
        self._send_lock = asyncio.Lock()
        self._sent_count = 0
        self._dropped = False
        self._first_audio_at: float | None = None
        self._audio_ms_in = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- plumbing ---------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def send(self, event: dict[str, Any]) -> None:
        if self._dropped or self.ws.closed:
            return
        event.setdefault("event_id", P.new_id("event"))
        faults = self.faults
        async with self._send_lock:
            if (
                faults
                and faults.delay_ms
                and (not faults.delay_types or event["type"] in faults.delay_types)
            ):
                await asyncio.sleep(faults.delay_ms / 1000)
            if self._dropped or self.ws.closed:
                return
            text = json.dumps(event)
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            # a snapshot: items are mutated later (status, transcript) and tests read history
            if self.record_audio:
                self.record.sent.append(json.loads(text))
            elif event["type"] != "response.audio.delta":
                self.record.sent.append(event)
            self._sent_count += 1
            if faults is None:
                return
            if (
                faults.error_after_events is not None
                and self._sent_count == faults.error_after_events
            ):
                err = P.error_event(faults.error_code, faults.error_message, kind="server_error")
                await self.ws.send_str(json.dumps(err))
                self.record.sent.append(err)
            if (
                faults.drop_after_events is not None
                and self._sent_count >= faults.drop_after_events
            ):
                await self._drop()

    async def _drop(self) -> None:
        """The fault 'connection lost': a close frame with the given code, or a cut socket."""
        if self._dropped:
            return
        self._dropped = True
        code = self.faults.close_code if self.faults else None
        if code is not None:
            await self.ws.close(code=code, message=b"emulator fault")
        else:
            transport = self.ws._req.transport if self.ws._req is not None else None  # noqa: SLF001
            if transport is not None:
                transport.abort()

    async def error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        client_event: dict[str, Any] | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        event_id = client_event.get("event_id") if isinstance(client_event, dict) else None
        await self.send(
            P.error_event(code, message, param=param, client_event_id=event_id, kind=kind)
        )

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.session})
        self._configure_vad()
        timers = [self._spawn(self._expire())]
        if self.faults and self.faults.drop_at_s is not None:
            timers.append(self._spawn(self._drop_later(self.faults.drop_at_s)))
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.error(
                        "invalid_value",
                        "Binary frames are not supported; send each event as a JSON text frame.",
                    )
                else:
                    break
        finally:
            for task in list(self._tasks):
                task.cancel()
            self.record.closed = True
            self.record.close_code = self.ws.close_code

    async def _drop_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._drop()

    async def _expire(self) -> None:
        # Open question 9: what the service does at the limit. OpenAI sends session_expired
        # and closes; the emulator does the same with close code 1000.
        await asyncio.sleep(self.session_limit_s)
        minutes = self.session_limit_s / 60
        await self.error(
            "session_expired", f"Your session hit the maximum duration of {minutes:g} minutes."
        )
        await self.ws.close(code=1000, message=b"session expired")

    async def _on_text(self, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError as exc:
            await self.error("invalid_json", f"The event is not valid JSON: {exc}.")
            return
        if not isinstance(event, dict):
            await self.error("invalid_json", "The event must be a JSON object.")
            return
        etype = event.get("type")
        if etype == "input_audio_buffer.append" and not self.record_audio:
            # long runs (CLI, benchmarks): one kept dict per 20 ms frame would grow without
            # bound and make every full garbage collection slower, so appends are only counted
            self.record.stats["appends"] = self.record.stats.get("appends", 0) + 1
        else:
            self.record.received.append(event)
            self._notify()
        if not isinstance(etype, str):
            await self.error(
                "missing_required_parameter",
                "Missing required parameter: 'type'.",
                param="type",
                client_event=event,
            )
            return
        faults = self.faults
        if faults and faults.error_on_client_event == etype:
            await self.error(
                faults.error_code, faults.error_message, client_event=event, kind="server_error"
            )
        handler = self._handlers.get(etype)
        if handler is None:
            await self.error(
                "invalid_value",
                f"Invalid value: '{etype}'. Supported values are: "
                + ", ".join(f"'{t}'" for t in CLIENT_EVENTS)
                + ".",
                param="type",
                client_event=event,
            )
            return
        try:
            await handler(self, event)
        except Exception as exc:  # noqa: BLE001 - a client frame must never kill the session
            log.exception("emulator failed on %s", etype)
            await self.error(
                "server_error",
                f"[emulator] could not process {etype}: {exc!r}.",
                client_event=event,
                kind="server_error",
            )

    # --- session ----------------------------------------------------------------------------------

    async def _session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if update is None:
            await self.error(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                param="session",
                client_event=event,
            )
            return
        new, errors = P.apply_session_update(
            self.session, update, self.api_version, voice_locked=self.voice_locked
        )
        if errors:
            for err in errors:
                await self.error(err.code, err.message, param=err.param, client_event=event)
            return
        self.session = new
        self._configure_vad()
        await self.send({"type": "session.updated", "session": self.session})
        await self._list_mcp_tools()

    def _configure_vad(self) -> None:
        td = self.session.get("turn_detection")
        rate = self._input_rate()
        if td is None:
            self.vad, self._vad_key = None, None
            return
        key = (
            rate,
            td.get("threshold", 0.5),
            td.get("prefix_padding_ms", 300),
            td.get("silence_duration_ms", 500),
            td.get("speech_duration_ms", 80),
        )
        if key == self._vad_key and self.vad is not None:
            return
        position = self.vad.position_ms if self.vad else int(self._audio_ms_in)
        self.vad = EnergyVad(
            rate,
            threshold=key[1],
            prefix_padding_ms=key[2],
            silence_duration_ms=key[3],
            speech_duration_ms=key[4],
        )
        self.vad.windows_seen = position // 10  # keep the session audio clock running
        self._vad_key = key

    def _input_rate(self) -> int:
        if str(self.session.get("input_audio_format", "pcm16")).startswith("g711"):
            return 8000
        return int(self.session.get("input_audio_sampling_rate") or 24000)

    async def _list_mcp_tools(self) -> None:
        # Open question 7: order of the item vs in_progress; the item comes first here.
        for tool in self.session.get("tools") or []:
            if tool.get("type") != "mcp" or tool.get("server_label") in self.mcp_listed:
                continue
            self.mcp_listed.add(tool["server_label"])
            item = {
                "id": P.new_id("item"),
                "object": "realtime.item",
                "type": "mcp_list_tools",
                "server_label": tool["server_label"],
                "tools": self.model.mcp_tool_list(tool),
            }
            await self._add_item(item)
            await self.send({"type": "mcp_list_tools.in_progress", "item_id": item["id"]})
            await self.send({"type": "mcp_list_tools.completed", "item_id": item["id"]})

    # --- input audio ------------------------------------------------------------------------------

    async def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            await self.error(
                "missing_required_parameter",
                "Missing required parameter: 'audio'.",
                param="audio",
                client_event=event,
            )
            return
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            await self.error(
                "invalid_value",
                "Invalid 'audio': the value is not valid base64.",
                param="audio",
                client_event=event,
            )
            return
        fmt = self.session.get("input_audio_format", "pcm16")
        if fmt == "g711_ulaw":
            samples = g711_decode(data, "ulaw")
        elif fmt == "g711_alaw":
            samples = g711_decode(data, "alaw")
        else:
            samples = np.frombuffer(data[: len(data) // 2 * 2], dtype=np.int16)
            ec = self.session.get("input_audio_echo_cancellation") or {}
            if ec.get("channels") == 2:
                samples = samples[::2]  # channel 0 is the microphone, 1 the speaker reference
        ms = samples.size * 1000 / self._input_rate()
        self._track_lag(ms, event.get("event_id"))
        if self.vad is None:
            self.manual_ms += ms
            return
        for vad_event in self.vad.feed(samples):
            if vad_event.kind == "started":
                await self._speech_started(vad_event.ms)
            else:
                await self._speech_stopped(vad_event.ms)

    def _track_lag(self, ms: float, event_id: Any) -> None:
        """Server-side lag for benchmarks, two ways.

        ``max_lag_ms``: how far processing trails the audio clock since the first frame.
        Probes: a client may name an append ``lagprobe-<time.monotonic_ns()>`` (the monotonic
        clock is machine-wide on Linux); the time from sending to processing it is recorded.
        """
        now = time.monotonic()
        stats = self.record.stats
        if isinstance(event_id, str) and event_id.startswith("lagprobe-"):
            with contextlib.suppress(ValueError):
                probe = (time.monotonic_ns() - int(event_id[9:])) / 1e6
                stats["probes"] += 1
                stats["max_probe_lag_ms"] = max(stats["max_probe_lag_ms"], probe)
                stats["probes_over_50ms"] += probe > 50
                stats["probes_over_100ms"] += probe > 100
        if self._first_audio_at is None:
            self._first_audio_at = now
        lag = (now - self._first_audio_at) * 1000 - self._audio_ms_in
        self._audio_ms_in += ms
        stats["frames"] += 1
        if lag > stats["max_lag_ms"]:
            stats["max_lag_ms"] = lag

    async def _speech_started(self, start_ms: int) -> None:
        self.speech_item, self.speech_start_ms = P.new_id("item"), start_ms
        await self.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": start_ms,
                "item_id": self.speech_item,
            }
        )
        td = self.session.get("turn_detection") or {}
        if self.active is not None and td.get("interrupt_response", True):
            await self._cancel(self.active, "turn_detected", truncate=bool(td.get("auto_truncate")))

    async def _speech_stopped(self, end_ms: int) -> None:
        item_id = self.speech_item or P.new_id("item")
        self.speech_item = None
        await self.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": end_ms,
                "item_id": item_id,
            }
        )
        await self._commit_audio(item_id, end_ms - self.speech_start_ms)
        td = self.session.get("turn_detection") or {}
        # with interrupt_response false a reply may still be running: it is not doubled up
        if td.get("create_response", True) and self.active is None:
            await self._start_response({}, None)

    async def _commit(self, event: dict[str, Any]) -> None:
        if self.vad is not None and self.vad.in_speech:
            ms = self.vad.position_ms - self.speech_start_ms
            self.vad.reset_speech()
            item_id = self.speech_item or P.new_id("item")
            self.speech_item = None
        else:
            ms, item_id = int(self.manual_ms), P.new_id("item")
        if ms < MIN_COMMIT_MS:
            await self.error(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at "
                f"least {MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                client_event=event,
            )
            return
        self.manual_ms = 0.0
        await self._commit_audio(item_id, int(ms))

    async def _commit_audio(self, item_id: str, ms: float) -> None:
        self.user_turns += 1
        turn = self.user_turns
        transcript = self.model.audio_transcript(turn)
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": self.last_item_id,
                "item_id": item_id,
            }
        )
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._add_item(item)
        self.pending_input.append({"turn": turn, "text": transcript, "audio_ms": int(ms)})
        if self.session.get("input_audio_transcription"):
            text = (
                transcript if transcript is not None else f"[emulator: {ms / 1000:.1f} s of speech]"
            )
            item["content"][0]["transcript"] = text
            self._spawn(self._transcribe(item_id, text))

    async def _transcribe(self, item_id: str, text: str) -> None:
        words = text.split(" ")
        for i, word in enumerate(words):
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": word if i == 0 else " " + word,
                }
            )
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
            }
        )

    async def _clear(self, event: dict[str, Any]) -> None:
        self.manual_ms = 0.0
        if self.vad is not None:
            self.vad.reset_speech()
        self.speech_item = None
        await self.send({"type": "input_audio_buffer.cleared"})

    # --- conversation -----------------------------------------------------------------------------

    async def _add_item(self, item: dict[str, Any], previous: str | None = None) -> None:
        prev = previous if previous is not None else self.last_item_id
        self.items[item["id"]] = item
        self.last_item_id = item["id"]
        await self.send(
            {"type": "conversation.item.created", "previous_item_id": prev, "item": item}
        )

    async def _item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            await self.error(
                "missing_required_parameter",
                "Missing required parameter: 'item'.",
                param="item",
                client_event=event,
            )
            return
        prev = event.get("previous_item_id")
        if prev is not None and prev != "root" and prev not in self.items:
            await self.error(
                "item_not_found",
                f"Item with id '{prev}' not found.",
                param="previous_item_id",
                client_event=event,
            )
            return
        kind = item.get("type")
        stored = {**item, "id": item.get("id") or P.new_id("item"), "object": "realtime.item"}
        if stored["id"] in self.items:
            await self.error(
                "item_already_exists",
                f"Item with id '{stored['id']}' already exists.",
                param="item.id",
                client_event=event,
            )
            return
        if kind == "message":
            if item.get("role") not in ("user", "assistant", "system"):
                await self.error(
                    "invalid_value",
                    "Invalid value for 'item.role': expected 'user', 'assistant' or 'system'.",
                    param="item.role",
                    client_event=event,
                )
                return
            stored.setdefault("status", "completed")
            if item["role"] == "user":
                self.user_turns += 1
                text = " ".join(
                    str(c.get("text") or c.get("transcript") or "")
                    for c in item.get("content") or []
                    if isinstance(c, dict)
                ).strip()
                audio = [
                    c
                    for c in item.get("content") or []
                    if isinstance(c, dict) and c.get("type") == "input_audio"
                ]
                if not text and len(audio) == 1 and audio[0].get("audio"):
                    text = self.model.audio_transcript(self.user_turns) or ""
                self.pending_input.append(
                    {
                        "turn": self.user_turns,
                        "text": text or None,
                        "audio_ms": sum(self._audio_item_ms(c) for c in audio) if audio else None,
                    }
                )
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not call_id or "output" not in item:
                await self.error(
                    "missing_required_parameter",
                    "Missing required parameter: 'item.call_id' or 'item.output'.",
                    param="item",
                    client_event=event,
                )
                return
            name = self.open_calls.pop(call_id, "")
            self.tool_outputs.append(
                {"name": name, "call_id": call_id, "output": str(item["output"])}
            )
        elif kind == "mcp_approval_response":
            request = self.mcp_approvals.pop(str(item.get("approval_request_id")), None)
            if request is None:
                await self.error(
                    "invalid_value",
                    "Unknown 'item.approval_request_id'.",
                    param="item.approval_request_id",
                    client_event=event,
                )
                return
            if item.get("approve"):
                self.mcp_approved.append(
                    {**request, "approval_request_id": item["approval_request_id"]}
                )
            else:
                self.mcp_results.append({**request, "output": None, "error": "not approved"})
        elif kind != "function_call":
            await self.error(
                "invalid_value",
                f"Invalid value for 'item.type': {kind!r}.",
                param="item.type",
                client_event=event,
            )
            return
        await self._add_item(stored, prev if prev not in (None, "root") else None)

    def _audio_item_ms(self, part: dict[str, Any]) -> int:
        """Duration of base64 audio inside an input_audio content part (0 if unreadable)."""
        try:
            data = base64.b64decode(str(part.get("audio") or ""), validate=True)
        except (binascii.Error, ValueError):
            return 0
        fmt = self.session.get("input_audio_format", "pcm16")
        per_second = 8000 if fmt.startswith("g711") else self._input_rate() * 2
        return len(data) * 1000 // per_second

    async def _item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.items.get(str(event.get("item_id")))
        if item is None:
            await self.error(
                "item_not_found",
                f"Item with id '{event.get('item_id')}' not found.",
                param="item_id",
                client_event=event,
            )
            return
        public = {k: v for k, v in item.items() if not k.startswith("_")}
        await self.send({"type": "conversation.item.retrieved", "item": public})

    async def _item_delete(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id"))
        if self.items.pop(item_id, None) is None:
            await self.error(
                "item_not_found",
                f"Item with id '{item_id}' not found.",
                param="item_id",
                client_event=event,
            )
            return
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = str(event.get("item_id")), event.get("audio_end_ms")
        item = self.items.get(item_id)
        if item is None or item.get("role") != "assistant":
            await self.error(
                "item_not_found",
                f"Assistant message item '{item_id}' not found.",
                param="item_id",
                client_event=event,
            )
            return
        length = item.get("_audio_ms", 0)
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0 or end_ms > length:
            await self.error(
                "invalid_value",
                f"Audio content of {length}ms is shorter than {end_ms}ms.",
                param="audio_end_ms",
                client_event=event,
            )
            return
        await self._truncate(item, end_ms, event.get("content_index", 0))

    async def _truncate(self, item: dict[str, Any], end_ms: int, content_index: int = 0) -> None:
        for part in item.get("content") or []:
            if part.get("type") == "audio":
                part["transcript"] = None  # the service drops the text of a truncated reply
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item["id"],
                "content_index": content_index,
                "audio_end_ms": end_ms,
            }
        )

    async def _output_clear(self, event: dict[str, Any]) -> None:
        await self.send({"type": "output_audio_buffer.cleared"})

    # --- responses --------------------------------------------------------------------------------

    async def _response_create(self, event: dict[str, Any]) -> None:
        if self.active is not None:
            await self.error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished before "
                "creating a new one.",
                client_event=event,
            )
            return
        params = event.get("response") or {}
        if not isinstance(params, dict):
            await self.error(
                "invalid_type",
                "Invalid type for 'response': expected an object.",
                param="response",
                client_event=event,
            )
            return
        await self._start_response(params, event)

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        active = self.active
        wanted = event.get("response_id")
        if active is None or (wanted and wanted != active.id):
            await self.error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                client_event=event,
            )
            return
        await self._cancel(active, "client_cancelled", truncate=False)

    async def _cancel(self, response: _Response, reason: str, *, truncate: bool) -> None:
        response.cancel_reason = reason
        response.wake.set()
        self.active = None  # a new response may start; it waits for this one's done events
        if truncate and response.audio_item and response.audio_started is not None:
            item = self.items.get(response.audio_item)
            if item is not None:
                played = (time.monotonic() - response.audio_started) * 1000 * self._pace()
                await self._truncate(item, int(min(played, response.audio_sent_ms)))

    def _pace(self) -> float:
        return self.speed if self.speed > 0 else math.inf

    async def _start_response(self, params: dict[str, Any], event: dict[str, Any] | None) -> None:
        plan = self._plan(params)
        response = _Response(P.new_id("resp"))
        previous, self.active = self.last_task, response
        response.task = self.last_task = self._spawn(
            self._respond(response, plan, params, previous)
        )

    def _plan(self, params: dict[str, Any]) -> Plan:
        pre = params.get("pre_generated_assistant_message")
        if isinstance(pre, dict):
            texts = [c.get("text", "") for c in pre.get("content") or [] if isinstance(c, dict)]
            return Plan(say=" ".join(texts))
        if self.mcp_approved:
            call = self.mcp_approved.pop(0)
            return Plan(mcp={**call, "approved": True})
        if self.mcp_results:
            done, self.mcp_results = self.mcp_results, []
            said = "; ".join(
                f"{r['name']} on {r['server_label']} "
                + (
                    f"returned {r['output']}"
                    if r.get("output") is not None
                    else f"failed: {r['error']}"
                )
                for r in done
            )
            return Plan(say=f"[emulator] {said}")
        if self.model.waiting_for_tools and self.tool_outputs:
            outputs, self.tool_outputs = self.tool_outputs, []
            self.pending_input.clear()
            return self.model.plan_followup(outputs)
        self.tool_outputs = []
        if self.pending_input:
            last = self.pending_input[-1]
            self.pending_input.clear()
            return self.model.plan_turn(last["turn"], last["text"], last["audio_ms"], self.session)
        return self.model.plan_turn(0, None, None, self.session)

    async def _wait(self, response: _Response, seconds: float) -> bool:
        """Pace output; returns False as soon as the response is cancelled."""
        if response.cancel_reason:
            return False
        if seconds <= 0:
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(response.wake.wait(), seconds)
        return response.cancel_reason is None

    def _shape(self, params: dict[str, Any]) -> dict[str, Any]:
        """Response-level overrides of session settings."""
        s = self.session
        return {
            "modalities": params.get("modalities") or s.get("modalities") or ["text", "audio"],
            "voice": params.get("voice") or s.get("voice"),
            "output_audio_format": params.get("output_audio_format")
            or s.get("output_audio_format", "pcm16"),
            "temperature": params.get("temperature", s.get("temperature")),
            "max_output_tokens": params.get(
                "max_output_tokens",
                params.get(
                    "max_response_output_tokens", s.get("max_response_output_tokens", "inf")
                ),
            ),
            "metadata": params.get("metadata"),
        }

    async def _respond(
        self,
        response: _Response,
        plan: Plan,
        params: dict[str, Any],
        previous: asyncio.Task[None] | None,
    ) -> None:
        try:
            await self._respond_inner(response, plan, params, previous)
        except Exception as exc:  # noqa: BLE001 - keep the session usable after an emulator bug
            log.exception("emulator response failed")
            if self.active is response:
                self.active = None
            err = {"type": "server_error", "code": "server_error", "message": f"[emulator] {exc!r}"}
            await self.send(
                {
                    "type": "response.done",
                    "response": {
                        "id": response.id,
                        "object": "realtime.response",
                        "status": "failed",
                        "status_details": {"type": "failed", "error": err},
                        "output": response.output,
                        "usage": None,
                    },
                }
            )

    async def _respond_inner(
        self,
        response: _Response,
        plan: Plan,
        params: dict[str, Any],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        shape = self._shape(params)
        body: dict[str, Any] = {
            "id": response.id,
            "object": "realtime.response",
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "usage": None,
            "conversation_id": None,
            **shape,
        }
        await self.send({"type": "response.created", "response": dict(body)})
        await self.send(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 60.0},
                    {"name": "tokens", "limit": 120000, "remaining": 119000, "reset_seconds": 60.0},
                ],
            }
        )
        failed: dict[str, Any] | None = None
        out_text = out_audio_ms = 0
        if plan.error is not None:
            err = {
                "type": plan.error.get("type", "server_error"),
                "code": plan.error.get("code", "server_error"),
                "message": plan.error["message"],
                "param": None,
                "event_id": None,
            }
            await self.send({"type": "error", "error": err})
            if plan.say is None and not plan.calls and plan.mcp is None:
                failed = err
        if plan.delay_ms and failed is None:
            await self._wait(response, plan.delay_ms / 1000 / self._pace())
        if failed is None and plan.say is not None and response.cancel_reason is None:
            out_text, out_audio_ms = await self._say(response, plan.say, shape)
        for call in plan.calls if failed is None else ():
            if response.cancel_reason is not None:
                break
            await self._function_call(response, call)
        if failed is None and plan.mcp is not None and response.cancel_reason is None:
            await self._mcp(response, dict(plan.mcp))
        if response.cancel_reason is not None:
            status = "cancelled"
            details: dict[str, Any] | None = {"type": "cancelled", "reason": response.cancel_reason}
        elif failed is not None:
            status, details = "failed", {"type": "failed", "error": failed}
        else:
            status, details = "completed", None
        if self.active is response:
            self.active = None
        body.update(
            status=status,
            status_details=details,
            output=response.output,
            usage=P.usage(20, 0, max(1, out_text // 4), out_audio_ms // 50),
        )
        await self.send({"type": "response.done", "response": body})

    async def _say(self, response: _Response, text: str, shape: dict[str, Any]) -> tuple[int, int]:
        audio = "audio" in shape["modalities"]
        index = len(response.output)
        item: dict[str, Any] = {
            "id": P.new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        base = {"response_id": response.id, "item_id": item["id"], "output_index": index}
        await self._output_item("added", response, index, dict(item, content=[]))
        await self._add_item(item)
        empty = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        await self.send(
            {"type": "response.content_part.added", **base, "content_index": 0, "part": empty}
        )
        words = text.split(" ")
        said: list[str] = []
        audio_ms = 0
        if audio:
            fmt = shape["output_audio_format"]
            rate = P.OUTPUT_RATES.get(fmt, 24000)
            pcm = await synthesize(text, rate, use_espeak=self.use_espeak)
            chunk = rate * 2 * AUDIO_CHUNK_MS // 1000
            chunks = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)] or [b""]
            response.audio_item, item["_audio_ms"] = item["id"], 0
            start = time.monotonic()
            response.audio_started = start
            self.voice_locked = True
            for k, piece in enumerate(chunks):
                due = math.ceil((k + 1) * len(words) / len(chunks))
                while len(said) < due:
                    delta = words[len(said)] if not said else " " + words[len(said)]
                    said.append(words[len(said)])
                    await self.send(
                        {
                            "type": "response.audio_transcript.delta",
                            **base,
                            "content_index": 0,
                            "delta": delta,
                        }
                    )
                wire = g711_encode(piece, fmt[5:]) if fmt.startswith("g711") else piece
                await self.send(
                    {
                        "type": "response.audio.delta",
                        **base,
                        "content_index": 0,
                        "delta": base64.b64encode(wire).decode("ascii"),
                    }
                )
                piece_ms = len(piece) * 1000 // (rate * 2)
                audio_ms += piece_ms
                response.audio_sent_ms = item["_audio_ms"] = audio_ms
                ahead = start + audio_ms / 1000 / self._pace() - time.monotonic()
                if not await self._wait(response, ahead):
                    break
        else:
            for word in words:
                said.append(word)
                await self.send(
                    {
                        "type": "response.text.delta",
                        **base,
                        "content_index": 0,
                        "delta": word if len(said) == 1 else " " + word,
                    }
                )
                if not await self._wait(response, 0.05 / self._pace()):
                    break
        spoken = " ".join(said)
        if audio:
            await self.send({"type": "response.audio.done", **base, "content_index": 0})
            await self.send(
                {
                    "type": "response.audio_transcript.done",
                    **base,
                    "content_index": 0,
                    "transcript": spoken,
                }
            )
            part = {"type": "audio", "transcript": spoken}
        else:
            await self.send(
                {"type": "response.text.done", **base, "content_index": 0, "text": spoken}
            )
            part = {"type": "text", "text": spoken}
        await self.send(
            {"type": "response.content_part.done", **base, "content_index": 0, "part": part}
        )
        item["content"] = [part]
        item["status"] = "incomplete" if response.cancel_reason else "completed"
        public = {k: v for k, v in item.items() if not k.startswith("_")}
        response.output.append(public)
        await self._output_item("done", response, index, public)
        return len(spoken), audio_ms

    async def _output_item(
        self, stage: str, response: _Response, index: int, item: dict[str, Any]
    ) -> None:
        """``response.output_item.added`` or ``.done`` for the output at ``index``."""
        await self.send(
            {
                "type": f"response.output_item.{stage}",
                "response_id": response.id,
                "output_index": index,
                "item": item,
            }
        )

    async def _function_call(self, response: _Response, call: ToolCall) -> None:
        index = len(response.output)
        call_id = P.new_id("call")
        item: dict[str, Any] = {
            "id": P.new_id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
            "status": "in_progress",
        }
        await self._output_item("added", response, index, dict(item))
        await self._add_item(item)
        base = {
            "response_id": response.id,
            "item_id": item["id"],
            "output_index": index,
            "call_id": call_id,
        }
        args = call.arguments
        step = max(1, math.ceil(len(args) / 3))
        for i in range(0, len(args), step):
            await self.send(
                {
                    "type": "response.function_call_arguments.delta",
                    **base,
                    "delta": args[i : i + step],
                }
            )
        await self.send(
            {
                "type": "response.function_call_arguments.done",
                **base,
                "name": call.name,
                "arguments": args,
            }
        )
        item.update(arguments=args, status="completed")
        self.open_calls[call_id] = call.name
        response.output.append(dict(item))
        await self._output_item("done", response, index, dict(item))

    def _approval_needed(self, label: str, name: str) -> bool:
        tool = next(
            (
                t
                for t in self.session.get("tools") or []
                if t.get("type") == "mcp" and t.get("server_label") == label
            ),
            None,
        )
        policy = (tool or {}).get("require_approval", "always")
        if isinstance(policy, dict):
            return name not in (policy.get("never") or [])
        return policy != "never"

    async def _mcp(self, response: _Response, call: dict[str, Any]) -> None:
        index = len(response.output)
        label, name = call["server_label"], call["name"]
        args = json.dumps(call.get("arguments") or {})
        if not call.get("approved") and self._approval_needed(label, name):
            item = {
                "id": P.new_id("item"),
                "object": "realtime.item",
                "type": "mcp_approval_request",
                "server_label": label,
                "name": name,
                "arguments": args,
            }
            await self._output_item("added", response, index, item)
            await self._add_item(item)
            self.mcp_approvals[item["id"]] = {k: v for k, v in call.items() if k != "approved"}
            response.output.append(item)
            await self._output_item("done", response, index, item)
            return
        item = {
            "id": P.new_id("item"),
            "object": "realtime.item",
            "type": "mcp_call",
            "server_label": label,
            "name": name,
            "arguments": "",
            "approval_request_id": call.get("approval_request_id"),
        }
        await self._output_item("added", response, index, dict(item))
        await self._add_item(item)
        base = {"response_id": response.id, "item_id": item["id"], "output_index": index}
        await self.send({"type": "response.mcp_call_arguments.delta", **base, "delta": args})
        await self.send({"type": "response.mcp_call_arguments.done", **base, "arguments": args})
        await self.send(
            {"type": "response.mcp_call.in_progress", "item_id": item["id"], "output_index": index}
        )
        error = call.get("error")
        output = (
            None
            if error
            else call.get("output")
            or json.dumps(
                {
                    "emulator": True,
                    "note": f"[emulator] {label}/{name} was not called; no MCP server is "
                    "contacted by the emulator",
                    "arguments": call.get("arguments") or {},
                }
            )
        )
        kind = "failed" if error else "completed"
        await self.send(
            {"type": f"response.mcp_call.{kind}", "item_id": item["id"], "output_index": index}
        )
        item.update(arguments=args, output=output, error=error)
        response.output.append(dict(item))
        self.mcp_results.append(
            {"server_label": label, "name": name, "output": output, "error": error}
        )
        await self._output_item("done", response, index, dict(item))

    _handlers: dict[str, Any] = {
        "session.update": _session_update,
        "input_audio_buffer.append": _append,
        "input_audio_buffer.commit": _commit,
        "input_audio_buffer.clear": _clear,
        "conversation.item.create": _item_create,
        "conversation.item.retrieve": _item_retrieve,
        "conversation.item.truncate": _item_truncate,
        "conversation.item.delete": _item_delete,
        "response.create": _response_create,
        "response.cancel": _response_cancel,
        "output_audio_buffer.clear": _output_clear,
    }
