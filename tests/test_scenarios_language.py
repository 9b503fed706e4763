"""The scenario language beyond tools and replies (issue 30): api-version v1 profiles, DTMF and
image turns, `silent_for_ms`, `tool_cancelled`, several scenarios in one file. Each runs the
real session, SDK and plugins against the emulator; each failing example states the exact
failure line it must produce."""

from __future__ import annotations

from pathlib import Path

from runner.scenarios.files import load_scenario
from runner.scenarios.run import run_scenario

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "scenarios"


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    """A project of its own in ``tmp_path`` (a scenario's paths stay inside its project)."""
    (tmp_path / "pyproject.toml").touch()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


V1_16K = """\
name: v1-16k
connection: {api_version: v1}
instructions: You are brief.
audio: {output_format: pcm16_16000hz, input_sampling_rate: 16000}
"""


def test_a_v1_profile_plays_its_replies_at_its_own_rate(tmp_path: Path) -> None:
    # v1 keeps the formats under audio.output.format; read as the dated fields they were
    # absent, the 16 kHz reply was counted as 24 kHz audio (32 s heard as 21 s) and a
    # barge-in 23.5 s into it "never happened"
    here = project(
        tmp_path,
        {
            "v1.yaml": V1_16K,
            "s.yaml": """\
scenario: v1 barge-in
profile: v1.yaml
model:
  turns:
    - match: story
      say: >-
        Once upon a time there was a cat who lived in a very small house by the sea. Every
        morning she walked along the harbour wall, counted the fishing boats, and waited for
        the baker to open his door, because the baker always saved her a little fish. In
        the afternoon she slept on the warm roof of the lighthouse, and in the evening she
        listened to the sailors telling stories about storms, whales and faraway islands,
        until the stars came out and it was time to walk home along the sea again.
speed: 20
turns:
  - user: Tell me a story
    barge_in: {at_ms: 23500}
    expect: {interrupted: true}
""",
        },
    )
    result = run_scenario(load_scenario(here / "s.yaml"))
    assert result.passed, [f.render() for f in result.failures] or result.error
    truncated = result.turns[0].truncated_at_ms
    assert truncated is not None and truncated >= 23500 - 100


def test_formats_and_turn_detection_are_read_in_either_session_shape() -> None:
    from runner.scenarios.run import _formats, _turn_detection

    v1 = {
        "type": "realtime",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 16000},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 900},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 16000}},
        },
    }
    dated = {
        "input_audio_sampling_rate": 16000,
        "output_audio_format": "pcm16_16000hz",
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 900},
    }
    for session in (v1, dated):
        mic, speaker = _formats(session)
        assert (mic.rate, speaker.rate) == (16000, 16000)
        assert _turn_detection(session)["silence_duration_ms"] == 900
