"""The emulator's own work is bounded: a reply stops at the token cap, as the service's does,
so a hostile 900 kB turn cannot make it synthesise hours of speech."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]


async def _reply(endpoint: str, session: dict[str, Any], text: str) -> dict[str, Any]:
    url = endpoint.replace("http", "ws", 1) + "/voice-live/realtime?model=gpt-realtime"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers={"api-key": "k"}, max_msg_size=0) as ws,
    ):
        await ws.send_json({"type": "session.update", "session": session})
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        await ws.send_json({"type": "conversation.item.create", "item": item})
        await ws.send_json({"type": "response.create"})
        while True:
            event = json.loads((await ws.receive(timeout=30)).data)
            assert event["type"] != "error", event
            if event["type"] == "response.done":
                return dict(event["response"])


async def test_a_reply_stops_at_max_response_output_tokens(emulator: Any) -> None:
    session = {"modalities": ["text"], "max_response_output_tokens": 8}
    done = await _reply(emulator.endpoint, session, "tell me " * 20)
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    (part,) = done["output"][0]["content"]
    assert len(part["text"]) == 8 * 4  # four characters per token, the emulator's rate
    short = await _reply(emulator.endpoint, session, "hi")
    assert short["status"] == "completed"


@pytest.mark.timeout(120)
def test_a_900_kb_turn_is_answered_within_a_memory_bound(tmp_path: Path) -> None:
    """Resource limit, not a timing: 1 GiB of address space for the whole emulator process."""
    code = textwrap.dedent(
        f"""
        import asyncio, resource, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from runner.emulator import emulator_thread
        from test_emulator_limits import _reply
        with emulator_thread(speed=0, use_espeak=False) as emu:
            done = asyncio.run(_reply(emu.endpoint, {{}}, "word " * 180_000))
        print(done["status"], done["status_details"]["reason"])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=110, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["incomplete", "max_output_tokens"]
