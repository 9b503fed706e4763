"""What ``@tool`` attaches, and the records a tool sees (:class:`ToolContext`) and the registry
returns (:class:`ToolSpec`, :class:`ToolResult`). Import them from :mod:`runner.plugins`."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, overload

from runner.plugins._schema import Checker, Converter
from runner.redact import redact

MARK = "__vlrun_tool__"

log = logging.getLogger("vlrun.tools")
F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- marking


@dataclasses.dataclass(frozen=True)
class ToolMark:
    """What ``@tool`` attaches to a function: only the author's overrides."""

    name: str | None = None
    description: str | None = None


@overload
def tool(func: F, /) -> F: ...
@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...
def tool(
    func: F | None = None, /, *, name: str | None = None, description: str | None = None
) -> F | Callable[[F], F]:
    """Mark a function as a tool the model can call; the function itself is returned unchanged.

    The tool's name is the function's name, its description the docstring (up to "Args:"),
    and its parameters come from the type hints. A parameter annotated with
    :class:`ToolContext` receives the call's context and is hidden from the model.

    Args:
        func: The function, when used bare as ``@tool``.
        name: The name the model sees, if not the function's name.
        description: The description the model sees, if not the docstring.

    Example:
        >>> @tool
        ... def current_time(timezone: str) -> str:
        ...     '''The current local time in an IANA timezone such as "Europe/Paris".'''
    """

    def mark(f: F) -> F:
        if not callable(f):
            raise TypeError(f"@tool marks functions, not {type(f).__name__}")
        setattr(f, MARK, ToolMark(name, description))
        return f

    return mark(func) if func is not None else mark


# --------------------------------------------------------------------------- context


async def _log_say(context: ToolContext, text: str) -> None:
    context.logger.info("tool %s would say: %s", context.tool_name or "?", redact(text))


@dataclasses.dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call, if it annotates a parameter with this type.

    Attributes:
        session_id: The Voice Live session id ("" before the session exists).
        profile_name: The name of the running profile.
        vars: The profile's variables (read-only).
        logger: Where the tool should log; it ends up in the technical log.
        call_id: The model's id for this call.
        tool_name: The name the model called.
        say_handler: Set by the runner: speaks a short status line. Tools call :meth:`say`.
        values: The values a conversation flow has collected so far (read-only; empty
            without a flow), e.g. ``context.values["party_size"]``.
    """

    session_id: str = ""
    profile_name: str = ""
    vars: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    logger: logging.Logger = log
    call_id: str = ""
    tool_name: str = ""
    say_handler: Callable[[ToolContext, str], Awaitable[None]] | None = None
    values: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    async def say(self, text: str) -> None:
        """Speak a short status line ("Let me look that up") while the tool works.

        Without a runner (tests, ``vlrun tools``), the line is only logged.
        """
        handler = self.say_handler or _log_say
        await handler(self, text)


# --------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """One registered tool: what the model sees and what the registry needs to call it."""

    name: str
    description: str
    parameters: dict[str, Any]
    source: str  # "path/file.py:LINE" or "distribution:entry-point"
    is_async: bool
    wants_context: bool
    func: Callable[..., Any] = dataclasses.field(repr=False, compare=False)
    context_param: str | None = dataclasses.field(default=None, repr=False)
    converters: Mapping[str, Converter] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )
    validator: Any = dataclasses.field(default=None, repr=False, compare=False)
    checker: Checker | None = dataclasses.field(default=None, repr=False, compare=False)

    def definition(self) -> dict[str, Any]:
        """The tool as it goes into ``session.update`` (``session.tools[]``)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """The outcome of one call; ``output`` is sent as ``function_call_output.output``.

    On failure ``output`` is ``{"error": {"type": ..., "message": ...}}``: a message the model
    can act on (fix the arguments, try later, tell the user), never a traceback.
    """

    call_id: str
    name: str
    ok: bool
    output: str
    error: str | None
    duration_s: float
    error_type: str | None = None

    @property
    def value(self) -> Any:
        """The output parsed back from JSON."""
        return json.loads(self.output)
