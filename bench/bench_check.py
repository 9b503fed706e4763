"""Benchmark `vlrun check`: throughput on 1,000 generated profiles and cold start on one.

Not a test: prints a Markdown table with ratios against the targets (>= 1,000 profiles/s,
<= 250 ms cold start) and writes bench/results/check.json.

    python bench/bench_check.py [--count 1000] [--repeat 7] [--against OLD_TREE]

Modules are compiled once into a private .pyc cache (PYTHONPYCACHEPREFIX in the temporary
folder), as an installed vlrun has them, whatever PYTHONDONTWRITEBYTECODE says here: with it
set and no __pycache__, every start compiles each imported module from source, which measures
the source's length rather than vlrun's work. ``--as-is`` keeps this environment's settings.

``--against`` takes another source tree of vlrun (``git archive <rev> | tar -x -C DIR``) and
measures it in the same run, alternating with this one measure by measure, so a busy machine
slows both alike; the table then gives both trees and this one's ratio to the other.
"""

from __future__ import annotations

import argparse
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


# Run in a child of its own, so each tree's `runner` is the one imported: `vlrun check` on the
# folder once to import and warm caches, then timed runs; prints their wall times as JSON.
_IN_PROCESS = """
import contextlib, io, json, sys, time
root, folder, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, root)
from runner.cli import main
def once():
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["check", folder])
    if code != 0:
        raise SystemExit("generated profiles did not pass:\\n" + out.getvalue()[:2000])
    return time.perf_counter() - started
once()
print(json.dumps([once() for _ in range(runs)]))
"""


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


PYCACHE: Path | None = None  # the private .pyc cache; None: as this environment says


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    if PYCACHE is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def subprocess_run(root: Path, args: list[str]) -> tuple[float, float]:
    """Wall and CPU (user+sys: robust when other jobs share the CPU) seconds of one
    `vlrun check` of ``root``'s tree (cwd too: `-m` puts it first on sys.path)."""
    cpu = _child_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "check", *args],
        env=_env(root),
        cwd=root,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"check failed ({root}): {proc.stdout[:2000]}{proc.stderr[:2000]}")
    return elapsed, _child_cpu() - cpu


def in_process(root: Path, folder: Path, runs: int) -> list[float]:
    proc = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS, str(root), str(folder), str(runs)],
        env=_env(root),
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"in-process check failed ({root}): {proc.stderr[-2000:]}")
    return [float(t) for t in json.loads(proc.stdout)]


def measure(trees: list[Path], folder: Path, one: str, repeat: int) -> list[dict[str, list[float]]]:
    """Every measure of every tree, the trees taking turns within each repeat."""
    samples: list[dict[str, list[float]]] = [
        {"cold": [], "cold_cpu": [], "sub": [], "sub_cpu": [], "inproc": []} for _ in trees
    ]
    first = str(sorted(folder.iterdir())[0])  # tools and a template: the bulk run's imports
    for root in trees:  # warm the OS file cache and .pyc files
        subprocess_run(root, [one])
        subprocess_run(root, [first])
    # the trees take turns, and which goes first alternates too
    turns = [list(zip(trees, samples, strict=True))] * 2
    turns[1] = turns[1][::-1]
    for i in range(repeat):
        for root, got in turns[i % 2]:
            wall, cpu = subprocess_run(root, [one])
            got["cold"].append(wall * 1000)
            got["cold_cpu"].append(cpu * 1000)
    rounds = 3 if len(trees) == 1 else 5  # two trees: more rounds, as the load may change
    for i in range(rounds):
        for root, got in turns[i % 2]:
            wall, cpu = subprocess_run(root, [str(folder)])
            got["sub"].append(wall)
            got["sub_cpu"].append(cpu)
    if len(trees) == 1:
        samples[0]["inproc"] = in_process(trees[0], folder, 3)
    else:  # a child per tree and round (each warmed by a run first), taking turns too
        for i in range(rounds):
            for root, got in turns[i % 2]:
                got["inproc"] += in_process(root, folder, 1)
    return samples


