"""The media socket's fast path: text messages taken where aiohttp parses them, in order."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runner.serve.ws_media import MediaSocket
from tests.helpers import serve_on_loopback


async def _serve(taker: Any, seen: list[str], sockets: list[MediaSocket]) -> Any:
    """A server whose media socket hands messages starting "m" to ``taker`` and records what
    its read loop gets, in one list with what the taker got."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = MediaSocket(max_msg_size=1 << 16)
        sockets.append(ws)
        await ws.prepare(request)
        ws.on_text = taker
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                seen.append("loop:" + msg.data)
                if msg.data == "end":
                    break
        await ws.close()
        return ws

    runner, port = await serve_on_loopback(handler, "/ws")
    return runner, f"http://127.0.0.1:{port}/ws"


@pytest.mark.parametrize("seed", range(4))
async def test_messages_taken_early_keep_the_order_they_were_sent_in(seed: int) -> None:
    rng = random.Random(seed)
    seen: list[str] = []
    sockets: list[MediaSocket] = []

    def take(text: str) -> bool:
        if not text.startswith("m"):
            return False
        seen.append("fast:" + text)
        return True

    runner, url = await _serve(take, seen, sockets)
    sent = [("m" if rng.random() < 0.8 else "x") + str(i) for i in range(400)]
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            i = 0
            while i < len(sent):
                burst = rng.randint(1, 8)  # several frames in one read, or one at a time
                for text in sent[i : i + burst]:
                    await ws.send_str(text)
                i += burst
                if rng.random() < 0.5:
                    await asyncio.sleep(0)  # let the server run between some bursts
            await ws.send_str("end")
            await asyncio.wait_for(ws.receive(), 10)  # the server's close
    finally:
        await runner.cleanup()
    assert [entry.split(":", 1)[1] for entry in seen] == [*sent, "end"]
    assert sockets[0].fast, "aiohttp no longer builds its queue where MediaSocket stands in"
    assert sockets[0].taken == sum(1 for entry in seen if entry.startswith("fast:"))
    assert sockets[0].taken > 0
    # what the taker leaves goes through receive(), and nothing jumps a message still queued
    assert all(entry.startswith("loop:") for entry in seen if entry.split(":", 1)[1][0] == "x")


async def test_a_taker_that_raises_leaves_every_message_to_the_read_loop() -> None:
    seen: list[str] = []
    sockets: list[MediaSocket] = []

    def take(text: str) -> bool:
        raise RuntimeError("a bug in the edge")

    runner, url = await _serve(take, seen, sockets)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            for text in ("m1", "m2", "m3", "end"):
                await ws.send_str(text)
            await asyncio.wait_for(ws.receive(), 10)
    finally:
        await runner.cleanup()
    assert seen == ["loop:m1", "loop:m2", "loop:m3", "loop:end"]
    assert sockets[0].on_text is None and sockets[0].taken == 0


async def test_without_a_taker_it_is_a_plain_websocket() -> None:
    seen: list[str] = []
    sockets: list[MediaSocket] = []
    runner, url = await _serve(None, seen, sockets)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            for text in ("m1", "x2", "end"):
                await ws.send_str(text)
            await asyncio.wait_for(ws.receive(), 10)
    finally:
        await runner.cleanup()
    assert seen == ["loop:m1", "loop:x2", "loop:end"]


def test_another_threads_socket_never_gets_a_queue_of_ours() -> None:
    """While a media socket starts on one thread, a WebSocket started by another thread's
    aiohttp server (an embedded emulator's) gets aiohttp's own queue."""
    import threading

    from runner.serve import ws_media

    class Protocol:
        _reading_paused = False

    loop = asyncio.new_event_loop()
    try:
        ws_media._starting.socket = MediaSocket()
        made: list[Any] = []
        other = threading.Thread(
            target=lambda: made.append(ws_media._queue(Protocol(), 16, loop=loop))
        )
        other.start()
        other.join(10)
        here = ws_media._queue(Protocol(), 16, loop=loop)
    finally:
        ws_media._starting.socket = None
        loop.close()
    assert type(made[0]) is ws_media._AIOHTTP_QUEUE
    assert isinstance(here, ws_media._Queue)
