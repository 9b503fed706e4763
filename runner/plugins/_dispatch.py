"""Calling one tool: parse and validate the arguments, run it under a deadline (sync tools in
worker threads), and serialise what it returns or the error the model is shown."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from jsonschema.exceptions import best_match

from runner.plugins._types import ToolResult, ToolSpec
from runner.redact import redact

TOOL_THREADS = 16  # sync tool calls that can run (or hang after a timeout) at the same time


def parse_arguments(
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


class CallTimeout(Exception):
    """Our deadline passed (as opposed to a TimeoutError the tool itself raised)."""


if sys.version_info >= (3, 11):

    async def run_tool(spec: ToolSpec, kwargs: dict[str, Any], timeout_s: float) -> Any:
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                if spec.is_async:
                    return await spec.func(**kwargs)
                return await _in_thread(spec.func, kwargs)
        except TimeoutError:
            if deadline.expired():
                raise CallTimeout from None
            raise

else:  # pragma: no cover - Python 3.10

    async def run_tool(spec: ToolSpec, kwargs: dict[str, Any], timeout_s: float) -> Any:
        coro = spec.func(**kwargs) if spec.is_async else _in_thread(spec.func, kwargs)
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            task.cancel()
            raise CallTimeout
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


def failure(call_id: str, name: str, start: float, kind: str, message: str) -> ToolResult:
    message = redact(message)
    output = json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)
    return ToolResult(call_id, name, False, output, message, time.perf_counter() - start, kind)


def describe_error(exc: BaseException) -> str:
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
