"""`vlrun serve --emulator-speed`: the embedded emulator sends a reply the way Voice Live does
(ahead of real time) unless asked for real time, and the page still gets every byte of it, in
order, to play at real time itself (issue 28 item 2).

Nothing here is timed: the host runs its emulator at the speed asked for and says so to the
page, and the page gets the whole reply. The pace a reply is sent at for a given speed is
tested on a virtual clock in tests/test_emulator_pace.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.live.connect import SERVICE_PACE
from tests.browser.harness import page, serving, write_profiles
from tests.test_serve_cli import _start

ROOT = Path(__file__).resolve().parents[1]

#: A typed turn answered by a reply of several seconds (many audio deltas).
LONG_SCRIPT = """\
description: One long reply to a typed turn.
turns:
  - match: "(?i)tell me"
    say: >-
      Here is a long answer, so that there is enough speech to send in many pieces: the river
      runs past the old mill, under the stone bridge, and on through the fields to the sea.
"""


def _sent(trace: Path) -> list[int]:
    """The reply audio in the conversation's trace: its decoded size per delta, in order."""
    found = []
    for line in trace.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        event = record.get("event", {})
        if record.get("dir") != "in" or event.get("type") != "response.audio.delta":
            continue
        chars = int(str(event["delta"]).strip("<").split()[0])  # "<6400 chars audio>"
        found.append(chars * 3 // 4)  # the decoded size, give or take the padding
    return found


@pytest.mark.parametrize("speed", [SERVICE_PACE, 1.0])
async def test_the_host_runs_its_emulator_at_the_speed_asked_and_the_page_gets_every_byte(
    tmp_path: Path, speed: float
) -> None:
    write_profiles(tmp_path)
    (tmp_path / "script.yaml").write_text(LONG_SCRIPT)
    async with serving(tmp_path, speed=speed) as served, page(served) as p:
        assert served.host.emulator is not None
        assert served.host.emulator.speed == speed  # the emulator that paces the replies
        assert p.of("hello")[0]["emulator_speed"] == speed  # as the page hears it
        await p.send({"type": "start", "profile": "weather"})
        session = (await p.wait(lambda: p.of("session")))[0]
        await p.send({"type": "text", "text": "tell me something long"})
        await p.wait(lambda: any(e.get("event") == "response_done" for e in p.of("timeline")))
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))  # its trace is complete (written off the loop)
        got = p.audio_bytes
        conv = served.host.conversations[session["conversation"]]
        assert conv.trace_path is not None
        sizes = _sent(conv.trace_path)
    assert len(sizes) > 30  # several seconds of speech, in 100 ms deltas
    # every byte reached the page (it plays them at real time itself); none dropped (the
    # trace counts base64 characters: up to 2 padding bytes a delta are not audio)
    sent = sum(sizes)
    assert sent - 2 * len(sizes) <= got <= sent


async def _served_speed(cli_env: Any, *args: str) -> tuple[str, float]:
    """`vlrun serve profiles/ ARGS`: its "vlrun serve:" line and the speed its page reports."""
    proc, url = await _start(cli_env, "profiles/", "--port", "0", *args)
    assert proc.stderr is not None
    try:
        said = ""
        while not said.startswith("vlrun serve: "):
            raw = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert raw, "the server's stderr ended before it said what it serves"
            said = raw.decode().strip()
        base = url.rstrip("/")
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(base + "/ws", origin=base)
            hello = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
            await ws.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    return said, hello["emulator_speed"]


async def test_the_cli_defaults_to_the_service_pace_and_takes_emulator_speed(
    cli_env: Any,
) -> None:
    (said, speed), (said_1, speed_1) = await asyncio.gather(
        _served_speed(cli_env), _served_speed(cli_env, "--emulator-speed", "1")
    )
    assert speed == SERVICE_PACE
    assert f"replies sent at {SERVICE_PACE:g}x real time (--emulator-speed)" in said
    assert speed_1 == 1.0
    assert "replies sent at real time" in said_1
