"""Every vlrun benchmark in one run on this machine, side by side, with the baseline ratio.

    python bench/run_all.py [--quick] [--soak MINUTES]

What runs, in order (each part says "not measured" with the reason instead of a figure when
it cannot run here):
- full-duplex conversation, vlrun vs the quickstart-style baseline (bench/baseline_client.py):
  both are real processes on the same PortAudio devices (PulseAudio null sinks on a headless
  machine), talking to the same emulator at real-time speed while a tone pattern is played
  into the microphone. Client CPU is read from /proc for a steady window of the conversation;
- vlrun's own barge-in and write latency: bench/bench_runner.py (the runner's benchmark);
- tool dispatch overhead: bench/bench_dispatch.py;
- a flow transition's own delay: bench/bench_flow.py;
- the browser edge (page -> `vlrun serve` -> emulator) beside the console runner: added
  latency and server CPU per conversation: bench/bench_serve.py;
- `vlrun check` throughput and cold start: bench/bench_check.py;
- emulator concurrent-session capacity and memory per session: bench/bench_emulator.py;
- concurrent phone calls through one serve worker (Twilio framing): bench/bench_calls.py;
- with --soak: one long vlrun conversation, memory and CPU sampled each minute (drift).

Prints one Markdown table and writes bench/results/all.json (compare it across commits).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
KEY = "bench-run-all-key-7c1d"
OUTPUT_BUFFER_MS = 20  # vlrun's output callback period (runner/audio.py frames_per_buffer)
TICK = os.sysconf("SC_CLK_TCK")

PROFILE = """\
name: bench-full-duplex
description: The same session as bench/baseline_client.py, for a like-for-like comparison.
instructions: Benchmark conversation.
voice: alloy
turn_detection:
  type: server_vad
  silence_duration_ms: 500
"""


# ------------------------------------------------------------------------------ helpers


def log(text: str) -> None:
    print(f"[run_all] {text}", file=sys.stderr, flush=True)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def audio_ready() -> str | None:
    """None when PortAudio has a microphone and speaker we can feed; otherwise why not."""
    if shutil.which("paplay") is None:
        return "paplay not installed (apt-get install pulseaudio-utils)"
    # A private sound server (its own runtime folder): the user's is never touched, and
    # this run's (and the benchmarks it starts) stops at exit.
    os.environ["PULSE_RUNTIME_PATH"] = tempfile.mkdtemp(prefix="vlrun-bench-pulse-")
    os.environ.pop("PULSE_SERVER", None)
    script = str(ROOT / "scripts" / "pulse-env.sh")
    status = subprocess.run(["bash", script, "start"], capture_output=True, text=True, check=False)
    if status.returncode != 0:
        return f"no PulseAudio null sinks ({status.stderr.strip() or status.stdout.strip()})"
    atexit.register(subprocess.run, ["bash", script, "stop"], capture_output=True, check=False)
    return None


def write_feed(path: Path, seconds: float) -> None:
    """The 'user': 1.2 s of voiced tone, 2 s of quiet, repeated (barges in on long replies)."""
    rate = 24000
    t = np.arange(int(rate * 1.2)) / rate
    voiced = 6000 * np.sin(2 * np.pi * 300 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    cycle = np.concatenate([voiced, np.zeros(int(rate * 2.0))]).astype("<i2")
    reps = max(1, int(seconds / 3.2) + 1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.tile(cycle, reps).tobytes())


@contextlib.contextmanager
def feeding(wav: Path) -> Iterator[None]:
    """Play ``wav`` into the virtual microphone, over and over, until the block ends."""
    stop = threading.Event()
    current: list[subprocess.Popen[bytes]] = []

    def loop() -> None:
        while not stop.is_set():
            proc = subprocess.Popen(
                ["paplay", "--device=vmic", str(wav)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            current[:] = [proc]
            proc.wait()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        for proc in current:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        thread.join(5)


def sample_window(
    proc: subprocess.Popen[Any], warmup_s: float, window_s: float, every_s: float = 0.0
) -> dict[str, Any]:
    """CPU and RSS of ``proc`` over [warmup, warmup + window]; optional per-interval samples."""
    time.sleep(warmup_s)  # pacing the measurement window, not synchronising
    if proc.poll() is not None:
        raise RuntimeError(f"the client exited early with {proc.returncode}")
    cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()
    rss0 = proc_rss_mb(proc.pid)
    points = []
    step = every_s or window_s
    while time.monotonic() - t0 < window_s - 1e-3:
        time.sleep(min(step, window_s - (time.monotonic() - t0)))
        if proc.poll() is not None:
            raise RuntimeError(f"the client exited early with {proc.returncode}")
        points.append(
            {
                "t_s": round(time.monotonic() - t0, 1),
                "cpu_s": round(proc_cpu_s(proc.pid) - cpu0, 3),
                "rss_mb": round(proc_rss_mb(proc.pid), 1),
            }
        )
    cpu, wall = proc_cpu_s(proc.pid) - cpu0, time.monotonic() - t0
    return {
        "window_s": round(wall, 1),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_min": round(cpu / wall * 60, 3),
        "rss_mb_start": round(rss0, 1),
        "rss_mb_end": round(proc_rss_mb(proc.pid), 1),
        "points": points,
    }


def stop_gently(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env.update({"PYTHONPATH": str(ROOT), "VLRUN_DOTENV": "none", "AZURE_VOICELIVE_API_KEY": KEY})
    return env


# ------------------------------------------------------------------------------ parts


def conversation_counts(emu: Any, since: int) -> dict[str, int]:
    """What the emulator saw of a client's conversation: proof both really talked."""
    sent = [e["type"] for r in emu.sessions[since:] for e in r.sent]
    received = [e["type"] for r in emu.sessions[since:] for e in r.received]
    return {
        "user_turns": sent.count("input_audio_buffer.speech_stopped"),
        "replies_completed_or_cancelled": sent.count("response.done"),
        "audio_frames_sent": received.count("input_audio_buffer.append"),
        "client_cancels_or_truncates": received.count("response.cancel")
        + received.count("conversation.item.truncate"),
    }


