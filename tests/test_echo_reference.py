"""The client echo reference: stereo on the wire, the microphone left, what was played right."""

from __future__ import annotations

import base64
import re
import wave
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from runner.cli import cli
from runner.emulator import emulator_thread
from runner.live.echo_reference import ReferencePlayer, ReferenceTap, interleave

PROFILE = """\
name: client-echo-reference
instructions: Be brief.
greeting: true
audio:
  echo_cancellation: {reference_source: client, channels: 2}
"""


def _pcm(*samples: int) -> bytes:
    return np.array(samples, dtype="<i2").tobytes()


def test_the_tap_hands_out_what_was_played_then_silence() -> None:
    tap = ReferenceTap(24000, 24000)
    tap.played(_pcm(1, 2, 3))
    assert tap.take(4) == _pcm(1, 2)
    assert tap.take(4) == _pcm(3, 0)  # nothing more was played: silence
    tap.played(_pcm(9, 9))
    tap.flush()  # barge-in: the unplayed rest is no reference
    assert tap.take(4) == _pcm(0, 0)


def test_the_tap_resamples_to_the_microphone_rate() -> None:
    tap = ReferenceTap(24000, 16000)
    tone = (np.sin(np.arange(24000) / 24000 * 2 * np.pi * 440) * 8000).astype("<i2")
    tap.played(tone.tobytes())
    got = np.frombuffer(tap.take(32000), dtype="<i2")
    assert abs(np.count_nonzero(got) - 16000) < 400  # one second at 16 kHz, soxr's delay aside


def test_interleave_puts_the_microphone_left() -> None:
    assert interleave(_pcm(1, 2), _pcm(7, 8)) == _pcm(1, 7, 2, 8)


def test_barge_in_on_the_player_flushes_the_reference() -> None:
    class Inner:
        fmt = None

        def __init__(self) -> None:
            self.got: list[bytes] = []

        def write(self, item_id: str, pcm: bytes) -> None:
            self.got.append(pcm)

        def interrupt(self) -> tuple[str | None, int]:
            return "item", 120

    tap = ReferenceTap(24000, 24000)
    inner = Inner()
    player = ReferencePlayer(inner, tap)
    player.write("item", _pcm(5, 5))
    assert inner.got == [_pcm(5, 5)]
    assert player.interrupt() == ("item", 120)
    assert tap.take(4) == _pcm(0, 0)


def test_a_client_reference_session_sends_the_mic_left_and_the_greeting_right(
    tmp_path: Path, speech_wav: Path, monkeypatch: Any
) -> None:
    (tmp_path / "p.yaml").write_text(PROFILE)
    with emulator_thread(speed=0, record_audio=True) as emu:
        monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emu.endpoint)
        monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "k")
        result = CliRunner().invoke(
            cli,
            ["run", str(tmp_path / "p.yaml"), "--input", str(speech_wav), "--logs", "-"],
            standalone_mode=False,
        )
        assert result.return_value == 0, result.output
        (record,) = emu.sessions
    appends = [
        base64.b64decode(e["audio"])
        for e in record.received
        if e["type"] == "input_audio_buffer.append"
    ]
    assert appends and all(len(a) % 4 == 0 for a in appends)  # whole stereo frames
    stereo = np.frombuffer(b"".join(appends), dtype="<i2")
    with wave.open(str(speech_wav)) as wav:
        spoken = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    mic = stereo[0::2]
    assert np.array_equal(mic[: len(spoken)], spoken)  # channel 0 is the file, sample for sample
    assert not mic[len(spoken) :].any()  # then the trailing silence that ends the turn
    assert np.abs(stereo[1::2].astype(np.int32)).max() > 1000  # the greeting, as played
    heard = re.search(r"I heard ([\d.]+) seconds", result.output)
    assert heard is not None, result.output
    # the emulator's VAD heard the microphone channel at its true length (not half, not double)
    assert 0.8 * len(spoken) / 24000 <= float(heard.group(1)) <= len(spoken) / 24000 + 0.5
