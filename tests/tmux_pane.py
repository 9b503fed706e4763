"""The CLI in a real terminal: a tmux pane the test types into and reads the screen of.

Each pane has its own tmux server (a socket in the test's folder), so tests cannot see each
other's panes and nothing is left running. Waiting is on the pane's output: tmux copies what
the program writes into a FIFO (``pipe-pane``), and the test wakes when something arrives,
then reads the screen (``capture-pane``), up to a deadline.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

WIDTH, HEIGHT = 120, 30
EXITED = "[vlrun exited "


def need_tmux() -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")


class Pane:
    """``python -m runner ARGS`` in a detached 120x30 tmux pane."""

    def __init__(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> None:
        need_tmux()
        self.socket = cwd / "tmux.sock"
        self.env = dict(env)
        command = shlex.join([sys.executable, "-m", "runner", *args])
        # The pane stays after vlrun exits (cat holds it open), so the end can be read.
        shell = f'cd {shlex.quote(str(cwd))} && {command}; echo "{EXITED}$?]"; exec cat'
        self._tmux("new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), "-s", "t", shell)
        self.fifo = cwd / "pane.fifo"
        os.mkfifo(self.fifo)
        self._fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(self.fifo, os.O_WRONLY)  # a writer always: select never sees EOF
        self._tmux("pipe-pane", "-t", "t", f"cat > {shlex.quote(str(self.fifo))}")

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode != 0:
            raise AssertionError(f"tmux {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def type(self, text: str) -> None:
        """Type characters as they are (no key names)."""
        self._tmux("send-keys", "-t", "t", "-l", text)

    def key(self, *names: str) -> None:
        """Press keys by tmux name: Enter, C-u, ..."""
        self._tmux("send-keys", "-t", "t", *names)

    def screen(self) -> list[str]:
        """The visible screen, line by line, trailing blanks removed."""
        return [line.rstrip() for line in self._tmux("capture-pane", "-p", "-t", "t").split("\n")]

    def history(self) -> str:
        """Everything the pane shows and scrolled past, wrapped lines joined."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "t")

    def console(self) -> tuple[str, list[str]]:
        """The input line (where the cursor is) and the non-empty lines below it (the status
        line), read in one tmux command so no output lands in between."""
        out = self._tmux(
            "display-message", "-p", "-t", "t", "#{cursor_y}", ";", "capture-pane", "-p", "-t", "t"
        )
        y, _, screen = out.partition("\n")
        lines = [line.rstrip() for line in screen.split("\n")]
        row = int(y)
        return lines[row], [line for line in lines[row + 1 :] if line]

    def input_line(self) -> str:
        return self.console()[0]

    def status(self) -> str:
        """The status line (empty before the console has drawn), streamed reply excluded."""
        below = self.console()[1]
        return below[-1] if below else ""

    def wait(self, what: str, ok: Callable[[], bool], timeout: float = 30) -> None:
        """Wait until ``ok()`` holds, re-checking whenever the program writes (bounded)."""
        deadline = time.monotonic() + timeout
        while not ok():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"waited {timeout:g} s for {what}; screen:\n{self.history()}")
            if select.select([self._fd], [], [], left)[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._fd, 65536)  # only a wake-up: the screen is read by capture

    def wait_text(self, text: str, timeout: float = 30) -> None:
        self.wait(repr(text), lambda: text in self.history(), timeout)

    def exit_code(self, timeout: float = 30) -> int:
        self.wait("vlrun to exit", lambda: EXITED in self.history(), timeout)
        tail = self.history().split(EXITED, 1)[1]
        return int(tail.split("]", 1)[0])

    def close(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self._tmux("kill-server")
        os.close(self._fd)
        os.close(self._keep)
