"""The live runner's own costs in a full-duplex conversation against the emulator.

    python bench/bench_runner.py [--seconds 60] [--quick] [--virtual] [--json FILE]

Measures, for one client talking to the emulator at real-time speed while speech is played
into its microphone (some of it over the assistant, to force barge-ins):
- client CPU: process CPU time minus the emulator thread's, per minute of conversation and as a
  share of one core (target <= 0.6 %);
- speech_started arrival -> output silenced: with real devices, the time until the first silent
  buffer is handed to PortAudio (target <= one 20 ms buffer, <= 25 ms p99); without devices,
  the time until the virtual player stops;
- first audio delta -> device write: delta received -> audio in the output buffer (<= 5 ms p99).

Devices: a private PulseAudio daemon with null sinks (scripts/pulse-env.sh) when PulseAudio is
installed, so real PortAudio streams run; --virtual (or no PulseAudio) uses a clock-driven
microphone and player instead, and the table says so.

A second client can be measured the same way: implement :class:`Client` (start / stop / the
timing lists) and add it to CLIENTS; the harness feeds both the same speech on the same clock.
Prints a Markdown table and writes bench/results/runner.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
KEY = "bench-runner-key-5f2e9a"
WARM_UP_S = 3.0
PROFILE = """\
name: bench-runner
instructions: Benchmark conversation.
voice: alloy
turn_detection:
  type: server_vad
  silence_duration_ms: 500
