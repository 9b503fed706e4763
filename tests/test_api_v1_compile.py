"""Issue 29 item 1, the compiler side: api_version v1 compiles a profile into the v1 (GA)
session shape, `vlrun check` names at file:line what v1 cannot say, and preview features
become the VoiceLive-Features header (shown by `vlrun explain`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.config.compile import compile_session, compile_with_problems
from runner.config.load import load_profile

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
#: dated session fields the v1 shape moves or renames; none may be left at the top level
DATED_ONLY = (
    "modalities",
    "voice",
    "input_audio_format",
    "input_audio_sampling_rate",
    "output_audio_format",
    "turn_detection",
    "input_audio_noise_reduction",
    "input_audio_echo_cancellation",
    "input_audio_transcription",
    "max_response_output_tokens",
    "output_audio_timestamp_types",
    "parallel_tool_calls",
)

# source: azure-rest-api-specs VoiceLive/v1/examples/v1/SessionUpdate.json
V1_EXAMPLE: dict[str, Any] = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {"type": "server_vad"},
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "voice_type": "openai",
            },
        },
    },
}


def vlrun(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        timeout=120,
    )


def _load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_profile(path, env={})


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_shipped_profile_compiles_for_v1(path: Path) -> None:
    profile = load_profile(path, env={})
    payload, problems, _ = compile_with_problems(profile, api_version="v1")
    assert [p.message for p in problems if p.severity == "error"] == []
    session = payload["session"]
    if payload["type"] == "session.start":  # GPT-Live: its own endpoint, no api-version at all
        assert session["model"].startswith("gpt-live")
        assert [p.message for p in problems] == [
            "GPT-Live takes no api-version: --api-version v1 is not used"
        ]
        return
    assert session["type"] == "realtime"
    assert [k for k in DATED_ONLY if k in session] == []


def test_the_spec_example_profile_compiles_to_the_spec_example(tmp_path: Path) -> None:
    profile = _load(
        tmp_path,
        "name: t\nconnection: {api_version: v1}\nmodalities: [text, audio]\n"
        "audio: {input_format: pcm16, input_sampling_rate: 24000, output_format: pcm16}\n"
        "turn_detection: {type: server_vad}\nvoice: alloy\n",
    )
    assert compile_session(profile) == V1_EXAMPLE


SIDE_BY_SIDE = """name: t
instructions: Be brief.
modalities: [text, audio]
voice: {type: azure-standard, name: en-US-Ava:DragonHDLatestNeural, temperature: 0.7,
        locale: en-US, style: cheerful}
audio: {input_format: g711_ulaw, output_format: pcm16_16000hz, noise_reduction: near_field,
        echo_cancellation: server, word_timestamps: true}
