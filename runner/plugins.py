"""Tool plugins: ``@tool`` marks a function, a :class:`Registry` finds, checks and calls it.

Marking is cheap and has no side effects (the pluggy way); the registry does the work once,
when it collects tools: it builds the JSON Schema from the type hints, compiles a validator
and refuses anything it could not call safely. Dispatch then only parses, validates, calls
and serialises, so a tool call costs the live loop well under a millisecond of overhead.

Tools come from two places, in this order:
- folders of ``*.py`` files, loaded *by path* under a private module name, so a folder
  called ``tools`` never clashes with an installed package of that name;
- installed distributions, through the ``vlrun.tools`` entry-point group.

``VLRUN_TOOLS_ONLY=name1,name2`` restricts which tools load; ``VLRUN_TOOLS_ENTRY_POINTS=0``
turns entry-point loading off (``Registry.discover(..., entry_points=False)`` does the same).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime as dt
import decimal
import difflib
import enum
import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, TypeVar, overload

import jsonschema
from jsonschema.exceptions import best_match

from runner.errors import ToolError
from runner.redact import redact
from runner.toolschema import Checker, Converter, compile_checker, function_schema

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ENTRY_POINT_GROUP",
    "Registry",
    "ToolContext",
    "ToolResult",
    "ToolSpec",
    "schema_drift",
    "tool",
]

ENTRY_POINT_GROUP = "vlrun.tools"
DEFAULT_TIMEOUT_S = 30.0
TOOL_THREADS = 16  # sync tool calls that can run (or hang after a timeout) at the same time
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
    """

    session_id: str = ""
    profile_name: str = ""
    vars: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    logger: logging.Logger = log
    call_id: str = ""
    tool_name: str = ""
    say_handler: Callable[[ToolContext, str], Awaitable[None]] | None = None

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
        keep = _only_names(only)
        for folder in dirs:
            for path in _python_files(Path(folder)):
                module = load_module_by_path(path)
                for func in _marked_in(module):
                    registry._add_marked(func, source=None, keep=keep)
        if entry_points and os.environ.get("VLRUN_TOOLS_ENTRY_POINTS", "1") not in ("0", "no"):
            for ep in _entry_points():
                for func in _load_entry_point(ep):
                    registry._add_marked(func, source=_ep_source(ep), keep=keep)
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
        """``{name: {"description": ..., "parameters": {JSON Schema}}}`` for the compiler."""
        return {
            n: {"description": s.description, "parameters": s.parameters}
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
    ) -> ToolResult:
        """Run one call the model asked for; never raises for anything the tool or model did.

        Sync tools run in a worker thread so audio keeps flowing; async tools are awaited.
        """
        start = time.perf_counter()
        spec = self._specs.get(name)
        if spec is None:
            return _failure(
                call_id,
                name,
                start,
                "unknown_tool",
                f"There is no tool named '{name}'. {self._suggest(name)}",
            )
        kwargs, problem = _arguments(spec, arguments)
        if problem is not None:
            return _failure(call_id, name, start, "invalid_arguments", problem)
        ctx = context if context is not None else ToolContext()
        if spec.context_param is not None:
            kwargs[spec.context_param] = dataclasses.replace(ctx, call_id=call_id, tool_name=name)
        try:
            value = await _run(spec, kwargs, timeout_s)
        except _Timeout:
            ctx.logger.warning("tool %s (call %s) timed out after %.3g s", name, call_id, timeout_s)
            return _failure(
                call_id,
                name,
                start,
                "timeout",
                f"The tool '{name}' did not finish within {timeout_s:g} s. "
                "It may work if tried again later.",
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ctx.logger.error(
                "tool %s (call %s) failed:\n%s",
                name,
                call_id,
                redact("".join(traceback.format_exception(exc))),
            )
            return _failure(call_id, name, start, "tool_error", _describe(exc))
        try:
            output = to_json(value)
        except (TypeError, ValueError) as exc:
            ctx.logger.error(
                "tool %s returned a value that is not JSON-serialisable: %s", name, exc
            )
            return _failure(
                call_id,
                name,
                start,
                "bad_result",
                f"The tool '{name}' returned a result that could not be sent "
                f"({type(value).__name__}).",
            )
        return ToolResult(call_id, name, True, output, None, time.perf_counter() - start)

    async def dispatch_many(
        self,
        calls: Sequence[tuple[str, str, str]],
        *,
        context: ToolContext | None = None,
        timeout_s: float | Mapping[str, float] = DEFAULT_TIMEOUT_S,
        slow_status: tuple[float, str] | None = None,
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
                name, call_id, args, context=context, timeout_s=limits[0]
            )
        else:
            work = asyncio.gather(
                *(
                    self.dispatch(n, c, a, context=context, timeout_s=t)
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
            f"tool name '{name}' ({source or _source_of(func)}) is not usable: the service "
            "accepts letters, digits, '_' and '-', up to 64 characters",
            hint="rename it with @tool(name=...)",
        )
    source = source or _source_of(func)
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


# --------------------------------------------------------------------------- dispatch helpers


def _arguments(
    spec: ToolSpec, arguments: str | bytes | Mapping[str, Any] | None
) -> tuple[dict[str, Any], str | None]:
    """Parse and validate; returns (kwargs, None) or ({}, a message the model can act on)."""
    if isinstance(arguments, Mapping):
        args: Any = dict(arguments)
    elif arguments is None or not arguments.strip():
        args = {}  # models send "" for tools without parameters
    else:
        try:
            args = json.loads(arguments, parse_constant=_refuse_constant)
        except RecursionError:
            return {}, f"The arguments for '{spec.name}' are nested too deeply."
        except (ValueError, UnicodeDecodeError) as exc:
            return {}, (
                f"The arguments for '{spec.name}' are not valid JSON ({exc}). "
                'Send a JSON object such as {"name": value}.'
            )
    if not isinstance(args, dict):
        return {}, (
            f"The arguments for '{spec.name}' must be a JSON object, not {type(args).__name__}."
        )
    checker = spec.checker
    valid = checker(args) if checker is not None else spec.validator.is_valid(args)
    if not valid:
        return {}, _validation_message(spec, args)
    if spec.converters:
        for key, convert in spec.converters.items():
            if key in args:
                try:
                    args[key] = convert(args[key])
                except (TypeError, ValueError) as exc:
                    return {}, f"Argument '{key}' for '{spec.name}' is not usable: {exc}."
    return args, None


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and no tool expects them.
    raise ValueError(f"{name} is not a JSON value")


def _validation_message(spec: ToolSpec, args: dict[str, Any]) -> str:
    errors = sorted(spec.validator.iter_errors(args), key=lambda e: list(e.absolute_path))
    first = best_match(errors)
    parts = []
    for err in [first, *[e for e in errors if e is not first]][:3]:
        where = "/".join(str(p) for p in err.absolute_path)
        message = err.message
        if err.validator == "additionalProperties":
            allowed = ", ".join(spec.parameters.get("properties", {})) or "none"
            message = f"{message}; the parameters are: {allowed}"
        parts.append(f"argument '{where}': {message}" if where else message)
    return f"Invalid arguments for '{spec.name}': " + "; ".join(parts) + "."


class _Timeout(Exception):
    """Our deadline passed (as opposed to a TimeoutError the tool itself raised)."""


if sys.version_info >= (3, 11):

    async def _run(spec: ToolSpec, kwargs: dict[str, Any], timeout_s: float) -> Any:
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                if spec.is_async:
                    return await spec.func(**kwargs)
                return await _in_thread(spec.func, kwargs)
        except TimeoutError:
            if deadline.expired():
                raise _Timeout from None
            raise

else:  # pragma: no cover - Python 3.10

    async def _run(spec: ToolSpec, kwargs: dict[str, Any], timeout_s: float) -> Any:
        coro = spec.func(**kwargs) if spec.is_async else _in_thread(spec.func, kwargs)
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            task.cancel()
            raise _Timeout
        return task.result()


_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _in_thread(func: Callable[..., Any], kwargs: dict[str, Any]) -> Awaitable[Any]:
    # Tools get their own threads: a hung tool (threads cannot be stopped) must not take a
    # worker from the loop's default executor that audio and the SDK use.
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=TOOL_THREADS, thread_name_prefix="vlrun-tool"
        )
    loop = asyncio.get_running_loop()
    # asyncio.to_thread without its wrapper coroutine; contextvars still travel with the call.
    call = functools.partial(contextvars.copy_context().run, func, **kwargs)
    return loop.run_in_executor(_executor, call)


def _failure(call_id: str, name: str, start: float, kind: str, message: str) -> ToolResult:
    message = redact(message)
    output = json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)
    return ToolResult(call_id, name, False, output, message, time.perf_counter() - start, kind)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


