"""The benchmark's simulated callers (bench/bench_calls.py on bench/fast_caller.py).

Their WebSocket client is the benchmark's own, so it is checked here against hand-made RFC 6455
frames (a masked frame unmasked independently, fragments, ping, close) on a real loopback
socket, and a caller goes one conversation round (question, barge-in, answer, hang-up) through
the phone worker and the emulator: what the benchmark measures must still be measured.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import re
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.bench_calls import TOKEN, BenchCaller, one_call, tick_stop, ticker
from bench.fast_caller import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    HandshakeError,
    Masker,
    ProtocolError,
    client_frame,
)
from bench.fast_caller import connect as fast_connect
from runner.serve.codec_twilio import StreamEncoder
from tests.phone_callers import FRAME_MS, mulaw_tone
from tests.telephony_helpers import metric, phone_server, write_serve

pytest.importorskip("twilio")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ------------------------------------------------------------------ frames, by hand


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server frame, laid out by hand (RFC 6455 section 5.2)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([first, n]) + payload
    if n < 65536:
        return bytes([first, 126]) + n.to_bytes(2, "big") + payload
    return bytes([first, 127]) + n.to_bytes(8, "big") + payload


def read_client_frame(frame: bytes) -> tuple[bool, int, bytes]:
    """(fin, opcode, payload) of one masked client frame, unmasked byte by byte."""
    assert frame[1] & 0x80, "a client frame must be masked"
    n, at = frame[1] & 0x7F, 2
    if n == 126:
        n, at = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, at = int.from_bytes(frame[2:10], "big"), 10
    key, body = frame[at : at + 4], frame[at + 4 :]
    assert len(body) == n
    return bool(frame[0] & 0x80), frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


def test_a_masked_text_frame_is_the_rfc_example() -> None:
    """RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d."""
    frame = client_frame(b"Hello", Masker(bytes.fromhex("37fa213d")))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 371, 65535, 65536, 70001])
def test_masked_frames_round_trip_at_every_length_encoding(size: int) -> None:
    payload = bytes(random.Random(size).randrange(256) for _ in range(size))
    masker = Masker()
    fin, opcode, body = read_client_frame(client_frame(payload, masker, OP_BINARY))
    assert (fin, opcode, body) == (True, OP_BINARY, payload)
    if size >= 4:  # masked on the wire, not sent as is
        assert client_frame(payload, masker)[-size:] != payload


def parsed(*chunks: bytes) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    messages: list[tuple[int, bytes]] = []
    controls: list[tuple[int, bytes]] = []
    parser = FrameParser(
        lambda op, p: messages.append((op, p)), lambda op, p: controls.append((op, p))
    )
    for chunk in chunks:
        parser.feed(chunk)
    return messages, controls


def test_the_parser_joins_fragments_around_a_ping_even_a_byte_at_a_time() -> None:
    wire = (
        bytes.fromhex("810548656c6c6f")  # RFC 5.7: a single-frame unmasked "Hello"
        + bytes.fromhex("010348656c")  # "Hel", not final
        + server_frame(OP_PING, b"are you there")  # a control frame between fragments
        + bytes.fromhex("80026c6f")  # "lo", final continuation
        + server_frame(OP_BINARY, bytes(256))  # RFC 5.7: 256 bytes, 16-bit length
        + server_frame(OP_BINARY, bytes(65536))  # 64-bit length
    )
    whole = parsed(wire)
    assert whole == parsed(*(wire[i : i + 1] for i in range(len(wire))))
    messages, controls = whole
    assert messages == [
        (OP_TEXT, b"Hello"),
        (OP_TEXT, b"Hello"),
        (OP_BINARY, bytes(256)),
        (OP_BINARY, bytes(65536)),
    ]
    assert controls == [(OP_PING, b"are you there")]


@pytest.mark.parametrize(
    "wire",
    [
        client_frame(b"masked", Masker(b"\x01\x02\x03\x04")),  # a server must not mask
        server_frame(0x0, b"lo"),  # a continuation of nothing
        server_frame(OP_PING, b"x", fin=False),  # a fragmented control frame
        server_frame(OP_TEXT, b"a", fin=False) + server_frame(OP_TEXT, b"b"),  # interleaved
        bytes([0x81, 127]) + (2**21).to_bytes(8, "big"),  # past the message bound
    ],
    ids=["masked", "lone-continuation", "fragmented-control", "interleaved", "too-large"],
)
def test_the_parser_refuses_what_a_server_must_not_send(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parsed(wire)


# ------------------------------------------------------------------ a hand-made server


def accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


class RawPeer:
    """The server's end of one accepted connection: hand-made frames in, client frames out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def frame(self) -> tuple[bool, int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(2), 5)
        n = head[1] & 0x7F
        extra = {126: 2, 127: 8}.get(n, 0)
        rest = await self.reader.readexactly(extra + 4)
        if extra:
            n = int.from_bytes(rest[:extra], "big")
        body = await asyncio.wait_for(self.reader.readexactly(n), 5)
        return read_client_frame(head + rest + body)

    async def body(self) -> bytes:
        fin, opcode, body = await self.frame()
        assert fin and opcode == OP_TEXT, (fin, opcode, body)
        return body

    async def text(self) -> Any:
        return json.loads(await self.body())

    def send(self, data: bytes) -> None:
        self.writer.write(data)