def summary(got: dict[str, list[float]], count: int) -> dict[str, float]:
    return {
        "cold_ms": statistics.median(got["cold"]),
        "cold_cpu_ms": statistics.median(got["cold_cpu"]),
        "sub_cpu_rate": count / statistics.median(got["sub_cpu"]),
        "sub_rate": count / statistics.median(got["sub"]),
        "in_rate": count / statistics.median(got["inproc"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--against", type=Path, help="another vlrun source tree, measured alternately"
    )
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="no private .pyc cache: PYTHONDONTWRITEBYTECODE and __pycache__ as they are here",
    )
    args = parser.parse_args()
    global PYCACHE
    trees = [ROOT] + ([args.against.resolve()] if args.against else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "profiles"
        folder.mkdir()
        PYCACHE = None if args.as_is else Path(tmp) / "pycache"
        generate(folder, args.count)
        one = str(ROOT / "profiles" / "casual-chat.yaml")
        samples = measure(trees, folder, one, args.repeat)
        baseline = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            baseline.append((time.perf_counter() - started) * 1000)
    new = summary(samples[0], args.count)
    old = summary(samples[1], args.count) if args.against else None
    load = os.getloadavg()[0]
    rows = [
        ("cold start, `vlrun check one.yaml` (subprocess, median)", "cold_ms", " ms", False),
        ("cold start, CPU time (user+sys) of that process", "cold_cpu_ms", " ms", False),
        (
            f"throughput, {args.count} profiles, CPU time of one subprocess",
            "sub_cpu_rate",
            " /s",
            True,
        ),
        (f"throughput, {args.count} profiles in one subprocess", "sub_rate", " /s", True),
        (f"throughput, {args.count} profiles in-process (warm)", "in_rate", " /s", True),
    ]
    head = "| measure | result | target | ratio (>1 is better) |"
    if old is not None:
        head += f" {args.against} | this ÷ that (>1 is better) |"
    print(head)
    print("|---|---|---|---|" + ("---|---|" if old is not None else ""))
    for name, key, unit, higher in rows:
        target = TARGET_RATE if higher else TARGET_COLD_MS
        ratio = new[key] / target if higher else target / new[key]
        line = (
            f"| {name} | {new[key]:.0f}{unit} | {'>=' if higher else '<='} {target:.0f}{unit} "
            f"| {ratio:.2f} |"
        )
        if old is not None:
            versus = new[key] / old[key] if higher else old[key] / new[key]
            line += f" {old[key]:.0f}{unit} | {versus:.2f} |"
        print(line)
    print(
        f"\n.pyc: {'as this environment says' if args.as_is else 'a private cache, warmed'}; "
        f"load average {load:.1f} on {os.cpu_count()} CPUs (wall times suffer when it is "
        f"high); bare `python -c pass`: {statistics.median(baseline):.0f} ms; "
        f"cold-start samples: {', '.join(f'{c:.0f}' for c in samples[0]['cold'])} ms"
        + (
            f" (that tree: {', '.join(f'{c:.0f}' for c in samples[1]['cold'])} ms)"
            if old is not None
            else ""
        )
    )
    results: dict[str, object] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "count": args.count,
        "bytecode": "as this environment says" if args.as_is else "private .pyc cache",
        "load_average": load,
        "cold_start_cpu_ms": {"median": new["cold_cpu_ms"], "samples": samples[0]["cold_cpu"]},
        "throughput_cpu_per_s": new["sub_cpu_rate"],
        "cold_start_ms": {
            "median": new["cold_ms"],
            "samples": samples[0]["cold"],
            "python_baseline_ms": statistics.median(baseline),
        },
        "throughput_per_s": {"subprocess": new["sub_rate"], "in_process": new["in_rate"]},
        "targets": {"cold_start_ms": TARGET_COLD_MS, "throughput_per_s": TARGET_RATE},
        "ratios": {
            "cold_start": TARGET_COLD_MS / new["cold_ms"],
            "subprocess": new["sub_rate"] / TARGET_RATE,
            "in_process": new["in_rate"] / TARGET_RATE,
        },
    }
    if old is not None:
        results["against"] = {
            "tree": str(args.against),
            "cold_start_ms": {"median": old["cold_ms"], "samples": samples[1]["cold"]},
            "cold_start_cpu_ms": {"median": old["cold_cpu_ms"], "samples": samples[1]["cold_cpu"]},
            "throughput_cpu_per_s": old["sub_cpu_rate"],
            "throughput_per_s": {"subprocess": old["sub_rate"], "in_process": old["in_rate"]},
        }
    out = ROOT / "bench" / "results" / "check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
