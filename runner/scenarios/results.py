"""What running a scenario produces: per-turn outcomes and failures that name file:line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Failure:
    """One failed expectation, at the scenario line that states it."""

    file: str
    line: int | None
    message: str
    turn: int | None = None  # 0-based turn index, None for the whole scenario

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def render(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class ToolCallSeen:
    name: str
    call_id: str
    arguments: str
    output: str | None = None
    ok: bool | None = None

    @property
    def args(self) -> dict[str, Any]:
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass
class TurnOutcome:
    """What happened in one turn (all times in ms on the emulator's clock)."""

    index: int
    tool_calls: list[ToolCallSeen] = field(default_factory=list)
    reply: str = ""
    errors: list[str] = field(default_factory=list)
    cancelled: bool = False
    truncated_at_ms: int | None = None
    truncated_item: str | None = None
    stopped_at_ms: int | None = None  # where the speaker stopped when the runner interrupted it
    barge_in_missed: str | None = None
    first_audio_ms: float | None = None
    tool_silence_ms: float | None = None
    settled: bool = True
    speech_heard: bool = True  # for audio turns: the service reported speech_started
    answered_after_ms: float | None = None  # silent_for_ms turns: when the assistant spoke
    tools_cancelled: list[str] = field(default_factory=list)  # by a barge-in, in this turn


@dataclass
class ScenarioResult:
    path: Path
    name: str
    failures: list[Failure] = field(default_factory=list)
    turns: list[TurnOutcome] = field(default_factory=list)
    lines: list[tuple[int, str]] = field(default_factory=list)  # (turn index, transcript line)
    error: str | None = None  # could not run at all (profile, connection): not an expectation
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None
