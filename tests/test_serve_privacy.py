"""Callers' phone numbers stay out of a phone worker's logs unless the serve file asks, and a
logs folder that refuses writes costs the calls their log files, not the calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.telephony_helpers import phone_server, quiet_emulator, write_serve
from tests.test_telephony_twilio import answered, call

pytest.importorskip("twilio")

CALLER = "+15559990000"  # what tests.test_telephony_twilio.webhook sends as From


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    async with quiet_emulator() as emu:
        yield emu


async def _one_call(serve: Path, endpoint: str, logs: Path) -> None:
    async with phone_server(serve, endpoint, logs_dir=logs) as (base, phones):
        caller = await call(base)
        try:
            await answered(phones)
        finally:
            await caller.stop()
            await caller.close()
        await asyncio.wait_for(phones.idle(), 10)


def _logged(logs: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in logs.rglob("*") if p.is_file())


@pytest.mark.parametrize("reveal", [False, True])
async def test_the_conversation_log_shows_a_callers_last_four_digits_only(
    tmp_path: Path, emulator: Any, reveal: bool
) -> None:
    serve = write_serve(tmp_path, "log_phone_numbers: true\n" if reveal else "")
    logs = tmp_path / "logs"
    await _one_call(serve, emulator.endpoint, logs)
    text = _logged(logs)
    assert "0000" in text  # the call's line is there
    assert (CALLER in text) is reveal
    if not reveal:
        assert "+*******0000" in text


async def test_a_logs_folder_that_refuses_writes_costs_the_logs_not_the_call(
    tmp_path: Path, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    serve = write_serve(tmp_path)
    logs = tmp_path / "logs"
    logs.write_text("a file where the folder should be", encoding="utf-8")
    async with phone_server(serve, emulator.endpoint, logs_dir=logs) as (base, phones):
        for _ in range(2):
            caller = await call(base)
            try:
                active = await answered(phones)
            finally:
                await caller.stop()
                await caller.close()
            await asyncio.wait_for(phones.idle(), 10)
            assert active.edge.outcome == "caller_hung_up"
    said = [r for r in caplog.records if "call logs cannot be written" in r.getMessage()]
    assert len(said) == 1  # said once, not once a call