def full_duplex(emu: Any, tmp: Path, seconds: float, warmup: float) -> dict[str, Any]:
    """vlrun and the baseline, one after the other, same emulator, devices and microphone feed."""
    why = audio_ready()
    if why is not None:
        return {"skipped": why}
    feed = tmp / "feed.wav"
    write_feed(feed, 60)
    profile = tmp / "bench-full-duplex.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    out: dict[str, Any] = {"conversation_s": seconds, "warmup_s": warmup}
    endpoint = emu.endpoint
    with feeding(feed):
        log(f"full duplex: vlrun for {seconds + warmup:.0f} s")
        since = len(emu.sessions)
        vl = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(profile), "--endpoint", endpoint]
            + ["--logs", "-", "--quiet"],
            cwd=tmp,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out["vlrun"] = sample_window(vl, warmup, seconds)
        except RuntimeError as exc:
            out["vlrun"] = {"skipped": f"{exc}: {vl.stderr.read()[-400:] if vl.stderr else ''}"}
        finally:
            stop_gently(vl)
        out["vlrun"]["seen_by_emulator"] = conversation_counts(emu, since)
        since = len(emu.sessions)
        log(f"full duplex: baseline for {seconds + warmup:.0f} s")
        result = tmp / "baseline.json"
        base = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "baseline_client.py"), "--endpoint", endpoint]
            + ["--api-key", KEY, "--duration", str(seconds + warmup + 2), "--json", str(result)],
            cwd=tmp,
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            out["baseline"] = sample_window(base, warmup, seconds)
            base.wait(30)
            out["baseline"].update(json.loads(result.read_text()))
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            out["baseline"] = {"skipped": str(exc)}
        finally:
            stop_gently(base)
        out["baseline"]["seen_by_emulator"] = conversation_counts(emu, since)
    return out


def run_script(name: str, args: list[str], json_path: Path, timeout: float) -> dict[str, Any]:
    """Run another engineer's bench script as they ship it; read the JSON it writes."""
    script = ROOT / "bench" / name
    if not script.is_file():
        return {"skipped": f"bench/{name} is missing"}
    log(f"{name} {' '.join(args)}")
    return run_and_read(f"bench/{name}", [str(script), *args], json_path, timeout)


def run_and_read(
    label: str, python_args: list[str], json_path: Path, timeout: float
) -> dict[str, Any]:
    """Run Python with ``python_args`` and read the JSON file it must (re)write."""
    started, wall = time.monotonic(), time.time()
    try:
        proc = subprocess.run(
            [sys.executable, *python_args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"{label} did not finish within {timeout:.0f} s"}
    fresh = json_path.is_file() and json_path.stat().st_mtime >= wall - 1
    if not fresh:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        return {
            "skipped": f"{label} exited {proc.returncode} and wrote no {json_path.name}: "
            + " / ".join(tail)
        }
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"skipped": f"{label} wrote no readable {json_path.name} ({exc})"}
    data["_elapsed_s"] = round(time.monotonic() - started, 1)
    # some scripts exit non-zero when they miss their own target; the figures still stand
    data["_exit_code"] = proc.returncode
    return data


