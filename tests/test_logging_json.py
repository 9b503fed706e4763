"""The serve worker's JSON log: one JSON object a line whatever a caller sends, controls shown
instead of obeyed, phone numbers masked unless revealed, and a library's traceback kept out."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runner.serve import calls_log
from runner.serve.calls_log import JsonFormatter, call_id_var

# What a hostile Twilio `To` parameter carried: ESC sequences, CR LF and a forged JSON line, a
# C1 control, a bidi override, a Unicode line separator.
HOSTILE_TO = '+14155551234\x1b[2J\r\n{"level": "error", "msg": "forged"}\x9b\u202egnp.exe\u2028x'
UNSAFE = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + [
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
    "\u2028",
    "\u2029",
]


def _record(name: str, msg: str, *args: Any, exc: BaseException | None = None) -> Any:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, exc_info)


@pytest.fixture(autouse=True)
def _masked() -> Iterator[None]:
    calls_log.reveal_phone_numbers(False)
    yield
    calls_log.reveal_phone_numbers(False)


def test_a_hostile_value_stays_on_one_json_line_with_its_controls_shown() -> None:
    token = call_id_var.set("CA1\x1b[31m\r\nforged")
    try:
        line = JsonFormatter().format(_record("vlrun.serve.twilio", "call to %s", HOSTILE_TO))
    finally:
        call_id_var.reset(token)
    assert "\n" not in line and "\r" not in line
    entry = json.loads(line)  # exactly one object: json.loads refuses trailing data
    for value in entry.values():
        assert not any(c in value for c in UNSAFE), value
    assert "\\u001b[2J\\u000d\\u000a" in entry["msg"] and "\\u202egnp.exe" in entry["msg"]
    assert entry["call_id"] == "CA1\\u001b[31m\\u000d\\u000aforged"


@pytest.mark.parametrize("char", UNSAFE)
def test_every_control_separator_and_bidi_character_is_written_as_visible_text(char: str) -> None:
    entry = json.loads(JsonFormatter().format(_record("vlrun.x", "a%sb", char)))
    assert entry["msg"] == f"a\\u{ord(char):04x}b"


def test_phone_numbers_are_masked_to_their_last_four_digits_unless_revealed() -> None:
    record = _record("vlrun.serve.call", "call from %s to %s", "+14155551234", "+442079460958")
    assert json.loads(JsonFormatter().format(record))["msg"] == (
        "call from +*******1234 to +********0958"
    )
    calls_log.reveal_phone_numbers(True)
    assert calls_log.phone_numbers_revealed()
    assert "+14155551234" in json.loads(JsonFormatter().format(record))["msg"]


def test_a_library_error_is_one_line_with_its_summary_and_vlrun_keeps_its_traceback() -> None:
    try:
        raise ValueError("400, message:\n  Invalid method encountered:\n\n  b'\\x16\\x03'\n    ^")
    except ValueError as exc:
        library = _record("aiohttp.server", "Error handling request from %s", "1.2.3.4", exc=exc)
        ours = _record("vlrun.serve.app", "handler failed", exc=exc)
    entry = json.loads(JsonFormatter().format(library))
    assert "exc" not in entry and "Traceback" not in json.dumps(entry)
    assert entry["msg"] == (
        "Error handling request from 1.2.3.4: ValueError: 400, message: Invalid method encountered:"
    )
    assert "Traceback" in json.loads(JsonFormatter().format(ours))["exc"]


def test_a_message_whose_arguments_do_not_format_is_still_one_line() -> None:
    entry = json.loads(JsonFormatter().format(_record("vlrun.x", "%d calls", "many")))
    assert "did not format" in entry["msg"]


def test_a_huge_value_is_cut_to_a_bounded_line() -> None:
    entry = json.loads(JsonFormatter().format(_record("vlrun.x", "to %s", "9" * 1_000_000)))
    assert len(entry["msg"]) < calls_log.MAX_MESSAGE_CHARS + 100
    assert entry["msg"].endswith("more characters)")


@pytest.fixture
def json_log() -> Iterator[tuple[io.StringIO, calls_log.JsonLogHandler]]:
    """install_json_logging on a buffer, undone afterwards (the process's loggers restored)."""
    names = ("vlrun", *calls_log.LIBRARY_LOGGERS)
    before = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    for n in names:  # a JSON handler some other test left behind would be returned instead
        lg = logging.getLogger(n)
        for h in list(lg.handlers):
            if isinstance(h.formatter, JsonFormatter):
                lg.removeHandler(h)
    stream = io.StringIO()
    handler = calls_log.install_json_logging(stream)
    try:
        yield stream, handler
    finally:
        for n, (level, handlers) in before.items():
            lg = logging.getLogger(n)
            lg.setLevel(level)
            lg.handlers[:] = handlers
        handler.close()  # its writer thread ends with the test


def test_install_is_idempotent_and_sets_its_level_on_the_handler(
    json_log: tuple[io.StringIO, calls_log.JsonLogHandler],
) -> None:
    stream, handler = json_log
    assert calls_log.install_json_logging(io.StringIO()) is handler
    assert handler.level == logging.INFO
    assert sum(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger("vlrun").handlers)
    logging.getLogger("vlrun.serve.test").info("info line")
    logging.getLogger("vlrun.serve.test").debug("debug line")
    assert handler.drain(10)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["msg"] for e in lines] == ["info line"]


