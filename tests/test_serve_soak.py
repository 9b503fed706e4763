"""`vlrun serve` through a few hundred calls of every kind and fault (see tests/soak.py).

The figures that depend on the machine (RSS, the loop's lag) are the benchmark's
(bench/bench_soak.py); this test holds what must be true on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak import STARTED_OUTCOMES, soak

pytest.importorskip("twilio")
pytest.importorskip("azure.communication.callautomation")


@pytest.mark.timeout(600)
async def test_a_month_in_minutes_leaves_nothing_behind(tmp_path: Path) -> None:
    report = await soak(tmp_path, calls=300, concurrency=8, max_calls=14)
    assert report.errors == [], report.errors[:5]
    assert report.held_at_end == 0  # no slot held: reserved, claimed or expired, all freed
    assert report.tasks_left == []  # no task outlived its call
    # every call that got a slot ended with an outcome in /metrics
    assert report.claimed_total == report.ended_with_outcome(), report.outcomes
    kinds = {k.split(":")[0] for k in report.calls}
    assert {"twilio", "twilio_vanish", "twilio_replay", "acs", "acs_vanish"} <= kinds
    # the faults happened and were handled as their kind says
    dropped = sum(v for (_, o), v in report.outcomes.items() if o == "dropped")
    vanished = sum(n for k, n in report.calls.items() if k.endswith(":vanished"))
    assert dropped >= vanished > 0
    assert sum(v for (_, o), v in report.outcomes.items() if o == "duplicate") > 0
    assert report.reconnects > 0  # Voice Live dropped calls mid-way; they reconnected
    assert sum(v for (e, w), v in report.slots.items() if w == "expired") > 0
    assert not [o for (_, o), v in report.outcomes.items() if v and o == "failed"]
    assert set(o for (_, o), v in report.outcomes.items() if v) <= {
        *STARTED_OUTCOMES,
        "refused",
        "duplicate",
        "forbidden",
    }