RUNNER_WITH_BASELINE = """
import sys
sys.path.insert(0, {bench!r})
import bench_runner, baseline_client
bench_runner.CLIENTS.setdefault("baseline", baseline_client.HarnessClient)
sys.argv = ["bench_runner.py", *{args!r}]
raise SystemExit(bench_runner.main())
"""


def runner_bench(quick: bool, json_path: Path) -> dict[str, Any]:
    """bench/bench_runner.py with the baseline registered as a second client of its harness."""
    if not (ROOT / "bench" / "bench_runner.py").is_file():
        return {"skipped": "bench/bench_runner.py is missing"}
    options = [*script_options("bench_runner.py", quick, json_path), "--clients", "vlrun,baseline"]
    code = RUNNER_WITH_BASELINE.format(bench=str(ROOT / "bench"), args=options)
    log(f"bench_runner.py {' '.join(options)} (baseline registered as a client)")
    return run_and_read("bench/bench_runner.py", ["-c", code], json_path, 900)


def soak(endpoint: str, tmp: Path, minutes: float) -> dict[str, Any]:
    """One long vlrun conversation; memory and CPU per minute, first vs last."""
    why = audio_ready()
    if why is not None:
        return {"skipped": why}
    feed = tmp / "feed.wav"
    write_feed(feed, 60)
    profile = tmp / "bench-full-duplex.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    log(f"soak: vlrun for {minutes:g} min")
    with feeding(feed):
        vl = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(profile), "--endpoint", endpoint]
            + ["--logs", str(tmp / "soak-logs"), "--quiet"],
            cwd=tmp,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            window = sample_window(vl, 5.0, minutes * 60, every_s=60.0)
        except RuntimeError as exc:
            return {"skipped": str(exc)}
        finally:
            stop_gently(vl)
    points = window["points"]
    per_min = [
        round(b["cpu_s"] - a["cpu_s"], 3)
        for a, b in zip([{"cpu_s": 0.0}, *points[:-1]], points, strict=True)
    ]
    return {
        "minutes": minutes,
        "rss_mb": [p["rss_mb"] for p in points],
        "cpu_s_per_min": per_min,
        "rss_drift_mb": round(points[-1]["rss_mb"] - points[0]["rss_mb"], 1) if points else None,
        "cpu_drift_s_per_min": round(per_min[-1] - per_min[0], 3) if per_min else None,
    }


