"""The client echo reference: ``audio.echo_cancellation: {reference_source: client}``.

With a client reference the service expects interleaved stereo PCM16 on the wire: channel 0 the
microphone, channel 1 what the speaker is playing at that moment, so it can take the assistant's
own voice out of the microphone signal (../shared/reference/voice-live-protocol.md §2.4; every
append a multiple of 4 bytes). The runner knows what it plays: the player is tapped, the tap
resamples it to the microphone's rate, and the microphone source takes as much reference as it
captured, chunk by chunk (silence when nothing plays).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from runner.live.audio import AudioFormat, _Resampler

MAX_AHEAD_S = 30.0  # reference audio held ahead of the microphone (a reply is rarely longer)


class ReferenceTap:
    """What the speaker was given, at the microphone's rate, handed out at the microphone's pace.

    The player is fed ahead of the sound it makes; taking the reference at the rate the
    microphone captures keeps the two channels in step, shifted by the output buffer only.
    """

    def __init__(self, out_rate: int, in_rate: int) -> None:
        self._resample = _Resampler(out_rate, in_rate, 1) if out_rate != in_rate else None
        self._pending = bytearray()
        self._limit = int(MAX_AHEAD_S * in_rate) * 2
        self._lock = threading.Lock()  # the player may be fed from another thread

    def played(self, pcm: bytes) -> None:
        data = self._resample(pcm) if self._resample is not None else pcm
        with self._lock:
            self._pending += data
            if len(self._pending) > self._limit:
                del self._pending[: len(self._pending) - self._limit]

    def flush(self) -> None:
        """Barge-in: what was not played will never be heard, so it is no reference either."""
        with self._lock:
            self._pending.clear()

    def take(self, nbytes: int) -> bytes:
        with self._lock:
            out = bytes(self._pending[:nbytes])
            del self._pending[:nbytes]
        return out + bytes(nbytes - len(out))


def interleave(mic: bytes, reference: bytes) -> bytes:
    """Two mono PCM16 signals of one length -> one stereo PCM16 signal (mic left)."""
    left = np.frombuffer(mic, dtype="<i2")
    right = np.frombuffer(reference[: len(mic)], dtype="<i2")
    out = np.empty(left.size * 2, dtype="<i2")
    out[0::2], out[1::2] = left, right
    return out.tobytes()


class ReferencePlayer:
    """A player that also feeds the reference tap; everything else is the wrapped player's."""

    def __init__(self, inner: Any, tap: ReferenceTap) -> None:
        self.inner = inner
        self.tap = tap
        self.fmt = inner.fmt

    def write(self, item_id: str, pcm: bytes) -> None:
        self.inner.write(item_id, pcm)
        self.tap.played(pcm)

    def interrupt(self) -> tuple[str | None, int]:
        self.tap.flush()
        result: tuple[str | None, int] = self.inner.interrupt()
        return result

    def __getattr__(self, name: str) -> Any:  # played_ms, pending_ms, drain, close, ...
        return getattr(self.inner, name)


class StereoReferenceSource:
    """The microphone (or --input file) as channel 0, the speaker reference as channel 1."""

    def __init__(self, inner: Any, tap: ReferenceTap) -> None:
        self.inner = inner
        self.tap = tap
        self.fmt = AudioFormat(inner.fmt.rate, 2)

    async def frames(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner.frames():
            yield interleave(chunk, self.tap.take(len(chunk)))

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # live, duration_ms, ... of the wrapped source
        return getattr(self.inner, name)


def wants_client_reference(session: dict[str, Any]) -> bool:
    from runner.live.shape import echo_cancellation

    ec = echo_cancellation(session)
    return isinstance(ec, dict) and ec.get("reference_source") == "client"
