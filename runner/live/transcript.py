"""What the user sees and keeps: the live console, the conversation log, the technical log and
the JSONL event trace. Every line written anywhere passes through :mod:`runner.redact`.

Console layout: the conversation goes to stdout (``you: …`` / ``assistant: …`` / tool lines),
status lines (banner, notices, warnings, errors, latency) go to stderr, so ``--quiet`` and
pipes keep the conversation clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import json
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from runner.errors import OUTPUT_ERRNOS, OutputError
from runner.linewriter import LINGER_S, Lane, LineWriter, Sink
from runner.live.verbose import VerboseEvents
from runner.redact import clean_line, redact, redact_obj, safe

log = logging.getLogger("vlrun.live.transcript")

# The one logger tree: everything vlrun logs is under "vlrun" (the session "vlrun.live.*",
# tools "vlrun.tools"); the SDK logs under "azure"; the embedded emulator under its module
# names (runner.emulator). A technical log takes all three. Its level is its handler's (DEBUG):
# what reaches it is what the process's loggers let through, and a transcript never changes
# those (a phone worker's JSON log printed DEBUG lines for every call while one was open).
# The program decides, once, at start: see :func:`process_log_levels`.
LOGGERS = ("vlrun", "azure", "runner.emulator")
LOG_LEVELS = (("vlrun", logging.DEBUG), ("azure", logging.INFO))  # process_log_levels' default

#: Lines (conversation log, technical log and trace of one conversation together) not yet
#: written by the writer thread. When the disk falls this far behind, further lines are dropped
#: and counted, and the count is said once and written at the end: the event loop never waits.
WRITE_QUEUE_LINES = 4096
_DROPPABLE_LINES = WRITE_QUEUE_LINES // 2  # past this, technical lines wait their turn no more
#: How long :meth:`Transcript.close` waits for the writer to finish what is queued: a disk
#: that stopped answering must not hang the end of a conversation.
CLOSE_DEADLINE_S = 10.0
WRITTEN_WAIT_S = 2.0  # how long a reader of a running conversation's files waits for the writer
#: How long the writer thread, once woken, gathers lines before it writes them (a close cuts it
#: short): a turn's lines of every open conversation cost one wake, a write and a flush a file.
WRITER_LINGER_S = LINGER_S

# The transcript whose session the running code belongs to: tasks and tool threads inherit it,
# so with several sessions in one process each technical log gets its own session's records
# (the one handler, :class:`_TechnicalRouter`, looks it up: O(1) a record, whatever is open).
_current: contextvars.ContextVar[Transcript | None] = contextvars.ContextVar(
    "vlrun_session_transcript", default=None
)


def process_log_levels(levels: tuple[tuple[str, int], ...] = LOG_LEVELS) -> None:
    """Let the technical logs' records through: the ``vlrun`` tree at DEBUG, the SDK at INFO.

    For a program's start (the ``vlrun`` command), called once: handlers then choose what
    they keep by their own level. A logger already set at least as low is left alone."""
    for name, level in levels:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)


@contextlib.contextmanager
def session_logging(transcript: Transcript) -> Iterator[None]:
    """Within it (and in every task and tool thread started within), records are the session's."""
    token = _current.set(transcript)
    try:
        yield
    finally:
        _current.reset(token)


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