# ------------------------------------------------------------------------------ table


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def ratio(baseline: float | None, ours: float | None) -> str:
    """How many times better vlrun is (baseline / vlrun for 'lower is better' figures)."""
    if baseline is None or ours is None or ours <= 0:
        return "—"
    return f"{baseline / ours:.1f}×"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    fd = results.get("full_duplex", {})
    vl, base = fd.get("vlrun", {}), fd.get("baseline", {})
    why_fd = fd.get("skipped") or vl.get("skipped") or base.get("skipped")
    if why_fd:
        out.append(
            ("client CPU per minute of full-duplex talk", f"not measured: {why_fd}", "", "", "")
        )
    else:
        out.append(
            (
                "client CPU per minute of full-duplex talk, separate processes (CPU-s/min)",
                fmt(vl.get("cpu_s_per_min"), " s", 2),
                fmt(base.get("cpu_s_per_min"), " s", 2),
                ratio(base.get("cpu_s_per_min"), vl.get("cpu_s_per_min")),
                "none known",
            )
        )
    runner = results.get("runner", {})
    why_r = runner.get("skipped")
    rows_by: dict[tuple[Any, Any], dict[str, Any]] = {
        (c.get("client"), c.get("io")): c for c in runner.get("clients", []) if isinstance(c, dict)
    }
    floor = runner.get("sound_stack_floor") or {}
    for io, label in (
        ("devices", "runner harness, PortAudio on PulseAudio null sinks (sound stack included)"),
        ("virtual", "runner harness, clock-driven I/O (the client's own work, target ≤ 0.6 %)"),
    ):
        vl_row, base_row = rows_by.get(("vlrun", io), {}), rows_by.get(("baseline", io), {})
        if why_r or not vl_row:
            continue
        out.append(
            (
                f"client CPU per minute, {label}",
                f"{fmt(vl_row.get('cpu_s_per_min'), ' s', 2)} "
                f"({fmt(vl_row.get('cpu_percent_of_one_core'), ' %', 2)})",
                fmt(base_row.get("cpu_s_per_min"), " s", 2),
                ratio(base_row.get("cpu_s_per_min"), vl_row.get("cpu_s_per_min")),
                f"sound stack alone {fmt(floor.get('cpu_s_per_min'), ' s', 2)}"
                if io == "devices" and floor
                else "none known",
            )
        )
    # latency figures: the device rows when there were devices
    r_vl = rows_by.get(("vlrun", "devices")) or rows_by.get(("vlrun", "virtual")) or {}
    r_base = rows_by.get(("baseline", "devices")) or rows_by.get(("baseline", "virtual")) or {}
    # barge-in and write latency: both clients from the runner harness when it measured the
    # baseline too; otherwise the baseline's own run above
    if r_base:
        b_sil, b_wr = r_base.get("silence_latency_ms") or {}, r_base.get("write_latency_ms") or {}
        b_turn = r_base.get("turn_latency_ms") or {}
    else:
        b_sil = (base.get("silence_latency_ms") or {}) if not why_fd else {}
        b_wr = (base.get("write_latency_every_delta_ms") or {}) if not why_fd else {}
        b_turn = (base.get("turn_latency_ms") or {}) if not why_fd else {}
    r_sil = r_vl.get("silence_latency_ms") if r_vl else find_latency(runner, "silen")
    r_wr = r_vl.get("write_latency_ms") if r_vl else find_latency(runner, "write")
    r_turn = r_vl.get("turn_latency_ms") if r_vl else find_latency(runner, "turn")
    for label, ours, theirs, floor in (
        (
            "speech_started → output silenced, median (p95)",
            r_sil,
            b_sil,
            f"≤ {OUTPUT_BUFFER_MS} ms (one output buffer)",
        ),
        (
            "audio delta → device write, median (p95)",
            r_wr,
            b_wr,
            f"≤ {OUTPUT_BUFFER_MS} ms (next output callback)",
        ),
        ("end of speech → first reply audio written, median (p95)", r_turn, b_turn, "—"),
    ):
        out.append(
            (
                label,
                f"not measured: {why_r}" if why_r else pair(ours),
                pair(theirs),
                "—" if why_r else ratio((theirs or {}).get("median"), (ours or {}).get("median")),
                floor,
            )
        )
    disp = results.get("dispatch", {})
    if disp.get("skipped"):
        out.append(("tool dispatch overhead, p99", f"not measured: {disp['skipped']}", "", "", ""))
    else:
        hop: dict[str, Any] = next(
            (r for r in disp.get("rows", []) if r.get("case", "").startswith("baseline")), {}
        )
        out.append(
            (
                "tool dispatch overhead, worst p99 (sync / async tools)",
                f"{fmt(disp.get('worst_p99_ms'), ' ms', 3)} / "
                f"{fmt(disp.get('worst_async_p99_ms'), ' ms', 3)}",
                "—",
                "—",
                f"{fmt(hop.get('overhead_p99_ms'), ' ms', 3)} (bare thread hop, p99)",
            )
        )
    flow = results.get("flow", {})
    if flow.get("skipped") or "vlrun_ms" not in flow:
        out.append(("flow transition, vlrun's own p99", "not measured", "", "", ""))
    else:
        out.append(
            (
                "flow transition: record call -> next node's first audio, vlrun's own p99",
                fmt(flow["vlrun_ms"]["p99"], " ms", 2),
                "—",
                "—",
                f"{fmt(flow['emulator_ms']['p99'], ' ms', 1)} waiting for the emulator (p99)",
            )
        )
    srv = results.get("serve", {})
    if srv.get("skipped") or "console" not in srv:
        out.append(("browser edge vs console", f"not measured: {srv.get('skipped')}", "", "", ""))
    else:
        one = srv["serve"].get("1", {})
        many = list(srv["serve"].values())[-1]
        out.append(
            (
                "browser edge (`vlrun serve`) vs console: speech end -> first audio p50, added",
                fmt(srv.get("added_latency_ms_median"), " ms", 1),
                "—",
                "—",
                f"console {fmt(srv['console']['latency_ms']['median'], ' ms', 0)} p50",
            )
        )
        out.append(
            (
                f"`vlrun serve` CPU per conversation ({many['conversations']} at once / 1)",
                f"{fmt(many['server_cpu_percent_per_conversation'], ' %', 2)} / "
                f"{fmt(one.get('server_cpu_percent_per_conversation'), ' %', 2)}",
                "—",
                "—",
                f"console client {fmt(srv['console']['cpu_percent_of_one_core'], ' %', 2)}",
            )
        )
    chk = results.get("check", {})
    if chk.get("skipped"):
        out.append(("`vlrun check` throughput", f"not measured: {chk['skipped']}", "", "", ""))
    else:
        tp = chk.get("throughput_per_s", {})
        cold = chk.get("cold_start_ms", {})
        out.append(
            (
                f"`vlrun check` throughput ({chk.get('count')} profiles, one process)",
                fmt(tp.get("subprocess"), " /s", 0),
                "—",
                "—",
                f"target ≥ {fmt((chk.get('targets') or {}).get('throughput_per_s'), ' /s', 0)}",
            )
        )
        out.append(
            (
                "`vlrun check one.yaml` cold start, median",
                fmt(cold.get("median"), " ms", 0),
                "—",
                "—",
                f"{fmt(cold.get('python_baseline_ms'), ' ms', 0)} (bare `python -c pass`)",
            )
        )
    emu = results.get("emulator", {})
    if emu.get("skipped"):
        out.append(("emulator concurrent sessions", f"not measured: {emu['skipped']}", "", "", ""))
    else:
        steps = emu.get("steps") or []
        best = emu.get("max_sessions_without_lag")
        ours = [st for st in steps if st.get("server", "emulator") == "emulator"]
        last = next((st for st in ours if st.get("sessions") == best), ours[-1] if ours else {})
        bare: dict[str, Any] = next(
            (
                st
                for st in steps
                if st.get("server", "").startswith("baseline")
                and st.get("sessions") == last.get("sessions")
            ),
            {},
        )
        out.append(
            (
                "emulator real-time sessions without lag > "
                f"{fmt(emu.get('lag_limit_ms'), ' ms', 0)}",
                fmt(emu.get("max_sessions_without_lag")),
                "—",
                "—",
                "—",
            )
        )
        out.append(
            (
                f"emulator server CPU at {last.get('sessions')} sessions (% of one core; "
                "baseline: bare aiohttp WebSocket server)",
                fmt(last.get("server_cpu_pct_of_one_core"), " %"),
                fmt(bare.get("server_cpu_pct_of_one_core"), " %"),
                ratio(
                    bare.get("server_cpu_pct_of_one_core"), last.get("server_cpu_pct_of_one_core")
                ),
                "—",
            )
        )
        out.append(
            (
                f"emulator memory per session (at {last.get('sessions')} sessions)",
                fmt(last.get("rss_mb_per_session"), " MB", 3),
                "—",
                "—",
                "—",
            )
        )
    calls = results.get("calls", {})
    if calls.get("skipped"):
        out.append(("phone calls per worker", f"not measured: {calls['skipped']}", "", "", ""))
    elif calls:
        best = calls.get("max_calls_meeting_target")
        good = [st for st in calls.get("steps", []) if st.get("calls") == best]
        at = good[-1] if good else {}
        out.append(
            (
                "concurrent phone calls through one worker (worker-added frame delay p99 <= 20 ms, "
                "no underrun; largest step tried)",
                fmt(best),
                "—",
                "—",
                "target >= 200; openrtc: 50+ per worker in 4 GB",
            )
        )
        out.append(
            (
                f"worker CPU / memory per call (at {at.get('calls')} calls)",
                f"{fmt(at.get('worker_cpu_pct_per_call'), ' %')} / "
                f"{fmt(at.get('worker_rss_mb_per_call'), ' MB', 3)}",
                "—",
                "—",
                "target <= 1 MB a call",
            )
        )
    sk = results.get("soak")
    if sk:
        if sk.get("skipped"):
            out.append(("soak", f"not measured: {sk['skipped']}", "", "", ""))
        else:
            out.append(
                (
                    f"soak {fmt(sk.get('minutes'))} min: RSS drift / CPU drift per min",
                    f"{fmt(sk.get('rss_drift_mb'), ' MB')} / "
                    f"{fmt(sk.get('cpu_drift_s_per_min'), ' s', 3)}",
                    "—",
                    "—",
                    "0 (flat)",
                )
            )
    return out


