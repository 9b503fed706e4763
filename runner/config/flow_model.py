"""A conversation flow as data: its nodes, their values, texts and transitions.

Frozen records only: :mod:`runner.config.flow_parse` builds them from the profile, the check
modules (:mod:`runner.config.flow_graph`, :mod:`runner.config.flow_templates`) read them, and
:mod:`runner.config.flow_session` turns a node into its ``session.update``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.config import condition as cond
from runner.config.compose import unprotect
from runner.config.greeting import Greeting
from runner.config.source import PathKey
from runner.config.template import Where, render

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
    """A way out of a node: the node it leads to, and when (None: always)."""

    to: str
    when: cond.Condition | None
    path: PathKey


@dataclass(frozen=True)
class Node:
    """One node of a flow: its instructions, tools, collected values, ways out, greeting."""

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
    """A profile's flow: its start node, its nodes by name, every collected value by name."""

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
