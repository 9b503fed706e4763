"""SIGTERM ends a conversation like `q`: the reply under way is heard and logged whole, the
conversation log says the session ended, and the process exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def test_sigterm_finishes_the_reply_and_the_logs(
    emulator_in_thread: Any, tmp_path: Path, cli_env: Any
) -> None:
    env = {"AZURE_VOICELIVE_ENDPOINT": emulator_in_thread.endpoint, "AZURE_VOICELIVE_API_KEY": "k"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(ROOT / "profiles/casual-chat.yaml"), "--text"]
        + ["--logs", "logs"],
        cwd=tmp_path,
        env=cli_env(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("hello\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "you: hello\n"  # the turn is out: now the signal
    proc.send_signal(signal.SIGTERM)  # stdin stays open: only the signal can end it
    try:
        code = proc.wait(timeout=20)
        out, err = proc.stdout.read(), (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert code == 0, err
    assert "assistant: [emulator] You said: hello" in out
    (log,) = (tmp_path / "logs").glob("*_conversation.log")
    text = log.read_text()
    assert "You said: hello" in text
    assert "ended" in text.splitlines()[-1]
