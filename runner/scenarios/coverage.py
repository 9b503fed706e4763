"""Flow coverage: which parts of a profile's flow a set of scenario runs exercised.

A scenario run shows its walk through the flow in the generated ``record_<node>`` calls it
made: each call's arguments are the values collected there, and its output says where the
flow went (``{"ok": true, "recorded": {...}, "next_step": "confirm"}``). :class:`FlowWalk`
reads those calls from a :class:`~runner.scenarios.results.ScenarioResult`, a line of
``results.jsonl`` or a recorded trace; :func:`flow_coverage` lays every walk of one profile
over its graph and counts four kinds of item:

- **nodes** entered (the start node always is);
- **transitions** taken, from nodes whose transitions have no ``when:``;
- **branches**: the transitions of a node that has a ``when:``, each one taken (the one with
  no ``when`` is the "otherwise" branch);
- **values**: each value a node collects, given at least once.

Each item not exercised comes with the shortest path from the start node that would reach
it (conditions on the way shown), so the report says which scenario to write next.
Values of an ``enum`` also list the members never seen (advice, not counted in the ratio).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.config.flow_model import RECORD_PREFIX, Flow, Node, Transition
from runner.config.source import PathKey

Kind = Literal["node", "transition", "branch", "value"]
KINDS: tuple[Kind, ...] = ("node", "transition", "branch", "value")
_MASK = "***"
_SHOWN_BY = 3  # scenario names kept per covered item
_PLURAL = {"node": "nodes", "transition": "transitions", "branch": "branches", "value": "values"}


# --- walks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One accepted ``record_<node>`` call: the values given and where the flow went."""

    node: str
    given: Mapping[str, Any]  # the call's arguments (a secret value may be masked)
    to: str | None  # the next node, None when no transition applied yet


@dataclass(frozen=True)
class FlowWalk:
    """One scenario run's walk: its accepted record calls in order (the start is implied)."""

    steps: tuple[Step, ...]
    name: str = ""  # the scenario, for "exercised by"
    profile: str | None = None  # the profile's path, when the source says

    @classmethod
    def from_result(cls, result: Any) -> FlowWalk | None:
        """The walk of a ScenarioResult or of one ``results.jsonl`` record (a mapping with
        ``turns[].tool_calls[]`` of ``name``, ``arguments``, ``output``, ``ok``).

        None when the run never got going (an error before its first turn): it exercised
        nothing, not even the start node."""
        if isinstance(result, Mapping):
            name = str(result.get("name") or result.get("scenario") or "")
            profile = result.get("profile")
            turns = result.get("turns") or []
            error = result.get("error")
            calls = [
                (c.get("name"), c.get("arguments"), c.get("output"), c.get("ok"))
                for t in turns
                if isinstance(t, Mapping)
                for c in t.get("tool_calls") or []
                if isinstance(c, Mapping)
            ]
        else:
            name = str(getattr(result, "name", "") or "")
            profile = getattr(result, "profile", None)
            turns = list(getattr(result, "turns", None) or [])
            error = getattr(result, "error", None)
            calls = [
                (c.name, c.arguments, c.output, c.ok)
                for t in turns
                for c in getattr(t, "tool_calls", ())
            ]
        if error and not turns:
            return None
        walk = cls.from_tool_calls(calls, name=name)
        return cls(walk.steps, name, str(profile) if profile is not None else None)

    @classmethod
    def from_tool_calls(
        cls, calls: Iterable[tuple[Any, Any, Any, Any]], *, name: str = ""
    ) -> FlowWalk:
        """From ``(tool name, arguments JSON, output JSON, ok)`` in call order; calls that
        are not record calls, were refused or never answered are skipped."""
        steps: list[Step] = []
        for tool, arguments, output, ok in calls:
            tool = str(tool or "")
            if not tool.startswith(RECORD_PREFIX) or ok is False or output is None:
                continue
            answer = _json_object(output)
            if answer is None or answer.get("ok") is not True:
                continue
            given = _json_object(arguments) or {}
            recorded = answer.get("recorded")
            if isinstance(recorded, Mapping):  # what the walk stored, should arguments be cut
                given = {**recorded, **{k: v for k, v in given.items() if v != _MASK}}
            to = answer.get("next_step")
            steps.append(
                Step(tool[len(RECORD_PREFIX) :], given, str(to) if isinstance(to, str) else None)
            )
        return cls(tuple(steps), name)

    @classmethod
    def from_trace(
        cls, events: Iterable[tuple[str, Mapping[str, Any]]], *, name: str = ""
    ) -> FlowWalk:
        """From a trace's ``(dir, event)`` pairs (``vlrun run --trace``, ``vlrun serve``'s
        ``*.trace.jsonl``, ``vlrun test --record``): each record call's arguments (from
        ``response.function_call_arguments.done``) and its output (the runner's
        ``function_call_output``)."""
        pending: dict[str, tuple[str, str]] = {}
        calls: list[tuple[Any, Any, Any, Any]] = []
        for direction, event in events:
            kind = event.get("type")
            if direction == "in" and kind == "response.function_call_arguments.done":
                pending[str(event.get("call_id"))] = (
                    str(event.get("name") or ""),
                    str(event.get("arguments") or ""),
                )
            elif direction == "out" and kind == "conversation.item.create":
                item = event.get("item") or {}
                if not isinstance(item, Mapping) or item.get("type") != "function_call_output":
                    continue
                call = pending.pop(str(item.get("call_id")), None)
                if call is not None:
                    calls.append((call[0], call[1], item.get("output"), None))
        return cls.from_tool_calls(calls, name=name)


