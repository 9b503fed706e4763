"""One emulated Voice Live session: the state machine behind one WebSocket connection.

The reader loop handles client events in order and never waits on a response: responses run
as a task so ``response.cancel``, barge-in and truncation arrive while audio is streaming.
Every server event goes through ``send``, where faults apply and the event is
recorded for tests.

This module holds the reader loop, session.update and conversation items; the other parts live
in ``input_audio.py`` (appends, VAD, commits), ``responses.py`` (the response task and spoken
output) and ``tool_calls.py`` (function and MCP calls). ``host.py`` has what they all use:
the shared state and the plumbing (``send``, ``error``, task spawning, the dropped-link fault).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from runner import speedups
from runner.emulator import protocol as P
from runner.emulator.faults import Faults
from runner.emulator.fidelity import Fidelity
from runner.emulator.input_audio import InputAudio
from runner.emulator.model import Script, ScriptedModel
from runner.emulator.responses import Responses, _Response
from runner.emulator.session_update import apply_session_update, check_history
from runner.emulator.tool_calls import ToolCalls
from runner.emulator.vad import EnergyVad

log = logging.getLogger(__name__)

MCP_LATENCY_MS = 40.0  # one MCP network step at speed 1 (listing, a call); scaled by --speed


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
    "session.avatar.connect",
    "input_text.delta",
    "input_text.done",
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
    fidelity: list[str] = field(default_factory=list)  # keys of runner/emulator/fidelity.py
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


class Connection(InputAudio, Responses, ToolCalls):
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
        fidelity: Fidelity | None = None,
        mcp_latency_ms: float | None = None,
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
        self.fidelity = fidelity if fidelity is not None else Fidelity()
        self.configured = False  # a valid session.update has been applied
        self.client_fields: set[str] = set()  # top-level session keys the client has sent
        # an emulator option wins over the script's, which wins over the default
        scripted = script.mcp_latency_ms if script is not None else None
        self.mcp_latency_ms = next(
            v for v in (mcp_latency_ms, scripted, MCP_LATENCY_MS) if v is not None
        )
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
        self.mcp_pending = 0
        self.active: _Response | None = None
        self.last_task: asyncio.Task[None] | None = None
        self.voice_locked = False
        self._send_lock = asyncio.Lock()
        self._sent_count = 0
        self._dropped = False
        self._first_audio_at: float | None = None
        self._audio_ms_in = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()

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
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            # Owned, so awaited: a reply cancelled mid-speech reaps its espeak-ng run before
            # the connection is gone (otherwise its pipes outlive the event loop).
            await asyncio.gather(*tasks, return_exceptions=True)
            self.record.closed = True
            if self.record.close_code is None:  # set already when the emulator closed it
                self.record.close_code = self.ws.close_code

    async def inject(self, event: dict[str, Any]) -> None:
        """An event from the emulator's own side of a call (a SIP caller's words), handled as
        a client's would be but not recorded as the client's."""
        handler = self._handlers.get(str(event.get("type")))
        if handler is not None:
            await handler(self, event)

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
            event = speedups.loads(data)
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
        if handler is not None and not self.configured and etype != "session.update":
            # source: docs/emulator.md#update-first (reported: refused before a valid update)
            await self.error(
                "session_not_configured",
                f"'{etype}' was sent before the session was configured; send a valid "
                "session.update first.",
                param="type",
                client_event=event,
            )
            return
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
        new, errors = apply_session_update(
            self.session, update, self.api_version, voice_locked=self.voice_locked
        )
        notes: list[str] = []
        if isinstance(update, dict):
            later, notes = check_history(
                self.session,
                update,
                new,
                configured=self.configured,
                client_fields=self.client_fields,
            )
            errors += later
        if errors:
            for err in errors:
                await self.error(err.code, err.message, param=err.param, client_event=event)
            return
        for key in notes:
            self._fidelity(key)
        # documented partial update (SPEC ClientEventSessionUpdate): present keys replace,
        # absent keys keep their value. source: docs/emulator.md#partial-update; vlrun itself
        # always sends the whole session (docs/emulator.md#whole-session)
        self.session = new
        self.configured = True
        self.client_fields |= set(update)
        self._configure_vad()
        await self.send({"type": "session.updated", "session": self.session})
        self._list_mcp_tools()

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
                        "item_id": stored["id"],
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
            # source: docs/emulator.md#call-id-issued (issue 12/15), stricter reading: an
            # output answers a call of this connection's conversation; one for a call_id never
            # issued here (a late result from an earlier connection, a typo) is refused.
            issued = call_id in self.open_calls or any(
                i.get("type") == "function_call" and i.get("call_id") == call_id
                for i in self.items.values()
            )
            if not issued:
                await self.error(
                    "invalid_value",
                    f"Invalid value for 'item.call_id': no function call with call_id "
                    f"'{call_id}' was issued in this session.",
                    param="item.call_id",
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
                await self._add_item(stored, prev if prev not in (None, "root") else None)
                if self.active is None:
                    # source: docs/emulator.md#mcp-approved: an approved call goes on by itself
                    await self._start_response({}, None, auto=True)
                return
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

    async def _avatar_connect(self, event: dict[str, Any]) -> None:
        """source: docs/emulator.md#avatar-connect: the service's answer shape, no media.

        SDK ``ClientEventSessionAvatarConnect.client_sdp`` (required) is answered by
        ``ServerEventSessionAvatarConnecting.server_sdp``. The answer is a base64 SDP whose
        session name says it is emulated; it offers no media, so no video ever flows.
        """
        if not isinstance(event.get("client_sdp"), str) or not event["client_sdp"]:
            await self.error(
                "missing_required_parameter",
                "Missing required parameter: 'client_sdp'.",
                param="client_sdp",
                client_event=event,
            )
            return
        self._fidelity("avatar")
        sdp = (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"
            "s=[emulator] vlrun Voice Live emulator: no avatar video\r\n"
            "t=0 0\r\na=inactive\r\n"
        )
        await self.send(
            {
                "type": "session.avatar.connecting",
                "server_sdp": base64.b64encode(sdp.encode()).decode("ascii"),
            }
        )

    async def _input_text(self, event: dict[str, Any]) -> None:
        """``input_text.delta``/``.done`` (SDK ClientEventInputTextDelta/Done: ``id``,
        ``delta``, ``content_index``) stream text into an existing user message.

        source: docs/emulator.md#input-text. The finished text counts as that item's turn.
        """
        item = self.items.get(str(event.get("id")))
        if item is None or item.get("type") != "message":
            await self.error(
                "item_not_found",
                f"Item with id '{event.get('id')}' not found.",
                param="id",
                client_event=event,
            )
            return
        self._fidelity("input-text")
        index = event.get("content_index") or 0
        parts = item.setdefault("content", [])
        while len(parts) <= index:
            parts.append({"type": "input_text", "text": ""})
        if event["type"] == "input_text.delta":
            if not isinstance(event.get("delta"), str):
                await self.error(
                    "missing_required_parameter",
                    "Missing required parameter: 'delta'.",
                    param="delta",
                    client_event=event,
                )
                return
            parts[index]["text"] = str(parts[index].get("text") or "") + event["delta"]
            return
        text = " ".join(str(p.get("text") or "") for p in parts if isinstance(p, dict)).strip()
        entry = next((e for e in self.pending_input if e.get("item_id") == item["id"]), None)
        if entry is not None:
            entry["text"] = text or None
        elif item.get("role") == "user":
            self.user_turns += 1
            self.pending_input.append(
                {"turn": self.user_turns, "text": text or None, "audio_ms": None}
            )

    _handlers: dict[str, Any] = {
        "session.update": _session_update,
        "input_audio_buffer.append": InputAudio._append,
        "input_audio_buffer.commit": InputAudio._commit,
        "input_audio_buffer.clear": InputAudio._clear,
        "conversation.item.create": _item_create,
        "conversation.item.retrieve": _item_retrieve,
        "conversation.item.truncate": _item_truncate,
        "conversation.item.delete": _item_delete,
        "response.create": Responses._response_create,
        "response.cancel": Responses._response_cancel,
        "output_audio_buffer.clear": _output_clear,
        "session.avatar.connect": _avatar_connect,
        "input_text.delta": _input_text,
        "input_text.done": _input_text,
    }
