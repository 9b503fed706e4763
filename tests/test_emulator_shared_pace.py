"""One pace clock for every connection of an emulator (runner/emulator/pace.py).

Replies used to wait chunk by chunk on a timer (and a task) of their own; now every waiting
reply sits on one heap behind one timer, released on a 10 ms grid. These tests run the real
clock's heap and release logic on virtual time (only its timer is replaced: the test fires it
when every reply in flight is waiting), so nothing is timed:

- many connections replying at once each get their own reply's audio, whole and in order;
- every chunk is released on the grid, never before it is due and less than a tick after;
- the waits are counted from each reply's first chunk, so a tick's lateness never adds up;
- one timer pass releases every connection whose chunk is due: the passes are the distinct
  grid slots, many times fewer than the waits;
- a cancel (a barge-in) ends a wait at once, without a timer.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from runner.emulator import running_emulator
from runner.emulator.pace import TICK_S, PaceClock, Wake
from runner.emulator.responses import AUDIO_CHUNK_MS
from runner.emulator.speech import speak

pytestmark = pytest.mark.timeout(90)

WAIT_S = 60.0
RATE = 24000  # pcm16, the session's default output format
SPEED = 3.0  # 33.3 ms a chunk: most chunks fall between the grid's ticks
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def reply(k: int) -> str:
    """Replies of different lengths, so connections finish at different times."""
    return " ".join(["The river runs past the old mill and on towards the sea."] * (1 + k % 3))


class VirtualSharedClock(PaceClock):
    """The real clock on virtual time: its timer is the test's to fire."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 1000.0
        self.changed = asyncio.Event()
        #: per reply (its Wake): (when its chunk was due, when it was released), in order
        self.log: dict[asyncio.Event, list[tuple[float, float]]] = {}

    def now(self) -> float:
        return self.t

    async def wait(self, wake: asyncio.Event, seconds: float) -> None:
        asked = self.t
        self.changed.set()  # the driver looks once this reply has parked
        await super().wait(wake, seconds)
        self.log.setdefault(wake, []).append((asked + seconds, self.t))

    def _arm(self, due: float) -> None:
        self._timer_at = due  # no real timer: the driver fires it

    def parked(self) -> int:
        return sum(not waiter.done() for _, _, waiter in self._heap)

    def fire(self) -> None:
        self.t = self._timer_at
        self._fire()


async def one_reply(url: str, k: int, done: list[int], clock: VirtualSharedClock) -> bytes:
    """One typed turn on its own connection: the reply audio as the client decoded it."""
    audio = bytearray()
    async with connect(url) as ws:

        async def next_event() -> dict[str, Any]:
            event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            assert event["type"] != "error", event
            return event

        assert (await next_event())["type"] == "session.created"
        await ws.send(json.dumps({"type": "session.update", "session": {}}))
        assert (await next_event())["type"] == "session.updated"
        item = {"type": "message", "role": "user"}
        item["content"] = [{"type": "input_text", "text": f"say {WORDS[k]}"}]
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        while (event := await next_event())["type"] != "response.done":
            if event["type"] == "response.audio.delta":
                audio += base64.b64decode(event["delta"])
        assert event["response"]["status"] == "completed"
    done[0] -= 1
    clock.changed.set()
    return bytes(audio)


async def test_many_connections_are_paced_in_order_on_one_shared_clock() -> None:
    clock = VirtualSharedClock()
    script = {"turns": [{"match": w, "say": reply(k)} for k, w in enumerate(WORDS)]}
    in_flight = [len(WORDS)]

    async def drive() -> None:
        # time moves only when every reply in flight is parked on the clock
        while in_flight[0]:
            await clock.changed.wait()
            clock.changed.clear()
            if in_flight[0] and clock.parked() == in_flight[0]:
                clock.fire()

    async with running_emulator(scenario=script, speed=SPEED, use_espeak=False, clock=clock) as emu:
        url = emu.endpoint.replace("http://", "ws://") + "/voice-live/realtime?model=gpt-realtime"
        driver = asyncio.create_task(drive())
        calls = [one_reply(url, k, in_flight, clock) for k in range(len(WORDS))]
        audios = await asyncio.wait_for(asyncio.gather(*calls), WAIT_S)
        await asyncio.wait_for(driver, WAIT_S)

    chunk_s = AUDIO_CHUNK_MS / 1000 / SPEED
    for k, audio in enumerate(audios):  # each its own reply, every chunk, in order
        assert audio == (await speak(reply(k), RATE, use_espeak=False)).pcm
    assert len(clock.log) == len(WORDS)  # one wait list per reply
    releases = set()
    for waits in clock.log.values():
        first_due = waits[0][0] - chunk_s  # the reply's first chunk went out then
        for n, (due, _) in enumerate(waits[:-1], start=1):
            # counted from the first chunk: a late release is not carried into the next wait
            assert due == pytest.approx(first_due + n * chunk_s, abs=1e-9)
        for due, released in waits:
            assert due - 1e-9 <= released < due + TICK_S  # never early, within a tick
            assert released / TICK_S == pytest.approx(round(released / TICK_S), abs=1e-6)
            releases.add(round(released / TICK_S))
    waits_total = sum(len(w) for w in clock.log.values())
    assert waits_total > 100
    # one pass per grid slot with something due, whatever the number of connections
    assert clock.wakeups == len(releases)
    assert clock.released == waits_total
    assert clock.wakeups * 4 < waits_total


async def test_a_cancel_ends_a_wait_at_once_without_its_timer() -> None:
    clock, wake = PaceClock(), Wake()
    asyncio.get_running_loop().call_soon(wake.set)  # runs once the wait below has parked
    async with asyncio.timeout(WAIT_S):  # a deadline, not a measure: the wait is 600 s
        await clock.wait(wake, 600.0)
    assert wake.waiter is None and clock.released == 0 and clock.wakeups == 0


async def test_the_real_timer_releases_waits_in_due_order() -> None:
    """On the loop's own timer (no virtual time): waits asked out of order end in due order,
    and waits due on the same tick end in the order they were asked."""
    clock = PaceClock()
    ended: list[int] = []

    async def wait(n: int, seconds: float) -> None:
        await clock.wait(Wake(), seconds)
        ended.append(n)

    dues = [0.05, 0.01, 0.03, 0.01, 0.0]
    await asyncio.wait_for(asyncio.gather(*(wait(n, s) for n, s in enumerate(dues))), WAIT_S)
    assert ended[-2:] == [2, 0]  # 30 ms and 50 ms after every 0-10 ms one
    assert set(ended[:3]) == {1, 3, 4}
    assert ended.index(1) < ended.index(3)  # the same tick: asked first, released first
    assert clock.released == len(dues)
