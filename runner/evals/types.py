"""The records callers and judges exchange with the scenario runner (interface C)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from runner.errors import VlrunError


class EvalsError(VlrunError):
    """A caller or judge cannot run: a missing extra, key or setting, or an endpoint's error."""


@dataclass(frozen=True)
class Exchange:
    """One line of the conversation so far."""

    role: Literal["caller", "assistant"]
    text: str


@dataclass(frozen=True)
class CallerTurn:
    """What the simulated caller does next."""

    text: str  # what the caller says (always present, also for audio)
    audio: bytes | None = None  # PCM16 mono 24 kHz when the caller speaks (tier 3)
    done: bool = False  # the caller believes its goal is reached after this turn


class Caller(Protocol):
    """A simulated caller: the next turn given the conversation so far, or None to hang up."""

    async def next_turn(self, history: Sequence[Exchange]) -> CallerTurn | None: ...


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one rubric, with what it was asked and what it answered."""

    passed: bool
    reason: str
    prompt: list[dict[str, str]]  # the chat messages the judge was sent
    model: str  # the model that answered, as the endpoint named it
    raw: str  # the answer as received

    def to_dict(self) -> dict[str, object]:
        """The verdict as results.jsonl keeps it."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "model": self.model,
            "prompt": self.prompt,
            "raw": self.raw,
        }
