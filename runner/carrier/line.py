"""One call's media on a 20 ms clock: the caller's mouth, its ear, and turn-taking.

A phone speaks and hears at real time, so this does too: every 20 ms the mouth sends one frame
(what the caller is saying, else silence, as carriers stream silence too) and the ear plays
one frame of what it has received. What was played is what the caller *heard*: the recording,
the marks Twilio echoes, and the turn summary count that, not what merely arrived. A ``clear``
drops what the ear holds, as a carrier's play-out buffer does. The sleeps here are that clock,
never a wait for the server; every wait for the server has a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runner.aio import Changes, Deadline

FRAME_MS = 20
MAX_RECORD_S = 3600.0  # the recording is bounded: an hour of audio at most


@dataclass(frozen=True)
class Heard:
    """What one turn got back."""

    heard_ms: float  # reply audio played to the caller
    first_ms: float | None  # from the end of the caller's turn to the reply's first audio
    ended: bool = False  # the call ended during the turn
    said: str = ""  # a text turn on a call without media: what became of it

    def line(self, number: int, what: str) -> str:
        head = f"turn {number} ({what})" if number else what
        if self.said:
            return f"{head}: {self.said}"
        if self.first_ms is None:
            return f"{head}: heard nothing ({'the call ended' if self.ended else 'no reply'})"
        ended = " (the call ended)" if self.ended else ""
        first = f"first audio after {self.first_ms:.0f} ms"
        return f"{head}: heard {self.heard_ms:.0f} ms, {first}{ended}"


class Line:
    """The caller's side of one media stream. ``send`` sends one frame of PCM16 at ``rate``;
    ``echo`` answers a mark once the audio before it has played (Twilio)."""

    def __init__(
        self,
        rate: int,
        send: Callable[[bytes], Awaitable[None]],
        echo: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.rate = rate
        self.frame_bytes = rate * 2 * FRAME_MS // 1000
        self._send = send
        self._echo = echo
        self.changes = Changes()
        self.closed = asyncio.Event()
        self.mouth = bytearray()  # what the caller still has to say
        self.unplayed = bytearray()  # what the ear holds, not yet played
        self.received = 0  # bytes of audio that arrived
        self.played = 0  # bytes of audio played to the caller (the heard position)
        self.record = bytearray()  # everything the ear played, silence included
        self.marks: collections.deque[tuple[int, str]] = collections.deque()
        self.first_audio: float | None = None  # when a reply's first audio arrived
        self.last_sound = 0.0  # when the ear last played audio
        self.clears = 0
        self.frames_sent = 0
        self._max_record = int(MAX_RECORD_S * rate * 2)

    # ------------------------------------------------------------------ from the server

    def hear(self, pcm: bytes) -> None:
        """Audio from the server (PCM16 at ``rate``): queued for the ear."""
        if self.first_audio is None:
            self.first_audio = time.monotonic()
        self.unplayed += pcm
        self.received += len(pcm)
        self.changes.notify()

    def mark(self, name: str) -> None:
        """A mark after the audio received so far: echoed once that has played."""
        self.marks.append((self.received, name))

    async def clear(self) -> None:
        """Drop what the ear holds; the marks of the dropped audio are echoed at once."""
        self.clears += 1
        self.received -= len(self.unplayed)
        self.unplayed.clear()
        while self.marks:
            _, name = self.marks.popleft()
            await self._answer(name)
        self.changes.notify()

    def hung_up(self) -> None:
        self.closed.set()
        self.changes.notify()

    # ------------------------------------------------------------------ the clock

    async def run(self) -> None:
        """The 20 ms clock, until the call ends: one frame out, one frame played."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not self.closed.is_set():
            n += 1
            # the simulated phone's clock, not a wait for the server
            await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))
            frame = bytes(self.mouth[: self.frame_bytes])
            del self.mouth[: self.frame_bytes]
            frame += bytes(self.frame_bytes - len(frame))
            try:
                await self._send(frame)
                self.frames_sent += 1
            except Exception:  # the socket closed under us: the call is over
                self.hung_up()
                return
            played = bytes(self.unplayed[: self.frame_bytes])
            del self.unplayed[: self.frame_bytes]
            if played:
                self.played += len(played)
                self.last_sound = time.monotonic()
            if len(self.record) < self._max_record:
                self.record += played + bytes(self.frame_bytes - len(played))
            while self.marks and self.marks[0][0] <= self.played:
                _, name = self.marks.popleft()
                await self._answer(name)
            self.changes.notify()

    async def _answer(self, name: str) -> None:
        if self._echo is not None:
            with contextlib.suppress(Exception):  # the socket may close between frames
                await self._echo(name)

    # ------------------------------------------------------------------ turns

    async def say(self, pcm: bytes, deadline: Deadline) -> bool:
        """Speak ``pcm`` at real time; False if the call ended or the deadline passed first."""
        self.mouth += pcm
        self.changes.notify()
        done = await self.changes.until(
            lambda: not self.mouth or self.closed.is_set(), deadline.left()
        )
        return done and not self.closed.is_set()

    def expect_reply(self) -> None:
        """From now, the first audio that arrives is the reply's."""
        self.first_audio = None

    async def reply(self, since: float, first_s: float, quiet_ms: float, most_s: float) -> Heard:
        """Wait for the reply to start (within ``first_s``) and finish: the ear has played
        everything and heard no more for ``quiet_ms`` (within ``most_s`` in all)."""
        played_before = self.played
        got = await self.changes.until(
            lambda: self.first_audio is not None or self.closed.is_set(), first_s
        )
        if not got or self.first_audio is None:
            return Heard(0.0, None, ended=self.closed.is_set())
        first_ms = max(0.0, (self.first_audio - since) * 1000)
        quiet_s = quiet_ms / 1000

        def finished() -> bool:
            if self.closed.is_set():
                return True
            return not self.unplayed and time.monotonic() - self.last_sound >= quiet_s

        await self.changes.until(finished, most_s)
        heard = (self.played - played_before) / (self.rate * 2) * 1000
        return Heard(heard, first_ms, ended=self.closed.is_set())

    async def listen(self, first_s: float, quiet_ms: float, most_s: float) -> Heard:
        """A greeting: whatever the server says before the caller's first turn."""
        return await self.reply(time.monotonic(), first_s, quiet_ms, most_s)
