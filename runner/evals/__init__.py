"""Simulated callers and judges for `vlrun test` (docs/evals.md).

A scenario's ``caller:`` becomes a :class:`Caller` (:func:`caller_for`, one per tier: script,
text, audio) and its ``judge:`` rubrics are decided by a :class:`Judge` (:func:`judge_for`),
both on a :class:`ChatEndpoint`: Azure OpenAI, any OpenAI-compatible server, or the emulator's
own chat endpoint, which answers by the scenario's offline rules and says it is not a model.
The ``openai`` package (the ``evals`` extra) is imported only when a request is made.
"""

from runner.evals.callers import (
    AudioCaller,
    ChatCaller,
    ScriptCaller,
    Tier,
    caller_for,
    caller_problems,
)
from runner.evals.endpoint import ChatEndpoint
from runner.evals.judge import Judge, judge_for, offline_problems
from runner.evals.types import Caller, CallerTurn, EvalsError, Exchange, Verdict

__all__ = [
    "AudioCaller",
    "Caller",
    "CallerTurn",
    "ChatCaller",
    "ChatEndpoint",
    "EvalsError",
    "Exchange",
    "Judge",
    "ScriptCaller",
    "Tier",
    "Verdict",
    "caller_for",
    "caller_problems",
    "judge_for",
    "offline_problems",
]
