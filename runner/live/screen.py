"""The terminal console: an input line that output never breaks, and a status line under it.

Used when stdin and stdout are both a terminal (:func:`terminal_console`); otherwise the
session reads plain lines from stdin and writes plain lines (CI, pipes, tests).

prompt_toolkit draws the input line and, below it, the status line: the mic meter, the turn's
phase from :class:`~runner.live.state.TurnState`, push-to-talk's state, the question waiting
for an answer, and the reply being streamed. Everything the transcript writes goes through
``patch_stdout`` above the input line, and only in whole lines: a reply is printed once, when
its line is complete, and is shown growing in the status line until then. Typed lines go to
:meth:`LiveSession.feed_line <runner.live.session.LiveSession.feed_line>`, the talk key to
:meth:`~runner.live.session.LiveSession.talk`; the console touches nothing else of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from typing import IO, Any

from runner.live.inputs import key_label
from runner.live.state import Phase

METER_WIDTH = 20


def terminal_console() -> bool:
    """Whether the console can draw: both ends a terminal (not a pipe, file or CliRunner)."""
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(sys.stdin and sys.stdin.isatty() and sys.stdout and sys.stdout.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def check_key(key: str) -> str | None:
    """None when prompt_toolkit knows the key name, else why not."""
    from prompt_toolkit.key_binding import KeyBindings

    if len(key) == 1 or key == "space":
        return "a key that types a character would toggle talking in every typed line"
    try:
        KeyBindings().add(key)(lambda event: None)
    except (ValueError, KeyError) as exc:
        return str(exc) or f"unknown key {key!r}"
    return None


class _Lines:
    """A text stream for the transcript: whole lines go above the input line; the line not
    finished yet (a reply being streamed) is kept for the status line until its newline."""

    def __init__(self, target: IO[str], changed: Any) -> None:
        self._target = target
        self._changed = changed
        self._lock = threading.Lock()
        self.partial = ""

    def write(self, text: str) -> int:
        with self._lock:
            done, newline, self.partial = (self.partial + text.replace("\r", "")).rpartition("\n")
            if newline:
                self._target.write(done + "\n")
        self._changed()
        return len(text)

    def flush(self) -> None:
        self._target.flush()  # only whole lines were handed over: nothing is split

    def isatty(self) -> bool:
        return True

    def close_line(self) -> None:
        """The end: a line still unfinished is written as it is."""
        with self._lock:
            partial, self.partial = self.partial, ""
        if partial:
            self._target.write(partial + "\n")


class TerminalConsole:
    """Runs a :class:`~runner.live.session.LiveSession` under an input line and a status line."""

    def __init__(self, live: Any, *, mode: str, talk_key: str = "enter") -> None:
        self.live = live
        self.transcript = live.transcript
        self.mode = mode  # "mic" | "wav" | "text"
        self.talk_key = talk_key
        self.level: float | None = None  # latest mic level (dBFS)
        self._app: Any = None
        self._out: _Lines | None = None
        self._err: _Lines | None = None

    # ------------------------------------------------------------------ running

    async def run(self) -> int:
        """The session's run, with the console drawn for as long as it lasts."""
        from prompt_toolkit.patch_stdout import patch_stdout

        with patch_stdout():
            saved = self.transcript.out, self.transcript.err
            self._out = _Lines(sys.stdout, self._redraw)
            self._err = _Lines(sys.stderr, self._redraw)
            self.transcript.out, self.transcript.err = self._out, self._err
            self.transcript.on_meter = self._meter
            self.live.talk_notices = False  # the status line says it
            self.live.talk_key = self.talk_key
            prompt = asyncio.create_task(self._prompt_loop(), name="vlrun-console")
            try:
                return int(await self.live.run())
            finally:
                if self._app is not None:
                    self._app.erase_when_done = True  # no empty input line left behind
                prompt.cancel()
                await asyncio.wait({prompt})
                if not prompt.cancelled() and prompt.exception() is not None:
                    self.live.report("the console", prompt.exception())
                for stream in (self._out, self._err):
                    stream.close_line()
                self.transcript.out, self.transcript.err = saved
                self.transcript.on_meter = None

    async def _prompt_loop(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.filters import Condition
        from prompt_toolkit.key_binding import KeyBindings

        bindings = KeyBindings()
        # Ctrl+C is a key here, not a signal: it ends now, as SIGINT does without the console
        bindings.add("c-c")(lambda event: self.live.stop())
        if self.live.push_to_talk:
            # Enter talks only on an empty input line with no question open: a typed line
            # is still a turn (or an answer, or q); other keys always talk.
            talks = (
                Condition(
                    lambda: not session.default_buffer.text.strip() and not self.live.turn.questions
                )
                if self.talk_key == "enter"
                else Condition(lambda: True)
            )
            bindings.add(self.talk_key, filter=talks)(lambda event: self.live.talk())
        session: PromptSession[str] = PromptSession(
            "> ",
            bottom_toolbar=self._toolbar,
            refresh_interval=0.2,  # the meter moves without a key press
            key_bindings=bindings,
        )
        self._app = session.app
        while True:
            try:
                line = await session.prompt_async()
            except EOFError:  # Ctrl+D: like the end of piped input
                self.live.feed_line(None)
                return
            except KeyboardInterrupt:  # should the binding above not be reached
                self.live.stop()
                return
            self.live.feed_line(line)

    def _redraw(self) -> None:
        app = self._app
        if app is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                app.invalidate()

    def _meter(self, dbfs: float) -> None:
        self.level = dbfs

    # ------------------------------------------------------------------ the status line

    def _toolbar(self) -> str:
        return "\n".join(self.status_lines())

    def status_lines(self) -> list[str]:
        """What the status line shows now: the streamed reply (if any), then the state."""
        lines = []
        streaming = (self._out.partial if self._out is not None else "").strip()
        if streaming:
            lines.append(_tail(streaming, self._columns() - 1))  # its newest words, one line
        parts = []
        if self.mode == "mic" and self.level is not None:
            parts.append(meter_text(self.level))
        parts.append(self._state())
        parts.append("q + Enter ends")
        lines.append(" | ".join(parts))
        return lines

    def _columns(self) -> int:
        try:
            return int(self._app.output.get_size().columns)
        except (AttributeError, OSError, ValueError):  # not drawn yet, or no terminal size
            return 80

    def _state(self) -> str:
        turn = self.live.turn
        if turn.questions:
            return "answer the question above: y or n, then Enter"
        key = key_label(self.talk_key)
        if self.live.push_to_talk and turn.phase not in (Phase.RECONNECTING, Phase.CLOSING):
            state = self.live.talk_state
            if state in ("starting", "on"):
                return f"talking… ({key} to send)"
            if state == "ending":
                return "sending…"
            if turn.phase in (Phase.RESPONDING, Phase.RUNNING_TOOLS):
                return f"{turn.phase.value}; press {key} to talk (interrupts)"
            return f"press {key} to talk"
        if self.mode == "text" and turn.phase is Phase.LISTENING:
            return "type a message"
        metrics = getattr(self.live, "metrics", None)
        if turn.phase is Phase.RECONNECTING and not getattr(metrics, "reconnects", 1):
            return "connecting…"  # the first connection: nothing was lost
        return str(turn.phase.value)


def meter_text(dbfs: float) -> str:
    """``mic ▮▮▮▮▮▮······ -32 dB``: -60 dB and below is empty, 0 dB full."""
    filled = max(0, min(METER_WIDTH, round((dbfs + 60) / 60 * METER_WIDTH)))
    return f"mic {'▮' * filled}{'·' * (METER_WIDTH - filled)} {dbfs:4.0f} dB"


def _tail(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