Started = Callable[..., Awaitable[tuple[str, "asyncio.Queue[RawPeer]"]]]


@contextlib.asynccontextmanager
async def raw_servers() -> AsyncIterator[Started]:
    """Start servers; it answers the handshake by hand (or with ``refuse``'s bytes) and
    hands each connection over as a :class:`RawPeer`."""
    servers: list[asyncio.Server] = []

    async def start(refuse: bytes | None = None) -> tuple[str, asyncio.Queue[RawPeer]]:
        peers: asyncio.Queue[RawPeer] = asyncio.Queue(1)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"Sec-WebSocket-Key: (\S+)", head)
            assert found and b"Sec-WebSocket-Version: 13" in head
            assert b"X-Test: yes" in head  # the caller's own headers go along
            writer.write(
                refuse
                or b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept(found.group(1))
                + b"\r\n\r\n"
            )
            await peers.put(RawPeer(reader, writer))

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/twilio/media?x=1", peers

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


LOOPS = ["asyncio", "uvloop"]  # the benchmark runs on uvloop where it is installed


def on_loop(loop: str, check: Callable[[Started], Awaitable[None]]) -> None:
    """Run ``check`` with a hand-made server on this event loop."""

    async def main() -> None:
        async with raw_servers() as start:
            await check(start)

    if loop == "uvloop":
        pytest.importorskip("uvloop").run(main())
    else:
        asyncio.run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_the_socket_answers_pings_joins_fragments_and_answers_a_close(loop: str) -> None:
    on_loop(loop, socket_round)


