"""A conversation's logs have no side effects on the process: no logger's level changes, the
event loop never waits for a write, and a disk that is full says so once and does not hang."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.live import transcript as tx
from runner.live.transcript import Transcript
from runner.serve.calls_log import JsonFormatter, json_handler
from tests.helpers import ROOT

CASUAL = str(ROOT / "profiles" / "casual-chat.yaml")
WATCHED = ("vlrun", "vlrun.live", "azure", "runner.emulator", "")


def _levels() -> dict[str, tuple[int, int]]:
    return {
        n: (logging.getLogger(n).level, logging.getLogger(n).getEffectiveLevel()) for n in WATCHED
    }


@contextlib.contextmanager
def _logger_state() -> Iterator[None]:
    """Whatever a test sets on the process's loggers is put back."""
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in WATCHED}
    try:
        yield
    finally:
        for n, (level, handlers) in saved.items():
            logging.getLogger(n).setLevel(level)
            logging.getLogger(n).handlers[:] = handlers


def _transcript(tmp_path: Path, **options: Any) -> tuple[Transcript, io.StringIO]:
    err = io.StringIO()
    return Transcript(out=io.StringIO(), err=err, meter=False, **options), err


@pytest.mark.parametrize("worker_level", [logging.NOTSET, logging.INFO, logging.WARNING])
def test_a_transcript_with_logs_never_changes_a_logger_level(
    tmp_path: Path, worker_level: int
) -> None:
    with _logger_state():
        logging.getLogger("vlrun").setLevel(worker_level)
        before = _levels()
        transcript, _ = _transcript(tmp_path, logs_dir=tmp_path / "logs")
        try:
            assert _levels() == before  # while it is open (the phone worker's calls overlap)
        finally:
            transcript.close()
        assert _levels() == before


def test_a_serve_json_handler_at_info_prints_no_debug_line_while_calls_have_logs(
    tmp_path: Path,
) -> None:
    with _logger_state():
        stream = io.StringIO()
        handler = json_handler(stream)
        handler.setLevel(logging.INFO)
        root = logging.getLogger("vlrun")
        root.addHandler(handler)
        root.setLevel(logging.INFO)  # what the worker's start-up set
        calls = [_transcript(tmp_path, logs_dir=tmp_path / f"call{n}")[0] for n in range(3)]
        session = logging.getLogger("vlrun.live.session")
        with tx.session_logging(calls[0]):  # what call 0's tasks log
            session.debug("send input_audio_buffer.append")
            session.info("turn latency 120 ms")
        try:
            assert root.level == logging.INFO  # while the calls are up, too
        finally:
            for call in calls:
                call.close()
        entries = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [e["level"] for e in entries] == ["info"]
        assert root.level == logging.INFO
        technical = calls[0].technical_path
        assert technical is not None
        text = technical.read_text()
        assert "turn latency 120 ms" in text and "send input_audio_buffer" not in text


def test_a_program_that_opens_the_tree_to_debug_gets_debug_in_the_technical_log_only(
    tmp_path: Path,
) -> None:
    with _logger_state():
        stream = io.StringIO()
        handler = json_handler(stream)
        handler.setLevel(logging.INFO)
        logging.getLogger("vlrun").addHandler(handler)
        tx.process_log_levels()  # the vlrun command's start-up
        transcript, _ = _transcript(tmp_path, logs_dir=tmp_path / "logs")
        with tx.session_logging(transcript):
            logging.getLogger("vlrun.live.session").debug("turn: listening -> speaking")
        transcript.close()
        assert transcript.technical_path is not None
        assert "turn: listening -> speaking" in transcript.technical_path.read_text()
        assert not any(
            isinstance(h.formatter, JsonFormatter) and h.level < logging.INFO
            for h in logging.getLogger("vlrun").handlers
        )
        assert stream.getvalue() == ""


