"""Tool dispatch overhead: from a `function_call_arguments.done` payload to the output string
ready to send, with the tool's own time taken out.

For each case the same function is also called directly in the same run; the overhead is
dispatch time minus the direct call's median. Sync tools include the hop to a worker thread
(that hop is what keeps audio flowing), async tools are awaited on the loop.

    python bench/bench_dispatch.py [--n 5000] [--json bench/results/dispatch.json]

Target: p99 overhead <= 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.ai.voicelive.models import FunctionCallOutputItem  # noqa: E402

from runner.plugins import Registry, ToolContext, tool  # noqa: E402

TARGET_P99_MS = 1.0


@dataclasses.dataclass
class Stop:
    city: str
    nights: int = 1


@tool
def plan_trip(
    origin: Annotated[str, "Where the trip starts"],
    stops: list[Stop],
    unit: Literal["km", "mi"] = "km",
    budget: float | None = None,
) -> dict[str, Any]:
    """Plan a trip (a realistic schema: strings, an enum, a list of objects, an optional)."""
    return {
        "origin": origin,
        "stops": [dataclasses.asdict(s) for s in stops],
        "unit": unit,
        "budget": budget,
        "nights": sum(s.nights for s in stops),
    }


@tool
async def plan_trip_async(
    origin: Annotated[str, "Where the trip starts"],
    stops: list[Stop],
    unit: Literal["km", "mi"] = "km",
    budget: float | None = None,
) -> dict[str, Any]:
    """The same tool, async."""
    return plan_trip(origin, stops, unit, budget)


@tool
def add(a: int, b: int) -> int:
    """The smallest useful tool."""
    return a + b


@tool
async def add_async(a: int, b: int) -> int:
    """The smallest useful async tool."""
    return a + b


TRIP_ARGS = json.dumps(
    {
        "origin": "Lyon",
        "stops": [
            {"city": "Turin", "nights": 2},
            {"city": "Milan"},
            {"city": "Verona", "nights": 3},
        ],
        "unit": "km",
        "budget": 1800.5,
    }
)
ADD_ARGS = '{"a": 2, "b": 40}'


def direct_kwargs(arguments: str, name: str) -> dict[str, Any]:
    kwargs = json.loads(arguments)
    if name.startswith("plan_trip"):
        kwargs["stops"] = [Stop(**s) for s in kwargs["stops"]]
    return kwargs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def measure(
    registry: Registry, name: str, arguments: str, n: int, *, with_item: bool = False
) -> dict[str, Any]:
    spec = registry.get(name)
    context = ToolContext(session_id="bench", profile_name="bench")
    kwargs = direct_kwargs(arguments, name)

    direct: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        if spec.is_async:
            await spec.func(**kwargs)
        else:
            spec.func(**kwargs)
        direct.append(time.perf_counter() - t0)
    tool_s = statistics.median(direct)

    samples: list[float] = []
    for i in range(n + 200):
        t0 = time.perf_counter()
        result = await registry.dispatch(name, f"call_{i}", arguments, context=context, timeout_s=5)
        if with_item:  # what the runner does next: the SDK item, serialised for the socket
            json.dumps(
                FunctionCallOutputItem(call_id=result.call_id, output=result.output).as_dict()
            )
        elapsed = time.perf_counter() - t0
        assert result.ok, result.output
        if i >= 200:  # warm-up: thread pool, validator caches
            samples.append(elapsed)
    overhead = [max(0.0, s - tool_s) * 1000 for s in samples]
    return {
        "case": name + (" + SDK item" if with_item else ""),
        "kind": ("async" if spec.is_async else "sync (worker thread)")
        + (" + SDK" if with_item else ""),
        "n": n,
        "tool_median_us": round(tool_s * 1e6, 2),
        "overhead_p50_ms": round(percentile(overhead, 50), 4),
        "overhead_p99_ms": round(percentile(overhead, 99), 4),
        "overhead_max_ms": round(max(overhead), 4),
        "ratio_p50": round(percentile(samples, 50) / tool_s, 1) if tool_s else None,
    }


async def measure_many(registry: Registry, n: int) -> dict[str, Any]:
    calls = [
        ("plan_trip", "c1", TRIP_ARGS),
        ("plan_trip_async", "c2", TRIP_ARGS),
        ("add", "c3", ADD_ARGS),
    ]
    samples: list[float] = []
    for i in range(n + 200):
        t0 = time.perf_counter()
        results = await registry.dispatch_many(calls, timeout_s=5)
        elapsed = time.perf_counter() - t0
        assert all(r.ok for r in results)
        if i >= 200:
            samples.append(elapsed * 1000)
    return {
        "case": "dispatch_many (3 calls: sync, async, sync)",
        "kind": "mixed",
        "n": n,
        "tool_median_us": None,
        "overhead_p50_ms": round(percentile(samples, 50), 4),
        "overhead_p99_ms": round(percentile(samples, 99), 4),
        "overhead_max_ms": round(max(samples), 4),
        "ratio_p50": None,
    }


async def measure_thread_hop(n: int) -> dict[str, Any]:
    """asyncio's own cost of running a no-op in a worker thread: the floor for sync tools."""
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    for i in range(n + 200):
        t0 = time.perf_counter()
        await loop.run_in_executor(None, int)
        if i >= 200:
            samples.append((time.perf_counter() - t0) * 1000)
    return {
        "case": "baseline: run_in_executor(no-op)",
        "kind": "asyncio thread hop",
        "n": n,
        "tool_median_us": None,
        "overhead_p50_ms": round(percentile(samples, 50), 4),
        "overhead_p99_ms": round(percentile(samples, 99), 4),
        "overhead_max_ms": round(max(samples), 4),
        "ratio_p50": None,
    }