def to_json(value: Any) -> str:
    """Serialise a tool's return value the way it is sent to the model."""
    return json.dumps(value, ensure_ascii=False, default=_jsonable, allow_nan=False)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dump(mode="json")
    legacy = getattr(value, "dict", None)  # pydantic v1
    if callable(legacy) and hasattr(value, "__fields__"):
        return legacy()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID | Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------- discovery helpers


def _python_files(folder: Path) -> list[Path]:
    if folder.is_file():
        return [folder] if folder.suffix == ".py" else []
    if not folder.is_dir():
        return []
    # Files starting with "_" are helpers (and __init__.py), not tool modules.
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def load_module_by_path(path: Path) -> ModuleType:
    """Import one file under a private, unique module name; errors name the file and line."""
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"vlrun_tools_{digest}_{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ToolError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    # dataclasses and typing look the module up in sys.modules while it executes.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise ToolError(
            f"{_display_path(exc.filename or str(path))}:{exc.lineno or 0}: "
            f"syntax error in tool file: {exc.msg}"
        ) from None
    except Exception as exc:
        del sys.modules[module_name]
        line = _line_in(exc, path)
        raise ToolError(
            f"{_display_path(str(path))}:{line}: loading the tool file failed: {_describe(exc)}",
            hint="a tool file must import cleanly; run it with python to see the full error",
        ) from None
    return module


