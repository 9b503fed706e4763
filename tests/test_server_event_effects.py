"""Every server event has its user-visible effect: `vlrun run PROFILE --text --trace F --logs D`
against the emulator, as a user runs it (a subprocess), checked in the console, the trace and the
conversation log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import emulator_thread

KEY = "effects-test-key-0123456789"
AVA = "voice:\n  name: en-US-AvaNeural\n  type: azure-standard\n"  # word timestamps need one
SCRIPT = {
    "turns": [
        {"match": "careful", "warning": "mind the \x1b[31mgap\nplease", "say": "Noted."},
        {"match": "slow", "say": "Here it is.", "delay_ms": 3000},
        {"turn": 1, "transcription_failed": "too noisy \x1b]0;pwned\x07 to hear"},
    ]
}


@pytest.fixture(scope="module")
def scripted() -> Iterator[Any]:
    with emulator_thread(speed=0, scenario=SCRIPT) as emu:
        yield emu


def profile(tmp_path: Path, body: str) -> str:
    path = tmp_path / "effects.yaml"
    path.write_text(
        "name: effects\nconnection:\n  model: gpt-realtime\nturn_detection: server_vad\n" + body
    )
    return str(path)


def run(run_cli: Any, emu: Any, prof: str, *extra: str, typed: str = "") -> Any:
    result = run_cli(
        [prof, *extra, "--trace", "trace.jsonl", "--logs", "logs"],
        input=typed,
        env={"AZURE_VOICELIVE_ENDPOINT": emu.endpoint, "AZURE_VOICELIVE_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def trace(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]


def conversation(tmp_path: Path) -> str:
    [log] = (tmp_path / "logs").glob("*_conversation.log")
    return log.read_text()


def test_word_timestamps_kept_and_animation_counted_in_the_trace(
    run_cli: Any, emulator_in_thread: Any, tmp_path: Path
) -> None:
    prof = profile(
        tmp_path,
        "modalities: [text, audio, animation]\naudio:\n  word_timestamps: true\n"
        "animation:\n  outputs: [viseme_id, blendshapes]\n" + AVA,
    )
    result = run(run_cli, emulator_in_thread, prof, "--text", typed="hello there\n")
    assert "assistant: [emulator] You said: hello there" in result.stdout
    records = trace(tmp_path)
    wire = [r["event"]["type"] for r in records if r["dir"] == "in"]
    # the word timestamps are on the wire as they came, and gathered per reply
    assert wire.count("response.audio_timestamp.delta") == 5
    [words] = [
        r["event"]
        for r in records
        if r["dir"] == "note" and r["event"]["type"] == "word_timestamps"
    ]
    assert [w["text"] for w in words["words"]] == ["emulator", "You", "said", "hello", "there"]
    offsets = [w["offset_ms"] for w in words["words"]]
    assert offsets == sorted(offsets) and all(w["duration_ms"] > 0 for w in words["words"])
    # visemes and blendshapes: counted, one summary per response, not one record per event
    assert "response.animation_viseme.delta" not in wire
    assert "response.animation_blendshapes.delta" not in wire
    assert "response.animation_viseme.done" in wire
    [animation] = [
        r["event"] for r in records if r["dir"] == "note" and r["event"]["type"] == "animation"
    ]
    responses = [
        r["event"]["response"]["id"] for r in records if r["event"]["type"] == "response.done"
    ]
    assert animation["response_id"] in responses
    assert animation["visemes"] >= 10 and 0 in animation["viseme_ids"]
    assert set(animation["viseme_ids"]) <= set(range(22))
    # 60 frames a second over the reply's audio (about 2 s for these five words)
    assert 60 <= animation["blendshape_frames"] <= 60 * 4
    assert animation["blendshape_events"] >= 10


def test_the_trace_with_notes_still_replays(
    run_cli: Any, emulator_in_thread: Any, tmp_path: Path
) -> None:
    prof = profile(
        tmp_path, "modalities: [text, audio, animation]\naudio:\n  word_timestamps: true\n" + AVA
    )
    run(run_cli, emulator_in_thread, prof, "--text", typed="hello there\n")
    assert any(r["dir"] == "note" for r in trace(tmp_path))
    replay = run_cli(["test", "--replay", "trace.jsonl"])
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_warning_is_one_clean_console_line(run_cli: Any, scripted: Any, tmp_path: Path) -> None:
    result = run(run_cli, scripted, profile(tmp_path, ""), "--text", typed="be careful\n")
    lines = [line for line in result.stderr.splitlines() if "service warning" in line]
    assert lines == ["warning: service warning emulator_warning: mind the \\x1b[31mgap\\nplease"]
    assert "\x1b" not in result.stderr
    assert "assistant: Noted." in result.stdout
    assert "service warning: mind the" in conversation(tmp_path)


def test_transcription_failure_is_one_clean_console_line(
    run_cli: Any, scripted: Any, tmp_path: Path, speech_wav: Path
) -> None:
    prof = profile(tmp_path, "transcription:\n  model: whisper-1\n")
    result = run(run_cli, scripted, prof, "--input", str(speech_wav), "--fast")
    lines = [line for line in result.stderr.splitlines() if "transcribe" in line]
    assert lines == [
        "warning: could not transcribe your speech: too noisy \\x1b]0;pwned\\x07 to hear"
    ]
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "user speech not transcribed" in conversation(tmp_path)


def test_a_static_interim_is_shown_and_logged_as_interim(
    run_cli: Any, scripted: Any, tmp_path: Path
) -> None:
    prof = profile(
        tmp_path,
        "interim_response:\n  type: static\n  triggers: [latency]\n  latency_threshold_ms: 1000\n"
        "  texts: [Bear with me.]\n",
    )
    result = run(run_cli, scripted, prof, "--text", typed="slow answer please\n")
    assert result.stdout.splitlines()[-2:] == [
        "assistant: Bear with me. [interim]",
        "assistant: Here it is.",
    ]
    log = conversation(tmp_path)
    assert "assistant: Bear with me. [interim]" in log
    assert "assistant: Here it is.\n" in log


def test_a_generated_interim_is_marked_once_the_reply_follows(
    run_cli: Any, scripted: Any, tmp_path: Path
) -> None:
    prof = profile(
        tmp_path,
        "interim_response:\n  type: llm\n  triggers: [latency]\n  latency_threshold_ms: 1000\n",
    )
    result = run(run_cli, scripted, prof, "--text", typed="slow answer please\n")
    assert result.stdout.splitlines()[-2:] == [
        "assistant: [emulator interim] One moment, please.",
        "assistant: Here it is.",
    ]
    log = conversation(tmp_path).splitlines()
    shown = next(i for i, line in enumerate(log) if "One moment, please." in line)
    assert "the assistant line above was an interim response" in log[shown + 1]
    assert not any("Here it is." in line and "interim" in line for line in log)


def test_an_interim_after_a_tool_call_is_marked_as_it_is_shown(
    run_cli: Any, emulator_in_thread: Any, tmp_path: Path
) -> None:
    weather = str(Path(__file__).resolve().parents[1] / "profiles" / "weather.yaml")
    mocks = tmp_path / "mocks.yaml"
    mocks.write_text('mocks:\n  get_weather: {output: {"temp_c": 21}}\n')
    result = run(
        run_cli,
        emulator_in_thread,
        weather,
        "--set",
        "interim_response={type: llm, triggers: [tool]}",
        "--set",
        "greeting=false",
        "--text",
        "--mock-tools",
        str(mocks),
        typed="What is the weather in Paris?\n",
    )
    out = result.stdout.splitlines()
    shown = out.index("assistant: [emulator interim] One moment, please. [interim]")
    assert out[shown - 1].startswith("  [tool] get_weather(")  # said after the call went out
    assert any("get_weather returned" in line and "[interim]" not in line for line in out[shown:])
    assert "assistant: [emulator interim] One moment, please. [interim]" in conversation(tmp_path)
