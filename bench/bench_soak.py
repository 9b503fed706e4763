"""A month of `vlrun serve` in minutes, measured: tests/soak.py at a thousand calls and more.

    python bench/bench_soak.py [--calls 1000] [--concurrency 8] [--max-calls 14] [--json FILE]

One worker (`vlrun serve --serve-file` in its own process: the Twilio and ACS edges and the
browser console, one supervisor), the emulator (dropping one connection in 23 mid-call), a
fake ACS and the simulated callers (in this process). The RSS and the loop's lag are the
worker process's own (`/proc/PID/status`, its `vlrun_event_loop_lag_seconds`). Judged:
- 0 slots held and 0 vlrun tasks left at the end; every call with a slot ended with an outcome;
- RSS growth from where it settled (after a fifth of the calls) to the end, in %;
- the event loop's lag p99 (the worker's own histogram, vlrun_event_loop_lag_seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from tests.soak import soak

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-calls", type=int, default=14)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the worker in this loop (what the test does) instead of its own process",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vlrun-soak-") as tmp:
        report = asyncio.run(
            soak(
                Path(tmp),
                calls=args.calls,
                concurrency=args.concurrency,
                max_calls=args.max_calls,
                process=not args.in_process,
            )
        )
    growth = 100.0 * (report.rss_end_kb - report.rss_settled_kb) / max(1, report.rss_settled_kb)
    result = {
        "calls": args.calls,
        "seconds": round(report.seconds, 1),
        "claimed": report.claimed_total,
        "ended_with_outcome": report.ended_with_outcome(),
        "held_at_end": report.held_at_end,
        "tasks_left": report.tasks_left,
        "reconnects": report.reconnects,
        "outcomes": {f"{e}/{o}": v for (e, o), v in sorted(report.outcomes.items()) if v},
        "slots": {f"{e}/{w}": v for (e, w), v in sorted(report.slots.items()) if v},
        "rss_settled_mb": round(report.rss_settled_kb / 1024, 1),
        "rss_end_mb": round(report.rss_end_kb / 1024, 1),
        "rss_growth_pct": round(growth, 1),
        "loop_lag_p99_ms": round(report.lag_p99_s * 1000, 1),
        "loop_lag_worst_ms": round(report.lag_worst_s * 1000, 1),
        "errors": report.errors[:10],
    }
    verdict = {
        "nothing held or left": report.held_at_end == 0 and not report.tasks_left,
        # (a worker process's tasks are the test's to inspect: tests/test_serve_soak.py)
        "every call has an outcome": report.claimed_total == report.ended_with_outcome(),
        "RSS within 10 % of settled": growth <= 10.0,
        "loop lag p99 under 10 ms": report.lag_p99_s < 0.010,
    }
    result["verdict"] = verdict
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if all(verdict.values()) and not report.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