def _line_in(exc: BaseException, path: Path) -> int:
    line = 0
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno or 0
    return line


def _marked_in(module: ModuleType) -> list[Callable[..., Any]]:
    # Only functions defined in this file: an imported tool belongs to its own file.
    found = []
    for value in vars(module).values():
        if getattr(value, MARK, None) is None or not callable(value):
            continue
        if getattr(value, "__module__", module.__name__) == module.__name__:
            found.append(value)
    return sorted(found, key=lambda f: _line_of(f))


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def _ep_source(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name if dist else '?'}:{ep.name}"


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> list[Callable[..., Any]]:
    """An entry point names a tool function, a module of tools, or a list of functions."""
    try:
        obj = ep.load()
    except Exception as exc:
        raise ToolError(
            f"entry point '{ep.name}' ({_ep_source(ep)} -> {ep.value}) failed to load: "
            f"{_describe(exc)}",
            hint=f"reinstall the package, or set VLRUN_TOOLS_ENTRY_POINTS=0 to skip "
            f"the '{ENTRY_POINT_GROUP}' entry points",
        ) from None
    if isinstance(obj, ModuleType):
        return [v for v in vars(obj).values() if getattr(v, MARK, None) is not None]
    if isinstance(obj, list | tuple):
        return list(obj)
    if callable(obj):
        return [obj]
    raise ToolError(
        f"entry point '{ep.name}' ({_ep_source(ep)}) is a {type(obj).__name__}, "
        "not a tool function, a module or a list of functions"
    )


def _only_names(only: Sequence[str] | None) -> frozenset[str] | None:
    if only is None:
        env = os.environ.get("VLRUN_TOOLS_ONLY", "").strip()
        if not env:
            return None
        only = env.split(",")
    return frozenset(n.strip() for n in only if n.strip())


def _source_of(func: Callable[..., Any]) -> str:
    target = inspect.unwrap(func)
    code = getattr(target, "__code__", None)
    if code is None:
        return getattr(func, "__qualname__", repr(func))
    return f"{_display_path(code.co_filename)}:{code.co_firstlineno}"


def _line_of(func: Callable[..., Any]) -> int:
    code = getattr(inspect.unwrap(func), "__code__", None)
    return code.co_firstlineno if code else 0