def _json_object(text: Any) -> dict[str, Any] | None:
    if isinstance(text, Mapping):
        return dict(text)
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A node, transition, branch or value of the flow, and whether some walk exercised it."""

    kind: Kind
    key: str  # "confirm", "collect -> confirm", "collect.guest"
    node: str  # the node it belongs to (a transition's source)
    label: str  # how it reads in a report
    covered_by: tuple[str, ...] = ()  # the first scenarios that exercised it
    count: int = 0  # how many times, over all walks
    path: tuple[str, ...] | None = None  # uncovered: the shortest route to it (None: none)
    how: str = ""  # uncovered: what the last step needs
    where: str | None = None  # file:line in the profile

    @property
    def covered(self) -> bool:
        return self.count > 0

    def route(self) -> str:
        """The path as text: ``collect -> confirm [confirmed] -> book``."""
        if self.path is None:
            return "no path from the start node reaches it"
        return " ".join(self.path)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "key": self.key,
            "node": self.node,
            "label": self.label,
            "covered": self.covered,
            "count": self.count,
            "covered_by": list(self.covered_by),
        }
        if not self.covered:
            out["path"] = list(self.path) if self.path is not None else None
            out["how"] = self.how
        if self.where:
            out["where"] = self.where
        return out


@dataclass(frozen=True)
class CoverageReport:
    """What the walks of one profile's scenarios exercised of its flow."""

    items: tuple[Item, ...]
    walks: int
    title: str = ""
    notes: tuple[str, ...] = ()  # walks that do not fit this flow
    enums: Mapping[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=dict)

    @property
    def covered(self) -> int:
        return sum(1 for i in self.items if i.covered)

    @property
    def ratio(self) -> float:
        """Covered items over all items (1.0 for a flow with nothing to cover)."""
        return self.covered / len(self.items) if self.items else 1.0

    @property
    def uncovered(self) -> list[Item]:
        return [i for i in self.items if not i.covered]

    def counts(self) -> dict[str, tuple[int, int]]:
        """(covered, total) per kind."""
        return {
            kind: (
                sum(1 for i in self.items if i.kind == kind and i.covered),
                sum(1 for i in self.items if i.kind == kind),
            )
            for kind in KINDS
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "ratio": round(self.ratio, 4),
            "covered": self.covered,
            "total": len(self.items),
            "walks": self.walks,
            "kinds": {k: {"covered": c, "total": t} for k, (c, t) in self.counts().items()},
            "items": [i.to_dict() for i in self.items],
            "uncovered": [i.to_dict() for i in self.uncovered],
            "enums": {
                name: {"seen": list(seen), "never": list(never)}
                for name, (seen, never) in self.enums.items()
            },
            "notes": list(self.notes),
        }

    def render_text(self) -> str:
        """A few lines for a terminal: the ratio per kind, then each item not exercised
        with the path that would reach it."""
        head = f"flow coverage{f' of {self.title}' if self.title else ''}: "
        head += f"{self.ratio:.0%} ({self.covered}/{len(self.items)}) over {self.walks} run(s)"
        parts = [f"{_PLURAL[kind]} {c}/{t}" for kind, (c, t) in self.counts().items() if t]
        lines = [head, "  " + ", ".join(parts)]
        for item in self.uncovered:
            at = f" ({item.where})" if item.where else ""
            lines.append(f"  not exercised: {item.kind} {item.label}{at}")
            lines.append(f"    path: {item.route()}")
            if item.how:
                lines.append(f"    then: {item.how}")
        for name, (_, never) in self.enums.items():
            if never:
                shown = ", ".join(_show(v) for v in never)
                lines.append(f"  {name}: never given {shown} (of its enum)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def flow_coverage(
    profile_flow: Flow,
    walks: Iterable[FlowWalk | None],
    *,
    title: str = "",
    where: Callable[[PathKey], str | None] | None = None,
) -> CoverageReport:
    """Lay ``walks`` (None entries are skipped) over ``profile_flow``; ``where(path)`` gives
    an item's file:line (a profile's ``origin``)."""
    flow = profile_flow
    counts: dict[str, int] = {}
    by: dict[str, list[str]] = {}
    notes: list[str] = []
    seen_enum: dict[str, list[Any]] = {}
    taken = [w for w in walks if w is not None]

    def hit(key: str, name: str) -> None:
        counts[key] = counts.get(key, 0) + 1
        names = by.setdefault(key, [])
        if name and name not in names and len(names) < _SHOWN_BY:
            names.append(name)

    for walk in taken:
        label = walk.name or "a scenario"
        node = flow.nodes.get(flow.start)
        if node is None:
            break
        hit(_node_key(node.name), walk.name)
        values: dict[str, Any] = {}
        for step in walk.steps:
            recorded = flow.nodes.get(step.node)
            if recorded is None or recorded.record_tool is None:
                notes.append(f"{label} called {RECORD_PREFIX}{step.node}, no step of this flow")
                break
            if recorded.name != node.name:
                # the runner refuses a record call for another node; a walk that shows one was
                # made against another version of the flow
                notes.append(
                    f"{label} recorded {recorded.name!r} while the flow was in {node.name!r}"
                )
                break
            for value in recorded.collect:
                given = step.given.get(value.name)
                values[value.name] = given
                if given is not None:
                    hit(_value_key(recorded.name, value.name), walk.name)
                    if value.enum is not None and given != _MASK:
                        seen_enum.setdefault(value.name, []).append(given)
            if step.to is None:
                continue
            index = _transition_taken(recorded, step.to, values)
            if index is None:
                notes.append(f"{label} went from {recorded.name!r} to {step.to!r}, no transition")
                break
            hit(_edge_key(recorded.name, index), walk.name)
            node = flow.nodes[step.to]
            hit(_node_key(node.name), walk.name)

    routes = _shortest_routes(flow)
    items: list[Item] = []
    for node in flow.nodes.values():
        key = _node_key(node.name)
        route = routes.get(node.name)
        items.append(
            Item(
                "node",
                key,
                node.name,
                node.name,
                tuple(by.get(key, ())),
                counts.get(key, 0),
                route,
                "",
                _where(where, node.path),
            )
        )
        branching = any(t.when is not None for t in node.transitions)
        for i, t in enumerate(node.transitions):
            key = _edge_key(node.name, i)
            cond = t.when.text if t.when is not None else ("otherwise" if branching else "")
            label = f"{node.name} -> {t.to}" + (f" [{cond}]" if cond else "")
            how = f"call record_{node.name}"
            if t.when is not None:
                how = f"call record_{node.name} so that `{t.when.text}` holds"
            elif branching:
                how = f"call record_{node.name} so that no condition before it holds"
            earlier = [e.when.text for e in node.transitions[:i] if e.when is not None]
            if earlier and t.when is not None:
                how += " and none before it (" + "; ".join(f"`{e}`" for e in earlier) + ")"
            arrow = _arrow(node, t)
            items.append(
                Item(
                    "branch" if branching else "transition",
                    key,
                    node.name,
                    label,
                    tuple(by.get(key, ())),
                    counts.get(key, 0),
                    (*route, arrow, t.to) if route is not None else None,
                    how,
                    _where(where, t.path),
                )
            )
        for value in node.collect:
            key = _value_key(node.name, value.name)
            optional = "" if value.required else " (optional)"
            items.append(
                Item(
                    "value",
                    key,
                    node.name,
                    f"{node.name}.{value.name}{optional}",
                    tuple(by.get(key, ())),
                    counts.get(key, 0),
                    route,
                    f"call record_{node.name} with {value.name}",
                    _where(where, (*node.path, "collect", value.name)),
                )
            )
    enums: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
    for name, value in flow.values.items():
        if value.enum is None:
            continue
        seen = seen_enum.get(name, [])
        enums[name] = (
            tuple(v for v in value.enum if any(_same(v, s) for s in seen)),
            tuple(v for v in value.enum if not any(_same(v, s) for s in seen)),
        )
    return CoverageReport(tuple(items), len(taken), title, tuple(notes), enums)