"""
SCRIPT = {
    "description": "long replies so that barge-ins land while the assistant talks",
    "fallback": "This is a fairly long scripted reply, so that the person has time to interrupt "
    "it while it is still being spoken out loud by the assistant.",
}


# ------------------------------------------------------------------------------ measuring


def process_cpu_s() -> float:
    """CPU time of every thread of this process (PortAudio's included), in ns resolution."""
    return time.process_time()


def stats_ms(values_s: list[float]) -> dict[str, Any]:
    if not values_s:
        return {"n": 0, "median": None, "p95": None, "p99": None, "max": None}
    ms = np.array(values_s) * 1000
    return {
        "n": int(ms.size),
        "median": round(float(np.median(ms)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "max": round(float(ms.max()), 3),
    }


def speech_pcm(tmp: Path, text: str) -> bytes:
    """Speech from espeak-ng at 24 kHz, or a syllable-like tone pattern when it is missing."""
    from runner.live.audio import AudioFormat, read_wav

    if shutil.which("espeak-ng"):
        raw = tmp / "speech-raw.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        return read_wav(raw, AudioFormat(24000))
    t = np.arange(24000) / 24000
    envelope = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
    return (np.sin(2 * np.pi * 220 * t) * envelope * 12000).astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(pcm)
    return path


# ------------------------------------------------------------------------------ feeding speech


class Feed(Protocol):
    async def say(self, pcm: bytes, path: Path) -> None: ...


class PulseFeed:
    """Speech into the virtual microphone through PulseAudio (paplay into the vmic sink)."""

    async def say(self, pcm: bytes, path: Path) -> None:
        proc = await asyncio.create_subprocess_exec("paplay", "--device=vmic", str(path))
        try:  # bounded: a stuck paplay must not hang the whole benchmark
            await asyncio.wait_for(proc.wait(), 30)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise SystemExit("paplay did not finish within 30 s (is PulseAudio alive?)") from None


class ClockMic:
    """A microphone without hardware: chunks on the wall clock, silence unless fed.

    It hands over audio as often as runner.live.audio.Microphone does (every CHUNK_MS), so the
    client's wake-ups are the same as with a device; the device's own thread is not simulated.
    """

    live = True

    def __init__(self) -> None:
        self.pending = bytearray()

    async def say(self, pcm: bytes, path: Path) -> None:
        self.pending += pcm

    async def frames(self) -> AsyncIterator[bytes]:
        from runner.live.audio import CHUNK_MS, AudioFormat

        step = AudioFormat(24000).bytes_for_ms(CHUNK_MS)
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * CHUNK_MS / 1000 - loop.time()))
            frame = bytes(self.pending[:step])
            del self.pending[:step]
            yield frame + bytes(step - len(frame))

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------ clients


class Client(Protocol):
    """What the harness needs from a client under test."""

    name: str
    reply_started: asyncio.Event  # set when assistant audio reaches the output

    async def start(self, endpoint: str, devices: bool, mic: ClockMic | None) -> None: ...

    async def stop(self) -> None: ...

    def timings(self) -> dict[str, list[float]]: ...  # seconds: silence, write, turn


class VlrunClient:
    """vlrun's LiveSession, exactly as `vlrun run` builds it."""

    name = "vlrun"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.reply_started = asyncio.Event()
        self.session: Any = None
        self.player: Any = None
        self.task: asyncio.Task[int] | None = None
        self.counts: dict[str, int] = {}  # filled by timings()

    async def start(self, endpoint: str, devices: bool, mic: ClockMic | None) -> None:
        import io

        from azure.core.credentials import AzureKeyCredential

        from runner.config.compile import compile_session
        from runner.config.load import load_profile
        from runner.live.audio import AudioFormat, ClockPlayer, DevicePlayer, Microphone
        from runner.live.connect import resolve_target
        from runner.live.session import LiveSession
        from runner.live.transcript import Transcript

        fmt = AudioFormat(24000)
        path = self.tmp / "bench-runner.yaml"
        path.write_text(PROFILE, encoding="utf-8")
        profile = load_profile(path)
        target = resolve_target(profile, endpoint=endpoint, env={"AZURE_VOICELIVE_API_KEY": KEY})
        started = self.reply_started

        if devices:
            source: Any = Microphone(fmt)

            class Player(DevicePlayer):
                def write(self, item_id: str, pcm: bytes) -> None:
                    super().write(item_id, pcm)
                    started.set()

            self.player = Player(fmt)
        else:
            source = mic

            class VirtualPlayer(ClockPlayer):
                def write(self, item_id: str, pcm: bytes) -> None:
                    super().write(item_id, pcm)
                    started.set()

            self.player = VirtualPlayer(fmt, realtime=True)
        transcript = Transcript(verbosity=0, out=io.StringIO(), err=io.StringIO())
        self.session = LiveSession(
            target=target,
            endpoint=endpoint,
            credential=AzureKeyCredential(KEY),
            session_update=compile_session(profile),
            transcript=transcript,
            player=self.player,
            source=source,
            lines=False,
            profile_name=profile.name,
        )
        self.task = asyncio.create_task(self.session.run())

    async def stop(self) -> None:
        self.session.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 15)
        self.player.close()

    def timings(self) -> dict[str, list[float]]:
        m = self.session.metrics
        silence = list(m.silence_latency)
        log = getattr(self.player, "silence_log", None)
        unmatched = 0
        if log is not None:  # real device: until the next buffer left for PortAudio
            silence = []
            arrivals = list(m.barge_in_arrivals)
            for arrived, following in zip(arrivals, [*arrivals[1:], float("inf")], strict=True):
                # Only this barge-in's own request counts; never borrow the next one's.
                mine = [done for requested, done in log if arrived <= requested < following]
                if mine:
                    silence.append(min(mine) - arrived)
                else:
                    unmatched += 1
        self.counts = {
            "silence_unmatched": unmatched,
            # PortAudio output underflows: the sound stack stalled; a barge-in during a stall
            # waits it out, and its silence figure is the stall's, not the client's
            "output_underflows": int(getattr(self.player, "underflows", 0)),
        }
        return {
            "silence": silence,
            "handler_silence": list(m.silence_latency),
            "write": list(m.write_latency),
            "turn": list(m.turn_latency),
        }


CLIENTS: dict[str, Callable[[Path], Client]] = {"vlrun": VlrunClient}


# ------------------------------------------------------------------------------ the run


