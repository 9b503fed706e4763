"""The first hour's papercuts (issue 28, 8): explain fits the terminal, a phone call logs each
latency once (a key press is not "Enter"), `vlrun flow` without a flow is bad input (exit 1),
and no coverage database is committed."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from runner.config.explain import format_rows

ROOT = Path(__file__).resolve().parents[1]


def _vlrun(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with its output to a pipe, or (``columns``) to a terminal that wide (a pty)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env.pop("COLUMNS", None)
    env["VLRUN_DOTENV"] = "none"
    command = [sys.executable, "-m", "runner", *args]
    if columns is None:
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    env["COLUMNS"] = str(columns)
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=follower, stderr=subprocess.PIPE, text=True
        )
        os.close(follower)
        out = bytearray()
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    text = out.decode().replace("\r\n", "\n")  # the terminal's line discipline adds \r
    return subprocess.CompletedProcess(command, proc.returncode, text, err)


@pytest.mark.parametrize("columns", [120, 100, 80, 60])
def test_explain_rows_fit_the_terminal_and_keep_every_origin(columns: int) -> None:
    whole = _vlrun("explain", "profiles/reservation.yaml")  # a pipe: rows are never cut
    assert whole.returncode == 0, whole.stderr
    assert max(map(len, whole.stdout.splitlines())) > 150  # wide enough to need fitting
    fitted = _vlrun("explain", "profiles/reservation.yaml", columns=columns)
    assert fitted.returncode == 0, fitted.stderr
    lines = fitted.stdout.splitlines()
    assert max(map(len, lines)) <= columns
    # Wrapped, not lost: every origin and field is there, word for word.
    words = " ".join(lines).split()
    for row in whole.stdout.splitlines():
        field, origin = row.split()[0], row.split("<- ", 1)[1]
        assert field in words
        assert " ".join(origin.split()) in " ".join(words), origin


def test_format_rows_cuts_values_keeping_json_quotes_and_wraps_origins() -> None:
    rows = [("session.instructions", '"' + "x" * 80 + '"', "p.yaml:3; vars: a from default")]
    # Without a width (a pipe): one line per row, nothing cut.
    assert format_rows(rows) == [f"session.instructions  {rows[0][1]}  <- {rows[0][2]}"]
    (line,) = format_rows(rows, 80)
    assert len(line) <= 80 and line.endswith("<- p.yaml:3; vars: a from default")
    value = line.split("  ")[1]
    assert value.startswith('"xxx') and value.endswith('..."')
    narrow = format_rows(rows, 40)
    assert all(len(x) <= 40 for x in narrow)
    assert " ".join(" ".join(narrow).split()).endswith("<- p.yaml:3; vars: a from default")


def test_flow_of_a_profile_without_one_is_bad_input_not_a_usage_error() -> None:
    proc = _vlrun("flow", "profiles/weather.yaml")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "profiles/weather.yaml: error:" in proc.stderr and "docs/flows.md" in proc.stderr


def test_no_coverage_database_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--", ".coverage", ".coverage.*"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tracked == ""
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", ".coverage"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0


async def test_a_key_press_turn_logs_its_latency_once_and_as_a_key_press(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("twilio")
    from tests.phone_callers import TwilioCaller, parse_twiml
    from tests.telephony_helpers import (
        phone_server,
        quiet_emulator,
        twilio_signature,
        write_serve,
    )

    caplog.set_level(logging.INFO)
    form = {
        "CallSid": "CA" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15559990000",
        "To": "+15550001111",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    async with (
        quiet_emulator() as emu,
        phone_server(write_serve(tmp_path), emu.endpoint) as (base, phones),
    ):
        import aiohttp

        url = base + "/twilio/voice"
        headers = {"X-Twilio-Signature": twilio_signature(url, form)}
        async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=headers) as r:
            assert r.status == 200
            stream_url, params = parse_twiml(await r.text())
        caller: Any = TwilioCaller(form["CallSid"])
        sig = {"X-Twilio-Signature": twilio_signature(stream_url, {})}
        await caller.connect(stream_url, params, headers=sig)
        try:
            await asyncio.wait_for(
                phones.until(lambda: any(c.session for c in phones.calls.values())), 10
            )
            for active in phones.calls.values():
                await asyncio.wait_for(active.session.ready.wait(), 10)
            await caller.dtmf("5")
            await caller.ear.until_heard(200)  # the reply to the key press is playing
        finally:
            await caller.stop()
            await caller.close()
        await asyncio.wait_for(phones.idle(), 10)
    said = [r.getMessage() for r in caplog.records if "first audio" in r.getMessage()]
    assert len(said) == 1, said
    assert "key press -> first audio" in said[0] and "Enter" not in said[0]
