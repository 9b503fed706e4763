"""Concurrent phone calls through one serve worker: how many before the audio suffers.

    python bench/bench_calls.py [--steps 10,25,50,100,150,200] [--duration 20] [--out FILE]

Three processes: the emulator (speed 1, real-time replies, synthetic voice), one worker
(``vlrun serve --serve-file``), and this one, which places N simulated Twilio
calls at once through the worker's signed webhook and media socket. Each call is full duplex
in real-time 20 ms μ-law frames: the caller asks for the time in Tokyo (a tool call), talks
over the long reply (a barge-in: ``clear`` and a truncate), hears the short answer, hangs up.

Per step it reports:
- the worker's added delay per outbound frame (``vlrun_outbound_frame_delay_seconds``: from
  when the frame could have left, its audio in hand and the caller's buffer at the refill
  mark, to when it left); p99 must stay <= 20 ms;
- frame lateness at the callers' ears: how much later than its play-out slot each assistant
  frame arrived (slot = first frame of the talk spurt + 20 ms per frame). This includes the
  emulator's own pacing and the callers' process, so it is reported, not the target;
- underruns: frames of a reply the worker sent after the caller's buffer had run dry, as the
  worker counts them (``vlrun_edge_dropouts_total{kind="underrun"}``; must be 0);
- turn latency (end of speech -> first audio): p50/p99, and p99 added over the 1-call p50;
- the worker's CPU (% of one core) and RSS, per call.
The largest N that meets both audio targets is the result. The callers share this process and
its 2 cores with the worker and the emulator, so the figure is a floor for the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.phone_callers import FRAME_MS, TwilioCaller, mulaw_tone, parse_twiml  # noqa: E402

TOKEN = "bench-twilio-token-0123456789"
TICK = os.sysconf("SC_CLK_TCK")
PROFILE = """\
name: bench-phone
description: Benchmark phone desk with one tool.
instructions: You answer the phone.
voice: alloy
turn_detection: {type: server_vad, threshold: 0.5, prefix_padding_ms: 100, silence_duration_ms: 300}
tools:
  - name: current_time
"""
SCRIPT = """\
description: bench calls
turns:
  - turn: 1
    transcript: What time is it in Tokyo?
    tools:
      - {name: current_time, arguments: {timezone: Asia/Tokyo}}
    then: >-
      In Tokyo it is {output.time} on {output.date}. Tokyo is nine hours ahead of universal
      time, and it is a lovely time of year to visit the city, with its gardens and markets.
  - turn: 2
    transcript: Thanks, that is enough.
    say: You are welcome. Goodbye.
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class BenchCaller(TwilioCaller):
    """A Twilio caller whose microphone is driven by the shared ticker (one wake-up for all)."""

    def __init__(self) -> None:
        super().__init__()
        self.spurt_start: float | None = None
        self.spurt_frames = 0
        self.lateness: list[float] = []
        self.last_arrival = 0.0
        self.speech_end: float | None = None
        self.turn_latency: list[float] = []
        self.done = asyncio.Event()
        self.error: str | None = None

    async def connect(self, url: str, parameters: dict[str, str], headers: Any = None) -> None:
        await super().connect(url, parameters, headers)
        self.tasks[0].cancel()  # the per-caller microphone: the ticker sends instead

    def hear_frame(self, now: float) -> None:
        if self.spurt_start is None or now - self.last_arrival > 0.25:
            self.spurt_start, self.spurt_frames = now, 0  # a new talk spurt
            if self.speech_end is not None:
                self.turn_latency.append(now - self.speech_end)
                self.speech_end = None
        slot = self.spurt_start + self.spurt_frames * FRAME_MS / 1000
        self.lateness.append(max(0.0, now - slot))
        self.spurt_frames += 1
        self.last_arrival = now

    async def _receive(self) -> None:
        import base64

        try:
            async for raw in self.ws:
                data = json.loads(raw)
                event = data.get("event")
                if event == "media":
                    self.hear_frame(time.monotonic())
                    self.ear.hear(base64.b64decode(data["media"]["payload"]))
                elif event == "mark":
                    self._marks.append(
                        (max(self.ear.play_end, time.monotonic()), data["mark"]["name"])
                    )
                    self._mark_wake.set()
                elif event == "clear":
                    self.clears += 1
                    self.ear.clear()
                    self.spurt_start = None
                    while self._marks:
                        await self._echo(self._marks.popleft()[1])
                self._note(str(event))
        finally:
            self.closed.set()


async def ticker(callers: list[BenchCaller], stop: asyncio.Event) -> None:
    """Every 20 ms, one frame from each caller (speech if it has some queued, else silence)."""
    loop = asyncio.get_running_loop()
    start, n = loop.time(), 0
    while not stop.is_set():
        n += 1
        await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))
        for c in callers:
            if c.closed.is_set():
                continue
            frame = bytes(c.pending[:160])
            del c.pending[:160]
            if frame and not c.pending:
                c.speech_end = time.monotonic() + 0.3  # end of speech: the VAD's silence after it
            frame += b"\xff" * (160 - len(frame))
            with contextlib.suppress(Exception):
                await c.send_frame(frame)
                c.frames_sent += 1


