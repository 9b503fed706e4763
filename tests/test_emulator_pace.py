"""The pace the emulator sends a reply at (`--speed`, `vlrun serve --emulator-speed`), on a
virtual clock: no time is measured, the emulator is asked to wait and the clock records it.

At speed S a reply of A ms of audio is sent over A/S ms of the clock (100 ms chunks, each
sent once the one before it is due); a scripted model latency is scaled the same way; at speed
0 nothing waits. The wall-clock ratio is bench/ material, not a test's.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from runner.emulator import running_emulator
from runner.emulator.responses import AUDIO_CHUNK_MS, PaceClock
from runner.live.connect import SERVICE_PACE

WAIT_S = 30.0
RATE = 24000  # pcm16, the session's default output format
REPLY = (
    "Here is a long answer, so that there is enough speech to pace: the river runs past "
    "the old mill, under the stone bridge, and on through the fields towards the sea."
)


class VirtualClock(PaceClock):
    """Time moves only when the emulator waits on it, by exactly what it asked for."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.t

    async def wait(self, wake: asyncio.Event, seconds: float) -> None:
        self.waits.append(seconds)
        if not wake.is_set():
            self.t += seconds
        await asyncio.sleep(0)


async def _reply(speed: float, delay_ms: int = 0) -> tuple[VirtualClock, int]:
    """One typed turn answered by REPLY: the clock, and the ms of audio the client got."""
    clock = VirtualClock()
    script = {"turns": [{"match": "tell me", "say": REPLY, "delay_ms": delay_ms}]}
    async with running_emulator(scenario=script, speed=speed, use_espeak=False, clock=clock) as emu:
        url = emu.endpoint.replace("http://", "ws://") + "/voice-live/realtime?model=gpt-realtime"
        audio = 0
        async with connect(url) as ws:

            async def next_event() -> dict[str, Any]:
                event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                return event

            assert (await next_event())["type"] == "session.created"
            await ws.send(json.dumps({"type": "session.update", "session": {}}))
            assert (await next_event())["type"] == "session.updated"
            item = {"type": "message", "role": "user"}
            item["content"] = [{"type": "input_text", "text": "tell me something long"}]
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            await ws.send(json.dumps({"type": "response.create"}))
            while (event := await next_event())["type"] != "response.done":
                assert event["type"] != "error", event
                if event["type"] == "response.audio.delta":
                    audio += len(base64.b64decode(event["delta"]))
    return clock, audio * 1000 // (RATE * 2)


@pytest.mark.parametrize("speed", [1.0, SERVICE_PACE])
async def test_a_reply_is_sent_over_its_audio_time_divided_by_the_speed(speed: float) -> None:
    clock, audio_ms = await _reply(speed)
    assert audio_ms > 3000  # several seconds of speech: many chunks paced
    assert sum(clock.waits) == pytest.approx(audio_ms / 1000 / speed, abs=1e-6)
    # chunk by chunk: each waits its own audio time at that speed, never more, never ahead
    chunk_s = AUDIO_CHUNK_MS / 1000 / speed
    assert len(clock.waits) == -(-audio_ms // AUDIO_CHUNK_MS)
    assert all(w == pytest.approx(chunk_s, abs=1e-6) for w in clock.waits[:-1]), clock.waits
    assert 0 < clock.waits[-1] <= chunk_s + 1e-6


async def test_speed_0_sends_a_reply_without_waiting() -> None:
    clock, audio_ms = await _reply(0)
    assert audio_ms > 3000
    assert clock.waits == []  # every chunk is due at once: nothing asked of the clock


async def test_a_scripted_latency_is_scaled_by_the_speed() -> None:
    clock, audio_ms = await _reply(SERVICE_PACE, delay_ms=800)
    assert clock.waits[0] == pytest.approx(0.8 / SERVICE_PACE)  # before the first chunk
    assert sum(clock.waits[1:]) == pytest.approx(audio_ms / 1000 / SERVICE_PACE, abs=1e-6)
