"""A flow's graph: where each node leads, what it reaches, what is collected on the way there.

Its checks (each at file:line): a start or a transition naming no node, nodes the start cannot
reach (errors); nodes from which no end node is reached, a flow with no end, an end node's
transitions, an agent hand-over's unused parts, a goodbye never said (warnings); and names
that clash: a tool the generated ``record_<node>`` tool would shadow, a value named like a
``vars:`` variable.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from runner.config.flow_model import Flow
from runner.config.locator import Locator
from runner.config.source import PathKey
from runner.errors import Problem


def graph_problems(
    flow: Flow,
    loc: Locator,
    *,
    tool_names: Iterable[tuple[str, PathKey]] = (),
    var_names: Iterable[str] = (),
) -> list[Problem]:
    """The graph's findings and its name clashes; only the start's when it names no node."""
    out: list[Problem] = []
    nodes = flow.nodes
    if flow.start not in nodes:
        out.append(
            loc.problem(
                ("flow", "start"),
                f"the start node {flow.start!r} is not one of the nodes",
                hint=_suggest(flow.start, nodes),
            )
        )
        return out
    for node in nodes.values():
        for t in node.transitions:
            if t.to not in nodes:
                out.append(
                    loc.problem(
                        (*t.path, "to"),
                        f"node {node.name!r} has a transition to {t.to!r}, which is not a node",
                        hint=_suggest(t.to, nodes),
                    )
                )
        if node.end and node.transitions:
            out.append(
                loc.problem(
                    (*node.path, "transitions"),
                    f"node {node.name!r} is an end node: its transitions are never taken",
                    hint="drop `end: true` or the transitions",
                    severity="warning",
                    at_key=True,
                )
            )
        if node.agent is not None and (node.collect or node.transitions or node.tools or node.end):
            what = [
                k
                for k, on in (
                    ("collect", node.collect),
                    ("transitions", node.transitions),
                    ("tools", node.tools),
                    ("end", node.end),
                )
                if on
            ]
            out.append(
                loc.problem(
                    (*node.path, "agent"),
                    f"node {node.name!r} hands the conversation to agent {node.agent[0]!r}, so "
                    f"its {', '.join(what)} would never be used",
                    hint="the agent takes over with its own instructions and tools; keep "
                    "`instructions` and `greeting` for the hand-over, move the rest",
                    at_key=True,
                )
            )
        if node.goodbye is not None and not node.end:
            out.append(
                loc.problem(
                    (*node.path, "goodbye"),
                    f"node {node.name!r} has a goodbye but is not an end node; it is never said",
                    hint="add `end: true`, or use `greeting` for words on entering",
                    severity="warning",
                    at_key=True,
                )
            )
    out += _reach_problems(flow, loc)
    out += _shadow_problems(flow, loc, tool_names, var_names)
    return out


def successors(flow: Flow, name: str) -> list[str]:
    node = flow.nodes.get(name)
    return [t.to for t in node.transitions if t.to in flow.nodes] if node and not node.final else []


def _reachable(flow: Flow, start: str) -> list[str]:
    seen = [start]
    for name in seen:
        for nxt in successors(flow, name):
            if nxt not in seen:
                seen.append(nxt)
    return seen


def _reach_problems(flow: Flow, loc: Locator) -> list[Problem]:
    out: list[Problem] = []
    reachable = set(_reachable(flow, flow.start))
    for name, node in flow.nodes.items():
        if name not in reachable:
            out.append(
                loc.problem(
                    node.path,
                    f"node {name!r} cannot be reached from the start node {flow.start!r}",
                    hint="add a transition to it, or remove it",
                    at_key=True,
                )
            )
    ends = {n for n, node in flow.nodes.items() if node.final}
    if not ends:
        out.append(
            loc.problem(
                ("flow", "nodes"),
                "the flow has no end node: the conversation ends only when the user quits",
                hint="mark the last node `end: true` (with a `goodbye`)",
                severity="warning",
                at_key=True,
            )
        )
        return out
    for name in sorted(reachable, key=list(flow.nodes).index):
        if not ends & set(_reachable(flow, name)):
            out.append(
                loc.problem(
                    flow.nodes[name].path,
                    f"no path from node {name!r} reaches an end node (a loop with no way out, "
                    "or a node with no transitions)",
                    hint="add a transition towards an end node",
                    severity="warning",
                    at_key=True,
                )
            )
    return out


def _shadow_problems(
    flow: Flow, loc: Locator, tool_names: Iterable[tuple[str, PathKey]], var_names: Iterable[str]
) -> list[Problem]:
    out: list[Problem] = []
    generated = {n.record_tool: n.name for n in flow.nodes.values() if n.record_tool}
    declared = list(tool_names) + [
        (tool, (*node.path, "tools", i))
        for node in flow.nodes.values()
        for i, tool in enumerate(node.tools)
    ]
    for tool, path in declared:
        if tool in generated:
            out.append(
                loc.problem(
                    path,
                    f"tool {tool!r} has the name vlrun generates for node {generated[tool]!r}'s "
                    "values; the generated tool would shadow it",
                    hint=f"rename the tool, or the node {generated[tool]!r}",
                )
            )
    vars_ = set(var_names)
    for node in flow.nodes.values():
        for value in node.collect:
            if value.name in vars_:
                out.append(
                    loc.problem(
                        (*node.path, "collect", value.name),
                        f"value {value.name!r} has the name of a variable in `vars:`; "
                        "templates could not tell them apart",
                        hint="rename the value or the variable",
                        at_key=True,
                    )
                )
    return out


def collected_before(flow: Flow) -> dict[str, frozenset[str]]:
    """For each reachable node, the values collected on every path from start to it."""
    order = _reachable(flow, flow.start)
    everything = frozenset(flow.values)
    known: dict[str, frozenset[str]] = {n: everything for n in order}
    known[flow.start] = frozenset()
    changed = True
    while changed:  # a must-analysis: intersect over predecessors until nothing changes
        changed = False
        for name in order:
            if name == flow.start:
                continue
            preds = [p for p in order if name in successors(flow, p)]
            new = frozenset(everything)
            for p in preds:
                new &= known[p] | {v.name for v in flow.nodes[p].collect}
            if new != known[name]:
                known[name], changed = new, True
    return known


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean {close[0]!r}?" if close else "nodes: " + ", ".join(options)
