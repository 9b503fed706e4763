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

TOOL_THREADS = 16  # sync tool calls of one session that can run (or hang) at the same time
IDLE_S = 2.0  # how long a parked tool thread waits for another call before it ends
PARKED_MAX = 32  # idle tool threads the process keeps; past it a finishing thread ends


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


class ThreadPark:
    """The process's idle tool threads, which every :class:`ToolThreads` borrows.

    A session that needs a worker hands its worker loop to the most recently parked thread
    (a notify), and starts a thread only when none is parked: a busy worker calls tools every
    few seconds per call, and starting (and ending) an OS thread per call blocked the event
    loop in ``Thread.start``. A thread whose session has no more calls parks at once; one that
    gets no work for ``idle_s`` ends, and at most ``max_idle`` stay parked. Every pool of the
    process shares its lock (held only for bookkeeping, never while a tool runs).
    """

    def __init__(
        self, idle_s: float = IDLE_S, max_idle: int = PARKED_MAX, name: str = "vlrun-tool-parked"
    ) -> None:
        self.idle_s = idle_s
        self.max_idle = max_idle
        self.name = name
        self._lock = threading.Lock()
        self._settle = threading.Condition(self._lock)  # a thread parked or ended
        self._parked: list[_Slot] = []  # the most recently parked last: it is lent first
        self._alive = 0
        self._started = 0

    @property
    def started(self) -> int:
        """Threads started since the park was made (a lent parked thread is not one)."""
        with self._lock:
            return self._started

    def parked(self) -> int:
        """Threads waiting for work right now."""
        with self._lock:
            return len(self._parked)

    def alive(self) -> int:
        """Threads of this park that have not ended (working, hung or parked)."""
        with self._lock:
            return self._alive

    def settled(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every thread of the park is parked or has
        ended, none working or on its way back; False if some still were."""
        with self._lock:
            return self._settle.wait_for(lambda: len(self._parked) == self._alive, timeout)

    def _lend(self, threads: ToolThreads, number: int) -> threading.Thread | None:
        """Under the lock: give ``threads``' worker loop to a parked thread, or return a new
        thread for the caller to start once it has let go of the lock."""
        if self._parked:
            slot = self._parked.pop()
            slot.threads, slot.number = threads, number
            slot.wake.notify()
            return None
        slot = _Slot(threading.Condition(self._lock), threads, number)
        self._alive += 1
        self._started += 1
        return threading.Thread(
            target=self._run, args=(slot,), name=f"{threads.prefix}-{number}", daemon=True
        )

    def _unstarted(self) -> None:
        """Under the lock: a thread _lend returned could not start."""
        self._alive -= 1
        self._settle.notify_all()

    def _run(self, slot: _Slot) -> None:
        me = threading.current_thread()
        with self._lock:
            try:
                while slot.threads is not None:
                    threads, slot.threads = slot.threads, None
                    me.name = f"{threads.prefix}-{slot.number}"  # which pool it works for
                    threads._serve(slot.number)  # lets go of the lock while a tool runs
                    if len(self._parked) >= self.max_idle:
                        return
                    me.name = self.name
                    self._parked.append(slot)
                    self._settle.notify_all()
                    deadline = time.monotonic() + self.idle_s
                    while slot.threads is None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self._parked.remove(slot)  # nothing came: the thread ends
                            return
                        slot.wake.wait(left)
            finally:
                self._alive -= 1
                self._settle.notify_all()


@dataclasses.dataclass
class _Slot:
    wake: threading.Condition  # on the park's lock
    threads: ToolThreads | None  # the pool whose worker loop the thread is to run next
    number: int  # the place it takes in that pool (1 to its limit), for the thread's name


class ToolThreads:
    """Worker threads for sync tools, which can never hold the process exit.

    A thread cannot be stopped, so a tool that hangs past its deadline is abandoned: its
    thread is a daemon (the interpreter does not join it at exit, as it joins a
    ``ThreadPoolExecutor``'s), and its result, if it ever comes, is dropped. At most
    ``limit`` calls of this pool run at once (hung ones count, against this pool only); later
    calls wait for a free place, under their own deadline. A live session has its own pool;
    calls without one share a default. The threads themselves come from the process's
    :class:`ThreadPark` and go back to it when the pool has no call waiting; while one works
    for a pool it is named ``{prefix}-{n}``, n its place in the pool (the lowest free one).
    """

    def __init__(
        self,
        limit: int = TOOL_THREADS,
        prefix: str = "vlrun-tool",
        park: ThreadPark | None = None,
    ) -> None:
        self.limit = limit
        self.prefix = prefix
        self._park = park if park is not None else PARK
        self._lock = self._park._lock  # one lock: a worker leaves its pool and parks at once
        self._queue: collections.deque[_Job] = collections.deque()
        self._workers = 0
        self._returning = 0  # workers that delivered a result and are on their way back
        self._places: set[int] = set()  # the workers' places, 1 to limit: their names
        self._running: dict[int, str] = {}  # thread ident -> tool name

    def submit(self, func: Callable[..., Any], kwargs: dict[str, Any], name: str = "") -> Any:
        """Run ``func(**kwargs)`` on a worker; returns an asyncio future of the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # contextvars travel with the call, as with asyncio.to_thread
        call = functools.partial(contextvars.copy_context().run, func, **kwargs)
        job = _Job(loop, future, call, name or getattr(func, "__name__", "?"))
        thread = None
        with self._lock:
            self._queue.append(job)
            # A worker that has just delivered a result counts as free: the next call, often
            # submitted the moment that result arrives, must not borrow a thread of its own.
            if len(self._queue) > self._returning and self._workers < self.limit:
                self._workers += 1
                place = 1
                while place in self._places:
                    place += 1
                self._places.add(place)
                thread = self._park._lend(self, place)
        if thread is not None:
            try:
                thread.start()
            except RuntimeError:  # the OS has no thread to give: the call fails now
                with self._lock:
                    self._workers -= 1
                    self._places.discard(place)
                    self._park._unstarted()
                    try:
                        self._queue.remove(job)
                    except ValueError:  # another worker of this pool has taken it
                        return future
                raise
        return future

    def running(self) -> list[str]:
        """Names of the tools whose calls are running on a thread right now."""
        with self._lock:
            return sorted(self._running.values())

    def _serve(self, place: int) -> None:
        """Run this pool's calls on the calling thread until none waits, then give up the
        worker's place. Called with the park's lock held, which it holds again on return."""
        lock = self._lock
        ident = threading.get_ident()
        try:
            while self._queue:
                job = self._queue.popleft()
                if job.future.cancelled():  # its deadline passed while it waited for a thread
                    continue
                self._running[ident] = job.name
                lock.release()
                value, error, answered = None, None, False
                try:
                    value, answered = job.call(), True
                # a tool's sys.exit() or KeyboardInterrupt is its own failure: the loop says so
                except (Exception, SystemExit, KeyboardInterrupt) as exc:
                    error, answered = exc, True
                finally:
                    lock.acquire()
                    self._running.pop(ident, None)
                    if not answered:  # anything else ends this thread; the call still ends
                        _hand_over(job, None, RuntimeError("the tool's thread was ended"))
                self._returning += 1
                lock.release()
                try:
                    _hand_over(job, value, error)
                finally:
                    lock.acquire()
                    self._returning -= 1
        finally:
            self._workers -= 1
            self._places.discard(place)


@dataclasses.dataclass
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    call: Callable[[], Any]
    name: str


def _hand_over(job: _Job, value: Any, error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
        job.loop.call_soon_threadsafe(_deliver, job.future, value, error)


def _deliver(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled: the call timed out or was interrupted
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


PARK = ThreadPark()
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
