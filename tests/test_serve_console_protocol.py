"""What the console page needs from `vlrun serve`, from a Python client: one clock for the
conversation picture, mocked tools said as such, the favicon, and a page that never turns
server text into markup."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from runner.serve import browser
from tests.browser.harness import (
    WEATHER_MOCKS,
    page,
    serving,
    write_offline_tool,
    write_profiles,
)


async def test_the_favicon_answers_instead_of_a_404(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        async with http.get(served.base + "/favicon.ico") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("image/svg+xml")
            assert (await r.text()).lstrip().startswith("<svg")
        # served under the same Host rule as the rest: a rebound name is refused
        async with http.get(served.base + "/favicon.ico", headers={"Host": "evil.test"}) as r:
            assert r.status == 403


async def test_offline_the_tool_fails_and_the_page_hears_it_is_not_mocked(tmp_path: Path) -> None:
    profiles = write_profiles(tmp_path)
    write_offline_tool(profiles)
    async with serving(tmp_path) as served, page(served) as p:
        assert p.of("hello")[0]["mock_tools"] is None
        await p.send({"type": "start", "profile": "weather"})
        session = (await p.wait(lambda: p.of("session")))[0]
        assert session["mocks"] is None
        await p.send({"type": "text", "text": "what is the weather like"})
        result = (await p.wait(lambda: p.of("tool_result")))[0]
        assert result["ok"] is False and result["mocked"] is False
        assert "could not be reached" in result["text"]


async def test_a_mocks_file_answers_the_offline_tool_and_the_page_says_so(tmp_path: Path) -> None:
    profiles = write_profiles(tmp_path)
    write_offline_tool(profiles)  # the plugin would fail: only the mock can answer
    async with serving(tmp_path, mock_tools=WEATHER_MOCKS) as served, page(served) as p:
        # the file's name, never its folder
        assert p.of("hello")[0]["mock_tools"] == "weather.mocks.yaml"
        await p.send({"type": "start", "profile": "weather"})
        session = (await p.wait(lambda: p.of("session")))[0]
        assert session["mocks"] == {"file": "weather.mocks.yaml", "tools": ["get_weather"]}
        await p.send({"type": "text", "text": "what is the weather like"})
        result = (await p.wait(lambda: p.of("tool_result")))[0]
        assert result["ok"] is True and result["mocked"] is True
        assert "partly cloudy" in result["text"]
        # the mock's delay_ms is the call's duration, as the picture draws it
        assert result["duration_ms"] >= 250
        assert str(WEATHER_MOCKS.parent) not in repr(p.events)


async def test_every_conversation_event_is_on_one_clock(tmp_path: Path) -> None:
    """The picture lays turns, replies and tool calls on the server's t_ms: every message
    that places something on the axis carries it, from one clock (never going back)."""
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as p:
        await p.send({"type": "start", "profile": "weather"})
        await p.wait(lambda: p.of("session"))
        await p.send({"type": "text", "text": "what is the weather like"})
        await p.wait(lambda: p.of("assistant") and p.of("audio_item"))
        placed = {"user", "tool_call", "tool_result", "audio_item", "assistant", "timeline"}
        stamped = [e for e in p.events if e["type"] in placed]
        assert {e["type"] for e in stamped} == placed
        assert all(isinstance(e.get("t_ms"), int | float) for e in stamped), stamped
        times = [e["t_ms"] for e in stamped]
        assert times == sorted(times), stamped
        call, result = p.of("tool_call")[0], p.of("tool_result")[0]
        assert call["t_ms"] <= result["t_ms"] <= p.of("audio_item")[0]["t_ms"]


_MARKUP_SINKS = re.compile(
    r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|\beval\(|new Function\("
)


def test_the_page_never_turns_server_text_into_markup() -> None:
    """Server text reaches the DOM as text only: no shipped script uses a markup sink."""
    scripts = sorted([*browser.STATIC.glob("*.js"), *browser.SHARED_STATIC.glob("*.js")])
    assert {"app.js", "picture.js", "wave.js", "timeline.js"} <= {s.name for s in scripts}
    for script in scripts:
        found = _MARKUP_SINKS.findall(script.read_text())
        assert not found, f"{script.name} uses {found}"


async def test_the_console_draws_with_the_html_reports_drawing(tmp_path: Path) -> None:
    """One drawing: the page loads runner/scenarios/static/timeline.js (and its stylesheet),
    the file `vlrun test`'s HTML report draws with, and keeps no drawing code of its own."""
    write_profiles(tmp_path)
    shared = browser.SHARED_STATIC
    async with serving(tmp_path) as served, aiohttp.ClientSession() as http:
        for name, kind in (("timeline.js", "text/javascript"), ("timeline.css", "text/css")):
            async with http.get(f"{served.base}/static/{name}") as r:
                assert r.status == 200 and r.content_type == kind
                assert await r.read() == (shared / name).read_bytes()
        async with http.get(served.base + "/") as r:
            page_html = await r.text()
    assert 'href="static/timeline.css"' in page_html and 'class="timeline"' in page_html
    picture = (browser.STATIC / "picture.js").read_text()
    assert 'import { drawTimeline } from "./timeline.js";' in picture
    assert "createElementNS" not in picture and "drawTimeline(this.svg" in picture
    assert not (browser.STATIC / "timeline.js").exists()  # no second copy to drift
    style = (browser.STATIC / "style.css").read_text()
    assert ".speech {" not in style.replace(".key.speech {", "")  # the marks' styles are shared


RESERVE = """\
name: reserve
instructions: You take table reservations.
voice: en-US-AvaNeural
flow:
  start: ask
  nodes:
    ask:
      instructions: Ask for the guest's name and party size.
      collect:
        guest: {type: string}
        size: {type: integer, enum: [2, 4, 6]}
      transitions:
        - {to: confirm}
    confirm:
      instructions: Confirm a table for {{ size }} under {{ guest }}.
      collect:
        confirmed: {type: boolean}
      transitions:
        - {to: done, when: confirmed}
        - {to: ask}
    done:
      end: true
      goodbye: {text: "Booked for {{ guest }}."}
"""

RESERVE_SCRIPT = """\
description: A guest gives a name and party size.
turns:
  - match: "(?i)ann"
    tools:
      - name: record_ask
        arguments: {guest: Ann, size: 2}
    then: A table for two under Ann?
"""


async def test_flow_nodes_reach_the_picture(tmp_path: Path) -> None:
    """The flow lane: the node a conversation starts in, then each node it enters."""
    profiles = write_profiles(tmp_path)
    (profiles / "reserve.yaml").write_text(RESERVE)
    (tmp_path / "script.yaml").write_text(RESERVE_SCRIPT)
    async with serving(tmp_path) as served, page(served) as p:
        await p.send({"type": "start", "profile": "reserve"})
        session = (await p.wait(lambda: p.of("session")))[0]
        assert session["node"] == "ask"
        await p.send({"type": "text", "text": "Ann, two people"})
        nodes = await p.wait(lambda: [e for e in p.of("timeline") if e["event"] == "node"])
        assert nodes[0]["node"] == "confirm" and isinstance(nodes[0]["t_ms"], int)
