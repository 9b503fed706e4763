"""A lean WebSocket client for the benchmark's simulated callers (RFC 6455, client side).

Hundreds of callers in one process each send a media message every 20 ms and receive as many.
Through aiohttp's client that cost a Python frame writer, a drain and a task wake-up per
message each way. Here a caller's socket is an :class:`asyncio.Protocol`:

- a frame is built as bytes in one go (:func:`client_frame`: header, mask key, masked payload)
  and written with one ``transport.write``; the mask key is fixed per connection (legal for a
  test client: the server unmasks every frame the same way) and the payload is masked as one
  integer XOR;
- received frames are parsed in ``data_received`` (:class:`FrameParser`) and each whole text
  message goes straight to a callback, with no queue and no task to wake; fragmented messages
  are joined, pings are answered with a pong (as Twilio does), a close is answered and ends
  the connection;
- the handshake is plain HTTP/1.1 on the same transport (the accept key is checked).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 2**20  # the callers' bound on one message (aiohttp's max_msg_size before)
MAX_HEAD = 2**16  # bound on the handshake's response head
HIGH_WATER = 2**16  # above this much unsent, a sender waits for the socket to drain


class ProtocolError(Exception):
    """The server broke RFC 6455 (a masked frame, a bad length, an unexpected opcode)."""


class Masker:
    """One connection's mask key, applied as an integer XOR (one C call per payload, not a
    Python loop per byte); the key repeated to each length seen is kept (a few lengths)."""

    __slots__ = ("key", "_ints")

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key if key is not None else os.urandom(4)
        if len(self.key) != 4:
            raise ValueError("a WebSocket mask key is 4 bytes")
        self._ints: dict[int, int] = {}

    def mask(self, payload: bytes) -> bytes:
        n = len(payload)
        if not n:
            return b""
        key = self._ints.get(n)
        if key is None:
            if len(self._ints) > 256:  # bounded: lengths vary with sequence digits only
                self._ints.clear()
            key = self._ints[n] = int.from_bytes((self.key * (n // 4 + 1))[:n], "little")
        return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def client_frame(payload: bytes, masker: Masker, opcode: int = OP_TEXT, fin: bool = True) -> bytes:
    """One masked client frame carrying ``payload`` (RFC 6455 section 5.2)."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + masker.key + masker.mask(payload)


def unmask(payload: bytes, key: bytes) -> bytes:
    """The payload of a masked frame (for tests and for reading a client's frames)."""
    return Masker(key).mask(payload)


