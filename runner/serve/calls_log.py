"""Structured logs of a serve worker: one JSON object a line, the call id on every line.

The call id lives in a context variable set by the task that handles a call, so everything
that call's tasks log (the session, its tools, the edge) carries it without being passed it.
Every message goes through :func:`runner.redact.redact` before it is written.
"""

from __future__ import annotations

import atexit
import contextvars
import io
import json
import logging
import re
import threading
import time
from typing import IO, Any

from runner.linewriter import LINGER_S, Lane, LineWriter, Sink
from runner.redact import mask_phone_numbers, redact

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("vlrun_call_id", default="")
log = logging.getLogger("vlrun.serve.call")

#: The longest message a line carries; the rest is cut and counted (a 1 MB header value must
#: not become a 1 MB log line).
MAX_MESSAGE_CHARS = 16_384
#: The library loggers whose records join the worker's JSON log (their errors as one line).
LIBRARY_LOGGERS = ("aiohttp",)

# Characters that would let a logged value forge or disguise a line: C0 controls (ESC, CR, LF,
# TAB...), DEL and C1 controls, the Unicode line and paragraph separators, and the bidi
# embeddings, overrides and isolates. Each is written as visible text (``\u001b``), so the
# JSON stays one line and a viewer that decodes it shows the escape instead of obeying it.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_reveal = False  # the process-wide phone-number switch (see reveal_phone_numbers)


def reveal_phone_numbers(on: bool) -> None:
    """Whether the worker's JSON log shows phone numbers whole (a serve-file setting); by
    default each is masked to its last four digits."""
    global _reveal
    _reveal = bool(on)


def phone_numbers_revealed() -> bool:
    """The switch :func:`reveal_phone_numbers` set."""
    return _reveal


