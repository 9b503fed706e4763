"""What the live-session regression and interleaving tests share: a LiveSession built straight
from a session.update against the emulator, a microphone the test speaks into, and tones the
emulator's VAD hears as speech."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
from azure.core.credentials import AzureKeyCredential

from runner.live.audio import FRAME_MS, AudioFormat, ClockPlayer
from runner.live.connect import Target
from runner.live.session import LiveSession
from runner.live.transcript import Transcript, Turn

FMT = AudioFormat(24000)
KEY = "live-harness-key-0123456789"


def session_update(registry: Any = None, *, vad: bool = True, **extra: Any) -> dict[str, Any]:
    """A session.update with the registry's tools; server VAD so a tone is a spoken turn."""
    session: dict[str, Any] = {
        "modalities": ["text", "audio"],
        "turn_detection": (
            {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 100,
                "silence_duration_ms": 200,
            }
            if vad
            else None
        ),
        "tools": [spec.definition() for spec in registry] if registry is not None else [],
        **extra,
    }
    return {"type": "session.update", "session": session}


def tone(ms: int, amplitude: int = 8000) -> bytes:
    n = FMT.rate * ms // 1000
    t = np.arange(n) / FMT.rate
    return (amplitude * np.sin(2 * math.pi * 440 * t)).astype("<i2").tobytes()


class LiveMic:
    """A microphone fed by the test: real-time 20 ms frames, silence unless told."""

    live = True
    fmt = FMT

    def __init__(self) -> None:
        self.pending = bytearray()
        self.closed = False

    def say(self, pcm: bytes) -> None:
        self.pending += pcm

    async def frames(self) -> AsyncIterator[bytes]:
        step = FMT.frame_bytes
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not self.closed:
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))
            frame, self.pending[:step] = bytes(self.pending[:step]), b""
            yield frame + bytes(step - len(frame))

    def close(self) -> None:
        self.closed = True


class Harness:
    """A LiveSession plus ways to wait for what it records."""

    def __init__(self, session: LiveSession, transcript: Transcript) -> None:
        self.session = session
        self.transcript = transcript
        self.task: asyncio.Task[int] | None = None
        self._waiters: list[tuple[Callable[[Turn], bool], asyncio.Future[Turn]]] = []
        transcript.listeners.append(self._on_turn)

    def _on_turn(self, turn: Turn) -> None:
        for pred, fut in list(self._waiters):
            if not fut.done() and pred(turn):
                fut.set_result(turn)

    async def turn(self, pred: Callable[[Turn], bool], timeout: float = 10) -> Turn:
        for t in self.transcript.turns:
            if pred(t):
                return t
        fut: asyncio.Future[Turn] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await asyncio.wait_for(fut, timeout)

    def start(self) -> asyncio.Task[int]:
        self.task = asyncio.create_task(self.session.run())
        return self.task

    async def stop(self, timeout: float = 10) -> int:
        self.session.stop()
        assert self.task is not None
        return await asyncio.wait_for(self.task, timeout)

    @property
    def err(self) -> str:
        return self.transcript.err.getvalue()  # type: ignore[attr-defined,no-any-return]

    def technical(self) -> str:
        self.transcript.close()
        assert self.transcript.technical_path is not None
        return self.transcript.technical_path.read_text(encoding="utf-8")


def build(
    endpoint: str,
    tmp: Path,
    *,
    registry: Any = None,
    update: dict[str, Any] | None = None,
    **options: Any,
) -> Harness:
    transcript = Transcript(
        logs_dir=tmp / "logs",
        trace_path=tmp / "trace.jsonl",
        out=io.StringIO(),
        err=io.StringIO(),
        name="harness",
    )
    options.setdefault("player", ClockPlayer(FMT, realtime=False))
    options.setdefault("lines", False)
    options.setdefault("backoff_s", 0.02)
    session = LiveSession(
        target=Target(endpoint, "test", KEY, "test", "gpt-realtime"),
        endpoint=endpoint,
        credential=AzureKeyCredential(KEY),
        session_update=update or session_update(registry),
        transcript=transcript,
        registry=registry,
        **options,
    )
    return Harness(session, transcript)


def is_assistant(text: str) -> Callable[[Turn], bool]:
    return lambda t: t.role == "assistant" and text in t.text


def outputs(record: Any) -> list[dict[str, Any]]:
    """The function_call_output items a client sent on one emulated connection."""
    return [
        e["item"]
        for e in record.received
        if e["type"] == "conversation.item.create"
        and e.get("item", {}).get("type") == "function_call_output"
    ]


def issued_calls(record: Any) -> set[str]:
    """The call ids the emulator issued on one connection."""
    return {
        str(e["call_id"])
        for e in record.sent
        if e["type"] == "response.function_call_arguments.done"
    }
