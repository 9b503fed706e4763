"""The way out of one emulated connection, and the tasks it owns.

:class:`Outbox` is the only writer to the socket: every server event goes through
:meth:`Outbox.send`, where faults apply and the event is recorded for tests. :class:`Tasks`
owns what a connection runs in the background (responses, transcripts, timers) and reaps it
when the connection ends. Both are handed to each part of the connection
(``runner/emulator/connection.py``) through its constructor.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from runner import speedups
from runner.aio import cancel_and_wait
from runner.emulator import protocol as P
from runner.emulator.faults import Faults
from runner.emulator.fidelity import Fidelity
from runner.emulator.record import SessionRecord

log = logging.getLogger(__name__)

#: a client socket is pinged this often; no pong within half of it closes it (a client that
#: vanished without a close ends its session then, not at the session limit)
HEARTBEAT_S = 30.0
#: how long :meth:`Tasks.close` waits for its cancelled tasks (one that ignores its cancel is
#: left, and said, rather than holding the connection's end for ever)
CLOSE_TIMEOUT_S = 5.0
#: the events that carry output audio: not kept when the record keeps no audio
AUDIO_OUT = frozenset({"response.audio.delta", "session.output_audio.delta"})
#: held events are written in one write while the client's socket has less than this queued;
#: past it, each goes through aiohttp's send, whose flow control waits for the client
BACKLOG_BYTES = 64 * 1024


class Outbox:
    """Sends server events on one socket, in order, with the connection's faults applied."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        record: SessionRecord,
        *,
        faults: Faults | None,
        record_audio: bool,
        fidelity: Fidelity,
        abort: Callable[[], None],
        load: bool = False,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.ws, self.record = ws, record
        #: benchmark load mode (``vlrun emulate --load``): no event history is kept for tests
        #: (``Emulator.wait_for`` sees nothing), and replies reuse their encoded audio
        self.load = load
        # the faults for this connection (None when they do not apply to its number)
        self.faults = faults if faults is not None and faults.applies_to(record.number) else None
        self._record_audio = record_audio
        self._fidelity = fidelity
        self._abort = abort  # cuts the TCP link without a close frame
        self._lock = asyncio.Lock()
        self._sent_count = 0
        self._dropped = False
        # the socket's TCP transport, for held events' single write (None: each is its own)
        # (duck-typed: uvloop's transports are no asyncio.WriteTransport subclass)
        writes = all(hasattr(transport, a) for a in ("write", "get_write_buffer_size"))
        self._transport: Any = transport if writes else None
        self._held: list[str] | None = None  # events sent since hold(), for flush()

    @property
    def dropped(self) -> bool:
        """The 'connection lost' fault has fired: nothing more goes out."""
        return self._dropped

    def note(self, key: str) -> None:
        """Note an assumption (runner/emulator/fidelity.py): once per session, once per run."""
        if key not in self.record.fidelity:
            self.record.fidelity.append(key)
            self._fidelity.note(key)

    async def send(self, event: dict[str, Any]) -> None:
        if self._dropped or self.ws.closed:
            return
        event.setdefault("event_id", P.new_id("event"))
        await self._send(event["type"], event, None)

    async def send_text(self, kind: str, text: str) -> None:
        """An event of type ``kind`` already serialised, ``event_id`` last, exactly as
        :meth:`send` would serialise it (a reply's audio deltas: their constant head is built
        once per reply, tests/test_emulator_outbox_hold.py checks the bytes)."""
        if self._dropped or self.ws.closed:
            return
        await self._send(kind, None, text)

    async def _send(self, kind: str, event: dict[str, Any] | None, text: str | None) -> None:
        faults = self.faults
        async with self._lock:
            if (
                faults
                and faults.delay_ms
                and (not faults.delay_types or kind in faults.delay_types)
            ):
                await asyncio.sleep(faults.delay_ms / 1000)
            if self._dropped or self.ws.closed:
                return
            if text is None:  # serialised now, after any delay: what the client gets then
                text = speedups.dumps(event)
            if self._held is not None:
                self._held.append(text)  # written by flush(), in the order sent
            else:
                try:
                    await self.ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    return
            # a snapshot: items are mutated later (status, transcript) and tests read history
            if self.load or (kind in AUDIO_OUT and not self._record_audio):
                pass
            elif self._record_audio or event is None:
                self.record.sent.append(json.loads(text))
            else:
                self.record.sent.append(event)
            self._sent_count += 1
            if faults is None:
                return
            if (
                faults.error_after_events is not None
                and self._sent_count == faults.error_after_events
            ):
                err = P.error_event(faults.error_code, faults.error_message, kind="server_error")
                await self.ws.send_str(json.dumps(err))
                self.record.sent.append(err)
            if (
                faults.drop_after_events is not None
                and self._sent_count >= faults.drop_after_events
            ):
                await self.drop()

    def hold(self) -> bool:
        """Hold the events sent from now on for :meth:`flush`, which writes them in one write.

        Each WebSocket message aiohttp sends is a write of its own (a system call, the largest
        single cost of a paced reply); events that go out at the same moment (an audio chunk
        and its transcript delta) need only one. The bytes and their order on the wire are the
        same. The holder must flush before it waits on anything but a send (a hold spans no
        time; :meth:`held` is the usual way). Nothing is held when faults apply (an injected
        delay or error is per event), without the transport, when the client negotiated
        compression (aiohttp compresses each message, and may do so off the loop) or is behind
        (aiohttp's flow control then waits for it at each send); False then, and each event
        goes out as it is sent.
        """
        if (
            self._transport is None
            or self.faults is not None
            or self._held is not None
            or self.ws.compress
            or self._transport.get_write_buffer_size() >= BACKLOG_BYTES
        ):
            return False
        self._held = []
        return True

    def held(self) -> Held:
        """``async with outbox.held():`` around sends that go out at one moment (nothing inside
        waits but a send): :meth:`hold` before, :meth:`flush` after, also on an error."""
        return Held(self)

    async def flush(self) -> None:
        """Write what was held since :meth:`hold`, in one write when the client keeps up."""
        held, self._held = self._held, None
        if not held or self._dropped or self.ws.closed:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() < BACKLOG_BYTES:
            transport.write(b"".join([speedups.text_frame(text.encode()) for text in held]))
            return
        async with self._lock:  # a client behind: aiohttp's flow control waits for it
            for text in held:
                try:
                    await self.ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    return

    async def error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        client_event: dict[str, Any] | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        # an error event leaves the socket open: source: docs/emulator.md#errors-keep-open
        event_id = client_event.get("event_id") if isinstance(client_event, dict) else None
        await self.send(
            P.error_event(code, message, param=param, client_event_id=event_id, kind=kind)
        )

    async def drop(self) -> None:
        """The fault 'connection lost': a close frame with the given code, or a cut socket."""
        if self._dropped:
            return
        self._dropped = True
        code = self.faults.close_code if self.faults else None
        if code is not None:
            await self.ws.close(code=code, message=b"emulator fault")
        else:
            self._abort()

    async def close_after_failure(self) -> None:
        """A failed response ends the connection. source: docs/emulator.md#failed-close

        Reported (a real agent session closed after its failed response.done); the close code
        is not documented, so 1011 (server error) is an assumption and says so.
        """
        self.note("failed-close")
        if not self.ws.closed:
            self.record.close_code = 1011
            await self.ws.close(code=1011, message=b"response failed")


