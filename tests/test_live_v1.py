"""Issue 29 item 1, the live side: a profile on ``api-version: v1`` (the GA session shape) runs
with audio as its dated twin does, through the real CLI, SDK and emulator; credentials never ride
in the query on v1 (VoiceLive/v1/readme.md: "Authentication is header-only")."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from runner.emulator import emulator_thread
from runner.errors import ConfigError
from runner.live.audio import wire_formats
from runner.live.connect import Target, check_v1_query, open_connection

KEY = "live-v1-key-0123456789abcdef"
V1_PROFILE = """\
name: v1-audio
connection:
  api_version: v1
  preview: [BargeIn]
instructions: Be brief.
voice:
  name: en-US-Ava:DragonHDLatestNeural
  type: azure-standard
audio:
  input_format: pcm16
  input_sampling_rate: 16000
  output_format: g711_ulaw
turn_detection:
  type: server_vad
  silence_duration_ms: 500
transcription:
  model: whisper-1
"""


def test_a_v1_profile_runs_with_audio(run_cli: Any, tmp_path: Path, speech_wav: Path) -> None:
    """The edges open at the v1 session's formats (16 kHz in, G.711 μ-law out, heard as 8 kHz),
    the voice is named, and the key is in a header, never in the query."""
    (tmp_path / "v1.yaml").write_text(V1_PROFILE, encoding="utf-8")
    # the emulator checks the key, and on v1 only in the headers
    with emulator_thread(speed=0, api_key=KEY) as emu:
        result = run_cli(
            ["run", "v1.yaml", "--input", str(speech_wav), "--fast", "--output", "out.wav"],
            env={"AZURE_VOICELIVE_ENDPOINT": emu.endpoint, "AZURE_VOICELIVE_API_KEY": KEY},
            timeout=90,
        )
    assert result.returncode == 0, result.stderr
    assert "assistant: [emulator]" in result.stdout
    record = emu.sessions[-1]
    assert record.query.get("api-version") == "v1"
    assert not {k.lower() for k in record.query} & {"api-key", "authorization", "token"}
    assert record.headers.get("api-key")  # present (the record masks its value)
    assert record.headers.get("VoiceLive-Features") == "BargeIn=V1Preview"
    update = next(e for e in record.received if e["type"] == "session.update")
    assert update["session"]["type"] == "realtime"  # the v1 shape went out
    # what the user heard was decoded from G.711 at its 8 kHz rate (dated keys: 24 kHz PCM)
    with wave.open(str(tmp_path / "out.wav")) as out:
        assert out.getframerate() == 8000 and out.getnframes() > 8000 // 2
    # the microphone audio went out at the session's 16 kHz: its appends match the file's length
    appended = sum(
        len(e.get("audio", "")) * 3 // 4
        for e in record.received
        if e["type"] == "input_audio_buffer.append"
    )
    with wave.open(str(speech_wav)) as src:
        seconds = src.getnframes() / src.getframerate()
    assert abs(appended / 32000 - seconds) < 1.8  # 16 kHz x 2 bytes, plus the tail's silence
    # transcription is configured (audio.input.transcription): no "[speech 1.2 s]" stand-in
    assert "you: " in result.stdout and "you: [speech" not in result.stdout


def test_the_console_names_the_v1_voice(run_cli: Any, tmp_path: Path) -> None:
    (tmp_path / "v1.yaml").write_text(V1_PROFILE, encoding="utf-8")
    result = run_cli(["run", "v1.yaml", "--emulator", "--text", "--logs", "logs"], input="hello\n")
    assert result.returncode == 0, result.stderr
    (conv,) = (tmp_path / "logs").glob("*_conversation.log")
    assert "voice en-US-Ava:DragonHDLatestNeural" in conv.read_text(encoding="utf-8")


def test_wire_formats_read_either_shape() -> None:
    dated = {
        "input_audio_format": "pcm16",
        "input_audio_sampling_rate": 16000,
        "output_audio_format": "g711_alaw",
    }
    v1 = {
        "type": "realtime",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 16000}},
            "output": {"format": {"type": "audio/pcma"}},
        },
    }
    assert wire_formats(v1) == wire_formats(dated)
    in_fmt, out_fmt, in_law, out_law = wire_formats(v1)
    assert (in_fmt.rate, out_fmt.rate, in_law, out_law) == (16000, 8000, None, "alaw")


def test_push_to_talk_and_transcription_read_the_v1_keys() -> None:
    from runner.live import shape

    manual = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    assert shape.has(manual, "turn_detection") and shape.turn_detection(manual) is None
    vad = {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
    assert not shape.has(vad, "turn_detection")
    assert shape.transcription(vad) == {"model": "whisper-1"}
    assert shape.turn_detection({"turn_detection": None}) is None  # dated, unchanged
    assert shape.has({"turn_detection": None}, "turn_detection")


@pytest.mark.parametrize("name", ["api-key", "Authorization", "access_token", "agent-access-token"])
def test_no_credential_in_the_query_on_v1(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_v1_query({name: "x", "model": "gpt-realtime"})
    assert (
        f"connection.query.{name}" in caught.value.message
        and "headers only" in caught.value.message
    )
    check_v1_query({"model": "gpt-realtime", "profile": "byom-azure-openai-realtime"})


async def test_a_classic_agent_is_refused_on_v1_before_any_token_is_fetched() -> None:
    from runner.emulator import running_emulator

    async with running_emulator(speed=0) as emu:
        target = Target(
            emu.endpoint,
            "test",
            KEY,
            "test",
            "gpt-realtime",
            api_version="v1",
            agent_query={"agent-id": "asst_1", "agent-project-name": "p"},
        )
        with pytest.raises(ConfigError) as caught:
            async with open_connection(target, emu.endpoint, AzureKeyCredential(KEY)):
                pass
        assert not emu.sessions  # nothing was sent
    assert "agent-access-token" in caught.value.message and "v1" in caught.value.message
