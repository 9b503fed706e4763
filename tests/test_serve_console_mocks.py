"""Offline, the console answers a profile's tool calls from the profile's own mocks file, as
`vlrun run --mock-tools` would, and the page says so per profile (issue 28: the flagship
weather profile failed offline in the console with `WeatherError ... ClientConnectorDNSError`).

The real server in this loop, the shipped profiles and the shipped tools/weather.mocks.yaml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.serve.host import Host, HostOptions
from tests.browser import chromium
from tests.browser.harness import (
    WEATHER_MOCKS,
    page,
    serving,
    write_offline_tool,
    write_profiles,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "profiles"


def _by_name(hello: dict) -> dict[str, dict]:
    return {p["name"]: p for p in hello["profiles"]}


async def test_the_shipped_weather_profile_answers_offline_from_its_mocks(tmp_path: Path) -> None:
    async with serving(tmp_path, paths=[SHIPPED]) as served, page(served) as p:
        listed = _by_name(p.of("hello")[0])
        # each profile says which mocks file answers it (its name only, never its folder)
        assert listed["weather"]["mocks"] == "weather.mocks.yaml"
        assert listed["casual-chat"]["mocks"] is None
        await p.send({"type": "start", "profile": "weather"})
        session = (await p.wait(lambda: p.of("session")))[0]
        assert session["mocks"] == {"file": "weather.mocks.yaml", "tools": ["get_weather"]}
        await p.send({"type": "text", "text": "What is the weather in Paris?"})
        result = (await p.wait(lambda: p.of("tool_result"), 30))[0]
        assert result["ok"] is True and result["mocked"] is True, result
        assert "partly cloudy" in result["text"]
        answer = await p.wait(
            lambda: next((e for e in p.of("assistant") if "get_weather" in e["text"]), None), 30
        )
        assert "Paris, Île-de-France" in answer["text"] and "°C" in answer["text"]
        assert str(WEATHER_MOCKS.parent) not in repr(p.events)


async def test_a_profile_without_its_own_mocks_file_runs_its_plugin(tmp_path: Path) -> None:
    """Only the profile whose NAME.mocks.yaml exists is mocked; with --no-mocks none is."""
    profiles = write_profiles(tmp_path)
    write_offline_tool(profiles)  # the plugin fails, as offline
    for offline_mocks in (True, False):
        async with (
            serving(tmp_path, offline_mocks=offline_mocks) as served,
            page(served) as p,
        ):
            assert _by_name(p.of("hello")[0])["weather"]["mocks"] is None
        # the profile's own file, beside it in its tools folder
        shutil.copy(WEATHER_MOCKS, profiles / "tools" / "weather.mocks.yaml")
        async with (
            serving(tmp_path, offline_mocks=offline_mocks) as served,
            page(served) as p,
        ):
            listed = _by_name(p.of("hello")[0])
            assert listed["weather"]["mocks"] == ("weather.mocks.yaml" if offline_mocks else None)
            assert listed["broken"]["mocks"] is None
            await p.send({"type": "start", "profile": "weather"})
            session = (await p.wait(lambda: p.of("session")))[0]
            await p.send({"type": "text", "text": "what is the weather like"})
            result = (await p.wait(lambda: p.of("tool_result")))[0]
            if offline_mocks:
                assert result["ok"] and result["mocked"] and "partly cloudy" in result["text"]
                assert session["mocks"]["file"] == "weather.mocks.yaml"
            else:  # --no-mocks: the plugin runs (and fails, as offline)
                assert not result["ok"] and not result["mocked"]
                assert "could not be reached" in result["text"] and session["mocks"] is None
        (profiles / "tools" / "weather.mocks.yaml").unlink()


async def test_a_mock_tools_folder_gives_each_profile_its_own_file(tmp_path: Path) -> None:
    profiles = write_profiles(tmp_path)
    write_offline_tool(profiles)
    folder = tmp_path / "mocks"
    folder.mkdir()
    shutil.copy(WEATHER_MOCKS, folder / "weather.mocks.yaml")
    async with serving(tmp_path, mock_tools=folder) as served, page(served) as p:
        hello = p.of("hello")[0]
        assert hello["mock_tools"] == "mocks/"
        listed = _by_name(hello)
        assert listed["weather"]["mocks"] == "weather.mocks.yaml"
        assert listed["broken"]["mocks"] is None
        await p.send({"type": "start", "profile": "weather"})
        await p.wait(lambda: p.of("session"))
        await p.send({"type": "text", "text": "what is the weather like"})
        result = (await p.wait(lambda: p.of("tool_result")))[0]
        assert result["ok"] and result["mocked"]


async def test_a_broken_mocks_file_is_a_problem_with_its_line(tmp_path: Path) -> None:
    profiles = write_profiles(tmp_path)
    (profiles / "tools" / "weather.mocks.yaml").write_text(
        "mocks:\n  get_weather:\n    delay_ms: soon\n"
    )
    async with serving(tmp_path) as served, page(served) as p:
        await p.send({"type": "start", "profile": "weather"})
        problems = (await p.wait(lambda: p.of("problems")))[0]["problems"]
        assert any(
            q["location"].endswith("weather.mocks.yaml:3:15") and "soon" in q["message"]
            for q in problems
        ), problems


def test_with_an_endpoint_no_mocks_file_is_used_unasked(tmp_path: Path) -> None:
    """A profile's own mocks file is for offline only: a server with a service runs the
    plugins unless --mock-tools says otherwise."""
    host = Host(HostOptions(paths=[SHIPPED]))
    weather = host.find("weather")
    assert host.mocks_for(weather) is None  # not started: no embedded emulator (yet)
    host.embedded = True
    assert host.mocks_for(weather) == ROOT / "tools" / "weather.mocks.yaml"
    host.embedded = False
    host.options.mock_tools = WEATHER_MOCKS
    assert host.mocks_for(weather) == WEATHER_MOCKS


@pytest.mark.skipif(not chromium.available(), reason="needs chromium")
async def test_the_page_says_which_profile_is_mocked(tmp_path: Path) -> None:
    async with (
        serving(tmp_path, paths=[SHIPPED]) as served,
        chromium.chromium(tmp_path / "chrome") as b,
    ):
        await b.open(served.url, 1280, 800)
        await b.wait("document.querySelector('#profile option[value=weather]')")
        badge = (
            "(() => { const m = document.getElementById('mocks');"
            " return m.hidden ? '' : m.textContent; })()"
        )
        pick = (
            "(() => { const s = document.getElementById('profile'); s.value = '{name}';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        assert await b.eval(badge) == ""  # casual-chat, picked first, has none
        await b.eval(pick.replace("{name}", "weather"))
        assert "weather.mocks.yaml" in await b.eval(badge)
        option = await b.eval(
            "(() => { const o = document.querySelector('#profile option[value=weather]');"
            " return `${o.text}|${o.title}`; })()"
        )
        assert "tools mocked" in option and "weather.mocks.yaml" in option
        await b.eval(pick.replace("{name}", "casual-chat"))
        assert await b.eval(badge) == ""
        # started, the weather profile's tool call is answered by its mocks, as the page says
        await b.eval(pick.replace("{name}", "weather"))
        await b.eval("document.getElementById('start').click()")
        await b.wait("!document.getElementById('downloads').hidden", 30)  # the session is up
        await b.eval(
            "document.getElementById('text').value = 'What is the weather in Paris?';"
            "document.getElementById('send').click()"
        )
        await b.wait("document.querySelector('#tool-rows tr[data-mocked=true]')", 40)
        row = await b.eval("document.querySelector('#tool-rows tr').innerText")
        assert "partly cloudy" in row and "mocked" in row
        assert "get_weather" in await b.eval(badge)