class Held:
    """The context of :meth:`Outbox.held`."""

    __slots__ = ("_on", "_outbox")

    def __init__(self, outbox: Outbox) -> None:
        self._outbox, self._on = outbox, False

    async def __aenter__(self) -> None:
        self._on = self._outbox.hold()

    async def __aexit__(self, *exc: object) -> None:
        if self._on:
            await self._outbox.flush()


class Tasks:
    """The background tasks of one connection; :meth:`close` cancels and awaits them all.

    Responses (and MCP listings, which a response asked for meanwhile waits for) run one after
    another: :meth:`chain` starts the next one with the task it must wait for.
    """

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()
        self._last: asyncio.Task[None] | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # said when it happens: a background part that died (a GPT-Live ticker, a
            # delegation's wait) would otherwise leave the session silent with no trace
            log.error("an emulator task failed: %r", task.exception())

    def chain(
        self, make: Callable[[asyncio.Task[None] | None], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[None]:
        """Start ``make(previous)``, where ``previous`` is the chained task started last."""
        previous = self._last
        task: asyncio.Task[None] = self.spawn(make(previous))
        self._last = task
        return task

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        # Owned, so awaited: a reply cancelled mid-speech reaps its espeak-ng run before
        # the connection is gone (otherwise its pipes outlive the event loop); within a bound.
        stuck = await cancel_and_wait(list(self._running), timeout=timeout)
        if stuck:
            log.warning("%d emulator task(s) did not end when cancelled", len(stuck))
