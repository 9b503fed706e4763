"""The Registry: collects marked tools from folders and entry points, checks and calls them."""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import inspect
import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema

from runner.config.call_control import CALL_CONTROL
from runner.errors import ToolError
from runner.plugins._dispatch import (
    MAX_RESULT_BYTES,
    CallTimeout,
    ToolThreads,
    describe_error,
    failure,
    parse_arguments,
    run_tool,
    to_json,
    too_large,
)
from runner.plugins._loading import (
    entry_points_of_group,
    ep_source,
    load_entry_point,
    load_module_by_path,
    marked_in,
    only_names,
    python_files,
    source_of,
)
from runner.plugins._schema import compile_checker, function_schema
from runner.plugins._types import MARK, ToolContext, ToolMark, ToolResult, ToolSpec
from runner.redact import redact

DEFAULT_TIMEOUT_S = 30.0

log = logging.getLogger("vlrun.tools")


# --------------------------------------------------------------------------- registry


class Registry:
    """Tools by name; built by :meth:`discover` (or :meth:`add`), used by :meth:`dispatch`."""

    def __init__(self) -> None:
        self._specs: dict[str, ToolSpec] = {}

    # ---- building

    @classmethod
    def discover(
        cls,
        dirs: Sequence[Path | str],
        *,
        entry_points: bool = True,
        only: Sequence[str] | None = None,
    ) -> Registry:
        """Collect tools from folders (loaded by path) and from installed entry points.

        Missing folders are skipped (a profile need not have a ``tools/`` folder); a path to
        a single ``.py`` file loads that file. ``only`` (or ``VLRUN_TOOLS_ONLY``) keeps just
        the named tools. Raises :class:`ToolError` on a file that fails to import, a type the
        schema cannot express, or two tools with one name (naming both sources).
        """
        registry = cls()
        keep = only_names(only)
        for folder in dirs:
            for path in python_files(Path(folder)):
                module = load_module_by_path(path)
                for func in marked_in(module):
                    registry._add_marked(func, source=None, keep=keep)
        if entry_points and os.environ.get("VLRUN_TOOLS_ENTRY_POINTS", "1") not in ("0", "no"):
            for ep in entry_points_of_group():
                for func in load_entry_point(ep):
                    registry._add_marked(func, source=ep_source(ep), keep=keep)
        return registry

    @classmethod
    def of(cls, *funcs: Callable[..., Any]) -> Registry:
        """A registry of the given functions (marked or not); handy in tests and scripts."""
        registry = cls()
        for func in funcs:
            registry.add(func)
        return registry

    def add(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        source: str | None = None,
    ) -> ToolSpec:
        """Check and register one function; returns its :class:`ToolSpec`."""
        mark = getattr(func, MARK, ToolMark())
        name = name or mark.name or getattr(func, "__name__", None)
        if not name:
            raise ToolError(f"tool {func!r} has no name", hint="use @tool(name=...)")
        description = description if description is not None else mark.description
        previous = self._specs.get(name)
        if previous is not None and previous.func is func:
            return previous  # the same file reached twice (a folder and a file inside it)
        spec = build_spec(func, name=name, description=description, source=source)
        if previous is not None:
            raise ToolError(
                f"two tools are named '{spec.name}': {previous.source} and {spec.source}",
                hint="rename one of them with @tool(name=...), or remove one",
            )
        self._specs[spec.name] = spec
        return spec

    def _add_marked(
        self, func: Callable[..., Any], *, source: str | None, keep: frozenset[str] | None
    ) -> None:
        mark = getattr(func, MARK, ToolMark())
        if keep is not None and (mark.name or getattr(func, "__name__", "")) not in keep:
            return
        self.add(func, source=source)

    # ---- reading

    def names(self) -> list[str]:
        """Tool names, sorted."""
        return sorted(self._specs)

    def get(self, name: str) -> ToolSpec:
        """The tool called ``name``; :class:`ToolError` with close matches if there is none."""
        try:
            return self._specs[name]
        except KeyError:
            raise ToolError(f"no tool named '{name}'", hint=self._suggest(name)) from None

    def schemas(self) -> dict[str, dict[str, Any]]:
        """``{name: {"description", "parameters", "source"}}`` for the compiler and explain."""
        return {
            n: {"description": s.description, "parameters": s.parameters, "source": s.source}
            for n, s in sorted(self._specs.items())
        }

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._specs)

    def _suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._specs, n=3)
        if close:
            return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        if self._specs:
            return "known tools: " + ", ".join(self.names())
        return "no tools are loaded; put a @tool function in a tools/ folder next to the profile"

    # ---- calling

    async def dispatch(
        self,
        name: str,
        call_id: str,
        arguments: str,
        *,
        context: ToolContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        threads: ToolThreads | None = None,
    ) -> ToolResult:
        """Run one call the model asked for; never raises for anything the tool or model did.

        Sync tools run on a worker thread of ``threads`` (a live session passes its own) so
        audio keeps flowing; async tools are awaited. Cancelling the call cancels an async
        tool; a sync one is abandoned on its thread.
        """
        start = time.perf_counter()
        spec = self._specs.get(name)
        if spec is None:
            why = (
                f"'{name}' controls a phone call, and there is none here: it works on calls "
                "that vlrun serve answers."
                if name in CALL_CONTROL
                else f"There is no tool named '{name}'. {self._suggest(name)}"
            )
            return failure(call_id, name, start, "unknown_tool", why)
        kwargs, problem = parse_arguments(spec, arguments)
        if problem is not None:
            return failure(call_id, name, start, "invalid_arguments", problem)
        ctx = context if context is not None else ToolContext()
        if spec.context_param is not None:
            kwargs[spec.context_param] = dataclasses.replace(ctx, call_id=call_id, tool_name=name)
        try:
            value = await run_tool(spec, kwargs, timeout_s, threads)
        except CallTimeout:
            ctx.logger.warning("tool %s (call %s) timed out after %.3g s", name, call_id, timeout_s)
            return failure(
                call_id,
                name,
                start,
                "timeout",
                f"The tool '{name}' did not finish within {timeout_s:g} s. "
                "It may work if tried again later.",
            )
        except asyncio.CancelledError:
            raise
        except (SystemExit, KeyboardInterrupt) as exc:
            # A tool's sys.exit() or KeyboardInterrupt is its own failure, not the user's
            # wish to stop: left alone it would end the whole run (exit 3 or 130). Caught here,
            # at the tool-call boundary only; a sync tool's one arrives from its thread.
            ctx.logger.error(
                "tool %s (call %s) %s; it counts as a failed call",
                name,
                call_id,
                _exit_what(exc),
            )
            return failure(
                call_id,
                name,
                start,
                "tool_error",
                f"The tool '{name}' {_exit_what(exc)}, so it returned no result.",
            )
        except Exception as exc:
            ctx.logger.error(
                "tool %s (call %s) failed:\n%s",
                name,
                call_id,
                redact("".join(traceback.format_exception(exc))),
            )
            return failure(call_id, name, start, "tool_error", describe_error(exc))
        try:
            output = to_json(value)
        except (TypeError, ValueError) as exc:
            ctx.logger.error(
                "tool %s returned a value that is not JSON-serialisable: %s", name, exc
            )
            return failure(
                call_id,
                name,
                start,
                "bad_result",
                f"The tool '{name}' returned a result that could not be sent "
                f"({type(value).__name__}).",
            )
        size = len(output.encode("utf-8"))
        if size > MAX_RESULT_BYTES:
            ctx.logger.warning(
                "tool %s (call %s) returned %d bytes, over the %d-byte limit; the model is told",
                name,
                call_id,
                size,
                MAX_RESULT_BYTES,
            )
            return too_large(call_id, name, start, size)
        return ToolResult(call_id, name, True, output, None, time.perf_counter() - start)

    async def dispatch_many(
        self,
        calls: Sequence[tuple[str, str, str]],
        *,
        context: ToolContext | None = None,
        timeout_s: float | Mapping[str, float] = DEFAULT_TIMEOUT_S,
        slow_status: tuple[float, str] | None = None,
        threads: ToolThreads | None = None,
    ) -> list[ToolResult]:
        """Run ``(name, call_id, arguments)`` calls concurrently; results come in call order.

        ``timeout_s`` may map tool names to timeouts; names not in it get
        :data:`DEFAULT_TIMEOUT_S`. ``slow_status=(seconds, text)`` speaks ``text`` once
        through ``context.say`` if the calls are still running after ``seconds``.
        """
        if isinstance(timeout_s, Mapping):
            limits = [float(timeout_s.get(n, DEFAULT_TIMEOUT_S)) for n, _, _ in calls]
        else:
            limits = [float(timeout_s)] * len(calls)
        if len(calls) == 1:
            name, call_id, args = calls[0]
            work: Awaitable[Any] = self.dispatch(
                name, call_id, args, context=context, timeout_s=limits[0], threads=threads
            )
        else:
            work = asyncio.gather(
                *(
                    self.dispatch(n, c, a, context=context, timeout_s=t, threads=threads)
                    for (n, c, a), t in zip(calls, limits, strict=True)
                )
            )
        if slow_status is not None and calls:
            ctx = context if context is not None else ToolContext()
            ctx = dataclasses.replace(ctx, call_id=calls[0][1], tool_name=calls[0][0])
            result = await _with_status(work, ctx, slow_status)
        else:
            result = await work
        return [result] if len(calls) == 1 else list(result)