async def test_a_malformed_http_request_logs_one_json_line_and_no_traceback(
    json_log: tuple[io.StringIO, calls_log.JsonLogHandler], capfd: pytest.CaptureFixture[str]
) -> None:
    from aiohttp import web

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \x1b[2Jnope\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)  # logged before it answers
        writer.close()
        await writer.wait_closed()
    finally:
        await runner.cleanup()
    assert b" 400 " in status, status
    stream, handler = json_log
    assert handler.drain(10)
    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    errors = [e for e in entries if e["logger"].startswith("aiohttp")]
    assert len(errors) == 1, lines
    assert errors[0]["msg"] == (
        "Error handling request from 127.0.0.1: BadHttpMessage: 400, message: "
        "Invalid character in Content-Length:"
    )
    assert "Traceback" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    err = capfd.readouterr().err
    assert "Traceback" not in err, err  # nothing went around the JSON log (logging.lastResort)


def test_the_worker_log_is_one_object_a_line_in_a_real_serve_process(tmp_path: Any) -> None:
    """The whole chain in a subprocess: install, a hostile value logged by vlrun, stderr read."""
    import subprocess

    code = (
        "import logging, sys\n"
        "from runner.serve.calls_log import install_json_logging\n"
        "install_json_logging(sys.stderr)\n"
        "logging.getLogger('vlrun.serve.twilio').info('call to %s', sys.argv[1])\n"
        "logging.getLogger('vlrun.serve.twilio').debug('a debug line')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, HOSTILE_TO],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        env={"PYTHONPATH": str(__import__("tests.helpers").helpers.ROOT), "PATH": "/usr/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert "+*******1234" in entry["msg"] and "4155551234" not in entry["msg"]


def test_a_log_reader_that_stops_reading_never_stalls_the_logging_caller() -> None:
    """stderr piped to a reader that stopped (a stuck log shipper): lines queue, then are
    dropped and counted; the code that logs (the event loop) never waits."""
    reading = threading.Event()

    class Stalled(io.StringIO):
        def write(self, text: str) -> int:
            assert reading.wait(60)
            return super().write(text)

    stream = Stalled()
    handler = calls_log.JsonLogHandler(stream, logging.INFO)
    logger = logging.getLogger("vlrun.serve.test-stalled")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    total = calls_log.LOG_QUEUE_LINES + 200
    returned = threading.Event()

    def produce() -> None:
        for i in range(total):
            logger.info("line %d", i)
        returned.set()

    try:
        threading.Thread(target=produce, daemon=True).start()
        waited = not returned.wait(60)
        reading.set()
        assert not waited, "logging waited for the log's reader"
        assert handler.drain(30)
    finally:
        reading.set()
        logger.removeHandler(handler)
        handler.close()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    kept = [e for e in entries if e["msg"].startswith("line ")]
    notes = [e for e in entries if e["logger"] == "vlrun.serve.log"]
    assert 1 <= handler.dropped <= 200 + 1  # what the bound could not hold (one in the writer)
    assert len(kept) + handler.dropped == total
    assert [e["msg"] for e in notes] == [
        f"{handler.dropped} log lines were dropped: the log was not read"
    ]
