"""One emulated Voice Live session: the state machine behind one WebSocket connection.

The reader loop handles client events in order and never waits on a response: responses run
as a task so ``response.cancel``, barge-in and truncation arrive while audio is streaming.

:class:`Connection` owns the parts of a session and wires them through their constructors;
each part gets only what it uses::

    Connection ─┬─ InputAudio (input_audio.py: appends, VAD, commits)
                │     └─ uses Responses (a turn that ends starts one; speech interrupts one)
                ├─ Responses (responses.py: the response task and spoken output)
                │     └─ uses ToolCalls (function and MCP calls inside a response)
                ├─ ToolCalls (tool_calls.py)
                ├─ Conversation (conversation.py: settings, items, user turns waiting)
                └─ Outbox, Tasks (outbox.py: every server event goes through
                   ``Outbox.send``, where faults apply and the event is recorded for tests)

This module holds the reader loop, session.update and the conversation item events.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from runner import speedups
from runner.config.service import V1
from runner.emulator import protocol as P
from runner.emulator.conversation import Conversation
from runner.emulator.faults import Faults
from runner.emulator.fidelity import Fidelity
from runner.emulator.images import ImageProblem, read_image
from runner.emulator.input_audio import InputAudio
from runner.emulator.model import Script, ScriptedModel
from runner.emulator.outbox import Outbox, Tasks
from runner.emulator.pace import PaceClock
from runner.emulator.record import SessionRecord
from runner.emulator.responses import Responses
from runner.emulator.session_update import (
    apply_session_update,
    check_history,
    dated_keys,
    v1_echo,
    v1_response,
)
from runner.emulator.tool_calls import ToolCalls

__all__ = ["CLIENT_EVENTS", "MCP_LATENCY_MS", "Connection", "SessionRecord"]

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

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Connection:
    """One session on one socket: the reader loop, and the parts it hands each event to."""

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
        abort: Callable[[], None],
        fidelity: Fidelity | None = None,
        mcp_latency_ms: float | None = None,
        clock: PaceClock | None = None,
        load: bool = False,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self._ws, self._record = ws, record
        self._api_version, self._session_limit_s = api_version, session_limit_s
        self._record_audio = record_audio
        self._notify = on_client_event
        self.outbox = Outbox(
            ws,
            record,
            faults=faults,
            record_audio=record_audio,
            fidelity=fidelity if fidelity is not None else Fidelity(),
            abort=abort,
            load=load,
            transport=transport,
        )
        self._tasks = Tasks()
        self._configured = False  # a valid session.update has been applied
        self._client_fields: set[str] = set()  # top-level session keys the client has sent
        # an emulator option wins over the script's, which wins over the default
        scripted = script.mcp_latency_ms if script is not None else None
        latency = next(v for v in (mcp_latency_ms, scripted, MCP_LATENCY_MS) if v is not None)
        sid = P.new_id("sess")
        record.id = sid
        session = P.default_session(
            model, api_version, sid, int(time.time() + session_limit_s), agent
        )
        self.conversation = Conversation(self.outbox, session)
        self._model = ScriptedModel(script)
        self.tools = ToolCalls(
            self.outbox,
            self.conversation,
            self._model,
            self._tasks,
            speed=speed,
            mcp_latency_ms=latency,
        )
        self.responses = Responses(
            self.outbox,
            self.conversation,
            self._model,
            self.tools,
            self._tasks,
            speed=speed,
            use_espeak=use_espeak,
            clock=clock,
        )
        self.audio = InputAudio(
            self.outbox, self.conversation, self._model, self.responses, self._tasks, record.stats
        )
        self._handlers: dict[str, Handler] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self.audio.on_append,
            "input_audio_buffer.commit": self.audio.on_commit,
            "input_audio_buffer.clear": self.audio.on_clear,
            "conversation.item.create": self._item_create,
            "conversation.item.retrieve": self._item_retrieve,
            "conversation.item.truncate": self._item_truncate,
            "conversation.item.delete": self._item_delete,
            "response.create": self._response_create,
            "response.cancel": self.responses.on_cancel,
            "output_audio_buffer.clear": self._output_clear,
            "session.avatar.connect": self._avatar_connect,
            "input_text.delta": self._input_text,
            "input_text.done": self._input_text,
        }

    async def send(self, event: dict[str, Any]) -> None:
        """A server event from the emulator's own side (a SIP call's ``realtime.call.*``)."""
        await self.outbox.send(event)

    async def run(self) -> None:
        await self.outbox.send({"type": "session.created", "session": self._echo()})
        self.audio.configure_vad()
        faults = self.outbox.faults
        self._tasks.spawn(self._expire())
        if faults and faults.drop_at_s is not None:
            self._tasks.spawn(self._drop_later(faults.drop_at_s))
        try:
            async for msg in self._ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.outbox.error(
                        "invalid_value",
                        "Binary frames are not supported; send each event as a JSON text frame.",
                    )
                else:
                    break
        finally:
            await self._tasks.close()
            self._record.closed = True
            if self._record.close_code is None:  # set already when the emulator closed it
                self._record.close_code = self._ws.close_code

    async def inject(self, event: dict[str, Any]) -> None:
        """An event from the emulator's own side of a call (a SIP caller's words), handled as
        a client's would be but not recorded as the client's."""
        handler = self._handlers.get(str(event.get("type")))
        if handler is not None:
            await handler(event)

    async def _drop_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.outbox.drop()

    async def _expire(self) -> None:
        # Open question 9: what the service does at the limit. OpenAI sends session_expired
        # and closes; the emulator does the same with close code 1000.
        await asyncio.sleep(self._session_limit_s)
        minutes = self._session_limit_s / 60
        await self.outbox.error(
            "session_expired", f"Your session hit the maximum duration of {minutes:g} minutes."
        )
        await self._ws.close(code=1000, message=b"session expired")

    async def _on_text(self, data: str) -> None:
        try:
            event = speedups.loads(data)
        except ValueError as exc:
            await self.outbox.error("invalid_json", f"The event is not valid JSON: {exc}.")
            return
        if not isinstance(event, dict):
            await self.outbox.error("invalid_json", "The event must be a JSON object.")
            return
        etype = event.get("type")
        if self.outbox.load:
            pass  # benchmark load mode: no history (wait_for sees nothing), nothing counted
        elif etype == "input_audio_buffer.append" and not self._record_audio:
            # long runs (CLI, benchmarks): one kept dict per 20 ms frame would grow without
            # bound and make every full garbage collection slower, so appends are only counted
            self._record.stats["appends"] = self._record.stats.get("appends", 0) + 1
        else:
            self._record.received.append(event)
            self._notify()
        if not isinstance(etype, str):
            await self.outbox.error(
                "missing_required_parameter",
                "Missing required parameter: 'type'.",
                param="type",
                client_event=event,
            )
            return
        faults = self.outbox.faults
        if faults and faults.error_on_client_event == etype:
            await self.outbox.error(
                faults.error_code, faults.error_message, client_event=event, kind="server_error"
            )
        handler = self._handlers.get(etype)
        if handler is not None and not self._configured and etype != "session.update":
            # source: docs/emulator.md#update-first (reported: refused before a valid update)
            await self.outbox.error(
                "session_not_configured",
                f"'{etype}' was sent before the session was configured; send a valid "
                "session.update first.",
                param="type",
                client_event=event,
            )
            return
        if handler is None:
            await self.outbox.error(
                "invalid_value",
                f"Invalid value: '{etype}'. Supported values are: "
                + ", ".join(f"'{t}'" for t in CLIENT_EVENTS)
                + ".",
                param="type",
                client_event=event,
            )
            return
        try:
            await handler(event)
        except Exception as exc:  # noqa: BLE001 - a client frame must never kill the session
            log.exception("emulator failed on %s", etype)
            await self.outbox.error(
                "server_error",
                f"[emulator] could not process {etype}: {exc!r}.",
                client_event=event,
                kind="server_error",
            )

    # --- session ----------------------------------------------------------------------------------

    async def _session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if update is None:
            await self.outbox.error(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                param="session",
                client_event=event,
            )
            return
        new, errors = apply_session_update(
            self.conversation.session,
            update,
            self._api_version,
            voice_locked=self.responses.voice_locked,
        )
        notes: list[str] = []
        if isinstance(update, dict):
            later, notes = check_history(
                self.conversation.session,
                update,
                new,
                configured=self._configured,
                client_fields=self._client_fields,
            )
            errors += later
        if errors:
            for err in errors:
                await self.outbox.error(err.code, err.message, param=err.param, client_event=event)
            return
        for key in notes:
            self.outbox.note(key)
        # documented partial update (SPEC ClientEventSessionUpdate): present keys replace,
        # absent keys keep their value. source: docs/emulator.md#partial-update; vlrun itself
        # always sends the whole session (docs/emulator.md#whole-session)
        self.conversation.session = new
        self._configured = True
        # the dated fields a v1 update stands for, so history rules read alike on every version
        self._client_fields |= dated_keys(update, self._api_version)
        self.audio.configure_vad()
        await self.outbox.send({"type": "session.updated", "session": self._echo()})
        self.tools.list_mcp_tools()

    def _echo(self) -> dict[str, Any]:
        """The effective session as ``session.created``/``updated`` carry it: the v1 (GA) shape
        on api-version v1, the dated shape on dated versions. The session is kept dated inside."""
        # source: docs/emulator.md#v1-echo (VoiceLive/v1/events.tsp: ServerEventSessionCreated
        # and ServerEventSessionUpdated carry the v1 Session)
        session = self.conversation.session
        return v1_echo(session) if self._api_version == V1 else session

    async def _response_create(self, event: dict[str, Any]) -> None:
        params = event.get("response")
        if isinstance(params, dict) and "invoke_input" in params:
            problem = self._invoke_problem(params["invoke_input"])
            if problem is not None:
                await self.outbox.error(
                    "invalid_value", problem, param="response.invoke_input", client_event=event
                )
                return
        if self._api_version == V1 and isinstance(params, dict):
            # source: docs/emulator.md#v1-response-create (v1/models.tsp ResponseCreateParams)
            dated, errors, extended = v1_response(params)
            for err in errors:
                await self.outbox.error(err.code, err.message, param=err.param, client_event=event)
            if errors:
                return
            if extended:
                self.outbox.note("v1-response-extension")
            event = {**event, "response": dated}
        await self.responses.on_create(event)

    def _invoke_problem(self, value: Any) -> str | None:
        """Why a ``response.invoke_input`` is refused (None: taken).

        source: docs/emulator.md#invoke-input (SDK 1.3.0 ResponseCreateParams.invoke_input,
        "input data to invoke the hosted agent"; REF 2026-06-01-preview "What's new": hosted
        agent invocation; how-to-voice-live-hosted-agent-integration.md: hosted agents are
        bound by agent name and project)
        """
        version = self._api_version
        if version != V1 and not P.api_at_least(version, "2026-06-01"):
            return (
                f"invoke_input is not supported on api-version {version}; hosted agent "
                "invocation came with 2026-06-01-preview."
            )
        agent = self.conversation.session.get("agent")
        if not isinstance(agent, dict) or agent.get("agent_id") is not None:
            return (
                "invoke_input is for a hosted agent bound by 'agent-name' and "
                "'agent-project-name'; this session is not."
            )
        if not isinstance(value, dict):
            return "Invalid type for 'response.invoke_input': expected an object."
        return None

    # --- conversation -----------------------------------------------------------------------------

    async def _item_create(self, event: dict[str, Any]) -> None:
        conv = self.conversation
        item = event.get("item")
        if not isinstance(item, dict):
            await self.outbox.error(
                "missing_required_parameter",
                "Missing required parameter: 'item'.",
                param="item",
                client_event=event,
            )
            return
        prev = event.get("previous_item_id")
        if prev is not None and prev != "root" and prev not in conv.items:
            await self.outbox.error(
                "item_not_found",
                f"Item with id '{prev}' not found.",
                param="previous_item_id",
                client_event=event,
            )
            return
        kind = item.get("type")
        stored = {**item, "id": item.get("id") or P.new_id("item"), "object": "realtime.item"}
        if stored["id"] in conv.items:
            await self.outbox.error(
                "item_already_exists",
                f"Item with id '{stored['id']}' already exists.",
                param="item.id",
                client_event=event,
            )
            return
        if kind == "message":
            if item.get("role") not in ("user", "assistant", "system"):
                await self.outbox.error(
                    "invalid_value",
                    "Invalid value for 'item.role': expected 'user', 'assistant' or 'system'.",
                    param="item.role",
                    client_event=event,
                )
                return
            stored.setdefault("status", "completed")
            images: list[str] = []
            for i, part in enumerate(item.get("content") or []):
                if not isinstance(part, dict) or part.get("type") != "input_image":
                    continue
                # source: docs/emulator.md#input-image (SDK 1.3.0 RequestImageContentPart)
                if item["role"] != "user":
                    await self.outbox.error(
                        "invalid_value",
                        "Invalid value for 'item.role': input_image parts are user content.",
                        param="item.role",
                        client_event=event,
                    )
                    return
                image = read_image(part, f"item.content[{i}]")
                if isinstance(image, ImageProblem):
                    await self.outbox.error(
                        image.code, image.message, param=image.param, client_event=event
                    )
                    return
                if image.url is not None:
                    self.outbox.note("image-url")
                images.append(image.describe())
            if item["role"] == "user":
                turn = conv.new_user_turn()
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
                    text = self._model.audio_transcript(turn) or ""
                conv.pending_input.append(
                    {
                        "item_id": stored["id"],
                        "turn": turn,
                        "text": text or None,
                        "audio_ms": sum(self._audio_item_ms(c) for c in audio) if audio else None,
                        "images": images,
                    }
                )
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not call_id or "output" not in item:
                await self.outbox.error(
                    "missing_required_parameter",
                    "Missing required parameter: 'item.call_id' or 'item.output'.",
                    param="item",
                    client_event=event,
                )
                return
            if not self.tools.add_output(call_id, str(item["output"])):
                await self.outbox.error(
                    "invalid_value",
                    f"Invalid value for 'item.call_id': no function call with call_id "
                    f"'{call_id}' was issued in this session.",
                    param="item.call_id",
                    client_event=event,
                )
                return
        elif kind == "mcp_approval_response":
            approve = bool(item.get("approve"))
            if not self.tools.answer_approval(str(item.get("approval_request_id")), approve):
                await self.outbox.error(
                    "invalid_value",
                    "Unknown 'item.approval_request_id'.",
                    param="item.approval_request_id",
                    client_event=event,
                )
                return
            if approve:
                await conv.add_item(stored, prev if prev not in (None, "root") else None)
                if self.responses.active is None:
                    # source: docs/emulator.md#mcp-approved: an approved call goes on by itself
                    await self.responses.start({}, auto=True)
                return
        elif kind != "function_call":
            await self.outbox.error(
                "invalid_value",
                f"Invalid value for 'item.type': {kind!r}.",
                param="item.type",
                client_event=event,
            )
            return
        await conv.add_item(stored, prev if prev not in (None, "root") else None)

    def _audio_item_ms(self, part: dict[str, Any]) -> int:
        """Duration of base64 audio inside an input_audio content part (0 if unreadable)."""
        try:
            data = base64.b64decode(str(part.get("audio") or ""), validate=True)
        except (binascii.Error, ValueError):
            return 0
        fmt = self.conversation.session.get("input_audio_format", "pcm16")
        per_second = 8000 if fmt.startswith("g711") else self.conversation.input_rate() * 2
        return len(data) * 1000 // per_second

    async def _item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.conversation.items.get(str(event.get("item_id")))
        if item is None:
            await self.outbox.error(
                "item_not_found",
                f"Item with id '{event.get('item_id')}' not found.",
                param="item_id",
                client_event=event,
            )
            return
        public = {k: v for k, v in item.items() if not k.startswith("_")}
        await self.outbox.send({"type": "conversation.item.retrieved", "item": public})

    async def _item_delete(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id"))
        if self.conversation.items.pop(item_id, None) is None:
            await self.outbox.error(
                "item_not_found",
                f"Item with id '{item_id}' not found.",
                param="item_id",
                client_event=event,
            )
            return
        await self.outbox.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = str(event.get("item_id")), event.get("audio_end_ms")
        item = self.conversation.items.get(item_id)
        if item is None or item.get("role") != "assistant":
            await self.outbox.error(
                "item_not_found",
                f"Assistant message item '{item_id}' not found.",
                param="item_id",
                client_event=event,
            )
            return
        length = item.get("_audio_ms", 0)
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0 or end_ms > length:
            await self.outbox.error(
                "invalid_value",
                f"Audio content of {length}ms is shorter than {end_ms}ms.",
                param="audio_end_ms",
                client_event=event,
            )
            return
        await self.conversation.truncate(item, end_ms, event.get("content_index", 0))

    async def _output_clear(self, event: dict[str, Any]) -> None:
        await self.outbox.send({"type": "output_audio_buffer.cleared"})

    async def _avatar_connect(self, event: dict[str, Any]) -> None:
        """source: docs/emulator.md#avatar-connect: the service's answer shape, no media.

        SDK ``ClientEventSessionAvatarConnect.client_sdp`` (required) is answered by
        ``ServerEventSessionAvatarConnecting.server_sdp``. The answer is a base64 SDP whose
        session name says it is emulated; it offers no media, so no video ever flows.
        """
        if not isinstance(event.get("client_sdp"), str) or not event["client_sdp"]:
            await self.outbox.error(
                "missing_required_parameter",
                "Missing required parameter: 'client_sdp'.",
                param="client_sdp",
                client_event=event,
            )
            return
        self.outbox.note("avatar")
        sdp = (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"
            "s=[emulator] vlrun Voice Live emulator: no avatar video\r\n"
            "t=0 0\r\na=inactive\r\n"
        )
        await self.outbox.send(
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
        item = self.conversation.items.get(str(event.get("id")))
        if item is None or item.get("type") != "message":
            await self.outbox.error(
                "item_not_found",
                f"Item with id '{event.get('id')}' not found.",
                param="id",
                client_event=event,
            )
            return
        self.outbox.note("input-text")
        index = event.get("content_index") or 0
        parts = item.setdefault("content", [])
        while len(parts) <= index:
            parts.append({"type": "input_text", "text": ""})
        if event["type"] == "input_text.delta":
            if not isinstance(event.get("delta"), str):
                await self.outbox.error(
                    "missing_required_parameter",
                    "Missing required parameter: 'delta'.",
                    param="delta",
                    client_event=event,
                )
                return
            parts[index]["text"] = str(parts[index].get("text") or "") + event["delta"]
            return
        text = " ".join(str(p.get("text") or "") for p in parts if isinstance(p, dict)).strip()
        pending = self.conversation.pending_input
        entry = next((e for e in pending if e.get("item_id") == item["id"]), None)
        if entry is not None:
            entry["text"] = text or None
        elif item.get("role") == "user":
            turn = self.conversation.new_user_turn()
            pending.append({"turn": turn, "text": text or None, "audio_ms": None})
