"""The worker's one media clock: every call's outbound frames on one timer (issue 27).

Real players (runner.serve.calls.CallPlayer) on a real MediaClock; the transports record what
the clock sent and when. Nothing here sleeps to synchronise: each wait is on a condition that
every send re-checks (runner.aio.Changes), with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from runner.aio import Changes
from runner.live.audio import AudioFormat
from runner.serve.calls import FRAME_MS, LEAD_MS, CallPlayer, MarkedPlayer
from runner.serve.media_clock import MediaClock

MULAW = AudioFormat(8000, 1, 1)
SECOND = MULAW.bytes_for_ms(1000)
LEAD_FRAMES = LEAD_MS // FRAME_MS  # what leaves at once when a reply starts


class Wire:
    """A media socket as the clock writes to it."""

    def __init__(
        self, name: str, log: list[tuple[int, str]], clock: MediaClock, changes: Changes
    ) -> None:
        self.name, self.log, self.clock, self.changes = name, log, clock, changes
        self.frames: list[bytes] = []
        self.clears = 0
        self.marks: list[str] = []
        self.sent = asyncio.Event()
        self.fail: Exception | None = None
        self.backlog = False
        self.on_send: Callable[[], None] | None = None

    def writable(self) -> bool:
        return not self.backlog

    async def send_audio(self, frame: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.frames.append(bytes(frame))
        self.log.append((self.clock.ticks, self.name))
        self.sent.set()
        self.changes.notify()
        if self.on_send is not None:
            self.on_send()

    async def send_clear(self) -> None:
        self.clears += 1
        self.sent.set()

    async def send_mark(self, name: str) -> None:
        self.marks.append(name)


CHANGES = Changes()  # every send notifies: the tests' conditions are re-checked on each


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    assert await CHANGES.until(predicate, timeout), "not within the deadline"


def players(
    clock: MediaClock, n: int, log: list[tuple[int, str]], cls: type[CallPlayer] = CallPlayer
) -> list[tuple[CallPlayer, Wire]]:
    out = []
    for i in range(n):
        player = cls(MULAW)
        player.transport = wire = Wire(f"call{i}", log, clock, CHANGES)
        clock.add(player)
        out.append((player, wire))
    return out


async def test_one_clock_serves_every_call_fairly_in_a_rotating_order() -> None:
    """Every call gets its frames at the same pace, and no call is always served last: each
    pass starts at a random call."""
    clock = MediaClock()
    log: list[tuple[int, str]] = []
    calls = players(clock, 8, log)
    try:
        for player, _ in calls:
            player.write("reply", bytes(10 * SECOND))
        await until(lambda: all(len(w.frames) >= 100 for _, w in calls))
        counts = [len(wire.frames) for _, wire in calls]
        assert max(counts) - min(counts) <= 1, counts  # the same pace for every call
        firsts: dict[int, str] = {}
        for tick, name in log:
            firsts.setdefault(tick, name)
        # who is served first changes from one pass to the next
        assert len(set(firsts.values())) >= 4, firsts
    finally:
        await clock.close()


async def test_a_call_leaving_mid_tick_is_not_served_again_and_nothing_is_left_running() -> None:
    clock = MediaClock()
    log: list[tuple[int, str]] = []
    (a, wire_a), (b, wire_b) = players(clock, 2, log)
    left = []

    def a_ends_b() -> None:  # while the clock serves A, B's call ends (its socket closed)
        if not left:
            left.append(len(wire_b.frames))
            b.close()

    wire_a.on_send = a_ends_b
    a.write("reply", bytes(SECOND))
    b.write("reply", bytes(SECOND))
    await until(lambda: len(wire_a.frames) >= 20)  # five ticks on
    assert len(wire_b.frames) == left[0]  # nothing after it left
    assert b.clock is None and len(clock) == 1
    a.close()
    assert await clock.stopped(2)  # the last call gone: the clock's task ended by itself
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "vlrun-media-clock"]
    await clock.close()


async def test_the_clock_is_one_task_whatever_the_number_of_calls() -> None:
    clock = MediaClock()
    before = len(asyncio.all_tasks())
    log: list[tuple[int, str]] = []
    calls = players(clock, 100, log)
    try:
        assert len(asyncio.all_tasks()) == before + 1
        for player, _ in calls:
            player.write("reply", bytes(SECOND))
        await until(lambda: all(w.frames for _, w in calls))
    finally:
        await clock.close()
    assert not clock.running


async def test_the_lead_is_whole_frames_whatever_the_monotonic_clock_reads() -> None:
    """A reply's start fills the caller's buffer to exactly the lead. The end of what was sent
    is the clock's time plus 20 ms a frame; on a clock of days the 18 frames' sum fell short
    of 360 ms by a rounding error and a 19th frame went (the CI run failed on it)."""
    for now in (1.0, 52_837.829, 250_000.25):  # the last two: 18 x 20 ms sums short of 360
        player = CallPlayer(MULAW)  # on no clock: served here, at the time given
        player.transport = wire = Wire("call", [], MediaClock(), CHANGES)
        player.write("reply", bytes(SECOND))
        await player.service(now, now)
        assert len(wire.frames) == LEAD_FRAMES, now
        await player.service(now + 0.001, now + 0.001)  # still above its refill mark
        assert len(wire.frames) == LEAD_FRAMES, now


async def test_audio_is_sent_at_the_tick_without_anything_waking_the_clock() -> None:
    """The clock's wait has a deadline (its tick): audio queued while the caller's buffer is
    full is sent when the buffer needs it, with no event from the player; with one call the
    clock ticks only when that call needs a refill."""
    clock = MediaClock()
    log: list[tuple[int, str]] = []
    [(player, wire)] = players(clock, 1, log)
    try:
        player.write("reply", bytes(SECOND))  # the lead leaves at once
        await until(lambda: len(wire.frames) >= LEAD_FRAMES)
        wakeups, ticks = clock.urgent_wakeups, clock.ticks
        await until(lambda: len(wire.frames) >= LEAD_FRAMES + 8)  # two refills, at ticks
        assert clock.urgent_wakeups == wakeups
        # one call: a tick per refill (once 60-80 ms have played), not one every 20 ms
        assert 2 <= clock.ticks - ticks <= 4
    finally:
        await clock.close()


async def test_the_first_frame_of_a_reply_and_a_clear_do_not_wait_for_the_tick() -> None:
    """A caller with nothing buffered gets the reply's first audio at once, and a barge-in's
    clear leaves at once: the clock's next tick is ten seconds away here."""
    clock = MediaClock(tick_ms=10_000)
    log: list[tuple[int, str]] = []
    [(player, wire)] = players(clock, 1, log)
    try:
        player.write("reply", bytes(SECOND))
        await asyncio.wait_for(wire.sent.wait(), 2)
        assert len(wire.frames) == LEAD_FRAMES  # up to the lead, at once
        wire.sent.clear()
        player.interrupt()
        await asyncio.wait_for(wire.sent.wait(), 2)
        assert wire.clears == 1
        assert clock.ticks == 0
    finally:
        await clock.close()


