"""Each node's whole session: what ``session.update`` entering it sends, and what it shows.

Pure: :mod:`runner.flows` walks the graph at run time and sends these; ``vlrun explain`` and
``vlrun compile --node`` show them before the call, values not collected yet as ``<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.config.flow_model import Flow, Node


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

    Whole, never partial: the service replaces what an update names and keeps what it does
    not, so every node's update carries everything, ``tools: []`` included: a node without
    tools (an end node) must take away the tools earlier nodes declared, and any instructions
    an earlier node added (the emulator notes partial updates, as the service may merge them).
    """
    session = dict(base.get("session", {}))
    shared = session.get("instructions")
    if rendered_instructions:
        mine = rendered_instructions.strip()
        session["instructions"] = f"{shared.rstrip()}\n\n{mine}" if shared else mine
    elif shared is None and any(n.instructions for n in flow.nodes.values()):
        session["instructions"] = ""  # another node's own instructions must not linger
    tools = [dict(t) for t in session.get("tools") or []]
    names = {t.get("name") for t in tools}
    tools += [dict(t) for t in node_tools if t.get("name") not in names]  # never twice
    if node.record_tool is not None:
        tools.append(node.record_schema())
    session["tools"] = tools
    choice = session.get("tool_choice")
    if choice is not None:
        session["tool_choice"] = _tool_choice(choice, tools)
    return {"type": "session.update", "session": session}


def _tool_choice(choice: Any, tools: Sequence[Mapping[str, Any]]) -> Any:
    """The profile's tool_choice as this node can honour it: ``none`` without tools (the
    service refuses ``required`` with nothing to call), ``auto`` when it names a tool this
    node does not declare."""
    if not tools:
        return "none"
    if isinstance(choice, Mapping) and choice.get("name") not in {t.get("name") for t in tools}:
        return "auto"
    return choice


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
