"""Watching a scenario's session: every event with its arrival time, the turn lines, and when
a reply has settled."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner.live.transcript import Transcript


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
        self._changed = asyncio.Event()

    def _poke(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (event driven) until ``predicate`` holds; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
        return True

    @property
    def tracing(self) -> bool:
        """Always on: a session may skip ``trace`` when nobody traces; the Observer needs it."""
        return True

    def trace(self, direction: str, event: dict[str, Any]) -> None:
        super().trace(direction, event)
        self.events.append((time.perf_counter(), direction, event))
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
        self._poke()

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._line(f"[tool] {name}({arguments})")
        super().tool_call(call_id, name, arguments)

    def tool_result(self, call_id: str, name: str, ok: bool, text: str, duration_s: float) -> None:
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
