"""One conversation's walk through a profile's flow: where it is, what it has collected.

The live session asks three things of a walk:
- :meth:`FlowWalk.record` runs a generated ``record_<node>`` call: it validates the arguments
  against the node's values, stores them, and picks the transition. It is synchronous, so a
  transition is committed in one step (a barge-in cannot leave it half done);
- :meth:`FlowWalk.payload` is the current node's whole ``session.update``;
- :meth:`FlowWalk.entry_events` are what entering the node sends after that update (context
  reset or summary, greeting or goodbye).

Secret values (``secret: true``) are stored for templates and tools but shown as ``***``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.compile import response_for
from runner.config.flow_model import Flow, Node
from runner.config.flow_session import node_session, plugin_tool, summary_text, template_values

MASK = "***"
MAX_ARGUMENT_CHARS = 16_000  # a record call carries a few short values


@dataclass(frozen=True)
class Recorded:
    """What one ``record_<node>`` call did: the output for the model and any transition."""

    ok: bool
    output: str  # JSON text for function_call_output
    error: str | None = None
    entered: Node | None = None  # the node the flow moved to (committed already)


class FlowWalk:
    """The state of one conversation's flow (one per live session; not shared)."""

    def __init__(
        self,
        flow: Flow,
        base: Mapping[str, Any],
        *,
        variables: Mapping[str, Any] | None = None,
        tool_schemas: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.flow = flow
        self.base = base
        self.variables = dict(variables or {})
        self.tool_schemas = dict(tool_schemas or {})
        self.node: Node = flow.nodes[flow.start]
        self.path: list[str] = [flow.start]
        self.values: dict[str, Any] = {}
        self.pending: Node | None = None  # entered, its update not sent yet

    # ---------------------------------------------------------------- asking

    def owns(self, tool_name: str) -> bool:
        """Whether ``tool_name`` is one of the generated tools (the walk answers it)."""
        return self.flow.node_of_tool(tool_name) is not None

    def shown_values(self) -> dict[str, Any]:
        """The collected values with secrets masked (for screens, logs and outputs)."""
        secret = self.flow.secret_values
        return {k: (MASK if k in secret and v is not None else v) for k, v in self.values.items()}

    def describe(self) -> str:
        values = ", ".join(f"{k}={_show(v)}" for k, v in self.shown_values().items())
        return f"{' -> '.join(self.path)}" + (f" ({values})" if values else "")

    def mask_arguments(self, tool_name: str, arguments: str) -> str:
        """A record call's arguments as they may be shown: secret values masked."""
        node = self.flow.node_of_tool(tool_name)
        secret = {v.name for v in node.collect if v.secret} if node else set()
        if not secret:
            return arguments
        try:
            parsed = json.loads(arguments)
        except ValueError:
            return MASK
        if not isinstance(parsed, dict):
            return MASK
        return json.dumps({k: (MASK if k in secret else v) for k, v in parsed.items()})

    def mask_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """A server event as the trace may keep it: secret values of record calls masked.

        Argument deltas carry no tool name, so with any secret value in the flow they are all
        masked (the ``.done`` event has the whole arguments, masked by name)."""
        if not self.flow.secret_values:
            return event
        kind = event.get("type")
        if kind == "response.function_call_arguments.delta":
            return {**event, "delta": MASK}
        if kind == "response.function_call_arguments.done":
            name = str(event.get("name") or "")
            return {**event, "arguments": self.mask_arguments(name, str(event.get("arguments")))}
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            name = str(item.get("name") or "")
            masked = {**item, "arguments": self.mask_arguments(name, str(item.get("arguments")))}
            return {**event, "item": masked}
        response = event.get("response")
        if kind == "response.done" and isinstance(response, dict):
            output = [
                {**o, "arguments": self.mask_arguments(str(o.get("name")), str(o.get("arguments")))}
                if isinstance(o, dict) and o.get("type") == "function_call"
                else o
                for o in response.get("output") or []
            ]
            return {**event, "response": {**response, "output": output}}
        return event

    # ---------------------------------------------------------------- the session

    def template_values(self) -> dict[str, Any]:
        return template_values(self.variables, self.flow, self.values)

    def payload(self, node: Node | None = None) -> dict[str, Any]:
        """The whole session.update of ``node`` (default: the current one)."""
        node = node or self.node
        rendered = node.instructions.render(self.template_values()) if node.instructions else None
        tools = [plugin_tool(name, self.tool_schemas) for name in node.tools]
        return node_session(self.base, self.flow, node, rendered, tools)

    def handoff_payload(self, node: Node) -> dict[str, Any]:
        """The session.update of an agent's session: the profile's settings without the
        instructions, tools and tool choice (the agent brings its own)."""
        session = {
            k: v
            for k, v in self.base.get("session", {}).items()
            if k not in ("instructions", "tools", "tool_choice")
        }
        return {"type": "session.update", "session": session}

    def handoff_events(self, node: Node) -> list[dict[str, Any]]:
        """What the agent's new session is given first: the conversation so far (steps and
        values, secrets masked; the node's instructions as a note), then its first turn."""
        text = summary_text(self.flow, self.path[:-1], self.values)
        if node.instructions is not None:
            text += " " + node.instructions.render(self.template_values()).strip()
        item = {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": text}],
        }
        first = self.greeting_event(node) or {"type": "response.create"}
        return [{"type": "conversation.item.create", "item": item}, first]

    def greeting_event(self, node: Node | None = None) -> dict[str, Any] | None:
        """The response.create for a node's greeting, if it has one."""
        node = node or self.node
        words = node.goodbye if node.end and node.goodbye is not None else node.greeting
        if words is None:
            return None
        return response_for(words.rendered(self.template_values()))

    def context_events(self, node: Node, item_ids: list[str]) -> list[dict[str, Any]]:
        """What `context: reset | summary` sends on entering ``node``."""
        if node.context == "keep":
            return []
        events: list[dict[str, Any]] = [
            {"type": "conversation.item.delete", "item_id": item_id} for item_id in item_ids
        ]
        if node.context == "summary":
            text = summary_text(self.flow, self.path[:-1], self.values)
            events.append(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "system",
                        "content": [{"type": "input_text", "text": text}],
                    },
                }
            )
        return events

    # ---------------------------------------------------------------- recording

    def record(self, tool_name: str, arguments: str) -> Recorded:
        """Validate and store a record call; commit the transition it leads to."""
        node = self.flow.node_of_tool(tool_name)
        if node is None:
            return _refused("unknown_tool", f"{tool_name} is not a step of this conversation")
        if node.name != self.node.name:
            return _refused(
                "wrong_step",
                f"{tool_name} belongs to the step '{node.name}', but the conversation is in "
                f"the step '{self.node.name}' now; use record_{self.node.name}",
            )
        if len(arguments) > MAX_ARGUMENT_CHARS:
            return _refused("invalid_arguments", "the arguments are far too long")
        try:
            given = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return _refused("invalid_arguments", f"the arguments are not JSON ({exc.msg})")
        except RecursionError:
            return _refused("invalid_arguments", "the arguments are nested far too deeply")
        secret = {v.name for v in node.collect if v.secret}
        problems = _validate(given, node.record_schema()["parameters"], secret)
        if problems:
            return _refused(
                "invalid_arguments",
                "; ".join(problems) + ". Ask the user again, then call " + tool_name + " again.",
            )
        assert isinstance(given, dict)
        for value in node.collect:
            self.values[value.name] = given.get(value.name)
        target = next(
            (t.to for t in node.transitions if t.when is None or t.when.holds(self.values)), None
        )
        recorded = {k: (MASK if k in self.flow.secret_values else given[k]) for k in given}
        out: dict[str, Any] = {"ok": True, "recorded": recorded}
        entered = None
        if target is not None:
            entered = self.flow.nodes[target]
            self.node = entered
            self.path.append(target)
            self.pending = entered
            out["next_step"] = target
        else:
            out["note"] = f"no transition applies yet; still in the step '{node.name}'"
        return Recorded(True, json.dumps(out, ensure_ascii=False), None, entered)


def _refused(kind: str, message: str) -> Recorded:
    output = json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)
    return Recorded(False, output, message)


def _validate(given: Any, schema: Mapping[str, Any], secret: set[str]) -> list[str]:
    from jsonschema import Draft202012Validator

    if not isinstance(given, dict):
        return ["the arguments must be an object"]
    validator = Draft202012Validator(schema)
    out = []
    for error in sorted(validator.iter_errors(given), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path)
        if error.path and error.path[0] in secret:  # never echo a secret back
            out.append(f"{where}: not a valid value")
            continue
        out.append(f"{where}: {error.message}" if where else error.message)
    return out[:5]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value is not None else "null"
