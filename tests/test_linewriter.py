"""The log writer threads (runner/linewriter.py): a burst of lines costs one wake, one write and
one flush, not one wake per line; every line queued is written, in order, across drains; the
bound drops and counts, and says so once the writer catches up; a close never hangs on a stream
that stopped; and every conversation's technical log is fed by one handler and one thread."""

from __future__ import annotations

import io
import json
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.linewriter import Lane, LineWriter, Sink
from runner.live import transcript as tx
from runner.serve import calls_log

WAIT_S = 30.0  # a deadline for waits that end at once when the code is right
FOREVER_S = 3600.0  # a linger no test outlives: only a drain or a close ends it


class Recorder(io.StringIO):
    """A stream that counts its writes and flushes; ``gate``: its writes wait for it."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.gate = gate
        self.entered = threading.Event()  # a write has begun (and may be waiting on the gate)
        self.writes = 0
        self.flushes = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S), "the test never released the stream"
        with self._lock:
            self.writes += 1
            return super().write(text)

    def flush(self) -> None:
        self.flushes += 1

    def lines(self) -> list[str]:
        with self._lock:
            return self.getvalue().splitlines()


class Noted(Lane):
    """A lane that writes its drop count, as the worker's JSON log does."""

    def __init__(self, writer: LineWriter, bound: int, sink: Sink, **kw: int) -> None:
        super().__init__(writer, bound, **kw)
        self.sink = sink
        self.failures: list[tuple[str, Exception]] = []

    def caught_up(self, missed: int) -> list[tuple[Sink, str]]:
        return [(self.sink, f"({missed} dropped)")]

    def failed(self, sink: Sink, exc: Exception) -> None:
        self.failures.append((sink.group, exc))


@pytest.fixture
def writers() -> Iterator[list[LineWriter]]:
    """Writers a test starts; each is ended (its thread joined) after it."""
    started: list[LineWriter] = []
    yield started
    for writer in started:
        writer.finish(WAIT_S)


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The transcripts' process-wide state as in a new process: a test elsewhere may leave a
    transcript open (a session's harness owns it), which would keep its writer and routing."""
    monkeypatch.setattr(tx, "_open", [])
    monkeypatch.setattr(tx, "_shared_writer", None)
    tx._route()
    yield
    writer = tx._shared_writer
    if writer is not None:
        writer.finish(WAIT_S)
    monkeypatch.undo()
    tx._route()  # the router as the transcripts still open need it


def _writer(writers: list[LineWriter], linger_s: float = FOREVER_S) -> LineWriter:
    writer = LineWriter("test-line-writer", linger_s=linger_s)
    writer.start()
    writers.append(writer)
    return writer


def _json_handler(
    stream: io.StringIO,
    logger_name: str,
    *,
    bound: int = calls_log.LOG_QUEUE_LINES,
    linger_s: float = calls_log.LINGER_S,
) -> tuple[calls_log.JsonLogHandler, logging.Logger]:
    handler = calls_log.JsonLogHandler(stream, logging.INFO, bound=bound, linger_s=linger_s)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the test's own lines only
    return handler, logger


def _unhook(handler: calls_log.JsonLogHandler, logger: logging.Logger) -> None:
    logger.removeHandler(handler)
    logger.propagate = True
    handler.close()


# --------------------------------------------------------- (1) a burst: one wake, one write


def test_a_burst_of_a_thousand_records_wakes_the_writer_once_and_writes_once() -> None:
    # The old writer (a queue.Queue read by a QueueListener) woke its thread for every record.
    stream = Recorder()
    handler, logger = _json_handler(stream, "vlrun.test.burst", linger_s=FOREVER_S)
    try:
        for i in range(1000):
            logger.info("turn line %d", i)
        assert handler.drain(WAIT_S)  # the drain cuts the linger short
        wakes, writes, flushes = handler.writer.wakes, stream.writes, stream.flushes
    finally:
        _unhook(handler, logger)
    assert wakes == 1 and writes == 1 and flushes == 1
    msgs = [json.loads(line)["msg"] for line in stream.lines()]
    assert msgs == [f"turn line {i}" for i in range(1000)]


def test_a_burst_while_the_writer_is_busy_costs_at_most_two_wakes_at_the_default_linger() -> None:
    # Whatever the timing: one wake for the first line, one while the thread is writing it.
    gate = threading.Event()
    stream = Recorder(gate)
    handler, logger = _json_handler(stream, "vlrun.test.busy")
    try:
        logger.info("first")
        assert stream.entered.wait(WAIT_S)  # the thread is in its write
        for i in range(1000):
            logger.info("turn line %d", i)
        gate.set()
        assert handler.drain(WAIT_S)
        wakes = handler.writer.wakes
    finally:
        gate.set()
        _unhook(handler, logger)
    assert wakes <= 2
    assert len(stream.lines()) == 1001


def test_the_technical_logs_of_a_burst_wake_their_writer_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_process: None
) -> None:
    monkeypatch.setattr(tx, "WRITER_LINGER_S", FOREVER_S)
    transcript = tx.Transcript(
        logs_dir=tmp_path / "logs", out=io.StringIO(), err=io.StringIO(), meter=False
    )
    log = logging.getLogger("vlrun.live.session")
    saved = logging.getLogger("vlrun").level
    logging.getLogger("vlrun").setLevel(logging.INFO)
    try:
        with tx.session_logging(transcript):
            for i in range(1000):
                log.info("turn line %d", i)
                transcript.conv_note(f"note {i}")
        files = transcript._writer
        assert files is not None
        assert files.drain(WAIT_S)
        wakes = files.writer.wakes
    finally:
        logging.getLogger("vlrun").setLevel(saved)
        transcript.close()
    assert wakes == 1
    assert transcript.technical_path is not None and transcript.conversation_path is not None
    assert transcript.technical_path.read_text().count(": turn line ") == 1000
    assert len(transcript.conversation_path.read_text().splitlines()) == 1000


