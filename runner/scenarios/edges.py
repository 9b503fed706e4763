"""The scripted edges of a scenario run: the user's microphone, the assistant's speaker on a
fast clock, tool mocks in front of the real plugins, and the speech the user says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.aio import Changes, Channel
from runner.live.audio import FRAME_MS, AudioFormat
from runner.plugins import MockRegistry as MockRegistry  # re-exported for scenario runs


class ScenarioPlayer:
    """A virtual speaker whose clock runs ``speed`` times faster than the wall clock.

    ``speed`` is a little below the emulator's: the service streams a reply faster than real
    time, so a client always holds unplayed audio when the user barges in; the emulator paces
    at exactly its speed, and this margin restores that backlog (and with it the truncation).
    """

    def __init__(self, fmt: AudioFormat, speed: float = 1.0) -> None:
        self.fmt = fmt
        self.speed = speed
        self._end = 0.0  # monotonic time when everything queued has played
        self._item: str | None = None
        self._item_start = 0.0
        self._item_ms = 0.0
        self.items: list[str] = []  # every item that wrote audio, in order
        self.received_ms: dict[str, float] = {}
        self.interrupts: list[tuple[str, int]] = []  # (item, ms played) per interrupt()
        self._changes = Changes()

    def write(self, item_id: str, pcm: bytes) -> None:
        now = time.monotonic()
        if item_id != self._item:
            self._item, self._item_ms = item_id, 0.0
            self._item_start = max(now, self._end)
            self.items.append(item_id)
        ms = self.fmt.ms_for_bytes(len(pcm))
        self._end = max(now, self._end) + ms / 1000 / self.speed
        self._item_ms += ms
        self.received_ms[item_id] = self.received_ms.get(item_id, 0.0) + ms
        self._poke()

    def _poke(self) -> None:
        self._changes.notify()

    def played_ms(self) -> int:
        if self._item is None:
            return 0
        played = (time.monotonic() - self._item_start) * 1000 * self.speed
        return int(max(0.0, min(self._item_ms, played)))

    def pending_ms(self) -> float:
        return max(0.0, self._end - time.monotonic()) * 1000 * self.speed

    def interrupt(self) -> tuple[str | None, int]:
        played = self.played_ms()
        item, self._item = self._item, None
        self._end = time.monotonic()
        if item is not None:
            self.interrupts.append((item, played))
        self._poke()
        return item, played

    async def drain(self) -> None:
        remaining = self._end - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)  # the known play-out time, not a poll

    def close(self) -> None:
        pass

    async def reach(self, after: int, at_ms: float, done: Callable[[], bool]) -> str | None:
        """Wait until ``at_ms`` of the first reply item after ``items[after:]`` has played.

        Returns None when reached, or why it cannot be (the reply ended first).
        """
        while True:
            fresh = self.items[after:]
            if fresh and self._item == fresh[0] and self._item_ms >= at_ms:
                due = self._item_start + at_ms / 1000 / self.speed - time.monotonic()
                if due > 0:
                    await asyncio.sleep(due)  # a timer for a known play position
                return None
            if fresh and (self._item != fresh[0] or done()):
                got = self.received_ms.get(fresh[0], 0.0)
                return f"the reply had only {got:.0f} ms of audio"
            if not fresh and done():
                return "the reply had no audio"
            await self._changes.next(0.5)  # a change, or the reply's clock moving on


SOURCE_FRAMES = 60_000 // FRAME_MS  # a minute of the microphone's frames


class ScenarioSource:
    """The user's microphone: frames queued by the turn driver, paced at ``speed``."""

    live = False  # scripted audio: the session holds it while (re)connecting, never drops it

    def __init__(self, fmt: AudioFormat, speed: float = 1.0) -> None:
        self.fmt = fmt
        self.speed = speed
        # A minute of frames: the session holds scripted audio while it reconnects; a scenario
        # whose service is away longer has failed anyway, and the oldest frames give way.
        self._queue: Channel[bytes] = Channel(SOURCE_FRAMES, "drop_oldest")

    async def frames(self) -> Any:
        async for frame in self._queue:
            yield frame

    async def speak(self, pcm: bytes, tail_ms: int) -> None:
        """Queue speech then silence, one 20 ms frame per 20/speed ms of wall time."""
        step = self.fmt.frame_bytes
        pcm = pcm + bytes(self.fmt.bytes_for_ms(tail_ms))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, offset in enumerate(range(0, len(pcm), step)):
            frame = pcm[offset : offset + step]
            if self._queue.closed:
                return  # the run ended while this turn was being said
            self._queue.put(frame + bytes(step - len(frame)))
            due = start + (n + 1) * FRAME_MS / 1000 / self.speed - loop.time()
            if due > 0:
                await asyncio.sleep(due)  # pacing the microphone, as the wall clock would

    def close(self) -> None:
        self._queue.close()


def squeeze_pauses(pcm: bytes, rate: int, *, keep_ms: int = 60) -> bytes:
    """Trim leading/trailing quiet and shorten inner pauses, so one utterance is one VAD turn."""
    samples = np.frombuffer(pcm, dtype="<i2")
    win = max(1, rate // 100)
    n = len(samples) // win
    if n == 0:
        return pcm
    frames = samples[: n * win].reshape(n, win).astype(np.float32)
    loud = np.sqrt((frames * frames).mean(axis=1)) > 32768 * 10 ** (-45 / 20)
    if not loud.any():
        return pcm
    first, last = int(np.argmax(loud)), int(n - 1 - np.argmax(loud[::-1]))
    keep = max(1, keep_ms // 10)
    out: list[np.ndarray] = []
    quiet = 0
    for i in range(first, last + 1):
        quiet = 0 if loud[i] else quiet + 1
        if quiet <= keep:
            out.append(frames[i])
    return np.concatenate(out).astype("<i2").tobytes()


async def spoken(text: str, fmt: AudioFormat) -> bytes:
    """``text`` spoken by espeak-ng (a synthetic stand-in without it), as one utterance."""
    from runner.emulator.speech import synthesize

    return squeeze_pauses(await synthesize(text, fmt.rate, use_espeak=True), fmt.rate)