turn_detection: {type: semantic_vad, eagerness: low}
transcription: {model: gpt-4o-transcribe, language: en}
max_response_tokens: 200
temperature: 0.8
"""

#: (dated path, v1 path) for every field the two shapes spell differently
MOVED = [
    ("modalities", "output_modalities"),
    ("voice.name", "audio.output.voice"),
    ("voice.type", "audio.output.voice_type"),
    ("voice.temperature", "audio.output.voice_temperature"),
    ("voice.locale", "audio.output.locale"),
    ("voice.style", "audio.output.style"),
    ("input_audio_format", "audio.input.format"),
    ("output_audio_format", "audio.output.format"),
    ("input_audio_noise_reduction", "audio.input.noise_reduction"),
    ("input_audio_echo_cancellation", "audio.input.echo_cancellation"),
    ("input_audio_transcription", "audio.input.transcription"),
    ("turn_detection", "audio.input.turn_detection"),
    ("output_audio_timestamp_types", "audio.output.output_audio_timestamp_types"),
    ("max_response_output_tokens", "max_output_tokens"),
]


def _at(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def test_v1_and_dated_payloads_side_by_side(tmp_path: Path) -> None:
    profile = _load(tmp_path, SIDE_BY_SIDE)
    dated = compile_session(profile, api_version="2026-07-15")["session"]
    v1 = compile_session(profile, api_version="v1")["session"]
    pairs = {d: (_at(dated, d), _at(v1, v)) for d, v in MOVED}
    assert pairs == {
        "modalities": (["text", "audio"], ["audio"]),
        "voice.name": ("en-US-Ava:DragonHDLatestNeural",) * 2,
        "voice.type": ("azure-standard",) * 2,
        "voice.temperature": (0.7, 0.7),
        "voice.locale": ("en-US", "en-US"),
        "voice.style": ("cheerful", "cheerful"),
        "input_audio_format": ("g711_ulaw", {"type": "audio/pcmu"}),
        "output_audio_format": ("pcm16_16000hz", {"type": "audio/pcm", "rate": 16000}),
        "input_audio_noise_reduction": ({"type": "near_field"},) * 2,
        "input_audio_echo_cancellation": ({"type": "server_echo_cancellation"},) * 2,
        "input_audio_transcription": ({"model": "gpt-4o-transcribe", "language": "en"},) * 2,
        "turn_detection": ({"type": "semantic_vad", "eagerness": "low"},) * 2,
        "output_audio_timestamp_types": (["word"], ["word"]),
        "max_response_output_tokens": (200, 200),
    }
    # what both shapes spell the same way
    for key in ("instructions", "temperature"):
        assert dated[key] == v1[key]
    assert v1["type"] == "realtime" and "type" not in dated


def test_check_names_what_v1_cannot_say_at_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: t\n"
        "connection:\n"
        "  api_version: v1\n"
        "  query: {api-key: abc}\n"
        "voice: {type: azure-standard, name: en-US-Ava:DragonHDLatestNeural, rate: '1.1'}\n"
        "reasoning_effort: low\n"
        "parallel_tool_calls: false\n"
    )
    done = vlrun("check", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "Traceback" not in out
    assert f"{path}:4:" in out and "credentials in headers only" in out
    assert f"{path}:5:" in out and "voice.rate cannot be expressed on api_version v1" in out
    assert f"{path}:6:" in out and "reasoning_effort cannot be expressed on api_version v1" in out
    assert f"{path}:7:" in out and "warning: parallel_tool_calls" in out
    # the same profile on a dated version: all of it is fine there, except the query key
    # being only a dated-version concern of nobody
    path.write_text(path.read_text().replace("api_version: v1", "api_version: 2026-07-15"))
    assert vlrun("check", str(path)).returncode == 0


def test_preview_features_need_v1_and_become_the_header(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nconnection:\n  api_version: v1\n  preview: [BargeIn, CustomVoice]\n")
    profile = load_profile(path, env={})
    assert profile.connection.connect_options()["headers"] == {
        "VoiceLive-Features": "BargeIn=V1Preview, CustomVoice=V1Preview"
    }
    one = tmp_path / "one.yaml"  # explain cuts long values short; one feature fits
    one.write_text(path.read_text().replace("[BargeIn, CustomVoice]", "[BargeIn]"))
    shown = vlrun("explain", "one.yaml", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    # the header row is credited to the setting that wrote it, at its line (not "default")
    row = next(r for r in shown.stdout.splitlines() if "VoiceLive-Features" in r)
    assert row.split()[:2] == ["connection.headers.VoiceLive-Features", '"BargeIn=V1Preview"']
    assert row.endswith("<- one.yaml:4"), row
    compiled = vlrun("compile", str(path))
    assert json.loads(compiled.stdout)["session"] == {"type": "realtime"}
    # on a dated version the header has no meaning: an error at the preview line
    dated = vlrun("check", str(path), "--api-version", "2026-07-15")
    assert dated.returncode == 1
    assert f"{path}:4:" in dated.stdout + dated.stderr
    assert "only api_version v1 takes" in dated.stdout + dated.stderr


def test_compile_command_takes_api_version_v1() -> None:
    done = vlrun("compile", "profiles/weather.yaml", "--api-version", "v1")
    assert done.returncode == 0, done.stderr
    session = json.loads(done.stdout)["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["turn_detection"]["type"].startswith("azure_semantic_vad")


def test_dated_audio_reads_both_shapes_alike(tmp_path: Path) -> None:
    from runner.config.service import dated_audio

    profile = _load(tmp_path, SIDE_BY_SIDE)
    dated = compile_session(profile, api_version="2026-07-15")["session"]
    v1 = compile_session(profile, api_version="v1")["session"]
    assert dated_audio(v1) == dated_audio(dated)
    assert dated_audio(v1)["output_audio_format"] == "pcm16_16000hz"
    assert dated_audio(v1)["voice"]["name"] == "en-US-Ava:DragonHDLatestNeural"


@pytest.mark.parametrize("version", ["2026-07-15", "v1"])
def test_set_audio_formats_writes_the_sessions_own_shape(tmp_path: Path, version: str) -> None:
    from runner.config.service import dated_audio, set_audio_formats

    profile = _load(tmp_path, SIDE_BY_SIDE)
    session = compile_session(profile, api_version=version)["session"]
    set_audio_formats(session, "pcm16", 16000, "pcm16_16000hz")
    assert dated_audio(session) | {"voice": None} == {
        "input_audio_format": "pcm16",
        "input_audio_sampling_rate": 16000,
        "output_audio_format": "pcm16_16000hz",
        "voice": None,
    }
    if version == "v1":
        assert [k for k in DATED_ONLY if k in session] == []
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 16000}


def test_emulator_echo_on_v1_is_in_the_v1_shape() -> None:
    from runner.emulator.protocol import default_session
    from runner.emulator.session_update import v1_echo

    echo = v1_echo(default_session("gpt-realtime", "v1", "sess_1", 1_900_000_000))
    assert echo["id"] == "sess_1" and echo["type"] == "realtime"
    assert echo["audio"]["output"]["voice"] == "alloy"
    assert echo["audio"]["output"]["voice_type"] == "openai"
    assert echo["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert [k for k in DATED_ONLY if k in echo] == []
