"""Answering MCP approval requests from the profile's policy.

When the service wants to call a tool on an MCP server declared with approval required, it
sends an ``mcp_approval_request`` item; the runner answers with ``mcp_approval_response``.
:func:`decide` is the whole rule, kept pure so it is trivial to test and to explain.

A policy is one of:

- ``"always"`` (approve every call), ``"never"`` (deny every call), ``"ask"`` (the console asks
  the person; a non-interactive run treats it as deny); ``True``/``False`` mean approve/deny;
- per-tool lists: ``{"approve": [...], "deny": [...], "ask": [...], "default": "ask"}``
  (``always``/``never`` are accepted as the list keys too). Entries match the tool name or
  ``server_label.tool_name`` and may use shell wildcards (``"read_*"``). ``deny`` wins over
  ``ask``, ``ask`` over ``approve``;
- per-server policies: ``{"deepwiki": "always", "*": "ask"}``.

Anything unrecognised, and no policy at all, means ``"ask"``: never approve by accident.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any, Literal

Decision = Literal["approve", "deny", "ask"]

_WORDS: dict[str, Decision] = {
    "always": "approve",
    "approve": "approve",
    "allow": "approve",
    "yes": "approve",
    "never": "deny",
    "deny": "deny",
    "no": "deny",
    "ask": "ask",
}
_LIST_KEYS: dict[str, Decision] = {
    "deny": "deny",
    "never": "deny",
    "ask": "ask",
    "approve": "approve",
    "always": "approve",
    "allow": "approve",
}
_ORDER: tuple[Decision, ...] = ("deny", "ask", "approve")


def decide(policy: Any, server_label: str, tool_name: str) -> Decision:
    """What to answer for ``tool_name`` on ``server_label`` under ``policy``."""
    if dataclasses.is_dataclass(policy) and not isinstance(policy, type):
        policy = {k: v for k, v in dataclasses.asdict(policy).items() if v is not None}
    if policy is None:
        return "ask"
    if isinstance(policy, bool):
        return "approve" if policy else "deny"
    if isinstance(policy, str):
        return _WORDS.get(policy.strip().lower(), "ask")
    if not isinstance(policy, Mapping):
        return "ask"
    keys = {str(k).lower() for k in policy}
    if keys & (set(_LIST_KEYS) | {"default"}):
        return _by_lists(policy, server_label, tool_name)
    for key in (server_label, "*"):
        if key in policy:
            return decide(policy[key], server_label, tool_name)
    return "ask"


def _by_lists(policy: Mapping[str, Any], server_label: str, tool_name: str) -> Decision:
    names = (tool_name, f"{server_label}.{tool_name}")
    matched: set[Decision] = set()
    for key, value in policy.items():
        decision = _LIST_KEYS.get(str(key).lower())
        if decision is not None and _matches(value, names):
            matched.add(decision)
    for decision in _ORDER:
        if decision in matched:
            return decision
    default = policy.get("default")
    return decide(default, server_label, tool_name) if default is not None else "ask"


def _matches(patterns: Any, names: Iterable[str]) -> bool:
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, Iterable):
        return False
    return any(fnmatchcase(n, str(p)) for p in patterns for n in names)


def require_approval(policy: Any, server_label: str = "") -> str | dict[str, list[str]]:
    """The ``require_approval`` value to send for a server, derived from the same policy.

    If this policy approves every call anyway, the service need not ask: ``"never"``.
    Otherwise it must ask (``"always"``), except for tools the policy approves by exact name.
    """
    if not isinstance(policy, Mapping) and decide(policy, server_label, "") == "approve":
        return "never"
    if isinstance(policy, Mapping) and not (
        {str(k).lower() for k in policy} & (set(_LIST_KEYS) | {"default"})
    ):
        inner = policy.get(server_label, policy.get("*"))
        return require_approval(inner, server_label)
    if isinstance(policy, Mapping):
        candidates = [
            str(p)
            for k, v in policy.items()
            if _LIST_KEYS.get(str(k).lower()) == "approve"
            for p in ([v] if isinstance(v, str) else v)
            if not any(c in str(p) for c in "*?[.")
        ]
        approved = [n for n in candidates if decide(policy, server_label, n) == "approve"]
        if approved:
            return {"never": approved}
    return "always"
