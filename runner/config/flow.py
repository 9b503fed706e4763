"""Conversation flows in profiles: the node graph, its checks, and each node's whole session.

A profile's ``flow:`` names nodes; each node adds its instructions and tools to the profile's
own, may collect typed values through a generated ``record_<node>`` tool, and moves on by its
transitions (the first whose ``when`` holds). Everything here is pure: the live side
(:mod:`runner.flows`) walks the graph, this module reads it, checks it and says what
``session.update`` each node sends.

Checks (``vlrun check``, each at file:line):
- a start or a transition naming no node; nodes that start cannot reach (errors);
- nodes from which no end node can be reached, a flow with no end (warnings: loops are fine);
- templates and conditions that use a value not collected on every path to them, or none;
- conditions that can never hold (type errors, values outside an enum or a range);
- tools that the generated ``record_<node>`` tools would shadow, and value names that clash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.config import condition as cond
from runner.config.compose import unprotect
from runner.config.locator import Locator
from runner.config.source import PathKey, Pos
from runner.config.template import TemplateProblem, Where, needs_render, render
from runner.config.types import Greeting
from runner.errors import Problem

RECORD_PREFIX = "record_"
CONTEXT_MODES = ("keep", "reset", "summary")
_SAMPLE = {"string": "text", "integer": 1, "number": 1.0, "boolean": False}


@dataclass(frozen=True)
class Value:
    """One value a node collects, with its JSON Schema property."""

    name: str
    type: str
    description: str | None = None
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = True
    secret: bool = False

    def schema(self) -> dict[str, Any]:
        """The property of the generated tool's parameters."""
        out: dict[str, Any] = {"type": self.type}
        if self.description:
            out["description"] = self.description
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out

    def sample(self) -> Any:
        """A value of the right type, for rendering templates at check time."""
        if self.enum:
            return self.enum[0]
        if self.type in ("integer", "number") and self.minimum is not None:
            return int(self.minimum) if self.type == "integer" else self.minimum
        return _SAMPLE[self.type]


@dataclass(frozen=True)
class Text:
    """A template from the profile, with where it sits (for errors at run time too)."""

    source: str
    where: Where
    protected: Mapping[str, str] = field(default_factory=dict)  # env values kept from Jinja

    def render(self, variables: Mapping[str, Any]) -> str:
        return unprotect(render(self.source, variables, self.where), self.protected)


@dataclass(frozen=True)
class Words:
    """A node's greeting or goodbye: instructions for the model, or fixed text."""

    instructions: Text | None = None
    text: Text | None = None

    def rendered(self, variables: Mapping[str, Any]) -> Greeting:
        if self.text is not None:
            return Greeting(None, self.text.render(variables))
        return Greeting(self.instructions.render(variables) if self.instructions else None)


@dataclass(frozen=True)
class Transition:
    to: str
    when: cond.Condition | None
    path: PathKey


@dataclass(frozen=True)
class Node:
    name: str
    instructions: Text | None
    tools: tuple[str, ...]
    collect: tuple[Value, ...]
    transitions: tuple[Transition, ...]
    greeting: Words | None
    goodbye: Words | None
    context: str = "keep"
    end: bool = False
    path: PathKey = ()
    agent: tuple[str, str] | None = None  # (name, project): the conversation goes to it

    @property
    def final(self) -> bool:
        """The flow ends in this node (an end node, or a hand-over to an agent)."""
        return self.end or self.agent is not None

    @property
    def record_tool(self) -> str | None:
        """The generated tool's name, or None when the node has nothing to record."""
        if self.collect or self.transitions:
            return RECORD_PREFIX + self.name
        return None

    def record_schema(self) -> dict[str, Any]:
        """The generated ``record_<node>`` function tool."""
        props = {v.name: v.schema() for v in self.collect}
        required = [v.name for v in self.collect if v.required]
        if props:
            what = ", ".join(props)
            description = (
                f"Record {what} for the '{self.name}' step as soon as the user has given "
                "them; the conversation then moves on. Ask again if this returns an error."
            )
        else:
            description = (
                f"Call when the '{self.name}' step is done; the conversation then moves on."
            )
        params: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        if required:
            params["required"] = required
        return {
            "type": "function",
            "name": RECORD_PREFIX + self.name,
            "description": description,
            "parameters": params,
        }


@dataclass(frozen=True)
class Flow:
    start: str
    nodes: Mapping[str, Node]
    values: Mapping[str, Value] = field(default_factory=dict)  # every collected value by name

    def node_of_tool(self, tool_name: str) -> Node | None:
        """The node whose generated tool this is."""
        if not tool_name.startswith(RECORD_PREFIX):
            return None
        node = self.nodes.get(tool_name[len(RECORD_PREFIX) :])
        return node if node is not None and node.record_tool == tool_name else None

    def tool_names(self) -> set[str]:
        """Every tool a node offers: its plugins and the generated record tools."""
        names = {n.record_tool for n in self.nodes.values() if n.record_tool}
        return names | {tool for n in self.nodes.values() for tool in n.tools}

    @property
    def secret_values(self) -> frozenset[str]:
        return frozenset(n for n, v in self.values.items() if v.secret)

    def edges(self) -> list[tuple[str, str, str | None]]:
        """(from, to, condition text) for every transition, in file order."""
        return [
            (node.name, t.to, t.when.text if t.when else None)
            for node in self.nodes.values()
            for t in node.transitions
        ]


