"""G.711 μ-law and A-law, both ways, bit-exact with sox's coder.

`audioop` left the standard library in Python 3.13; these are numpy tables built once from
the reference algorithm (Sun's g711.c, which sox uses, after sox's rounding to 14 or 13
bits), so encoding matches sox byte for byte; a test checks every 16-bit value.
Both sides of the wire use them: the runner for the microphone and speaker, the emulator for
what it hears and says.
"""

from __future__ import annotations

from functools import cache

import numpy as np

LAWS = ("ulaw", "alaw")
RATE = 8000  # G.711 is 8 kHz mono, one byte a sample


def law_of(audio_format: str) -> str | None:
    """``g711_ulaw`` -> ``ulaw``, ``g711_alaw`` -> ``alaw``; None for PCM formats."""
    law = audio_format.removeprefix("g711_")
    return law if law != audio_format and law in LAWS else None


@cache
def _decode_table(law: str) -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    if law == "ulaw":
        u = ~codes & 0xFF
        t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)
    a = codes ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _segment(value: np.ndarray, ends: tuple[int, ...]) -> np.ndarray:
    return np.searchsorted(np.array(ends), value, side="left")


@cache
def _encode_table(law: str) -> np.ndarray:
    """int16 (offset by 32768) -> code, from the reference coder's steps.

    Like sox, the 16-bit sample is first rounded (not truncated) to the coder's 14 (μ-law) or
    13 (A-law) bits, clipping at the top.
    """
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    if law == "ulaw":
        value = np.minimum((pcm + 2) >> 2, 0x1FFF)
        mask = np.where(value < 0, 0x7F, 0xFF)
        value = np.minimum(np.abs(value), 8159) + (0x84 >> 2)
        seg = _segment(value, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
        code = (seg << 4) | ((value >> (seg + 1)) & 0x0F)
        code = np.where(seg >= 8, 0x7F, code)
        return (code ^ mask).astype(np.uint8)
    value = np.minimum((pcm + 4) >> 3, 0x0FFF)
    mask = np.where(value >= 0, 0xD5, 0x55)
    value = np.where(value >= 0, value, -value - 1)
    seg = _segment(value, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    code = (seg << 4) | np.where(seg < 2, (value >> 1) & 0x0F, (value >> np.maximum(seg, 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def encode(pcm: bytes, law: str) -> bytes:
    """PCM16 little-endian -> G.711 bytes (one per sample)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int32) + 32768
    return bytes(_encode_table(law)[samples].tobytes())


def decode(data: bytes, law: str) -> bytes:
    """G.711 bytes -> PCM16 little-endian."""
    return bytes(_decode_table(law)[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes())
