"""What tests see of one emulated connection: :class:`SessionRecord`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SessionRecord:
    """What tests see of one connection: every event both ways, in order."""

    number: int
    query: dict[str, str]
    headers: dict[str, str]
    id: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    fidelity: list[str] = field(default_factory=list)  # keys of runner/emulator/fidelity.py
    stats: dict[str, float] = field(
        default_factory=lambda: {
            "frames": 0,
            "max_lag_ms": 0.0,
            "probes": 0,
            "max_probe_lag_ms": 0.0,
            "probes_over_50ms": 0,
            "probes_over_100ms": 0,
        }
    )

    def sent_types(self) -> list[str]:
        return [e["type"] for e in self.sent]