# --- reading ------------------------------------------------------------------------------------


def read_flow(
    doc: Mapping[str, Any],
    positions: Mapping[PathKey, Pos],
    loc: Locator,
    problems: list[Problem],
    *,
    where: Any,
    protected: Mapping[str, str] | None = None,
) -> Flow | None:
    """The profile's flow (schema-valid document), or None when it has none.

    ``where(pos, json_path, file)`` gives a template's :class:`Where` (load.py's rule).
    """
    spec = doc.get("flow")
    if not isinstance(spec, Mapping):
        return None
    nodes: dict[str, Node] = {}
    values: dict[str, Value] = {}
    for name, raw in (spec.get("nodes") or {}).items():
        base: PathKey = ("flow", "nodes", name)
        texts = _Texts(positions, where, loc.default_file, dict(protected or {}))
        nodes[name] = _read_node(name, raw or {}, base, texts, loc, problems, values)
    return Flow(str(spec["start"]), nodes, values)


@dataclass(frozen=True)
class _Texts:
    """Makes the node's templates, each knowing where it sits in the file."""

    positions: Mapping[PathKey, Pos]
    where: Any
    file: str
    protected: Mapping[str, str]

    def text(self, raw: Any, path: PathKey) -> Text | None:
        if not isinstance(raw, str):
            return None
        jpath = "$." + ".".join(str(p) for p in path)
        return Text(raw, self.where(self.positions.get(path), jpath, self.file), self.protected)

    def words(self, raw: Any, path: PathKey) -> Words | None:
        if raw is None:
            return None
        if isinstance(raw, str):
            return Words(instructions=self.text(raw, path))
        return Words(
            instructions=self.text(raw.get("instructions"), (*path, "instructions")),
            text=self.text(raw.get("text"), (*path, "text")),
        )


def _read_node(
    name: str,
    raw: Mapping[str, Any],
    base: PathKey,
    texts: _Texts,
    loc: Locator,
    problems: list[Problem],
    values: dict[str, Value],
) -> Node:
    collect: list[Value] = []
    for vname, vspec in (raw.get("collect") or {}).items():
        value = Value(
            name=vname,
            type=str(vspec["type"]),
            description=vspec.get("description"),
            enum=tuple(vspec["enum"]) if "enum" in vspec else None,
            minimum=vspec.get("minimum"),
            maximum=vspec.get("maximum"),
            required=bool(vspec.get("required", True)),
            secret=bool(vspec.get("secret", False)),
        )
        vpath = (*base, "collect", vname)
        problems += _value_problems(value, vpath, loc)
        other = values.get(vname)
        if other is not None and (other.type, other.enum) != (value.type, value.enum):
            problems.append(
                loc.problem(
                    vpath,
                    f"value {vname!r} is collected elsewhere as a {other.type}"
                    + (f" from {list(other.enum)}" if other.enum else "")
                    + f"; here as a {value.type}",
                    hint="one name, one type: rename one of them",
                    at_key=True,
                )
            )
        values.setdefault(vname, value)
        collect.append(value)
    transitions: list[Transition] = []
    for i, t in enumerate(raw.get("transitions") or []):
        tpath = (*base, "transitions", i)
        when = None
        if t.get("when") is not None:
            try:
                when = cond.parse(str(t["when"]))
            except cond.ConditionError as exc:
                problems.append(
                    loc.problem(
                        (*tpath, "when"),
                        f"transition to {t['to']!r}: {exc}",
                        hint="e.g. `party_size > 8`, `category in ['vpn', 'email']`",
                    )
                )
        transitions.append(Transition(str(t["to"]), when, tpath))
    return Node(
        name=name,
        instructions=texts.text(raw.get("instructions"), (*base, "instructions")),
        tools=tuple(raw.get("tools") or ()),
        collect=tuple(collect),
        transitions=tuple(transitions),
        greeting=texts.words(raw.get("greeting"), (*base, "greeting")),
        goodbye=texts.words(raw.get("goodbye"), (*base, "goodbye")),
        context=str(raw.get("context", "keep")),
        end=bool(raw.get("end", False)),
        path=base,
        agent=(str(raw["agent"]["name"]), str(raw["agent"]["project"]))
        if raw.get("agent")
        else None,
    )


