"""The conversation of one emulated session: its settings, its items and the user's turns.

Every part of a connection reads the session settings and adds items here; the user turns
waiting for an answer (``pending_input``) are added by the input side and taken by the next
response. A :class:`Response` is one ``response.*`` in progress, shared by the response task
and the tool calls inside it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from runner.emulator.outbox import Outbox
from runner.emulator.pace import Wake


@dataclass
class Response:
    """One response in progress (its id, its output so far, how far its audio got)."""

    id: str
    wake: Wake = field(default_factory=Wake)  # a cancel; it also ends a wait on the PaceClock
    cancel_reason: str | None = None
    task: asyncio.Task[None] | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    audio_item: str | None = None
    audio_started: float | None = None
    audio_sent_ms: float = 0.0
    input_audio_ms: int = 0  # the user audio this response answers (for usage)
    input_chars: int = 0
    auto: bool = False  # started by the emulator (an approved MCP call), not by the client
    joined: bool = False  # a client response.create was queued behind this one


class Conversation:
    """The session settings, the conversation's items and the user turns not yet answered."""

    def __init__(self, outbox: Outbox, session: dict[str, Any]) -> None:
        self._outbox = outbox
        self.session = session  # replaced whole by each valid session.update
        self.items: dict[str, dict[str, Any]] = {}
        self.last_item_id: str | None = None
        self.user_turns = 0
        # user turns waiting for an answer: {"turn", "text", "audio_ms"[, "item_id"]}
        self.pending_input: list[dict[str, Any]] = []

    def input_rate(self) -> int:
        """Samples per second of the client's input audio."""
        if str(self.session.get("input_audio_format", "pcm16")).startswith("g711"):
            return 8000
        return int(self.session.get("input_audio_sampling_rate") or 24000)

    def new_user_turn(self) -> int:
        self.user_turns += 1
        return self.user_turns

    async def add_item(self, item: dict[str, Any], previous: str | None = None) -> None:
        prev = previous if previous is not None else self.last_item_id
        self.items[item["id"]] = item
        self.last_item_id = item["id"]
        await self._outbox.send(
            {"type": "conversation.item.created", "previous_item_id": prev, "item": item}
        )

    async def truncate(self, item: dict[str, Any], end_ms: int, content_index: int = 0) -> None:
        for part in item.get("content") or []:
            if part.get("type") == "audio":
                part["transcript"] = None  # the service drops the text of a truncated reply
        await self._outbox.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item["id"],
                "content_index": content_index,
                "audio_end_ms": end_ms,
            }
        )

    async def output_item(
        self, stage: str, response: Response, index: int, item: dict[str, Any]
    ) -> None:
        """``response.output_item.added`` or ``.done`` for the output at ``index``."""
        await self._outbox.send(
            {
                "type": f"response.output_item.{stage}",
                "response_id": response.id,
                "output_index": index,
                "item": item,
            }
        )
