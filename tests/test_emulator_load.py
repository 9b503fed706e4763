"""The emulator under load: concurrent SDK sessions, every frame counted, every one answered.

Capacity figures (sessions per core, memory per session) live in bench/; this test only proves
that at a modest count nothing is dropped or mixed up between sessions.
"""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

import numpy as np
import pytest
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential

from runner.emulator import running_emulator

pytestmark = pytest.mark.timeout(90)

SESSIONS = 20
RATE = 24000
FRAME = RATE * 20 // 1000 * 2  # 20 ms of PCM16 mono
KEY = "load-test-key-0123456789"


def spoken_turn(speech_ms: int, silence_ms: int = 600) -> list[bytes]:
    """A tone burst the VAD hears as one turn, then silence, as 20 ms frames."""
    n = RATE * speech_ms // 1000
    t = np.arange(n) / RATE
    pcm = (8000 * np.sin(2 * math.pi * 330 * t)).astype("<i2").tobytes()
    pcm += bytes(RATE * silence_ms // 1000 * 2)
    pcm += bytes(-len(pcm) % FRAME)
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


async def one_session(endpoint: str, index: int) -> dict[str, Any]:
    """Stream one turn; collect the reply. Speech length differs per session (identifies it)."""
    frames = spoken_turn(400 + 20 * index)
    got: dict[str, Any] = {"audio_bytes": 0, "transcript": None, "status": None, "session": ""}
    async with connect(
        endpoint=endpoint, credential=AzureKeyCredential(KEY), model="gpt-realtime"
    ) as conn:
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "modalities": ["text", "audio"],
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                },
            }
        )

        async def pump() -> None:
            for frame in frames:
                await conn.send(
                    {
                        "type": "input_audio_buffer.append",
                        "audio": base64.b64encode(frame).decode("ascii"),
                    }
                )
            # events are handled in order: once this is answered, every frame was processed
            await conn.send({"type": "input_audio_buffer.clear"})

        sender: asyncio.Task[None] | None = None
        cleared = False
        while not (cleared and got["status"]):
            event: Any = await asyncio.wait_for(conn.recv(), 30)
            kind = getattr(event.type, "value", event.type)
            if kind == "session.updated":
                got["session"] = event.session.id
                sender = asyncio.create_task(pump())
            elif kind == "response.audio.delta":
                delta = event.delta
                got["audio_bytes"] += len(
                    base64.b64decode(delta) if isinstance(delta, str) else delta
                )
            elif kind == "response.audio_transcript.done":
                got["transcript"] = event.transcript
            elif kind == "response.done":
                status = event.response.status
                got["status"] = str(getattr(status, "value", status))
            elif kind == "input_audio_buffer.cleared":
                cleared = True
        assert sender is not None
        await sender
    got["frames_sent"] = len(frames)
    return got


async def test_twenty_concurrent_sessions_lose_no_frames_and_all_get_answers() -> None:
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        results = await asyncio.gather(*(one_session(emu.endpoint, i) for i in range(SESSIONS)))
        records = {r.id: r for r in emu.sessions}
        assert len(records) == SESSIONS
        for i, got in enumerate(results):
            assert got["status"] == "completed", f"session {i} was not answered: {got}"
            record = records[got["session"]]
            # every frame the client sent was received and processed by that session, no other
            assert record.stats["frames"] == got["frames_sent"], f"session {i} lost frames"
            appends = [e for e in record.received if e["type"] == "input_audio_buffer.append"]
            assert len(appends) == got["frames_sent"]
            # and every byte of reply audio the emulator sent arrived at the client
            sent_audio = sum(
                len(base64.b64decode(e["delta"]))
                for e in record.sent
                if e["type"] == "response.audio.delta"
            )
            assert got["audio_bytes"] == sent_audio > 0
            # the reply describes this session's own speech, not a neighbour's
            stops = [e["audio_end_ms"] for e in record.sent if e["type"].endswith("speech_stopped")]
            assert len(stops) == 1 and got["transcript"].startswith("[emulator] I heard")
        assert len({g["transcript"] for g in results}) > 1  # lengths differ across sessions