def pair(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("median") is None:
        return "—"
    return f"{fmt(float(stats['median']), ' ms')} ({fmt(float(stats['p95']), ' ms')})"


def find_latency(data: dict[str, Any], word: str) -> dict[str, Any] | None:
    """The runner bench's {median, p95} block whose key mentions ``word`` (its names, not ours).

    Keys naming seconds (``..._s``) are converted to ms; anything else is taken as ms.
    """
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                name = str(key).lower()
                if word in name and isinstance(value, dict) and "median" in value:
                    scale = 1000.0 if name.endswith(("_s", "_sec", "_seconds")) else 1.0
                    return {
                        k: (value[k] * scale if isinstance(value.get(k), (int, float)) else None)
                        for k in ("median", "p95")
                    }
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return None


def script_options(name: str, quick: bool, json_path: Path) -> list[str]:
    """Options for a bench script we do not own, chosen from what its --help offers."""
    script = ROOT / "bench" / name
    if not script.is_file():
        return []
    proc = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    offered = proc.stdout
    args = ["--quick"] if quick and "--quick" in offered else []
    for flag in ("--json", "--out"):
        if flag in offered:
            return [*args, flag, str(json_path)]
    return args


def table(results: dict[str, Any]) -> str:
    lines = [
        "| measure | vlrun | baseline | baseline ÷ vlrun | physical floor / reference |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(c.replace('|', '/') for c in r)} |" for r in rows(results)]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main


def git_commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 2 minutes)")
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="add a long conversation")
    parser.add_argument("--json", type=Path, default=RESULTS / "all.json")
    args = parser.parse_args()
    from runner.emulator import emulator_thread

    quick = args.quick
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m": os.getloadavg()[0],
        },
    }
    with tempfile.TemporaryDirectory(prefix="vlrun-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with emulator_thread(api_key=KEY, speed=1.0) as emu:
            seconds = 20.0 if quick else 60.0
            results["full_duplex"] = full_duplex(emu, tmp, seconds, warmup=4.0)
            if args.soak:
                results["soak"] = soak(emu.endpoint, tmp, args.soak)
        results["runner"] = runner_bench(quick, RESULTS / "runner.json")
        results["dispatch"] = run_script(
            "bench_dispatch.py",
            ["--n", "1000" if quick else "5000", "--json", str(RESULTS / "dispatch.json")],
            RESULTS / "dispatch.json",
            timeout=600,
        )
        results["flow"] = run_script(
            "bench_flow.py",
            ["--n", "50" if quick else "300", "--json", str(RESULTS / "flow.json")],
            RESULTS / "flow.json",
            timeout=600,
        )
        results["serve"] = run_script(
            "bench_serve.py",
            [*(["--quick"] if quick else []), "--json", str(RESULTS / "serve.json")],
            RESULTS / "serve.json",
            timeout=600,
        )
        results["check"] = run_script(
            "bench_check.py",
            ["--count", "300", "--repeat", "3"] if quick else [],
            RESULTS / "check.json",
            timeout=600,
        )
        emu_args = (
            ["--sessions", "50", "--duration", "5", "--compare-baseline"]
            if quick
            else ["--find-max", "--steps", "25,50,100,200,300,400", "--duration", "10"]
            + ["--compare-baseline"]
        )
        results["emulator"] = run_script(
            "bench_emulator.py",
            [*emu_args, "--out", str(RESULTS / "emulator.json")],
            RESULTS / "emulator.json",
            timeout=900,
        )
    results["calls"] = run_script(
        "bench_calls.py",
        [
            "--steps",
            "10,25,50" if quick else "10,25,50,100,150,200",
            "--out",
            str(RESULTS / "calls.json"),
        ],
        RESULTS / "calls.json",
        timeout=1500,
    )
    text = table(results)
    results["table_markdown"] = text
    print(text)
    fd = results["full_duplex"]
    if not fd.get("skipped"):
        from runner.live.audio import CHUNK_MS

        print(
            f"\nfull duplex: {fd['conversation_s']:.0f} s measured per client after "
            f"{fd['warmup_s']:.0f} s warm-up; vlrun appends {CHUNK_MS} ms of audio at a time, "
            f"the baseline 50 ms; the baseline buffers "
            f"{fd.get('baseline', {}).get('prebuffer_chunks', '?')} reply chunks before playing."
        )
        for who in ("vlrun", "baseline"):
            seen = fd.get(who, {}).get("seen_by_emulator")
            if seen:
                print(
                    f"{who}, as the emulator saw it: "
                    + ", ".join(f"{k} {v}" for k, v in seen.items())
                )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {results['machine']['load_average_1m']:.2f}"
        f" at start, {load:.2f} at end (figures from a busy machine are pessimistic)"
    )
    print(f"wrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
