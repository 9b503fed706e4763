"""Judged expectations: a chat model (or the emulator's rules) decides whether a rubric holds.

The judge is asked for a structured verdict, ``{"passed": bool, "reason": str}`` (a JSON
schema in ``response_format``), over the conversation so far and, for a per-reply rubric, the
one reply. The prompt, the answer as received, the verdict and its reason are kept in the
:class:`Verdict`, which results.jsonl stores whole.

Offline (``ChatEndpoint.emulator``), the request also carries the rubric's ``offline`` rules
and the text they apply to; the emulator answers by them and says it is not a model
(docs/evals.md#offline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.evals.endpoint import ChatEndpoint, complete, parse_json_object
from runner.evals.types import EvalsError, Exchange, Verdict

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"passed": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["passed", "reason"],
    "additionalProperties": False,
}
SYSTEM = (
    "You are a strict evaluator of a voice assistant. You are given a rubric and a phone "
    "conversation between a caller and the assistant. Decide whether the rubric holds. "
    "Answer only with a JSON object: "
    '{"passed": true or false, "reason": "one sentence citing what the assistant said"}. '
    "When in doubt, the rubric does not hold."
)
#: the keys of a rubric's ``offline`` rules (docs/evals.md#offline)
OFFLINE_KEYS = frozenset({"pass_if", "fail_if", "passed", "reason_pass", "reason_fail"})


def offline_problems(rules: Any) -> list[str]:
    """What is wrong with a rubric's ``offline`` rules (empty: nothing), for `vlrun check`."""
    if not isinstance(rules, Mapping):
        return ["`offline` must be a mapping, e.g. {pass_if: '7|seven'}"]
    problems = [
        f"`offline` has an unknown key {key!r} (known: {', '.join(sorted(OFFLINE_KEYS))})"
        for key in rules
        if key not in OFFLINE_KEYS
    ]
    if not any(k in rules for k in ("pass_if", "fail_if", "passed")):
        problems.append("`offline` needs pass_if, fail_if or passed (a fixed verdict)")
    from runner.config.patterns import PatternError, compile_pattern

    for key in ("pass_if", "fail_if"):
        if key in rules:
            if not isinstance(rules[key], str) or not rules[key]:
                problems.append(f"`offline.{key}` must be a non-empty regular expression")
                continue
            try:
                compile_pattern(rules[key])
            except PatternError as exc:
                problems.append(f"`offline.{key}` {rules[key]!r} is not a valid pattern: {exc}")
    if "passed" in rules and not isinstance(rules["passed"], bool):
        problems.append("`offline.passed` must be true or false")
    for key in ("reason_pass", "reason_fail"):
        if key in rules and not isinstance(rules[key], str):
            problems.append(f"`offline.{key}` must be a string")
    return problems


def transcript(history: Sequence[Exchange]) -> str:
    """The conversation as the judge reads it, one ``caller:``/``assistant:`` line per turn."""
    return "\n".join(f"{x.role}: {x.text}" for x in history) or "(no turns)"


def judge_prompt(
    rubric: str, history: Sequence[Exchange], reply: str | None
) -> list[dict[str, str]]:
    """The chat messages a judge is sent."""
    user = f"Rubric: {rubric}\n\nConversation:\n{transcript(history)}"
    if reply is not None:
        user += f"\n\nJudge only this reply of the assistant:\n{reply}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class Judge:
    """Judges rubrics on one endpoint; stateless, so one judge serves every scenario."""

    def __init__(self, endpoint: ChatEndpoint) -> None:
        self.endpoint = endpoint

    async def judge(
        self,
        rubric: str,
        history: Sequence[Exchange],
        *,
        reply: str | None = None,
        offline: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """Whether ``rubric`` holds for the conversation (or for ``reply`` in it)."""
        prompt = judge_prompt(rubric, history, reply)
        extension: dict[str, Any] | None = None
        if self.endpoint.offline_rules:
            if offline is None:
                raise EvalsError(
                    f"the rubric {rubric!r} has no `offline:` rules, which the emulator's "
                    "judge needs (it is not a model)",
                    hint="add e.g. offline: {pass_if: '7|seven'} to the rubric, or judge with "
                    "a model (docs/evals.md#endpoints)",
                )
            problems = offline_problems(offline)
            if problems:
                raise EvalsError(f"rubric {rubric!r}: " + "; ".join(problems))
            said = reply if reply is not None else _assistant_text(history)
            extension = {"judge": {"rules": dict(offline), "text": said}}
        completion = await complete(
            self.endpoint,
            prompt,
            schema_name="vlrun_verdict",
            schema=VERDICT_SCHEMA,
            extension=extension,
            purpose="the judge",
        )
        data = parse_json_object(completion.content)
        if data is None or not isinstance(data.get("passed"), bool):
            shown = completion.content.strip().replace("\n", " ")[:200]
            return Verdict(
                passed=False,
                reason=f"the judge's answer is not a verdict: {shown!r}",
                prompt=prompt,
                model=completion.model,
                raw=completion.content,
            )
        reason = data.get("reason")
        return Verdict(
            passed=data["passed"],
            reason=reason.strip() if isinstance(reason, str) and reason.strip() else "(no reason)",
            prompt=prompt,
            model=completion.model,
            raw=completion.content,
        )


def _assistant_text(history: Sequence[Exchange]) -> str:
    return "\n".join(x.text for x in history if x.role == "assistant")


def judge_for(endpoint: ChatEndpoint) -> Judge:
    """The judge that asks ``endpoint``."""
    return Judge(endpoint)
