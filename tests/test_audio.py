"""Audio I/O: WAV in/out, the playback clock and barge-in accounting, PyAudio through PulseAudio."""

from __future__ import annotations

import asyncio
import base64
import builtins
import shutil
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.errors import AudioUnavailable, VlrunError
from runner.live.audio import (
    AudioFormat,
    ClockPlayer,
    WavRecorder,
    WavSource,
    import_pyaudio,
    level_dbfs,
    read_wav,
)

FMT = AudioFormat(24000)
ROOT = Path(__file__).resolve().parents[1]


def tone(seconds: float, rate: int = 24000, channels: int = 1, amp: float = 0.5) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    mono = (np.sin(2 * np.pi * 440 * t) * amp * 32767).astype("<i2")
    data = np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono
    return data.tobytes()


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path


def test_read_wav_mixes_down_and_resamples(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "in.wav", tone(1.0, 16000, channels=2), 16000, channels=2)
    pcm = read_wav(path, FMT)
    assert abs(len(pcm) - 48000) <= 2 * 64  # one second at 24 kHz mono, within filter delay
    assert -9.5 < level_dbfs(pcm) < -8.5  # a half-scale sine: RMS 0.354 = -9 dBFS, level kept


def test_read_wav_rejects_what_it_cannot_stream(tmp_path: Path) -> None:
    with pytest.raises(VlrunError, match="8-bit samples"):
        read_wav(write_wav(tmp_path / "u8.wav", bytes(800), 8000, width=1), FMT)
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(VlrunError, match="not a readable WAV file"):
        read_wav(tmp_path / "text.wav", FMT)
    with pytest.raises(VlrunError, match="no such file"):
        read_wav(tmp_path / "missing.wav", FMT)


async def test_wav_source_yields_chunks_of_whole_frames_then_silence(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "in.wav", tone(0.13), 24000)
    source = WavSource(path, FMT, fast=True, tail_ms=200, chunk_ms=100)
    chunks = [c async for c in source.frames()]
    # 130 ms of tone + 200 ms of tail, padded to whole 20 ms frames: 340 ms in 100 ms chunks
    assert [len(c) for c in chunks] == [FMT.bytes_for_ms(100)] * 3 + [FMT.bytes_for_ms(40)]
    assert level_dbfs(chunks[0]) > -10 and level_dbfs(chunks[-1]) == -100.0


def test_level_meter() -> None:
    assert level_dbfs(bytes(960)) == -100.0
    assert -4 < level_dbfs(tone(0.02, amp=1.0)) < -2  # full-scale sine: -3 dBFS RMS


def test_clock_player_counts_only_what_was_played(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "out.wav", FMT)
    player = ClockPlayer(FMT, recorder=recorder, realtime=True)
    player.write("item1", tone(2.0))  # two seconds queued; almost none of it can have played yet
    assert player.pending_ms() > 1500
    item, played = player.interrupt()
    assert item == "item1" and 0 <= played < 500
    assert player.pending_ms() == 0 and player.silenced_at is not None
    player.write("item2", tone(0.3))
    player.close()
    with wave.open(str(tmp_path / "out.wav"), "rb") as wav:
        recorded_ms = wav.getnframes() / 24
    # item1 is recorded only as far as it played; item2 is kept whole (closed, not interrupted)
    assert 300 <= recorded_ms <= 300 + played + 1


def test_clock_player_without_realtime_plays_instantly() -> None:
    player = ClockPlayer(FMT, realtime=False)
    player.write("a", tone(1.0))
    assert player.played_ms() == 1000 and player.pending_ms() == 0


def test_missing_pyaudio_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pyaudio(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyaudio":
            raise ImportError("No module named 'pyaudio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pyaudio", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_pyaudio)
    with pytest.raises(AudioUnavailable) as info:
        import_pyaudio()
    assert info.value.message == "PyAudio is not available (No module named 'pyaudio')"
    assert "pip install 'vlrun[audio]'" in (info.value.hint or "")


# --------------------------------------------------------------------------- real devices


@pytest.mark.audio
async def test_conversation_through_pulseaudio_devices(
    pulse_audio: None, tmp_path: Path, speech_wav: Path, cli_env: Any
) -> None:
    """espeak speech goes into the virtual mic; the reply comes out of the virtual speaker."""
    if shutil.which("paplay") is None or shutil.which("parecord") is None:
        pytest.skip("paplay/parecord missing (apt-get install pulseaudio-utils)")
    from runner.emulator import running_emulator

    profile = tmp_path / "mic.yaml"
    # Espeak pauses between words; a long silence window keeps the question one turn.
    profile.write_text(
        "name: mic\ninstructions: Be brief.\nvoice: alloy\n"
        "turn_detection:\n  type: server_vad\n  silence_duration_ms: 1000\n"
    )
    errors = (tmp_path / "stderr.txt").open("wb")
    async with running_emulator(speed=1) as emu:
        env = cli_env(
            {
                "AZURE_VOICELIVE_ENDPOINT": emu.endpoint,
                "AZURE_VOICELIVE_API_KEY": "pulse-test-key-123456",
            },
            sound=True,
        )
        vlrun = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runner",
            str(profile),
            "--output",
            str(tmp_path / "played.wav"),
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )  # a file: an unread stderr pipe could fill up and block the runner
        recorder = await asyncio.create_subprocess_exec(
            "parecord",
            "--raw",
            "--device=vspk.monitor",
            "--rate=24000",
            "--channels=1",
            "--format=s16le",
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert vlrun.stdin and vlrun.stdout and recorder.stdout
        try:
            # The runner is listening once the first frames reach the emulator.
            await emu.wait_for(lambda e: e["type"] == "input_audio_buffer.append", timeout=30)
            play = await asyncio.create_subprocess_exec(
                "paplay", "--device=vmic", str(speech_wav), env=env
            )
            assert await asyncio.wait_for(play.wait(), 30) == 0
            # The reply starts streaming: "assistant:" is printed before its line is complete.
            await asyncio.wait_for(vlrun.stdout.readuntil(b"assistant:"), 30)
            # Read the speaker's monitor until a third of a second of the reply came out.
            loud = 0
            while loud < 24000 // 3:
                chunk = await asyncio.wait_for(recorder.stdout.readexactly(4800), 30)
                if level_dbfs(chunk) > -45:
                    loud += len(chunk) // 2
            vlrun.stdin.write(b"q\n")  # while the reply is still being spoken
            await vlrun.stdin.drain()
            assert await asyncio.wait_for(vlrun.wait(), 30) == 0
            line = "assistant:" + (await asyncio.wait_for(vlrun.stdout.read(), 10)).decode()
        finally:
            for proc in (recorder, vlrun):
                if proc.returncode is None:
                    proc.kill()
                if proc.stdout is not None:
                    await asyncio.wait_for(proc.stdout.read(), 10)  # drain to EOF, then reap
                await asyncio.wait_for(proc.wait(), 10)
    # q waited for the reply already under way: it was printed and logged whole.
    assert "I heard" in line and "[interrupted]" not in line
    log = next((tmp_path / "state/vlrun/logs").glob("*_conversation.log")).read_text()
    assert "I heard" in log and "[interrupted]" not in log
    speech = [e for e in emu.sessions[0].received if e["type"] == "input_audio_buffer.append"]
    assert len(speech) > 20  # the microphone streamed for seconds ...
    assert {len(base64.b64decode(e["audio"])) for e in speech} == {4800}  # ... in 100 ms chunks
    errors.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "ending after this reply" in stderr
    assert "using text mode" not in stderr and "underrun" not in stderr
