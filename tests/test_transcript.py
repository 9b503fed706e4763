"""Console, conversation log, technical log and JSONL trace (runner/transcript.py)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from runner.live.transcript import VERBOSITY_QUIET, VERBOSITY_VERBOSE, Transcript
from runner.redact import forget_secrets, register_secret

SECRET = "sk-live-1234567890abcdef"


def make(tmp: Path, **kw: object) -> Transcript:
    return Transcript(
        logs_dir=tmp / "logs",
        trace_path=tmp / "t.jsonl",
        out=io.StringIO(),
        err=io.StringIO(),
        name="demo profile",
        **kw,
    )  # type: ignore[arg-type]


def test_each_turn_is_kept_once_and_streams_on_one_line(tmp_path: Path) -> None:
    t = make(tmp_path)
    t.user("u1", "hi")
    t.user("u1", "hi")  # the same item again (e.g. after a reconnect)
    for piece in ("Hel", "lo", " there"):
        t.assistant_delta("a1", piece)
    t.latency(123)  # status lines must not split the streaming line ...
    t.notice("ending after this reply")
    t.warning("the service rewrote a field")
    assert t.err.getvalue() == ""  # type: ignore[attr-defined]
    t.assistant_done("a1", "Hello there")
    t.assistant_done("a1", "Hello there")
    t.assistant_delta("a1", "late delta")  # ignored: the turn is complete
    t.close()
    assert t.out.getvalue() == "you: hi\nassistant: Hello there\n"  # type: ignore[attr-defined]
    assert t.err.getvalue().splitlines() == [  # type: ignore[attr-defined]
        "   (end of speech -> first audio: 123 ms)",  # ... they follow it, in order
        "-- ending after this reply",
        "warning: the service rewrote a field",
    ]
    assert [(x.role, x.text) for x in t.turns] == [("user", "hi"), ("assistant", "Hello there")]
    log = t.conversation_path.read_text()  # type: ignore[union-attr]
    assert log.count("user: hi") == 1 and log.count("assistant: Hello there") == 1
    assert t.conversation_path.name.endswith("_demo-profile_conversation.log")  # type: ignore[union-attr]


def test_interrupted_reply_is_marked(tmp_path: Path) -> None:
    t = make(tmp_path)
    t.assistant_delta("a1", "Once upon a")
    t.assistant_done("a1", "", interrupted=True)
    t.close()
    assert t.out.getvalue() == "assistant: Once upon a [interrupted]\n"  # type: ignore[attr-defined]
    assert t.turns[0].interrupted and t.turns[0].text == "Once upon a"


def test_secrets_never_reach_any_file(tmp_path: Path) -> None:
    forget_secrets()
    register_secret(SECRET)
    t = make(tmp_path)
    t.user("u1", f"my key is {SECRET}")
    t.tool_call("c1", "lookup", json.dumps({"api_key": SECRET}))
    t.error(f"service error: bad key {SECRET}")
    logging.getLogger("vlrun.live.session").info("sending Authorization: Bearer abcdefghijklmnop")
    t.trace("out", {"type": "session.update", "session": {"api-key": SECRET, "note": SECRET}})
    t.close()
    everything = (
        t.out.getvalue()
        + t.err.getvalue()  # type: ignore[attr-defined]
        + t.conversation_path.read_text()  # type: ignore[union-attr]
        + t.technical_path.read_text()  # type: ignore[union-attr]
        + (tmp_path / "t.jsonl").read_text()
    )
    assert SECRET not in everything and "abcdefghijklmnop" not in everything
    assert "my key is ***" in everything
    forget_secrets()


def test_trace_replaces_audio_with_its_size(tmp_path: Path) -> None:
    t = make(tmp_path)
    t.trace("in", {"type": "response.audio.delta", "delta": "A" * 4000, "item_id": "i1"})
    t.trace("out", {"type": "input_audio_buffer.append", "audio": "B" * 1280})
    t.trace("in", {"type": "response.text.delta", "delta": "words stay"})
    t.close()
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert rows[0]["dir"] == "in" and rows[0]["event"]["delta"] == "<4000 chars audio>"
    assert rows[1]["event"]["audio"] == "<1280 chars audio>"
    assert rows[2]["event"]["delta"] == "words stay"


def test_quiet_shows_only_the_conversation_and_errors(tmp_path: Path) -> None:
    t = make(tmp_path, verbosity=VERBOSITY_QUIET)
    t.notice("connecting")
    t.warning("the service dropped session.voice")
    t.tool_call("c1", "f", "{}")
    t.user("u1", "hello")
    t.error("service error x: y")
    t.close()
    assert t.out.getvalue() == "you: hello\n"  # type: ignore[attr-defined]
    assert t.err.getvalue() == "error: service error x: y\n"  # type: ignore[attr-defined]


def test_verbose_shows_event_types(tmp_path: Path) -> None:
    t = make(tmp_path, verbosity=VERBOSITY_VERBOSE)
    t.event("session.updated")
    t.close()  # counted, not echoed: the count comes when the turn (here the session) ends
    assert "events (unfinished): session.updated ×1" in t.err.getvalue()  # type: ignore[attr-defined]


def test_logs_can_be_switched_off(tmp_path: Path) -> None:
    t = Transcript(out=io.StringIO(), err=io.StringIO())
    t.user("u", "x")
    t.close()
    t.close()  # closing twice is fine
    assert t.conversation_path is None and not (tmp_path / "logs").exists()