def _display_path(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-") for c in name)


# --------------------------------------------------------------------------- drift


def schema_drift(declared: Mapping[str, Any], actual: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Where a profile's declared parameters and a plugin's schema disagree, both directions.

    Compares types, required names and enums, recursing into object properties and array
    items. Returns ``(subpath, message)`` pairs, e.g.
    ``("properties.unit.enum", "the profile allows ['c'] but the tool allows ['c', 'f']")``.
    """
    found: list[tuple[str, str]] = []
    _drift(declared, actual, "", found)
    return found


def _drift(
    declared: Mapping[str, Any], actual: Mapping[str, Any], path: str, out: list[tuple[str, str]]
) -> None:
    def at(key: str) -> str:
        return f"{path}.{key}" if path else key

    d_types, a_types = _types(declared), _types(actual)
    if d_types and a_types and d_types != a_types:
        # JSON "integer" values are numbers too; a profile saying number for an int is drift
        # the author should see, so this compares exactly.
        out.append(
            (
                at("type"),
                f"the profile says {_fmt_types(d_types)} but the tool takes {_fmt_types(a_types)}",
            )
        )
    d_enum, a_enum = declared.get("enum"), actual.get("enum")
    if d_enum is not None or a_enum is not None:
        if d_enum is None:
            out.append(
                (
                    at("enum"),
                    f"the tool only accepts {a_enum!r} "
                    "but the profile does not list the allowed values",
                )
            )
        elif a_enum is None:
            out.append(
                (
                    at("enum"),
                    f"the profile restricts values to {d_enum!r} "
                    "but the tool does not declare them",
                )
            )
        elif _enum_key(d_enum) != _enum_key(a_enum):
            extra = [v for v in d_enum if v not in a_enum]
            missing = [v for v in a_enum if v not in d_enum]
            detail = []
            if extra:
                detail.append(f"the tool does not accept {extra!r}")
            if missing:
                detail.append(f"the profile leaves out {missing!r}")
            out.append(
                (
                    at("enum"),
                    f"the profile allows {d_enum!r} but the tool allows "
                    f"{a_enum!r} ({'; '.join(detail)})",
                )
            )
    d_props = declared.get("properties")
    a_props = actual.get("properties")
    if isinstance(d_props, Mapping) or isinstance(a_props, Mapping):
        d_props = d_props if isinstance(d_props, Mapping) else {}
        a_props = a_props if isinstance(a_props, Mapping) else {}
        for key in d_props:
            if key not in a_props:
                out.append(
                    (
                        at(f"properties.{key}"),
                        f"the profile declares '{key}' but the tool has no such parameter",
                    )
                )
            elif isinstance(d_props[key], Mapping) and isinstance(a_props[key], Mapping):
                _drift(d_props[key], a_props[key], at(f"properties.{key}"), out)
        for key in a_props:
            if key not in d_props:
                out.append(
                    (
                        at(f"properties.{key}"),
                        f"the tool has a parameter '{key}' the profile does not declare",
                    )
                )
        d_req = set(declared.get("required") or ())
        a_req = set(actual.get("required") or ())
        for key in sorted(a_req - d_req):
            if key in d_props:
                out.append(
                    (at("required"), f"the tool requires '{key}' but the profile marks it optional")
                )
        for key in sorted(d_req - a_req):
            if key in a_props:
                out.append(
                    (
                        at("required"),
                        f"the profile requires '{key}' but the tool treats it as optional",
                    )
                )
    d_items, a_items = declared.get("items"), actual.get("items")
    if isinstance(d_items, Mapping) and isinstance(a_items, Mapping):
        _drift(d_items, a_items, at("items"), out)


def _types(schema: Mapping[str, Any]) -> frozenset[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return frozenset([kind])
    if isinstance(kind, list):
        return frozenset(k for k in kind if isinstance(k, str))
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        return frozenset().union(*(_types(s) for s in any_of if isinstance(s, Mapping)))
    return frozenset()


def _fmt_types(kinds: frozenset[str]) -> str:
    return " or ".join(sorted(kinds))


def _enum_key(values: Sequence[Any]) -> frozenset[str]:
    return frozenset(json.dumps(v, sort_keys=True) for v in values)
