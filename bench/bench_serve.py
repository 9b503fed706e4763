"""The browser edge's cost: browser -> `vlrun serve` -> emulator, beside the console runner.

    python bench/bench_serve.py [--quick] [--conversations 4] [--seconds 30] [--json FILE]

Both paths hear the same espeak-ng question (then silence, so server VAD ends the turn) on the
same real-time clock, from the same `vlrun emulate` process (its CPU is never counted):
- console: a LiveSession in this process, the speech fed as a live source and replies into a
  clock player (the console runner's own code path, without sound devices);
- browser edge: `vlrun serve --endpoint EMULATOR` in its own process, with Python WebSocket
  clients standing in for the page (they speak the page's protocol: 40 ms PCM16 frames in,
  binary reply audio out).

Measured per turn, at the edge: the last speech frame handed over -> the first reply audio
back (server VAD's silence window is in both; the difference is what the edge adds).
Server CPU: utime+stime of the `vlrun serve` process from /proc over the measuring window,
divided by the conversations it hosted, as a share of one core. Prints a Markdown table and
writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"
KEY = "bench-serve-key-41c7"
FRAME_MS = 40
SILENCE_S = 3.0
TICK = os.sysconf("SC_CLK_TCK")
PROFILE = """\
name: bench-serve
description: One short spoken turn after another (the same for both paths).
instructions: Benchmark conversation.
voice: alloy
turn_detection:
  type: server_vad
  silence_duration_ms: 500
"""
SCRIPT = "description: bench\nturns:\n  - say: Here is a short answer for you.\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(args: list[str], first_line: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A vlrun process; yields it and the first stdout line that starts with ``first_line``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VLRUN_DOTENV": "none"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and not line.startswith(first_line):
            line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"vlrun {args[0]} did not start")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc, line.strip()
    finally:
        proc.terminate()
        proc.wait(30)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


class Turns:
    """Speech end (last speech frame handed over) -> first reply audio, per turn."""

    def __init__(self) -> None:
        self.speech_end: float | None = None
        self.latencies: list[float] = []

    def spoke(self) -> None:
        self.speech_end = time.perf_counter()

    def audio(self) -> None:
        if self.speech_end is not None:
            self.latencies.append(time.perf_counter() - self.speech_end)
            self.speech_end = None


async def paced_frames(
    speech: bytes, seconds: float, turns: Turns, first: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """Speech, then silence, again and again, one frame per FRAME_MS on the loop's clock."""
    step = 24000 * 2 * FRAME_MS // 1000
    cycle = speech + bytes(int(24000 * SILENCE_S) * 2)
    cycle += bytes(-len(cycle) % step)
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while loop.time() - start < seconds:
        for offset in range(0, len(cycle), step):
            n += 1
            delay = start + n * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # a microphone's clock, not a wait for a condition
            yield cycle[offset : offset + step]
            if offset + step >= len(speech) and offset < len(speech):
                turns.spoke()


async def console(endpoint: str, profile: Path, speech: bytes, seconds: float) -> dict[str, Any]:
    """The console runner's path: one LiveSession in this process."""
    import io

    from runner.config.compile import compile_session
    from runner.config.load import load_profile
    from runner.live.audio import AudioFormat, ClockPlayer
    from runner.live.connect import make_credential, resolve_target
    from runner.live.session import LiveSession
    from runner.live.transcript import Transcript

    turns = Turns()

    class Source:
        live = True
        fmt = AudioFormat(24000)

        def frames(self) -> AsyncIterator[bytes]:
            return paced_frames(speech, seconds, turns)

        def close(self) -> None:
            pass

    class Player(ClockPlayer):
        def write(self, item_id: str, pcm: bytes) -> None:
            turns.audio()
            super().write(item_id, pcm)

    loaded = load_profile(profile)
    target = resolve_target(loaded, endpoint=endpoint)
    import dataclasses

    target = dataclasses.replace(target, api_key=KEY)
    live = LiveSession(
        target=target,
        endpoint=endpoint,
        credential=make_credential(target),
        session_update=compile_session(loaded),
        transcript=Transcript(verbosity=0, out=io.StringIO(), err=io.StringIO(), meter=False),
        player=Player(AudioFormat(24000)),
        source=Source(),
        lines=False,
        interactive=False,
        end_when_input_ends=True,
    )
    cpu0, t0 = time.process_time(), time.perf_counter()
    await live.run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {
        "turns": len(turns.latencies),
        "latency": turns.latencies,
        "cpu_percent_of_one_core": round(cpu / wall * 100, 3),
    }


