"""What the parts of a live session share: turn state, metrics, the send path, waiting.

:class:`~runner.live.session.LiveSession` is assembled from :class:`SessionCore` and two parts that
each own one side of the conversation (``session_input``: microphone, files and typed lines;
``session_tools``: function calls and MCP approvals). The attributes below are set by
``LiveSession.__init__``; they are declared here so each part reads (and type-checks) alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.live.audio import Player, Source
from runner.live.transcript import Transcript

log = logging.getLogger("runner.live.session")


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
class Response:
    id: str
    items: dict[str, str] = field(default_factory=dict)  # item id -> item type
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (name, call_id, arguments)
    muted: bool = False  # barge-in: drop the rest of its audio and text
    first_audio: bool = False


class Drop(Exception):
    """The connection ended without us asking (network, server fault)."""


class Rollover(Exception):
    """The session is near its time limit: open a fresh one."""


class SessionCore:
    """State every part of a session reads, and the few operations they all use."""

    transcript: Transcript
    player: Player
    source: Source | None
    conn: Any
    metrics: Metrics
    session_id: str
    registry: Any
    tool_timeouts: Mapping[str, float] | float
    mcp_policies: dict[str, Any]
    profile_name: str
    profile_vars: dict[str, Any]
    read_lines: bool
    send_ms: int
    end_when_input_ends: bool
    finish_timeout_s: float
    _stop: asyncio.Event
    _ready: asyncio.Event  # set while a configured connection is usable
    _changed: asyncio.Event  # replaced and set on every turn-state change
    _responses: dict[str, Response]
    _active: Response | None
    _requested: int  # response.create sent, response.created not seen yet
    _awaiting_reply: bool
    _speaking: bool
    _heard_speech: bool  # the service has detected speech at least once
    _input_done: bool
    _eos_at: float | None  # end of the user's last turn (perf_counter)
    _tool_tasks: set[asyncio.Task[None]]
    _question: asyncio.Future[str] | None
    _asking: asyncio.Lock
    _line_queue: asyncio.Queue[str | None]

    def stop(self) -> None:
        """End the conversation (Ctrl+C, ``q``, end of input)."""
        self._stop.set()

    async def _send(self, event: Mapping[str, Any] | Any) -> None:
        """Send a dict or SDK model; a failed send means the connection dropped."""
        from azure.ai.voicelive.aio import ConnectionError as SdkConnectionError

        conn = self.conn
        if conn is None:
            raise Drop("not connected")
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
            raise Drop(f"send failed: {exc}") from None

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
