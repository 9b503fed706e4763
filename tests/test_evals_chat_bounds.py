"""The emulator's chat completions endpoint (callers' and judges' offline model) bounds what
it is sent: a body nested past what its checks walk is a 400 like any bad body (not a server
error), and a body that stops arriving is refused at the endpoint's deadline."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from runner.emulator import running_emulator
from runner.emulator.chat import ChatDesk
from runner.emulator.fidelity import Fidelity
from tests.loopback import on_loopback

WAIT_S = 10.0


async def test_a_body_nested_too_deeply_is_a_clear_400() -> None:
    deep = "[" * 100_000 + "]" * 100_000  # 200 kB, under the size bound
    bodies = [f'{{"model": "m", "messages": {deep}}}'.encode()]
    async with running_emulator(speed=0) as emu, aiohttp.ClientSession() as http:
        for body in bodies:
            headers = {"Content-Type": "application/json"}
            async with http.post(
                f"{emu.endpoint}/v1/chat/completions", data=body, headers=headers
            ) as r:
                answer = await r.json(content_type=None)
                assert r.status == 400, (r.status, answer)
                assert "nested too deeply" in answer["error"]["message"]


async def test_a_body_that_stops_arriving_is_refused_at_the_deadline() -> None:
    desk = ChatDesk(Fidelity(), body_timeout_s=0.2)
    app = web.Application()
    desk.add_routes(app)
    async with on_loopback(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"model": "m", '
        )
        await writer.drain()
        # the rest never comes: without the endpoint's deadline this read has no answer
        status = await asyncio.wait_for(reader.readline(), WAIT_S)
        writer.close()
        assert status.split()[1] == b"408", status
