"""Issue 26's requests for the live session: typed turns have a bound, and a console that
cannot be written ends the session with exit 3 (through the real CLI).
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.live.audio import AudioFormat, ClockPlayer
from runner.live.connect import resolve_target
from runner.live.inputs import start_line_reader
from runner.live.lines import MAX_QUEUED_TURNS, TypedTurns
from runner.live.session import LiveSession, SessionSettings
from runner.live.transcript import Transcript
from tests.helpers import ROOT


def _session(err: io.StringIO) -> LiveSession:
    target = resolve_target(
        None, endpoint="http://127.0.0.1:9", env={"AZURE_VOICELIVE_API_KEY": "k"}
    )
    return LiveSession(
        SessionSettings(endpoint="http://127.0.0.1:9", session_update={}, lines=False),
        target=target,
        credential=None,
        transcript=Transcript(out=io.StringIO(), err=err),
        player=ClockPlayer(AudioFormat(24000), realtime=False),
    )


async def test_a_flood_of_lines_keeps_the_newest_turns_and_says_so_once() -> None:
    # Before: one queued turn per line for as long as the call lasted (a DTMF flood).
    err = io.StringIO()
    session = _session(err)
    for i in range(MAX_QUEUED_TURNS + 44):
        session.feed_line(f"[DTMF] {i}")
    waiting = session.waiting_turns()
    assert len(waiting) == MAX_QUEUED_TURNS
    assert waiting[0] == "[DTMF] 44" and waiting[-1] == f"[DTMF] {MAX_QUEUED_TURNS + 43}"
    warnings = [line for line in err.getvalue().splitlines() if "typed turns are waiting" in line]
    assert warnings == [
        f"warning: more than {MAX_QUEUED_TURNS} typed turns are waiting for replies; "
        "the oldest waiting ones are dropped"
    ]


def test_the_turn_queue_keeps_the_end_of_input_after_the_turns() -> None:
    dropped: list[int] = []
    turns = TypedTurns(bound=2, on_first_drop=dropped.append)
    for text in ("a", "b", "c", "d"):
        turns.put(text)
    turns.end()
    turns.put("after the end")  # nothing is read after the end of input
    assert turns.waiting() == ("c", "d") and turns.dropped == 2 and dropped == [2]
    assert not turns.next_is_end()
    assert [turns.pop(), turns.pop()] == ["c", "d"]
    assert turns.next_is_end() and turns
    assert turns.pop() is None
    assert not turns  # the end was taken: nothing is left to do


class _Lines:
    """A stdin that counts how many lines were read from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read = 0
        self.lock = threading.Lock()

    def __iter__(self) -> Iterator[str]:
        for i in range(self.n):
            with self.lock:
                self.read += 1
            yield f"line {i}\n"


async def test_stdin_is_read_as_turns_are_sent_so_a_long_script_loses_no_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bound is on turns waiting to be sent; the stdin reader holds its line while the
    # queue is full and reads no further, so `vlrun run < long_script` sends every line.
    lines = 3 * MAX_QUEUED_TURNS
    stdin = _Lines(lines)
    monkeypatch.setattr(sys, "stdin", stdin)
    err = io.StringIO()
    session = _session(err)
    start_line_reader(asyncio.get_running_loop(), session.inputs.take_line)
    turn = session.turn
    assert await turn.until(lambda: len(session.waiting_turns()) == MAX_QUEUED_TURNS, 10)
    with stdin.lock:
        assert stdin.read <= MAX_QUEUED_TURNS + 1  # one line held; the rest still in the pipe
    sent = []
    while len(sent) < lines:
        assert await turn.until(lambda: bool(session.waiting_turns()), 10)
        sent.append(session.inputs.next_turn())
    assert await turn.until(lambda: session.inputs.typed.ended, 10)
    assert sent == [f"line {i}" for i in range(lines)]
    assert "typed turns are waiting" not in err.getvalue()  # nothing was dropped


def _cli(*args: str, cwd: Path, stdin: str, stdout: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        input=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VLRUN_DOTENV": "none",
            "VLRUN_TOOLS_ENTRY_POINTS": "0",
        },
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_conversation_printed_to_a_full_device_ends_with_exit_3(tmp_path: Path) -> None:
    # Before: "error: internal error in vlrun-turns: OSError: [Errno 28] ...", then the
    # session waited a minute for the turn that was never sent, and exited 0.
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "p.yaml").write_text("name: p\ninstructions: You help.\n")
    with open("/dev/full", "w") as full:
        result = _cli(
            "run", "p.yaml", "--text", "--emulator", "--logs", "-",
            cwd=tmp_path, stdin="hello\nq\n", stdout=full,
        )  # fmt: skip
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: cannot write to standard output: No space left on device"]
    assert "internal error" not in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
