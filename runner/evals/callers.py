"""Simulated callers, one per tier (docs/evals.md#tiers).

- ``script`` (tier 1, offline): the caller says ``caller.script`` line by line, deterministically;
- ``text`` (tier 2): a chat model plays ``caller.persona`` toward ``caller.goal`` and says when
  the goal is reached; it stops there or at ``caller.max_turns``;
- ``audio`` (tier 3): either of those, its turns spoken (:mod:`runner.evals.voice`) with seeded
  noise.

A caller sees the conversation as ``Exchange`` lines and keeps only whether it has finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from runner.evals.endpoint import ChatEndpoint, complete, parse_json_object
from runner.evals.types import Caller, CallerTurn, EvalsError, Exchange
from runner.evals.voice import add_noise, speak, voice_problem

Tier = Literal["script", "text", "audio"]
TIERS: tuple[Tier, ...] = ("script", "text", "audio")
DEFAULT_MAX_TURNS = 10
DEFAULT_SNR_DB = 30.0  # audible hiss under clear speech; `snr_db: null` turns it off
MAX_SAY_CHARS = 2000  # a model that rambles is cut: a caller's turn is a sentence or two
CALLER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"say": {"type": "string"}, "done": {"type": "boolean"}},
    "required": ["say", "done"],
    "additionalProperties": False,
}
SYSTEM = (
    "You play a caller on a phone call with a voice assistant, to test it. "
    "Who you are: {persona}. Your goal: {goal}. "
    "Speak only as the caller: one short, natural spoken turn at a time, no stage directions, "
    "no narration, never the assistant's lines. Set done to true on the turn after which your "
    "goal is reached (or clearly cannot be). "
    'Answer only with a JSON object: {{"say": "what you say", "done": true or false}}.'
)
OPENING = "(The call has connected. Say your first line.)"
QUIET = "(The assistant says nothing. Say your next line.)"


def caller_problems(spec: Any, tier: str) -> list[str]:
    """What is wrong with a scenario's ``caller:`` for ``tier`` (empty: nothing)."""
    if not isinstance(spec, Mapping):
        return ["`caller` must be a mapping (persona, goal, success, max_turns, script)"]
    if tier not in TIERS:
        return [f"unknown caller tier {tier!r} (one of {', '.join(TIERS)})"]
    problems: list[str] = []
    for key in ("persona", "goal", "success"):
        if key in spec and not (isinstance(spec[key], str) and spec[key].strip()):
            problems.append(f"`caller.{key}` must be a non-empty string")
    max_turns = spec.get("max_turns", DEFAULT_MAX_TURNS)
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        problems.append("`caller.max_turns` must be a whole number of 1 or more")
    script = spec.get("script")
    if script is not None and not (
        isinstance(script, list) and script and all(isinstance(s, str) and s for s in script)
    ):
        problems.append("`caller.script` must be a list of lines the caller says")
    if tier == "script" and script is None:
        problems.append(
            "`caller.script` is needed offline (tier script): the lines the caller says"
        )
    if tier != "script" and "goal" not in spec and script is None:
        problems.append("`caller.goal` is needed for a simulated caller")
    if "voice" in spec and (problem := voice_problem(spec["voice"])):
        problems.append(f"`caller.{problem[1:]}")
    snr = spec.get("snr_db", DEFAULT_SNR_DB)
    if snr is not None and (isinstance(snr, bool) or not isinstance(snr, (int, float))):
        problems.append("`caller.snr_db` must be a number of decibels, or null for no noise")
    return problems


def _turns_taken(history: Sequence[Exchange]) -> int:
    return sum(1 for x in history if x.role == "caller")


class ScriptCaller:
    """Tier 1: the script's lines in order; the last one is ``done``; then it hangs up."""

    def __init__(self, script: Sequence[str], max_turns: int) -> None:
        self.script, self.max_turns = list(script), max_turns

    async def next_turn(self, history: Sequence[Exchange]) -> CallerTurn | None:
        n = _turns_taken(history)
        last = min(len(self.script), self.max_turns) - 1
        if n > last:
            return None
        return CallerTurn(text=self.script[n], done=n == last)


