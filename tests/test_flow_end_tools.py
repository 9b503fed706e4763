"""A flow node's session.update is whole: an end node says `tools: []` (and a tool_choice it
can honour), so no earlier node's tool stays callable on a service that merges updates.
Real CLI runs (issue 28, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _node(profile: str, node: str) -> dict:  # type: ignore[type-arg]
    proc = run_cli("compile", profile, "--node", node)
    assert proc.returncode == 0, proc.stderr
    session: dict = json.loads(proc.stdout)["session"]  # type: ignore[type-arg]
    return session


def test_the_booked_end_node_takes_every_tool_away() -> None:
    book = _node("profiles/reservation.yaml", "book")
    assert [t["name"] for t in book["tools"]] == ["book_table", "record_book"]
    booked = _node("profiles/reservation.yaml", "booked")
    assert booked["tools"] == []  # absent, a merging service would keep book's two tools
    # whole: the end node names every field the node before it named
    assert set(book) <= set(booked)


def test_every_node_of_the_shipped_flows_names_the_same_fields() -> None:
    for profile, nodes in (
        ("profiles/reservation.yaml", ("collect", "confirm", "book", "booked", "large_party")),
        ("profiles/helpdesk.yaml", ("triage", "verify", "check", "solve", "escalate", "locked")),
    ):
        keys = {node: set(_node(profile, node)) for node in nodes}
        first = keys[nodes[0]]
        assert all(k == first for k in keys.values()), (profile, keys)


def test_tool_choice_follows_the_node_s_tools(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: choice\n"
        "tool_choice: required\n"
        "flow:\n  start: ask\n  nodes:\n"
        "    ask:\n      instructions: Ask for the number.\n"
        "      collect: {n: {type: integer}}\n"
        "      transitions: [{to: done}]\n"
        "    done: {end: true}\n"
    )
    ask = _node(str(tmp_path / "p.yaml"), "ask")
    assert ask["tool_choice"] == "required" and [t["name"] for t in ask["tools"]] == ["record_ask"]
    done = _node(str(tmp_path / "p.yaml"), "done")
    # `required` with nothing to call is refused; left out, a merging service keeps it
    assert done["tools"] == [] and done["tool_choice"] == "none"
    # the node's own instructions are taken away too, not left to linger
    assert ask["instructions"] == "Ask for the number." and done["instructions"] == ""


def test_the_shipped_reservation_scenario_sends_no_partial_update() -> None:
    proc = run_cli("test", "tests/scenarios/reservation.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout + proc.stderr
    assert "left out fields" not in proc.stderr, proc.stderr
    assert "fidelity:" not in proc.stdout + proc.stderr
