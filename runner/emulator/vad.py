"""An energy-based voice-activity detector, cheap enough for hundreds of sessions per core.

The service's detectors are neural; what clients depend on is the event contract: speech
starts after enough voiced audio, ``audio_start_ms`` reaches back by ``prefix_padding_ms``,
speech stops after ``silence_duration_ms`` of quiet and ``audio_end_ms`` includes that quiet.
``threshold`` (0..1) maps linearly onto a level in dBFS, so 0.5 sits between room noise and
speech and higher values need louder speech, as with the service.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

WINDOW_MS = 10
MAX_ONSET_GAP = 10  # windows of quiet tolerated while confirming an onset
TAIL_WINDOWS = 10  # the last 100 ms of voiced audio, whose level smart end-of-turn reads


def threshold_dbfs(threshold: float) -> float:
    """0 -> -70 dBFS (anything but digital silence), 0.5 -> -45 dBFS, 1 -> -20 dBFS."""
    return -70.0 + 50.0 * threshold


@dataclass
class VadEvent:
    kind: str  # "started" | "stopped"
    ms: int  # audio_start_ms or audio_end_ms, on the session's input audio clock


class EnergyVad:
    """Feed int16 mono samples; get started/stopped events on the session audio clock."""

    def __init__(
        self,
        rate: int,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        speech_duration_ms: int = 80,
    ) -> None:
        self.rate = rate
        self.window = max(1, rate * WINDOW_MS // 1000)
        limit = 10 ** (threshold_dbfs(threshold) / 20) * 32768.0
        # compare sums of squares: no sqrt; as a float32, as numpy compares the float32 sums
        # with it, so a Python comparison (feed_powers) decides every window the same way
        self._power_limit = float(np.float32(limit * limit * self.window))
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_windows = max(1, silence_duration_ms // WINDOW_MS)
        self.speech_windows = max(1, speech_duration_ms // WINDOW_MS)
        self._pending = np.zeros(0, dtype=np.int16)
        self.windows_seen = 0  # session audio clock, in windows
        self.in_speech = False
        self._voiced_run = 0
        self._quiet_run = 0
        self._onset = 0
        self._gap = 0
        # the utterance's voiced level and its last voiced windows, for tail_drop_db
        self._utt_power = 0.0
        self._utt_windows = 0
        self._tail: deque[float] = deque(maxlen=TAIL_WINDOWS)
        #: at the last "stopped": how far (dB) the last 100 ms of voiced audio sat below the
        #: utterance's mean voiced level (None: nothing voiced was measured)
        self.tail_drop_db: float | None = None

    @property
    def position_ms(self) -> int:
        return self.windows_seen * WINDOW_MS

    @property
    def voiced_ms(self) -> int:
        """Voiced audio in the current utterance (since its onset), in ms."""
        return self._utt_windows * WINDOW_MS

    @property
    def quiet_ms(self) -> int:
        """Unvoiced audio since the current utterance's last voiced window, in ms (0 when that
        window is the latest: the caller is voiced right now)."""
        return self._quiet_run * WINDOW_MS if self.in_speech else 0

    @property
    def onset_ms(self) -> int:
        """Where the current (or last) utterance's voiced audio began, without prefix padding."""
        return self._onset * WINDOW_MS

    @property
    def aligned(self) -> bool:
        """No samples are held over from the last feed: the next audio starts a window."""
        return not self._pending.size

    def powers(self, samples: np.ndarray) -> tuple[float, ...]:
        """The energy (sum of squares) of each whole window of ``samples``, as :meth:`feed`
        measures it; :meth:`feed_powers` takes them (a caller may keep them for audio it sees
        again)."""
        whole = samples.size // self.window * self.window
        frames = samples[:whole].astype(np.float32).reshape(-1, self.window)
        return tuple(np.einsum("ij,ij->i", frames, frames).tolist())

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = samples.size // self.window * self.window
        self._pending = samples[whole:]
        if whole == 0:
            return []
        return self.feed_powers(self.powers(samples))

    def feed_powers(self, powers: tuple[float, ...] | list[float]) -> list[VadEvent]:
        """Feed whole windows by their energies (:meth:`powers`); only when :attr:`aligned`."""
        if not powers:
            return []
        limit = self._power_limit
        if not self.in_speech and max(powers) <= limit:
            self.windows_seen += len(powers)
            self._gap += len(powers)
            if self._gap > MAX_ONSET_GAP:
                self._voiced_run = self._gap = 0
            return []
        events: list[VadEvent] = []
        for power in powers:
            is_voiced = power > limit
            self.windows_seen += 1
            if not self.in_speech:
                if is_voiced:
                    if self._voiced_run == 0:
                        self._onset = self.windows_seen - 1
                        self._utt_power, self._utt_windows = 0.0, 0
                        self._tail.clear()
                    self._voiced_run += 1
                    self._gap = 0
                    self._utt_power += power
                    self._utt_windows += 1
                    self._tail.append(power)
                    if self._voiced_run >= self.speech_windows:
                        self.in_speech, self._quiet_run = True, 0
                        start = max(0, self._onset * WINDOW_MS - self.prefix_padding_ms)
                        events.append(VadEvent("started", start))
                elif self._voiced_run:
                    # short gaps between syllables do not restart the count
                    self._gap += 1
                    if self._gap > MAX_ONSET_GAP:
                        self._voiced_run = self._gap = 0
            else:
                self._quiet_run = 0 if is_voiced else self._quiet_run + 1
                if is_voiced:
                    self._utt_power += power
                    self._utt_windows += 1
                    self._tail.append(power)
                if self._quiet_run >= self.silence_windows:
                    self.in_speech, self._voiced_run = False, 0
                    self.tail_drop_db = self._tail_drop()
                    events.append(VadEvent("stopped", self.position_ms))
        return events

    def _tail_drop(self) -> float | None:
        if not self._tail or not self._utt_windows:
            return None
        mean = self._utt_power / self._utt_windows
        tail = sum(self._tail) / len(self._tail)
        return 10 * math.log10(mean / tail) if tail > 0 else math.inf

    def reset_speech(self) -> None:
        """Forget a half-detected utterance (input_audio_buffer.clear)."""
        self.in_speech, self._voiced_run, self._quiet_run, self._gap = False, 0, 0, 0
