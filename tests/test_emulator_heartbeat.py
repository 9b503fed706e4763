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


async def test_a_sip_attacher_that_stops_answering_pings_is_closed_and_its_call_ends() -> None:
    from runner.emulator.sip import API_VERSION, PREFIX

    bearer = {"Authorization": "Bearer test-token"}
    query = {"api-version": API_VERSION}
    async with running_emulator(speed=0, heartbeat_s=0.2) as emu, aiohttp.ClientSession() as http:
        async with http.post(emu.endpoint + "/_emulator/sip/calls", json={}) as r:
            assert r.status == 200
            call_id = (await r.json())["call_id"]
        accept = emu.endpoint + PREFIX + f"/calls/{call_id}/accept"
        body = {"model": "gpt-realtime"}
        async with http.post(accept, json=body, params=query, headers=bearer) as r:
            assert r.status == 200, await r.text()
        url = emu.endpoint + PREFIX + "/calls"
        params = {**query, "call_id": call_id}
        async with http.ws_connect(url, params=params, headers=bearer, autoping=False) as ws:
            kinds = []
            while True:
                msg = await asyncio.wait_for(ws.receive(), WAIT_S)  # not the session's hour
                if msg.type == aiohttp.WSMsgType.PING:
                    continue  # left unanswered
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kinds.append(json.loads(msg.data)["type"])
            assert "realtime.call.connected" in kinds
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        call = emu.sip.calls[call_id]
        await emu.sip.until(lambda: call.terminal_reason is not None, WAIT_S)