class FrameParser:
    """Server frames from a byte stream: whole messages out, control frames to callbacks.

    ``on_message(opcode, payload)`` gets each whole text or binary message (fragments joined);
    ``on_control(opcode, payload)`` each ping, pong and close. Raises :class:`ProtocolError`
    on what a server must not send (a masked frame, a fragmented control frame, an oversized
    message, a continuation with nothing to continue).
    """

    __slots__ = (
        "_buf",
        "_frag",
        "_frag_op",
        "_frag_size",
        "max_message",
        "on_control",
        "on_message",
    )

    def __init__(
        self,
        on_message: Callable[[int, bytes], None],
        on_control: Callable[[int, bytes], None],
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.on_message, self.on_control = on_message, on_control
        self.max_message = max_message
        self._buf = b""
        self._frag: list[bytes] = []
        self._frag_op = 0
        self._frag_size = 0

    def busy(self) -> bool:
        """Part of a frame or of a fragmented message is held."""
        return bool(self._buf or self._frag)

    def feed(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        end = len(data)
        pos = 0
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            if second & 0x80:
                raise ProtocolError("a server frame was masked")
            if first & 0x70:
                raise ProtocolError("reserved bits set (no extension was negotiated)")
            n = second & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (data[pos + 2] << 8) | data[pos + 3]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = struct.unpack_from("!Q", data, pos + 2)[0]
                head = 10
            if n > self.max_message:
                raise ProtocolError(f"a frame of {n} bytes (bound {self.max_message})")
            if end - pos - head < n:
                break
            start = pos + head
            pos = start + n
            self._frame(first, data[start:pos])
        if pos < end:
            self._buf = data[pos:]
            if len(self._buf) > self.max_message + 14:
                raise ProtocolError("unparsed input past the message bound")

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        fin = first & 0x80
        if opcode >= 0x8:  # control frames: never fragmented, may sit between fragments
            if not fin or len(payload) > 125:
                raise ProtocolError("a fragmented or oversized control frame")
            self.on_control(opcode, payload)
        elif opcode == OP_CONT:
            if not self._frag:
                raise ProtocolError("a continuation frame with no message to continue")
            self._frag.append(payload)
            self._frag_size += len(payload)
            if self._frag_size > self.max_message:
                raise ProtocolError(f"a message past {self.max_message} bytes")
            if fin:
                whole = b"".join(self._frag)
                self._frag, self._frag_size = [], 0
                self.on_message(self._frag_op, whole)
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._frag:
                raise ProtocolError("a new message before the fragmented one ended")
            if fin:
                self.on_message(opcode, payload)
            else:
                self._frag, self._frag_op, self._frag_size = [payload], opcode, len(payload)
        else:
            raise ProtocolError(f"unknown opcode {opcode:#x}")


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


class HandshakeError(Exception):
    """The server did not switch protocols (its status is in ``status``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"WebSocket handshake refused: {status} {reason}")
        self.status = status


class ClientSocket(asyncio.Protocol):
    """One client WebSocket on an asyncio transport: sends are synchronous writes, each whole
    text message is handed to ``on_text`` as bytes from ``data_received``."""

    def __init__(self, on_text: Callable[[bytes], None], masker: Masker | None = None) -> None:
        self.on_text = on_text
        self.masker = masker or Masker()
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.paused = False
        self._resumed = asyncio.Event()
        self._head = b""
        self._key = ""
        self._close_sent = False
        self._open = False  # handshake done
        self.parser = FrameParser(self._message, self._control)

    # ------------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has a Transport's methods but is not its subclass
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # Most reads are one whole unfragmented text frame (a media message or a mark): it
        # goes straight out, the parser's state untouched (it has nothing buffered then).
        if self._open and data[0] == 0x81 and not self.parser.busy():
            n = data[1]
            if n == 126 and len(data) == 4 + ((data[2] << 8) | data[3]):
                self.on_text(data[4:])
                return
            if n < 126 and len(data) == 2 + n:
                self.on_text(data[2:])
                return
        try:
            if not self.handshake.done():
                data = self._handshake_data(data)
                if not data:
                    return
            self.parser.feed(data)
        except ProtocolError:
            self._fail(1002)
        except HandshakeError as exc:
            self._abort(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006  # closed with no close frame
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("connection lost during the handshake"))
        self.closed.set()
        self._resumed.set()

    def pause_writing(self) -> None:
        self.paused = True
        self._resumed.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self._resumed.set()

    # ------------------------------------------------------------------ handshake

    def request(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._key = base64.b64encode(os.urandom(16)).decode("ascii")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        assert self.transport is not None
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _handshake_data(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                raise HandshakeError(0, "response head too long")
            return b""
        head, rest = self._head[:end].decode("latin-1"), self._head[end + 4 :]
        self._head = b""
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 101:
            raise HandshakeError(status, parts[2] if len(parts) > 2 else "")
        fields = {}
        for line in lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("sec-websocket-accept") != accept_key(self._key):
            raise HandshakeError(status, "wrong Sec-WebSocket-Accept")
        self.handshake.set_result(None)
        self._open = True
        return rest

    def _abort(self, exc: Exception) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ frames

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            self.on_text(payload)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.write(payload, OP_PONG)  # the pong carries the ping's payload
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self._close_sent:  # answer it, then the connection ends
                self.write(payload[:2], OP_CLOSE)
                self._close_sent = True
            if self.transport is not None:
                self.transport.close()

    def _fail(self, code: int) -> None:
        self.close_code = code
        if not self._close_sent:
            self.write(struct.pack("!H", code), OP_CLOSE)
            self._close_sent = True
        if self.transport is not None:
            self.transport.close()

    def write(self, payload: bytes, opcode: int = OP_TEXT) -> bool:
        """Send one frame now; False if the connection is closing (nothing sent)."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._close_sent:
            return False
        transport.write(client_frame(payload, self.masker, opcode))
        return True

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until the transport's buffer is below its high-water mark."""
        if self.paused:
            await asyncio.wait_for(self._resumed.wait(), timeout)

    async def close(self, code: int = 1000, timeout: float = 10.0) -> None:
        """The closing handshake: send a close, wait (bounded) for the server's and the end."""
        if self.write(struct.pack("!H", code), OP_CLOSE):
            self._close_sent = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        if self.transport is not None and not self.closed.is_set():
            self.transport.abort()


async def connect(
    url: str,
    headers: dict[str, str],
    on_text: Callable[[bytes], None],
    timeout: float = 30.0,
    masker: Masker | None = None,
) -> ClientSocket:
    """Open a client WebSocket to ``url`` (``ws://`` only: the benchmark runs on loopback)."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"{url!r}: the benchmark's callers speak ws:// only")
    loop = asyncio.get_running_loop()
    port = parts.port or 80
    _, proto = await asyncio.wait_for(
        loop.create_connection(lambda: ClientSocket(on_text, masker), parts.hostname, port),
        timeout,
    )
    proto.request(url, headers)
    opened = False
    try:
        await asyncio.wait_for(proto.handshake, timeout)
        opened = True
    finally:
        if not opened and proto.transport is not None:  # refused, timed out or cancelled
            proto.transport.abort()
    return proto
