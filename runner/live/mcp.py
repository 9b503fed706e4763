"""Answering MCP approval requests from the profile's policy.

When the service wants to call a tool on an MCP server that requires approval, it sends an
``mcp_approval_request`` item and the runner answers with ``mcp_approval_response``.
:func:`decide` is the whole rule, kept pure so it is easy to test and to explain.

The profile's ``approval`` uses the service's ``require_approval`` words, because the same
value is what the compiler sends (so the two never disagree):

- ``never``: calls need no approval. The service runs them without asking; if it asks
  anyway, the answer is approve.
- ``always``: every call needs approval, so a person decides: ``"ask"`` (the console asks;
  a run without a console denies).
- ``ask``: the same, said explicitly.
- per-tool lists ``{"never": [...], "always": [...]}``: listed tools follow their list;
  unlisted tools need approval (the service's default). Entries match the tool name or
  ``server_label.tool_name`` and may use shell wildcards (``"read_*"``); ``always`` wins.
- per-server policies ``{"deepwiki": "never", "*": "ask"}``.

The runner may also answer on its own, without asking anyone: ``approve`` / ``deny`` as
words or as list keys (``{"approve": ["read_*"], "deny": ["delete_*"]}``); ``deny`` wins.

Anything unrecognised, and no policy at all, means ``"ask"``: never approve by accident.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any, Literal

Decision = Literal["approve", "deny", "ask"]

_WORDS: dict[str, Decision] = {
    "never": "approve",  # require_approval: never -> no approval needed
    "approve": "approve",
    "always": "ask",  # require_approval: always -> a person approves
    "ask": "ask",
    "deny": "deny",
}
_LIST_KEYS: dict[str, Decision] = {
    "deny": "deny",
    "always": "ask",
    "ask": "ask",
    "never": "approve",
    "approve": "approve",
}
_ORDER: tuple[Decision, ...] = ("deny", "ask", "approve")  # the most careful match wins


def decide(policy: Any, server_label: str, tool_name: str) -> Decision:
    """What to answer for ``tool_name`` on ``server_label`` under ``policy``."""
    if dataclasses.is_dataclass(policy) and not isinstance(policy, type):
        policy = {k: v for k, v in dataclasses.asdict(policy).items() if v is not None}
    if isinstance(policy, str):
        return _WORDS.get(policy.strip().lower(), "ask")
    if not isinstance(policy, Mapping):
        return "ask"
    if _is_lists(policy):
        return _by_lists(policy, server_label, tool_name)
    for key in (server_label, "*"):
        if key in policy:
            return decide(policy[key], server_label, tool_name)
    return "ask"


def require_approval(policy: Any, server_label: str = "") -> str | dict[str, list[str]]:
    """The ``require_approval`` value that makes the service ask exactly when it must.

    The service need not ask about calls this policy approves anyway; it must ask about
    everything else (so the runner can deny or ask a person).
    """
    if isinstance(policy, Mapping) and not _is_lists(policy):
        return require_approval(policy.get(server_label, policy.get("*")), server_label)
    if not isinstance(policy, Mapping):
        return "never" if decide(policy, server_label, "") == "approve" else "always"
    candidates = [
        str(p)
        for k, v in policy.items()
        if _LIST_KEYS.get(str(k).lower()) == "approve"
        for p in ([v] if isinstance(v, str) else v)
        if not any(c in str(p) for c in "*?[.")
    ]
    approved = [n for n in candidates if decide(policy, server_label, n) == "approve"]
    return {"never": approved} if approved else "always"


def _is_lists(policy: Mapping[Any, Any]) -> bool:
    return bool({str(k).lower() for k in policy} & set(_LIST_KEYS))


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
    return "ask"


def _matches(patterns: Any, names: Iterable[str]) -> bool:
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, Iterable):
        return False
    return any(fnmatchcase(n, str(p)) for p in patterns for n in names)
