"""Conversation flows live: the real CLI and SDK against the emulator, a flow walked end to end.

Each test reads what crossed the wire (the emulator's record, the client's trace) and what
the user sees (console and logs), never the flow's internals alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.emulator import Faults, emulator_thread
from runner.emulator.model import load_script

RESERVE = """\
name: reserve
instructions: You take table reservations.
flow:
  start: ask
  nodes:
    ask:
      instructions: Ask for the guest's name and party size.
      collect:
        guest: {type: string}
        size: {type: integer, enum: [2, 4, 6]}
        pin: {type: string, secret: true, required: false}
      transitions:
        - {to: large, when: size > 4}
        - {to: confirm}
    large:
      instructions: Parties over four need a call.
      end: true
      goodbye: {text: "Please call us, {{ guest }}."}
    confirm:
      instructions: Confirm a table for {{ size }} under {{ guest }}.
      context: CONTEXT
      collect:
        confirmed: {type: boolean}
      transitions:
        - {to: done, when: confirmed}
        - {to: ask}
    done:
      end: true
      goodbye: {text: "Booked for {{ guest }}."}
"""


@pytest.fixture
def delayed_emulator() -> Iterator[Any]:
    """session.updated held 150 ms: a client that does not wait for it would run ahead."""
    faults = Faults(delay_ms=150, delay_types=("session.updated",))
    with emulator_thread(speed=0, faults=faults) as emu:
        yield emu


def _run(
    emu: Any,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    lines: list[str],
    *,
    context: str = "keep",
    script: str | None = None,
) -> tuple[Any, str, list[dict[str, Any]], Any]:
    (tmp / "p.yaml").write_text(RESERVE.replace("CONTEXT", context))
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emu.endpoint)
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "flows-key-0000000")
    args = ["run", str(tmp / "p.yaml"), "--text", "--logs", str(tmp / "logs")]
    args += ["--trace", str(tmp / "trace.jsonl")]
    if script is not None:
        (tmp / "model.yaml").write_text(script)
        emu.script = load_script(tmp / "model.yaml")
    result = CliRunner().invoke(cli, args, input="\n".join([*lines, "q"]) + "\n")
    shown = result.output + "".join(p.read_text() for p in sorted((tmp / "logs").iterdir()))
    trace = [json.loads(line) for line in (tmp / "trace.jsonl").read_text().splitlines()]
    (record,) = emu.sessions
    return result, shown, trace, record


def _index(trace: list[dict[str, Any]], direction: str, kind: str, contains: str = "") -> int:
    for i, entry in enumerate(trace):
        event = entry.get("event") or {}
        if (
            entry.get("dir") == direction
            and event.get("type") == kind
            and contains in json.dumps(event)
        ):
            return i
    raise AssertionError(f"no {direction} {kind} containing {contains!r} in the trace")


def test_transition_order_on_the_wire(
    delayed_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, shown, trace, record = _run(
        delayed_emulator, tmp_path, monkeypatch, ["guest=Ann size=2", "confirmed=true"]
    )
    assert result.exit_code == 0, result.output
    output = _index(trace, "out", "conversation.item.create", "function_call_output")
    update = _index(trace, "out", "session.update", "Confirm a table for 2 under Ann.")
    updated = next(
        i
        for i, e in enumerate(trace)
        if i > update and e.get("dir") == "in" and e["event"]["type"] == "session.updated"
    )
    resumed = next(
        i
        for i, e in enumerate(trace)
        if i > output and e.get("dir") == "out" and e["event"]["type"] == "response.create"
    )
    # the call is answered, then the node's session goes out and is confirmed, then the turn
    assert output < update < updated < resumed
    updates = [e["session"] for e in record.received if e["type"] == "session.update"]
    assert [("record_confirm" in json.dumps(u)) for u in updates] == [False, True, False]
    confirm = updates[1]
    # whole, never partial: the profile's instructions, the node's, and the generated tool
    assert confirm["instructions"].startswith("You take table reservations.\n\n")
    assert [t["name"] for t in confirm["tools"]] == ["record_confirm"]
    assert "flow path: ask -> confirm -> done (guest=Ann, size=2, pin=null, confirmed=true)" in (
        shown
    )
    assert "assistant: Booked for Ann." in shown


def test_invalid_values_keep_the_node(
    emulator_in_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, shown, _, record = _run(
        emulator_in_thread,
        tmp_path,
        monkeypatch,
        ["guest=Ann size=3", "guest=Ann size=six", "guest=Ann size=6"],
    )
    assert result.exit_code == 0, result.output
    outs = [
        json.loads(e["item"]["output"])
        for e in record.received
        if e["type"] == "conversation.item.create"
        and e["item"].get("type") == "function_call_output"
    ]
    assert [o.get("error", {}).get("type") for o in outs] == [
        "invalid_arguments",
        "invalid_arguments",
        None,
    ]
    assert "size: 3 is not one of [2, 4, 6]" in outs[0]["error"]["message"]
    assert outs[2]["next_step"] == "large"
    # the refused calls changed nothing: one session.update for ask, one for large
    assert sum(e["type"] == "session.update" for e in record.received) == 2
    assert "flow path: ask -> large" in shown
    assert "assistant: Please call us, Ann." in shown


SECRET_SCRIPT = """\
turns:
  - match: here
    tools:
      - name: record_ask
        arguments: {guest: Bo, size: 2, pin: "HUNTER-4242"}
