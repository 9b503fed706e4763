"""Watching a scenario's session: every event with its arrival time, the turn lines, and when
a reply has settled."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner.aio import Changes
from runner.live.transcript import Transcript
from runner.plugins import DEFAULT_TIMEOUT_S as DEFAULT_TOOL_TIMEOUT_S

#: How long after a tool's timeout its (timeout) result may take to arrive and still count as
#: tool time: the dispatch returns it at once, this covers a loaded machine.
TOOL_GRACE_S = 1.0


class Observer(Transcript):
    """A quiet Transcript that keeps every event (with its arrival time) and the turn lines."""

    def __init__(self, *, trace_path: Path | None = None) -> None:
        super().__init__(
            verbosity=1, out=io.StringIO(), err=io.StringIO(), meter=False, trace_path=trace_path
        )
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.lines: list[tuple[int, str]] = []
        self.turn = -1
        self.tool_outputs: dict[str, tuple[bool, str]] = {}
        self.calls: list[tuple[int, str, str, str]] = []  # (turn, call id, name, arguments)
        # (turn, how many events had arrived, text) of each reply said: a full-duplex turn
        # (GPT-Live) is answered by a reply said after its delegations were answered
        self.said: list[tuple[int, int, str]] = []
        # (turn, how many events had arrived, record) of each note the session made (a GPT-Live
        # session's ``backchannel`` and ``yield``, docs/gpt-live.md "Full duplex")
        self.notes: list[tuple[int, int, dict[str, Any]]] = []
        # the end (ms on the session's timeline) of the latest GPT-Live output audio: how far a
        # reply has been said, to the chunk (its transcript comes a word group at a time)
        self.output_audio_end_ms: int | None = None
        self._changes = Changes()
        # Tool time: a turn's timeout_s does not count the time its tools run, each up to its
        # own timeout_s (the session's tool_timeouts), so a hung tool times out as its binding
        # says and the turn goes on, whichever of the two timeouts is longer.
        self.tool_limits: Mapping[str, float] | float = DEFAULT_TOOL_TIMEOUT_S
        self._tools_running: dict[str, float] = {}  # call_id -> when its timeout has passed
        self._tools_since: float | None = None  # start of the current stretch of tool time
        self._tool_time = 0.0  # the stretches that have ended

    def _poke(self) -> None:
        self._changes.notify()

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (event driven) until ``predicate`` holds; False on timeout.

        Time while a tool call runs (up to that tool's own timeout) is not counted."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        credit = self.tool_time()
        while not predicate():
            left = deadline + (self.tool_time() - credit) - loop.time()
            if left <= 0:
                return False
            await self._changes.next(left)
        return True

    @property
    def tracing(self) -> bool:
        """Always on: a session may skip ``trace`` when nobody traces; the Observer needs it."""
        return True

    def trace(self, direction: str, event: dict[str, Any]) -> None:
        super().trace(direction, event)
        self.events.append((time.perf_counter(), direction, event))
        if direction == "in" and event.get("type") == "response.done":
            response = event.get("response") or {}
            if response.get("status") in ("cancelled", "failed"):  # its calls never run
                for item in response.get("output") or []:
                    if isinstance(item, Mapping) and item.get("type") == "function_call":
                        self._tool_ended(str(item.get("call_id")))
        self._poke()

    def trace_note(self, record: dict[str, Any]) -> None:
        super().trace_note(record)
        self.notes.append((self.turn, len(self.events), dict(record)))
        self._poke()

    def event(self, kind: str, summary: str = "", payload: dict[str, Any] | None = None) -> None:
        super().event(kind, summary, payload)
        if kind == "session.output_audio.delta" and payload is not None:
            end = payload.get("end_ms")
            if isinstance(end, int):  # optional on the wire (docs/gpt-live.md)
                self.output_audio_end_ms = max(self.output_audio_end_ms or 0, end)
                self._poke()

    def _line(self, text: str) -> None:
        self.lines.append((self.turn, text))

    def user(self, item_id: str, text: str) -> None:
        if item_id not in self._seen:
            self._line(f"you: {text}")
        super().user(item_id, text)

    def assistant_done(self, item_id: str, text: str, *, interrupted: bool = False) -> None:
        before = len(self.turns)
        super().assistant_done(item_id, text, interrupted=interrupted)
        if len(self.turns) > before:
            turn = self.turns[-1]
            mark = " [interrupted]" if turn.interrupted else ""
            self._line(f"assistant: {turn.text}{mark}")
            self.said.append((self.turn, len(self.events), turn.text))
        self._poke()

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._line(f"[tool] {name}({arguments})")
        self.calls.append((self.turn, call_id, name, arguments))
        limits = self.tool_limits
        limit = (
            float(limits.get(name, DEFAULT_TOOL_TIMEOUT_S))
            if isinstance(limits, Mapping)
            else float(limits)
        )
        now = time.monotonic()
        if not self._tools_running:
            self._tools_since = now
        self._tools_running[call_id] = now + limit + TOOL_GRACE_S
        super().tool_call(call_id, name, arguments)

    def tool_time(self) -> float:
        """Seconds some tool call has been running, each counted up to its own timeout."""
        if self._tools_since is None or not self._tools_running:
            return self._tool_time
        until = min(time.monotonic(), max(self._tools_running.values()))
        return self._tool_time + max(0.0, until - self._tools_since)

    def _tool_ended(self, call_id: str) -> None:
        if call_id in self._tools_running:
            # bank the stretch so far, then go on counting for the calls still running
            self._tool_time = self.tool_time()
            del self._tools_running[call_id]
            self._tools_since = time.monotonic() if self._tools_running else None

    def tool_result(self, call_id: str, name: str, ok: bool, text: str, duration_s: float) -> None:
        self._tool_ended(call_id)
        self.tool_outputs[call_id] = (ok, text)
        self._line(f"[tool] {name} {'->' if ok else 'failed:'} {text}")
        super().tool_result(call_id, name, ok, text, duration_s)
        self._poke()

    def error(self, text: str) -> None:
        self._line(f"error: {text}")
        super().error(text)
        self._poke()

    def since(self, mark: int) -> list[tuple[float, str, dict[str, Any]]]:
        return self.events[mark:]


def settled(events: list[tuple[float, str, dict[str, Any]]]) -> bool:
    """A reply is complete: some response finished, none is open, the last needs no tool round."""
    open_ids: set[str] = set()
    last_done: dict[str, Any] | None = None
    for _, direction, ev in events:
        if direction != "in":
            continue
        kind = ev.get("type")
        if kind == "response.created":
            open_ids.add(str((ev.get("response") or {}).get("id")))
        elif kind == "response.done":
            response = ev.get("response") or {}
            open_ids.discard(str(response.get("id")))
            last_done = response
    if last_done is None or open_ids:
        return False
    if last_done.get("status") in ("cancelled", "failed"):
        return True
    return not any(
        isinstance(o, Mapping) and o.get("type") == "function_call"
        for o in last_done.get("output") or []
    )
