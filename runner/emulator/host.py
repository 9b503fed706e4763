"""What the parts of one emulated session share: its state and the methods each part calls.

:class:`~runner.emulator.connection.Connection` is put together from
:class:`~runner.emulator.input_audio.InputAudio`, :class:`~runner.emulator.responses.Responses`
and :class:`~runner.emulator.tool_calls.ToolCalls`. Each part derives from :class:`Host`, which
only declares (for the type checker); ``Connection.__init__`` sets the values.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.emulator.connection import SessionRecord
    from runner.emulator.model import ScriptedModel, ToolCall
    from runner.emulator.responses import _Response
    from runner.emulator.vad import EnergyVad


class Host:
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

    if TYPE_CHECKING:  # defined by Connection or by one of the parts

        def _spawn(self, coro: Any) -> asyncio.Task[Any]: ...

        async def send(self, event: dict[str, Any]) -> None: ...

        async def error(
            self,
            code: str,
            message: str,
            *,
            param: str | None = None,
            client_event: dict[str, Any] | None = None,
            kind: str = "invalid_request_error",
        ) -> None: ...

        async def _add_item(self, item: dict[str, Any], previous: str | None = None) -> None: ...

        async def _truncate(
            self, item: dict[str, Any], end_ms: int, content_index: int = 0
        ) -> None: ...

        async def _cancel(self, response: _Response, reason: str, *, truncate: bool) -> None: ...

        async def _start_response(
            self, params: dict[str, Any], event: dict[str, Any] | None
        ) -> None: ...

        async def _output_item(
            self, stage: str, response: _Response, index: int, item: dict[str, Any]
        ) -> None: ...

        async def _function_call(self, response: _Response, call: ToolCall) -> None: ...

        async def _mcp(self, response: _Response, call: dict[str, Any]) -> None: ...
