"""The console's HTTP guards, from real clients on loopback against `serve()` in this loop:
DNS rebinding (Host), the WebSocket's Origin, the token, connections that idle or stop
half-way, bodies that never finish, and downloads streamed from their files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runner.serve.app import Installer, ServeOptions, serve
from runner.serve.host import Host, HostOptions
from runner.serve.web import loopback_host_header
from tests.browser.harness import SCRIPT, write_profiles

REBIND = "rebind.evil.example"


@dataclass
class Server:
    base: str
    port: int
    host: Host
    options: ServeOptions


@contextlib.asynccontextmanager
async def server(
    root: Path, installers: Sequence[Installer] = (), **options: Any
) -> AsyncIterator[Server]:
    """`serve()` on 127.0.0.1 with the embedded emulator and these ServeOptions."""
    write_profiles(root)
    (root / "script.yaml").write_text(SCRIPT)
    host = Host(
        HostOptions(
            paths=[root / "profiles"],
            logs=root / "logs",
            emulator_options={"scenario": root / "script.yaml", "speed": 0.0},
        )
    )
    opts = ServeOptions(port=0, drain_timeout_s=1.0, **options)
    stop = asyncio.Event()
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(host, opts, installers, started=started.set_result, stop=stop))
    done, _ = await asyncio.wait({task, started}, timeout=30, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()
    base = started.result().split("?")[0].rstrip("/")
    try:
        yield Server(base, int(base.rsplit(":", 1)[1]), host, opts)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "vlrun.serve" and r.getMessage().startswith("refused")
    ]


CONSOLE_ROUTES = (
    "/",
    "/static/app.js",
    "/api/profiles",
    "/api/conversations/c1-x/transcript.txt",
    "/api/conversations/c1-x/trace.jsonl",
)


def test_loopback_host_names() -> None:
    for good in (
        "127.0.0.1",
        "127.0.0.1:8080",
        "localhost",
        "LOCALHOST:8080",
        "[::1]",
        "[::1]:8080",
        "[0:0:0:0:0:0:0:1]:80",
        "::1",
        "127.1.2.3:9",
    ):
        assert loopback_host_header(good), good
    for bad in (
        None,
        "",
        REBIND,
        f"{REBIND}:8080",
        "127.0.0.1.evil.example",
        "localhost.evil.example:8080",
        "127.0.0.1:8080:8080",
        "127.0.0.1:http",
        "[::1]x",
        "[::1",
        "10.0.0.1:8080",
        "0.0.0.0:8080",
        "[::]:8080",
    ):
        assert not loopback_host_header(bad), bad


async def test_a_rebound_name_is_refused_on_every_console_route(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "vlrun.serve")
    async with server(tmp_path) as s, aiohttp.ClientSession() as http:
        evil = f"{REBIND}:{s.port}"
        for path in CONSOLE_ROUTES:
            async with http.get(s.base + path, headers={"Host": evil}) as r:
                assert r.status == 403, path
                assert "not a loopback name" in await r.text()
        # the WebSocket too, though its Origin matches the (rebound) Host exactly
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(s.base + "/ws", headers={"Host": evil}, origin=f"http://{evil}")
        assert refused.value.status == 403
        assert s.host.active == 0
        # loopback names, with and without a port, are the console
        for name in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", "localhost", "[::1]"):
            async with http.get(s.base + "/api/profiles", headers={"Host": name}) as r:
                assert r.status == 200, name
                assert [p["name"] for p in (await r.json())["profiles"]] == ["broken", "weather"]
        async with http.ws_connect(s.base + "/ws", origin=s.base) as ws:
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
    lines = refusals(caplog)
    assert len(lines) == len(CONSOLE_ROUTES) + 1
    assert all(REBIND in line and "not a loopback name" in line for line in lines)


async def test_with_a_token_the_token_is_the_guard_whatever_the_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "vlrun.serve")
    token = "a-token-of-enough-length-0123"
    async with server(tmp_path, token=token) as s, aiohttp.ClientSession() as http:
        proxy = {"Host": "console.example.org"}  # a reverse proxy's name
        async with http.get(f"{s.base}/api/profiles?token={token}", headers=proxy) as r:
            assert r.status == 200
        async with http.get(s.base + "/api/profiles", headers=proxy) as r:
            assert r.status == 401
        url = f"{s.base}/ws?token={token}"
        async with http.ws_connect(url, headers=proxy, origin="https://console.example.org") as ws:
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
    lines = refusals(caplog)
    assert len(lines) == 1 and "access token" in lines[0] and token not in lines[0]


async def test_a_websocket_needs_an_origin_and_the_right_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "vlrun.serve")
    listed = "https://studio.example.org"
    async with server(tmp_path, origins=[listed]) as s, aiohttp.ClientSession() as http:
        for origin in (None, "http://evil.example", "null", f"http://{REBIND}:{s.port}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(s.base + "/ws", origin=origin)
            assert refused.value.status == 403, origin
        for origin in (s.base, listed):  # the page's own, and one given with --origin
            async with http.ws_connect(s.base + "/ws", origin=origin) as ws:
                assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
    lines = refusals(caplog)
    assert len(lines) == 4
    assert "without an Origin" in lines[0]
    assert "'http://evil.example'" in lines[1] and "'null'" in lines[2]


async def test_a_refusal_line_shows_control_characters_and_masks_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "vlrun.serve")
    token = "another-token-of-enough-length"
    async with server(tmp_path, token=token) as s:
        origin = f"http://{token}.example\u202egro.live".encode()  # bidi override: reads reversed
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(
            f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n".encode()
            + b"Origin: "
            + origin
            + b"\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 403")
        writer.close()
    (line,) = refusals(caplog)
    assert token not in line and "***" in line
    assert "\u202e" not in line and "\\u202e" in line


# ------------------------------------------------------------------ idle and half-sent


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed in time."""
    return await asyncio.wait_for(reader.read(), seconds)


