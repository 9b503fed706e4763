"""The page's read loop never waits for its session. Against a service whose WebSocket
handshake never completes (the session takes for ever to connect), a stop ends the
conversation at once and the page's messages are still read; against an emulator that holds
back `session.updated` a moment, a push-to-talk turn said while connecting arrives in order
once the session is up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from runner.emulator.faults import Faults
from runner.serve.app import ServeOptions, serve
from runner.serve.host import Host, HostOptions
from tests.browser.harness import SCRIPT, Page, Served, write_profiles

MANUAL_PROFILE = """\
name: manual
description: Push-to-talk.
instructions: Reply briefly.
voice: en-US-AvaNeural
turn_detection: manual
"""

PROMPT_S = 5.0  # "at once", with room for a loaded CI machine


@contextlib.asynccontextmanager
async def stalled_service() -> AsyncIterator[str]:
    """A Voice Live endpoint on loopback that says it is a local emulator (so no sign-in is
    needed) but never answers a WebSocket handshake, until the test ends."""
    released = asyncio.Event()

    async def identity(request: web.Request) -> web.Response:
        return web.json_response({"service": "vlrun Voice Live emulator"})

    async def stall(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/", identity)
    app.router.add_route("*", "/{tail:.+}", stall)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        released.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def server(root: Path, **host: Any) -> AsyncIterator[Served]:
    """`serve()` on loopback with these HostOptions (small timeouts)."""
    profiles = write_profiles(root)
    (profiles / "manual.yaml").write_text(MANUAL_PROFILE)
    (root / "script.yaml").write_text(SCRIPT)
    hosted = Host(HostOptions(paths=[profiles], logs=root / "logs", **host))
    options = ServeOptions(port=0, drain_timeout_s=1.0, heartbeat_s=1.0, end_timeout_s=2.0)
    stop = asyncio.Event()
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(hosted, options, started=started.set_result, stop=stop))
    done, _ = await asyncio.wait({task, started}, timeout=30, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()
    url = started.result()
    try:
        yield Served(url, url.rstrip("/"), hosted, options, root / "logs")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def never_connects(root: Path) -> AsyncIterator[Served]:
    async with stalled_service() as endpoint, server(root, endpoint=endpoint) as served:
        yield served


@contextlib.asynccontextmanager
async def slow_to_confirm(root: Path, ms: float) -> AsyncIterator[Served]:
    """The embedded emulator, holding every session.updated for ``ms``."""
    faults = Faults(delay_ms=ms, delay_types=("session.updated",))
    options = {"scenario": root / "script.yaml", "speed": 0.0, "faults": faults}
    async with server(root, emulator_options=options) as served:
        yield served


@contextlib.asynccontextmanager
async def page(served: Served) -> AsyncIterator[Page]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(served.base + "/ws", origin=served.base) as ws,
    ):
        client = Page(ws)
        client.start_reading()
        await client.wait(lambda: client.of("hello"))
        try:
            yield client
        finally:
            await client.close()


async def test_a_stop_right_after_start_ends_without_waiting_for_the_connect(
    tmp_path: Path,
) -> None:
    async with never_connects(tmp_path) as served, page(served) as p:
        await p.send({"type": "start", "profile": "weather"})
        await p.send({"type": "stop", "graceful": True})  # the page's Stop button
        ended = (await p.wait(lambda: p.of("ended"), timeout=PROMPT_S))[0]
        assert ended["code"] == 0
        assert not p.of("error"), p.of("error")  # the stop was not "no conversation running"
        assert await served.host.wait_idle(PROMPT_S), "the session was not freed"
        # and the page can start again at once
        await p.send({"type": "start", "profile": "weather"})
        await p.wait(lambda: p.of("session"), timeout=PROMPT_S)
        await p.send({"type": "stop"})
        await p.wait(lambda: len(p.of("ended")) == 2, timeout=PROMPT_S)
        assert not p.of("ready")  # all of it happened before the session was confirmed


async def test_talk_while_connecting_leaves_the_page_heard(tmp_path: Path) -> None:
    async with never_connects(tmp_path) as served, page(served) as p:
        await p.send({"type": "start", "profile": "manual"})
        session = (await p.wait(lambda: p.of("session"), timeout=PROMPT_S))[0]
        assert session["push_to_talk"] is True and not p.of("ready")
        await p.send({"type": "talk"})  # pressed while the session connects
        for _ in range(5):
            await p.ws.send_bytes(bytes(1920))  # 40 ms microphone frames go on meanwhile
        await p.send({"type": "launch_missiles"})  # answered only if the page is still read
        error = await p.wait(lambda: p.of("error"), timeout=PROMPT_S)
        assert "unknown message type" in error[0]["text"]
        await p.send({"type": "stop"})
        ended = await p.wait(lambda: p.of("ended"), timeout=PROMPT_S)
        assert ended[0]["conversation"] == session["conversation"]
        assert await served.host.wait_idle(PROMPT_S)


async def test_a_turn_said_while_connecting_is_sent_in_order_once_up(tmp_path: Path) -> None:
    async with slow_to_confirm(tmp_path, 800) as served, page(served) as p:
        await p.send({"type": "start", "profile": "manual"})
        await p.wait(lambda: p.of("session"), timeout=PROMPT_S)
        tone = (np.sin(np.arange(960) / 24000 * 2 * np.pi * 300) * 8000).astype("<i2")
        await p.send({"type": "talk"})
        for _ in range(15):  # 600 ms of speech, all before the session is up
            await p.ws.send_bytes(tone.tobytes())
        await p.send({"type": "talk"})
        for _ in range(3):
            await p.ws.send_bytes(bytes(1920))
        assert not p.of("ready"), "the session came up too soon for this test to mean much"
        await p.wait(lambda: p.of("ready"))
        commit = await p.wait(lambda: [e for e in p.of("timeline") if e["event"] == "commit"])
        assert commit
        await p.wait(lambda: p.of("assistant"))
        assert not [n for n in p.of("notice") if "nothing sent" in n["text"]]
