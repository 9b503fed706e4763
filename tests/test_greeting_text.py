"""`greeting: {text: ...}`: fixed first words, sent as a pre-generated message and spoken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.cli import main

PROFILE = """\
name: helpline
instructions: You answer the help line.
vars:
  who: {default: Sam}
greeting:
  text: "Hello {{ who }}, this is the help line."
"""


def test_fixed_greeting_is_spoken_as_written(
    emulator_in_thread: Any, tmp_path: Path, cli_env: Any
) -> None:
    (tmp_path / "p.yaml").write_text(PROFILE)
    env = {
        "AZURE_VOICELIVE_ENDPOINT": emulator_in_thread.endpoint,
        "AZURE_VOICELIVE_API_KEY": "k",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "p.yaml", "--text", "--logs", "logs"],
        cwd=tmp_path,
        env=cli_env(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "assistant: Hello Sam, this is the help line.\n"
    proc.stdin.write("q\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    (session,) = emulator_in_thread.sessions
    creates = [e for e in session.received if e["type"] == "response.create"]
    message = creates[0]["response"]["pre_generated_assistant_message"]
    assert message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "Hello Sam, this is the help line."}]
    assert "additional_instructions" not in creates[0]
    (log,) = (tmp_path / "logs").glob("*_conversation.log")
    assert "Hello Sam, this is the help line." in log.read_text()


def test_text_and_instructions_together_are_refused_at_their_line(
    tmp_path: Path, capsys: Any
) -> None:
    (tmp_path / "p.yaml").write_text("name: g\ngreeting:\n  text: hi\n  instructions: Greet.\n")
    assert main(["check", str(tmp_path / "p.yaml")]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'p.yaml'}:3:3: error: a greeting has either `text`" in out
