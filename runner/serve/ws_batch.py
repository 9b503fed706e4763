"""A media socket's outbound messages, written to the TCP transport in one write per service.

Each WebSocket message aiohttp sends is its own ``transport.write``: one system call, which on
a busy worker costs more than building the message (a profile of 60 calls: 42 µs a write
against 3 µs for the rest of a frame's path). The media clock serves a call a few frames at a
time, so its frames and marks are framed here (RFC 6455 server frames: unmasked, no
extension, as aiohttp frames them with ``compress=False``) and written together when the
clock's service of that call ends (:meth:`flush`): one write per refill instead of one per
message. Whole frames only, so aiohttp's own control frames (ping, pong, close) written in
between never split one.
"""

from __future__ import annotations

from typing import Any

from runner.speedups import text_frame


class BatchedSocket:
    """The outbound side of one server WebSocket whose messages the media clock batches."""

    __slots__ = ("_out", "backlog_bytes", "transport", "ws")

    def __init__(self, ws: Any, transport: Any, backlog_bytes: int) -> None:
        self.ws = ws
        self.transport = transport  # the request's asyncio transport
        self.backlog_bytes = backlog_bytes
        self._out: list[bytes] = []

    def add(self, payload: bytes) -> None:
        self._out.append(text_frame(payload))

    def writable(self) -> bool:
        """The socket takes more without waiting: its peer is reading (no backlog)."""
        return self.transport.get_write_buffer_size() < self.backlog_bytes

    def flush(self) -> None:
        """Write what was added, in one write (ConnectionResetError once the socket closes)."""
        out = self._out
        if not out:
            return
        self._out = []
        if self.ws.closed or self.transport.is_closing():
            raise ConnectionResetError("the media socket is closing")
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