def neutral(text: str) -> str:
    """``text`` with every control, separator and bidi character written as ``\\uXXXX``."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def _bounded(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]}... ({len(text) - MAX_MESSAGE_CHARS} more characters)"


def _exception_summary(exc_info: Any) -> str:
    """``BadHttpMessage: 400, message: Invalid character in Content-Length:``: the
    exception's type and its first two lines (aiohttp's "400, message:" says little alone),
    bounded; the raw bytes it quotes below them stay out."""
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if not isinstance(exc, BaseException):
        return ""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2])[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "call_id", "msg"}`` (+ ``exc`` for tracebacks): always one
    JSON object on one line, secrets masked, controls shown, phone numbers masked.

    A traceback (``exc``) is kept only for vlrun's own loggers; a library's (aiohttp's
    "Error handling request" for a malformed request) becomes its exception's one-line
    summary at the end of ``msg``: a stranger's bytes do not get a traceback in the log."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a caller's bad %-format must not lose the line
            message = f"{record.msg!r} (its arguments did not format)"
        ours = record.name == "vlrun" or record.name.startswith("vlrun.")
        exc_text = ""
        if record.exc_info and record.exc_info != (None, None, None):
            if ours:
                exc_text = self.formatException(record.exc_info)
            elif summary := _exception_summary(record.exc_info):
                message = f"{message}: {summary}"
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": neutral(record.name),
            "call_id": neutral(str(getattr(record, "call_id", None) or call_id_var.get())),
            "msg": self._text(_bounded(message)),
        }
        if exc_text:
            entry["exc"] = self._text(exc_text)
        return json.dumps(entry, ensure_ascii=False)

    @staticmethod
    def _text(text: str) -> str:
        text = redact(text)
        if not _reveal:
            text = mask_phone_numbers(text)
        return neutral(text)


def json_handler(stream: IO[str], level: int = logging.INFO) -> logging.Handler:
    """A handler that writes JSON lines to ``stream`` (the worker's stderr), at ``level``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level)
    return handler


#: Lines of the worker's JSON log not yet written by its writer thread. Past this bound (a
#: stderr pipe that stopped draining) lines are dropped and counted, and the count is logged
#: when the writer catches up: a slow log reader must not stall every call on the event loop.
LOG_QUEUE_LINES = 10_000
#: How long the process's exit waits for queued lines to be written.
EXIT_DEADLINE_S = 2.0


class JsonLogHandler(logging.Handler):
    """The worker's log handler: a record is formatted where it is logged (its call id is a
    context variable of the caller's task) and its line is written by a thread, in batches
    (:mod:`runner.linewriter`: a burst of a turn's lines costs one wake and one write)."""

    def __init__(
        self,
        stream: IO[str],
        level: int,
        *,
        bound: int = LOG_QUEUE_LINES,
        linger_s: float = LINGER_S,
    ) -> None:
        super().__init__(level)
        self.setFormatter(JsonFormatter())
        self.writer = LineWriter("vlrun-json-log", linger_s=linger_s)
        self._sink = Sink(stream, "stderr")
        self._lane = _LogLane(self.writer, bound, self._sink)
        self.writer.start()

    @property
    def dropped(self) -> int:
        """Lines dropped because the queue was full (the log's reader fell behind)."""
        return self._lane.dropped

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lane.put(self._sink, line)

    def drain(self, timeout: float) -> bool:
        """Wait until every line queued so far is written; False after ``timeout``."""
        return self._lane.drain(timeout)

    def close(self) -> None:
        """Write what is queued (for at most EXIT_DEADLINE_S) and end the writer thread."""
        self.writer.finish(EXIT_DEADLINE_S)
        super().close()


class _LogLane(Lane):
    # stderr is tried again on every batch: a reader that went away has nobody to tell, and
    # one that comes back (a full disk freed) gets the log again
    stop_on_failure = False

    def __init__(self, writer: LineWriter, bound: int, sink: Sink) -> None:
        super().__init__(writer, bound)
        self.sink = sink

    def caught_up(self, missed: int) -> list[tuple[Sink, str]]:
        return [(self.sink, _note(f"{missed} log lines were dropped: the log was not read"))]


def _note(text: str) -> str:
    record = logging.LogRecord("vlrun.serve.log", logging.WARNING, __file__, 0, text, (), None)
    return JsonFormatter().format(record)


_install_lock = threading.Lock()


def install_json_logging(stream: IO[str], level: int = logging.INFO) -> JsonLogHandler:
    """Set up a serve worker's log, once per process: JSON lines on ``stream`` for vlrun's
    records at ``level`` and up and for the libraries' warnings and errors (one line each),
    written in batches by a thread from a bounded queue (:data:`LOG_QUEUE_LINES`).

    The level is the handler's. The ``vlrun`` logger is opened down to ``level`` only if it
    would drop those records (this is the worker's own start-up, the one place that may):
    a conversation's technical log never changes it. Calling it again returns the handler
    already installed."""
    with _install_lock:
        root = logging.getLogger("vlrun")
        for existing in root.handlers:
            if isinstance(existing, JsonLogHandler):
                return existing
        handler = JsonLogHandler(stream, level)
        root.addHandler(handler)
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).addHandler(handler)  # their own levels (WARNING) hold
        if root.getEffectiveLevel() > level:
            root.setLevel(level)
        atexit.register(handler.close)  # the last lines are written before the process ends
        return handler


class CallConsole(io.TextIOBase):
    """What a session would print on a console, as log lines of its call instead.

    A server has no console per call; the per-call conversation log and trace are written as
    for `vlrun PROFILE`, and these lines join the worker's structured log.
    """

    def __init__(self, call_id: str, level: int = logging.INFO) -> None:
        super().__init__()
        self.call_id = call_id
        self.level = level
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = self._partial + text
        *lines, self._partial = data.split("\n")
        if len(self._partial) > 4096:  # a line that never ends still gets logged, bounded
            lines.append(self._partial)
            self._partial = ""
        for line in lines:
            if line.strip():
                log.log(self.level, "%s", line.rstrip(), extra={"call_id": self.call_id})
        return len(text)
