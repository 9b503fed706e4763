"""The README's weather command in text mode, through the real CLI and the embedded emulator.

Issue 28, item 2: a text user must not wait for speech nobody plays (the embedded emulator
sends a reply ahead of real time, as Voice Live does), and a tool result is said in plain
words, never as escaped JSON with its braces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WEATHER = [str(ROOT / "profiles" / "weather.yaml"), "--text"]
MOCKS = ["--mock-tools", str(ROOT / "tools" / "weather.mocks.yaml")]
QUESTION = "What is the weather in Paris?\nq\n"


def _run(run_cli: Any, tmp_path: Path) -> tuple[Any, Path]:
    trace = tmp_path / "trace.jsonl"
    result = run_cli([*WEATHER, *MOCKS, "--trace", str(trace)], input=QUESTION)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result, trace


def test_tool_result_is_said_in_plain_words(run_cli: Any, tmp_path: Path) -> None:
    result, _ = _run(run_cli, tmp_path)
    replies = [line for line in result.stdout.splitlines() if line.startswith("assistant:")]
    answer = replies[-1]
    # honest about being an emulator, and the mock's values in words
    assert answer.startswith("assistant: [emulator] get_weather returned "), answer
    assert "location Paris, Île-de-France, France" in answer
    assert "temperature 18.5" in answer and "unit °C" in answer
    assert "conditions partly cloudy" in answer and "wind kmh 12" in answer
    # no JSON read aloud: no braces, quotes or \u escapes
    assert not any(c in answer for c in '{}"'), answer
    assert "\\u" not in answer


def test_text_mode_reply_arrives_ahead_of_real_time(run_cli: Any, tmp_path: Path) -> None:
    """Each reply's audio arrives several times faster than it would play (a ratio, no clock
    limit): at real-time pacing (the old default) the ratio is about 1."""
    _, trace = _run(run_cli, tmp_path)
    rate = 24000  # the weather profile's output: pcm16 at 24 kHz
    per_item: dict[str, list[tuple[float, float]]] = {}
    for line in trace.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        event = record["event"]
        if record["dir"] != "in" or event.get("type") != "response.audio.delta":
            continue
        chars = int(str(event["delta"]).strip("<").split()[0])  # "<6400 chars audio>"
        ms = chars * 3 / 4 / 2 / rate * 1000
        per_item.setdefault(event["item_id"], []).append((record["t"], ms))
    assert len(per_item) == 2, per_item.keys()  # the greeting and the answer
    for deltas in per_item.values():
        audio_ms = sum(ms for _, ms in deltas)
        assert audio_ms > 2000  # long enough for the ratio to mean something
        span_ms = (deltas[-1][0] - deltas[0][0]) * 1000 + deltas[-1][1]
        assert audio_ms / span_ms > 2.5, (audio_ms, span_ms)


def test_a_mocked_tool_result_keeps_its_characters(run_cli: Any, tmp_path: Path) -> None:
    """The mock's output goes to the model (and the tool line) as written: Île-de-France and
    °C, not \\u00ce and \\u00b0."""
    _, trace = _run(run_cli, tmp_path)
    lines = trace.read_text(encoding="utf-8").splitlines()
    outputs = [line for line in lines if "function_call_output" in line]
    assert outputs, "the tool's output was sent"
    sent = json.loads(outputs[0])["event"]["item"]["output"]
    assert "Île-de-France" in sent and "°C" in sent