class ChatCaller:
    """Tier 2: a chat model plays the persona; it stops when it says its goal is reached or at
    ``max_turns`` caller turns."""

    def __init__(
        self,
        endpoint: ChatEndpoint,
        *,
        persona: str,
        goal: str,
        max_turns: int,
        script: Sequence[str] | None = None,
    ) -> None:
        self.endpoint, self.max_turns = endpoint, max_turns
        self.persona, self.goal, self.script = persona, goal, script
        self.finished = False

    def prompt(self, history: Sequence[Exchange]) -> list[dict[str, str]]:
        """The messages the model is sent: it speaks as the "assistant" of its own chat, so
        the voice assistant's lines are the "user" ones."""
        messages = [
            {"role": "system", "content": SYSTEM.format(persona=self.persona, goal=self.goal)}
        ]
        for x in history:
            messages.append(
                {"role": "assistant" if x.role == "caller" else "user", "content": x.text}
            )
        if not history:
            messages.append({"role": "user", "content": OPENING})
        elif history[-1].role == "caller":
            messages.append({"role": "user", "content": QUIET})
        return messages

    async def next_turn(self, history: Sequence[Exchange]) -> CallerTurn | None:
        if self.finished or _turns_taken(history) >= self.max_turns:
            return None
        extension: dict[str, Any] = {"caller": {"goal": self.goal}}
        if self.script is not None:
            extension["caller"]["script"] = list(self.script)
        completion = await complete(
            self.endpoint,
            self.prompt(history),
            schema_name="vlrun_caller_turn",
            schema=CALLER_SCHEMA,
            extension=extension,
            purpose="the simulated caller",
        )
        data = parse_json_object(completion.content)
        if data is not None and isinstance(data.get("say"), str):
            say, done = data["say"].strip(), data.get("done") is True
        else:  # a model that ignored the format still spoke: its words are the turn
            say, done = completion.content.strip(), False
        if not say:
            self.finished = True
            return None  # nothing to say: the caller hangs up
        self.finished = done
        return CallerTurn(text=say[:MAX_SAY_CHARS], done=done)


class AudioCaller:
    """Tier 3: another caller's turns, spoken, with noise seeded by (seed, turn)."""

    def __init__(self, inner: Caller, *, voice: str, snr_db: float | None, seed: int) -> None:
        self.inner, self.voice, self.snr_db, self.seed = inner, voice, snr_db, seed

    async def next_turn(self, history: Sequence[Exchange]) -> CallerTurn | None:
        turn = await self.inner.next_turn(history)
        if turn is None:
            return None
        pcm = await speak(turn.text, self.voice)
        audio = add_noise(pcm, self.snr_db, self.seed, _turns_taken(history))
        return CallerTurn(text=turn.text, audio=audio, done=turn.done)


def caller_for(
    spec: Mapping[str, Any],
    *,
    tier: Tier,
    endpoint: ChatEndpoint | None,
    seed: int,
) -> Caller:
    """The caller a scenario's ``caller:`` asks for, on ``tier``.

    ``text`` needs ``endpoint`` (a model, or ``ChatEndpoint.emulator`` offline); ``audio``
    speaks a chat caller when given an endpoint and the script otherwise.
    """
    problems = caller_problems(spec, tier)
    if problems:
        raise EvalsError(
            "; ".join(problems), hint="see docs/evals.md#the-caller for the `caller:` keys"
        )
    max_turns = int(spec.get("max_turns", DEFAULT_MAX_TURNS))
    script = spec.get("script")
    if tier == "text" and endpoint is None:
        raise EvalsError(
            "a text-tier caller needs a chat endpoint to play it",
            hint="point the caller at a model, or at the emulator (docs/evals.md#endpoints)",
        )
    inner: Caller
    if endpoint is not None and tier != "script":
        inner = ChatCaller(
            endpoint,
            persona=str(spec.get("persona", "a caller")),
            goal=str(spec.get("goal") or "; ".join(script or ())),
            max_turns=max_turns,
            script=script,
        )
    elif script is not None:
        inner = ScriptCaller(script, max_turns)
    else:
        raise EvalsError(
            "an audio caller without a chat endpoint speaks `caller.script`, which is missing",
            hint="add script: [lines...] to the caller, or point it at a chat endpoint",
        )
    if tier != "audio":
        return inner
    snr = spec.get("snr_db", DEFAULT_SNR_DB)
    return AudioCaller(
        inner,
        voice=str(spec.get("voice", "espeak")),
        snr_db=None if snr is None else float(snr),
        seed=seed,
    )
