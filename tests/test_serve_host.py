"""`vlrun serve` through its WebSocket, as a page speaks it: conversations, bad input, limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.browser.harness import page, serving, write_profiles, write_tool


async def test_probes_and_a_typed_turn_with_a_tool(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        async with http.get(served.base + "/healthz") as r:
            assert r.status == 200
        async with http.get(served.base + "/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        async with page(served) as p:
            hello = p.of("hello")[0]
            assert [x["name"] for x in hello["profiles"]] == ["broken", "weather"]
            assert hello["embedded"] is True
            await p.send({"type": "start", "profile": "weather"})
            session = await p.wait(lambda: p.of("session"))
            assert session[0]["input_rate"] == 24000
            assert served.host.active == 1
            await p.send({"type": "text", "text": "what is the weather like"})
            await p.wait(lambda: p.of("tool_result"))
            call, result = p.of("tool_call")[0], p.of("tool_result")[0]
            assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {
                "city": "Paris"
            }
            assert result["ok"] and '"temperature": 21' in result["text"]
            reply = await p.wait(
                lambda: [a for a in p.of("assistant") if "21 degrees" in a["text"]]
            )
            assert "Paris" in reply[0]["text"]
            await p.wait(lambda: p.audio_bytes > 0)
            assert p.of("user")[0]["text"] == "what is the weather like"
            conv_id = session[0]["conversation"]
            # the compiled session is shown, and nothing secret is in it
            fields = {row[0] for row in session[0]["explain"]}
            assert {"session.instructions", "session.tools[0].name"} <= fields
            async with http.get(f"{served.base}/api/conversations/{conv_id}/transcript.txt") as r:
                assert r.status == 200 and "21 degrees" in await r.text()
            async with http.get(f"{served.base}/api/conversations/{conv_id}/trace.jsonl") as r:
                lines = (await r.text()).splitlines()
                assert any('"conversation.item.create"' in line for line in lines)
                key = served.host._emulator_target.api_key
                assert key and all(key not in line for line in lines)
                assert key not in json.dumps(p.events)  # nor anything the page was sent
        assert await served.host.wait_idle(5.0)


async def test_a_profile_that_fails_check_shows_its_problems(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as p:
        await p.send({"type": "start", "profile": "broken"})
        problems = (await p.wait(lambda: p.of("problems")))[0]["problems"]
        assert problems and problems[0]["location"].startswith(str(tmp_path / "profiles"))
        assert any(pr["line"] for pr in problems) and all(pr["message"] for pr in problems)
        assert served.host.active == 0 and not p.of("session")


async def test_hot_reload_affects_the_next_conversation(tmp_path: Path) -> None:
    profiles = write_profiles(tmp_path)
    async with serving(tmp_path) as served:
        async with page(served) as p:
            await p.send({"type": "start", "profile": "weather"})
            await p.wait(lambda: p.of("session"))
            await p.send({"type": "text", "text": "weather please"})
            await p.wait(lambda: p.of("tool_result"))
            assert '"temperature": 21' in p.of("tool_result")[0]["text"]
        write_tool(profiles, 35)  # the plugin changes between conversations
        async with page(served) as p:
            await p.send({"type": "start", "profile": "weather"})
            await p.wait(lambda: p.of("session"))
            await p.send({"type": "text", "text": "weather please"})
            await p.wait(lambda: p.of("tool_result"))
            assert '"temperature": 35' in p.of("tool_result")[0]["text"]
        (profiles / "weather.yaml").write_text(
            (profiles / "weather.yaml").read_text() + "temperature_typo: 1\n"
        )
        async with page(served) as p:
            await p.send({"type": "start", "profile": "weather"})
            problems = (await p.wait(lambda: p.of("problems")))[0]["problems"]
            assert any("temperature_typo" in pr["message"] for pr in problems)


async def test_bad_input_gets_an_error_and_the_conversation_goes_on(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as other, page(served) as p:
        await other.send({"type": "start", "profile": "weather"})
        await p.send({"type": "start", "profile": "weather"})
        await p.wait(lambda: p.of("session"))
        await other.wait(lambda: other.of("session"))
        await p.ws.send_str("{not json")
        await p.send({"type": "launch_missiles"})
        await p.send({"type": "text"})  # no text field
        await p.ws.send_bytes(b"\x01\x02\x03")  # not whole samples
        await p.ws.send_bytes(bytes(24000 * 2))  # a whole second: over the frame bound
        await p.ws.send_bytes(bytes(70 * 1024))  # over the message size bound
        await p.send({"type": "format", "rate": 44100})
        await p.wait(lambda: len(p.of("error")) >= 7)
        texts = " | ".join(e["text"] for e in p.of("error"))
        for expected in (
            "not JSON",
            "unknown message type",
            "malformed text",
            "whole 16-bit samples",
            "outside 10-200 ms",
            "byte limit",
            "44100 Hz",
        ):
            assert expected in texts
        # still the same conversation, still answering, and the other page saw none of it
        await p.send({"type": "text", "text": "I typed this"})
        await p.wait(lambda: [a for a in p.of("assistant") if "You typed that" in a["text"]])
        assert not other.of("error") and served.host.active == 2
        await other.send({"type": "text", "text": "typed too"})
        await other.wait(lambda: other.of("assistant"))


async def test_a_vanished_page_frees_its_session(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(served.base + "/ws", origin=served.base)
            await ws.send_str(json.dumps({"type": "start", "profile": "weather"}))
            while True:  # until the conversation is up
                msg = await asyncio.wait_for(ws.receive(), 20)
                if msg.type == aiohttp.WSMsgType.TEXT and '"session"' in msg.data:
                    break
            assert served.host.active == 1
            transport = ws._response.connection.transport  # gone without a closing handshake
            assert transport is not None
            transport.abort()
            await ws.close()  # the client side's own bookkeeping; the server saw an abort
        assert await served.host.wait_idle(5.0), "the session was not freed within 5 s"
        assert served.host.active == 0


async def test_capacity_refusal_and_readiness(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path, max_conversations=1) as served, aiohttp.ClientSession() as http:
        async with page(served) as first, page(served) as second:
            await first.send({"type": "start", "profile": "weather"})
            await first.wait(lambda: first.of("session"))
            async with http.get(served.base + "/readyz") as r:
                assert r.status == 503
            await second.send({"type": "start", "profile": "weather"})
            refused = (await second.wait(lambda: second.of("refused")))[0]
            assert refused["reason"] == "capacity"
        assert await served.host.wait_idle(5.0)
        async with http.get(served.base + "/readyz") as r:
            assert r.status == 200


async def test_the_token_is_checked_on_page_socket_and_downloads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_profiles(tmp_path)
    token = "a-test-token-of-enough-length"
    async with serving(tmp_path, token=token) as served, aiohttp.ClientSession() as http:
        assert served.url.endswith(f"?token={token}")
        async with http.get(served.base + "/") as r:
            assert r.status == 401
        async with http.get(served.base + "/?token=wrong-token-wrong-token") as r:
            assert r.status == 401
        async with http.get(served.url) as r:
            assert r.status == 200 and "vlrun console" in await r.text()
        async with http.get(served.base + "/api/conversations/x/trace.jsonl") as r:
            assert r.status == 401
        try:
            await http.ws_connect(served.base + "/ws?token=nope")
            raise AssertionError("the socket accepted a wrong token")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
        try:
            await http.ws_connect(
                served.base + f"/ws?token={token}", headers={"Origin": "http://evil.example"}
            )
            raise AssertionError("the socket accepted a foreign origin")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 403
        async with page(served, token=token) as p:
            assert p.of("hello")
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refusals) == 5 and any("origin" in r for r in refusals)
    assert all(token not in r and "wrong-token" not in r for r in refusals)


async def test_drain_refuses_new_conversations_and_ends_the_running_ones(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with (
        serving(tmp_path) as served,
        aiohttp.ClientSession() as http,
        page(served) as p,
        page(served) as late,
    ):
        await p.send({"type": "start", "profile": "weather"})
        await p.wait(lambda: p.of("session"))
        drain = asyncio.create_task(served.host.drain(0.5))
        await p.wait(lambda: p.of("ended"))
        assert any("shutting down" in n["text"] for n in p.of("notice"))
        await asyncio.wait_for(drain, 15)
        assert served.host.active == 0
        async with http.get(served.base + "/readyz") as r:
            assert r.status == 503 and (await r.json())["draining"] is True
        await late.send({"type": "start", "profile": "weather"})
        refused = (await late.wait(lambda: late.of("refused")))[0]
        assert refused["reason"] == "draining"


MANUAL_PROFILE = """\
name: manual
description: Push-to-talk.
instructions: Reply briefly.
voice: en-US-AvaNeural
turn_detection: manual
"""


async def test_push_to_talk_with_a_manual_turn_profile(tmp_path: Path) -> None:
    profiles = write_profiles(tmp_path)
    (profiles / "manual.yaml").write_text(MANUAL_PROFILE)
    async with serving(tmp_path) as served, page(served) as p:
        await p.send({"type": "start", "profile": "manual"})
        session = (await p.wait(lambda: p.of("session")))[0]
        assert session["push_to_talk"] is True
        await p.send({"type": "talk"})
        tone = (np.sin(np.arange(960) / 24000 * 2 * np.pi * 300) * 8000).astype("<i2")
        for _ in range(15):  # 600 ms of audio in 40 ms frames
            await p.ws.send_bytes(tone.tobytes())
        await p.send({"type": "talk"})
        for _ in range(3):  # the page's mic goes on streaming; the turn ends at a frame
            await p.ws.send_bytes(bytes(1920))
        commit = await p.wait(lambda: [e for e in p.of("timeline") if e["event"] == "commit"])
        assert commit
        await p.wait(lambda: p.of("assistant"))
        assert p.audio_bytes > 0


async def test_an_endpoint_instead_of_the_embedded_emulator(tmp_path: Path, emulator: Any) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path, endpoint=emulator.endpoint) as served, page(served) as p:
        hello = p.of("hello")[0]
        assert hello["embedded"] is False and emulator.endpoint in hello["target"]
        await p.send({"type": "start", "profile": "weather"})
        await p.wait(lambda: p.of("session"))
        await p.send({"type": "text", "text": "hello from the page"})
        reply = await p.wait(lambda: p.of("assistant"))
        assert "hello from the page" in reply[0]["text"]  # the emulator's built-in echo


async def test_a_profile_is_compiled_off_the_loop_and_once_while_unchanged(tmp_path: Path) -> None:
    """Loading, checking and compiling a profile and importing its tools is blocking work: it
    runs in a worker thread, and a second conversation on unchanged files reuses it."""
    profiles = write_profiles(tmp_path)
    marks = tmp_path / "imports.txt"
    tool = profiles / "tools" / "get_weather.py"
    tool.write_text(
        "import threading\n"
        f"with open({str(marks)!r}, 'a') as f:\n"
        "    f.write(threading.current_thread().name + '\\n')\n" + tool.read_text()
    )
    async with serving(tmp_path) as served:
        for _ in range(2):
            async with page(served) as p:
                await p.send({"type": "start", "profile": "weather"})
                await p.wait(lambda: p.of("session"))
    imported_in = marks.read_text().split()
    assert len(imported_in) == 1  # imported once: the second conversation reused it
    assert imported_in[0] != "MainThread"  # never on the event loop's thread