async def test_a_failed_socket_ends_that_call_only_and_a_slow_one_never_stalls_the_clock() -> None:
    clock = MediaClock()
    log: list[tuple[int, str]] = []
    (broken, wire_broken), (slow, wire_slow), (fine, wire_fine) = players(clock, 3, log)
    try:
        wire_broken.fail = ConnectionResetError("closed under the frame")
        wire_slow.backlog = True  # its peer stopped reading
        for player, _ in ((broken, 0), (slow, 0), (fine, 0)):
            player.write("reply", bytes(SECOND))
        await until(lambda: len(wire_fine.frames) >= 25)
        assert isinstance(broken.error, ConnectionResetError) and clock.failed == 1
        assert broken.clock is None
        assert wire_slow.frames == []  # skipped while its backlog lasts, never waited on
        wire_slow.backlog = False
        await until(lambda: len(wire_slow.frames) >= LEAD_FRAMES)
    finally:
        await clock.close()


@pytest.mark.parametrize("cls", [CallPlayer, MarkedPlayer])
async def test_a_frame_leaves_whole_in_order_across_writes_that_split_frames(
    cls: type[CallPlayer],
) -> None:
    """Writes that are not whole frames (Voice Live's deltas vary) still leave as 20 ms
    frames, in order, with only the reply's last frame short."""
    clock = MediaClock()
    log: list[tuple[int, str]] = []
    [(player, wire)] = players(clock, 1, log, cls)
    audio = bytes(range(256)) * 13  # 3328 bytes
    try:
        for start in range(0, len(audio), 250):
            player.write("reply", audio[start : start + 250])
        await until(lambda: sum(map(len, wire.frames)) == len(audio))
        assert [len(f) for f in wire.frames] == [160] * 20 + [128]
        assert b"".join(wire.frames) == audio
    finally:
        await clock.close()


