"""Issue 29 item 6, the live side: a profile bound to a hosted agent with ``invoke_input`` sends
it on every ``response.create`` the runner sends (not only the greeting), and the service's
``response.invocation.delta`` (a hosted agent's non-speech event) is shown, logged and traced.
The real CLI, SDK and emulator (which answers invoke_input with its own invocation delta)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROFILE = """\
name: hosted
connection:
  api_version: 2026-07-15
  agent: {name: hosted-helper, project: demo, invoke_input: {locale: en-US, channel: voice}}
greeting: true
"""


def test_every_response_create_carries_invoke_input_and_deltas_are_shown(
    run_cli: Any, emulator_in_thread: Any, tmp_path: Path
) -> None:
    (tmp_path / "hosted.yaml").write_text(PROFILE, encoding="utf-8")
    result = run_cli(
        [
            "run",
            "hosted.yaml",
            "--endpoint",
            emulator_in_thread.endpoint,
            "--text",
            "--logs",
            "logs",
            "--trace",
            "trace.jsonl",
        ],
        input="hello\nand again\n",
    )
    assert result.returncode == 0, result.stderr
    record = emulator_in_thread.sessions[-1]
    creates = [e for e in record.received if e["type"] == "response.create"]
    assert len(creates) == 3  # the greeting and two typed turns
    for create in creates:
        assert create["response"]["invoke_input"] == {"locale": "en-US", "channel": "voice"}
    deltas = [e for e in record.sent if e["type"] == "response.invocation.delta"]
    assert len(deltas) == 3
    shown = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("-- hosted agent: emulator.invocation: [emulator] no hosted agent")
    ]
    assert len(shown) == 3, result.stderr
    (conv,) = (tmp_path / "logs").glob("*_conversation.log")
    assert "hosted agent event emulator.invocation: [emulator]" in conv.read_text()
    traced = [
        json.loads(line)["event"] for line in (tmp_path / "trace.jsonl").read_text().splitlines()
    ]
    assert sum(1 for e in traced if e.get("type") == "response.invocation.delta") == 3
    assert result.stdout.count("assistant: [emulator]") == 3


def test_a_profile_without_a_hosted_agent_sends_plain_response_creates(
    run_cli: Any, emulator_in_thread: Any, profiles_dir: Path
) -> None:
    result = run_cli(
        [
            "run",
            str(profiles_dir / "casual-chat.yaml"),
            "--endpoint",
            emulator_in_thread.endpoint,
            "--text",
            "--logs",
            "-",
        ],
        input="hello\n",
    )
    assert result.returncode == 0, result.stderr
    creates = [
        e for e in emulator_in_thread.sessions[-1].received if e["type"] == "response.create"
    ]
    assert creates and all("invoke_input" not in e.get("response", {}) for e in creates)
    assert "hosted agent" not in result.stderr


def test_invocation_summary() -> None:
    from runner.live.session import _invocation_summary

    assert _invocation_summary({"type": "tool.progress", "message": "looking up\nflights"}) == (
        "looking up\\nflights"
    )
    assert _invocation_summary({"type": "x", "step": 2, "id": "a"}) == "fields id, step"
    assert _invocation_summary({"type": "x"}) == ""
    assert len(_invocation_summary({"text": "w" * 500})) == 160
