"""Word timings of a spoken reply, for ``response.audio_timestamp.*`` and the visemes.

espeak-ng does not report when each word is spoken, so the timings are put together from what it
does give: its phonemes per word and per clause, and the audio itself. The voiced regions of the
audio (10 ms frames over an energy floor, split at pauses of 120 ms or more) are the clauses
when their counts agree; inside a region each word gets a share of the time proportional to its
phoneme count. Without phonemes (no espeak-ng, or a word count that does not line up) a word's
share is proportional to its length in characters, over the voiced span; when the audio has one
voiced burst per word (the synthetic stand-in voice) the bursts are the words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.emulator.speech import Phonemes

FRAME_MS = 10
PAUSE_MS = 120  # a gap this long between voiced frames separates clauses
WORD_GAP_MS = 50  # the synthetic voice leaves 60 ms between words
_PUNCTUATION = ".,;:!?\"'()[]«»“”‘’…"
_FLOOR = 300.0  # RMS below this (of 32768) is silence; espeak-ng's pauses are digital zeros


@dataclass(frozen=True)
class Word:
    text: str
    offset_ms: int
    duration_ms: int
    phonemes: tuple[str, ...] = ()


def voiced_regions(pcm: bytes, rate: int, pause_ms: int = PAUSE_MS) -> list[tuple[int, int]]:
    """(start_ms, end_ms) of each stretch of speech, pauses of ``pause_ms`` or more between."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype=np.int16).astype(np.float32)
    step = rate * FRAME_MS // 1000
    count = samples.size // step
    if count == 0:
        return []
    rms = np.sqrt(np.mean(samples[: count * step].reshape(count, step) ** 2, axis=1))
    voiced = np.flatnonzero(rms > _FLOOR)
    if voiced.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(voiced) > pause_ms // FRAME_MS)
    starts = np.concatenate(([voiced[0]], voiced[breaks + 1]))
    ends = np.concatenate((voiced[breaks], [voiced[-1]])) + 1
    return [(int(s) * FRAME_MS, int(e) * FRAME_MS) for s, e in zip(starts, ends, strict=True)]


def _share(
    texts: list[str], weights: list[int], span: tuple[int, int], phonemes: list[tuple[str, ...]]
) -> list[Word]:
    start, end = span
    total = sum(weights) or 1
    out, acc = [], 0
    for text, weight, phones in zip(texts, weights, phonemes, strict=True):
        a = start + (end - start) * acc // total
        acc += weight
        b = start + (end - start) * acc // total
        out.append(Word(text, a, max(1, b - a), phones))
    return out


def _real_ms(regions: list[tuple[int, int]], voiced_ms: int, *, start: bool) -> int:
    """Where ``voiced_ms`` of speech (pauses not counted) falls on the audio's clock."""
    for a, b in regions:
        length = b - a
        if voiced_ms < length or (voiced_ms == length and not start):
            return a + voiced_ms
        voiced_ms -= length
    return regions[-1][1]


def _share_voiced(
    texts: list[str],
    weights: list[int],
    regions: list[tuple[int, int]],
    phonemes: list[tuple[str, ...]],
) -> list[Word]:
    """Shares of the voiced time only, so that no word is given a pause it falls next to."""
    voiced = sum(b - a for a, b in regions)
    total = sum(weights) or 1
    out, acc = [], 0
    for text, weight, phones in zip(texts, weights, phonemes, strict=True):
        a = _real_ms(regions, voiced * acc // total, start=True)
        acc += weight
        b = _real_ms(regions, voiced * acc // total, start=False)
        out.append(Word(text, a, max(1, b - a), phones))
    return out


def _snap(words: list[Word], regions: list[tuple[int, int]], pause_after: list[bool]) -> list[Word]:
    """Move the word boundary nearest each pause into it: words rarely run across a pause, and
    a word with punctuation after it is the likelier one to end at it."""
    out = list(words)
    marked = [k for k in range(1, len(out)) if pause_after[k - 1]]
    for (_, gap_start), (gap_end, _) in zip(regions, regions[1:], strict=False):
        candidates = [k for k in marked if out[k].offset_ms < gap_end + 400] or range(1, len(out))
        j = min(candidates, key=lambda k: abs(out[k].offset_ms - gap_start), default=None)
        if j is None:
            break
        before, after = out[j - 1], out[j]
        end_after = after.offset_ms + after.duration_ms
        if before.offset_ms < gap_start and gap_end < end_after:
            out[j - 1] = Word(
                before.text, before.offset_ms, gap_start - before.offset_ms, before.phonemes
            )
            out[j] = Word(after.text, gap_end, end_after - gap_end, after.phonemes)
    return out


def word_timings(text: str, pcm: bytes, rate: int, phonemes: Phonemes | None) -> list[Word]:
    """When each word of ``text`` is heard in ``pcm`` (see the module docstring for how)."""
    raw = text.split()
    words = [w.strip(_PUNCTUATION) or w for w in raw]
    if not words:
        return []
    pause_after = [w[-1] in _PUNCTUATION for w in raw]
    duration = len(pcm) * 1000 // (2 * rate)
    regions = voiced_regions(pcm, rate) or [(0, max(1, duration))]
    flat = [w for clause in phonemes or () for w in clause]
    if len(flat) == len(words):
        assert phonemes is not None
        weights = [max(1, len(p)) for p in flat]
        if len(regions) == len(phonemes):
            out: list[Word] = []
            k = 0
            for clause, region in zip(phonemes, regions, strict=True):
                n = len(clause)
                out += _share(words[k : k + n], weights[k : k + n], region, flat[k : k + n])
                k += n
            return out
        return _snap(_share_voiced(words, weights, regions, flat), regions, pause_after)
    bursts = voiced_regions(pcm, rate, WORD_GAP_MS)
    if len(bursts) == len(words):
        return [Word(w, a, max(1, b - a)) for w, (a, b) in zip(words, bursts, strict=True)]
    shares = _share_voiced(words, [max(1, len(w)) for w in words], regions, [()] * len(words))
    return _snap(shares, regions, pause_after)