# ---------------------------------------------------------- (2) order and completeness


def test_every_line_is_written_in_order_across_drains(writers: list[LineWriter]) -> None:
    writer = _writer(writers)
    stream = Recorder()
    sink = Sink(stream, "s")
    lane = Lane(writer, 10_000)
    for i in range(300):
        assert lane.put(sink, f"a {i}")
    assert lane.drain(WAIT_S)
    assert stream.lines() == [f"a {i}" for i in range(300)]  # all of it, once drain returns
    for i in range(300):
        assert lane.put(sink, f"b {i}")
    assert writer.drain(WAIT_S)
    assert lane.drain(WAIT_S)  # nothing new: at once
    for i in range(300):
        lane.put(sink, f"c {i}")
    assert writer.finish(WAIT_S)  # the close writes what is queued
    expected = [f"{p} {i}" for p in "abc" for i in range(300)]
    assert stream.lines() == expected
    assert not lane.put(sink, "after the close")
    assert lane.dropped == 0 and lane.pending == 0


# ------------------------------------------------------------------------- (3) the bound


def test_past_the_bound_lines_are_dropped_counted_and_said_after_the_release() -> None:
    gate = threading.Event()
    stream = Recorder(gate)
    handler, logger = _json_handler(stream, "vlrun.test.bound", bound=10)
    try:
        for i in range(25):  # the first is in the blocked write: it still counts to the bound
            logger.info("line %d", i)
        dropped_while_blocked = handler.dropped
        assert stream.lines() == []  # nothing could be written yet
        gate.set()
        assert handler.drain(WAIT_S)
    finally:
        gate.set()
        _unhook(handler, logger)
    assert dropped_while_blocked == 15
    entries = [json.loads(line) for line in stream.lines()]
    assert [e["msg"] for e in entries] == [f"line {i}" for i in range(10)] + [
        "15 log lines were dropped: the log was not read"
    ]
    assert entries[-1]["logger"] == "vlrun.serve.log" and entries[-1]["level"] == "warning"


def test_droppable_lines_give_way_first_and_the_others_keep_their_headroom(
    writers: list[LineWriter],
) -> None:
    writer = _writer(writers)
    gate = threading.Event()
    stream = Recorder(gate)
    turns, debug = Sink(stream, "logs"), Sink(stream, "logs", droppable=True)
    lane = Noted(writer, 8, turns, droppable_at=4)
    results = [lane.put(debug, f"debug {i}") for i in range(6)]
    results += [lane.put(turns, f"turn {i}") for i in range(6)]
    assert results == [True] * 4 + [False] * 2 + [True] * 4 + [False] * 2
    assert lane.dropped == 4
    gate.set()
    assert lane.drain(WAIT_S)
    got = stream.lines()
    assert got[-1] == "(4 dropped)" and got.count("(4 dropped)") == 1
    assert sorted(got[:-1]) == sorted(
        [f"debug {i}" for i in range(4)] + [f"turn {i}" for i in range(4)]
    )


