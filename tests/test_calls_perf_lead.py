"""The outbound lead: how far assistant audio runs ahead of the caller's ear (issue 27).

The caller here is the simulated ear of tests/phone_callers.py (a play-out clock at real time):
it counts a gap when a frame is due and nothing is there, inside a reply.
"""

from __future__ import annotations

import asyncio
import time

from runner.live.audio import AudioFormat
from runner.serve.calls import CallPlayer
from tests.phone_callers import Ear

MULAW = AudioFormat(8000, 1, 1)
STALL_S = 0.2  # a stall of the whole worker (a GC pause, a neighbour on the core)


class EarWire:
    """The provider's side: every frame goes straight into the caller's ear."""

    def __init__(self) -> None:
        self.ear = Ear(bytes_per_ms=8)

    async def send_audio(self, frame: bytes) -> None:
        self.ear.hear(frame)

    async def send_clear(self) -> None:
        self.ear.clear()


async def test_a_short_stall_of_the_worker_is_not_heard_by_the_caller() -> None:
    """With 40-100 ms ahead of the ear, a 200 ms stall was a gap the caller heard (15-20 a
    window at 100 calls, with no underrun counted by the worker); the provider buffers a
    few hundred ms and flushes them on a barge-in, so the lead covers the stall."""
    player = CallPlayer(MULAW)
    player.transport = wire = EarWire()
    player.write("reply", bytes(MULAW.bytes_for_ms(1500)))
    pump = asyncio.create_task(player.pump())
    try:
        await wire.ear.until_heard(600)  # mid-reply, the pump at its steady pace
        time.sleep(STALL_S)  # noqa: ASYNC251 - the stall under test: the whole loop blocked
        await asyncio.wait_for(player.drain(), 5)
        assert len(wire.ear.received) == MULAW.bytes_for_ms(1500)  # the whole reply came
        assert wire.ear.gaps == 0, f"the caller heard {wire.ear.gap_ms:.0f} ms of silence"
    finally:
        player.close()
        await asyncio.wait_for(pump, 5)


async def test_a_barge_in_after_a_long_lead_claims_only_what_the_clock_says_was_played() -> None:
    """The clock's played position (ACS: no marks) stays honest with audio sent far ahead:
    what was sent but not yet played by the clock is not claimed."""
    player = CallPlayer(MULAW)
    player.transport = wire = EarWire()
    player.write("reply", bytes(MULAW.bytes_for_ms(3000)))
    pump = asyncio.create_task(player.pump())
    try:
        await wire.ear.until_heard(500)
        sent_ms = len(wire.ear.received) / 8
        item, played = player.interrupt()
        heard = wire.ear.heard_ms()
        assert item == "reply"
        assert sent_ms - played >= 100  # sent ahead, not claimed
        # the ear's own buffer (60 ms at the start of a reply) is the clock's only error
        assert played <= heard + wire.ear.jitter_s * 1000 + 1
    finally:
        player.close()
        await asyncio.wait_for(pump, 5)