async def one_call(base: str, caller: BenchCaller) -> None:
    import aiohttp
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    form = {"CallSid": caller.call_sid, "From": "+15559990000", "To": "+15550001111"}
    url = base + "/twilio/voice"
    headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
    stage = "connect"
    try:
        async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=headers) as r:
            xml = await r.text()
        stream, params = parse_twiml(xml)
        await caller.connect(
            stream, params, headers={"X-Twilio-Signature": validator.compute_signature(stream, {})}
        )
        stage = "turn 1"
        caller.say(mulaw_tone(800))  # turn 1: the tool call
        await caller.ear.until_heard(1500, timeout=30)  # well into the long reply
        heard = len(caller.ear.received)
        stage = "barge-in"
        caller.say(mulaw_tone(600))  # the barge-in (a clear follows if audio was still queued)
        await caller.ear.until_heard(heard / 8 + 1000, timeout=30)  # the short answer
        stage = "hang-up"
        await caller.stop()
        await asyncio.wait_for(caller.closed.wait(), 10)
    except Exception as exc:  # one failed call is a result, not the end of the benchmark
        caller.error = f"{stage}: {type(exc).__name__}: {exc}"
    finally:
        caller.done.set()


async def underruns(base: str, kind: str = "underrun") -> float:
    """The worker's own count: frames of a reply sent after the caller's buffer ran dry
    although the audio was there in time (``underrun``), or because it came late
    (``audio_late``: the emulator's pacing, not the worker)."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        text = await r.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "vlrun_edge_dropouts_total" and s.labels.get("kind") == kind
    )


async def frame_delay_buckets(base: str) -> dict[float, float]:
    """The worker's vlrun_outbound_frame_delay_seconds buckets (cumulative counts by bound)."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        text = await r.text()
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "vlrun_outbound_frame_delay_seconds_bucket":
                bound = float(s.labels["le"])
                out[bound] = out.get(bound, 0.0) + s.value
    return out


def bucket_p99(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound (s) of the bucket holding the 99th percentile of the step's frames."""
    counts = {b: after.get(b, 0.0) - before.get(b, 0.0) for b in after}
    total = counts.get(float("inf"), 0.0)
    if not total:
        return None
    for bound in sorted(counts):
        if counts[bound] >= 0.99 * total:
            return bound
    return None


async def step(
    base: str, worker_pid: int, n: int, duration: float, emulator_pid: int = 0
) -> dict[str, Any]:
    callers = [BenchCaller() for _ in range(n)]
    underruns0 = await underruns(base)
    delays0 = await frame_delay_buckets(base)
    late0 = await underruns(base, "audio_late")
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(callers, stop))
    rss0 = rss_mb(worker_pid)
    cpu0, t0 = cpu_s(worker_pid), time.monotonic()
    others0 = (cpu_s(emulator_pid) if emulator_pid else 0.0, cpu_s(os.getpid()))
    peak_rss = rss0
    calls = []
    for i, caller in enumerate(callers):  # calls arrive over 1 s, as a burst of real traffic
        calls.append(asyncio.create_task(one_call(base, caller)))
        if i % 10 == 9:
            await asyncio.sleep(0.1 * 10 / max(n, 10))
    all_done = asyncio.gather(*(c.done.wait() for c in callers))
    while not all_done.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(all_done), 1.0)
        peak_rss = max(peak_rss, rss_mb(worker_pid))
        if time.monotonic() - t0 > duration * 3:
            break
    cpu1, t1 = cpu_s(worker_pid), time.monotonic()
    others1 = (cpu_s(emulator_pid) if emulator_pid else 0.0, cpu_s(os.getpid()))
    stop.set()
    await tick
    for caller in callers:
        await caller.close()
    await asyncio.gather(*calls, return_exceptions=True)
    worker_underruns = await underruns(base) - underruns0
    delay_p99 = bucket_p99(delays0, await frame_delay_buckets(base))
    audio_late = await underruns(base, "audio_late") - late0
    lateness = [x for c in callers for x in c.lateness]
    turns = [x for c in callers for x in c.turn_latency]
    errors = [c.error for c in callers if c.error]
    return {
        "calls": n,
        "failed_calls": len(errors),
        "errors": errors[:3],
        "frames": len(lateness),
        # what the worker added per frame, p99 (upper bound of its histogram bucket)
        "worker_added_delay_p99_ms": None if delay_p99 is None else delay_p99 * 1000,
        "lateness_p50_ms": round(pct(lateness, 50) * 1000, 2),
        "lateness_p99_ms": round(pct(lateness, 99) * 1000, 2),
        "underruns": int(worker_underruns),
        "frames_after_late_service_audio": int(audio_late),
        # the callers' ears cannot tell a late frame from the start of the next reply
        "caller_heard_gaps": sum(c.ear.gaps for c in callers),
        "barge_ins_cleared": sum(1 for c in callers if c.clears),
        "turn_latency_p50_ms": round(pct(turns, 50) * 1000, 1),
        "turn_latency_p99_ms": round(pct(turns, 99) * 1000, 1),
        "worker_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "worker_cpu_pct_per_call": round(100 * (cpu1 - cpu0) / (t1 - t0) / n, 2),
        "emulator_cpu_pct": round(100 * (others1[0] - others0[0]) / (t1 - t0), 1),
        "callers_cpu_pct": round(100 * (others1[1] - others0[1]) / (t1 - t0), 1),
        "worker_rss_mb": round(peak_rss, 1),
        "worker_rss_mb_per_call": round((peak_rss - rss0) / n, 3),
        "wall_s": round(t1 - t0, 1),
    }


