"""What one live session keeps per call stays bounded however long the call lasts (issue 25,
"per-call lists and dicts that grow for the whole call": the timing lists in
``runner/live/state.py`` and the received-audio dict in ``runner/live/session.py``).

Real SDK against the emulator, many turns; the bounds are turned down so that a few dozen
turns go past them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.emulator import running_emulator
from runner.live import session as session_module
from runner.live.state import DELTA_SAMPLES_KEPT, SAMPLES_KEPT, DeltaSamples, Metrics, Samples
from tests.live_harness import FMT, KEY, LiveMic, build, session_update, tone

WAIT_S = 15.0
TURNS = 40


async def test_per_call_timings_and_item_maps_stay_bounded_over_many_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Samples, "keep", 8)
    monkeypatch.setattr(DeltaSamples, "keep", 8)
    monkeypatch.setattr(session_module, "_ITEMS_KEPT", 4)
    mic = LiveMic()
    update = session_update(input_audio_transcription={"model": "whisper-1"})
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        h = build(emu.endpoint, tmp_path, update=update, source=mic)
        session, turn = h.session, h.session.turn
        h.start()
        try:
            assert await turn.until(lambda: turn.connected, WAIT_S)
            for i in range(TURNS):
                await session.send_text(f"Tell me about city number {i}")
                assert await turn.until(turn.idle, WAIT_S), f"turn {i} was not answered"
            for i in range(3):  # spoken turns: each has a speech start to remember, then not
                heard = len(h.transcript.turns)
                mic.say(tone(400) + bytes(FMT.bytes_for_ms(400)))

                def heard_reply(heard: int = heard) -> bool:  # the user's turn and its reply
                    return len(h.transcript.turns) >= heard + 2 and turn.idle()

                assert await turn.until(heard_reply, WAIT_S), f"spoken turn {i} was not answered"
        finally:
            await h.stop()
    metrics = session.metrics
    answered = sum(1 for t in h.transcript.turns if t.role == "assistant")
    assert answered >= TURNS
    kept = session.kept()
    assert kept["received_items"] <= 4
    assert kept["speech_starts"] == 0
    assert 0 < len(metrics.write_latency) <= 2 * 8
    assert 0 < len(metrics.turn_latency) <= 2 * 8
    assert len(turn.responses) == 0 and len(turn.history) <= 500


def test_a_per_delta_timing_keeps_fewer_than_a_per_turn_one() -> None:
    metrics = Metrics()
    for value in range(3 * SAMPLES_KEPT):
        metrics.write_latency.append(float(value))
        metrics.turn_latency.append(float(value))
    assert len(metrics.write_latency) <= 2 * DELTA_SAMPLES_KEPT < SAMPLES_KEPT
    assert len(metrics.turn_latency) >= SAMPLES_KEPT
    assert metrics.write_latency[-1] == 3 * SAMPLES_KEPT - 1  # the newest kept


def test_samples_keep_the_newest() -> None:
    samples = Samples()
    samples.keep = 3
    for value in range(10):
        samples.append(float(value))
    # past 2 * keep the oldest go, in one slice: what is left is the newest, in order
    assert samples == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
