"""What the parts of one emulated session share: its state, and the plumbing every part uses.

:class:`~runner.emulator.connection.Connection` is put together from
:class:`~runner.emulator.input_audio.InputAudio`, :class:`~runner.emulator.responses.Responses`
and :class:`~runner.emulator.tool_calls.ToolCalls`, which all derive from :class:`Host`.
``Connection.__init__`` sets the state declared here. Every server event goes through
:meth:`Host.send`, where faults apply and the event is recorded for tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from runner import speedups
from runner.emulator import protocol as P

if TYPE_CHECKING:
    from runner.emulator.connection import SessionRecord
    from runner.emulator.faults import Faults
    from runner.emulator.fidelity import Fidelity
    from runner.emulator.model import ScriptedModel, ToolCall
    from runner.emulator.responses import _Response
    from runner.emulator.vad import EnergyVad


class Host:
    """State every part of a Connection uses (set in ``Connection.__init__``), and the plumbing."""

    ws: web.WebSocketResponse
    faults: Faults | None
    record_audio: bool
    _send_lock: asyncio.Lock
    _sent_count: int
    _dropped: bool
    _tasks: set[asyncio.Task[Any]]
    record: SessionRecord
    session: dict[str, Any]
    speed: float
    use_espeak: bool
    model: ScriptedModel
    items: dict[str, dict[str, Any]]
    last_item_id: str | None
    vad: EnergyVad | None
    _vad_key: tuple[Any, ...] | None
    manual_ms: float
    speech_item: str | None
    speech_start_ms: int
    user_turns: int
    pending_input: list[dict[str, Any]]
    tool_outputs: list[dict[str, Any]]
    open_calls: dict[str, str]
    mcp_listed: set[str]
    mcp_approvals: dict[str, dict[str, Any]]
    mcp_approved: list[dict[str, Any]]
    mcp_results: list[dict[str, Any]]
    active: _Response | None
    last_task: asyncio.Task[None] | None
    _first_audio_at: float | None
    _audio_ms_in: float
    fidelity: Fidelity
    configured: bool
    mcp_latency_ms: float
    mcp_pending: int  # MCP calls whose result has not arrived yet

    if TYPE_CHECKING:  # defined by Connection or by one of the parts

        async def _add_item(self, item: dict[str, Any], previous: str | None = None) -> None: ...

        async def _truncate(
            self, item: dict[str, Any], end_ms: int, content_index: int = 0
        ) -> None: ...

        async def _cancel(self, response: _Response, reason: str, *, truncate: bool) -> None: ...

        async def _start_response(
            self, params: dict[str, Any], event: dict[str, Any] | None, *, auto: bool = False
        ) -> None: ...

        async def _output_item(
            self, stage: str, response: _Response, index: int, item: dict[str, Any]
        ) -> None: ...

        async def _function_call(self, response: _Response, call: ToolCall) -> None: ...

        async def _mcp(
            self, response: _Response, call: dict[str, Any]
        ) -> Callable[[], Awaitable[None]] | None: ...

    # --- plumbing ---------------------------------------------------------------------------------

    def _fidelity(self, key: str) -> None:
        """Note an assumption (runner/emulator/fidelity.py): once per session, once per run."""
        if key not in self.record.fidelity:
            self.record.fidelity.append(key)
            self.fidelity.note(key)

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
            text = speedups.dumps(event)
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

    async def _close_after_failure(self) -> None:
        """A failed response ends the connection. source: docs/emulator.md#failed-close

        Reported (a real agent session closed after its failed response.done); the close code
        is not documented, so 1011 (server error) is an assumption and says so.
        """
        self._fidelity("failed-close")
        if not self.ws.closed:
            self.record.close_code = 1011
            await self.ws.close(code=1011, message=b"response failed")

    async def error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        client_event: dict[str, Any] | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        # an error event leaves the socket open: source: docs/emulator.md#errors-keep-open
        event_id = client_event.get("event_id") if isinstance(client_event, dict) else None
        await self.send(
            P.error_event(code, message, param=param, client_event_id=event_id, kind=kind)
        )
