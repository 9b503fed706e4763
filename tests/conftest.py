"""Shared fixtures: an isolated environment, the emulator, espeak speech, CLI runs, PulseAudio.

Every test runs with the Voice Live / Azure variables removed and ``.env`` loading switched
off, so a developer's real endpoint or key can never leak into a test (or a test into Azure).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
NO_PULSE = "unix:/nonexistent/vlrun-test-no-pulse"  # PortAudio then sees no device at all


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Default logs (and crash logs) go to the per-user state folder: keep it per test.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VLRUN_DOTENV", "none")


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    """The local Voice Live emulator in this event loop, replying instantly (speed 0)."""
    from runner.emulator import running_emulator

    async with running_emulator(speed=0) as emu:
        yield emu


@pytest.fixture
def emulator_in_thread() -> Iterator[Any]:
    """The emulator on its own thread, for tests that drive the CLI in a subprocess."""
    from runner.emulator import emulator_thread

    with emulator_thread(speed=0) as emu:
        yield emu


def _speech(tmp: Path, text: str, name: str) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    raw = tmp / f"{name}-raw.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    from runner.live.audio import AudioFormat, read_wav

    pcm = read_wav(raw, AudioFormat(24000))  # espeak speaks at 22.05 kHz; resample like --input
    out = tmp / f"{name}.wav"
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(pcm)
    return out


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'What time is it in Tokyo?' spoken by espeak-ng: 24 kHz mono PCM16."""
    return _speech(tmp_path_factory.mktemp("speech"), "What time is it in Tokyo?", "tokyo")


@pytest.fixture(scope="session")
def long_speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A longer utterance, for barge-in (the user keeps talking over the assistant)."""
    return _speech(
        tmp_path_factory.mktemp("speech"),
        "Wait, stop, I want to ask something else please.",
        "interrupt",
    )


def wav_stats(path: Path) -> tuple[float, float]:
    """(duration in seconds, RMS in dBFS) of a PCM16 WAV file."""
    with wave.open(str(path), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
        rate = wav.getframerate()
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return 0.0, -100.0
    rms = float(np.sqrt(np.mean(samples**2)))
    return samples.size / rate, (20 * np.log10(rms / 32768) if rms > 0 else -100.0)


def cli_env(extra: Mapping[str, str] | None = None, *, sound: bool = False) -> dict[str, str]:
    """Environment for `python -m runner` in a subprocess: no Azure settings, no .env, and no
    sound devices unless ``sound`` (then PulseAudio from scripts/pulse-env.sh is used)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["VLRUN_DOTENV"] = "none"
    env["VLRUN_TOOLS_ENTRY_POINTS"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    if not sound:
        env["PULSE_SERVER"] = NO_PULSE
    env.update(extra or {})
    return env


@pytest.fixture(name="cli_env")
def cli_env_fixture() -> Any:
    """:func:`cli_env` for tests (conftest is not importable under --import-mode=importlib)."""
    return cli_env


@pytest.fixture(name="wav_stats")
def wav_stats_fixture() -> Any:
    """:func:`wav_stats` for tests."""
    return wav_stats


@pytest.fixture
def profiles_dir() -> Path:
    return PROFILES


@pytest.fixture
def run_cli(tmp_path: Path) -> Any:
    """Run `python -m runner ARGS` in tmp_path; returns the CompletedProcess."""

    def run(
        args: list[str],
        *,
        input: str = "",
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        sound: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner", *args],
            input=input,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=cli_env(env, sound=sound),
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="session")
def pulse_audio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private PulseAudio daemon with a virtual mic ("mic", fed by playing into "vmic") and
    speaker ("vspk"). Private (own PULSE_RUNTIME_PATH), so nothing else on the machine that
    plays into a shared "vmic" can talk over the test."""
    script = ROOT / "scripts" / "pulse-env.sh"
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.skip("PulseAudio is not installed (apt-get install pulseaudio)")
    runtime = tmp_path_factory.mktemp("pulse")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULSE_RUNTIME_PATH", str(runtime))
        mp.delenv("PULSE_SERVER", raising=False)
        started = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True)
        if started.returncode != 0:
            pytest.skip(f"PulseAudio could not start: {(started.stderr or started.stdout).strip()}")
        try:
            yield
        finally:
            subprocess.run(["bash", str(script), "stop"], capture_output=True)
