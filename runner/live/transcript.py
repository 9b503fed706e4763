"""What the user sees and keeps: the live console, the conversation log, the technical log and
the JSONL event trace. Every line written anywhere passes through :mod:`runner.redact`.

Console layout: the conversation goes to stdout (``you: …`` / ``assistant: …`` / tool lines),
status lines (banner, notices, warnings, errors, latency) go to stderr, so ``--quiet`` and
pipes keep the conversation clean.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from runner.live.verbose import VerboseEvents
from runner.redact import redact, redact_obj, safe

log = logging.getLogger("vlrun.live.transcript")

# The one logger tree: everything vlrun logs is under "vlrun" (the session "vlrun.live.*",
# tools "vlrun.tools"); the SDK logs under "azure". A technical log takes both.
LOG_LEVELS = (("vlrun", logging.DEBUG), ("azure", logging.INFO))
# The embedded emulator still logs under its module names (its warnings only, levels untouched).
_ALSO_LOGGED = ("runner.emulator",)
_levels_lock = threading.Lock()
_saved_levels: dict[str, int] = {}
_configured = 0  # technical logs open in this process
# The transcript whose session the running code belongs to: tasks and tool threads inherit it,
# so with several sessions in one process each technical log gets its own session's records.
_current: contextvars.ContextVar[Transcript | None] = contextvars.ContextVar(
    "vlrun_session_transcript", default=None
)


def _configure_levels() -> None:
    """Set the tree's levels for the first technical log; remember what they were."""
    global _configured
    with _levels_lock:
        if _configured == 0:
            for name, level in LOG_LEVELS:
                lg = logging.getLogger(name)
                _saved_levels[name] = lg.level
                if lg.level == logging.NOTSET or lg.level > level:
                    lg.setLevel(level)
        _configured += 1


def _restore_levels() -> None:
    """The last technical log closed: the levels are what they were before the first."""
    global _configured
    with _levels_lock:
        _configured -= 1
        if _configured == 0:
            for name, level in _saved_levels.items():
                logging.getLogger(name).setLevel(level)
            _saved_levels.clear()


@contextlib.contextmanager
def session_logging(transcript: Transcript) -> Iterator[None]:
    """Within it (and in every task and tool thread started within), records are the session's."""
    token = _current.set(transcript)
    try:
        yield
    finally:
        _current.reset(token)


class _SessionFilter(logging.Filter):
    """Keep a record for this technical log unless it belongs to another session."""

    def __init__(self, owner: Transcript) -> None:
        super().__init__()
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current.get()
        return current is None or current is self.owner


VERBOSITY_QUIET, VERBOSITY_NORMAL, VERBOSITY_VERBOSE = 0, 1, 2
_AUDIO_KEYS = ("delta", "audio")  # base64 payloads replaced by their size in the trace


@dataclass
class Turn:
    """One completed turn of the conversation (kept exactly once per item id)."""

    role: str  # "user" | "assistant" | "tool"
    text: str
    item_id: str
    at: float = field(default_factory=time.time)
    interrupted: bool = False
    interim: bool = False  # a bridging reply said while the model or a tool was slow
    # word timestamps of a spoken reply: {"text", "offset_ms", "duration_ms"} per word
    words: list[dict[str, Any]] = field(default_factory=list)

    def marks(self) -> str:
        """What is shown after the text, on the console and in the conversation log."""
        return (" [interim]" if self.interim else "") + (
            " [interrupted]" if self.interrupted else ""
        )


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record))


