"""Conversation flows: a profile's node graph walked on one speech-to-speech session.

:func:`start` makes the walk of one conversation from a loaded profile and its compiled
session; the live session asks it what each node sends (see :mod:`runner.flows.walk`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.flows.walk import FlowWalk, Recorded

__all__ = ["FlowWalk", "Recorded", "opening", "start"]


def start(
    profile: Any,
    payload: Mapping[str, Any],
    tool_schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> FlowWalk | None:
    """The walk of a profile's flow (at its start node), or None when it has no flow."""
    if getattr(profile, "flow", None) is None:
        return None
    return FlowWalk(profile.flow, payload, variables=dict(profile.vars), tool_schemas=tool_schemas)


def opening(
    profile: Any,
    payload: dict[str, Any],
    greeting: dict[str, Any] | None,
    tool_schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, FlowWalk | None]:
    """What a conversation opens with: the session.update, the greeting and the flow's walk.

    With a flow, the session is the start node's and its greeting (if any) replaces the
    profile's; without one, the compiled profile as it is.
    """
    walk = start(profile, payload, tool_schemas)
    if walk is None:
        return payload, greeting, None
    return walk.payload(), walk.greeting_event() or greeting, walk
