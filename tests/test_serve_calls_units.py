"""The phone edges' shared audio parts on their own: hand-offs, bounds, frame slicing."""

from __future__ import annotations

import asyncio

from runner.live.audio import AudioFormat
from runner.serve.calls import MAX_OUTBOUND_MS, CallPlayer, CallSource

MULAW = AudioFormat(8000, 1, 1)


async def test_audio_that_arrives_during_a_hand_off_is_handed_off_without_another_frame() -> None:
    """The reader was busy with one hand-off when the next 100 ms arrived: it must not wait
    for yet another frame (the lost wake-up cost a frame, 20 ms, per hand-off)."""
    source = CallSource(MULAW)
    frames = source.frames()
    source.feed(bytes(800))  # 100 ms: one hand-off's worth
    assert len(await asyncio.wait_for(anext(frames), 1)) == 800
    source.feed(bytes(800))  # arrives while the reader handles the first
    assert len(await asyncio.wait_for(anext(frames), 1)) == 800
    source.close()
    await frames.aclose()


async def test_the_last_short_hand_off_is_delivered_when_the_source_closes() -> None:
    source = CallSource(MULAW)
    frames = source.frames()
    source.feed(bytes(160))
    source.close()
    assert [len(f) async for f in frames] == [160]


def test_caller_audio_queued_while_reconnecting_is_bounded() -> None:
    source = CallSource(MULAW)
    for _ in range(1000):  # 20 s of frames with nobody reading
        source.feed(bytes(160))
    assert source.dropped_bytes == 1000 * 160 - MULAW.bytes_for_ms(2000)


class Sink:
    def __init__(self) -> None:
        self.dropouts: list[str] = []

    def frame_delays(self, delays: list[float]) -> None:
        pass

    def dropout(self, kind: str) -> None:
        self.dropouts.append(kind)


class Wire:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send_audio(self, frame: bytes) -> None:
        self.frames.append(frame)

    async def send_clear(self) -> None:
        pass


def test_assistant_audio_queued_past_its_bound_is_dropped_and_counted() -> None:
    player = CallPlayer(MULAW)
    player.sink = sink = Sink()
    second = MULAW.bytes_for_ms(1000)
    for _ in range(MAX_OUTBOUND_MS // 1000 + 5):
        player.write("item", bytes(second))
    assert player.pending_ms() <= MAX_OUTBOUND_MS
    assert sink.dropouts == ["overflow"] * 5


async def test_one_long_write_leaves_as_whole_frames_in_order() -> None:
    player = CallPlayer(MULAW, lead_ms=10_000)  # no pacing wait: the frames' shapes only
    player.transport = wire = Wire()
    audio = bytes(range(256)) * 25  # 6400 bytes: 800 ms, 40 frames
    player.write("item", audio)
    pump = asyncio.create_task(player.pump())
    await asyncio.wait_for(player.drain(), 5)  # all sent, and played by the clock
    player.close()
    await asyncio.wait_for(pump, 5)
    assert [len(f) for f in wire.frames] == [160] * 40
    assert b"".join(wire.frames) == audio


def mulaw_frames(ms: int, *, loud: bool) -> list[bytes]:
    from tests.phone_callers import mulaw_tone

    audio = mulaw_tone(ms) if loud else b"\xff" * (8 * ms)
    return [audio[i : i + 160] for i in range(0, len(audio), 160)]


async def test_the_end_of_speech_is_handed_off_at_once_so_later_hand_offs_end_on_whole_quiet() -> (
    None
):
    """Issue 27: the VAD ends a turn after a whole number of 100 ms of quiet. Handed off on a
    100 ms grid that started anywhere, the last of that quiet reached it up to 80 ms late;
    cut where the speech ends, every later hand-off ends on whole 100 ms of quiet."""
    source = CallSource(MULAW)
    frames = source.frames()
    speech = mulaw_frames(840, loud=True)  # 840 ms of speech: 8 hand-offs and 40 ms
    for i in range(8):
        for frame in speech[5 * i : 5 * i + 5]:
            source.feed(frame)
        assert len(await asyncio.wait_for(anext(frames), 1)) == 800
    for frame in speech[40:]:
        source.feed(frame)
    quiet = mulaw_frames(300, loud=False)
    source.feed(quiet[0])  # the first quiet frame: the 40 ms of speech before it go now
    assert len(await asyncio.wait_for(anext(frames), 1)) == 320
    # the quiet after it, in whole 100 ms from where the speech ended
    for start, end in ((1, 5), (5, 10), (10, 15)):  # the first quiet frame is queued already
        for frame in quiet[start:end]:
            source.feed(frame)
        assert len(await asyncio.wait_for(anext(frames), 1)) == 800
    assert source.speech_ends == 1
    source.close()
    await frames.aclose()


def test_only_a_quiet_frame_after_speech_cuts_and_noise_is_not_quiet() -> None:
    source = CallSource(MULAW)
    for frame in mulaw_frames(100, loud=False) + mulaw_frames(40, loud=True):
        source.feed(frame)
    assert source.speech_ends == 0  # quiet before any speech: nothing to cut
    source.feed(mulaw_frames(20, loud=False)[0])
    assert source.speech_ends == 1
    pcm_source = CallSource(AudioFormat(16000))  # PCM: only the provider's word counts
    pcm_source.feed(bytes(640))
    pcm_source.feed(bytes(640), quiet=False)
    pcm_source.feed(bytes(640), quiet=True)
    assert pcm_source.speech_ends == 1
