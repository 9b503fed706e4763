"""A WebSocket relay on loopback between a client and Voice Live (the emulator), for faults
the emulator's own options do not script: frames added on the way down, or the link cut (and
the service gone) at the moment a client event matches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web


@contextlib.asynccontextmanager
async def relay(
    upstream: str,
    *,
    inject: Callable[[str], Any] | None = None,
    cut_when: Callable[[str], bool] | None = None,
) -> AsyncIterator[str]:
    """Yields the relay's URL. ``inject(server_frame)`` returns raw frames to add after it;
    ``cut_when(client_frame)`` true drops every link at once, without a close frame, and
    refuses new ones (503): the service going away at that moment. Plain requests (the
    emulator's identity probe) pass through."""
    state = {"cut": False}
    cuts: list[asyncio.Event] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        if state["cut"]:
            return web.Response(status=503, text="gone")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            async with (
                aiohttp.ClientSession() as http,
                http.get(upstream + request.path_qs) as r,
            ):
                return web.Response(
                    status=r.status, body=await r.read(), content_type=r.content_type
                )
        down = web.WebSocketResponse(max_msg_size=0)
        await down.prepare(request)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("api-key", "authorization")
        }
        cut = asyncio.Event()
        cuts.append(cut)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                upstream.replace("http://", "ws://") + request.path_qs,
                headers=headers,
                max_msg_size=0,
            ) as up,
        ):

            async def client_to_server() -> None:
                async for msg in down:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    if cut_when is not None and cut_when(msg.data):
                        state["cut"] = True
                        for each in cuts:
                            each.set()
                        return
                    await up.send_str(msg.data)
                await up.close()

            async def server_to_client() -> None:
                async for msg in up:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    await down.send_str(msg.data)
                    for extra in (inject(msg.data) if inject else None) or ():
                        await down.send_str(extra)
                await down.close()

            tasks = [
                asyncio.create_task(client_to_server()),
                asyncio.create_task(server_to_client()),
                asyncio.create_task(cut.wait()),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if cut.is_set() and request.transport is not None:
                request.transport.abort()  # no close frame: the link is simply gone
        return down

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
