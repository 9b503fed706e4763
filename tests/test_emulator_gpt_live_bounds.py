"""GPT-Live in the emulator: what a client sends is bounded however it is sent (appends add up
to what one start may hold), and a client that vanished is noticed (its socket is pinged)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from runner.emulator.fidelity import Fidelity
from runner.emulator.gpt_live import (
    APPEND_MAX_CHARS,
    INPUT_MAX_CHARS,
    INSTRUCTIONS_MAX_CHARS,
    LiveDesk,
)
from runner.emulator.record import SessionRecord
from tests.loopback import on_loopback
from tests.test_emulator_gpt_live import connect, live, next_of, send, started


async def test_instruction_appends_stop_at_what_the_session_s_instructions_may_hold() -> None:
    async with live() as (_, url), connect(url + "/openai/v1/live") as ws:
        assert (await started(ws, instructions="Be brief."))["type"] == "session.started"
        piece = "x" * APPEND_MAX_CHARS
        taken = 0
        for n in range(INSTRUCTIONS_MAX_CHARS // APPEND_MAX_CHARS + 2):
            await send(
                ws,
                {
                    "type": "session.instructions.append",
                    "content": piece,
                    "delegation_id": None,
                    "event_id": f"e{n}",
                },
            )
            answer = await next_of(ws, "session.instructions.appended", "error")
            if answer["type"] == "error":
                break
            taken += 1
        assert answer["type"] == "error", "appends grew the instructions past their bound"
        assert answer["error"]["param"] == "content" and answer["error"]["client_event_id"]
        assert taken == (INSTRUCTIONS_MAX_CHARS - len("Be brief.")) // (APPEND_MAX_CHARS + 1)
        # the session goes on: a short note still fits
        note = {"type": "session.commentary.append", "content": "hi", "delegation_id": None}
        await send(ws, note)
        assert (await next_of(ws, "session.commentary.appended", "error"))["type"] != "error"


async def test_a_typed_turn_and_a_call_id_are_checked_not_a_server_error() -> None:
    backend = {"type": "responses", "responses": {"model": "gpt-5.4-mini", "tools": []}}
    async with live() as (_, url), connect(url + "/openai/v1/live") as ws:
        assert (await started(ws, delegation=backend))["type"] == "session.started"
        output = {"type": "function_call_output", "call_id": ["x"], "output": "{}"}
        await send(ws, {"type": "response.item.create", "item": output})
        error = (await next_of(ws, "error"))["error"]
        assert (error["code"], error["param"]) == ("invalid_type", "item.call_id"), error
        long = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "x" * (INPUT_MAX_CHARS + 1)}],
        }
        await send(ws, {"type": "response.item.create", "item": long})
        error = (await next_of(ws, "error"))["error"]
        assert (error["code"], error["param"]) == ("invalid_value", "item.content"), error


async def test_a_client_that_stops_answering_pings_is_closed_and_its_session_ends() -> None:
    sessions: list[SessionRecord] = []
    desk = LiveDesk(
        sessions,
        lambda: None,
        Fidelity(),
        script=None,
        speed=0,
        api_key=None,
        session_limit_s=3600,
        use_espeak=False,
        heartbeat_s=0.2,
    )
    app = web.Application()
    desk.add_routes(app)
    async with on_loopback(app) as port, aiohttp.ClientSession() as http:
        # autoping off: this client never answers the server's pings (as a vanished one)
        url = f"http://127.0.0.1:{port}/openai/v1/live"
        async with http.ws_connect(url, autoping=False) as ws:
            await ws.send_str(
                json.dumps({"type": "session.start", "session": {"model": "gpt-live-1"}})
            )
            kinds = []
            while True:  # read until the server closes (its pings are not answered)
                msg = await asyncio.wait_for(ws.receive(), 10)  # not the session's hour
                if msg.type == aiohttp.WSMsgType.PING:
                    continue  # left unanswered
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kinds.append(json.loads(msg.data)["type"])
            assert "session.started" in kinds
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        await desk.close()


async def test_answered_delegations_are_forgotten_past_a_bound_and_a_waiting_one_is_kept() -> None:
    # a long call delegates again and again: the session kept every answered delegation
    from runner.emulator.gpt_live import MAX_DELEGATIONS
    from tests.test_emulator_gpt_live import marker, quiet, stream, voice

    turns = MAX_DELEGATIONS + 3
    script = {"turns": [{"turn": n, "transcript": "is it open?"} for n in range(1, turns + 1)]}
    ids: list[str] = []
    async with live(script) as (_, url), connect(url + "/openai/v1/live") as ws:
        assert (await started(ws))["type"] == "session.started"
        for n in range(turns):
            # a 300 ms question, then quiet for the turn to end and 'One moment.' (1.5 s) to play
            await stream(ws, voice(300), quiet(2400))
            created = [e for e in await marker(ws) if e["type"] == "session.delegation.created"]
            assert len(created) == 1, f"turn {n + 1} made no delegation"
            ids.append(created[0]["delegation"]["id"])
            if n == 0:
                continue  # the first one is still waiting for its result
            answer = {"type": "session.thinking.append", "delegation_id": ids[-1], "content": "ok"}
            await send(ws, answer)
            assert (await next_of(ws, "session.thinking.appended", "error"))["type"] != "error"

        async def append(did: str) -> dict[str, object]:
            note = {"type": "session.thinking.append", "delegation_id": did, "content": "x"}
            await send(ws, note)
            return await next_of(ws, "session.thinking.appended", "error")

        # 67 delegations, one waiting: the 3 oldest answered ones are forgotten (64 are kept),
        # and refused as an unknown id is
        for gone in ids[1:4]:
            error = (await append(gone))["error"]
            assert (error["code"], error["param"]) == ("invalid_value", "delegation_id"), error
        assert (await append(ids[4]))["type"] == "session.thinking.appended"
        assert (await append(ids[0]))["type"] == "session.thinking.appended"  # it was waiting