async def socket_round(raw_server: Started) -> None:
    url, peers = await raw_server()
    got: list[bytes] = []
    arrived = asyncio.Event()

    def on_text(message: bytes) -> None:
        got.append(message)
        arrived.set()

    sock = await fast_connect(url, {"X-Test": "yes"}, on_text)
    peer = await asyncio.wait_for(peers.get(), 5)
    peer.send(
        server_frame(OP_TEXT, b'{"event":', fin=False)
        + server_frame(OP_PING, b"ping-1")
        + server_frame(0x0, b'"clear"}')
    )
    assert await peer.frame() == (True, OP_PONG, b"ping-1")  # answered, as Twilio does
    await asyncio.wait_for(arrived.wait(), 5)
    assert got == [b'{"event":"clear"}']  # one message, once whole
    assert sock.write(b"hi")
    assert await peer.frame() == (True, OP_TEXT, b"hi")
    peer.send(server_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
    assert await peer.frame() == (True, OP_CLOSE, struct.pack("!H", 1000))  # answered
    await asyncio.wait_for(sock.closed.wait(), 5)
    assert sock.close_code == 1000
    assert not sock.write(b"after the close")  # nothing is sent on a closed socket
    peer.writer.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_refused_handshake_says_its_status(loop: str) -> None:
    on_loop(loop, refused)


async def refused(raw_server: Started) -> None:
    url, _ = await raw_server(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(HandshakeError) as err:
        await fast_connect(url, {"X-Test": "yes"}, lambda b: None)
    assert err.value.status == 403
    url, _ = await raw_server(
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: wrong\r\n\r\n"
    )
    with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
        await fast_connect(url, {"X-Test": "yes"}, lambda b: None)


@pytest.mark.parametrize("loop", LOOPS)
def test_the_caller_sends_twilios_messages_and_hears_media_marks_and_clear(loop: str) -> None:
    on_loop(loop, caller_round)


async def caller_round(raw_server: Started) -> None:
    """The media message of a tick, the mark echo and what is heard, against a hand-made
    server: the worker's compact media (the sliced path) and spaced JSON (the parsed path)
    are heard alike; a clear answers the pending mark at once."""
    url, peers = await raw_server()
    caller = BenchCaller()
    await caller.connect(url, {"route": "r"}, headers={"X-Test": "yes"})
    peer = await asyncio.wait_for(peers.get(), 5)
    try:
        assert (await peer.text())["event"] == "connected"
        start = await peer.text()
        assert start["event"] == "start" and start["start"]["customParameters"] == {"route": "r"}
        speech = mulaw_tone(20)
        caller.frames_sent = 6
        assert caller.tick(speech)
        start_seq = int(start["sequenceNumber"]) + 1
        sent = {
            "event": "media",
            "sequenceNumber": str(start_seq),
            "streamSid": caller.stream_sid,
            "media": {
                "track": "inbound",
                "chunk": "7",
                "timestamp": str(7 * FRAME_MS),
                "payload": base64.b64encode(speech).decode(),
            },
        }  # Twilio's media message, byte for byte what the aiohttp caller sent
        assert await peer.body() == json.dumps(sent, separators=(",", ":")).encode()
        one, two = bytes(range(256)) * 10, bytes(range(80, 240)) * 50  # 1.3 s to play
        peer.send(server_frame(OP_TEXT, StreamEncoder(caller.stream_sid).media_bytes(one)))
        media = {"payload": base64.b64encode(two).decode()}
        spaced = {"event": "media", "streamSid": caller.stream_sid, "media": media}
        peer.send(server_frame(OP_TEXT, json.dumps(spaced).encode()))
        name = 'm"1\u00e9'  # escaped in JSON both ways
        peer.send(server_frame(OP_TEXT, StreamEncoder(caller.stream_sid).mark(name).encode()))
        await caller.ear.until_heard(1, timeout=5)  # the first frame arrived
        await asyncio.wait_for(caller.got("mark"), 5)
        assert bytes(caller.ear.received) == one + two
        assert caller.media_parsed_as_json == 1  # the spaced one; the compact one was sliced
        assert caller.marks_echoed == []  # its audio is still playing
        peer.send(server_frame(OP_TEXT, StreamEncoder(caller.stream_sid).clear().encode()))
        echo = await peer.body()  # at the clear, not when the audio would have played
        echoed = {
            "event": "mark",
            "sequenceNumber": str(start_seq + 1),
            "streamSid": caller.stream_sid,
            "mark": {"name": name},
        }
        assert echo == json.dumps(echoed).encode()  # what TwilioCaller._echo sends
        assert caller.clears == 1 and caller.marks_echoed == [name]
        assert caller.spurt_start is None  # the next audio starts a new talk spurt
        # Not cleared, a mark is echoed once the audio before it has played, not before.
        peer.send(server_frame(OP_TEXT, StreamEncoder(caller.stream_sid).media_bytes(two)))
        peer.send(server_frame(OP_TEXT, StreamEncoder(caller.stream_sid).mark("m2").encode()))
        assert (await peer.text())["mark"] == {"name": "m2"}
        assert time.monotonic() >= caller.ear.play_end
        assert caller.marks_echoed == [name, "m2"]
    finally:
        peer.writer.close()
        await caller.close()


# ------------------------------------------------------------------ through the worker

SCRIPT = """\
description: one bench round
turns:
  - turn: 1
    transcript: What time is it in Tokyo?
    say: >-
      In Tokyo it is nine in the evening. Tokyo is nine hours ahead of universal time, and it
      is a lovely time of year to visit the city, with its gardens and markets and its food.
  - turn: 2
    transcript: Thanks, that is enough.
    say: You are welcome. Ask me again any time.
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_a_bench_caller_goes_a_round_through_the_worker(tmp_path: Path, loop: str) -> None:
    """One round of the benchmark's conversation through the phone worker and the emulator:
    the reply heard, the barge-in cleared (marks echoed, so the truncation is where the
    caller had heard to), the short answer heard, the hang-up; the worker's media messages
    took the sliced path."""
    on_loop(loop, lambda _: round_through_the_worker(tmp_path))


async def round_through_the_worker(tmp_path: Path) -> None:
    from runner.emulator import running_emulator

    (tmp_path / "script.yaml").write_text(SCRIPT)
    serve = write_serve(tmp_path)
    async with (
        running_emulator(speed=0, use_espeak=False, scenario=tmp_path / "script.yaml") as emu,
        phone_server(serve, emu.endpoint, env={"TEST_TWILIO_TOKEN": TOKEN}) as (base, phones),
    ):
        caller = BenchCaller()
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker([caller], asyncio.Event()))
        call = asyncio.create_task(one_call(base, caller, random.Random(3), stop))
        try:
            await asyncio.wait_for(caller.round_done.wait(), 40)
            stop.set()
            await asyncio.wait_for(caller.done.wait(), 20)
        finally:
            await tick_stop(tick, [caller])
            await caller.close()
            await asyncio.gather(call, return_exceptions=True)
        assert caller.error is None, caller.error
        assert caller.rounds == 1
        heard_ms = len(caller.ear.received) / 8
        assert heard_ms >= 2500  # 1500 ms into the reply, then 1000 ms of the answer
        assert caller.turn_latency and caller.lateness  # what the benchmark reports
        assert caller.frames_sent > 50  # the ticker's microphone
        assert caller.clears == 1 and caller.marks_echoed
        assert caller.media_parsed_as_json == 0
        truncate = await emu.wait_for(lambda e: e["type"] == "conversation.item.truncate", 5)
        # the played position came from the echoed marks: more than nothing, not past the ear
        assert 300 <= truncate["audio_end_ms"] <= heard_ms
        assert metric(phones, "vlrun_barge_ins_total", edge="twilio") == 1
        await asyncio.wait_for(phones.idle(), 10)
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="caller_hung_up") == 1
        assert caller.closed.is_set() and caller.close_code == 1000