# --------------------------------------------------------- (4) a close never hangs


def test_finish_on_a_stream_that_stopped_returns_false_within_its_deadline() -> None:
    writer = LineWriter("test-stuck-writer", linger_s=0.0)
    writer.start()
    gate = threading.Event()
    stream = Recorder(gate)
    lane = Lane(writer, 100)
    try:
        lane.put(Sink(stream, "s"), "stuck")
        assert stream.entered.wait(WAIT_S)  # the thread is in the write that does not return
        assert writer.finish(0.05) is False
        assert lane.drain(0.01) is False
    finally:
        gate.set()
    assert writer.finish(WAIT_S)  # released: the thread ends, the line written
    assert stream.lines() == ["stuck"]


def test_a_transcript_whose_file_stopped_closes_within_its_deadline_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setattr(tx, "CLOSE_DEADLINE_S", 0.1)
    path = tmp_path / "trace.fifo"  # a FIFO nobody reads: a write past its 64 KiB blocks
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    err = io.StringIO()
    transcript = tx.Transcript(trace_path=path, out=io.StringIO(), err=err, meter=False)
    transcript.trace_note({"pad": "x" * 200_000})
    drained = threading.Event()

    def reader() -> None:  # the disk answers again: the thread left to it writes on
        os.set_blocking(fd, True)
        got = 0
        while got < 200_000 and (data := os.read(fd, 65536)):
            got += len(data)
        drained.set()

    try:
        transcript.close()  # returns: the deadline, not the disk, ends the wait
        assert f"{path} can no longer be written" in err.getvalue()
        failure = transcript.first_failure
        assert failure is not None and "not written within" in str(failure)
    finally:
        threading.Thread(target=reader, daemon=True).start()
    assert drained.wait(WAIT_S)
    os.close(fd)


# ------------------------------------------- (5) many sessions: one handler, one thread


def test_fifty_sessions_each_get_only_their_own_records_from_one_handler_and_one_thread(
    tmp_path: Path, fresh_process: None
) -> None:
    n, per = 50, 20
    vlrun = logging.getLogger("vlrun")
    saved = vlrun.level
    vlrun.setLevel(logging.INFO)
    before = len(vlrun.handlers)
    threads_before = _writer_threads()
    calls = [
        tx.Transcript(
            logs_dir=tmp_path / f"call{i}",
            out=io.StringIO(),
            err=io.StringIO(),
            meter=False,
            name=f"call{i}",
        )
        for i in range(n)
    ]
    try:
        open_handlers = len(vlrun.handlers)
        new_threads = _writer_threads() - threads_before
        writers = {id(getattr(c._writer, "writer", c._writer)) for c in calls}
        start = threading.Barrier(n)
        log = logging.getLogger("vlrun.live.session")
        failures: list[BaseException] = []

        def call(i: int) -> None:  # a call's task: its records are its session's
            try:
                start.wait(WAIT_S)
                with tx.session_logging(calls[i]):
                    for k in range(per):
                        log.info("call %d line %d", i, k)
            except Exception as exc:  # reported below, on the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        assert not failures and not any(t.is_alive() for t in threads)
    finally:
        for c in calls:
            c.close()
        vlrun.setLevel(saved)
    assert open_handlers <= before + 1  # the old code added one handler per call
    assert len(writers) == 1 and len(new_threads) <= 1  # and one writer thread per call
    assert len(vlrun.handlers) == before  # gone with the last call
    for i, c in enumerate(calls):
        assert c.technical_path is not None
        lines = [x for x in c.technical_path.read_text().splitlines() if " line " in x]
        assert [x.split(": ", 1)[1] for x in lines] == [f"call {i} line {k}" for k in range(per)]


