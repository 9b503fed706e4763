"""Helpers for testing tool plugins the way the model will call them.

Every helper goes through the same :meth:`Registry.dispatch` the live runner uses: the
arguments are sent as a JSON string, parsed, validated against the generated schema,
converted, and the result comes back JSON-serialised and parsed again. A test that passes
here exercises exactly what the model will see.

Example:
    A test for a tool in ``tools/current_time.py``::

        from runner.testing import ToolHarness, call_tool
        from tools_under_test import current_time  # or ToolHarness.from_path(...)

        def test_paris():
            assert call_tool(current_time, timezone="Europe/Paris")["timezone"] == "Europe/Paris"

        def test_bad_zone_is_reported_to_the_model():
            harness = ToolHarness(current_time)
            result = harness.result('{"timezone": "Mars/Olympus"}')
            assert not result.ok and "Mars/Olympus" in result.error
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.plugins import Registry, ToolContext, ToolResult

__all__ = ["ToolCallError", "ToolHarness", "acall_tool", "call_tool", "make_context"]


class ToolCallError(AssertionError):
    """The tool call produced an error result; ``result`` holds what the model would get.

    Attributes:
        result: The :class:`ToolResult`, with ``error_type`` such as ``"invalid_arguments"``,
            ``"tool_error"`` or ``"timeout"``.
    """

    def __init__(self, result: ToolResult) -> None:
        super().__init__(f"{result.name} failed ({result.error_type}): {result.error}")
        self.result = result


def make_context(
    *,
    session_id: str = "test-session",
    profile_name: str = "test-profile",
    vars: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
    said: list[str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> ToolContext:
    """A :class:`ToolContext` for tests.

    Args:
        session_id: The session id the tool sees.
        profile_name: The profile name the tool sees.
        vars: The profile variables the tool sees.
        logger: Where the tool logs; defaults to the ``vlrun.tools`` logger (``caplog`` sees it).
        said: A list that collects every line the tool passes to ``context.say``.
        values: The values a conversation flow has collected (``context.values``).

    Returns:
        A context to pass to :func:`call_tool` or :meth:`Registry.dispatch`.
    """
    sink = said

    async def record(context: ToolContext, text: str) -> None:
        context.logger.info("tool %s says: %s", context.tool_name, text)
        if sink is not None:
            sink.append(text)

    return ToolContext(
        session_id=session_id,
        profile_name=profile_name,
        vars=MappingProxyType(dict(vars or {})),
        logger=logger or logging.getLogger("vlrun.tools"),
        say_handler=record,
        values=MappingProxyType(dict(values or {})),
    )


async def acall_tool(
    func: Callable[..., Any] | Registry,
    arguments: str | Mapping[str, Any] | None = None,
    /,
    *,
    name: str | None = None,
    context: ToolContext | None = None,
    timeout_s: float = 5.0,
    **kwargs: Any,
) -> Any:
    """Async form of :func:`call_tool`, for tests that already run in an event loop."""
    registry, tool_name = _registry_and_name(func, name)
    result = await registry.dispatch(
        tool_name,
        "call_test",
        _arguments_json(arguments, kwargs),
        context=context or make_context(),
        timeout_s=timeout_s,
    )
    if not result.ok:
        raise ToolCallError(result)
    return result.value


def call_tool(
    func: Callable[..., Any] | Registry,
    arguments: str | Mapping[str, Any] | None = None,
    /,
    *,
    name: str | None = None,
    context: ToolContext | None = None,
    timeout_s: float = 5.0,
    **kwargs: Any,
) -> Any:
    """Call a tool as the model would and return its output, parsed from JSON.

    Args:
        func: A tool function (marked with ``@tool`` or not), or a :class:`Registry`.
        arguments: The JSON string the model would send, or a mapping (sent as JSON).
        name: Which tool, when ``func`` is a registry holding more than one.
        context: The context the tool receives; :func:`make_context` by default.
        timeout_s: The per-call timeout, as a profile would set it.
        **kwargs: Arguments by keyword, instead of ``arguments``.

    Returns:
        The tool's result after the JSON round trip (a dataclass comes back as a dict).

    Raises:
        ToolCallError: The model would have received an error result (bad arguments, an
            exception in the tool, a timeout); ``.result`` has the details.
        RuntimeError: Called from inside a running event loop; use ``await acall_tool``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("call_tool() runs its own event loop; in async tests use acall_tool()")
    return asyncio.run(
        acall_tool(func, arguments, name=name, context=context, timeout_s=timeout_s, **kwargs)
    )


