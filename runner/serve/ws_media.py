"""A media socket whose media messages reach the edge where aiohttp parses them, not via a task.

aiohttp parses a WebSocket's frames in C and queues each message for the task awaiting
``receive()``: a future resolved, a pass of the event loop and a step of that task per message.
A phone edge gets 50 media messages a second per call, and that hand-off cost more than the
rest of a frame's path (a profile of a worker at 250 calls: a fifth of its event loop's time
in the queue, ``receive()`` and the edge's read loop). A :class:`MediaSocket` hands each text
message first to :attr:`MediaSocket.on_text`, the edge's own synchronous taker, as the parser
produces it; what the taker leaves (marks, stop, anything malformed) and every other frame
(binary, ping, close, errors) goes through ``receive()`` as before. A message is offered to the
taker only while nothing is waiting in the queue, so the edge handles the messages in the
order the provider sent them.

This leans on aiohttp building the queue in ``WebSocketResponse._post_start`` by the module's
name ``WebSocketDataQueue``. If a release changes that, :attr:`MediaSocket.fast` stays False
and every message goes through ``receive()``: slower, never wrong
(``tests/test_ws_media.py`` checks the fast path is on with the aiohttp installed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web, web_ws
from aiohttp._websocket.reader import WebSocketDataQueue

log = logging.getLogger("vlrun.serve.ws_media")

#: The edge's taker: True when it handled the text message (which then never reaches
#: ``receive()``), False to leave it to the read loop. It must not raise.
Taker = Callable[[str], bool]


class _Queue(WebSocketDataQueue):  # type: ignore[misc]
    """aiohttp's message queue, with the owner's taker in front of it."""

    def __init__(self, protocol: Any, limit: int, *, loop: Any, owner: MediaSocket) -> None:
        super().__init__(protocol, limit, loop=loop)
        self.owner = owner
        self.waiting = 0  # messages queued and not yet read: while any is, nothing jumps them

    def feed_data(self, data: Any, size: int) -> None:  # called by the parser, message by message
        take = self.owner.on_text
        if take is not None and not self.waiting and data.type == WSMsgType.TEXT:
            try:
                if take(data.data):
                    self.owner.taken += 1
                    return
            except Exception:  # a taker's bug: that socket goes back to the plain path
                log.exception("media socket: the fast path failed; reading through receive()")
                self.owner.on_text = None
        self.waiting += 1
        super().feed_data(data, size)

    async def read(self) -> Any:
        message = await super().read()
        self.waiting -= 1
        return message


def taker(parse: Callable[[str], Any], media: type, on_media: Callable[[Any], None]) -> Taker:
    """The usual taker: a provider's codec ``parse``, the event type of its media, and what to
    do with one; any other event (or a malformed message) is left to the read loop."""

    def take(raw: str) -> bool:
        event = parse(raw)
        if type(event) is not media:
            return False
        on_media(event)
        return True

    return take


#: aiohttp's own queue class, as imported by its WebSocket response module.
_AIOHTTP_QUEUE = web_ws.WebSocketDataQueue
#: The media socket being started on this thread (another thread's aiohttp server, such as an
#: embedded emulator's, never gets a queue of ours while the name is swapped).
_starting = threading.local()


def _queue(protocol: Any, limit: int, *, loop: Any) -> Any:
    owner = getattr(_starting, "socket", None)
    if owner is None:
        return _AIOHTTP_QUEUE(protocol, limit, loop=loop)
    return _Queue(protocol, limit, loop=loop, owner=owner)


class MediaSocket(web.WebSocketResponse):
    """A server WebSocket whose text messages go to :attr:`on_text` first (set it once the
    edge can take them; None: everything through ``receive()``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_text: Taker | None = None
        self.fast = False  # the taker is in front of aiohttp's queue
        self.taken = 0  # messages the taker handled

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        # aiohttp makes the queue here, by this module name: for this one synchronous call it
        # names a factory that makes ours for this socket, on this thread only
        _starting.socket = self
        web_ws.WebSocketDataQueue = _queue  # type: ignore[misc,assignment]
        try:
            super()._post_start(request, protocol, writer)
        finally:
            web_ws.WebSocketDataQueue = _AIOHTTP_QUEUE  # type: ignore[misc]
            _starting.socket = None
        self.fast = isinstance(getattr(self, "_reader", None), _Queue)