"""


def test_secret_values_never_reach_logs_or_trace(
    emulator_in_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, shown, trace, record = _run(
        emulator_in_thread, tmp_path, monkeypatch, ["here it is"], script=SECRET_SCRIPT
    )
    assert result.exit_code == 0, result.output
    sent = json.dumps(record.sent)
    assert "HUNTER-4242" in sent  # it did cross the wire from the model...
    assert "HUNTER-4242" not in shown  # ...and is masked on screen and in the logs
    assert "HUNTER-4242" not in json.dumps(trace)
    assert '"pin": "***"' in shown
    assert "pin=***" in shown


def test_context_reset_and_summary(
    emulator_in_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _, _, record = _run(
        emulator_in_thread, tmp_path, monkeypatch, ["guest=Cy size=2"], context="summary"
    )
    assert result.exit_code == 0, result.output
    created = [
        e["item"]["id"]
        for e in record.sent
        if e["type"] == "conversation.item.created" and e["item"].get("role") != "system"
    ]
    deleted = [e["item_id"] for e in record.received if e["type"] == "conversation.item.delete"]
    # every item the conversation had before entering `confirm` is deleted, then summarised
    assert deleted and deleted == created[: len(deleted)]
    errors = [e for e in record.sent if e["type"] == "error"]
    assert errors == []
    (summary,) = [
        e["item"]
        for e in record.received
        if e["type"] == "conversation.item.create" and e["item"].get("role") == "system"
    ]
    text = summary["content"][0]["text"]
    assert "steps: ask" in text and "guest=Cy" in text and "size=2" in text


HANDOFF = """\
name: handoff
instructions: Triage the call.
tool_choice: required
flow:
  start: triage
  nodes:
    triage:
      collect: {topic: {type: string}, pin: {type: string, secret: true, required: false}}
      transitions: [{to: expert}]
    expert:
      instructions: "The caller asks about {{ topic }}."
      greeting: {text: "Hi, I am the specialist."}
      agent: {name: it-specialist, project: helpdesk}
"""


def test_an_agent_node_hands_the_conversation_to_the_agent(
    emulator_in_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p.yaml").write_text(HANDOFF)
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emulator_in_thread.endpoint)
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "flows-key-0000000")
    args = ["run", str(tmp_path / "p.yaml"), "--text", "--logs", str(tmp_path / "logs")]
    result = CliRunner().invoke(cli, args, input="topic=vpn pin=778899\nhello agent\nq\n")
    assert result.exit_code == 0, result.output
    first, second = emulator_in_thread.sessions
    assert "agent-name" not in first.query
    assert (second.query["agent-name"], second.query["agent-project-name"]) == (
        "it-specialist",
        "helpdesk",
    )
    events = [e for e in second.received if e["type"] != "input_audio_buffer.append"]
    update, summary, greet = events[0], events[1], events[2]
    # the agent brings its own instructions and tools: the profile's stay behind
    assert update["type"] == "session.update"
    assert "instructions" not in update["session"] and "tools" not in update["session"]
    assert "tool_choice" not in update["session"]  # required, with no tools, is refused
    text = summary["item"]["content"][0]["text"]
    assert summary["item"]["role"] == "system"
    assert "steps: triage" in text and "topic=vpn" in text and "pin=(secret)" in text
    assert text.endswith("The caller asks about vpn.")
    assert "778899" not in json.dumps(second.received)
    assert greet["type"] == "response.create"
    assert "Hi, I am the specialist." in json.dumps(greet)
    assert "flow: handing the conversation to agent it-specialist" in result.output
    assert "assistant: Hi, I am the specialist." in result.output
    # the next turn goes to the agent's session, not the first one
    said = [e for e in second.received if e["type"] == "conversation.item.create"]
    assert any("hello agent" in json.dumps(e) for e in said)
