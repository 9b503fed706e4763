"""Filler words in scripted user speech, and what ``remove_filler_words`` does with them.

A script's ``transcript`` marks a spoken segment as filler with double parentheses:
``"((um)) what is the weather ((uh)) in Paris"``. The marks never reach the client. With an
``azure_semantic_vad*`` detector and ``remove_filler_words: true`` the marked segments are left
out of the transcript (and of what the scripted model hears); otherwise they stay, unmarked.

source: voice-live-protocol.md 2.2 (remove_filler_words on the semantic VADs; the service's
English filler list is "ah umm mm uh huh oh yeah hmm"). Only marked segments are removed: the
emulator does not guess which words of a script are filler.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_MARKED = re.compile(r"\(\((.*?)\)\)")
_SPACES = re.compile(r"\s{2,}")


def removes_fillers(turn_detection: Mapping[str, Any] | None) -> bool:
    """Whether the detector in force drops filler words."""
    td = turn_detection or {}
    return str(td.get("type", "")).startswith("azure_semantic_vad") and bool(
        td.get("remove_filler_words")
    )


def heard(transcript: str, turn_detection: Mapping[str, Any] | None) -> str:
    """The transcript the service reports for scripted speech ``transcript``."""
    if removes_fillers(turn_detection):
        text = _MARKED.sub(" ", transcript)
        text = re.sub(r"\s+([,.;:!?])", r"\1", _SPACES.sub(" ", text))
        return text.strip(" ,")
    return _MARKED.sub(r"\1", transcript)
