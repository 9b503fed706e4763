"""The few session fields the live side reads, in either session shape.

A compiled ``session.update`` is dated (``turn_detection``, ``input_audio_transcription``, …) or,
on ``api-version: v1``, the GA shape (``audio.input.turn_detection``, …; runner/config/service.py
``to_v1``). The audio edges, push-to-talk and the transcript read them through here, so a v1
profile behaves as its dated twin; audio formats and the voice come from
:func:`runner.config.service.dated_audio`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.config.service import dated_audio, is_v1_session

__all__ = ["dated_audio", "echo_cancellation", "field", "transcription", "turn_detection"]

_MISSING = object()
#: dated key -> the key under ``audio.input`` of a v1 session
_V1_INPUT = {
    "turn_detection": "turn_detection",
    "input_audio_transcription": "transcription",
    "input_audio_echo_cancellation": "echo_cancellation",
    "input_audio_noise_reduction": "noise_reduction",
}


def field(session: Mapping[str, Any], dated_key: str, default: Any = None) -> Any:
    """A dated input field of a session in either shape (``default`` when it is not set)."""
    if not is_v1_session(dict(session)) or dated_key not in _V1_INPUT:
        return session.get(dated_key, default)
    audio_in = (session.get("audio") or {}).get("input") or {}
    return audio_in.get(_V1_INPUT[dated_key], default)


def has(session: Mapping[str, Any], dated_key: str) -> bool:
    """Whether the session sets the field at all (``turn_detection: null`` is set)."""
    return field(session, dated_key, _MISSING) is not _MISSING


def turn_detection(session: Mapping[str, Any]) -> Any:
    return field(session, "turn_detection")


def transcription(session: Mapping[str, Any]) -> Any:
    return field(session, "input_audio_transcription")


def echo_cancellation(session: Mapping[str, Any]) -> Any:
    return field(session, "input_audio_echo_cancellation")
