"""What a live session is told before it starts: one frozen :class:`SessionSettings`.

The session's collaborators (target, credential, transcript, player, source, registry, flow,
opener, rng) are passed to :class:`~runner.live.session.LiveSession` beside it; everything
here is a plain value that does not change while the conversation lasts (the session keeps
its own copy of what a flow or a hand-over changes: the current ``session.update``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from runner.aio import ReconnectPolicy
from runner.live.audio import CHUNK_MS

#: How long a new connection may take to confirm its session (``session.updated``); the
#: service answers in well under a second, so a longer silence is a connection to give up.
CONFIGURE_TIMEOUT_S = 10.0


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def _default_policy() -> ReconnectPolicy:
    return ReconnectPolicy(base_s=0.25, attempts=6, budget=max(ReconnectPolicy.budget, 12))


@dataclasses.dataclass(frozen=True)
class SessionSettings:
    """The settings of one conversation (what ``LiveSession`` took as 30 keyword arguments)."""

    endpoint: str
    session_update: Mapping[str, Any]  # the compiled session.update (the first node's)
    lines: bool = True  # read typed lines from stdin
    greeting: Mapping[str, Any] | None = None  # the event that makes the assistant speak first
    tool_timeouts: Mapping[str, float] | float = 10.0  # per tool, or one for all
    mcp_policies: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    profile_name: str = ""
    profile_vars: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    api_version: str | None = None
    end_when_input_ends: bool = False  # a WAV file or piped text: stop once it is answered
    reconnect_policy: ReconnectPolicy = dataclasses.field(default_factory=_default_policy)
    configure_timeout_s: float = CONFIGURE_TIMEOUT_S
    rollover_margin_s: float = 120.0
    finish_timeout_s: float = 60.0  # how long each reply owed may take at the end
    replay_history: bool = True  # a new connection gets the conversation so far
    send_ms: int = CHUNK_MS  # microphone audio per input_audio_buffer.append
    interactive: bool | None = None  # approval questions need a person (None: stdin is a tty)
    # a person types at a terminal: a line typed during a reply interrupts it, as speech does
    # (piped lines, a phone's keys and scripts queue their turns behind the reply instead)
    typed_barge_in: bool = False
    cancel_on_barge_in: Mapping[str, bool] | bool = True
    handle_signals: bool = True  # a server runs many sessions: the signals are its own
    # fields every response.create carries (a hosted agent's invoke_input:
    # runner.config.compile.response_extras)
    response_extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # frozen all the way down: nobody changes a setting under a running session
        object.__setattr__(self, "session_update", _frozen(self.session_update))
        object.__setattr__(self, "mcp_policies", _frozen(self.mcp_policies))
        object.__setattr__(self, "profile_vars", _frozen(self.profile_vars))
        object.__setattr__(self, "response_extras", _frozen(self.response_extras))
        if self.greeting is not None:
            object.__setattr__(self, "greeting", _frozen(self.greeting))
        if isinstance(self.tool_timeouts, Mapping):
            object.__setattr__(self, "tool_timeouts", _frozen(self.tool_timeouts))
        if isinstance(self.cancel_on_barge_in, Mapping):
            object.__setattr__(self, "cancel_on_barge_in", _frozen(self.cancel_on_barge_in))

    @classmethod
    def of(
        cls,
        *,
        max_reconnects: int | None = None,
        backoff_s: float | None = None,
        **settings: Any,
    ) -> SessionSettings:
        """Settings from keyword arguments, with the older ``max_reconnects`` (attempts per
        drop) and ``backoff_s`` (first ceiling) spelling of ``reconnect_policy``."""
        if settings.get("reconnect_policy") is None:
            settings.pop("reconnect_policy", None)
            if max_reconnects is not None or backoff_s is not None:
                attempts = 6 if max_reconnects is None else max_reconnects
                settings["reconnect_policy"] = ReconnectPolicy(
                    base_s=0.25 if backoff_s is None else backoff_s,
                    attempts=attempts,
                    budget=max(ReconnectPolicy.budget, 2 * attempts),
                )
        unknown = set(settings) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown session settings: {', '.join(sorted(unknown))}")
        return cls(**settings)


def profile_settings(profile: Any) -> dict[str, Any]:
    """The settings that come from a profile (tool timeouts, MCP policy, name, vars)."""
    default = float(getattr(profile, "tool_timeout_s", 10.0) or 10.0)
    timeouts = {b.name: float(b.timeout_s or default) for b in getattr(profile, "tools", ())}
    flow = getattr(profile, "flow", None)
    for node in flow.nodes.values() if flow is not None else ():
        for name in node.tools:  # a node's tools are plugins by name: the profile's default
            timeouts.setdefault(name, default)
    from runner.config.compile import response_extras

    return {
        "response_extras": response_extras(profile) if hasattr(profile, "agent") else {},
        "tool_timeouts": timeouts or default,
        "cancel_on_barge_in": {
            b.name: bool(getattr(b, "cancel_on_barge_in", True))
            for b in getattr(profile, "tools", ())
        },
        "mcp_policies": {s.label: s.approval for s in getattr(profile, "mcp_servers", ())},
        "profile_name": str(profile.name),
        "profile_vars": dict(getattr(profile, "vars", {}) or {}),
    }
