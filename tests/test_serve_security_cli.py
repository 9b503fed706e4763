"""`vlrun serve` as a process: a rebound Host and a socket without Origin are refused, and
every refusal reaches stderr without a `--serve-file` (no phone worker's log), token masked."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]


async def _refusals_of(cli_env: Any, args: list[str], poke: Any) -> tuple[str, str]:
    """Start `vlrun serve ARGS`, run ``poke(url)``, stop it; returns (stdout line, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runner",
        "serve",
        "profiles/",
        "--port",
        "0",
        *args,
        cwd=ROOT,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("open http://127.0.0.1:"), line
        await poke(line.split()[1])
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(asyncio.gather(proc.stdout.read(), proc.stderr.read()), 30)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    return line, err.decode()


async def test_refusals_are_logged_on_stderr_without_a_serve_file(cli_env: Any) -> None:
    async def poke(url: str) -> None:
        base = url.rstrip("/")
        port = base.rsplit(":", 1)[1]
        evil = f"rebind.evil.example:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/api/profiles", headers={"Host": evil}) as r:
                assert r.status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(base + "/ws", headers={"Host": evil}, origin=f"http://{evil}")
            assert refused.value.status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(base + "/ws")  # no Origin: not a browser page
            assert refused.value.status == 403
            async with http.get(url) as r:  # the console itself still answers
                assert r.status == 200

    _, err = await _refusals_of(cli_env, [], poke)
    lines = [line for line in err.splitlines() if "refused" in line]
    assert len(lines) == 3, err
    assert "GET /api/profiles" in lines[0] and "not a loopback name" in lines[0]
    assert "GET /ws" in lines[1] and "rebind.evil.example" in lines[1]
    assert "without an Origin" in lines[2]
    assert "Traceback" not in err


async def test_a_refusal_on_stderr_never_shows_the_token(cli_env: Any) -> None:
    token = "cli-token-of-enough-length-42"

    async def poke(url: str) -> None:
        base = url.split("?")[0].rstrip("/")
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/?token=not-the-token-at-all") as r:
                assert r.status == 401
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await http.ws_connect(
                    f"{base}/ws?token={token}", origin=f"http://{token}.evil.example"
                )

    line, err = await _refusals_of(cli_env, ["--token", token], poke)
    assert line.rstrip().endswith(f"?token={token}")  # the URL to open, on stdout only
    lines = [x for x in err.splitlines() if "refused" in x]
    assert len(lines) == 2, err
    assert "access token" in lines[0] and "origin" in lines[1]
    assert token not in err and "not-the-token" not in err
