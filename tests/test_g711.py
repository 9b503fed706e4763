"""G.711 both ways: the codec against sox, and a telephony profile through the emulator.

Before, a `g711_ulaw` profile still sent PCM16, so speech never ended and no reply came.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from runner import g711
from runner.cli import cli

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
SOX_NAMES = {"ulaw": "u-law", "alaw": "a-law"}


def _wav(path: Path, pcm: bytes, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def _sox_encode(wav: Path, law: str, out: Path) -> bytes:
    subprocess.run(
        ["sox", "-D", "-V1", str(wav), "-t", "raw", "-e", SOX_NAMES[law], "-b", "8", str(out)],
        check=True,
    )
    return out.read_bytes()


@needs_sox
@pytest.mark.parametrize("law", g711.LAWS)
def test_every_16_bit_sample_encodes_as_sox_does_and_decodes_as_sox_does(
    law: str, tmp_path: Path
) -> None:
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    ref = _sox_encode(_wav(tmp_path / "all.wav", pcm), law, tmp_path / "all.raw")
    assert g711.encode(pcm, law) == ref
    decoded = tmp_path / "dec.raw"
    subprocess.run(
        ["sox", "-t", "raw", "-r", "8000", "-c", "1", "-e", SOX_NAMES[law], "-b", "8"]
        + [str(tmp_path / "all.raw"), "-t", "raw", "-e", "signed", "-b", "16", str(decoded)],
        check=True,
    )
    assert g711.decode(ref, law) == decoded.read_bytes()


def test_law_names() -> None:
    assert g711.law_of("g711_ulaw") == "ulaw"
    assert g711.law_of("g711_alaw") == "alaw"
    assert g711.law_of("pcm16") is None and g711.law_of("g711_xlaw") is None


@needs_sox
@pytest.mark.parametrize("law", g711.LAWS)
def test_a_telephony_profile_talks_g711_both_ways(
    law: str,
    tmp_path: Path,
    emulator_in_thread: Any,
    monkeypatch: pytest.MonkeyPatch,
    speech_wav: Path,
    wav_stats: Any,
) -> None:
    speech8k = tmp_path / "speech8k.wav"
    subprocess.run(["sox", "-V1", str(speech_wav), "-r", "8000", str(speech8k)], check=True)
    profile = tmp_path / "tel.yaml"
    profile.write_text(
        f"name: tel\ninstructions: Be brief.\n"
        f"audio: {{input_format: g711_{law}, output_format: g711_{law}}}\n"
    )
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emulator_in_thread.endpoint)
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "k")
    out = tmp_path / "reply.wav"
    result = CliRunner().invoke(
        cli,
        ["run", str(profile), "--input", str(speech8k), "--fast", "--output", str(out)],
        standalone_mode=False,
    )
    assert result.return_value == 0, result.output
    assert "assistant: [emulator] I heard" in result.output  # speech ended, a reply came
    assert "(end of speech -> first audio:" in result.output
    (session,) = emulator_in_thread.sessions
    sent = b"".join(
        base64.b64decode(e["audio"])
        for e in session.received
        if e["type"] == "input_audio_buffer.append"
    )
    expected = _sox_encode(speech8k, law, tmp_path / "speech.raw")
    assert sent[: len(expected)] == expected  # bit-exact with sox
    silence = g711.encode(b"\0\0", law)
    assert set(sent[len(expected) :]) == set(silence)  # then the tail that ends the turn
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getsampwidth()) == (8000, 2)
    duration_s, rms_dbfs = wav_stats(out)
    assert 0.5 < duration_s < 20
    # a voice's level: not silence, and not the near-full-scale noise of G.711 bytes
    # played as if they were PCM16
    assert -35 < rms_dbfs < -12