def test_every_line_written_before_close_is_in_the_files_after_it(tmp_path: Path) -> None:
    # 3 n lines in all, below the bound technical lines may fill: nothing may be dropped,
    # however far the writer thread falls behind
    n = tx.WRITE_QUEUE_LINES // 2 // 3
    transcript, err = _transcript(
        tmp_path, logs_dir=tmp_path / "logs", trace_path=tmp_path / "t.jsonl"
    )
    log = logging.getLogger("vlrun.live.session")
    with _logger_state(), tx.session_logging(transcript):
        logging.getLogger("vlrun").setLevel(logging.INFO)
        for i in range(n):
            transcript.conv_note(f"note {i}")
            transcript.trace_note({"i": i})
            log.info("line %d", i)
    transcript.close()
    assert transcript.conversation_path is not None and transcript.technical_path is not None
    conv = transcript.conversation_path.read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in conv] == [f"note {i}" for i in range(n)]
    trace = [
        json.loads(line)["event"]["i"] for line in (tmp_path / "t.jsonl").read_text().splitlines()
    ]
    assert trace == list(range(n))
    technical = transcript.technical_path.read_text()
    assert all(f"line {i}\n" in technical for i in (0, n // 2, n - 1))
    assert technical.count(" INFO vlrun.live.session: line ") == n
    assert err.getvalue() == ""


def test_a_newline_in_a_logged_value_cannot_forge_a_conversation_log_line(tmp_path: Path) -> None:
    transcript, _ = _transcript(tmp_path, logs_dir=tmp_path / "logs")
    transcript.conv_note("twilio call from +1555\n[12:00:00] assistant: forged\r\x1b[2K")
    transcript.close()
    assert transcript.conversation_path is not None
    lines = transcript.conversation_path.read_text().splitlines()
    assert len(lines) == 1 and "\\n[12:00:00] assistant: forged" in lines[0]
    assert "\x1b" not in lines[0] and "\r" not in lines[0]


def test_the_caller_never_waits_for_a_disk_that_stopped_and_the_queue_is_bounded(
    tmp_path: Path,
) -> None:
    # The trace is a FIFO nobody reads yet: once its 64 KiB pipe buffer is full, a write
    # blocks, as on a disk that stopped answering (an NFS server gone), without root.
    path = tmp_path / "trace.fifo"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # so the transcript's open returns
    chunks: list[bytes] = []
    read_all = threading.Event()

    def reader() -> None:
        os.set_blocking(fd, True)
        while data := os.read(fd, 65536):
            chunks.append(data)
        read_all.set()

    transcript, err = _transcript(tmp_path, trace_path=path)
    total = tx.WRITE_QUEUE_LINES + 500
    returned = threading.Event()

    def produce() -> None:  # what the event loop does: every call must return at once
        for i in range(total):
            transcript.trace_note({"i": i, "pad": "x" * 200})
        returned.set()

    threading.Thread(target=produce, daemon=True).start()
    waited = not returned.wait(30)
    threading.Thread(target=reader, daemon=True).start()  # the disk answers again
    try:
        assert not waited, "a trace write waited for the disk"
        transcript.close()
        assert err.getvalue().count("lines behind the conversation") == 1
    finally:
        assert read_all.wait(60)
        os.close(fd)
    written = b"".join(chunks).decode().splitlines()
    kept = [json.loads(w)["event"]["i"] for w in written if w.startswith("{")]
    dropped = total - len(kept)
    assert 1 <= dropped <= 500  # only what the bound could not hold
    assert kept == sorted(kept) and kept[0] == 0
    assert written[-1] == f"({dropped} lines were not written: the disk fell behind)"


def test_a_serve_call_whose_console_logs_into_a_full_queue_does_not_deadlock(
    tmp_path: Path,
) -> None:
    """A call's console lines are logged (CallConsole), and land in its own technical log
    while the transcript holds its lock: a full queue must not call back into the transcript."""
    from runner.serve.calls_log import CallConsole

    path = tmp_path / "trace.fifo"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    console = CallConsole("CA1")
    done = threading.Event()
    with _logger_state():
        logging.getLogger("vlrun").setLevel(logging.INFO)
        transcript = Transcript(
            logs_dir=tmp_path / "logs", trace_path=path, out=console, err=console, meter=False
        )

        def call() -> None:
            writer = transcript._writer
            assert writer is not None
            i = 0
            while not writer.full():  # the writer is stuck on the FIFO: the queue fills
                transcript.trace_note({"i": i, "pad": "x" * 200})
                i += 1
            for i in range(20):  # the first line that does not fit comes from the console
                transcript.banner(f"status line {i}")  # console -> log -> a full queue
            done.set()

        threading.Thread(target=call, daemon=True).start()
        finished = done.wait(30)
        drained = threading.Event()

        def reader() -> None:
            os.set_blocking(fd, True)
            while os.read(fd, 65536):
                pass
            drained.set()

        threading.Thread(target=reader, daemon=True).start()
        try:
            assert finished, "the call's transcript deadlocked on its own log"
        finally:
            if finished:
                transcript.close()
            assert not finished or drained.wait(30)
            os.close(fd)


# --------------------------------------------------------------------- a full disk, for real


@contextlib.contextmanager
def _tiny_tmpfs(where: Path, size: str = "64k", fill: bool = True) -> Iterator[Path]:
    """A real filesystem of ``size``, mounted for this test only (root only; skipped else)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        if fill:
            with open(where / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _cli(args: list[str], cwd: Path, cli_env: Any, preexec: Any = None) -> tuple[int, str, str]:
    """The real CLI with its stdin left open, as a person at a terminal who has not typed yet:
    a run that does not end by itself fails the deadline (the old minute-long hang)."""
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", CASUAL, "--text", *args],
            cwd=cwd,
            env=cli_env({"PYTHONDONTWRITEBYTECODE": "1"}),
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
        )
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"vlrun did not end by itself on an unwritable --logs:\n{err}")
        return proc.returncode, out, err
    finally:
        os.close(read_end)
        os.close(write_end)


def _assert_refused_in_one_line(code: int, out: str, err: str, folder: Path) -> None:
    assert code == 3, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(folder) in errors[0], err
    assert "choose another --logs" in err
    assert "warning:" not in err and "Traceback" not in err and "unexpectedly" not in err
    assert "assistant:" not in out  # refused before the conversation started


def test_a_logs_folder_on_a_full_disk_exits_3_with_one_line_at_once(
    tmp_path: Path, cli_env: Any
) -> None:
    with _tiny_tmpfs(tmp_path / "disk") as disk:
        logs = disk / "logs"
        code, out, err = _cli(["--logs", str(logs)], tmp_path, cli_env)
        _assert_refused_in_one_line(code, out, err, logs)
        assert "No space left on device" in err
        assert not any(logs.iterdir())  # no empty log files left behind


def test_a_disk_that_fills_mid_conversation_is_reported_once_for_the_folder(
    tmp_path: Path,
) -> None:
    with _tiny_tmpfs(tmp_path / "disk", size="64k", fill=False) as disk:
        logs = disk / "logs"
        transcript, err = _transcript(tmp_path, logs_dir=logs)
        with _logger_state():
            logging.getLogger("vlrun").setLevel(logging.INFO)
            for i in range(200):  # ~ 2 x 200 KB into 64 KB: both files fail
                transcript.conv_note(f"turn {i} " + "y" * 1000)
                logging.getLogger("vlrun.live.session").info("turn %d %s", i, "z" * 1000)
        transcript.close()
        warnings = [line for line in err.getvalue().splitlines() if line.startswith("warning:")]
        assert warnings == [
            f"warning: {logs} can no longer be written (No space left on device); "
            "the conversation goes on without it"
        ]
        failure = transcript.first_failure
        assert failure is not None and failure.errno == errno.ENOSPC
        assert failure.filename == str(logs)
        assert transcript.conversation_path is not None
        assert "turn 0 " in transcript.conversation_path.read_text()  # what fitted is kept


def test_a_flood_of_technical_lines_never_costs_a_conversation_line(tmp_path: Path) -> None:
    """DEBUG records can outrun the writer thread; the conversation log's lines keep headroom
    of their own, so a flood while the disk is slow drops technical lines, never a turn."""
    path = tmp_path / "trace.fifo"  # the slow disk: a FIFO nobody reads yet (see above)
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    transcript, _ = _transcript(tmp_path, logs_dir=tmp_path / "logs", trace_path=path)
    log = logging.getLogger("vlrun.live.session")
    with _logger_state():
        logging.getLogger("vlrun").setLevel(logging.DEBUG)
        transcript.trace_note({"pad": "x" * 200_000})  # the writer blocks on this line
        for i in range(2 * tx.WRITE_QUEUE_LINES):
            log.debug("flood %d", i)
        transcript.conv_note("the turn that matters")
    chunks: list[bytes] = []

    def reader() -> None:  # the disk answers again
        os.set_blocking(fd, True)
        while data := os.read(fd, 65536):
            chunks.append(data)

    drain = threading.Thread(target=reader, daemon=True)
    drain.start()
    transcript.close()
    drain.join(60)
    os.close(fd)
    assert transcript.conversation_path is not None
    assert "the turn that matters" in transcript.conversation_path.read_text()
