"""Text to PCM16 for the emulator's spoken replies, plus the G.711 codecs.

espeak-ng (when installed) gives real, intelligible speech, so a client playing the reply
hears words and a test can feed it back through a VAD. It runs as an asyncio subprocess so the
event loop never blocks. Without espeak-ng a deterministic synthetic signal of plausible length
stands in. Results are cached: scripted replies repeat.

The same espeak-ng run also writes its phoneme mnemonics (``-x``), one group per word and one
line per clause; word timestamps and visemes (runner/emulator/timing.py) are derived from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import wave
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

Phonemes = tuple[tuple[tuple[str, ...], ...], ...]  # clauses -> words -> phoneme mnemonics


@dataclass(frozen=True)
class Speech:
    """One synthesised reply: PCM16 mono, and espeak-ng's phonemes when espeak-ng spoke it."""

    pcm: bytes
    phonemes: Phonemes | None = None


_CACHE: OrderedDict[tuple[str, int, bool], Speech] = OrderedDict()
_CACHE_MAX = 256
_ESPEAK_SLOTS: asyncio.Semaphore | None = None
_SLOTS_LOOP: asyncio.AbstractEventLoop | None = None
ESPEAK = shutil.which("espeak-ng")


def _slots() -> asyncio.Semaphore:
    # one semaphore per event loop: tests start many loops in one process
    global _ESPEAK_SLOTS, _SLOTS_LOOP
    loop = asyncio.get_running_loop()
    if _ESPEAK_SLOTS is None or _SLOTS_LOOP is not loop:
        _ESPEAK_SLOTS, _SLOTS_LOOP = asyncio.Semaphore(2), loop
    return _ESPEAK_SLOTS


async def synthesize(text: str, rate: int = 24000, *, use_espeak: bool = True) -> bytes:
    """PCM16 mono little-endian at ``rate`` speaking ``text``."""
    return (await speak(text, rate, use_espeak=use_espeak)).pcm


async def speak(text: str, rate: int = 24000, *, use_espeak: bool = True) -> Speech:
    """``text`` spoken at ``rate``, with espeak-ng's phonemes when it was espeak-ng."""
    key = (text, rate, use_espeak)
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached
    speech: Speech | None = None
    if use_espeak and ESPEAK and text.strip():
        speech = await _espeak(text, rate)
    if speech is None:
        speech = Speech(synthetic(text, rate))
    _CACHE[key] = speech
    if len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return speech


def parse_phonemes(text: str) -> Phonemes:
    """espeak-ng ``-x --sep=_`` output: a line per clause, words by spaces, phonemes by ``_``."""
    clauses = []
    for line in text.splitlines():
        words = tuple(
            tuple(p.lstrip(":") for p in word.split("_") if _is_phoneme(p)) for word in line.split()
        )
        if words:
            clauses.append(tuple(w for w in words if w))
    return tuple(clauses)


def _is_phoneme(token: str) -> bool:
    """Not a pause or a bare length/stress mark (espeak-ng writes ``:`` for brackets)."""
    return bool(token.replace("'", "").replace(",", "").strip(":"))


async def _espeak(text: str, rate: int) -> Speech | None:
    assert ESPEAK is not None
    async with _slots():
        try:
            # the WAV on stdout, the phonemes of the same run on stderr
            proc = await asyncio.create_subprocess_exec(
                ESPEAK,
                "--stdout",
                "-x",
                "--sep=_",
                "--phonout=/dev/stderr",
                "-s",
                "165",
                "--",
                text,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError:
            return None
        try:
            out, err = await proc.communicate()
        finally:
            if proc.returncode is None:  # cancelled mid-speech (a call hung up): no orphan
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()  # reaped here, so no pipe outlives this event loop
    if proc.returncode != 0 or not out:
        return None
    try:
        with wave.open(io.BytesIO(out)) as wav:
            src_rate = wav.getframerate()
            # espeak streams a WAV whose header has no final length; read what is there
            frames = wav.readframes(wav.getnframes() or 1 << 30)
    except (wave.Error, EOFError):
        return None
    phonemes = parse_phonemes(err.decode("utf-8", "replace")) if err else None
    return Speech(resample(frames, src_rate, rate), phonemes or None)


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """PCM16 mono from one rate to another (soxr, high quality)."""
    if src_rate == dst_rate or not pcm:
        return pcm
    import soxr  # imported here: only resampling callers pay for it

    samples = np.frombuffer(pcm, dtype=np.int16)
    out = soxr.resample(samples, src_rate, dst_rate)
    return np.asarray(out, dtype=np.int16).tobytes()


def synthetic(text: str, rate: int) -> bytes:
    """A deterministic speech-like signal: one voiced burst per word, about 15 characters/s."""
    words = text.split() or ["."]
    parts: list[np.ndarray] = []
    gap = np.zeros(int(rate * 0.06), dtype=np.float32)
    for word in words:
        dur = 0.066 * max(2, len(word))
        t = np.arange(int(rate * dur), dtype=np.float32) / rate
        pitch = 110.0 + (sum(map(ord, word)) % 60)
        tone = np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(2 * np.pi * 2.1 * pitch * t)
        envelope = np.sin(np.pi * t / dur) ** 0.5
        parts += [tone * envelope * 8000, gap]
    return np.concatenate(parts).astype(np.int16).tobytes()


# --- G.711 (ITU-T); audioop left the standard library in 3.13 ---------------------------------


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


ULAW_DECODE = _ulaw_table()
ALAW_DECODE = _alaw_table()


def _encoder(decode: np.ndarray) -> np.ndarray:
    """int16 -> code by nearest decoded value, as a 65536-entry table (built once)."""
    order = np.argsort(decode, kind="stable")
    values = decode[order].astype(np.int32)
    grid = np.arange(-32768, 32768, dtype=np.int32)
    idx = np.clip(np.searchsorted(values, grid), 1, len(values) - 1)
    nearer_left = (grid - values[idx - 1]) <= (values[idx] - grid)
    return order[np.where(nearer_left, idx - 1, idx)].astype(np.uint8)


_ENCODERS: dict[str, np.ndarray] = {}


def g711_decode(data: bytes, law: str) -> np.ndarray:
    table = ULAW_DECODE if law == "ulaw" else ALAW_DECODE
    return table[np.frombuffer(data, dtype=np.uint8)]


def g711_encode(pcm: bytes, law: str) -> bytes:
    if law not in _ENCODERS:
        _ENCODERS[law] = _encoder(ULAW_DECODE if law == "ulaw" else ALAW_DECODE)
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.int32) + 32768
    return _ENCODERS[law][samples].tobytes()
