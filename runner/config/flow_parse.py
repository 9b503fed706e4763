"""Reading a profile's ``flow:`` into a :class:`~runner.config.flow_model.Flow`.

The document is schema-valid already; what the schema cannot say is found here, at file:line:
a condition that does not parse, an enum or a range that does not fit its value's type, one
value name collected with two types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.config import condition as cond
from runner.config.flow_model import Flow, Node, Text, Transition, Value, Words
from runner.config.locator import Locator
from runner.config.source import PathKey, Pos
from runner.config.template import Where
from runner.errors import Problem

# Gives a template's Where from its position, JSON path and the profile's file (load.py's rule).
WhereOf = Callable[[Pos | None, str, str], Where]


def read_flow(
    doc: Mapping[str, Any],
    positions: Mapping[PathKey, Pos],
    loc: Locator,
    problems: list[Problem],
    *,
    where: WhereOf,
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
    where: WhereOf
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
