"""`vlrun serve --emulator-speed`: the embedded emulator sends a reply the way Voice Live does
(ahead of real time) unless asked for real time, and the page still gets every byte of it, in
order, to play at real time itself (issue 28 item 2).

No clock limit anywhere: the emulator's own speed, and the ratio of a reply's audio to the
time it took to arrive (about 1 at real-time pacing, about 4 at the service's pace).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from runner.live.connect import SERVICE_PACE
from tests.browser.harness import page, serving, write_profiles

ROOT = Path(__file__).resolve().parents[1]

#: A typed turn answered by a reply long enough for the ratio to mean something.
LONG_SCRIPT = """\
description: One long reply to a typed turn.
turns:
  - match: "(?i)tell me"
    say: >-
      Here is a long answer, so that there is enough speech to time: the river runs past the
      old mill, under the stone bridge, and on through the fields towards the sea.
"""


def _deltas(trace: Path) -> list[tuple[float, float, int]]:
    """The reply audio in the conversation's trace: (t, ms, bytes) per delta, in order."""
    found = []
    for line in trace.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        event = record.get("event", {})
        if record.get("dir") != "in" or event.get("type") != "response.audio.delta":
            continue
        chars = int(str(event["delta"]).strip("<").split()[0])  # "<6400 chars audio>"
        size = chars * 3 // 4  # the decoded size, give or take the padding
        found.append((float(record["t"]), size / 2 / 24000 * 1000, size))
    return found


async def _long_reply(
    tmp_path: Path, speed: float
) -> tuple[float, tuple[int, int], int, float | None]:
    """One long reply through the page: (audio ms / arrival ms, the bytes the trace
    says were sent (at least, at most), bytes the page got, the speed the server reports)."""
    write_profiles(tmp_path)
    (tmp_path / "script.yaml").write_text(LONG_SCRIPT)
    async with serving(tmp_path, speed=speed) as served, page(served) as p:
        reported = p.of("hello")[0]["emulator_speed"]
        await p.send({"type": "start", "profile": "weather"})
        session = (await p.wait(lambda: p.of("session")))[0]
        await p.send({"type": "text", "text": "tell me something long"})
        await p.wait(lambda: any(e.get("event") == "response_done" for e in p.of("timeline")))
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))  # its trace is complete (written off the loop)
        got = p.audio_bytes
        conv = served.host.conversations[session["conversation"]]
        assert conv.trace_path is not None
        deltas = _deltas(conv.trace_path)
    # every byte reached the page (it plays them at real time itself); none dropped (the
    # trace counts base64 characters: up to 2 padding bytes a delta are not audio)
    sent = sum(size for _, _, size in deltas)
    slack = 2 * len(deltas)
    audio_ms = sum(ms for _, ms, _ in deltas)
    assert audio_ms > 3000, audio_ms  # long enough for the ratio to mean something
    span_ms = (deltas[-1][0] - deltas[0][0]) * 1000 + deltas[-1][1]
    return audio_ms / span_ms, (sent - slack, sent), got, reported


async def test_by_default_a_reply_arrives_ahead_of_real_time_and_whole(tmp_path: Path) -> None:
    ratio, sent, got, reported = await _long_reply(tmp_path, SERVICE_PACE)
    assert reported == SERVICE_PACE  # the emulator's own speed, as the page hears it
    assert ratio > 2.5, ratio  # at real time (the old default) it is about 1
    assert sent[0] <= got <= sent[1]  # the whole reply, none dropped


async def test_emulator_speed_1_sends_at_real_time(tmp_path: Path) -> None:
    ratio, sent, got, reported = await _long_reply(tmp_path, 1.0)
    assert reported == 1.0
    assert ratio < 1.5, ratio  # the emulator never sends ahead at real time
    assert sent[0] <= got <= sent[1]  # the whole reply, none dropped


async def _served_speed(cli_env: Any, *args: str) -> tuple[str, float]:
    """`vlrun serve profiles/ ARGS`: its "vlrun serve:" line and the speed its page reports."""
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
        said = ""
        while not said.startswith("vlrun serve: "):
            raw = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert raw, "the server's stderr ended before it said what it serves"
            said = raw.decode().strip()
        base = line.split()[1].rstrip("/")
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
