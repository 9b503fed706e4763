"""The emulator pings its Voice Live sockets: a client that vanished without a close (it no
longer answers pings) is closed and its session ends then, not at the session limit."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from runner.emulator import running_emulator

WAIT_S = 10.0


async def test_a_voice_live_client_that_stops_answering_pings_is_closed() -> None:
    async with running_emulator(speed=0, heartbeat_s=0.2) as emu, aiohttp.ClientSession() as http:
        url = emu.endpoint + "/voice-live/realtime?model=gpt-realtime"
        async with http.ws_connect(url, autoping=False) as ws:  # never answers a ping
            kinds = []
            while True:
                msg = await asyncio.wait_for(ws.receive(), WAIT_S)  # not the session's hour
                if msg.type == aiohttp.WSMsgType.PING:
                    continue  # left unanswered
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kinds.append(json.loads(msg.data)["type"])
            assert kinds[:1] == ["session.created"]
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
