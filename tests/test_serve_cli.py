"""`vlrun serve` as a process: the shipped profiles from a clean clone, the printed URL, the
token off loopback, and SIGTERM draining the conversations in progress before exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.errors import UsageError
from runner.serve.app import ServeOptions, page_url, settle_token

ROOT = Path(__file__).resolve().parents[1]


async def _start(cli_env: Any, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runner",
        "serve",
        *args,
        cwd=ROOT,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    assert line.startswith("open http://127.0.0.1:"), line
    return proc, line.split()[1]


async def test_serve_the_shipped_profiles_then_drain_on_sigterm(cli_env: Any) -> None:
    proc, url = await _start(cli_env, "profiles/", "--port", "0", "--drain-timeout", "1")
    try:
        base = url.rstrip("/")
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                assert r.status == 200 and "vlrun console" in await r.text()
            async with http.get(base + "/static/app.js") as r:
                assert r.status == 200 and r.content_type == "text/javascript"
            async with http.ws_connect(base + "/ws", origin=base) as ws:
                hello = json.loads((await ws.receive()).data)
                names = {p["name"] for p in hello["profiles"]}
                assert {"casual-chat", "weather", "world-clock"} <= names
                assert hello["embedded"] is True and "emulator" in hello["target"]
                await ws.send_str(json.dumps({"type": "start", "profile": "casual-chat"}))
                kinds: list[str] = []
                while "session" not in kinds:
                    msg = await asyncio.wait_for(ws.receive(), 30)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        kinds.append(json.loads(msg.data)["type"])
                await ws.send_str(json.dumps({"type": "text", "text": "hello there"}))
                reply = None
                while reply is None:
                    msg = await asyncio.wait_for(ws.receive(), 30)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        event = json.loads(msg.data)
                        if event["type"] == "assistant" and "hello there" in event["text"]:
                            reply = event
                async with http.get(base + "/readyz") as r:
                    assert (await r.json())["active"] == 1
                # SIGTERM with a conversation open: it is ended, the page told, exit 0.
                proc.send_signal(signal.SIGTERM)
                ended = None
                while ended is None:
                    msg = await asyncio.wait_for(ws.receive(), 30)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    event = json.loads(msg.data)
                    if event["type"] == "ended":
                        ended = event
                assert ended is not None
        assert proc.stdout is not None and proc.stderr is not None
        # read both pipes to their end, so the transport closes in this test's loop
        _, err_bytes = await asyncio.wait_for(
            asyncio.gather(proc.stdout.read(), proc.stderr.read()), 30
        )
        code = await asyncio.wait_for(proc.wait(), 30)
        err = err_bytes.decode()
        assert code == 0, err
        assert "stopping" in err and "Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def test_a_missing_path_is_a_usage_error_without_traceback(cli_env: Any) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runner",
        "serve",
        "no/such/dir",
        "--port",
        "0",
        cwd=ROOT,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"no/such/dir" in err and b"Traceback" not in err


def test_off_loopback_a_token_is_generated_and_put_in_the_url() -> None:
    options = settle_token(ServeOptions(host="0.0.0.0", port=8080))  # noqa: S104 - not bound
    assert options.token and len(options.token) >= 16
    assert page_url(options, 8080) == f"http://127.0.0.1:8080/?token={options.token}"
    assert settle_token(ServeOptions(host="127.0.0.1")).token is None
    assert settle_token(ServeOptions(host="::1")).token is None
    with pytest.raises(UsageError):
        settle_token(ServeOptions(token="short"))


async def test_a_serve_file_alone_serves_its_routes_and_says_where_they_are(
    cli_env: Any, tmp_path: Path
) -> None:
    """`vlrun serve --serve-file` with no profile paths serves the routes' profiles, and its
    log says which URLs the providers must be pointed at and which profile answers what."""
    (tmp_path / "phone.yaml").write_text(
        "name: phone\ninstructions: You answer the phone.\nvoice: alloy\n", encoding="utf-8"
    )
    serve_file = tmp_path / "serve.yaml"
    serve_file.write_text(
        "serve: 1\nroutes:\n  - {default: true, profile: phone.yaml}\n"
        "twilio:\n  auth_token: ${env:T_TOKEN}\n",
        encoding="utf-8",
    )
    env = cli_env({"T_TOKEN": "twilio-auth-token-for-tests-0123456789"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runner",
        "serve",
        "--serve-file",
        str(serve_file),
        "--port",
        "0",
        cwd=tmp_path,  # no profiles/ folder here
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("open http://127.0.0.1:"), line
        said: list[str] = []
        while not any(m.startswith("routes: ") for m in said):
            raw = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert raw, "the worker's log ended before its routes were said"
            with contextlib.suppress(ValueError):
                said.append(json.loads(raw)["msg"])
        assert "routes: default -> phone.yaml" in said
        assert any(m.startswith("twilio: POST ") and "/twilio/voice" in m for m in said)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
