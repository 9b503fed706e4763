"""``--verbose``: what the service sent, summarised per turn instead of echoed per event.

A reply is hundreds of events (mostly audio deltas); a line for each would bury the
conversation and split the streamed reply. So this counts them by type and writes:
- at the end of each turn, one line of counts (``turn 2 events: response.audio.delta ×48, …``);
- at the end of each response that had word timestamps, one line (word count, first and last
  word with their times);
- with the turn's counts, the latest ``rate_limits.updated`` when it changed.

The full stream, event by event, is ``--trace``'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Output items after which the service (or vlrun) starts another response for the same turn.
_FOLLOWED = frozenset({"function_call", "mcp_approval_request"})


@dataclass
class _Word:
    text: str
    offset_ms: int
    duration_ms: int


@dataclass
class VerboseEvents:
    """Counts events by type and emits the per-turn and per-response lines through ``emit``."""

    emit: Callable[[str], None]
    turn: int = 0  # turns ended so far
    counts: dict[str, int] = field(default_factory=dict)  # this turn, in order of first arrival
    _words: dict[str, list[_Word]] = field(default_factory=dict)  # response id -> timed words
    _limits: str | None = None  # latest rate limits, rendered
    _limits_shown: str | None = None

    def event(self, kind: str, payload: Mapping[str, Any] | None = None) -> None:
        """One event (a server event, or a runner action such as ``barge-in``)."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        data = payload or {}
        if kind == "response.audio_timestamp.delta":
            self._words.setdefault(str(data.get("response_id")), []).append(
                _Word(
                    str(data.get("text") or ""),
                    _int(data.get("audio_offset_ms")),
                    _int(data.get("audio_duration_ms")),
                )
            )
        elif kind == "rate_limits.updated":
            self._limits = rate_limits_line(data.get("rate_limits") or ())
        elif kind == "response.done":
            response = data.get("response") or {}
            words = self._words.pop(str(response.get("id")), None)
            if words:
                self.emit(words_line(str(response.get("id")), words))
            if not _continues(response):
                self.end_turn()

    def end_turn(self, *, unfinished: bool = False) -> None:
        """Write the counts of the turn that ended (and rate limits that changed); start anew."""
        if not self.counts:
            return
        self.turn += 1
        label = f"turn {self.turn} events{' (unfinished)' if unfinished else ''}"
        self.emit(f"{label}: {counts_text(self.counts)}")
        self.counts = {}
        if self._limits is not None and self._limits != self._limits_shown:
            self.emit(self._limits)
            self._limits_shown = self._limits

    def close(self) -> None:
        """End of the session: what was counted after the last turn, and words never closed."""
        for rid, words in self._words.items():
            self.emit(words_line(rid, words))
        self._words.clear()
        self.end_turn(unfinished=True)


def counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} ×{n}" for kind, n in counts.items())


def words_line(response_id: str, words: Sequence[_Word]) -> str:
    """``response R: 12 words timed, first "Hello" 0–320 ms, last "today" 2380–2610 ms``."""
    first, last = words[0], words[-1]
    return (
        f"response {response_id}: {len(words)} word{'s' if len(words) != 1 else ''} timed, "
        f"first {_span(first)}, last {_span(last)}"
    )


def rate_limits_line(limits: Any) -> str:
    """``rate limits: requests 999/1000 (reset 60 s), tokens 119000/120000 (reset 60 s)``."""
    parts = []
    for limit in limits if isinstance(limits, (list, tuple)) else ():
        if not isinstance(limit, Mapping):
            continue
        reset = limit.get("reset_seconds")
        when = f" (reset {float(reset):g} s)" if isinstance(reset, (int, float)) else ""
        parts.append(
            f"{limit.get('name', '?')} {limit.get('remaining', '?')}/{limit.get('limit', '?')}"
            + when
        )
    return "rate limits: " + (", ".join(parts) or "none reported")


def _span(word: _Word) -> str:
    return f'"{word.text.strip()}" {word.offset_ms}–{word.offset_ms + word.duration_ms} ms'


def _continues(response: Mapping[str, Any]) -> bool:
    """A response that asked for function calls is followed by another one in the same turn."""
    if response.get("status") == "cancelled":
        return False
    output = response.get("output") or ()
    return any(isinstance(o, Mapping) and o.get("type") in _FOLLOWED for o in output)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) else 0