async def run(n: int) -> list[dict[str, Any]]:
    registry = Registry.of(plan_trip, plan_trip_async, add, add_async)
    rows = [
        await measure_thread_hop(n),
        await measure(registry, "add", ADD_ARGS, n),
        await measure(registry, "add_async", ADD_ARGS, n),
        await measure(registry, "plan_trip", TRIP_ARGS, n),
        await measure(registry, "plan_trip_async", TRIP_ARGS, n),
        await measure(registry, "plan_trip_async", TRIP_ARGS, n, with_item=True),
        await measure_many(registry, n // 2),
    ]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| case | kind | tool median (µs) | overhead p50 (ms) | overhead p99 (ms) | max (ms) "
        "| dispatch/direct p50 |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        tool_us = "-" if r["tool_median_us"] is None else f"{r['tool_median_us']:.2f}"
        ratio = "-" if r["ratio_p50"] is None else f"{r['ratio_p50']:.0f}x"
        lines.append(
            f"| {r['case']} | {r['kind']} | {tool_us} | {r['overhead_p50_ms']:.3f} | "
            f"{r['overhead_p99_ms']:.3f} | {r['overhead_max_ms']:.3f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="calls per case (default 5000)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "dispatch.json")
    args = parser.parse_args(argv)
    gc.collect()
    rows = asyncio.run(run(args.n))
    print(table(rows))
    single = [r for r in rows if r["tool_median_us"] is not None]
    worst = max(r["overhead_p99_ms"] for r in single)
    worst_async = max(r["overhead_p99_ms"] for r in single if r["kind"] == "async")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\np99 overhead, async tools (vlrun's own code): {worst_async:.3f} ms; "
        f"any single call incl. the sync worker-thread hop: {worst:.3f} ms; "
        f"target {TARGET_P99_MS} ms (load average {load:.2f} on {os.cpu_count()} CPUs; "
        "the baseline row is asyncio's own thread hop)"
    )
    report: dict[str, Any] = {
        "benchmark": "tool dispatch overhead, arguments JSON in -> output JSON ready, "
        "tool time excluded",
        "target_p99_ms": TARGET_P99_MS,
        "worst_p99_ms": worst,
        "worst_async_p99_ms": worst_async,
        "meets_target": worst <= TARGET_P99_MS,
        "meets_target_async": worst_async <= TARGET_P99_MS,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if worst_async <= TARGET_P99_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
