"""A GPT-Live profile on a Twilio call (runner/live/sessions.py): the session.start carries
the call's mu-law as GPT-Live's one audio.format, the emulator's GPT-Live desk backchannels
while the caller speaks, and a backchannel never clears the caller's audio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.phone_callers import mulaw_tone
from tests.telephony_helpers import phone_server, quiet_emulator, write_serve
from tests.test_telephony_twilio import call

pytest.importorskip("twilio")

GL_PHONE = """\
name: phone-desk
instructions: You answer the phone.
voice: marin
connection: {model: gpt-live-1}
"""


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    async with quiet_emulator() as emu:
        yield emu


async def test_a_gpt_live_call_runs_mulaw_and_a_backchannel_never_clears(
    tmp_path: Path, emulator: Any
) -> None:
    serve_file = write_serve(tmp_path)
    (tmp_path / "phone.yaml").write_text(GL_PHONE, encoding="utf-8")
    async with phone_server(serve_file, emulator.endpoint) as (base, phones):
        caller = await call(base)
        try:
            start = await emulator.wait_for(lambda e: e["type"] == "session.start", timeout=10)
            assert start["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
            caller.say(mulaw_tone(4500))
            active = next(iter(phones.calls.values()))
            await asyncio.wait_for(active.session.ready.wait(), 10)
            duplex = active.session.duplex
            # event driven: the session's turn state moves when a reply has been said
            assert await active.session.turn.until(
                lambda: duplex.backchannels >= 1 and duplex.replies >= 1, 20
            ), (duplex.backchannels, duplex.replies)
            await caller.ear.until_heard(300)
            assert caller.clears == 0  # a backchannel is never a barge-in
        finally:
            await caller.stop()
            await caller.close()