async def test_half_a_request_line_and_an_idle_connection_are_closed(tmp_path: Path) -> None:
    async with server(tmp_path, idle_timeout_s=0.3) as s:
        # half a request line, then nothing: closed (aiohttp's default waits an hour)
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"GET /healthz HT")
        await writer.drain()
        assert await _closed_within(reader, 10) == b""
        writer.close()
        # a whole request answered, then the connection idles: closed as well
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        answer = await _closed_within(reader, 10)
        assert answer.startswith(b"HTTP/1.1 200") and b'"alive"' in answer
        writer.close()
        # a connection that never says anything
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        assert await _closed_within(reader, 10) == b""
        writer.close()


async def test_a_body_that_never_finishes_is_answered_408(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(body)
        return web.Response(text=f"{len(body)}")

    def install(app: web.Application, host: Any, options: Any) -> None:
        app.router.add_post("/echo", echo)  # an edge's webhook, through the installer contract

    async with server(tmp_path, [install], body_timeout_s=0.3, idle_timeout_s=5.0) as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408"), head
        writer.close()
        assert seen == []  # the handler never saw half a body
        async with aiohttp.ClientSession() as http:
            async with http.post(s.base + "/echo", data=b"y" * 5000) as r:
                assert r.status == 200 and await r.text() == "5000"  # a whole body still works
            big = b"z" * (s.options.max_body_bytes + 1)
            async with http.post(s.base + "/echo", data=big) as r:
                assert r.status == 413
        assert seen == [b"y" * 5000]


# ------------------------------------------------------------------ downloads


async def test_downloads_are_streamed_from_their_files(tmp_path: Path) -> None:
    async with server(tmp_path) as s, aiohttp.ClientSession() as http:
        async with http.ws_connect(s.base + "/ws", origin=s.base) as ws:
            await ws.send_str(json.dumps({"type": "start", "profile": "weather"}))
            conv_id = None
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue  # reply audio
                event = json.loads(msg.data)
                if event["type"] == "session":
                    conv_id = event["conversation"]
                    await ws.send_str(json.dumps({"type": "text", "text": "I typed this"}))
                elif event["type"] == "assistant":
                    await ws.send_str(json.dumps({"type": "stop"}))
                elif event["type"] == "ended":
                    break
        assert conv_id is not None
        conv = s.host.conversations[conv_id]
        assert conv.trace_path is not None and conv.trace_path.is_file()
        with conv.trace_path.open("a") as f:  # a long conversation's trace: megabytes
            for i in range(40_000):
                f.write(json.dumps({"type": "filler", "n": i, "pad": "p" * 64}) + "\n")
        whole = conv.trace_path.read_bytes()
        trace = f"{s.base}/api/conversations/{conv_id}/trace.jsonl"
        async with http.get(trace) as r:
            assert r.status == 200 and r.content_type == "application/x-ndjson"
            assert int(r.headers["Content-Length"]) == len(whole)
            assert await r.read() == whole
        # served from the file: a range of it is a range of the file
        async with http.get(trace, headers={"Range": "bytes=100-199"}) as r:
            assert r.status == 206 and await r.read() == whole[100:200]
        log = f"{s.base}/api/conversations/{conv_id}/transcript.txt"
        async with http.get(log) as r:
            assert r.status == 200 and "You typed that" in await r.text()
            assert "attachment" in r.headers["Content-Disposition"]
        async with http.get(f"{s.base}/api/conversations/nope/trace.jsonl") as r:
            assert r.status == 404


# ------------------------------------------------------------------ hostile page input


async def test_deeply_nested_or_out_of_range_json_is_bad_input_not_a_crash(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as s, aiohttp.ClientSession() as http:
        async with http.ws_connect(s.base + "/ws", origin=s.base) as ws:
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
            await ws.send_str("[" * 60_000)  # under the frame limit, past the parser's depth
            await ws.send_str('{"type": "format", "rate": 1e999}')  # inf: no int
            await ws.send_str('{"type": "start", "profile": "weather", "rate": -1e999}')
            errors: list[str] = []
            while len(errors) < 2:
                event = json.loads((await ws.receive(timeout=10)).data)
                if event["type"] == "error":
                    errors.append(event["text"])
            assert "nested too deeply" in errors[0]
            assert "malformed format" in errors[1]
            error = json.loads((await ws.receive(timeout=10)).data)
            assert error["type"] == "error" and "malformed start" in error["text"]
            # the socket is still read and answered
            await ws.send_str(json.dumps({"type": "start", "profile": "weather"}))
            while json.loads((await ws.receive(timeout=20)).data)["type"] != "session":
                pass
            # NaN is JSON to Python's parser, but not a playback position (nor valid JSON in
            # the trace it would be written to)
            await ws.send_str('{"type": "flushed", "item": "item1", "ms": NaN}')
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "error":
                    assert "malformed flushed" in json.loads(msg.data)["text"]
                    break
        assert await s.host.wait_idle(5.0)