async def wait_line(stream: Any, needle: str, timeout: float = 30) -> str:
    async def find() -> str:
        async for raw in stream:
            text = raw.decode("utf-8", "replace")
            if needle in text:
                return text
        raise RuntimeError(f"ended before {needle!r}")

    return await asyncio.wait_for(find(), timeout)


async def drain_output(stream: Any) -> None:
    async for _ in stream:
        pass


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vlrun-bench-calls-"))
    (tmp / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "current_time.py", tmp / "tools" / "current_time.py")
    (tmp / "phone.yaml").write_text(PROFILE)
    (tmp / "script.yaml").write_text(SCRIPT)
    serve = tmp / "serve.yaml"
    serve.write_text(
        "serve: 1\nmax_calls: 2000\nroutes:\n  - {default: true, profile: phone.yaml}\n"
        "twilio:\n  auth_token: ${env:BENCH_TWILIO}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLRUN_DOTENV": "none", "BENCH_TWILIO": TOKEN}
    emulator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "emulate", "--port", "0", "--speed", "1",
        "--no-espeak", "--scenario", str(tmp / "script.yaml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert emulator.stdout is not None
    endpoint = (await wait_line(emulator.stdout, "http://")).strip().split()[0]
    port = free_port()
    profile = ["-m", "cProfile", "-o", str(args.profile_worker)] if args.profile_worker else []
    worker = await asyncio.create_subprocess_exec(
        sys.executable, *profile, "-m", "runner", "serve", str(tmp / "phone.yaml"),
        "--serve-file", str(serve), "--endpoint", endpoint, "--port", str(port),
        "--max-conversations", "2000",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    assert worker.stdout is not None
    drains = [asyncio.create_task(drain_output(emulator.stdout))]
    try:
        await wait_line(worker.stdout, "open http://")
        drains.append(asyncio.create_task(drain_output(worker.stdout)))
        base = f"http://127.0.0.1:{port}"
        results: list[dict[str, Any]] = []
        baseline = await step(base, worker.pid, 1, args.duration, emulator.pid)
        results.append(baseline)
        best = 0
        for n in args.steps:
            result = await step(base, worker.pid, n, args.duration, emulator.pid)
            result["added_turn_latency_p99_ms"] = round(
                result["turn_latency_p99_ms"] - baseline["turn_latency_p50_ms"], 1
            )
            added = result["worker_added_delay_p99_ms"]
            result["meets_target"] = (
                added is not None
                and added <= 20
                and result["underruns"] == 0
                and result["failed_calls"] == 0
            )
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
            if not result["meets_target"]:
                break
            best = n
        return {
            "steps": results,
            "max_calls_meeting_target": best,
            "target": "worker-added frame delay p99 <= 20 ms, no worker underrun, no failed call",
            "machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]},
        }
    finally:
        for proc in (worker, emulator):
            if proc.returncode is None:
                proc.terminate()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), 20)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        for task in drains:
            task.cancel()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 25, 50, 100, 150, 200],
    )
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--profile-worker", type=Path, help="write the worker's cProfile here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "calls.json")
    args = parser.parse_args()
    data = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: v for k, v in data.items() if k != "steps"}))
    for row in data["steps"]:
        print(
            f"{row['calls']:>4} calls: added p99 <= {row['worker_added_delay_p99_ms']} ms, "
            f"lateness at the ear p99 {row['lateness_p99_ms']:.1f} ms, "
            f"underruns {row['underruns']}, turn p99 {row['turn_latency_p99_ms']:.0f} ms, "
            f"worker {row['worker_cpu_pct']:.0f}% CPU, "
            f"{row['worker_rss_mb_per_call']:.2f} MB/call, "
            f"failed {row['failed_calls']}; emulator {row['emulator_cpu_pct']:.0f}% CPU, "
            f"callers {row['callers_cpu_pct']:.0f}% CPU, "
            f"late service audio {row['frames_after_late_service_audio']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
