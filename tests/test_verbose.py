"""--verbose: event counts once per turn, word timestamps per response, rate limits; the reply
streams once and whole."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from runner.live.transcript import VERBOSITY_VERBOSE, Transcript
from runner.live.verbose import VerboseEvents, rate_limits_line


def _feed(verbose: VerboseEvents, events: list[dict[str, Any]]) -> None:
    for event in events:
        verbose.event(str(event["type"]), event)


def _reply(rid: str, words: list[tuple[str, int, int]], *, output: Any = ()) -> list[dict]:
    events: list[dict[str, Any]] = [{"type": "response.created", "response": {"id": rid}}]
    events += [{"type": "response.audio.delta", "response_id": rid, "delta": "AAAA"}] * 5
    events += [{"type": "response.audio_transcript.delta", "response_id": rid, "delta": "x"}] * 2
    events += [
        {
            "type": "response.audio_timestamp.delta",
            "response_id": rid,
            "text": text,
            "audio_offset_ms": at,
            "audio_duration_ms": length,
            "timestamp_type": "word",
        }
        for text, at, length in words
    ]
    if words:
        events.append({"type": "response.audio_timestamp.done", "response_id": rid})
    events.append(
        {"type": "response.done", "response": {"id": rid, "status": "completed", "output": output}}
    )
    return events


def test_one_counts_line_per_turn_in_order_of_arrival() -> None:
    lines: list[str] = []
    verbose = VerboseEvents(lines.append)
    _feed(verbose, [{"type": "input_audio_buffer.speech_started"}])
    _feed(verbose, _reply("r1", []))
    assert lines == [
        "turn 1 events: input_audio_buffer.speech_started ×1, response.created ×1, "
        "response.audio.delta ×5, response.audio_transcript.delta ×2, response.done ×1"
    ]
    _feed(verbose, _reply("r2", []))
    assert lines[1].startswith("turn 2 events: response.created ×1, response.audio.delta ×5")


def test_a_response_that_calls_a_tool_does_not_end_the_turn() -> None:
    lines: list[str] = []
    verbose = VerboseEvents(lines.append)
    _feed(verbose, _reply("r1", [], output=[{"type": "function_call", "call_id": "c1"}]))
    assert lines == []  # the reply after the tool output belongs to the same turn
    _feed(verbose, _reply("r2", []))
    assert len(lines) == 1
    assert "response.done ×2" in lines[0] and "response.audio.delta ×10" in lines[0]


def test_a_cancelled_response_ends_the_turn_even_with_calls() -> None:
    lines: list[str] = []
    verbose = VerboseEvents(lines.append)
    events = _reply("r1", [], output=[{"type": "function_call"}])
    events[-1]["response"]["status"] = "cancelled"
    _feed(verbose, events)
    assert len(lines) == 1 and lines[0].startswith("turn 1 events:")


def test_word_timestamps_one_line_per_response() -> None:
    lines: list[str] = []
    verbose = VerboseEvents(lines.append)
    words = [("Hello", 0, 320), (" there", 320, 200), (" friend.", 560, 410)]
    _feed(verbose, _reply("resp_7", words))
    assert lines[0] == (
        'response resp_7: 3 words timed, first "Hello" 0–320 ms, last "friend." 560–970 ms'
    )
    assert lines[1].startswith("turn 1 events:")
    assert "response.audio_timestamp.delta ×3" in lines[1]


def test_rate_limits_shown_with_the_turn_only_when_they_change() -> None:
    lines: list[str] = []
    verbose = VerboseEvents(lines.append)
    limits = {
        "type": "rate_limits.updated",
        "rate_limits": [
            {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 60.0},
            {"name": "tokens", "limit": 120000, "remaining": 119000, "reset_seconds": 1.5},
        ],
    }
    _feed(verbose, [limits, *_reply("r1", [])])
    assert lines[-1] == (
        "rate limits: requests 999/1000 (reset 60 s), tokens 119000/120000 (reset 1.5 s)"
    )
    _feed(verbose, [limits, *_reply("r2", [])])
    assert lines[-1].startswith("turn 2 events:")  # the same limits are not repeated
    assert rate_limits_line("junk") == "rate limits: none reported"


def test_close_writes_what_no_turn_ended() -> None:
    lines: list[str] = []
    verbose = VerboseEvents(lines.append)
    _feed(verbose, [{"type": "session.created"}, {"type": "session.updated"}])
    verbose.close()
    assert lines == ["turn 1 events (unfinished): session.created ×1, session.updated ×1"]
    verbose.close()
    assert len(lines) == 1


def test_the_streamed_reply_prints_once_and_whole_with_verbose() -> None:
    out, err = io.StringIO(), io.StringIO()
    transcript = Transcript(verbosity=VERBOSITY_VERBOSE, out=out, err=err, meter=False)
    transcript.event("response.created", payload={"type": "response.created"})
    for word in ("Hello", " there", " friend."):
        transcript.event("response.audio_transcript.delta", payload={})
        transcript.assistant_delta("item1", word)
    transcript.event("response.audio_transcript.done", payload={})
    transcript.assistant_done("item1", "Hello there friend.")
    transcript.event("response.done", payload={"response": {"id": "r", "status": "completed"}})
    transcript.close()
    assert out.getvalue() == "assistant: Hello there friend.\n"
    assert err.getvalue().count("events:") == 1
    assert "response.audio_transcript.delta ×3" in err.getvalue()


def test_verbose_run_against_the_emulator(run_cli: Any, profiles_dir: Path, tmp_path: Path) -> None:
    """A real run: one counts line per turn, the emulator's rate limits, the reply once."""
    proc = run_cli(
        [
            "run",
            str(profiles_dir / "casual-chat.yaml"),
            "--emulator",
            "--text",
            "--verbose",
            "--logs",
            "-",
            "--trace",
            str(tmp_path / "t.jsonl"),
        ],
        input="hello there\nwhat is the weather\n",
    )
    assert proc.returncode == 0, proc.stderr
    counts = re.findall(r"^   turn (\d+) events: (.*)$", proc.stderr, re.M)
    assert [n for n, _ in counts] == ["1", "2"]  # one line per turn, nothing per event
    assert "   < " not in proc.stderr
    assert re.search(r"^   rate limits: requests 999/1000 \(reset 60 s\)", proc.stderr, re.M)
    assert proc.stderr.count("rate limits:") == 1  # unchanged in turn 2: not repeated
    replies = [line for line in proc.stdout.splitlines() if line.startswith("assistant")]
    assert replies == [
        "assistant: [emulator] You said: hello there",
        "assistant: [emulator] You said: what is the weather",
    ]  # each streamed once, whole
    # the counts add up to what the trace holds, event by event
    deltas = sum(int(n) for _, line in counts for n in re.findall(r"audio\.delta ×(\d+)", line))
    trace = (tmp_path / "t.jsonl").read_text().splitlines()
    assert deltas == sum('"dir": "in"' in t and '"response.audio.delta"' in t for t in trace)
