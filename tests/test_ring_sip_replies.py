"""`vlrun ring sip` hears when each reply ends: the emulator's SIP caller status says which
caller turn has been answered (``replied``), whether a reply runs (``responding``) and what
each said (``replies``), so the carrier waits on that with a deadline instead of pausing 4 s
between turns (issue 28 item 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.carrier import sip as carrier_sip
from runner.carrier.ring import RingOptions
from runner.carrier.voice import Turn
from runner.emulator.record import SessionRecord
from runner.emulator.sip import SipCall
from tests.test_telephony_sip import sip_server

pytest.importorskip("prometheus_client")

PROFILE = """\
name: phone-desk
instructions: You answer the phone.
voice: alloy
greeting: Say that this is the phone desk.
tools:
  - name: what_time
turn_detection:
  type: server_vad
  silence_duration_ms: 200
"""

TOOL = '''\
from runner.plugins import tool


@tool
def what_time() -> dict:
    """The time now."""
    return {"time": "noon"}
'''

MODEL = {
    "description": "sip replies",
    "turns": [
        {"turn": 1, "transcript": "hello", "say": "Hi, phone desk."},
        {
            "turn": 2,
            "transcript": "time",
            "tools": [{"name": "what_time", "arguments": {}}],
            "then": "It is {output.time}.",
        },
    ],
}


async def test_ring_sip_hears_each_reply_end_and_its_words(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "what_time.py").write_text(TOOL)
    lines: list[str] = []
    options = RingOptions(
        turns=[Turn("say", "hello"), Turn("say", "what time is it")],
        out=lines.append,
        turn_s=30,
    )
    async with sip_server(tmp_path, MODEL, profile=PROFILE) as (emu, _base, phones, _secret):
        await carrier_sip.call(emu.endpoint, options)
        await phones.idle()
        call = next(iter(emu.sip.calls.values()))
    # each turn waited for its own reply to finish, and says what it was
    said = [line for line in lines if line.startswith("turn ")]
    assert said[0].startswith('turn 1 (say "hello"): said; the reply: "Hi, phone desk."'), lines
    # a tool call's response says nothing: the turn's reply is the one after the tool's result
    assert said[1].startswith('turn 2 (say "what time is it"): said; the reply: "It is noon."')
    assert lines[-1] == "hung up"
    turns = [reply["turn"] for reply in call.replies]
    assert turns == [0, 1, 2], call.replies  # the greeting (before any turn), then one each
    assert call.status()["turns"] == 2 and call.status()["replied"] == 2


def _event(kind: str, rid: str, *output: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "response": {"id": rid, "status": "completed", "output": list(output)}}


SPOKEN = {"type": "message", "content": [{"type": "audio", "transcript": "Hello."}]}
TOOL_CALL = {"type": "function_call", "name": "what_time", "arguments": "{}"}


def test_the_status_follows_the_sessions_responses_turn_by_turn() -> None:
    """``responding`` while any response runs; ``replied`` reaches a turn only when a spoken
    response created after that turn has finished (a greeting in progress answers no turn,
    nor does a response that only calls a tool)."""
    record = SessionRecord(number=1, query={}, headers={})
    call = SipCall("rtc_1", "chain_1", record=record)
    record.sent.append(_event("response.created", "greeting"))
    call.said_at.append(len(record.sent))  # the caller speaks during the greeting
    status = call.status()
    assert status["responding"] and status["replied"] == 0 and status["turns"] == 1
    record.sent.append(_event("response.done", "greeting", SPOKEN))
    status = call.status()
    assert not status["responding"] and status["replied"] == 0  # the greeting is turn 0's
    record.sent.append(_event("response.created", "tool"))
    assert call.status()["responding"]
    record.sent.append(_event("response.done", "tool", TOOL_CALL))
    status = call.status()
    assert not status["responding"] and status["replied"] == 0  # words are still to come
    record.sent.append(_event("response.created", "answer"))
    record.sent.append(_event("response.done", "answer", SPOKEN))
    status = call.status()
    assert not status["responding"] and status["replied"] == 1
    assert [(r["turn"], r["text"]) for r in status["replies"]] == [(0, "Hello."), (1, "Hello.")]
