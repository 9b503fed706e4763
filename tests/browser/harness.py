"""Serving vlrun in the test's event loop, profiles to serve, and a page-like client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from runner.serve.app import ServeOptions, serve
from runner.serve.host import Host, HostOptions

WEATHER_PROFILE = """\
name: weather
description: Answers weather questions with the get_weather tool.
instructions: You are a weather assistant. Call get_weather for weather questions.
voice: en-US-AvaNeural
turn_detection: server_vad
transcription: {model: whisper-1}
tools:
  - name: get_weather
    timeout_s: 5
"""

WEATHER_TOOL = '''\
from runner.plugins import tool


@tool
def get_weather(city: str) -> dict:
    """Current weather for a city."""
    return {{"city": city, "temperature": {temperature}}}
'''

OFFLINE_TOOL = '''\
from runner.plugins import tool


class WeatherError(RuntimeError):
    """As tools/get_weather.py raises it with no network."""


@tool
def get_weather(city: str) -> dict:
    """Current weather for a city."""
    raise WeatherError("the weather service could not be reached (ClientConnectorDNSError)")
'''

#: The shipped mocks file for the weather demo (what `vlrun serve --mock-tools` is given).
WEATHER_MOCKS = Path(__file__).resolve().parents[2] / "tools" / "weather.mocks.yaml"

BROKEN_PROFILE = """\
name: broken
voice: en-US-AvaNeural
turn_detection:
  type: server_vad
  threshold: 7
"""

#: The emulator's script: a spoken turn asks for the weather (a tool call), and the reply is
#: long enough for the person's next words to cut it off.
SCRIPT = """\
description: The browser console's scripted conversation.
turns:
  - match: "(?i)typed"
    say: You typed that.
  - turn: 1
    transcript: What is the weather in Paris?
    match: "(?i)paris"
    tools:
      - name: get_weather
        arguments: {city: Paris}
    then: >-
      It is {output.temperature} degrees in {output.city} today, with a light breeze from the
      west, clear skies all afternoon and a cool evening ahead, so a light jacket will do
      nicely if you go out for a walk along the river after dinner tonight.
  - match: "(?i)weather"
    tools:
      - name: get_weather
        arguments: {city: Paris}
    then: "It is {output.temperature} degrees in {output.city}."
"""


def write_profiles(root: Path, temperature: int = 21) -> Path:
    """A folder of profiles (weather, broken) with a local get_weather plugin; returns it."""
    profiles = root / "profiles"
    (profiles / "tools").mkdir(parents=True, exist_ok=True)
    (profiles / "weather.yaml").write_text(WEATHER_PROFILE)
    (profiles / "broken.yaml").write_text(BROKEN_PROFILE)
    write_tool(profiles, temperature)
    (root / "script.yaml").write_text(SCRIPT)
    return profiles


def write_offline_tool(profiles: Path) -> None:
    """get_weather as it behaves with no network: it fails (WeatherError)."""
    (profiles / "tools" / "get_weather.py").write_text(OFFLINE_TOOL)


def write_tool(profiles: Path, temperature: int) -> None:
    (profiles / "tools" / "get_weather.py").write_text(
        textwrap.dedent(WEATHER_TOOL.format(temperature=temperature))
    )


@dataclass
class Served:
    url: str
    base: str
    host: Host
    options: ServeOptions
    logs: Path


@contextlib.asynccontextmanager
async def serving(
    root: Path,
    *,
    token: str | None = None,
    max_conversations: int = 4,
    speed: float = 0.0,
    heartbeat_s: float = 1.0,
    endpoint: str | None = None,
    mock_tools: Path | None = None,
    paths: list[Path] | None = None,
    offline_mocks: bool = True,
) -> AsyncIterator[Served]:
    """`vlrun serve` on loopback in this loop (embedded emulator running root/script.yaml, or
    its built-in model when there is none), serving root/profiles unless ``paths``."""
    logs = root / "logs"
    script = root / "script.yaml"
    host = Host(
        HostOptions(
            paths=paths or [root / "profiles"],
            logs=logs,
            max_conversations=max_conversations,
            endpoint=endpoint,
            mock_tools=mock_tools,
            offline_mocks=offline_mocks,
            emulator_options={"speed": speed, **({"scenario": script} if script.is_file() else {})},
        )
    )
    options = ServeOptions(port=0, token=token, heartbeat_s=heartbeat_s, drain_timeout_s=2.0)
    stop = asyncio.Event()
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(host, options, started=started.set_result, stop=stop), name="test-serve"
    )
    done, _ = await asyncio.wait({task, started}, timeout=30, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()  # raises what stopped it
    url = started.result()
    base = url.split("?")[0].rstrip("/")
    try:
        yield Served(url, base, host, options, logs)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@dataclass
class Page:
    """A WebSocket client that speaks the page's protocol (as the bench and tests use it)."""

    ws: aiohttp.ClientWebSocketResponse
    events: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="test-page-reader")

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.audio_bytes += len(msg.data)
            self._poke()
        self._poke()

    def _poke(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    async def wait(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait (event driven) until ``predicate()`` is truthy; its value, or AssertionError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (value := predicate()):
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(
                    f"timed out; {self.audio_bytes} audio bytes; events so far: {self.events[-30:]}"
                )
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
        return value

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait({self._reader})


@contextlib.asynccontextmanager
async def page(served: Served, token: str | None = None) -> AsyncIterator[Page]:
    url = served.base + "/ws" + (f"?token={token}" if token else "")
    async with aiohttp.ClientSession() as http, http.ws_connect(url, origin=served.base) as ws:
        client = Page(ws)
        client.start_reading()
        await client.wait(lambda: client.of("hello"))
        try:
            yield client
        finally:
            await client.close()