class ToolHarness:
    """One or more tools with a recording context: call them, inspect what they said.

    Args:
        tools: Tool functions, or a single :class:`Registry`.
        vars: Profile variables the tools see in their context.
        values: Flow values the tools see in their context (``context.values``).
        timeout_s: The per-call timeout.

    Attributes:
        registry: The registry the calls go through.
        said: Every line the tools passed to ``context.say``, in order.
        results: Every :class:`ToolResult`, in order.
    """

    def __init__(
        self,
        *tools: Callable[..., Any] | Registry,
        vars: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        if len(tools) == 1 and isinstance(tools[0], Registry):
            self.registry = tools[0]
        else:
            self.registry = Registry.of(*[t for t in tools if not isinstance(t, Registry)])
        self.said: list[str] = []
        self.results: list[ToolResult] = []
        self.timeout_s = timeout_s
        self.context = make_context(vars=vars, said=self.said, values=values)

    @classmethod
    def from_path(cls, *paths: Path | str, **options: Any) -> ToolHarness:
        """Load tools from folders or ``.py`` files by path, as ``vlrun`` does (no entry points)."""
        return cls(Registry.discover([Path(p) for p in paths], entry_points=False), **options)

    def definition(self, name: str | None = None) -> dict[str, Any]:
        """The tool as the model sees it in ``session.update``."""
        return self.registry.get(self._name(name)).definition()

    async def aresult(
        self,
        arguments: str | Mapping[str, Any] | None = None,
        /,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> ToolResult:
        """Call and return the :class:`ToolResult`, whether it succeeded or not."""
        result = await self.registry.dispatch(
            self._name(name),
            f"call_{len(self.results) + 1}",
            _arguments_json(arguments, kwargs),
            context=self.context,
            timeout_s=self.timeout_s,
        )
        self.results.append(result)
        return result

    def result(
        self,
        arguments: str | Mapping[str, Any] | None = None,
        /,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> ToolResult:
        """Sync form of :meth:`aresult`."""
        return asyncio.run(self.aresult(arguments, name=name, **kwargs))

    async def acall(
        self,
        arguments: str | Mapping[str, Any] | None = None,
        /,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call and return the parsed output; raises :class:`ToolCallError` on an error result."""
        result = await self.aresult(arguments, name=name, **kwargs)
        if not result.ok:
            raise ToolCallError(result)
        return result.value

    def call(
        self,
        arguments: str | Mapping[str, Any] | None = None,
        /,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Sync form of :meth:`acall`."""
        return asyncio.run(self.acall(arguments, name=name, **kwargs))

    def _name(self, name: str | None) -> str:
        return _pick_name(self.registry, name)


def _registry_and_name(
    func: Callable[..., Any] | Registry, name: str | None
) -> tuple[Registry, str]:
    registry = func if isinstance(func, Registry) else Registry.of(func)
    return registry, _pick_name(registry, name)


def _pick_name(registry: Registry, name: str | None) -> str:
    if name is not None:
        return name
    names: Sequence[str] = registry.names()
    if len(names) != 1:
        raise ValueError(f"say which tool to call with name=...; loaded: {', '.join(names)}")
    return names[0]


def _arguments_json(arguments: str | Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    if arguments is not None and kwargs:
        raise TypeError("pass the arguments either as JSON/mapping or as keywords, not both")
    if isinstance(arguments, str):
        return arguments
    return json.dumps(dict(arguments if arguments is not None else kwargs))
