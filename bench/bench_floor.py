"""The floor of a phone worker's per-call cost: the least any relay can do, on real sockets.

    python bench/bench_floor.py [--calls 50] [--duration 10]

A minimal aiohttp relay (its own process, the only one measured) between fake Twilio callers
and a fake Voice Live (both in this process, on one event loop with one shared 20 ms ticker).
Per call, 50 frames a second each way, μ-law passed through:
- caller -> relay -> Voice Live: recv, WebSocket unmask, JSON parse, base64 decode,
  base64 encode, JSON build (pre-encoded head and tail), frame, send;
- Voice Live -> relay -> caller: the same for each ``response.audio.delta``.
No pacing, no session, no metrics, no barge-in: what is left is what every phone relay pays.
The relay runs on the same parts as the worker (uvloop and orjson where installed), so the
worker's CPU per call over this floor is what vlrun's own design costs. ``bench_calls.py``
runs it in the same run as the worker (:func:`measure_floor`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.speedups import loads  # noqa: E402

FRAME_MS = 20
FRAME = bytes(range(160))  # 20 ms of μ-law (content does not matter to a relay)
TICK = os.sysconf("SC_CLK_TCK")
HERE = str(Path(__file__).resolve())


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ the relay


async def relay_main(port: int, vl_url: str) -> None:
    """The relay: one route, each caller's socket bridged to its own Voice Live socket."""
    import aiohttp
    from aiohttp import WSMsgType, web

    text = WSMsgType.TEXT
    b64decode, b64encode = base64.b64decode, base64.b64encode
    vl_head, vl_tail = b'{"type":"input_audio_buffer.append","audio":"', b'"}'
    http = aiohttp.ClientSession()

    async def media(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=2**16)
        await ws.prepare(request)
        vl = await http.ws_connect(vl_url, compress=0, max_msg_size=2**20)
        sid = request.query.get("sid", "MZ0")
        head = ('{"event":"media","streamSid":"' + sid + '","media":{"payload":"').encode()
        tail = b'"}}'

        async def outbound() -> None:
            async for msg in vl:
                data = loads(msg.data)
                if data.get("type") == "response.audio.delta":
                    audio = b64decode(data["delta"])
                    await ws.send_frame(head + b64encode(audio) + tail, text)  # bytes, no re-encode

        out = asyncio.create_task(outbound())
        try:
            async for msg in ws:
                data = loads(msg.data)
                if data.get("event") == "media":
                    audio = b64decode(data["media"]["payload"])
                    await vl.send_frame(vl_head + b64encode(audio) + vl_tail, text)
        finally:
            out.cancel()
            await asyncio.gather(out, return_exceptions=True)
            await vl.close()
        return ws

    app = web.Application()
    app.router.add_get("/media", media)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("relay ready", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()  # until terminated


# ------------------------------------------------------------------------------ the harness


class FakeVoiceLive:
    """Voice Live's audio out, 50 deltas a second to every session; what comes in is read."""

    def __init__(self) -> None:
        self.sockets: list[Any] = []
        self.received = 0
        payload = base64.b64encode(FRAME).decode()
        self.delta = (
            '{"type":"response.audio.delta","response_id":"resp_1","item_id":"item_1",'
            f'"output_index":0,"content_index":0,"delta":"{payload}"}}'
        )

    async def handler(self, request: Any) -> Any:
        from aiohttp import web

        ws = web.WebSocketResponse(compress=False, max_msg_size=2**20)
        await ws.prepare(request)
        self.sockets.append(ws)
        async for _ in ws:
            self.received += 1
        self.sockets.remove(ws)
        return ws


async def measure_floor(calls: int = 50, seconds: float = 10.0) -> dict[str, Any]:
    """Start the relay, run ``calls`` calls through it, return its CPU per call (% of a core)."""
    import aiohttp
    from aiohttp import web

    vl = FakeVoiceLive()
    app = web.Application()
    app.router.add_get("/realtime", vl.handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    vl_port, relay_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", vl_port).start()
    relay = await asyncio.create_subprocess_exec(
        sys.executable, HERE, "--relay", str(relay_port),
        "--vl-url", f"ws://127.0.0.1:{vl_port}/realtime",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert relay.stdout is not None
    http = aiohttp.ClientSession()
    sockets: list[Any] = []
    readers: list[asyncio.Task[None]] = []
    heard = [0]
    try:
        await asyncio.wait_for(relay.stdout.readline(), 30)

        async def read(ws: Any) -> None:
            async for _ in ws:
                heard[0] += 1

        for i in range(calls):
            ws = await http.ws_connect(
                f"http://127.0.0.1:{relay_port}/media?sid=MZ{i:032d}", compress=0
            )
            sockets.append(ws)
            readers.append(asyncio.create_task(read(ws)))
        loop = asyncio.get_running_loop()
        payload = base64.b64encode(FRAME).decode()

        async def tick(stop: asyncio.Event) -> None:
            start, n = loop.time(), 0
            while not stop.is_set():
                n += 1
                await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))
                for k, ws in enumerate(sockets):  # what Twilio sends, what Voice Live sends
                    await ws.send_str(
                        f'{{"event":"media","sequenceNumber":"{n}","streamSid":"MZ{k:032d}",'
                        f'"media":{{"track":"inbound","chunk":"{n}","timestamp":"{n * 20}",'
                        f'"payload":"{payload}"}}}}'
                    )
                for vws in list(vl.sockets):
                    await vws.send_str(vl.delta)

        stop = asyncio.Event()
        ticker = asyncio.create_task(tick(stop))
        await asyncio.sleep(2.0)  # warm-up: every socket open and flowing
        cpu0, mine0, t0, heard0, got0 = (
            cpu_s(relay.pid), cpu_s(os.getpid()), time.monotonic(), heard[0], vl.received
        )  # fmt: skip
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        relay_pct = 100 * (cpu_s(relay.pid) - cpu0) / elapsed
        harness_pct = 100 * (cpu_s(os.getpid()) - mine0) / elapsed
        out_rate = (heard[0] - heard0) / elapsed / calls
        in_rate = (vl.received - got0) / elapsed / calls
        stop.set()
        await ticker
        return {
            "calls": calls,
            "window_s": round(elapsed, 1),
            "relay_cpu_pct": round(relay_pct, 1),
            "floor_cpu_pct_per_call": round(relay_pct / calls, 4),
            "harness_cpu_pct": round(harness_pct, 1),
            # 50 each way when nothing saturated; less means the figure is not the floor
            "frames_per_s_per_call": {"in": round(in_rate, 1), "out": round(out_rate, 1)},
        }
    finally:
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await http.close()
        if relay.returncode is None:
            relay.terminate()
            await relay.wait()
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="measured window, s")
    parser.add_argument("--relay", type=int, help=argparse.SUPPRESS)  # the relay process
    parser.add_argument("--vl-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from runner import speedups

    if args.relay:
        with contextlib.suppress(KeyboardInterrupt):
            speedups.run(relay_main(args.relay, args.vl_url))
        return 0
    result = speedups.run(measure_floor(args.calls, args.duration))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
