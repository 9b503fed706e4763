"""What every phone edge shares: the caller's audio in, paced assistant audio out, call events.

A phone edge is the pair the live session already knows (:mod:`runner.live.audio`): a *source*
fed by the provider's media frames, and a *player* that sends assistant audio back paced at
real time (60 ms messages, :data:`OUTBOUND_FRAME_MS`), never more than ``lead_ms`` ahead of
what the caller hears. The lead is a few
hundred milliseconds: a stall anywhere on the machine shorter than that is not heard, and it
costs nothing at barge-in, since the provider throws what it holds away on ``clear`` /
``StopAudio`` and the played position (what the truncate tells the model) is what the caller
heard (marks) or the clock of what was sent, never what was merely sent.

Each provider says what was played in its own way: Twilio echoes marks once the audio before
them has played (:class:`MarkedPlayer`), ACS says nothing, so the clock of what was sent stands
in for it (:class:`CallPlayer`). The worker's one media clock (:mod:`runner.serve.media_clock`)
does every call's writes, so media, marks and clears never interleave mid-frame, and no call
keeps a timer of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from runner.live.audio import AudioFormat

if TYPE_CHECKING:
    from runner.serve.media_clock import MediaClock

log = logging.getLogger("vlrun.serve.calls")

FRAME_MS = 20  # the media clock's tick, and the providers' inbound frame
FRAME_S = FRAME_MS / 1000
# The assistant's audio goes to a phone provider 60 ms a message: Twilio and ACS play what they
# are sent whatever its size (their own samples send each service delta as one message,
# telephony-protocols.md 2.3 and 4), and a message costs its JSON, base64 and WebSocket frame
# whatever it holds. 480 bytes of μ-law are exactly 640 base64 characters (no padding).
OUTBOUND_FRAME_MS = 60
MARK_MS = 100  # a Twilio mark at least every this much audio (whole messages)
# How far assistant audio may run ahead of the caller's ear (the provider's buffer). At 100 ms a
# short stall of the worker, the service or the machine was an audible gap; the provider
# flushes this buffer on a barge-in, so a bigger one costs nothing there.
LEAD_MS = 360
# The caller's buffer is refilled this much at a time (two 60 ms messages and their mark, in one
# socket write): every service of a call costs its write, its wake-up and its bookkeeping
# whatever it carries, and the buffer never falls below LEAD_MS - REFILL_MS (240 ms), well
# above any stall seen on a loaded machine.
REFILL_MS = 120
# Below this much audio ahead of the caller, new audio leaves at once rather than at the clock's
# next tick: the first frame of a reply is not held back by up to a tick.
URGENT_MS = 40
HANDOFF_MS = 100  # caller audio is handed to the session this much at a time (its send size)
MAX_INBOUND_MS = 2000  # caller audio queued while the session (re)connects; older audio drops
MAX_OUTBOUND_MS = 60_000  # assistant audio queued ahead of the pacing; past it, audio drops
MARK_WAIT_S = 2.0  # how long a drain waits for the last mark's echo past the clock
#: Buffer levels are compared with this slack: the end of what was sent is a monotonic time
#: plus 20 ms a frame, and after 18 frames on a clock of days the sum can fall short of the
#: 360 ms lead by a rounding error, which sent a 19th frame
_TIME_EPS_S = 1e-6
_DELAYS_PER_FLUSH_MS = 1000  # frame delays go to the sink a second of audio at a time
MALFORMED_LIMIT = 50  # malformed media frames tolerated before the call is ended cleanly
_ITEMS_KEPT = 8  # replies whose sent/heard positions are kept (a truncate names a recent one)


QUIET_DBFS = -50.0  # below every VAD's threshold: a frame this quiet is silence to any of them
_LOUD_SAMPLES = 8  # of a 20 ms frame's 160: fewer above QUIET_DBFS and the frame is quiet


def _ulaw_magnitude(code: int) -> int:
    """The linear magnitude (of 32,124) of one G.711 μ-law code."""
    code = ~code & 0xFF
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    return (((mantissa << 3) + 0x84) << exponent) - 0x84


_QUIET_ULAW = bytes(c for c in range(256) if _ulaw_magnitude(c) < 32768 * 10 ** (QUIET_DBFS / 20))


class PlayerSink(Protocol):
    """Where a player reports as it plays (the worker's metrics), so a scrape mid-call sees it."""

    def frame_delays(self, delays: list[float]) -> None: ...

    def dropout(self, kind: str) -> None: ...


class Transport(Protocol):
    """The provider's side of one call's media socket, as the player writes to it."""

    async def send_audio(self, frame: bytes | memoryview) -> None: ...

    async def send_clear(self) -> None: ...


class CallSource:
    """The caller's audio as the live session reads it; the edge feeds it frame by frame.

    Audio is handed to the session 100 ms at a time (its append size), except at the end of
    the caller's speech: what came before the first quiet frame is handed off at once, so the
    hand-offs after it end on whole 100 ms of quiet. The service's VAD ends a turn after a
    silence of a whole number of 100 ms (``silence_duration_ms``: 200, 300, 500), and it
    hears that silence end the moment its last frame arrives, not up to 80 ms later with the
    next 100 ms boundary.
    """

    live = True  # audio that arrives while reconnecting is dropped by the input pump

    def __init__(self, fmt: AudioFormat, *, handoff_ms: int = HANDOFF_MS) -> None:
        self.fmt = fmt
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._limit = fmt.bytes_for_ms(MAX_INBOUND_MS)
        # The session appends 100 ms at a time anyway; waking it for every 20 ms frame would
        # cost five wake-ups per append.
        self._handoff = fmt.bytes_for_ms(handoff_ms)
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped_bytes = 0
        # When the provider last sent audio: the supervisor's sweep ends a call whose media
        # stopped (a caller that vanished without closing its socket).
        self.last_fed = time.monotonic()
        # μ-law: a frame is quiet when few of its samples are above QUIET_DBFS (a C-speed
        # count: the codes of quiet samples are deleted, what is left is counted)
        self._quiet_codes = _QUIET_ULAW if fmt.sample_width == 1 else None
        self._voiced = False  # the last frame was speech
        self._cut = 0  # frames at the head of the queue to hand off at once (speech ended)
        self.speech_ends = 0

    def feed(self, data: bytes, quiet: bool | None = None) -> None:
        """One frame from the provider; ``quiet``: the provider says it is silence (ACS's
        ``silent``), None: measured here (μ-law) or not known (PCM)."""
        if self.closed or not data:
            return
        self.last_fed = time.monotonic()
        if quiet is None and self._quiet_codes is not None:
            quiet = len(data.translate(None, self._quiet_codes)) < _LOUD_SAMPLES
        if quiet is not None:
            if quiet and self._voiced and self._queue:
                self._cut = len(self._queue)  # the speech before this frame: now
                self.speech_ends += 1
                self._wake.set()
            self._voiced = not quiet
        self._queue.append(data)
        self._queued += len(data)
        while self._queued > self._limit:  # a stalled reader never grows memory without bound
            old = self._queue.popleft()
            self._queued -= len(old)
            self.dropped_bytes += len(old)
            self._cut = max(0, self._cut - 1)
        if self._queued >= self._handoff:
            self._wake.set()

    async def frames(self) -> AsyncIterator[bytes]:
        while True:
            # Checked before every wait: audio that came while the reader was busy with the
            # last hand-off is handed off now, not one frame later (no lost wake-up).
            if self._cut:
                queue, n = self._queue, self._cut
                data = b"".join([queue.popleft() for _ in range(n)])
                self._cut = 0
                self._queued -= len(data)
                yield data  # the speech before the caller went quiet
                continue
            if self._queued >= self._handoff or (self._queue and self.closed):
                data = b"".join(self._queue)  # one hand-off: what has come since the last
                self._queue.clear()
                self._queued = 0
                self._wake.clear()
                yield data
                continue
            if self.closed:
                return
            self._wake.clear()
            await self._wake.wait()

    def close(self) -> None:
        self.closed = True
        self._wake.set()


class CallPlayer:
    """Assistant audio to the caller: ``frame_ms`` frames (the phone edges send 60 ms) paced
    at real time, at most ``lead_ms`` ahead.

    ``write`` only queues (the session calls it from its receive loop); the worker's
    :class:`~runner.serve.media_clock.MediaClock` sends, calling :meth:`service` at each tick
    (or at once when the caller is about to run dry). The played position of the current item
    is what was sent minus what the provider still holds by the clock: the provider plays at
    real time from the moment a frame arrives.
    """

    def __init__(
        self,
        fmt: AudioFormat,
        *,
        lead_ms: int = LEAD_MS,
        refill_ms: int = REFILL_MS,
        frame_ms: int = FRAME_MS,
    ) -> None:
        self.fmt = fmt
        self.frame_ms = frame_ms
        self.lead_s = lead_ms / 1000
        self.low_s = max(0, lead_ms - refill_ms) / 1000  # a refill starts below this
        # Below this much audio ahead of the caller, new audio is sent at once, not at the
        # next tick: the first frame of a reply, or a caller about to run dry.
        self.urgent_s = min(self.lead_s, URGENT_MS / 1000)
        self.transport: Transport | None = None
        self.sink: PlayerSink | None = None
        self.clock: MediaClock | None = None  # set by MediaClock.add
        self.clock_due = 0.0  # when the clock plans to serve it next (the clock's note)
        self._frame = fmt.bytes_for_ms(frame_ms)
        self._limit = fmt.bytes_for_ms(MAX_OUTBOUND_MS)
        # (item, audio, when it arrived): the arrival time tells a late worker from late audio
        self._queue: collections.deque[tuple[str, memoryview, float]] = collections.deque()
        self._offset = 0  # bytes of the head of the queue already sent
        self._queued = 0
        # A frame being assembled across writes (the end of one write, the start of the next)
        self._carry: bytes = b""
        self._carry_item: str | None = None
        self._carry_at = 0.0
        self._short_since: float | None = None  # a short tail waiting for more of its item
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed_event = asyncio.Event()
        self._end = 0.0  # monotonic time when the provider will have played all that was sent
        self._item: str | None = None  # the item being played (last written)
        self._sent_ms: dict[str, float] = {}  # item -> ms of it sent to the provider
        self._last_sent_item: str | None = None
        self._clear = False  # a clear is owed to the provider (sent before any new audio)
        self._closed = False
        self.generation = 0  # bumped by every interrupt: marks of older generations are stale
        self.frames_sent = 0
        # Frames of a reply sent after the provider's buffer had run dry: by the worker's fault
        # (the audio was here in time) or because the service's audio itself came late.
        self.underruns = 0
        self.starved = 0
        # seconds each frame left later than it could have: handed to the sink a second at a
        # time (one histogram update per frame would cost more than the frame)
        self._delays: list[float] = []
        self.clears = 0
        self.interrupts = 0
        self.error: Exception | None = None  # why the outbound audio stopped (a failed send)

    # ------------------------------------------------------------------ the session's side

    def write(self, item_id: str, pcm: bytes) -> None:
        if self._closed or not pcm:
            return
        if self._queued + len(pcm) > self._limit:
            # A minute of reply audio not yet sent: the caller's side has stopped taking it.
            # Bounded all the same: the newest is dropped and counted, never memory.
            self._dropout("overflow")
            return
        if item_id != self._item:
            self._item = item_id
        now = time.monotonic()
        self._queue.append((item_id, memoryview(pcm), now))
        self._queued += len(pcm)
        self._idle.clear()
        if self.clock is not None:
            self.clock.due(self, urgent=self._end - now < self.urgent_s)

    def played_ms(self) -> int:
        item = self._item
        if item is None:
            return 0
        return int(self._played_of(item))

    def _played_of(self, item: str) -> float:
        sent = self._sent_ms.get(item, 0.0)
        if item != self._last_sent_item:
            return sent
        return max(0.0, sent - self._remaining_s() * 1000)

    def _remaining_s(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def pending_ms(self) -> float:
        return self.fmt.ms_for_bytes(self._queued + len(self._carry)) + self._remaining_s() * 1000

    def interrupt(self) -> tuple[str | None, int]:
        item = self._item
        played = int(self._played_of(item)) if item is not None else 0
        if self._queue or self._carry or self._remaining_s() > 0:
            self._clear = True  # the provider still holds audio: have it thrown away
            if self.clock is not None:
                self.clock.due(self, urgent=True)
        self._queue.clear()
        self._offset = 0
        self._queued = 0
        self._drop_carry()
        self._end = time.monotonic()
        self._item = None
        self.generation += 1
        self.interrupts += 1
        self._idle.set()  # nothing left to play; the clear goes out at once
        return item, played

    async def drain(self) -> None:
        await self._idle.wait()
        remaining = self._remaining_s()
        if remaining > 0:
            await asyncio.sleep(remaining)  # the known play-out time of what was sent

    def flush(self) -> None:
        """Hand the frame delays measured so far to the sink."""
        if self._delays and self.sink is not None:
            self.sink.frame_delays(self._delays)
        self._delays = []

    def _dropout(self, kind: str) -> None:
        if self.sink is not None:
            self.sink.dropout(kind)

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._queue.clear()
        self._offset = 0
        self._queued = 0
        self._drop_carry()
        self._clear = False
        self._idle.set()
        self._closed_event.set()
        if self.clock is not None:
            self.clock.remove(self)

    def failed(self, exc: Exception) -> None:
        """A send failed (the socket closed under it): this call's outbound audio is over."""
        self.error = exc
        self._queue.clear()
        self._queued = 0
        self._drop_carry()
        self._clear = False
        self._idle.set()
        self._closed_event.set()

    def _drop_carry(self) -> None:
        self._carry, self._carry_item, self._short_since = b"", None, None

    # ------------------------------------------------------------------ the clock's side

    def next_due(self) -> float:
        """When the clock must serve this player next (monotonic; inf: it has nothing)."""
        if self._clear:
            return 0.0
        if self._carry and not self._queue and self._short_since is not None:
            return self._short_since + FRAME_S  # a short tail waits one tick for more
        if self._queue or self._carry:
            return self._end - self.low_s  # when its caller's buffer reaches the refill mark
        return math.inf

    def has_work(self) -> bool:
        """Something to send: audio queued or assembled, or a clear owed."""
        return bool(self._clear or self._queue or self._carry) and not self._closed

    async def pump(self) -> None:
        """Play on a clock of this player's own until closed (a player outside a worker)."""
        from runner.serve.media_clock import MediaClock

        clock = MediaClock()
        clock.add(self)
        try:
            await self._closed_event.wait()
        finally:
            await clock.close()

    async def service(self, now: float, due_at: float) -> None:
        """Send what is due: an owed clear first, then, once the caller's buffer is down to
        ``lead_ms - refill_ms``, frames until it holds ``lead_ms`` again (a refill: a few
        frames and their mark, written to the socket at once). ``due_at`` is when the clock
        should have served this player (its tick, or when it became urgent): a frame's added
        delay is counted from then."""
        transport = self.transport
        assert transport is not None
        try:
            await self._fill(transport, now, due_at)
        finally:
            flush = getattr(transport, "flush", None)
            if flush is not None:
                flush()  # the refill's frames and marks: one socket write

    async def _fill(self, transport: Transport, now: float, due_at: float) -> None:
        writable = getattr(transport, "writable", None)
        if not self._clear and self._end - now >= self.low_s - _TIME_EPS_S:
            return  # the caller's buffer is above the refill mark
        while not self._closed:
            if self._clear:
                self._clear = False
                self._drop_carry()
                self.clears += 1
                await transport.send_clear()
                self.on_cleared()
                continue
            if self._end - now >= self.lead_s - _TIME_EPS_S:
                return  # the caller's buffer holds the lead: the next tick tops it up
            if writable is not None and not writable():
                return  # the socket has a backlog (its peer is slow): never wait on it here
            frame = self._take_frame(now)
            if frame is None:
                return
            generation = self.generation
            item = self._carry_item or ""
            carry_at = self._carry_at
            self._drop_carry()
            # What the worker added: from when this frame was due to leave (its audio here,
            # the clock's tick or urgent wake-up) to when it did.
            self._delays.append(max(0.0, now - max(carry_at, due_at)))
            if len(self._delays) * self.frame_ms >= _DELAYS_PER_FLUSH_MS:
                self.flush()
            if item == self._last_sent_item and self._end > 0 and now > self._end + FRAME_S:
                # the caller heard a gap inside one reply
                if carry_at <= self._end:
                    self.underruns += 1  # the audio was here before the buffer ran dry
                    self._dropout("underrun")
                else:
                    self.starved += 1
                    self._dropout("audio_late")
            frame_ms = len(frame) / self._bytes_per_ms
            if item != self._last_sent_item and len(self._sent_ms) >= _ITEMS_KEPT:
                _forget_oldest(self._sent_ms)  # a call of a thousand replies stays small
            self._end = max(now, self._end) + frame_ms / 1000
            self._sent_ms[item] = self._sent_ms.get(item, 0.0) + frame_ms
            self._last_sent_item = item
            self.frames_sent += 1
            await transport.send_audio(frame)
            if generation == self.generation:  # not interrupted while the frame left
                await self.after_frame(item, self._sent_ms[item])
            if not self._queue and not self._carry and not self._clear:
                self._idle.set()

    @property
    def _bytes_per_ms(self) -> float:
        return self._frame / self.frame_ms

    def _take_frame(self, now: float) -> bytes | memoryview | None:
        """The next frame to send (whole, or a short end of an item), assembled into the
        carry; None when it must wait (a short tail waits a tick for more of its item)."""
        size = self._frame
        carry = self._carry
        queue = self._queue
        if not carry and queue:
            item, data, at = queue[0]
            start = self._offset
            if len(data) - start >= size:
                # the usual case: a whole frame inside one write, an offset into it (no copy,
                # no re-slice of its rest)
                frame = data[start : start + size]
                if start + size == len(data):
                    queue.popleft()
                    self._offset = 0
                else:
                    self._offset = start + size
                self._queued -= size
                self._carry_item, self._carry_at = item, at
                return frame
        while len(carry) < size and queue:
            item, data, at = queue[0]
            if carry and item != self._carry_item:
                break
            start = self._offset
            take = data[start : start + size - len(carry)]
            if not carry:
                self._carry_at = at
            carry += take
            self._carry_item = item
            self._queued -= len(take)
            if start + len(take) >= len(data):
                queue.popleft()
                self._offset = 0
            else:
                self._offset = start + len(take)
        self._carry = carry
        if not carry:
            return None
        if len(carry) < size and not queue:
            # a short tail: wait a tick for more of the same item before sending it short
            if self._short_since is None:
                self._short_since = now
                return None
            if now - self._short_since < FRAME_S:
                return None
        return carry

    async def after_frame(self, item: str, sent_ms: float) -> None:
        """Called after each frame left (the marked player sends its mark here)."""

    def on_cleared(self) -> None:
        """Called after a clear was sent."""


class MarkedPlayer(CallPlayer):
    """A player whose provider echoes marks once the audio before them has played (Twilio).

    Every few frames (and at the end of what is queued) a mark follows, named
    ``<generation>:<seq>``; an echo says the frames before it were heard, and the marks of a
    cleared generation are stale however they come back. The played position is the confirmed
    one, never the clock's guess, so a truncate never claims audio the caller did not hear.
    """

    def __init__(
        self,
        fmt: AudioFormat,
        *,
        lead_ms: int = LEAD_MS,
        frame_ms: int = FRAME_MS,
        mark_ms: int = MARK_MS,
    ) -> None:
        super().__init__(fmt, lead_ms=lead_ms, frame_ms=frame_ms)
        # A mark per ``mark_ms`` (rounded up to whole frames): the played position is known to
        # that, always rounded down, at a fraction of the messages a mark per frame would cost.
        self.mark_every = max(1, math.ceil(mark_ms / frame_ms))
        self._seq = itertools.count(1)
        self._since_mark = 0
        self._marks: dict[str, tuple[str, float]] = {}  # mark name -> (item, sent ms after it)
        self._heard: dict[str, float] = {}  # item -> ms confirmed played
        self._all_heard = asyncio.Event()  # every mark sent has come back
        self._all_heard.set()
        self.stale_marks = 0

    async def after_frame(self, item: str, sent_ms: float) -> None:
        self._since_mark += 1
        if self._since_mark < self.mark_every and self._queue and self._queue[0][0] == item:
            return
        self._since_mark = 0
        name = f"{self.generation}:{next(self._seq)}"
        self._marks[name] = (item, sent_ms)
        self._all_heard.clear()
        await self.transport.send_mark(name)  # type: ignore[union-attr]

    def on_cleared(self) -> None:
        self._marks.clear()  # marks of cleared audio say nothing about what was heard
        self._since_mark = 0
        self._all_heard.set()

    async def drain(self) -> None:
        """Until the caller has heard it all: the clock, then the last mark's echo (bounded,
        as a provider that stops echoing must not hold a hang-up for ever)."""
        await super().drain()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._all_heard.wait(), MARK_WAIT_S)

    def mark_echoed(self, name: str) -> None:
        found = self._marks.pop(name, None)
        if found is None:
            self.stale_marks += 1
            return
        item, ms = found
        if item not in self._heard and len(self._heard) >= _ITEMS_KEPT:
            _forget_oldest(self._heard)
        self._heard[item] = max(self._heard.get(item, 0.0), ms)
        if not self._marks:
            self._all_heard.set()
        if not self._marks and not self._queue and self._last_sent_item == item:
            self._end = min(self._end, time.monotonic())  # the provider has played it all

    def _played_of(self, item: str) -> float:
        return self._heard.get(item, 0.0)

    def pending_ms(self) -> float:
        unconfirmed = self._sent_ms.get(self._last_sent_item or "", 0.0) - self._heard.get(
            self._last_sent_item or "", 0.0
        )
        return self.fmt.ms_for_bytes(self._queued) + (max(0.0, unconfirmed) if self._marks else 0)


def _forget_oldest(positions: dict[str, float]) -> None:
    del positions[next(iter(positions))]


@dataclass
class CallEdge:
    """One phone call as the conversation sees it: audio both ways plus the call's events."""

    provider: str  # "twilio" | "acs"
    source: CallSource
    player: CallPlayer
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    caller: str = ""
    called: str = ""
    provider_call_id: str = ""  # CallSid / callConnectionId
    started_at: float = field(default_factory=time.time)
    dtmf: list[str] = field(default_factory=list)
    malformed: int = 0
    outcome: str = ""  # completed | caller_hung_up | dropped | malformed | refused | drained
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the provider ended the call
    dtmf_listeners: list[Callable[[str], None]] = field(default_factory=list)
    hang_up: Callable[[], Awaitable[None]] | None = None  # closes the media socket / the call
    transfer: Callable[[str], Awaitable[None]] | None = None  # to a number or sip: URI
    send_dtmf: Callable[[str], Awaitable[None]] | None = None  # None: the edge cannot
    # How the session reaches Voice Live when not through the SDK's connect() (a SIP call's
    # attached socket); such a call has one connection: when it drops, the call is over.
    opener: Any = None

    def on_dtmf(self, digit: str) -> None:
        self.dtmf.append(digit)
        for listener in list(self.dtmf_listeners):
            try:
                listener(digit)
            except Exception:  # one listener's bug must not end the call
                log.exception("call %s: a DTMF listener failed", self.call_id)

    def bad_frame(self, reason: str, sample: Any) -> bool:
        """Count a malformed media frame; True once the call should end (past the limit)."""
        self.malformed += 1
        text = str(sample)[:120]
        log.warning(
            "call %s: malformed %s frame (%s): %s", self.call_id, self.provider, reason, text
        )
        return self.malformed >= MALFORMED_LIMIT

    def end(self, outcome: str) -> None:
        if not self.outcome:
            self.outcome = outcome
        self.source.close()
        self.ended.set()
