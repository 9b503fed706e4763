"""Lines written by one thread, in batches, from a bounded queue: the logging caller (the event
loop) only appends; a write or a flush on a slow stream never stalls it.

A line costs its caller a deque append under an uncontended lock. The thread is woken only
when no wake is pending (one ``Event.set`` per batch, not per line: a wake is a futex and a
GIL hand-off each way); once woken it lingers :data:`LINGER_S` to gather the burst, then
writes everything queued with one ``write`` per stream and one ``flush`` each.

Producers write through a :class:`Lane`: a share of a writer with its own bound (lines not yet
written, those being written included), its own drop count and the groups of streams that
failed. A subclass says what a drop or a failure means to it (:meth:`Lane.caught_up`,
:meth:`Lane.failed`); both are called on the writer thread, never under its lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from typing import IO

#: How long the woken thread waits for the rest of a burst before it writes (a close or a
#: drain cuts it short): the lines of one turn then cost one wake, one write and one flush.
LINGER_S = 0.05


class Sink:
    """One stream the writer appends lines to. ``group``: streams that fail together (a logs
    folder), stopped and reported once. ``droppable``: its lines give way first when the
    lane is past its ``droppable_at`` (a technical log's DEBUG lines)."""

    def __init__(self, stream: IO[str] | None, group: str = "", *, droppable: bool = False):
        self.stream = stream
        self.group = group
        self.droppable = droppable


class Lane:
    """A producer's share of a :class:`LineWriter`, bounded at ``bound`` lines not yet
    written; past it a line is dropped and counted, and :meth:`caught_up` is called once the
    writer comes round again."""

    #: A failed group is not written again (False: every batch tries again, e.g. stderr).
    stop_on_failure = True

    def __init__(self, writer: LineWriter, bound: int, *, droppable_at: int | None = None):
        self.writer = writer
        self.bound = bound
        self.droppable_at = bound if droppable_at is None else droppable_at
        self.pending = 0  # lines put and not yet written (the writer's lock guards these)
        self.accepted = 0
        self.written = 0
        self.dropped = 0
        self.reported = 0  # drops already passed to caught_up
        self.closed = False
        self.failed_groups: set[str] = set()

    # -- the producer's side ---------------------------------------------------------------

    def put(self, sink: Sink, line: str, *, force: bool = False) -> bool:
        """Queue ``line`` for ``sink``; False when it was dropped (counted) or not wanted (a
        closed lane, a failed group). Never waits beyond the writer's short lock. ``force``:
        past the bound (a last note at close)."""
        if sink.group in self.failed_groups or sink.stream is None or self.closed:
            return False
        return self.writer._put(self, sink, line, force)

    def close(self) -> None:
        """Take no more lines (what is queued is still written: :meth:`drain` for it)."""
        with self.writer._lock:
            self.closed = True

    def full(self) -> bool:
        """Whether the next line would be dropped."""
        return self.pending >= self.bound

    def drain(self, timeout: float) -> bool:
        """Wait until every line this lane queued so far is written (or given up on: a failed
        group); False after ``timeout``."""
        return self.writer._wait(self, timeout)

    # -- hooks, on the writer thread --------------------------------------------------------

    def caught_up(self, missed: int) -> list[tuple[Sink, str]]:
        """``missed`` more lines were dropped since the last call: lines to write about it
        (written after this batch, past the bound)."""
        return []

    def failed(self, sink: Sink, exc: Exception) -> None:
        """A write or flush of ``sink`` raised (once per group when :attr:`stop_on_failure`)."""

    def fail(self, sink: Sink, exc: Exception) -> None:
        """``sink`` could not be written: stop its group (said once, by :meth:`failed`)."""
        if self.stop_on_failure:
            if sink.group in self.failed_groups:
                return
            self.failed_groups.add(sink.group)
        with contextlib.suppress(Exception):  # the report failed too: nobody left to tell
            self.failed(sink, exc)


class LineWriter:
    """One thread writing every lane's lines; see the module's docstring."""

    def __init__(self, name: str, *, linger_s: float = LINGER_S) -> None:
        self.name = name
        self.linger_s = linger_s
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)  # a batch was written
        self._lines: deque[tuple[Lane, Sink, str]] = deque()
        self._behind: dict[Lane, None] = {}  # lanes that dropped since the last batch
        self._wake = threading.Event()  # set: a wake is pending (set at most once a batch)
        self._hurry = threading.Event()  # a drain or the close: no lingering
        self._closing = False
        self._accepted = 0
        self._handled = 0
        #: How many times a producer woke the thread (one per batch at most).
        self.wakes = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread = thread
        thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def closing(self) -> bool:
        return self._closing

    def _put(self, lane: Lane, sink: Sink, line: str, force: bool) -> bool:
        with self._lock:
            if self._closing or lane.closed:
                return False
            kept = force or not (
                lane.pending >= lane.bound or (sink.droppable and lane.pending >= lane.droppable_at)
            )
            if kept:
                self._lines.append((lane, sink, line))
                lane.pending += 1
                lane.accepted += 1
                self._accepted += 1
            else:
                lane.dropped += 1
                self._behind[lane] = None  # said (caught_up) when the writer comes round
            if not self._wake.is_set():  # one wake a batch: an Event already set is not set again
                self.wakes += 1
                self._wake.set()
            return kept

    def drain(self, timeout: float) -> bool:
        """Wait until every line queued so far (all lanes) is written; False after ``timeout``."""
        return self._wait(None, timeout)

    def _wait(self, lane: Lane | None, timeout: float) -> bool:
        with self._lock:
            if lane is None:
                target, done = self._accepted, lambda: self._handled >= target
            else:
                target, done = lane.accepted, lambda: lane.written >= target
            if done():
                return True
            if self._thread is None or not self._thread.is_alive():
                return False
            self._hurry.set()  # what is queued is wanted now
            return self._progress.wait_for(done, timeout)

    def finish(self, deadline_s: float) -> bool:
        """Write what is queued and end the thread; False if it did not end within
        ``deadline_s`` (a stream that stopped answering: the thread is left to it)."""
        with self._lock:
            self._closing = True
        self._hurry.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(deadline_s)
        return not thread.is_alive()

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait()  # until a line, a drop or the close (finish sets it)
            if not self._closing:
                self._hurry.wait(self.linger_s)  # gather the burst; a drain or close cuts it short
            with self._lock:
                self._wake.clear()
                if not self._closing:
                    self._hurry.clear()
                batch, self._lines = self._lines, deque()
                behind, self._behind = self._behind, {}
                closing = self._closing
                missed: list[tuple[Lane, int]] = []
                for lane in behind:
                    missed.append((lane, lane.dropped - lane.reported))
                    lane.reported = lane.dropped
            notes: list[tuple[Lane, Sink, str]] = []
            for lane, count in missed:
                with contextlib.suppress(Exception):  # a hook must not end the thread
                    notes += [(lane, sink, line) for sink, line in lane.caught_up(count)]
            counts = self._write(batch, notes)
            with self._lock:
                for lane, n in counts.items():
                    lane.pending -= n
                    lane.written += n
                self._handled += len(batch)
                self._progress.notify_all()
                if closing and not self._lines:
                    return

    def _write(
        self, batch: deque[tuple[Lane, Sink, str]], notes: list[tuple[Lane, Sink, str]]
    ) -> dict[Lane, int]:
        """One write per stream, then one flush each; returns the lines each lane had here."""
        counts: dict[Lane, int] = {}
        by_sink: dict[Sink, tuple[Lane, list[str]]] = {}
        for lane, sink, line in batch:
            counts[lane] = counts.get(lane, 0) + 1
            entry = by_sink.get(sink)
            if entry is None:
                by_sink[sink] = (lane, [line])
            else:
                entry[1].append(line)
        for lane, sink, line in notes:
            by_sink.setdefault(sink, (lane, []))[1].append(line)
        written: list[tuple[Lane, Sink]] = []
        for sink, (lane, lines) in by_sink.items():
            stream = sink.stream
            if stream is None or sink.group in lane.failed_groups:
                continue
            try:
                stream.write("\n".join(lines) + "\n")
            except Exception as exc:  # the thread must outlive any one stream
                lane.fail(sink, exc)
            else:
                written.append((lane, sink))
        for lane, sink in written:
            stream = sink.stream
            if stream is None or sink.group in lane.failed_groups:
                continue
            try:
                stream.flush()
            except Exception as exc:
                lane.fail(sink, exc)
        return counts
