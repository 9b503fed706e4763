"""A flow's templates and conditions, each held against the values that reach it.

A node's templates (instructions, greeting, goodbye) see the values collected on every path to
it; its transitions' conditions also see its own. Findings, each at file:line: a value used
before it is collected on every path, a template that fails with sample values, a condition
that can never hold (a type error, a value outside an enum or a range).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.config import condition as cond
from runner.config.flow_graph import collected_before
from runner.config.flow_model import Flow, Text
from runner.config.locator import Locator
from runner.config.source import PathKey
from runner.config.template import TemplateProblem, needs_render, used_names
from runner.errors import Problem


def value_use_problems(
    flow: Flow,
    loc: Locator,
    *,
    var_names: Iterable[str] = (),
    variables: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Templates and conditions that use a value not collected before them, or that fail.

    Expects a flow whose start is one of its nodes
    (:func:`runner.config.flow_graph.graph_problems` says so first).
    """
    return _value_use_problems(flow, loc, set(var_names), dict(variables or {}))


def _value_use_problems(
    flow: Flow, loc: Locator, var_names: set[str], variables: dict[str, Any]
) -> list[Problem]:
    out: list[Problem] = []
    available = collected_before(flow)
    for name, before in available.items():
        node = flow.nodes[name]
        mine = before | {v.name for v in node.collect}
        # Templates on entering see what was collected before; conditions also see this node's.
        texts: list[tuple[Text, PathKey]] = []
        if node.instructions is not None:
            texts.append((node.instructions, (*node.path, "instructions")))
        for label, words in (("greeting", node.greeting), ("goodbye", node.goodbye)):
            if words is None:
                continue
            for key, text in (("instructions", words.instructions), ("text", words.text)):
                if text is not None:
                    texts.append((text, (*node.path, label, key)))
        for text, path in texts:
            out += _template_problems(flow, name, text, path, before, var_names, variables, loc)
        specs = {v: flow.values[v].__dict__ for v in mine if v in flow.values}
        for t in node.transitions:
            if t.when is None:
                continue
            for message in cond.type_problems(t.when, specs):
                if "is not a value collected" in message and any(
                    n in flow.values for n in t.when.names - specs.keys()
                ):
                    message += " on every path to this node"
                out.append(
                    loc.problem(
                        (*t.path, "when"),
                        f"transition {name} -> {t.to}: {message}",
                        hint="conditions use this node's values and those collected before it",
                    )
                )
    return out


def _template_problems(
    flow: Flow,
    node: str,
    text: Text,
    path: PathKey,
    before: frozenset[str],
    var_names: set[str],
    variables: dict[str, Any],
    loc: Locator,
) -> list[Problem]:
    if not needs_render(text.source):
        return []
    try:
        names = used_names(text.source)
    except TemplateProblem:
        names = set()
    missing = sorted(n for n in names if n in flow.values and n not in before)
    if missing:
        return [
            loc.problem(
                path,
                f"node {node!r} uses {', '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not collected on every path to it",
                hint="collect the value in a node before this one on every path, "
                "or use it only in later nodes",
            )
        ]
    sample = {**variables, **{v: flow.values[v].sample() for v in before}}
    try:
        text.render(sample)
    except TemplateProblem as exc:
        return [exc.problem]
    return []