@contextlib.contextmanager
def private_pulse(tmp: Path) -> Any:
    """Start a private PulseAudio (own runtime dir); yields True when devices are usable."""
    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        yield False
        return
    runtime = tmp / "pulse"
    runtime.mkdir()
    old = {k: os.environ.get(k) for k in ("PULSE_RUNTIME_PATH", "PULSE_SERVER")}
    os.environ["PULSE_RUNTIME_PATH"] = str(runtime)
    os.environ.pop("PULSE_SERVER", None)
    script = ROOT / "scripts" / "pulse-env.sh"
    ok = subprocess.run(["bash", str(script), "start"], capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["bash", str(script), "stop"], capture_output=True)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def emulator_process(tmp: Path) -> Any:
    """`vlrun emulate` in its own process, so its CPU is not counted as the client's."""
    import socket

    import yaml

    script = tmp / "script.yaml"
    script.write_text(yaml.safe_dump(SCRIPT), encoding="utf-8")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "emulate",
            "--port",
            str(port),
            "--api-key",
            KEY,
            "--scenario",
            str(script),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("http"):  # it prints its endpoint once it listens
            raise SystemExit(f"the emulator did not start: {line!r}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def converse(
    client: Client, endpoint: str, devices: bool, seconds: float, tmp: Path
) -> dict[str, Any]:
    mic = None if devices else ClockMic()
    feed: Feed = PulseFeed() if devices else mic  # type: ignore[assignment]
    question = speech_pcm(tmp, "Tell me something about the weather today.")
    interrupt = speech_pcm(tmp, "Wait, stop please.")
    q_path, i_path = write_wav(tmp / "q.wav", question), write_wav(tmp / "i.wav", interrupt)
    await client.start(endpoint, devices, mic)
    await asyncio.sleep(WARM_UP_S)  # connection, session.update, first frames
    cpu0, t0 = process_cpu_s(), time.perf_counter()
    turns = barge_ins = 0
    while time.perf_counter() - t0 < seconds:
        client.reply_started.clear()
        await feed.say(question, q_path)
        turns += 1
        try:
            await asyncio.wait_for(client.reply_started.wait(), 10)
        except asyncio.TimeoutError:
            continue
        await asyncio.sleep(0.6)  # let the reply play a little, then talk over it
        await feed.say(interrupt, i_path)
        barge_ins += 1
        await asyncio.sleep(2.5)  # the interruption is itself a turn; let it finish
    wall = time.perf_counter() - t0
    cpu = process_cpu_s() - cpu0  # the emulator runs in its own process
    await asyncio.wait_for(client.stop(), 30)
    t = client.timings()
    return {
        "client": client.name,
        "seconds": round(wall, 1),
        "turns": turns,
        "barge_ins_attempted": barge_ins,
        "cpu_s_per_min": round(cpu / wall * 60, 3),
        "cpu_percent_of_one_core": round(cpu / wall * 100, 3),
        "silence_latency_ms": stats_ms(t["silence"]),
        **getattr(client, "counts", {}),
        "silence_handler_ms": stats_ms(t["handler_silence"]),
        "write_latency_ms": stats_ms(t["write"]),
        "turn_latency_ms": stats_ms(t["turn"]),
    }


