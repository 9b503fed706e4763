"""How many concurrent real-time audio sessions can one emulator process keep up with?

Starts `vlrun emulate` in its own process (the real CLI), opens N WebSocket sessions with
server VAD on, and streams 20 ms PCM16 frames in real time for each (speech, then silence,
repeated), from one cheap client: frames are pre-encoded JSON strings and one ticker sends a
frame to every session each 20 ms.

Measured:
- server lag per frame: how far the emulator's processing of a frame trails the audio clock
  (reported by the emulator per session, max over the run);
- event lag: time from sending the last frame of an utterance's trailing silence to receiving
  its speech_stopped (includes the client's own lateness, reported separately);
- server CPU % (of one core) and RSS per session.

A session "falls behind" when its server lag exceeds --lag-limit-ms. With --find-max, N steps
up until some session falls behind.

    python bench/bench_emulator.py                       # 200 sessions, 15 s
    python bench/bench_emulator.py --find-max --steps 200,300,400,500
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAME_MS = 20
RATE = 24000


def utterance_frames() -> list[str]:
    """One cycle of speech + silence as pre-encoded append events (espeak-ng if installed)."""
    from runner.emulator.speech import synthesize

    speech = asyncio.run(
        synthesize("This is one benchmark utterance from a simulated caller.", RATE)
    )
    pcm = np.frombuffer(speech, dtype=np.int16)
    cycle = np.concatenate([pcm, np.zeros(RATE * 1200 // 1000, dtype=np.int16)])
    step = RATE * FRAME_MS // 1000
    cycle = cycle[: cycle.size // step * step]
    return [
        json.dumps(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(cycle[i : i + step].tobytes()).decode(),
            }
        )
        for i in range(0, cycle.size, step)
    ]


def serve_baseline() -> None:
    """A bare aiohttp WebSocket server that only parses each event and reads its probe.

    Run side by side with the emulator it shows how much of the lag and CPU is the machine
    (sockets, event loop, other load) rather than the emulator's own work.
    """
    from aiohttp import web

    stats = {"probes": 0, "max_probe_lag_ms": 0.0, "probes_over_50ms": 0, "probes_over_100ms": 0}

    async def realtime(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            event_id = json.loads(msg.data).get("event_id", "")
            if event_id.startswith("lagprobe-"):
                lag = (time.monotonic_ns() - int(event_id[9:])) / 1e6
                stats["probes"] += 1
                stats["max_probe_lag_ms"] = max(stats["max_probe_lag_ms"], lag)
                stats["probes_over_50ms"] += lag > 50
                stats["probes_over_100ms"] += lag > 100
        return ws

    async def report(request: web.Request) -> web.Response:
        return web.json_response({"sessions": [{**stats, "max_lag_ms": 0.0}]})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/voice-live/realtime", realtime)
        app.router.add_get("/_emulator/stats", report)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_step(
    n: int,
    duration: float,
    frames: list[str],
    lag_limit_ms: float,
    responses: bool,
    profile: str | None = None,
    baseline: bool = False,
) -> dict[str, Any]:
    if baseline:
        command = [sys.executable, __file__, "--serve-baseline"]
    else:
        command = [
            sys.executable,
            *(["-m", "cProfile", "-o", profile] if profile else []),
            "-m",
            "runner",
            "emulate",
            "--port",
            "0",
            "--speed",
            "1",
        ]
    server = subprocess.Popen(  # noqa: ASYNC220 - once per step, before any timing
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert server.stdout is not None
    endpoint = server.stdout.readline().strip()
    ws_url = endpoint.replace("http://", "ws://") + "/voice-live/realtime?model=bench"
    try:
        await asyncio.sleep(0.5)
        rss_base = proc_rss_mb(server.pid)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            sockets = await asyncio.gather(
                *(http.ws_connect(ws_url, heartbeat=None) for _ in range(n))
            )
            update = json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "turn_detection": {
                            "type": "server_vad",
                            "create_response": responses,
                            "silence_duration_ms": 500,
                        }
                    },
                }
            )
            for ws in sockets:
                await ws.send_str(update)
            event_lags: list[float] = []
            stops = [0] * n
            t0_holder: dict[str, float] = {}

            async def receive(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    if '"input_audio_buffer.speech_stopped"' not in msg.data:
                        continue
                    end_ms = json.loads(msg.data)["audio_end_ms"]
                    sent_at = t0_holder["t0"] + (math.ceil(end_ms / FRAME_MS) - 1) * FRAME_MS / 1000
                    event_lags.append((time.monotonic() - sent_at) * 1000)
                    stops[i] += 1

            readers = [asyncio.create_task(receive(i, ws)) for i, ws in enumerate(sockets)]
            total = int(duration * 1000 / FRAME_MS)
            bodies = [f[1:] for f in frames]
            offsets = [(i * 37) % len(frames) for i in range(n)]
            client_late: list[float] = []
            cpu0, wall0 = proc_cpu_s(server.pid), time.monotonic()
            proc_cpu0 = time.process_time()
            t0 = t0_holder["t0"] = time.monotonic()
            for k in range(total):
                due = t0 + k * FRAME_MS / 1000
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                client_late.append((time.monotonic() - due) * 1000)
                # every frame carries its send time, so the emulator can measure its own lag;
                # callers do not speak in unison: each session starts at its own point of the cycle
                stamp = f'{{"event_id":"lagprobe-{time.monotonic_ns()}",'
                for i, ws in enumerate(sockets):
                    await ws.send_str(stamp + bodies[(k + offsets[i]) % len(bodies)])
            cpu1, wall1 = proc_cpu_s(server.pid), time.monotonic()
            client_cpu = time.process_time() - proc_cpu0
            rss_loaded = proc_rss_mb(server.pid)
            async with http.get(endpoint + "/_emulator/stats") as resp:
                stats = (await resp.json())["sessions"]
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        server.terminate()
        server.wait(10)
    if baseline:  # one aggregate row: the per-session view is the emulator's
        stats = stats * n
    lags = [s["max_probe_lag_ms"] for s in stats]
    clock_lags = [s["max_lag_ms"] for s in stats]
    behind = sum(1 for lag in lags if lag > lag_limit_ms)
    probes = sum(s["probes"] for s in stats)
    over50 = sum(s["probes_over_50ms"] for s in stats)
    over100 = sum(s["probes_over_100ms"] for s in stats)
    ev = sorted(event_lags) or [0.0]
    return {
        "server": "baseline aiohttp" if baseline else "emulator",
        "sessions": n,
        "duration_s": round(wall1 - wall0, 1),
        "frames_per_session": total,
        "server_lag_ms_max": round(max(lags), 1),
        "server_lag_ms_p99_of_session_max": round(float(np.percentile(lags, 99)), 1),
        "server_lag_ms_median_of_session_max": round(statistics.median(lags), 1),
        "sessions_behind": behind,
        "frames_over_50ms_pct": round(100 * over50 / max(1, probes), 3),
        "frames_over_100ms_pct": round(100 * over100 / max(1, probes), 3),
        "audio_clock_lag_ms_max": round(max(clock_lags), 1),
        "event_lag_ms_p50": round(ev[len(ev) // 2], 1),
        "event_lag_ms_p99": round(ev[min(len(ev) - 1, int(len(ev) * 0.99))], 1),
        "utterances_detected": sum(stops),
        "client_late_ms_max": round(max(client_late), 1),
        "server_cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
        "client_cpu_pct_of_one_core": round(100 * client_cpu / (wall1 - wall0), 1),
        "server_rss_mb": round(rss_loaded, 1),
        "rss_mb_per_session": round((rss_loaded - rss_base) / n, 3),
        "cpu_pct_per_session": round(100 * (cpu1 - cpu0) / (wall1 - wall0) / n, 3),
    }


def table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("server", "server"),
        ("sessions", "sessions"),
        ("sessions_behind", "behind"),
        ("server_lag_ms_max", "server lag max ms"),
        ("server_lag_ms_p99_of_session_max", "p99 ms"),
        ("frames_over_50ms_pct", "frames >50 ms %"),
        ("event_lag_ms_p50", "event lag p50 ms"),
        ("event_lag_ms_p99", "event lag p99 ms"),
        ("server_cpu_pct_of_one_core", "server CPU %"),
        ("cpu_pct_per_session", "CPU %/session"),
        ("rss_mb_per_session", "RSS MB/session"),
        ("client_late_ms_max", "client late max ms"),
    ]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[k]) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--lag-limit-ms", type=float, default=100.0)
    parser.add_argument(
        "--find-max", action="store_true", help="step up N until a session falls behind"
    )
    parser.add_argument("--steps", default="200,300,400,500,600")
    parser.add_argument(
        "--responses", action="store_true", help="let each utterance trigger a spoken reply"
    )
    parser.add_argument("--profile", help="write a cProfile of the emulator process here")
    parser.add_argument(
        "--compare-baseline",
        action="store_true",
        help="also run each step against a bare aiohttp server, for ratios",
    )
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "emulator.json")
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline()
        return 0
    frames = utterance_frames()
    steps = [int(s) for s in args.steps.split(",")] if args.find_max else [args.sessions]
    rows = []
    for n in steps:
        row = asyncio.run(
            run_step(n, args.duration, frames, args.lag_limit_ms, args.responses, args.profile)
        )
        rows.append(row)
        print(
            f"{n} sessions: behind={row['sessions_behind']} "
            f"server lag max={row['server_lag_ms_max']} ms "
            f"cpu={row['server_cpu_pct_of_one_core']}%",
            file=sys.stderr,
        )
        if args.compare_baseline:
            base = asyncio.run(
                run_step(n, args.duration, frames, args.lag_limit_ms, False, None, True)
            )
            rows.append(base)
            row["cpu_ratio_vs_baseline"] = round(
                row["server_cpu_pct_of_one_core"] / max(0.1, base["server_cpu_pct_of_one_core"]), 2
            )
        if row["sessions_behind"]:
            break
    kept = [r["sessions"] for r in rows if not r["sessions_behind"] and r["server"] == "emulator"]
    result = {
        "benchmark": "emulator: concurrent real-time sessions, 20 ms 24 kHz PCM16 frames, VAD",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "lag_limit_ms": args.lag_limit_ms,
        "responses": args.responses,
        "max_sessions_without_lag": max(kept) if kept else 0,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "steps": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(
        f"\nmax sessions without lag (of those tried): {result['max_sessions_without_lag']}; "
        f"JSON in {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
