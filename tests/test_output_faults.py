"""Output that cannot be written is a user error: exit 3 and one line naming the file and the
option that moves it, never exit 70 and a crash log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASUAL = str(ROOT / "profiles" / "casual-chat.yaml")


def _run(args: list[str], cwd: Path, cli_env: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", CASUAL, "--text", *args],
        cwd=cwd,
        env=cli_env(),
        input="q\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "where", "option"),
    [
        (["--logs", "/proc/vlrun-nope"], "/proc/vlrun-nope", "--logs"),
        (["--logs", "-", "--trace", "/proc/vlrun-nope/t.jsonl"], "/proc/vlrun-nope", "--trace"),
        (["--logs", "-", "--trace", "/dev/full"], "/dev/full", "--trace"),
        (["--logs", "FILE"], "FILE", "--logs"),
    ],
)
def test_unwritable_logs_and_traces_exit_3_with_one_line(
    args: list[str], where: str, option: str, tmp_path: Path, cli_env: Any
) -> None:
    if "FILE" in args:
        (tmp_path / "FILE").write_text("a file where a folder should be\n")
    proc = _run(args, tmp_path, cli_env)
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and where in errors[0], proc.stderr
    assert f"choose another {option}" in proc.stderr
    assert "unexpectedly" not in proc.stderr and "Traceback" not in proc.stderr
