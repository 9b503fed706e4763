"""Benchmark `vlrun check`: throughput on 1,000 generated profiles and cold start on one.

Not a test: prints a Markdown table with ratios against the targets (>= 1,000 profiles/s,
<= 250 ms cold start) and writes bench/results/check.json.

    python bench/bench_check.py [--count 1000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_RATE = 1000.0  # profiles per second
TARGET_COLD_MS = 250.0

VOICES = ["alloy", "echo", "en-US-AvaNeural", "en-US-Ava:DragonHDLatestNeural"]
VADS = ["server_vad", "azure_semantic_vad", "azure_semantic_vad_en", "manual"]


def make_profile(i: int, rng: random.Random) -> str:
    """A realistic mid-size profile: vars + template, voice, VAD with EOU, audio, tools."""
    vad = rng.choice(VADS)
    eou = ""
    if vad.startswith("azure"):
        eou = (
            "  end_of_utterance_detection:\n    model: semantic_detection_v1\n"
            f"    threshold_level: {rng.choice(['low', 'medium', 'high'])}\n"
            f"    timeout_ms: {rng.randint(500, 2000)}\n"
        )
    turn = (
        f"turn_detection:\n  type: {vad}\n"
        if vad == "manual"
        else f"turn_detection:\n  type: {vad}\n  threshold: {rng.random():.2f}\n"
        f"  prefix_padding_ms: {rng.randint(100, 400)}\n"
        f"  silence_duration_ms: {rng.randint(200, 900)}\n{eou}"
    )
    return (
        "# yaml-language-server: $schema=../runner/config/schema/profile.schema.json\n"
        f"name: generated-{i}\n"
        f"description: Generated profile number {i}.\n"
        "connection:\n  endpoint: ${env:AZURE_VOICELIVE_ENDPOINT:-}\n  model: gpt-realtime\n"
        f"vars:\n  persona: {{default: helper{i}, description: Who to be}}\n"
        "instructions: |\n  You are {{ persona }}. Answer briefly.\n"
        f"voice:\n  name: {rng.choice(VOICES)}\n"
        "modalities: [text, audio]\n"
        f"{turn}"
        "audio:\n  noise_reduction: azure_deep_noise_suppression\n  echo_cancellation: server\n"
        f"temperature: {rng.uniform(0.6, 1.0):.2f}\n"
        "tools:\n  - name: lookup\n    timeout_s: 5\n"
        "    parameters: {type: object, properties: {q: {type: string}}, required: [q]}\n"
        "tool_choice: auto\n"
    )


def generate(folder: Path, count: int) -> list[Path]:
    rng = random.Random(42)
    paths = []
    for i in range(count):
        path = folder / f"p{i:04d}.yaml"
        path.write_text(make_profile(i, rng))
        paths.append(path)
    return paths


def in_process(folder: Path, count: int) -> tuple[float, int]:
    from runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(folder)])
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"generated profiles did not pass:\n{out.getvalue()[:2000]}")
    return elapsed, count


CPU: list[float] = []  # user+sys seconds of each child: robust when other jobs share the CPU


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def subprocess_run(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu = _child_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "check", *args], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    CPU.append(_child_cpu() - cpu)
    if proc.returncode != 0:
        raise SystemExit(f"check failed: {proc.stdout[:2000]}{proc.stderr[:2000]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "profiles"
        folder.mkdir()
        generate(folder, args.count)
        one = str(ROOT / "profiles" / "casual-chat.yaml")
        subprocess_run([one])  # warm the OS file cache and .pyc files
        CPU.clear()
        cold = [subprocess_run([one]) * 1000 for _ in range(args.repeat)]
        cold_cpu = [c * 1000 for c in CPU]
        baseline = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            baseline.append((time.perf_counter() - started) * 1000)
        CPU.clear()
        sub_total = [subprocess_run([str(folder)]) for _ in range(3)]
        sub_cpu = list(CPU)
        inproc = [in_process(folder, args.count)[0] for _ in range(3)]
    cold_ms = statistics.median(cold)
    sub_rate = args.count / statistics.median(sub_total)
    in_rate = args.count / statistics.median(inproc)
    cold_cpu_ms = statistics.median(cold_cpu)
    sub_cpu_rate = args.count / statistics.median(sub_cpu)
    load = os.getloadavg()[0]
    rows = [
        (
            "cold start, `vlrun check one.yaml` (subprocess, median)",
            f"{cold_ms:.0f} ms",
            f"<= {TARGET_COLD_MS:.0f} ms",
            TARGET_COLD_MS / cold_ms,
        ),
        (
            "cold start, CPU time (user+sys) of that process",
            f"{cold_cpu_ms:.0f} ms",
            f"<= {TARGET_COLD_MS:.0f} ms",
            TARGET_COLD_MS / cold_cpu_ms,
        ),
        (
            f"throughput, {args.count} profiles, CPU time of one subprocess",
            f"{sub_cpu_rate:.0f} /s",
            f">= {TARGET_RATE:.0f} /s",
            sub_cpu_rate / TARGET_RATE,
        ),
        (
            f"throughput, {args.count} profiles in one subprocess",
            f"{sub_rate:.0f} /s",
            f">= {TARGET_RATE:.0f} /s",
            sub_rate / TARGET_RATE,
        ),
        (
            f"throughput, {args.count} profiles in-process",
            f"{in_rate:.0f} /s",
            f">= {TARGET_RATE:.0f} /s",
            in_rate / TARGET_RATE,
        ),
    ]
    print("| measure | result | target | ratio (>1 is better) |")
    print("|---|---|---|---|")
    for name, result, target, ratio in rows:
        print(f"| {name} | {result} | {target} | {ratio:.2f} |")
    print(
        f"\nload average {load:.1f} on {os.cpu_count()} CPUs (wall times suffer when it is "
        f"high); bare `python -c pass`: {statistics.median(baseline):.0f} ms; "
        f"cold-start samples: {', '.join(f'{c:.0f}' for c in cold)} ms"
    )
    results = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "count": args.count,
        "load_average": load,
        "cold_start_cpu_ms": {"median": cold_cpu_ms, "samples": cold_cpu},
        "throughput_cpu_per_s": sub_cpu_rate,
        "cold_start_ms": {
            "median": cold_ms,
            "samples": cold,
            "python_baseline_ms": statistics.median(baseline),
        },
        "throughput_per_s": {"subprocess": sub_rate, "in_process": in_rate},
        "targets": {"cold_start_ms": TARGET_COLD_MS, "throughput_per_s": TARGET_RATE},
        "ratios": {
            "cold_start": TARGET_COLD_MS / cold_ms,
            "subprocess": sub_rate / TARGET_RATE,
            "in_process": in_rate / TARGET_RATE,
        },
    }
    out = ROOT / "bench" / "results" / "check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
