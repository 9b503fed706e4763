"""The servers' hot paths on faster parts where they are installed (the ``serve`` extra).

- :func:`run`: an asyncio main on uvloop, whose event loop and sockets cost a fraction of the
  standard loop's per message (``VLRUN_LOOP=asyncio`` keeps the standard one, as does a
  platform uvloop does not support).
- :func:`loads` / :func:`dumps`: JSON to and from a socket through orjson, about three times
  faster than ``json`` on the small frames phone edges carry 50 times a second. Its errors
  are ``ValueError`` / ``TypeError`` too; it is stricter (no ``NaN``), as JSON is.

- :func:`text_frame`: a server's WebSocket text frame built as bytes, so several can go out in
  one socket write (the worker's media clock and the emulator's held events).

- :func:`settle_heap` / :func:`settled_heap`: once a server is up, what start-up built
  (modules, compiled profiles, schemas) leaves the garbage collector's view (a full
  collection otherwise walks all of it, 90 ms at a time in a worker with 100 calls), and the
  collector's generations are set so that no collection pauses every call for long.

- :class:`GcPauses`: times each collection. A collection stops the event loop and every
  call on it, and its pause grows with the calls' objects (a worker with 300 calls: about 100
  ms for a young-and-middle collection, 90 ms for a full one, 170-270 ms as the 300 calls
  ended); ``vlrun serve`` shows them in
  ``vlrun_gc_pause_seconds``, so a lag in ``vlrun_event_loop_lag_seconds`` can be told apart.

Without the extra both fall back to the standard library, with the same behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from runner.aio import cancel_and_wait

T = TypeVar("T")

loads: Callable[[str | bytes | bytearray], Any] = json.loads

_TEXT = 0x81  # FIN + text opcode


def text_frame(payload: bytes) -> bytes:
    """``payload`` (UTF-8) as one unmasked WebSocket text frame (RFC 6455, a server's, byte
    for byte what aiohttp writes without compression)."""
    n = len(payload)
    if n < 126:
        return bytes((_TEXT, n)) + payload
    if n < 65536:
        return bytes((_TEXT, 126)) + n.to_bytes(2, "big") + payload
    return bytes((_TEXT, 127)) + n.to_bytes(8, "big") + payload


def dumps(value: Any) -> str:
    """Compact JSON text (what a server sends in a WebSocket text frame)."""
    return json.dumps(value, separators=(",", ":"))


try:
    import orjson

    loads = orjson.loads

    def dumps(value: Any) -> str:  # noqa: F811 - the fast one where it is installed
        return orjson.dumps(value).decode()

except ImportError:  # pragma: no cover - the serve extra brings it
    pass


def loop_name() -> str:
    """Which event loop :func:`run` uses here: ``uvloop`` or ``asyncio``."""
    if os.environ.get("VLRUN_LOOP", "").strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when :func:`loop_name` says so."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def settle_heap() -> None:
    """Collect once, then freeze what is left: it is never scanned again (start-up state).

    Then the collector's generations are set so that no collection stops every call for long
    (each is a pause of the whole event loop, and its length grows with what it walks):
    - the young generation is larger: a server's short-lived objects (frames, futures) die by
      reference count before a collection can promote them;
    - a middle collection comes after every :data:`MIDDLE_THRESHOLD` young ones, so it walks
      what two young collections promoted, not ten (CPython's default). At 300 calls, ten made
      a 97-114 ms pause, long enough for callers to hear gaps;
    - no full collection comes by CPython's own rule (which walks every call's objects, 90 ms
      with 300 calls up and 170-270 ms as they ended, whenever promotions have grown the old
      generation by a quarter):
      :func:`settled_heap` runs one every :data:`FULL_COLLECTION_S` instead, which bounds the
      cyclic garbage held.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, _NO_AUTOMATIC_FULL)


YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)
MIDDLE_THRESHOLD = 2  # young collections between middle ones (CPython's default: 10)
FULL_COLLECTION_S = 300.0  # a full collection this often (settled_heap's timer)
_NO_AUTOMATIC_FULL = 1 << 30  # middle collections before CPython would consider a full one
CLOSE_TIMEOUT_S = 5.0  # how long leaving settled_heap waits for its timer's task to end


@contextlib.asynccontextmanager
async def settled_heap(full_every_s: float = FULL_COLLECTION_S) -> AsyncIterator[None]:
    """:func:`settle_heap`, and a full collection every ``full_every_s`` while the block runs
    (the timer's task is owned here: cancelled and awaited on the way out)."""
    settle_heap()
    task = asyncio.get_running_loop().create_task(
        _collect_fully_every(full_every_s), name="vlrun-full-collection"
    )
    try:
        yield
    finally:
        await cancel_and_wait(task, timeout=CLOSE_TIMEOUT_S)


async def _collect_fully_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        gc.collect()


class GcPauses:
    """Calls ``observe(generation, seconds)`` after each garbage collection, with its pause.

    Process-wide (the collector is); :meth:`start` and :meth:`stop` add and remove its
    callback, and more than one can run (two servers in one process, as in tests). The
    observer runs inside the collection, so it must be quick; its failure is swallowed (a
    metrics sink must not break the collector).
    """

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self.observe = observe
        self.worst_s = 0.0
        self._began: float | None = None

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        began, self._began = self._began, None
        if began is None:  # started between a collection's start and its stop
            return
        pause = time.perf_counter() - began
        self.worst_s = max(self.worst_s, pause)
        with contextlib.suppress(Exception):  # a sink's bug must not reach the collector
            self.observe(info["generation"], pause)
