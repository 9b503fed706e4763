"""Calling one tool: parse and validate the arguments, run it under a deadline (sync tools on
daemon worker threads that never hold the exit), and serialise what it returns or the error
the model is shown."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import json
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from jsonschema.exceptions import best_match

from runner.plugins._types import ToolResult, ToolSpec
from runner.redact import redact

TOOL_THREADS = 16  # sync tool calls that can run (or hang after a timeout) at the same time
IDLE_S = 2.0  # how long an idle tool thread waits for another call before it ends


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


class ToolThreads:
    """Worker threads for sync tools, which can never hold the process exit.

    A thread cannot be stopped, so a tool that hangs past its deadline is abandoned: its
    thread is a daemon (the interpreter does not join it at exit, as it joins a
    ``ThreadPoolExecutor``'s), and its result, if it ever comes, is dropped. At most
    ``limit`` calls run at once (hung ones count); later calls wait for a free thread, under
    their own deadline. A live session has its own; calls without one share a default.
    """

    def __init__(self, limit: int = TOOL_THREADS, prefix: str = "vlrun-tool") -> None:
        self.limit = limit
        self.prefix = prefix
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: collections.deque[_Job] = collections.deque()
        self._workers = 0
        self._idle = 0  # workers waiting for a job
        self._returning = 0  # workers that finished a job and are on their way back to wait
        self._started = 0
        self._running: dict[int, str] = {}  # thread ident -> tool name

    def submit(self, func: Callable[..., Any], kwargs: dict[str, Any], name: str = "") -> Any:
        """Run ``func(**kwargs)`` on a worker; returns an asyncio future of the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # contextvars travel with the call, as with asyncio.to_thread
        call = functools.partial(contextvars.copy_context().run, func, **kwargs)
        with self._lock:
            self._queue.append(_Job(loop, future, call, name or getattr(func, "__name__", "?")))
            # A worker that has just delivered a result counts as free: the next call, often
            # submitted the moment that result arrives, must not start a thread of its own.
            free = self._idle + self._returning
            start = len(self._queue) > free and self._workers < self.limit
            if start:
                self._workers += 1
                self._started += 1
                number = self._started
            self._wake.notify()
        if start:
            thread = threading.Thread(target=self._work, name=f"{self.prefix}-{number}")
            thread.daemon = True
            thread.start()
        return future

    def running(self) -> list[str]:
        """Names of the tools whose calls are running on a thread right now."""
        with self._lock:
            return sorted(self._running.values())

    def _work(self) -> None:
        ident = threading.get_ident()
        returning = False
        while True:
            with self._lock:
                if returning:
                    self._returning -= 1
                    returning = False
                while not self._queue:
                    self._idle += 1
                    woken = self._wake.wait(IDLE_S)  # an idle worker stays a moment for the next
                    self._idle -= 1
                    if not woken and not self._queue:
                        self._workers -= 1
                        return
                job = self._queue.popleft()
                if job.future.cancelled():  # its deadline passed while it waited for a thread
                    continue
                self._running[ident] = job.name
            try:
                value, error = job.call(), None
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, never lost
                value, error = None, exc
            finally:
                with self._lock:
                    self._running.pop(ident, None)
                    self._returning += 1
            returning = True
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
                job.loop.call_soon_threadsafe(_deliver, job.future, value, error)


@dataclasses.dataclass
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    call: Callable[[], Any]
    name: str


def _deliver(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled: the call timed out or was interrupted
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


DEFAULT_THREADS = ToolThreads()


if sys.version_info >= (3, 11):

    async def run_tool(
        spec: ToolSpec,
        kwargs: dict[str, Any],
        timeout_s: float,
        threads: ToolThreads | None = None,
    ) -> Any:
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                if spec.is_async:
                    return await spec.func(**kwargs)
                return await (threads or DEFAULT_THREADS).submit(spec.func, kwargs, spec.name)
        except TimeoutError:
            if deadline.expired():
                raise CallTimeout from None
            raise

else:  # pragma: no cover - Python 3.10

    async def run_tool(
        spec: ToolSpec,
        kwargs: dict[str, Any],
        timeout_s: float,
        threads: ToolThreads | None = None,
    ) -> Any:
        if spec.is_async:
            work: Awaitable[Any] = spec.func(**kwargs)
        else:
            work = (threads or DEFAULT_THREADS).submit(spec.func, kwargs, spec.name)
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            raise CallTimeout
        return task.result()


def failure(call_id: str, name: str, start: float, kind: str, message: str) -> ToolResult:
    message = redact(message)
    output = json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)
    return ToolResult(call_id, name, False, output, message, time.perf_counter() - start, kind)


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


#: The largest tool result sent to the model. A spoken answer needs a few kB; a result of many
#: MB made the service drop the socket and the answer was lost without a word.
MAX_RESULT_BYTES = 128 * 1024


def too_large(call_id: str, name: str, start: float, size: int) -> ToolResult:
    return failure(
        call_id,
        name,
        start,
        "result_too_large",
        f"The tool '{name}' returned {size} bytes; at most {MAX_RESULT_BYTES} can be sent. "
        "Ask it for less (a summary, fewer items).",
    )


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
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID | Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