async def sound_floor(seconds: float) -> dict[str, Any]:
    """CPU of the sound stack alone: the same PortAudio streams, frames read and dropped, no
    network. What any client pays on this machine before doing any work of its own."""
    from runner.live.audio import AudioFormat, DevicePlayer, Microphone

    fmt = AudioFormat(24000)
    mic, player = Microphone(fmt), DevicePlayer(fmt)

    async def drain() -> None:
        async for _ in mic.frames():
            pass

    task = asyncio.create_task(drain())
    # The same warm-up as a conversation: PortAudio's ALSA->PulseAudio capture can spin for a
    # second or two after it starts (seen here as 8-13 % of a core), which is not steady state.
    await asyncio.sleep(WARM_UP_S)
    cpu0, t0 = process_cpu_s(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = process_cpu_s() - cpu0, time.perf_counter() - t0
    mic.close()
    player.close()
    await task
    return {
        "seconds": round(wall, 1),
        "cpu_percent_of_one_core": round(cpu / wall * 100, 3),
        "cpu_s_per_min": round(cpu / wall * 60, 3),
    }


def table(results: dict[str, Any]) -> str:
    rows = [
        "| client | CPU % of one core | CPU s/min | speech_started → silenced p50 / p99 (n) "
        "| delta → device write p50 / p99 (n) | end of speech → first audio p50 |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["clients"]:
        s, w, t = r["silence_latency_ms"], r["write_latency_ms"], r["turn_latency_ms"]
        rows.append(
            f"| {r['client']} ({r.get('io', '?')} I/O) | {r['cpu_percent_of_one_core']:.3f} % "
            f"| {r['cpu_s_per_min']:.3f} | {s['median']} / {s['p99']} ms ({s['n']}) "
            f"| {w['median']} / {w['p99']} ms ({w['n']}) "
            f"| {t['median']} ms |"
        )
        if r.get("output_underflows") or r.get("silence_unmatched"):
            rows.append(
                f"| ↳ {r['client']}: {r.get('output_underflows', 0)} output underflows (sound "
                f"stack stalls), {r.get('silence_unmatched', 0)} barge-ins never silenced "
                f"| | | | | |"
            )
    floor = results.get("sound_stack_floor")
    if floor:
        rows.append(
            f"| sound stack alone (same streams, chunks read and dropped, no client) "
            f"| {floor['cpu_percent_of_one_core']:.3f} % | {floor['cpu_s_per_min']:.3f} "
            f"| — | — | — |"
        )
        for r in results["clients"]:
            if r.get("io") == "devices":
                own = r["cpu_percent_of_one_core"] - floor["cpu_percent_of_one_core"]
                rows.append(
                    f"| {r['client']} own work (devices row − sound stack) | {own:.3f} % "
                    f"| {own * 0.6:.3f} | — | — | — |"
                )
    rows.append("")
    rows.append(
        f"targets: CPU ≤ 0.6 %, silenced ≤ 25 ms p99, device write ≤ 5 ms p99; "
        f"audio: {results['audio']}"
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="20 s of conversation")
    parser.add_argument("--virtual", action="store_true", help="no PulseAudio: clock-driven I/O")
    parser.add_argument("--clients", default="vlrun", help=f"comma list of {sorted(CLIENTS)}")
    parser.add_argument("--json", type=Path, default=RESULTS / "runner.json")
    args = parser.parse_args()
    seconds = 20.0 if args.quick else args.seconds
    os.environ.setdefault("VLRUN_DOTENV", "none")
    # The PulseAudio daemon may still be removing its socket while the folder goes.
    with tempfile.TemporaryDirectory(
        prefix="vlrun-bench-runner-", ignore_cleanup_errors=True
    ) as name:
        tmp = Path(name)
        with private_pulse(tmp) if not args.virtual else contextlib.nullcontext(False) as devices:
            with emulator_process(tmp) as endpoint:
                out = []
                # With devices, also run on virtual I/O: that isolates the client's own work
                # from what the sound stack (ALSA -> PulseAudio plugin here) costs.
                for use_devices in [True, False] if devices else [False]:
                    for cname in args.clients.split(","):
                        client = CLIENTS[cname.strip()](tmp)
                        row = asyncio.run(converse(client, endpoint, use_devices, seconds, tmp))
                        row["io"] = "devices" if use_devices else "virtual"
                        out.append(row)
            floor = asyncio.run(sound_floor(min(seconds, 20.0))) if devices else None
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m": os.getloadavg()[0],
        },
        "audio": "PortAudio on PulseAudio null sinks (20 ms buffers)"
        if devices
        else "virtual clock (no sound devices)",
        "clients": out,
        "sound_stack_floor": floor,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
