"""api-version v1 composes the OpenAI GA server events (azure-rest-api-specs
VoiceLive/v1/events.tsp): the runner handles response.output_audio.delta,
response.output_audio_transcript.*, response.output_text.* and conversation.item.added as it
does their dated names. Unit level: the emulator sends the dated names, so a scripted connection
(the session's own ``opener`` seam) plays the GA ones."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runner.live.audio import AudioFormat, ClockPlayer
from runner.live.connect import Target
from runner.live.session import LiveSession
from runner.live.transcript import Transcript

PCM = bytes(4800)  # 100 ms at 24 kHz


def _ga_reply(kind: str) -> list[dict[str, Any]]:
    base = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0}
    text = "text" if kind == "text" else "audio_transcript"
    events: list[dict[str, Any]] = [
        {"type": "session.updated", "session": {"id": "sess_ga"}},
        {"type": "response.created", "response": {"id": "resp_1"}},
        {"type": "conversation.item.added", "item": {"id": "item_1", "type": "message"}},
        {"type": f"response.output_{text}.delta", **base, "delta": "Hello"},
        {"type": f"response.output_{text}.delta", **base, "delta": " there"},
    ]
    if kind == "audio":
        events.append(
            {"type": "response.output_audio.delta", **base, "delta": base64.b64encode(PCM).decode()}
        )
    done = {"transcript": "Hello there"} if kind == "audio" else {"text": "Hello there"}
    events += [
        {"type": f"response.output_{text}.done", **base, **done},
        {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}},
    ]
    return events


class _Conn:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        for event in events:
            self.queue.put_nowait(json.dumps(event).encode())
        self.sent: list[Any] = []

    async def recv_bytes(self) -> bytes:
        return await self.queue.get()

    async def send(self, event: Any) -> None:
        self.sent.append(event)


@pytest.mark.parametrize("kind", ["audio", "text"])
async def test_ga_named_events_are_handled_as_their_dated_twins(kind: str) -> None:
    conn = _Conn(_ga_reply(kind))

    @contextlib.asynccontextmanager
    async def opener(*args: Any, **kwargs: Any) -> AsyncIterator[_Conn]:
        yield conn

    player = ClockPlayer(AudioFormat(24000), realtime=False)
    out = io.StringIO()
    session = LiveSession(
        target=Target("http://127.0.0.1:9", "test", "k", "test", "gpt-realtime"),
        endpoint="http://127.0.0.1:9",
        credential=None,
        session_update={"type": "session.update", "session": {"type": "realtime"}},
        transcript=Transcript(out=out, err=io.StringIO()),
        player=player,
        lines=False,
        opener=opener,
        handle_signals=False,
    )
    task = asyncio.create_task(session.run())
    turn = session.turn
    assert await turn.until(lambda: turn.responses_ended >= 1, 5)
    session.stop()
    await asyncio.wait_for(task, 5)
    (reply,) = [t for t in session.transcript.turns if t.role == "assistant"]
    assert reply.text == "Hello there" and not reply.interrupted
    assert out.getvalue() == "assistant: Hello there\n"
    assert session.received_ms("item_1") == (100.0 if kind == "audio" else 0.0)
