"""A flow transition's cost: from the record call's arguments to the next node's first audio.

    python bench/bench_flow.py [--n 300] [--quick] [--json FILE]

A real LiveSession talks to the emulator (its own thread, speed 0) through a two-node loop;
each typed turn makes the emulator call ``record_<node>``, which moves the flow. For every
transition the client's own clock marks, on arrival or just before sending:

  args   response.function_call_arguments.done arrives (the call's arguments are known)
  done   response.done of that response arrives (the emulator has finished it)
  out    the next node's session.update is sent;   in   its session.updated arrives
  req    response.create is sent;                  audio the first audio delta arrives

vlrun's overhead = (audio - args) - (done - args) - (in - out) - (audio - req): the whole
delay minus every interval spent waiting for the emulator. Target: p99 <= 20 ms.
Prints a Markdown table and writes bench/results/flow.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
KEY = "bench-flow-key-3b9d41"
PROFILE = """\
name: bench-flow
instructions: Benchmark flow.
modalities: [text, audio]
flow:
  start: ping
  nodes:
    ping:
      instructions: Ping.
      collect: {n: {type: integer}}
      transitions: [{to: pong}]
    pong:
      instructions: "Pong {{ n }}."
      collect: {n: {type: integer}}
      transitions: [{to: ping}]
"""


def _transcript() -> Any:
    from runner.live.transcript import Transcript

    class Marks(Transcript):
        """Keeps (time, direction, type) of every traced event: the client's own clock."""

        def __init__(self) -> None:
            super().__init__(out=io.StringIO(), err=io.StringIO(), meter=False)
            self.marks: list[tuple[float, str, str]] = []

        @property
        def tracing(self) -> bool:
            return True

        def trace(self, direction: str, event: dict[str, Any]) -> None:
            self.marks.append((time.perf_counter(), direction, str(event.get("type"))))

    return Marks()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def transitions(marks: list[tuple[float, str, str]]) -> list[dict[str, float]]:
    """Each transition's marks, read off the trace in order."""
    out: list[dict[str, float]] = []
    cur: dict[str, float] | None = None
    for t, direction, kind in marks:
        if direction == "in" and kind == "response.function_call_arguments.done":
            cur = {"args": t}
        elif cur is None:
            continue
        elif direction == "in" and kind == "response.done" and "done" not in cur:
            cur["done"] = t
        elif direction == "out" and kind == "session.update":
            cur["out"] = t
        elif direction == "in" and kind == "session.updated" and "out" in cur:
            cur["in"] = t
        elif direction == "out" and kind == "response.create" and "in" in cur:
            cur["req"] = t
        elif direction == "in" and kind == "response.audio.delta" and "req" in cur:
            cur["audio"] = t
            out.append(cur)
            cur = None
    return out


async def measure(n: int) -> dict[str, Any]:
    from azure.core.credentials import AzureKeyCredential

    from runner import flows
    from runner.config.compile import compile_session
    from runner.config.load import load_profile
    from runner.emulator import emulator_thread
    from runner.live.audio import AudioFormat, ClockPlayer
    from runner.live.connect import Target
    from runner.live.session import LiveSession

    with tempfile.TemporaryDirectory() as tmp, emulator_thread(speed=0, api_key=KEY) as emu:
        path = Path(tmp) / "flow.yaml"
        path.write_text(PROFILE)
        profile = load_profile(path)
        payload, _, walk = flows.opening(profile, compile_session(profile), None)
        transcript = _transcript()
        session = LiveSession(
            target=Target(emu.endpoint, "bench", KEY, "bench", "gpt-realtime"),
            endpoint=emu.endpoint,
            credential=AzureKeyCredential(KEY),
            session_update=payload,
            transcript=transcript,
            player=ClockPlayer(AudioFormat(24000), realtime=False),
            lines=False,
            flow=walk,
        )
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 10)
        for i in range(n):
            await session.send_text(f"n={i}")
            await session.turn.until(lambda: session.turn.idle() and not session.tools_running)
        session.stop()
        await task
    rows = transitions(transcript.marks)
    total = [(r["audio"] - r["args"]) * 1000 for r in rows]
    waits = [
        ((r["done"] - r["args"]) + (r["in"] - r["out"]) + (r["audio"] - r["req"])) * 1000
        for r in rows
    ]
    own = [t - w for t, w in zip(total, waits, strict=True)]
    return {
        "transitions": len(rows),
        "path_length": len(walk.path) if walk else 0,
        "total_ms": {"median": statistics.median(total), "p99": _pct(total, 0.99)},
        "emulator_ms": {"median": statistics.median(waits), "p99": _pct(waits, 0.99)},
        "vlrun_ms": {
            "median": statistics.median(own),
            "p95": _pct(own, 0.95),
            "p99": _pct(own, 0.99),
            "max": max(own),
        },
        "target_p99_ms": 20.0,
    }


def table(r: dict[str, Any]) -> str:
    v, t, e = r["vlrun_ms"], r["total_ms"], r["emulator_ms"]
    return "\n".join(
        [
            "| flow transition (record call -> next node's first audio) | median | p99 |",
            "|---|---|---|",
            f"| whole delay | {t['median']:.2f} ms | {t['p99']:.2f} ms |",
            f"| waiting for the emulator | {e['median']:.2f} ms | {e['p99']:.2f} ms |",
            f"| vlrun's own (target p99 <= 20 ms) | {v['median']:.2f} ms | {v['p99']:.2f} ms |",
            f"\n{r['transitions']} transitions measured.",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="transitions to measure")
    parser.add_argument("--quick", action="store_true", help="50 transitions")
    parser.add_argument("--json", type=Path, default=RESULTS / "flow.json")
    args = parser.parse_args()
    result = asyncio.run(measure(50 if args.quick else args.n))
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
