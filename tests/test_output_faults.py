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


def _file_size_limit(limit: int) -> Any:
    """A disk that fills: writes past ``limit`` bytes fail with EFBIG (Python ignores SIGXFSZ)."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_disk_that_fills_mid_run_stops_the_logs_not_the_conversation(
    tmp_path: Path, cli_env: Any, emulator_in_thread: Any
) -> None:
    turns = [f"turn number {i}" for i in range(40)]
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, "-m", "runner", CASUAL, "--text", "--logs", str(logs)],
        cwd=tmp_path,
        env=cli_env(
            {
                "PYTHONDONTWRITEBYTECODE": "1",
                "AZURE_VOICELIVE_ENDPOINT": emulator_in_thread.endpoint,
                "AZURE_VOICELIVE_API_KEY": "k",
            }
        ),
        input="\n".join(turns) + "\nq\n",
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_file_size_limit(6000),
    )
    # every reply still reached the user, after the logs filled up
    assert all(f"You said: {t}\n" in proc.stdout for t in turns), proc.stdout[-500:]
    warnings = [line for line in proc.stderr.splitlines() if "can no longer be written" in line]
    assert 1 <= len(warnings) <= 2, proc.stderr  # once per file, not once per record
    assert "Logging error" not in proc.stderr and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 3 and len(errors) == 1, proc.stderr
    conversation = next(logs.glob("*_conversation.log")).read_text()
    assert "turn number 0" in conversation  # what was written before the disk filled is kept
    assert all(p.stat().st_size <= 6000 for p in logs.iterdir())
