"""An offline `vlrun test` suite of 20 scenarios: its wall time on this machine.

    python bench/bench_scenarios.py [--n 20] [--jobs 4] [--rounds 3] [--json FILE]

The suite is the shipped scenarios (tests/scenarios/*.yaml), taken in name order and cycled
until there are ``--n`` of them, run the way `vlrun test` runs them (runner.scenarios.suite,
``--jobs`` at a time, each against its own embedded emulator, the real session, SDK and
plugins). Each round runs the whole suite; the figure is the median round. Issue 30's target:
20 scenarios in under 60 s on the 2-core development machine.

Printed beside the wall time, so a slow figure can be read:
  busy    the sum of the scenarios' own durations (the work, as if run one by one)
  overlap busy / wall: how much the jobs overlapped (jobs=4 on 2 cores: at most ~2-4)
  cpu     this process's CPU time over the round (user + system)
  load    the 1-minute load average before the round (a shared machine is slower)
Writes bench/results/scenarios.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
TARGET_S = 60.0


def suite(n: int) -> list[Path]:
    """``n`` scenario files: the shipped ones in name order, cycled."""
    shipped = sorted((ROOT / "tests" / "scenarios").glob("*.yaml"))
    if not shipped:
        raise SystemExit("no scenarios under tests/scenarios")
    return [shipped[i % len(shipped)] for i in range(n)]


def one_round(paths: list[Path], jobs: int) -> dict[str, Any]:
    from runner.scenarios.suite import run_all

    load = os.getloadavg()[0]
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = run_all(paths, jobs=jobs)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    busy = sum(r.duration_s for r in results)
    failed = [f"{r.path.name}: {r.name}" for r in results if not r.passed]
    return {
        "wall_s": round(wall, 2),
        "busy_s": round(busy, 2),
        "overlap": round(busy / wall, 2) if wall else None,
        "cpu_s": round(cpu, 2),
        "load_1m": round(load, 2),
        "scenarios": len(results),
        "passed": len(results) - len(failed),
        "failed": failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="scenarios in the suite")
    parser.add_argument("--jobs", type=int, default=4, help="scenarios at a time (vlrun test -j)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of the whole suite")
    parser.add_argument("--json", type=Path, default=RESULTS / "scenarios.json")
    args = parser.parse_args()

    os.chdir(ROOT)  # the scenarios' paths print relative to the repository
    paths = suite(args.n)
    import runner.scenarios.suite  # noqa: F401  (imports are not the suite's time)

    rounds = []
    for k in range(args.rounds):
        figures = one_round(paths, args.jobs)
        rounds.append(figures)
        print(
            f"round {k + 1}: {figures['scenarios']} scenarios in {figures['wall_s']:.1f} s "
            f"(busy {figures['busy_s']:.1f} s, overlap x{figures['overlap']}, "
            f"cpu {figures['cpu_s']:.1f} s, load {figures['load_1m']}), "
            f"{figures['passed']} passed",
            file=sys.stderr,
        )
    wall = statistics.median(r["wall_s"] for r in rounds)
    failed = sorted({f for r in rounds for f in r["failed"]})
    summary = {
        "n": args.n,
        "jobs": args.jobs,
        "cores": os.cpu_count(),
        "rounds": rounds,
        "median_wall_s": wall,
        "per_scenario_s": round(wall / args.n, 2),
        "target_s": TARGET_S,
        "ratio_to_target": round(wall / TARGET_S, 3),
        "failed": failed,
    }
    print("| scenarios | jobs | cores | median wall | per scenario | wall / 60 s target |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.n} | {args.jobs} | {os.cpu_count()} | {wall:.1f} s | "
        f"{wall / args.n:.2f} s | {wall / TARGET_S:.2f} |"
    )
    if failed:
        print(f"\nfailed (timed all the same): {', '.join(failed)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
