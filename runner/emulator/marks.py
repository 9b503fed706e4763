"""What goes with a spoken reply's audio when the session asks: word timestamps, visemes and
blendshape frames, each sent as the audio that they describe is sent.

source: voice-live-protocol.md 2 (``output_audio_timestamp_types: ["word"]`` turns on
``response.audio_timestamp.*``; ``animation`` with ``outputs`` ``blendshapes`` / ``viseme_id``,
default ``["blendshapes"]``, turns on ``response.animation_*``) and 3.2 (the event fields, as in
the SDK's models). docs/emulator.md, "Emulated features", says how the values are derived.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.emulator.animation import blendshape_frames, frame_index, visemes
from runner.emulator.speech import Speech
from runner.emulator.timing import Word, word_timings


def wanted(session: Mapping[str, Any]) -> tuple[bool, bool, bool]:
    """(word timestamps, visemes, blendshapes) the session asks for."""
    voice = session.get("voice")
    azure = isinstance(voice, Mapping) and str(voice.get("type", "")).startswith("azure")
    # source: voice-live-protocol.md 2 (word timestamps are for Azure voices); the stricter
    # reading: an OpenAI voice gets none
    words = azure and "word" in (session.get("output_audio_timestamp_types") or ())
    animation = session.get("animation")
    if not isinstance(animation, Mapping):
        # "animation" among the modalities alone: the default outputs (blendshapes)
        animation = {} if "animation" in (session.get("modalities") or ()) else None
    outputs = (animation.get("outputs") or ["blendshapes"]) if animation is not None else ()
    return words, "viseme_id" in outputs, "blendshapes" in outputs


class SpeechMarks:
    """The marks of one spoken reply; :meth:`upto` hands out those due as the audio advances."""

    def __init__(
        self,
        session: Mapping[str, Any],
        base: Mapping[str, Any],
        text: str,
        speech: Speech,
        rate: int,
    ) -> None:
        self.words_on, self.visemes_on, self.blend_on = wanted(session)
        self.base = dict(base)
        self.words: list[Word] = []
        self.points: list[tuple[int, int]] = []
        self._next_word = self._next_viseme = 0
        self._frames_ms = 0
        self.end_ms = end = len(speech.pcm) * 1000 // (2 * rate)
        if self.active:
            self.words = word_timings(text, speech.pcm, rate, speech.phonemes)
            self.points = visemes(self.words, end) if self.visemes_on or self.blend_on else []

    @property
    def active(self) -> bool:
        return self.words_on or self.visemes_on or self.blend_on

    def upto(self, end_ms: int) -> list[dict[str, Any]]:
        """The delta events for audio before ``end_ms`` not handed out yet."""
        out: list[dict[str, Any]] = []
        content = {**self.base, "content_index": 0}
        while self.words_on and self._next_word < len(self.words):
            word = self.words[self._next_word]
            if word.offset_ms >= end_ms:
                break
            self._next_word += 1
            out.append(
                {
                    "type": "response.audio_timestamp.delta",
                    **content,
                    "audio_offset_ms": word.offset_ms,
                    "audio_duration_ms": word.duration_ms,
                    "text": word.text,
                    "timestamp_type": "word",
                }
            )
        while self.visemes_on and self._next_viseme < len(self.points):
            at, vid = self.points[self._next_viseme]
            if at >= end_ms:
                break
            self._next_viseme += 1
            out.append(
                {
                    "type": "response.animation_viseme.delta",
                    **content,
                    "audio_offset_ms": at,
                    "viseme_id": vid,
                }
            )
        stop = min(end_ms, self.end_ms)
        if self.blend_on and stop > self._frames_ms:
            frames = blendshape_frames(self.points, self._frames_ms, stop)
            if frames:
                out.append(
                    {
                        "type": "response.animation_blendshapes.delta",
                        **content,
                        "frame_index": frame_index(self._frames_ms),
                        "frames": frames,
                    }
                )
            self._frames_ms = stop
        return out

    def done(self) -> list[dict[str, Any]]:
        """The ``.done`` events, in the order the protocol reference gives."""
        content = {**self.base, "content_index": 0}
        out = []
        if self.words_on:
            out.append({"type": "response.audio_timestamp.done", **content})
        if self.visemes_on:
            out.append({"type": "response.animation_viseme.done", **content})
        if self.blend_on:
            out.append({"type": "response.animation_blendshapes.done", **self.base})
        return out