def _exit_what(exc: SystemExit | KeyboardInterrupt) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return "raised KeyboardInterrupt"


_status_tasks: set[asyncio.Task[None]] = set()


async def _with_status(
    work: Awaitable[Any], context: ToolContext, status: tuple[float, str]
) -> Any:
    """Await ``work``; if it is still running after ``status[0]`` s, say ``status[1]`` once."""
    after, text = status
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=after)
        if not done:
            speak = asyncio.create_task(_say_safely(context, text))
            _status_tasks.add(speak)  # keep a reference until it finishes
            speak.add_done_callback(_status_tasks.discard)
        return await task
    except asyncio.CancelledError:
        task.cancel()
        raise


async def _say_safely(context: ToolContext, text: str) -> None:
    try:
        await context.say(text)
    except Exception:  # a failed status line must not fail the tool call
        context.logger.exception("saying the slow-tool status line failed")


def build_spec(
    func: Callable[..., Any],
    *,
    name: str,
    description: str | None = None,
    source: str | None = None,
) -> ToolSpec:
    """Check one function and turn it into a :class:`ToolSpec` (schema, validator, converters)."""
    if not _valid_name(name):
        raise ToolError(
            f"tool name '{name}' ({source or source_of(func)}) is not usable: the service "
            "accepts letters, digits, '_' and '-', up to 64 characters",
            hint="rename it with @tool(name=...)",
        )
    source = source or source_of(func)
    target = inspect.unwrap(func)
    # An object whose __call__ is async counts as an async tool too.
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        type(func).__call__
    )
    if inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target):
        raise ToolError(
            f"tool '{name}' ({source}) is a generator; a tool returns one result",
            hint="return a list instead of yielding",
        )
    fs = function_schema(
        func, where=f"'{name}' ({source})", context_types=(ToolContext,), description=description
    )
    if not fs.description:
        log.debug("tool %s has no description; the model will guess from its name", name)
    jsonschema.Draft202012Validator.check_schema(fs.parameters)
    validator = jsonschema.Draft202012Validator(fs.parameters)
    return ToolSpec(
        name=name,
        description=fs.description,
        parameters=fs.parameters,
        source=source,
        is_async=is_async,
        wants_context=fs.context_param is not None,
        func=func,
        context_param=fs.context_param,
        converters=MappingProxyType(dict(fs.converters)),
        validator=validator,
        # jsonschema takes ~100 µs per call; the compiled check a few. jsonschema still
        # writes the message when the check fails.
        checker=compile_checker(fs.parameters),
    )


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-") for c in name)