class _Sink(Sink):
    """One file of a transcript, appended to by the writer thread."""

    def __init__(self, path: Path, group: str, *, droppable: bool = False) -> None:
        # group: files that fail together (the logs folder), reported once. droppable: the
        # technical log's DEBUG lines give way first: they may not take the headroom the
        # conversation log and the trace need (a flood of them must never cost a turn's line).
        super().__init__(path.open("a", encoding="utf-8"), group, droppable=droppable)
        self.path = path

    def probe(self) -> None:
        """Fail now, with the OSError, if a byte cannot be written here (a full disk): the
        run then ends before it starts instead of talking on without its logs. Only for a
        regular file, whose size is put back (a FIFO or a device is left untouched)."""
        stream = self.stream
        if stream is None:
            return
        fd = stream.fileno()
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return
        stream.write("\n")
        stream.flush()
        os.ftruncate(fd, info.st_size)

    def shut(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()


class _Files(Lane):
    """A transcript's files, written by the process's one writer thread (shared by every
    open conversation) from a bounded share of its queue: the event loop only queues lines (a
    write or a flush on a slow or full disk never stalls it). Each batch is flushed, so a
    crash loses at most what was still queued."""

    def __init__(self, owner: Transcript, writer: LineWriter, sinks: list[_Sink]) -> None:
        super().__init__(writer, WRITE_QUEUE_LINES, droppable_at=_DROPPABLE_LINES)
        self.owner = owner
        self.sinks = sinks
        self._said_lock = threading.Lock()
        self._said_behind = False

    # put() queues a line; when the share is full, drops it and counts it. Nothing there waits
    # or takes the transcript's lock: the caller may hold it (a serve call's console line is
    # logged, and lands here, while the transcript writes it).

    def caught_up(self, missed: int) -> list[tuple[Sink, str]]:  # on the writer thread
        self.say_behind()
        return []  # the count goes at the end of each file (finish)

    def say_behind(self) -> None:
        """Tell the owner, once, that lines were dropped (from the writer thread or at close)."""
        with self._said_lock:
            if not self.dropped or self._said_behind:
                return
            self._said_behind = True
        with contextlib.suppress(OSError, ValueError):
            self.owner.writer_behind()

    def failed(self, sink: Sink, exc: Exception) -> None:
        """Writing ``sink``'s group (the logs folder, or the trace) stopped: say so once."""
        if not isinstance(exc, OSError):  # anything else a stream raised, as an I/O error
            exc = OSError(errno.EIO, f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(OSError, ValueError):  # the console itself may be gone
            self.owner.output_failed(sink.group, exc)

    def finish(self, deadline_s: float) -> bool:
        """Write what is queued, then close the files; False if that was not done within
        ``deadline_s`` (the files are then left to the thread: closing them would block too)."""
        if self.dropped:
            note = f"({self.dropped} lines were not written: the disk fell behind)"
            for sink in self.sinks:
                self.put(sink, note, force=True)
        self.close()
        if not self.drain(deadline_s):
            return False
        for sink in self.sinks:
            try:
                sink.shut()
            except OSError as exc:  # the last bytes could not be flushed
                self.fail(sink, exc)
        return True


class _TechnicalRouter(logging.Handler):
    """Every technical log's one handler, on :data:`LOGGERS` while any is open: a record goes
    to the log of the session it was made in (:data:`_current`), formatted (and redacted)
    where it is logged. One made outside any session goes to the conversation's log when only
    one is open (a `vlrun PROFILE` run: its embedded emulator, its start and end); with several
    (a phone worker's calls) it belongs to none and is not written: no call's log carries
    another's or the worker's records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)  # the handler's level; loggers untouched
        self.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.sole: Transcript | None = None

    def handle(self, record: logging.LogRecord) -> bool:
        # no handler lock: formatting is the caller's, queueing is the writer's short lock
        transcript = _current.get() or self.sole
        if transcript is None:
            return False
        files, sink = transcript._writer, transcript._technical
        if files is None or sink is None or not self.filter(record):
            return False
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return False
        files.put(sink, line)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


_router = _TechnicalRouter()
_shared_lock = threading.Lock()
_shared_writer: LineWriter | None = None  # the transcripts' one writer thread
_open: list[Transcript] = []  # transcripts with files, each on _shared_writer


def _join(transcript: Transcript) -> LineWriter:
    """The writer thread for ``transcript``'s files (started by the first one open), and its
    technical log routed to."""
    global _shared_writer
    with _shared_lock:
        writer = _shared_writer
        if writer is None:
            writer = _shared_writer = LineWriter(
                "vlrun-transcript-writer", linger_s=WRITER_LINGER_S
            )
            writer.start()
        _open.append(transcript)
        _route()
        return writer


def _leave(transcript: Transcript, deadline_s: float) -> None:
    """``transcript``'s files are closed: the last one out ends the writer thread."""
    global _shared_writer
    with _shared_lock:
        if transcript in _open:
            _open.remove(transcript)
        _route()
        writer = _shared_writer
        if _open or writer is None:
            return
        _shared_writer = None
    writer.finish(deadline_s)  # nothing is left for it, unless a stuck file kept it busy


def _route() -> None:
    """The router on :data:`LOGGERS` while a technical log is open (not after: a logger with
    no handler keeps Python's last resort for its warnings)."""
    technical = [t for t in _open if t.technical_path is not None]
    _router.sole = technical[0] if len(technical) == 1 else None
    for name in LOGGERS:
        if technical:
            logging.getLogger(name).addHandler(_router)  # once: addHandler checks
        else:
            logging.getLogger(name).removeHandler(_router)


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
        self._conv: _Sink | None = None
        self._technical: _Sink | None = None
        self._trace: _Sink | None = None
        self._writer: _Files | None = None
        self.failed_outputs: list[str] = []  # log folders or traces that stopped being written
        self.console_failure: OSError | None = None  # the console's stream could not be written
        self.first_failure: OSError | None = None
        if logs_dir is None and trace_path is None:
            return
        sinks: list[_Sink] = []
        technical: _Sink | None = None
        try:
            if logs_dir is not None:
                logs_dir.mkdir(parents=True, exist_ok=True)
                base = f"{_stamp()}_{_safe(name)}"
                self.conversation_path = logs_dir / f"{base}_conversation.log"
                self.technical_path = logs_dir / f"{base}_technical.log"
                self._conv = _Sink(self.conversation_path, str(logs_dir))
                sinks.append(self._conv)
                technical = _Sink(self.technical_path, str(logs_dir), droppable=True)
                sinks.append(technical)
                _probe(self._conv, logs_dir)
            if trace_path is not None:
                trace_path.parent.mkdir(parents=True, exist_ok=True)
                self._trace = _Sink(trace_path, str(trace_path))
                sinks.append(self._trace)
                _probe(self._trace, trace_path)
        except OSError:
            self.technical_path = None
            for sink in sinks:
                with contextlib.suppress(OSError):
                    sink.shut()  # its probe's byte may still be buffered: closing fails too
                if sink.group != str(trace_path):  # the logs' own new files: none left empty
                    with contextlib.suppress(OSError):
                        if sink.path.stat().st_size == 0:
                            sink.path.unlink()
            raise
        self._writer = _Files(self, _join(self), sinks)
        self._technical = technical  # records are routed here from now on (_TechnicalRouter)

    # -- console ---------------------------------------------------------------------------

    def _write(self, stream: IO[str], text: str) -> None:
        with self._lock:
            try:
                if self._meter_shown:
                    stream.write("\r\x1b[K")
                    self._meter_shown = False
                stream.write(safe(text))
                stream.flush()
            except OSError as exc:
                if exc.errno not in CONSOLE_ERRNOS:
                    raise
                # Where the console goes is full or failing: the session ends with an
                # OutputError (exit 3), and what the stream still holds goes nowhere, so the
                # interpreter's last flush does not fail again with a traceback.
                where = _silence(stream)
                if self.console_failure is None:
                    self.console_failure = OSError(exc.errno, exc.strerror or str(exc), where)
                raise ConsoleFailed(self.console_failure) from None

    @property
    def streaming(self) -> str | None:
        """The assistant item whose text is being shown as it streams (None: none)."""
        return self._streaming

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
        # one line per entry: a newline in a turn or in a caller's value is shown, not obeyed
        self._append("_conv", clean_line(redact(f"[{stamp}] {text}")))

    def _append(self, attr: str, line: str) -> None:
        """One line to the conversation log (``_conv``) or the trace (``_trace``), handed to
        the writer thread; a file that fails is reported once (by the writer)."""
        sink: _Sink | None = getattr(self, attr)
        writer = self._writer
        if sink is not None and writer is not None:
            writer.put(sink, line)

    def writer_behind(self) -> None:
        """The writer's queue was full: the disk did not keep up. Said once; lines were
        dropped (and counted in the files at the end) rather than stalling the conversation."""
        self._write(
            self.err,
            f"warning: the logs fell {WRITE_QUEUE_LINES} lines behind the conversation (a "
            "slow disk); lines were dropped, their count is at the end of each file\n",
        )

    def output_failed(self, path: str, exc: OSError) -> None:
        """A logs folder or a trace stopped being writable: say so once and go on, because
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

    async def written(self, timeout: float = WRITTEN_WAIT_S) -> bool:
        """Wait (off the event loop, at most ``timeout``) until every line queued so far is in
        its file: what reads a conversation's files while it goes on (a download) reads them
        whole, not up to the writer's last batch. False if the writer did not get there."""
        writer = self._writer
        if writer is None:
            return True
        return await asyncio.to_thread(writer.drain, timeout)

    def close(self) -> None:
        """Write out and close every file; safe to call twice. Waits for the writer thread
        (at most :data:`CLOSE_DEADLINE_S`): once it returns, the logs and trace are complete."""
        self._begin_close()
        self._finish_close()

    async def aclose(self) -> None:
        """:meth:`close` for a coroutine: the wait for the writer runs off the event loop."""
        self._begin_close()
        if self._writer is not None:
            await asyncio.to_thread(self._finish_close)

    def _begin_close(self) -> None:
        if self._verbose is not None:
            self._verbose.close()
        self._end_stream()
        self._technical = None  # its records are no longer routed here

    def _finish_close(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
            self._conv = self._trace = None
        if writer is None:
            return
        end = time.monotonic() + CLOSE_DEADLINE_S
        finished = writer.finish(CLOSE_DEADLINE_S)
        _leave(self, max(0.0, end - time.monotonic()))
        writer.say_behind()
        if not finished:
            where = writer.sinks[0].group if writer.sinks else "the logs"
            timeout = OSError(errno.ETIMEDOUT, f"not written within {CLOSE_DEADLINE_S:g} s")
            self.output_failed(where, timeout)


def _probe(sink: _Sink, where: Path) -> None:
    """:meth:`_Sink.probe`, its OSError naming ``where`` (the logs folder, or the trace)."""
    try:
        sink.probe()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(where)) from None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] or "session"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: A console write failed because of where the output goes (the errnos of runner.errors).
CONSOLE_ERRNOS = OUTPUT_ERRNOS


class ConsoleFailed(OutputError):
    """The console's stream cannot be written: the session ends (exit 3)."""

    def __init__(self, failure: OSError) -> None:
        super().__init__(f"cannot write to {failure.filename}: {failure.strerror}")
        self.failure = failure


def _silence(stream: IO[str]) -> str:
    """Point a failed standard stream at the null device; returns what the stream was."""
    names = {1: "standard output", 2: "standard error"}
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return str(getattr(stream, "name", "") or "the console")
    where = names.get(fd) or str(getattr(stream, "name", "") or "the console")
    if stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    return where
