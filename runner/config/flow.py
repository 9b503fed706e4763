"""Conversation flows in profiles: the public face of the modules that read, check and send them.

A profile's ``flow:`` names nodes; each node adds its instructions and tools to the profile's
own, may collect typed values through a generated ``record_<node>`` tool, and moves on by its
transitions (the first whose ``when`` holds). Everything here is pure: the live side
(:mod:`runner.flows`) walks the graph; these modules read it, check it and say what
``session.update`` each node sends. One concern a module, each importing only those above it:

- :mod:`runner.config.flow_model`: the frozen records (Flow, Node, Value, Text, Words);
- :mod:`runner.config.flow_parse`: ``read_flow``, the profile's ``flow:`` into a Flow;
- :mod:`runner.config.flow_graph`: successors, reachability, values collected on every path,
  and the graph's checks;
- :mod:`runner.config.flow_templates`: templates and conditions against the values that reach
  them;
- :mod:`runner.config.flow_session`: each node's whole ``session.update``;
- :mod:`runner.config.call_control`: the call-control tools a node may list (telephony).

Checks (``vlrun check``, each at file:line):
- a start or a transition naming no node; nodes that start cannot reach (errors);
- nodes from which no end node can be reached, a flow with no end (warnings: loops are fine);
- templates and conditions that use a value not collected on every path to them, or none;
- conditions that can never hold (type errors, values outside an enum or a range);
- tools that the generated ``record_<node>`` tools would shadow, and value names that clash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.config.call_control import CALL_CONTROL, call_control_of
from runner.config.flow_graph import collected_before, graph_problems, successors
from runner.config.flow_model import (
    CONTEXT_MODES,
    RECORD_PREFIX,
    Flow,
    Node,
    Text,
    Transition,
    Value,
    Words,
)
from runner.config.flow_parse import read_flow
from runner.config.flow_session import (
    node_session,
    node_sessions,
    placeholders,
    plugin_tool,
    summary_text,
    template_values,
)
from runner.config.flow_templates import value_use_problems
from runner.config.locator import Locator
from runner.config.source import PathKey
from runner.errors import Problem

__all__ = [
    "CALL_CONTROL",
    "CONTEXT_MODES",
    "RECORD_PREFIX",
    "Flow",
    "Node",
    "Text",
    "Transition",
    "Value",
    "Words",
    "call_control_of",
    "collected_before",
    "flow_problems",
    "node_session",
    "node_sessions",
    "placeholders",
    "plugin_tool",
    "read_flow",
    "successors",
    "summary_text",
    "template_values",
]


def flow_problems(
    flow: Flow,
    loc: Locator,
    *,
    tool_names: Iterable[tuple[str, PathKey]] = (),
    var_names: Iterable[str] = (),
    variables: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Every finding about the graph, its templates and its conditions."""
    var_names = tuple(var_names)  # read twice below
    out = graph_problems(flow, loc, tool_names=tool_names, var_names=var_names)
    if flow.start not in flow.nodes:  # nothing else can be judged without a start
        return out
    return out + value_use_problems(flow, loc, var_names=var_names, variables=variables)
