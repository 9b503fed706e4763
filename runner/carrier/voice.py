"""The caller's turns: what they say (a WAV file, espeak-ng text, DTMF keys) as PCM16."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runner.errors import UsageError
from runner.evals.voice import espeak

DTMF_KEYS = frozenset("0123456789*#ABCD")

Kind = Literal["wav", "say", "dtmf"]


@dataclass(frozen=True)
class Turn:
    """One thing the caller does, in the order given on the command line."""

    kind: Kind
    value: str

    def describe(self) -> str:
        if self.kind == "wav":
            return f"wav {Path(self.value).name}"
        if self.kind == "dtmf":
            return f"dtmf {self.value}"
        words = self.value if len(self.value) <= 32 else self.value[:31] + "…"
        return f'say "{words}"'


def check_turn(turn: Turn) -> Turn:
    """A turn that can be spoken, or a usage error naming the option and the fix."""
    if turn.kind == "dtmf":
        bad = sorted(set(turn.value) - DTMF_KEYS)
        if not turn.value or bad:
            raise UsageError(
                f"--dtmf {turn.value!r}: not DTMF keys" + (f" ({''.join(bad)!r})" if bad else ""),
                hint="use the keys 0-9, *, # and A-D, e.g. --dtmf 123#",
            )
    elif turn.kind == "say" and not turn.value.strip():
        raise UsageError("--say needs some text", hint='e.g. --say "what time do you open?"')
    elif turn.kind == "wav" and not Path(turn.value).is_file():
        raise UsageError(f"--say-wav {turn.value}: no such file", hint="give a WAV file")
    return turn


async def speech(turn: Turn, rate: int) -> bytes:
    """PCM16 mono at ``rate`` for a ``wav`` or ``say`` turn."""
    from runner.live.audio import AudioFormat, read_wav

    if turn.kind == "wav":
        return read_wav(Path(turn.value), AudioFormat(rate))
    if turn.kind == "say":
        return await espeak(turn.value, rate)
    raise ValueError(f"a {turn.kind} turn has no speech")


def split_tail(pcm: bytes, floor: int = 300) -> tuple[bytes, bytes]:
    """(the words, the quiet after them): "first audio after" counts from the last sound the
    caller made, not from the end of a file that ends in silence."""
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > floor)
    end = 2 * (int(loud[-1]) + 1) if loud.size else 0
    return pcm[:end], pcm[end:]


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    """The recording: PCM16 mono at ``rate``."""
    try:
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm)
    except OSError as exc:
        from runner.errors import OutputError

        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
