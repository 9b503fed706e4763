"""Simulated callers and judged expectations in a scenario run (issue 30; docs/evals.md).

The tier is the command line's (``vlrun test --caller script|text|audio``); the caller and the
judge talk to a chat endpoint: the one given (``--caller-endpoint``, ``--judge-endpoint``), or
offline the embedded emulator's own chat endpoint, which answers by the scenario's script and
``offline`` rules and says it is not a model. :mod:`runner.evals` (and the ``openai`` client
behind it) is imported only when a scenario has a ``caller:`` or a ``judge:``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import PathKey

TIERS = ("script", "text", "audio")
CALLER_RATE = 24000  # a CallerTurn's audio: PCM16 mono 24 kHz (interface C)


@dataclass(frozen=True)
class EvalSettings:
    """What the command line chose for callers and judges."""

    tier: str = "script"
    caller_endpoint: Any = None  # a runner.evals.ChatEndpoint, or None: the emulator's
    judge_endpoint: Any = None  # likewise
    seed: int = 0  # the audio caller's noise (with the run's number)


@dataclass
class Chat:
    """The chat endpoints one scenario run uses (None: none is available)."""

    caller: Any
    judge: Any


@contextlib.contextmanager
def chat_endpoints(
    settings: EvalSettings, emulator_url: str | None, emulator_key: str | None
) -> Iterator[Chat]:
    """The endpoints for this run: those given, else the embedded emulator's chat endpoint,
    which takes the emulator's own (random) key (``emulator_key``), given to the endpoint
    itself: never put in the environment, never shown."""
    from runner.evals import ChatEndpoint

    emulated: Any = None
    if emulator_url is not None:
        emulated = ChatEndpoint.emulator(emulator_url, api_key=emulator_key)
    yield Chat(settings.caller_endpoint or emulated, settings.judge_endpoint or emulated)


def rubrics_of(value: Any) -> list[tuple[PathKey, Mapping[str, Any]]]:
    """A turn's ``expect.judge`` (one rubric or a list) with each rubric's path below it."""
    if isinstance(value, Mapping):
        return [((), value)]
    if isinstance(value, list):
        return [((n,), r) for n, r in enumerate(value) if isinstance(r, Mapping)]
    return []


def verdict_record(
    verdict: Any, rubric: str, where: str, turn: int | None, run: int
) -> dict[str, Any]:
    """A verdict as results.jsonl keeps it: the rubric, where it is written, the turn it
    judged (None: the conversation), the verdict and its reason, the prompt, the raw answer."""
    return {
        "rubric": rubric,
        "where": where,
        "turn": turn,
        "run": run,
        **verdict.to_dict(),
    }


def to_rate(pcm: bytes, rate: int) -> bytes:
    """A caller's 24 kHz speech at the microphone's rate."""
    if rate == CALLER_RATE:
        return pcm
    import numpy as np
    import soxr

    samples = np.frombuffer(pcm, dtype="<i2")
    out: Any = soxr.resample(samples, CALLER_RATE, rate)
    return bytes(out.astype("<i2").tobytes())
