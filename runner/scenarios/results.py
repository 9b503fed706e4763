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
    # GPT-Live (full duplex, docs/gpt-live.md): the session's notes in this turn
    backchannels: list[str] = field(default_factory=list)  # what each backchannel said
    yields: int = 0  # replies the assistant stopped for the caller
    talk_over_missed: str | None = None  # why the caller could not talk over the reply


@dataclass
class ScenarioResult:
    path: Path
    name: str
    failures: list[Failure] = field(default_factory=list)
    turns: list[TurnOutcome] = field(default_factory=list)
    lines: list[tuple[int, str]] = field(default_factory=list)  # (turn index, transcript line)
    error: str | None = None  # could not run at all (profile, connection): not an expectation
    duration_s: float = 0.0
    repeat: int = 0  # which run of the scenario this is (0-based), with `vlrun test --repeat`
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # the judge's, per rubric
    timeline: dict[str, Any] | None = None  # the run drawn on a time axis (HTML report)
    profile: str | None = None  # the profile's path (flow coverage, results.jsonl)
    # the loaded profile, for flow coverage; never written out
    loaded_profile: Any = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None


@dataclass
class ScenarioRuns:
    """Every run of one scenario (``--repeat N``) and what the gate makes of them."""

    path: Path
    name: str
    runs: list[ScenarioResult]

    @property
    def passed_runs(self) -> int:
        return sum(1 for r in self.runs if r.passed)

    @property
    def pass_rate(self) -> float:
        return self.passed_runs / len(self.runs) if self.runs else 0.0

    @property
    def flaky(self) -> bool:
        """Some runs passed and some failed: the same scenario, a different outcome."""
        return 0 < self.passed_runs < len(self.runs)

    def meets(self, min_pass_rate: float) -> bool:
        # a small tolerance: 2 of 3 runs is 0.666..., which a gate of 0.66 or 2/3 accepts
        return self.pass_rate + 1e-9 >= min_pass_rate

    @property
    def first_failed(self) -> ScenarioResult | None:
        return next((r for r in self.runs if not r.passed), None)


def group_runs(results: list[ScenarioResult]) -> list[ScenarioRuns]:
    """Results of repeated runs, one group per scenario (file and name), in first-seen order."""
    groups: dict[tuple[str, str], ScenarioRuns] = {}
    for r in results:
        key = (str(r.path), r.name)
        if key not in groups:
            groups[key] = ScenarioRuns(r.path, r.name, [])
        groups[key].runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: r.repeat)
    return list(groups.values())