class _TechnicalHandler(logging.FileHandler):
    """A technical log that, when its file cannot be written (disk full, quota), stops and
    tells its owner once, instead of printing '--- Logging error ---' for every record."""

    def __init__(self, path: Path, owner: Transcript) -> None:
        super().__init__(path, encoding="utf-8")
        self.owner = owner
        self.broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self.broken = True
        self.owner.output_failed(self.baseFilename, exc)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class Transcript:
    """Console output plus the conversation log, technical log and optional trace."""

    def __init__(
        self,
        *,
        verbosity: int = VERBOSITY_NORMAL,
        logs_dir: Path | None = None,
        trace_path: Path | None = None,
        name: str = "session",
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        meter: bool | None = None,
    ) -> None:
        self.verbosity = verbosity
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.turns: list[Turn] = []
        self.tool_failures = 0  # tool results that were errors (the summary reports them)
        self.listeners: list[
            Callable[[Turn], None]
        ] = []  # called for each new turn (tests, scenarios)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._streaming: str | None = None  # item id whose assistant text is being streamed
        self._streamed_text = ""
        self._meter_shown = False
        self._deferred: list[str] = []  # status lines held back while a reply streams
        self._words: dict[str, list[dict[str, Any]]] = {}  # timings that came before the text
        self._interim_ids: set[str] = set()  # replies known to be interim before they complete
        # --verbose: event counts per turn (runner.live.verbose), written as status lines
        self._verbose = (
            VerboseEvents(lambda line: self._status(f"   {line}\n"))
            if verbosity >= VERBOSITY_VERBOSE
            else None
        )
        self.on_meter: Callable[[float], None] | None = None  # the console's status line
        is_tty = getattr(self.out, "isatty", lambda: False)()
        self.meter_enabled = (is_tty and verbosity >= VERBOSITY_NORMAL) if meter is None else meter
        self.conversation_path: Path | None = None
        self.technical_path: Path | None = None
        self._conv: IO[str] | None = None
        self._handler: logging.Handler | None = None
        self._trace: IO[str] | None = None
        self.failed_outputs: list[str] = []  # files that stopped being written mid-run
        self.first_failure: OSError | None = None
        if logs_dir is not None:
            logs_dir.mkdir(parents=True, exist_ok=True)
            base = f"{_stamp()}_{_safe(name)}"
            self.conversation_path = logs_dir / f"{base}_conversation.log"
            self.technical_path = logs_dir / f"{base}_technical.log"
            self._conv = self.conversation_path.open("a", encoding="utf-8")
            self._handler = _TechnicalHandler(self.technical_path, self)
            self._handler.setFormatter(
                _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            self._handler.setLevel(logging.DEBUG)
            self._handler.addFilter(_SessionFilter(self))
            _configure_levels()
            for name_ in (*(n for n, _ in LOG_LEVELS), *_ALSO_LOGGED):
                logging.getLogger(name_).addHandler(self._handler)
        if trace_path is not None:
            trace_path.parent.mkdir(parents=True, exist_ok=True)
            self._trace = trace_path.open("a", encoding="utf-8")

    # -- console ---------------------------------------------------------------------------

    def _write(self, stream: IO[str], text: str) -> None:
        with self._lock:
            if self._meter_shown:
                stream.write("\r\x1b[K")
                self._meter_shown = False
            stream.write(safe(text))
            stream.flush()

    def _end_stream(self) -> None:
        if self._streaming is not None:
            self._write(self.out, "\n")
            self._streaming = None
        if self._deferred:
            lines, self._deferred = self._deferred, []
            for line in lines:
                self._write(self.err, line)

    def banner(self, text: str) -> None:
        """A status line shown even with --quiet (e.g. "offline: local Voice Live emulator")."""
        self._end_stream()
        self._write(self.err, text + "\n")
        self.conv_note(text)

    def _status(self, line: str) -> None:
        """A status line on stderr; held back while a reply streams so it is not split."""
        if self.verbosity < VERBOSITY_NORMAL:
            return
        if self._streaming is not None:
            self._deferred.append(line)
        else:
            self._write(self.err, line)

    def notice(self, text: str) -> None:
        log.info("%s", text)
        self._status(f"-- {text}\n")

    def warning(self, text: str) -> None:
        log.warning("%s", text)
        self._status(f"warning: {text}\n")

    def error(self, text: str) -> None:
        """Errors reach the user whatever the verbosity."""
        log.error("%s", text)
        self._end_stream()
        self._write(self.err, f"error: {text}\n")
        self.conv_note(f"error: {text}")

    def event(self, kind: str, summary: str = "", payload: dict[str, Any] | None = None) -> None:
        """Every server event (and runner action) by type: --verbose counts them per turn."""
        if self._verbose is not None:
            self._verbose.event(kind, payload)

    def meter(self, dbfs: float) -> None:
        """Show the mic level: in the console's status line, else a redrawn line (terminals)."""
        if self.on_meter is not None:
            self.on_meter(dbfs)
            return
        if not self.meter_enabled or self._streaming is not None:
            return
        bars = max(0, min(30, int((dbfs + 60) / 2)))
        with self._lock:
            self.out.write(f"\r\x1b[Kmic {'#' * bars:<30} {dbfs:5.0f} dB")
            self.out.flush()
            self._meter_shown = True

    def latency(self, ms: float, what: str = "end of speech -> first audio") -> None:
        log.info("turn latency %.0f ms (%s)", ms, what)
        self._status(f"   ({what}: {ms:.0f} ms)\n")

    # -- conversation ----------------------------------------------------------------------

    def user(self, item_id: str, text: str) -> None:
        """A completed user turn (transcribed speech or typed text)."""
        if not self._remember(Turn("user", text, item_id)):
            return
        self._end_stream()
        self._write(self.out, f"you: {text}\n")

    def assistant_delta(self, item_id: str, delta: str) -> None:
        """Streamed assistant text: printed as it arrives, logged once complete."""
        if item_id in self._seen:
            return
        if self._streaming != item_id:
            self._end_stream()
            self._write(self.out, "assistant: ")
            self._streaming = item_id
            self._streamed_text = ""
        self._streamed_text += delta
        self._write(self.out, delta)

    def assistant_done(self, item_id: str, text: str, *, interrupted: bool = False) -> None:
        """The assistant's turn is complete (or was cut off by barge-in)."""
        text = text or (self._streamed_text if self._streaming == item_id else "")
        interim = item_id in self._interim_ids
        self._interim_ids.discard(item_id)
        turn = Turn("assistant", text, item_id, interrupted=interrupted, interim=interim)
        turn.words = self._words.pop(item_id, [])
        if not self._remember(turn):
            return
        marks = turn.marks()
        if self._streaming == item_id:
            if marks:
                self._write(self.out, marks)
            self._end_stream()
        elif text:
            self._end_stream()
            self._write(self.out, f"assistant: {text}{marks}\n")

    def interim(self, item_id: str) -> None:
        """Reply ``item_id`` is an interim response: marked when it completes, or, when it is
        already shown (a later item of its response gave it away), noted in the log after it."""
        turn = self._turn(item_id)
        if turn is None:
            self._interim_ids.add(item_id)
        elif not turn.interim:
            turn.interim = True
            self.conv_note(f"(the assistant line above was an interim response: {turn.text})")

    def _turn(self, item_id: str) -> Turn | None:
        """The completed turn of this item, if it is complete (the newest match)."""
        return next((t for t in reversed(self.turns) if t.item_id == item_id), None)

    def word_timestamps(self, item_id: str, words: list[dict[str, Any]]) -> None:
        """The word timings of a spoken reply: kept with its turn and in the trace."""
        turn = self._turn(item_id)
        if turn is not None:
            turn.words = list(words)
        else:
            self._words[item_id] = list(words)  # the reply's text is not complete yet
        self.trace_note({"type": "word_timestamps", "item_id": item_id, "words": words})

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._end_stream()
        log.info("tool call %s %s(%s)", call_id, name, arguments)
        if self.verbosity >= VERBOSITY_NORMAL:
            self._write(self.out, f"  [tool] {name}({arguments})\n")
        self.conv_note(f"tool call {name}({arguments}) [{call_id}]")

    def tool_result(self, call_id: str, name: str, ok: bool, text: str, duration_s: float) -> None:
        self.tool_failures += 0 if ok else 1
        self._remember(Turn("tool", f"{name} -> {text}", f"out:{call_id}"), log_line=False)
        log.info("tool result %s %s ok=%s %.3fs %s", call_id, name, ok, duration_s, text)
        if self.verbosity >= VERBOSITY_NORMAL:
            status = "->" if ok else "failed:"
            self._write(self.out, f"  [tool] {name} {status} {_clip(text)} ({duration_s:.2f} s)\n")
        self.conv_note(f"tool result {name} {'ok' if ok else 'error'} ({duration_s:.2f} s): {text}")

    def _remember(self, turn: Turn, *, log_line: bool = True) -> bool:
        with self._lock:
            if turn.item_id in self._seen:
                return False
            self._seen.add(turn.item_id)
            self.turns.append(turn)
        for listener in self.listeners:
            listener(turn)
        if log_line and self._conv is not None:
            self._conv_write(f"{turn.role}: {turn.text}{turn.marks()}")
        return True

    def conv_note(self, text: str) -> None:
        """A line in the conversation log only (session id, config summary, tool calls)."""
        if self._conv is not None:
            self._conv_write(text)

    def _conv_write(self, text: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        self._append("_conv", safe(f"[{stamp}] {text}"))

    def _append(self, attr: str, line: str) -> None:
        """One line to the conversation log (``_conv``) or the trace (``_trace``), flushed, so
        a crash or kill loses nothing; a file that fails is closed and reported once."""
        with self._lock:
            stream: IO[str] | None = getattr(self, attr)
            if stream is None:
                return
            try:
                stream.write(line + "\n")
                stream.flush()
            except OSError as exc:
                setattr(self, attr, None)
                failed: OSError | None = exc
            else:
                failed = None
        if failed is not None:
            self.output_failed(getattr(stream, "name", attr), failed)
            self._close_file(stream)

    def _close_file(self, stream: IO[str]) -> None:
        """Close a log or trace; a close that fails is a failed output like a write that did
        (reported once per file, so a file that already failed is closed quietly)."""
        try:
            stream.close()
        except OSError as exc:
            self.output_failed(getattr(stream, "name", "a log file"), exc)

    def output_failed(self, path: str, exc: OSError) -> None:
        """A log or trace file stopped being writable: say so once per file and go on, because
        the conversation matters more than its record. The run still ends as a user error
        (``first_failure``, exit 3), since what was asked for was not written."""
        with self._lock:
            if path in self.failed_outputs:
                return
            self.failed_outputs.append(path)
            if self.first_failure is None:
                self.first_failure = OSError(exc.errno, exc.strerror or str(exc), path)
        reason = exc.strerror or type(exc).__name__
        self._write(
            self.err,
            f"warning: {path} can no longer be written ({reason}); "
            "the conversation goes on without it\n",
        )

    # -- trace -----------------------------------------------------------------------------

    @property
    def tracing(self) -> bool:
        """Whether --trace is on (callers skip building trace records otherwise)."""
        return self._trace is not None

    def trace(self, direction: str, event: dict[str, Any]) -> None:
        """Append one event to the JSONL trace; base64 audio is replaced by its length."""
        if self._trace is None:
            return
        slim = dict(event)
        for key in _AUDIO_KEYS:
            value = slim.get(key)
            if isinstance(value, (str, bytes)) and slim.get("type", "").endswith(
                ("audio.delta", "buffer.append")
            ):
                slim[key] = f"<{len(value)} chars audio>"
        line = json.dumps(
            {"t": round(time.time(), 3), "dir": direction, "event": redact_obj(slim)}, default=str
        )
        self._append("_trace", redact(line))

    def trace_note(self, record: dict[str, Any]) -> None:
        """A record vlrun made (not an event on the wire): ``"dir": "note"`` in the trace."""
        if self._trace is None:
            return
        line = json.dumps(
            {"t": round(time.time(), 3), "dir": "note", "event": redact_obj(record)}, default=str
        )
        self._append("_trace", redact(line))

    # -- end -------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and close every file; safe to call twice."""
        if self._verbose is not None:
            self._verbose.close()
        self._end_stream()
        with self._lock:
            conv, trace, self._conv, self._trace = self._conv, self._trace, None, None
        for stream in (conv, trace):
            if stream is not None:
                self._close_file(stream)
        if self._handler is not None:
            for name_ in (*(n for n, _ in LOG_LEVELS), *_ALSO_LOGGED):
                logging.getLogger(name_).removeHandler(self._handler)
            self._handler.close()
            self._handler = None
            _restore_levels()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] or "session"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
