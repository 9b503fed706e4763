"""Visemes and blendshape frames of a spoken reply, from its words' phonemes and timings.

Viseme ids are Azure Speech's 22 (0 silence ... 21 p/b/m; docs/emulator.md, "Emulated
features", has the table). espeak-ng's phoneme mnemonics map onto them below; a word without
phonemes (no espeak-ng) is mapped letter by letter. Each phoneme of a word gets an equal share of
the word's time. Blendshape frames (60 per second, 55 values in ARKit order) move five mouth
channels from the viseme under each frame; everything else stays 0. Neither is a face model:
they give a client events with the right shape, count and timing.
"""

from __future__ import annotations

from runner.emulator.timing import Word

# espeak-ng mnemonic (stress marks removed) -> Azure viseme id
_PHONEME_VISEME = {
    **dict.fromkeys(("a", "@", "V", "3", "@2", "@5", "a#", "aa"), 1),
    **dict.fromkeys(("A:", "A", "A@", "0"), 2),
    **dict.fromkeys(("O:", "O", "O@", "o@"), 3),
    **dict.fromkeys(("E", "e", "e@", "eI", "U", "U@"), 4),
    **dict.fromkeys(("3:", "r-"), 5),
    **dict.fromkeys(("i", "i:", "I", "I2", "I#", "i@", "i@3", "j"), 6),
    **dict.fromkeys(("u:", "u", "w", "W"), 7),
    **dict.fromkeys(("oU", "o", "o:", "@U"), 8),
    "aU": 9,
    "OI": 10,
    **dict.fromkeys(("aI", "aI@", "aI3"), 11),
    "h": 12,
    **dict.fromkeys(("r", "R", "*"), 13),
    **dict.fromkeys(("l", "L", "@L"), 14),
    **dict.fromkeys(("s", "z"), 15),
    **dict.fromkeys(("S", "Z", "tS", "dZ"), 16),
    "D": 17,
    **dict.fromkeys(("f", "v"), 18),
    **dict.fromkeys(("t", "d", "n", "T", "t#", "d#", "n-"), 19),
    **dict.fromkeys(("k", "g", "N", "x", "?"), 20),
    **dict.fromkeys(("p", "b", "m", "m-"), 21),
}
_LETTER_VISEME = {
    **dict.fromkeys("aeiy", 1),
    "o": 8,
    "u": 7,
    "w": 7,
    "h": 12,
    "r": 13,
    "l": 14,
    **dict.fromkeys("sz", 15),
    **dict.fromkeys("jc", 16),
    **dict.fromkeys("fv", 18),
    **dict.fromkeys("tdnq", 19),
    **dict.fromkeys("kgx", 20),
    **dict.fromkeys("pbm", 21),
}
# viseme id -> (jawOpen, mouthClose, mouthFunnel, mouthPucker, mouthSmile); rough, not measured
_MOUTH = {
    0: (0.0, 0.0, 0.0, 0.0, 0.0),
    1: (0.5, 0.0, 0.0, 0.0, 0.1),
    2: (0.7, 0.0, 0.0, 0.0, 0.0),
    3: (0.5, 0.0, 0.4, 0.2, 0.0),
    4: (0.4, 0.0, 0.0, 0.0, 0.3),
    5: (0.3, 0.0, 0.3, 0.2, 0.0),
    6: (0.2, 0.0, 0.0, 0.0, 0.5),
    7: (0.2, 0.0, 0.5, 0.7, 0.0),
    8: (0.4, 0.0, 0.5, 0.4, 0.0),
    21: (0.0, 0.8, 0.0, 0.0, 0.0),
    18: (0.1, 0.3, 0.0, 0.0, 0.1),
}
_DEFAULT_MOUTH = (0.2, 0.0, 0.0, 0.0, 0.1)
BLENDSHAPES = 55
FPS = 60
# ARKit order as Azure sends it: jawOpen 17, mouthClose 18, mouthFunnel 19, mouthPucker 20,
# mouthSmileLeft 23, mouthSmileRight 24
_CHANNELS = (17, 18, 19, 20, 23, 24)


def viseme_of(phoneme: str) -> int:
    """The Azure viseme id of one espeak-ng phoneme mnemonic."""
    bare = phoneme.replace("'", "").replace(",", "")
    for key in (bare, bare.rstrip(":"), bare[:1]):
        if key in _PHONEME_VISEME:
            return _PHONEME_VISEME[key]
    return 1


def visemes(words: list[Word], end_ms: int) -> list[tuple[int, int]]:
    """(audio_offset_ms, viseme_id) in time order: silence first and last, no repeats."""
    out: list[tuple[int, int]] = [(0, 0)]
    for word in words:
        ids = (
            [viseme_of(p) for p in word.phonemes]
            if word.phonemes
            else [_LETTER_VISEME.get(c, 1) for c in word.text.lower() if c.isalpha()] or [1]
        )
        for k, vid in enumerate(ids):
            at = word.offset_ms + word.duration_ms * k // len(ids)
            if vid != out[-1][1]:
                out.append((at, vid))
        gap_after = word.offset_ms + word.duration_ms
        if out[-1][1] != 0 and gap_after < end_ms:
            out.append((gap_after, 0))
    if out[-1][1] != 0:
        out.append((end_ms, 0))
    return _monotonic(out)


def _monotonic(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Keep the last viseme of any offset that repeats (the next word starts where one ends)."""
    out: list[tuple[int, int]] = []
    for at, vid in points:
        if out and out[-1][0] == at:
            out[-1] = (at, vid)
        else:
            out.append((at, vid))
    return out


def blendshape_frames(
    points: list[tuple[int, int]], start_ms: int, end_ms: int
) -> list[list[float]]:
    """Frames for [start_ms, end_ms) at FPS; frame k is at k * 1000 / FPS ms of the audio."""
    first = -(-start_ms * FPS // 1000)
    last = -(-end_ms * FPS // 1000)
    frames = []
    for k in range(first, last):
        at = k * 1000 // FPS
        vid = next((v for t, v in reversed(points) if t <= at), 0)
        jaw, close, funnel, pucker, smile = _MOUTH.get(vid, _DEFAULT_MOUTH)
        frame = [0.0] * BLENDSHAPES
        for index, value in zip(_CHANNELS, (jaw, close, funnel, pucker, smile, smile), strict=True):
            frame[index] = value
        frames.append(frame)
    return frames


def frame_index(ms: int) -> int:
    """The index of the first frame at or after ``ms``."""
    return -(-ms * FPS // 1000)