def _node_key(name: str) -> str:
    return name


def _edge_key(node: str, index: int) -> str:
    return f"{node}#{index}"


def _value_key(node: str, value: str) -> str:
    return f"{node}.{value}"


def _transition_taken(node: Node, to: str, values: Mapping[str, Any]) -> int | None:
    """Which of ``node``'s transitions took the flow to ``to``: the first whose condition
    holds on the values so far, as the walk picks it. A condition on a masked secret can
    read wrong; then the first transition to ``to`` is the answer."""
    for i, t in enumerate(node.transitions):
        if t.when is None or t.when.holds(values):
            if t.to == to:
                return i
            break
    return next((i for i, t in enumerate(node.transitions) if t.to == to), None)


def _shortest_routes(flow: Flow) -> dict[str, tuple[str, ...]]:
    """For each node the start reaches: the fewest transitions there, as words
    (``collect``, ``-[party_size > 8]->``, ``large_party``)."""
    if flow.start not in flow.nodes:
        return {}
    routes: dict[str, tuple[str, ...]] = {flow.start: (flow.start,)}
    queue = deque([flow.start])
    while queue:
        name = queue.popleft()
        node = flow.nodes[name]
        if node.final:
            continue
        for t in node.transitions:
            if t.to in flow.nodes and t.to not in routes:
                arrow = _arrow(node, t)
                routes[t.to] = (*routes[name], arrow, t.to)
                queue.append(t.to)
    return routes


def _arrow(node: Node, t: Transition) -> str:
    if t.when is not None:
        return f"-[{t.when.text}]->"
    return "-[otherwise]->" if any(e.when is not None for e in node.transitions) else "->"


def _where(where: Callable[[PathKey], str | None] | None, path: PathKey) -> str | None:
    if where is None:
        return None
    try:
        return where(path)
    except Exception:  # a location is a courtesy; a report never fails for want of one
        return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


# --- several profiles --------------------------------------------------------------------------


def coverage_by_profile(
    runs: Sequence[tuple[Any, Any]],
) -> dict[str, CoverageReport]:
    """Flow coverage per profile from ``(profile, result)`` pairs: a loaded Profile and a
    ScenarioResult or ``results.jsonl`` record. Profiles without a flow are left out; the
    key is the profile's source path."""
    grouped: dict[str, tuple[Any, list[FlowWalk | None]]] = {}
    for profile, result in runs:
        if getattr(profile, "flow", None) is None:
            continue
        key = str(profile.source)
        grouped.setdefault(key, (profile, []))[1].append(FlowWalk.from_result(result))
    return {
        key: flow_coverage(profile.flow, walks, title=key, where=profile.origin)
        for key, (profile, walks) in grouped.items()
    }
