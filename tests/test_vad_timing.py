"""The emulator's VAD timing, exact to the 10 ms window: where speech starts and stops, the
prefix padding, the silence it waits for, on espeak-ng speech and on edge signals (silence, a
click, DC, clipping, a tone either side of the threshold, speech at a buffer's very ends).

The expected positions are worked out from the signal with plain per-window RMS levels, not
with the detector's own arithmetic."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from runner.emulator.vad import MAX_ONSET_GAP, WINDOW_MS, EnergyVad, VadEvent, threshold_dbfs

RATE = 24000
WIN = RATE * WINDOW_MS // 1000  # samples in one 10 ms window


def quiet(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def level(dbfs: float) -> float:
    return 10 ** (dbfs / 20) * 32768


def tone(ms: int, dbfs: float = -20.0, hz: float = 440.0) -> np.ndarray:
    """A sine of the given RMS level."""
    t = np.arange(RATE * ms // 1000) / RATE
    return np.round(np.sin(2 * np.pi * hz * t) * level(dbfs) * np.sqrt(2)).astype(np.int16)


def loud(windows: int) -> np.ndarray:
    return tone(windows * WINDOW_MS)


def events(vad: EnergyVad, *parts: np.ndarray) -> list[tuple[str, int]]:
    out: list[VadEvent] = []
    for part in parts:
        out += vad.feed(part)
    return [(e.kind, e.ms) for e in out]


def in_chunks(signal: np.ndarray, size: int) -> list[np.ndarray]:
    return [signal[i : i + size] for i in range(0, signal.size, size)]


def voiced_windows(signal: np.ndarray, dbfs: float = -45.0) -> np.ndarray:
    """Indices of the 10 ms windows whose RMS level is above ``dbfs``."""
    n = signal.size // WIN
    frames = signal[: n * WIN].astype(np.float64).reshape(n, WIN)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    with np.errstate(divide="ignore"):
        levels = 20 * np.log10(rms / 32768)
    return np.flatnonzero(levels > dbfs)


# ------------------------------------------------------------------ configuration


def test_the_threshold_maps_linearly_onto_dbfs() -> None:
    assert threshold_dbfs(0.0) == -70.0
    assert threshold_dbfs(0.5) == -45.0
    assert threshold_dbfs(1.0) == -20.0


def test_windows_are_10_ms_of_samples() -> None:
    assert WINDOW_MS == 10 and MAX_ONSET_GAP == 10
    assert EnergyVad(24000).window == 240
    assert EnergyVad(16000).window == 160
    assert EnergyVad(50).window == 1  # a rate too low for a whole 10 ms still has a window


def test_durations_are_counted_in_windows_and_never_zero() -> None:
    vad = EnergyVad(RATE, silence_duration_ms=500, speech_duration_ms=80)
    assert (vad.silence_windows, vad.speech_windows) == (50, 8)
    vad = EnergyVad(RATE, silence_duration_ms=0, speech_duration_ms=0)
    assert (vad.silence_windows, vad.speech_windows) == (1, 1)


# ------------------------------------------------------------------ edge signals


@pytest.mark.parametrize("chunk", [WIN, 7 * WIN + 3, RATE])
def test_digital_silence_is_never_speech(chunk: int) -> None:
    vad = EnergyVad(RATE, threshold=0.0)
    assert events(vad, *in_chunks(quiet(3000), chunk)) == []
    assert vad.position_ms == 3000 and not vad.in_speech


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_a_tone_just_above_the_threshold_is_speech_and_just_below_is_not(
    threshold: float,
) -> None:
    limit = threshold_dbfs(threshold)
    above = EnergyVad(RATE, threshold=threshold)
    assert events(above, quiet(1000), tone(400, limit + 1), quiet(1000)) == [
        ("started", 1000 - 300),
        ("stopped", 1400 + 500),
    ]
    below = EnergyVad(RATE, threshold=threshold)
    assert events(below, quiet(1000), tone(400, limit - 1), quiet(1000)) == []


def test_the_threshold_is_relative_to_full_scale_32768() -> None:
    # A DC level of 1000 LSB, a hair above a threshold placed 0.01 LSB below it.
    threshold = (20 * np.log10(999.99 / 32768) + 70) / 50
    vad = EnergyVad(RATE, threshold=threshold, prefix_padding_ms=0, speech_duration_ms=10)
    dc = np.full(WIN, 1000, dtype=np.int16)
    assert events(vad, quiet(100), dc) == [("started", 100)]
    vad = EnergyVad(RATE, threshold=threshold, prefix_padding_ms=0, speech_duration_ms=10)
    assert events(vad, quiet(100), np.full(WIN, 999, dtype=np.int16)) == []


def test_a_level_exactly_at_the_threshold_is_not_above_it() -> None:
    threshold = (20 * np.log10(256 / 32768) + 70) / 50
    assert 10 ** (threshold_dbfs(threshold) / 20) * 32768 == 256.0  # exactly, for this test
    for dc, expected in [(256, []), (257, [("started", 100)])]:
        vad = EnergyVad(RATE, threshold=threshold, prefix_padding_ms=0, speech_duration_ms=10)
        assert events(vad, quiet(100), np.full(WIN, dc, dtype=np.int16)) == expected


def test_a_rate_of_100_hz_has_one_sample_windows() -> None:
    vad = EnergyVad(100, prefix_padding_ms=0, silence_duration_ms=30, speech_duration_ms=20)
    got: list[tuple[str, int]] = []
    for sample in [0, 0, 9000, 9000, 0, 0, 0, 0]:
        got += [(e.kind, e.ms) for e in vad.feed(np.array([sample], dtype=np.int16))]
    assert got == [("started", 20), ("stopped", 40 + 30)]
    assert vad.position_ms == 80


def test_a_dc_offset_below_the_threshold_is_quiet_and_above_it_is_speech() -> None:
    low = np.full(RATE, int(level(-50)), dtype=np.int16)
    assert events(EnergyVad(RATE), low, low) == []
    high = np.full(RATE, int(level(-40)), dtype=np.int16)
    assert events(EnergyVad(RATE), quiet(500), high, quiet(1000)) == [
        ("started", 200),
        ("stopped", 1500 + 500),
    ]


def test_a_single_loud_click_is_not_speech() -> None:
    click = quiet(1000)
    click[RATE // 2] = 32767
    assert events(EnergyVad(RATE), click, quiet(1000)) == []


def test_a_click_counts_in_the_window_that_holds_its_sample() -> None:
    # With a 10 ms minimum a click is an utterance: it starts in the window of its sample,
    # the last sample of window 42 here, and stops one silence later.
    click = quiet(1000)
    click[43 * WIN - 1] = 32767
    vad = EnergyVad(RATE, prefix_padding_ms=0, silence_duration_ms=100, speech_duration_ms=10)
    assert events(vad, click) == [("started", 420), ("stopped", 430 + 100)]


def test_speech_is_confirmed_after_its_minimum_duration_exactly() -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=0, speech_duration_ms=80)
    assert events(vad, quiet(200), loud(7), quiet(1000)) == []
    vad = EnergyVad(RATE, prefix_padding_ms=0, speech_duration_ms=80)
    assert events(vad, quiet(200), loud(8), quiet(1000)) == [
        ("started", 200),
        ("stopped", 280 + 500),
    ]


def test_the_start_reaches_back_by_the_prefix_padding_but_not_before_zero() -> None:
    for padding, start in [(0, 1000), (300, 700), (1000, 0), (1500, 0)]:
        vad = EnergyVad(RATE, prefix_padding_ms=padding)
        assert events(vad, quiet(1000), loud(30), quiet(1000))[0] == ("started", start)


def test_speech_at_the_very_start_of_the_buffer_starts_at_zero() -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=0)
    assert events(vad, loud(30), quiet(1000)) == [("started", 0), ("stopped", 300 + 500)]
    vad = EnergyVad(RATE)  # padding reaching before the audio began is cut at zero
    assert events(vad, loud(30), quiet(1000)) == [("started", 0), ("stopped", 300 + 500)]


def test_speech_at_the_very_end_of_the_buffer_stops_only_after_the_silence() -> None:
    vad = EnergyVad(RATE, silence_duration_ms=200)
    assert events(vad, quiet(1000), loud(30)) == [("started", 700)]
    assert vad.in_speech
    assert events(vad, quiet(190)) == []  # one window short of the silence
    assert events(vad, quiet(10)) == [("stopped", 1300 + 200)]
    assert not vad.in_speech and vad.position_ms == 1500


@pytest.mark.parametrize("silence_ms", [0, 10, 100, 500, 1000])
def test_the_stop_comes_exactly_the_silence_duration_after_the_last_voiced_window(
    silence_ms: int,
) -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=0, silence_duration_ms=silence_ms)
    windows = max(1, silence_ms // WINDOW_MS)
    assert events(vad, quiet(500), loud(20), quiet(2000)) == [
        ("started", 500),
        ("stopped", 700 + windows * WINDOW_MS),
    ]


def test_voice_during_the_silence_starts_the_count_again() -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=0, silence_duration_ms=300)
    signal = [quiet(500), loud(20), quiet(290), loud(1), quiet(290), loud(2), quiet(1000)]
    assert events(vad, *signal) == [("started", 500), ("stopped", 1310 + 300)]


def test_one_stop_per_utterance_and_the_next_one_starts_where_it_starts() -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=100, silence_duration_ms=200)
    signal = [quiet(500), loud(30), quiet(1000), loud(3), quiet(40), loud(20), quiet(1000)]
    # the second onset, at 1800 ms, is a short burst bridged by a 40 ms gap
    assert events(vad, np.concatenate(signal)) == [
        ("started", 400),
        ("stopped", 800 + 200),
        ("started", 1700),
        ("stopped", 2070 + 200),
    ]


@pytest.mark.parametrize("together", [True, False], ids=["one-buffer", "separate-feeds"])
def test_short_gaps_between_syllables_are_bridged_long_ones_are_not(together: bool) -> None:
    def run(*parts: np.ndarray) -> list[tuple[str, int]]:
        vad = EnergyVad(RATE, prefix_padding_ms=0, speech_duration_ms=80)
        return events(vad, np.concatenate(parts)) if together else events(vad, *parts)

    gap = MAX_ONSET_GAP * WINDOW_MS
    # 5 + 7 voiced windows across a gap of exactly MAX_ONSET_GAP windows: one onset
    assert run(quiet(200), loud(5), quiet(gap), loud(7), quiet(1000))[0] == ("started", 200)
    # one window more and the first burst is forgotten: 7 windows alone are too short
    assert run(quiet(200), loud(5), quiet(gap + 10), loud(7), quiet(1000)) == []
    # and after a long silence, too
    assert run(quiet(200), loud(5), quiet(1000), loud(7), quiet(1000)) == []
    # the next onset is where it starts, not where the forgotten burst was
    assert run(quiet(200), loud(5), quiet(gap + 10), loud(8), quiet(1000))[0] == (
        "started",
        200 + 50 + gap + 10,
    )


def test_several_short_gaps_in_one_onset_do_not_add_up() -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=0, speech_duration_ms=80)
    signal = [quiet(200)] + [loud(2), quiet(60)] * 3 + [loud(2), quiet(1000)]
    assert events(vad, np.concatenate(signal))[0] == ("started", 200)


def test_clipped_speech_is_speech_at_the_same_place() -> None:
    clean = [quiet(500), tone(300, -30), quiet(1000)]
    t = np.arange(RATE * 300 // 1000) / RATE
    overdriven = np.sin(2 * np.pi * 440 * t) * 4 * 32768  # 12 dB past full scale
    clipped = [quiet(500), overdriven.clip(-32768, 32767).astype(np.int16), quiet(1000)]
    expected = [("started", 200), ("stopped", 800 + 500)]
    assert events(EnergyVad(RATE), *clean) == expected
    assert events(EnergyVad(RATE), *clipped) == expected


def test_reset_forgets_a_started_utterance() -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=0, silence_duration_ms=200)
    assert events(vad, quiet(100), loud(20)) == [("started", 100)]
    vad.reset_speech()
    assert not vad.in_speech
    assert events(vad, quiet(1000)) == []  # no stop for what was forgotten
    assert events(vad, loud(20), quiet(1000)) == [("started", 1300), ("stopped", 1500 + 200)]


def test_reset_forgets_a_half_detected_onset() -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=0, speech_duration_ms=80)
    assert events(vad, quiet(100), loud(5)) == []
    vad.reset_speech()
    # 7 more windows right away: with the earlier 5 they would be enough
    assert events(vad, loud(7), quiet(1000)) == []
    assert events(vad, loud(8), quiet(1000)) == [("started", 1220), ("stopped", 1300 + 500)]


@pytest.mark.parametrize("chunk", [1, 17, WIN - 1, WIN, WIN + 1, 480, 4801])
def test_the_events_do_not_depend_on_how_the_audio_is_cut(chunk: int) -> None:
    signal = np.concatenate([quiet(500), loud(30), quiet(700), loud(30), quiet(1000)])
    whole = events(EnergyVad(RATE), signal)
    assert whole == [("started", 200), ("stopped", 800 + 500), ("started", 1200)] + [
        ("stopped", 1800 + 500)
    ]
    vad = EnergyVad(RATE)
    assert events(vad, *in_chunks(signal, chunk)) == whole
    assert vad.position_ms == signal.size // WIN * WINDOW_MS


def test_a_feed_shorter_than_a_window_is_kept_for_the_next() -> None:
    vad = EnergyVad(RATE, prefix_padding_ms=0, speech_duration_ms=10)
    burst = loud(1)
    assert vad.feed(burst[:100]) == [] and vad.position_ms == 0
    assert [(e.kind, e.ms) for e in vad.feed(burst[100:])] == [("started", 0)]
    assert vad.position_ms == 10


# ------------------------------------------------------------------ real speech


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == RATE
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> np.ndarray:
    """espeak-ng saying 'What time is it in Tokyo?', with its own leading quiet cut off."""
    pcm = read_pcm(speech_wav)
    first = voiced_windows(pcm)[0]
    return pcm[first * WIN :]


def test_espeak_speech_starts_and_stops_where_its_level_says(speech: np.ndarray) -> None:
    loud_windows = voiced_windows(speech)
    assert loud_windows[0] == 0
    pauses = np.diff(loud_windows) - 1
    assert pauses.max() < 50, "espeak paused for 500 ms inside the sentence"
    last = int(loud_windows[-1])
    signal = np.concatenate([quiet(1200), speech, quiet(1500)])
    expected = [("started", 1200 - 300), ("stopped", 1200 + (last + 1) * WINDOW_MS + 500)]
    for chunk in (480, 4096, signal.size):  # 20 ms device frames, odd blocks, one buffer
        assert events(EnergyVad(RATE), *in_chunks(signal, chunk)) == expected
    assert 1.0 < (last + 1) * WINDOW_MS / 1000 < 3.0  # the sentence, not a click


def test_espeak_speech_with_a_short_silence_splits_at_word_pauses(speech: np.ndarray) -> None:
    # Each stop is the 30 ms silence after a voiced window, each start the first voiced
    # window after one, less the padding: the utterances follow the pauses of the sentence.
    loud_windows = voiced_windows(speech)
    runs: list[tuple[int, int]] = []  # (first, last) voiced window of each utterance
    for w in loud_windows.tolist():
        if runs and w - runs[-1][1] - 1 < 3:
            runs[-1] = (runs[-1][0], w)
        else:
            runs.append((w, w))
    signal = np.concatenate([quiet(1000), speech, quiet(1000)])
    vad = EnergyVad(RATE, prefix_padding_ms=50, silence_duration_ms=30, speech_duration_ms=10)
    expected: list[tuple[str, int]] = []
    for first, last in runs:
        expected += [("started", 1000 + first * 10 - 50), ("stopped", 1000 + last * 10 + 40)]
    assert len(runs) >= 2, "espeak said the sentence without a pause of 30 ms"
    assert events(vad, *in_chunks(signal, 480)) == expected


def test_espeak_speech_below_a_high_threshold_is_not_heard(speech: np.ndarray) -> None:
    quieter = (speech.astype(np.float64) * 10 ** (-40 / 20)).astype(np.int16)  # 40 dB down
    peak_dbfs = 20 * np.log10(np.abs(quieter).max() / 32768)
    threshold = (peak_dbfs + 3 + 70) / 50  # above even its loudest sample
    signal = np.concatenate([quiet(500), quieter, quiet(1000)])
    assert events(EnergyVad(RATE, threshold=threshold), signal) == []
    first = int(voiced_windows(signal, -70.0)[0])
    assert events(EnergyVad(RATE, threshold=0.0), signal)[0] == ("started", first * 10 - 300)
