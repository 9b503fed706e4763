"""Helpers shared by several test modules: the CLI as a subprocess, the SDK against the emulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from azure.ai.voicelive.aio import VoiceLiveConnection
from azure.ai.voicelive.models import InputTextContentPart, ServerEvent, UserMessageItem

ROOT = Path(__file__).resolve().parent.parent
# A function tool as a client declares it in session.update (no plugin behind it).
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# An MCP server whose calls the runner asks the user to approve (the emulator's docs server
# offers search_docs; "search the docs" in a turn calls it).
MCP_APPROVAL_PROFILE = """\
name: mcp-approval
connection:
  api_version: 2026-04-10
mcp_servers:
  - label: docs
    url: https://mcp.example.com/mcp
    allowed_tools: [search_docs]
    approval: ask
"""


EXAMPLE_TOOLS = [  # the plugins in tools/, in name order
    "book_table",
    "calculate",
    "current_time",
    "get_weather",
    "open_ticket",
    "verify_identity",
]


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGS`` in the repository, offline: no .env, no Azure endpoint."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "VLRUN_DOTENV": "none",
            "AZURE_VOICELIVE_ENDPOINT": "",
            **(env or {}),
        },
    )


async def events_until(
    conn: VoiceLiveConnection, kind: str, timeout: float = 10
) -> list[ServerEvent]:
    """Every server event up to and including the first of type ``kind``."""
    out: list[ServerEvent] = []

    async def read() -> None:
        while True:
            event = await conn.recv()
            out.append(event)
            if event.type == kind:
                return

    await asyncio.wait_for(read(), timeout)
    return out


async def say_text(conn: VoiceLiveConnection, text: str) -> None:
    """A user text message, then response.create."""
    await conn.conversation.item.create(
        item=UserMessageItem(content=[InputTextContentPart(text=text)])
    )
    await conn.response.create()


async def serve_on_loopback(handler: Any, path: str = "/") -> tuple[Any, int]:
    """An aiohttp app with one GET route on a free loopback port: (its runner, the port).
    The caller cleans the runner up."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