def _value_problems(value: Value, path: PathKey, loc: Locator) -> list[Problem]:
    out: list[Problem] = []
    if value.enum is not None:
        wrong = [v for v in value.enum if not _is_type(v, value.type)]
        if wrong:
            out.append(
                loc.problem(
                    (*path, "enum"),
                    f"value {value.name!r} is a {value.type}, but its enum holds {wrong[0]!r}",
                    hint=f"list only {value.type} values",
                )
            )
    if (value.minimum is not None or value.maximum is not None) and value.type not in (
        "integer",
        "number",
    ):
        out.append(
            loc.problem(
                path,
                f"value {value.name!r} is a {value.type}; minimum and maximum apply to numbers",
                hint="use type: integer or number, or drop minimum/maximum",
                at_key=True,
            )
        )
    if value.minimum is not None and value.maximum is not None and value.minimum > value.maximum:
        out.append(
            loc.problem(
                (*path, "minimum"),
                f"value {value.name!r}: minimum {value.minimum} is above maximum {value.maximum}",
            )
        )
    return out


def _is_type(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


# --- checks -------------------------------------------------------------------------------------


def flow_problems(
    flow: Flow,
    loc: Locator,
    *,
    tool_names: Iterable[tuple[str, PathKey]] = (),
    var_names: Iterable[str] = (),
    variables: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Every finding about the graph, its templates and its conditions."""
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
    out += _value_use_problems(flow, loc, set(var_names), dict(variables or {}))
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
    from runner.config.template import used_names

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


def _suggest(name: str, options: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean {close[0]!r}?" if close else "nodes: " + ", ".join(options)


# --- each node's session ----------------------------------------------------------------------


def template_values(
    variables: Mapping[str, Any], flow: Flow, collected: Mapping[str, Any]
) -> dict[str, Any]:
    """What a node's templates see: the vars, every value name (null until collected)."""
    out = dict(variables)
    out.update({name: None for name in flow.values})
    out.update(collected)
    return out


def node_session(
    base: Mapping[str, Any],
    flow: Flow,
    node: Node,
    rendered_instructions: str | None,
    node_tools: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The whole ``session.update`` of ``node``: the profile's session with the node's
    instructions added and its tools (plugins, then the generated one) beside the profile's.

    Whole, never partial: the service replaces what an update names, so every node's update
    carries everything (the emulator refuses partial ones, as the service may).
    """
    session = dict(base.get("session", {}))
    shared = session.get("instructions")
    if rendered_instructions:
        mine = rendered_instructions.strip()
        session["instructions"] = f"{shared.rstrip()}\n\n{mine}" if shared else mine
    tools = [dict(t) for t in session.get("tools") or []]
    shared = {t.get("name") for t in tools}
    tools += [dict(t) for t in node_tools if t.get("name") not in shared]  # never twice
    if node.record_tool is not None:
        tools.append(node.record_schema())
    if tools:
        session["tools"] = tools
    else:
        session.pop("tools", None)
    return {"type": "session.update", "session": session}


def summary_text(flow: Flow, path: Sequence[str], collected: Mapping[str, Any]) -> str:
    """The system message that replaces the conversation for `context: summary`."""
    shown = ", ".join(
        f"{k}={'(secret)' if k in flow.secret_values else _plain(v)}" for k, v in collected.items()
    )
    return f"Summary of the conversation so far (steps: {' -> '.join(path)}). " + (
        f"Collected: {shown}." if shown else "Nothing collected yet."
    )


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# Built-in tools a node may list beside plugins: `vlrun serve` gives them to phone calls (a
# flow's way out: transfer to a person, hang up). Elsewhere there is no call to control.
CALL_CONTROL = ("hang_up", "transfer", "send_dtmf")


def call_control_of(flow: Flow | None) -> tuple[str, ...]:
    """The call-control tools a flow's nodes list, in CALL_CONTROL's order."""
    used = {
        name for node in (flow.nodes.values() if flow is not None else ()) for name in node.tools
    }
    return tuple(name for name in CALL_CONTROL if name in used)


def plugin_tool(name: str, schemas: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """A node's plugin tool as the session declares it (the plugin's own schema)."""
    plugin = (schemas or {}).get(name) or {}
    entry: dict[str, Any] = {"type": "function", "name": name}
    if plugin.get("description"):
        entry["description"] = plugin["description"]
    entry["parameters"] = dict(plugin.get("parameters") or {"type": "object"})
    return entry


def placeholders(flow: Flow) -> dict[str, str]:
    """Stand-ins for values not collected yet, for showing a node's session before the call."""
    return {name: f"<{name}>" for name in flow.values}


def node_sessions(
    flow: Flow,
    base: Mapping[str, Any],
    variables: Mapping[str, Any],
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[Node, dict[str, Any], str]]:
    """Every node's whole session.update, and its own instructions, values shown as
    ``<name>`` (`vlrun explain`, `vlrun compile --node`)."""
    shown = {**variables, **placeholders(flow)}
    out = []
    for node in flow.nodes.values():
        rendered = node.instructions.render(shown) if node.instructions else None
        tools = [plugin_tool(name, schemas) for name in node.tools]
        out.append((node, node_session(base, flow, node, rendered, tools), rendered or ""))
    return out