async def browser_client(base: str, speech: bytes, seconds: float) -> list[float]:
    """One page's conversation over the WebSocket; returns its per-turn latencies."""
    import aiohttp

    turns = Turns()
    async with aiohttp.ClientSession() as http, http.ws_connect(base + "/ws", origin=base) as ws:
        await ws.send_str(json.dumps({"type": "start", "profile": "bench-serve"}))
        started = asyncio.Event()

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    turns.audio()
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    kind = json.loads(msg.data).get("type")
                    if kind == "session":
                        started.set()
                    elif kind == "ended":
                        return

        reader = asyncio.create_task(read())
        await asyncio.wait_for(started.wait(), 30)
        await ws.send_str(json.dumps({"type": "format", "rate": 24000}))
        async for frame in paced_frames(speech, seconds, turns):
            await ws.send_bytes(frame)
        await ws.send_str(json.dumps({"type": "stop", "graceful": True}))
        await asyncio.wait_for(reader, 60)
    return turns.latencies


def stats_ms(values_s: list[float]) -> dict[str, Any]:
    from bench_runner import stats_ms as runner_stats

    return runner_stats(values_s)  # type: ignore[no-any-return]


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from bench_runner import speech_pcm

    speech = speech_pcm(tmp, "What is the weather like in Paris today?")
    profiles = tmp / "profiles"
    profiles.mkdir()
    (profiles / "bench-serve.yaml").write_text(PROFILE)
    (tmp / "script.yaml").write_text(SCRIPT)
    emu_port, serve_port = free_port(), free_port()
    emulate = ["emulate", "--port", str(emu_port), "--api-key", KEY]
    with process([*emulate, "--scenario", str(tmp / "script.yaml")], "http") as (_, endpoint):
        os.environ["AZURE_VOICELIVE_API_KEY"] = KEY
        await console(endpoint, profiles / "bench-serve.yaml", speech, 4.0)  # warm-up: imports
        solo = await console(endpoint, profiles / "bench-serve.yaml", speech, args.seconds)
        serve_args = ["serve", str(profiles), "--port", str(serve_port), "--endpoint", endpoint]
        with process([*serve_args, "--drain-timeout", "1"], "open ") as (proc, line):
            base = line.split()[1].rstrip("/")
            out: dict[str, Any] = {}
            await browser_client(base, speech, 4.0)  # warm-up: the server's first imports
            for n in sorted({1, args.conversations}):
                cpu0, t0 = proc_cpu_s(proc.pid), time.perf_counter()
                results = await asyncio.gather(
                    *(browser_client(base, speech, args.seconds) for _ in range(n))
                )
                cpu, wall = proc_cpu_s(proc.pid) - cpu0, time.perf_counter() - t0
                latencies = [x for r in results for x in r]
                out[str(n)] = {
                    "conversations": n,
                    "turns": len(latencies),
                    "latency_ms": stats_ms(latencies),
                    "server_cpu_percent_per_conversation": round(cpu / wall * 100 / n, 3),
                }
    console_ms = stats_ms(solo.pop("latency"))
    one = out["1"]["latency_ms"]
    added = (
        round(one["median"] - console_ms["median"], 1)
        if one["median"] is not None and console_ms["median"] is not None
        else None
    )
    return {
        "seconds": args.seconds,
        "console": {**solo, "latency_ms": console_ms},
        "serve": out,
        "added_latency_ms_median": added,
        "load_average_1m": os.getloadavg()[0],
    }


def table(r: dict[str, Any]) -> str:
    c = r["console"]
    rows = [
        "| path | conversations | turns | speech end → first audio p50 / p95 "
        "| CPU % of one core per conversation |",
        "|---|---|---|---|---|",
        f"| console runner (in process) | 1 | {c['turns']} | {c['latency_ms']['median']} / "
        f"{c['latency_ms']['p95']} ms | {c['cpu_percent_of_one_core']} % (client) |",
    ]
    for s in r["serve"].values():
        lat = s["latency_ms"]
        rows.append(
            f"| browser edge → vlrun serve → emulator | {s['conversations']} | {s['turns']} "
            f"| {lat['median']} / {lat['p95']} ms "
            f"| {s['server_cpu_percent_per_conversation']} % (server) |"
        )
    rows.append("")
    added = r["added_latency_ms_median"]
    rows.append(f"added by the browser edge (p50, 1 conversation): {added} ms")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="15 s per run")
    parser.add_argument("--json", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 15.0
    with tempfile.TemporaryDirectory(prefix="vlrun-bench-serve-") as tmp:
        results = asyncio.run(measure(args, Path(tmp)))
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