class _Recorder:
    """An asyncio transport that records what is written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.mark.parametrize("size", [0, 1, 125, 126, 300, 65535, 65536])
async def test_a_batched_frame_is_byte_for_byte_what_aiohttp_writes(size: int) -> None:
    """The media clock frames its messages itself (to write a refill at once): the frames
    must be exactly aiohttp's server frames, at each length boundary of RFC 6455."""
    from aiohttp import WSMsgType
    from aiohttp._websocket.writer import WebSocketWriter

    from runner.speedups import text_frame

    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    recorder = _Recorder()
    writer = WebSocketWriter(_Protocol(), recorder, use_mask=False)  # type: ignore[arg-type]
    await writer.send_frame(payload, WSMsgType.TEXT)
    assert text_frame(payload) == b"".join(recorder.written)


class _Protocol:
    _paused = False


async def test_a_refill_is_one_socket_write_and_a_closed_socket_ends_the_call() -> None:
    from runner.serve.ws_batch import BatchedSocket

    class Ws:
        closed = False

    ws, recorder = Ws(), _Recorder()
    out = BatchedSocket(ws, recorder, 1024)
    for n in range(4):
        out.add(b"frame %d" % n)
    out.flush()
    out.flush()  # nothing left: no empty write
    assert len(recorder.written) == 1 and recorder.written[0].count(b"frame") == 4
    ws.closed = True
    out.add(b"late")
    with pytest.raises(ConnectionResetError):
        out.flush()


async def test_an_idle_clock_does_not_tick_and_wakes_for_the_next_reply() -> None:
    """Between replies no call has audio to send: the clock waits without ticking, and new
    audio for any call wakes it (here the ticks are ten seconds apart: only the wake-up can
    send the second write, which is not urgent, its caller having 100 ms in hand)."""
    clock = MediaClock(tick_ms=10_000)
    log: list[tuple[int, str]] = []
    [(player, wire)] = players(clock, 1, log)
    try:
        player.write("reply", bytes(MULAW.bytes_for_ms(100)))
        await until(lambda: len(wire.frames) == 5)
        await until(lambda: not player.has_work())
        player.write("reply", bytes(MULAW.bytes_for_ms(100)))  # 100 ms still in the buffer
        await until(lambda: len(wire.frames) == 10)
        assert clock.idle_timeouts == 0  # woken by the write, not by the idle wait's deadline
    finally:
        await clock.close()


async def test_a_long_reply_to_an_idle_clock_is_all_sent_after_its_urgent_start() -> None:
    """The clock was idle (no plan); a reply's start is served at once (urgent), and the rest
    of it, more than the lead, must follow at the clock's ticks: the urgent service plans them."""
    clock = MediaClock()
    log: list[tuple[int, str]] = []
    [(player, wire)] = players(clock, 1, log)
    try:
        player.write("hello", bytes(160))
        await until(lambda: len(wire.frames) == 1 and not player.has_work())  # idle again
        player.write("reply", bytes(SECOND))
        await until(lambda: len(wire.frames) == 1 + 50)
    finally:
        await clock.close()


class CountingPlayer(CallPlayer):
    services = 0
    idle_services = 0  # served and sent nothing

    async def service(self, now: float, due_at: float) -> None:
        self.services += 1
        wire = self.transport
        assert isinstance(wire, Wire)
        before = len(wire.frames)
        await super().service(now, due_at)
        self.idle_services += len(wire.frames) == before


async def test_a_call_above_its_refill_mark_is_not_served_at_other_calls_ticks() -> None:
    """Two calls refill at different moments, so the clock ticks for one while the other's
    buffer is full: that one is not served (it would send nothing), only compared."""
    clock = MediaClock()
    log: list[tuple[int, str]] = []
    (a, wire_a), (b, wire_b) = players(clock, 2, log, CountingPlayer)
    try:
        a.write("reply", bytes(2 * SECOND))
        await until(lambda: len(wire_a.frames) >= LEAD_FRAMES + 2)  # A's first refill
        b.write("reply", bytes(2 * SECOND))  # B's refills fall between A's
        await until(lambda: len(wire_b.frames) >= 100 and len(wire_a.frames) >= 100)
        for player in (a, b):
            # served only to send: a call above its refill mark is compared, not served (a
            # late clock may serve a call urgently between two ticks; that one sends)
            assert isinstance(player, CountingPlayer)
            assert player.idle_services <= 2, (player.services, player.idle_services)
        assert clock.ticks > len({tick for tick, who in log if who == "call0"}) + 2
    finally:
        await clock.close()