def test_a_record_outside_any_session_goes_to_the_lone_conversation_only(
    tmp_path: Path, fresh_process: None
) -> None:
    """`vlrun PROFILE`: its embedded emulator and its start log outside the session, into its
    one technical log. A worker's calls: such a record is no call's."""
    log = logging.getLogger("vlrun.live.session")

    def open_(name: str) -> tx.Transcript:
        return tx.Transcript(
            logs_dir=tmp_path / name, out=io.StringIO(), err=io.StringIO(), meter=False
        )

    lone = open_("lone")
    log.warning("starting (no session yet)")
    other = open_("other")
    log.warning("the worker's own line")
    other.close()
    log.warning("ending (no session any more)")
    lone.close()
    assert lone.technical_path is not None and other.technical_path is not None
    text = lone.technical_path.read_text()
    assert "starting" in text and "ending" in text and "worker" not in text
    assert "worker" not in other.technical_path.read_text()


def _writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "vlrun-transcript-writer"}


# --------------------------------------- (6) producers on several threads against drains


@pytest.mark.parametrize("seed", range(6))
def test_producers_on_several_threads_and_drains_in_a_random_schedule(
    seed: int, writers: list[LineWriter]
) -> None:
    rng = random.Random(seed)
    writer = _writer(writers, linger_s=rng.choice([0.0, 0.0005, 0.002]))
    streams = [Recorder() for _ in range(3)]
    sinks = [Sink(s, f"g{i % 2}") for i, s in enumerate(streams)]
    bounded = seed % 2 == 1  # odd seeds: a small bound, so lines are dropped too
    lanes = [Noted(writer, 40 if bounded else 100_000, sinks[0]) for _ in range(2)]
    per, producers = 400, 4
    kept: dict[int, list[int]] = {p: [] for p in range(producers)}
    failures: list[str] = []
    start = threading.Barrier(producers)

    def produce(p: int, rng: random.Random) -> None:
        lane, sink = lanes[p % 2], sinks[p % 3]
        start.wait(WAIT_S)
        for i in range(per):
            if lane.put(sink, f"p{p} {i}"):
                kept[p].append(i)
            if rng.random() < 0.02:
                if not lane.drain(WAIT_S):
                    failures.append(f"p{p}: a drain timed out")
                written = _mine(streams, p)
                if written != kept[p]:  # all queued before the drain is written
                    failures.append(f"p{p}: after a drain {len(written)} of {len(kept[p])}")

    threads = [
        threading.Thread(target=produce, args=(p, random.Random(rng.random())))
        for p in range(producers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert writer.finish(WAIT_S)
    assert failures == []
    for p in range(producers):
        assert _mine(streams, p) == kept[p]  # in order, none lost, none twice
    if not bounded:
        assert all(len(k) == per for k in kept.values())
    assert sum(len(k) for k in kept.values()) + sum(lane.dropped for lane in lanes) == (
        producers * per
    )
    notes = [x for s in streams for x in s.lines() if x.endswith(" dropped)")]
    assert sum(int(x[1:].split()[0]) for x in notes) == sum(lane.dropped for lane in lanes)


def _mine(streams: list[Recorder], p: int) -> list[int]:
    prefix = f"p{p} "
    return [int(x[len(prefix) :]) for s in streams for x in s.lines() if x.startswith(prefix)]


# ------------------------------------------------------------------------ write errors


def test_a_failing_group_stops_and_is_said_once_and_the_others_go_on(
    writers: list[LineWriter],
) -> None:
    writer = _writer(writers, linger_s=0.0)

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    good = Recorder()
    conv, technical, trace = Sink(Broken(), "logs"), Sink(Broken(), "logs"), Sink(good, "trace")
    lane = Noted(writer, 100, trace)
    for i in range(3):
        lane.put(conv, f"turn {i}")
        lane.put(technical, f"debug {i}")
        lane.put(trace, f"event {i}")
        assert lane.drain(WAIT_S)
    assert [g for g, _ in lane.failures] == ["logs"]
    assert not lane.put(conv, "no longer queued")
    assert good.lines() == [f"event {i}" for i in range(3)]


def test_the_worker_log_tries_stderr_again_after_a_failed_write() -> None:
    broken = threading.Event()
    broken.set()

    class Flaky(Recorder):
        def write(self, text: str) -> int:
            if broken.is_set():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    stream = Flaky()
    handler, logger = _json_handler(stream, "vlrun.test.flaky", linger_s=0.0)
    try:
        logger.info("lost")
        assert handler.drain(WAIT_S)
        broken.clear()
        logger.info("kept")
        assert handler.drain(WAIT_S)
    finally:
        _unhook(handler, logger)
    assert [json.loads(x)["msg"] for x in stream.lines()] == ["kept"]
