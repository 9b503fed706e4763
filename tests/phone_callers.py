"""Simulated phone callers: what Twilio and ACS do on a media WebSocket, frame by frame.

Each caller streams its microphone as real-time 20 ms frames (silence unless told to speak)
and plays what it receives into a simulated ear: a play-out clock at real time, so it knows what
the caller has *heard*. The Twilio caller echoes each mark once the audio queued before it has
played, and on ``clear`` drops its buffer and answers the pending marks at once (what Twilio
does); the ACS caller drops its buffer on ``StopAudio``. The tests, the load-balancer test and
the benchmark share them. The sleeps in here are the simulated devices' clocks (a caller speaks
and hears at real time), never a wait for the server.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import math
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner import g711

FRAME_MS = 20


def tone(ms: int, rate: int, amplitude: int = 8000, freq: float = 440.0) -> bytes:
    """PCM16 mono: a tone the emulator's VAD hears as speech."""
    n = rate * ms // 1000
    t = np.arange(n) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()


def mulaw_tone(ms: int, amplitude: int = 8000) -> bytes:
    return g711.encode(tone(ms, 8000, amplitude), "ulaw")


@dataclass
class Ear:
    """What a caller heard: arrival times, the play-out clock, gaps."""

    bytes_per_ms: float
    jitter_s: float = 0.06  # the provider's play-out buffer: a frame later than this is a gap
    received: bytearray = field(default_factory=bytearray)
    arrivals: list[float] = field(default_factory=list)
    play_end: float = 0.0
    deadline: float | None = None  # when the next frame must arrive to play without a gap
    gaps: int = 0
    gap_at: list[float] = field(default_factory=list)  # when each gap was heard
    gap_ms: float = 0.0  # silence heard inside replies, in total
    cleared_at: list[float] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def until_heard(self, ms: float, timeout: float = 10.0) -> None:
        """Wait until ``ms`` of audio has arrived, then until it has played (the ear's clock)."""

        async def wait() -> None:
            while len(self.received) / self.bytes_per_ms < ms:
                self.arrived.clear()
                await self.arrived.wait()
            # then the play-out clock (a device's time, not a wait for the server)
            await asyncio.sleep(max(0.0, ms - self.heard_ms()) / 1000 + 0.001)

        await asyncio.wait_for(wait(), timeout)

    def hear(self, audio: bytes) -> None:
        self.arrived.set()
        now = time.monotonic()
        self.arrivals.append(now)
        # A frame was due (the last one had played) and nothing was there: a gap the caller
        # heard, inside a reply (a longer silence is the pause before the next reply).
        if self.deadline is not None and now > self.deadline and now < self.play_end + 0.5:
            self.gaps += 1
            self.gap_at.append(now)
            self.gap_ms += (now - self.deadline) * 1000
        if now >= self.play_end:  # idle: a new talk spurt starts after the jitter buffer
            self.play_end = now + self.jitter_s
        self.play_end += len(audio) / self.bytes_per_ms / 1000
        self.deadline = self.play_end
        self.received += audio

    def clear(self) -> None:
        now = time.monotonic()
        self.cleared_at.append(now)
        self.play_end = now
        self.deadline = None

    def heard_ms(self) -> float:
        """Audio played so far (the play-out clock, not what merely arrived)."""
        unplayed = max(0.0, self.play_end - time.monotonic()) * 1000
        return max(0.0, len(self.received) / self.bytes_per_ms - unplayed)


class _Caller:
    """The microphone side every caller shares: 20 ms frames, silence unless told."""

    frame_bytes = 160
    silence = b"\xff" * 160

    def __init__(self) -> None:
        self.pending = bytearray()
        self.ws: Any = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._got: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self.frames_sent = 0

    def say(self, audio: bytes) -> None:
        self.pending += audio

    async def open_socket(self, url: str, headers: dict[str, str]) -> Any:
        """The media socket, as the provider opens it (websockets' client)."""
        import websockets

        return await websockets.connect(url, additional_headers=headers, max_size=2**20)

    async def got(self, kind: str, timeout: float = 10) -> None:
        await asyncio.wait_for(self._got[kind].wait(), timeout)

    def _note(self, kind: str) -> None:
        self._got[kind].set()

    async def _mic(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not self.closed.is_set():
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))
            frame = bytes(self.pending[: self.frame_bytes])
            del self.pending[: self.frame_bytes]
            frame += self.silence[: self.frame_bytes - len(frame)]
            with contextlib.suppress(Exception):  # the server may close between frames
                await self.send_frame(frame)
                self.frames_sent += 1

    async def send_frame(self, frame: bytes) -> None:
        raise NotImplementedError

    async def send_json(self, data: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(data))

    async def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(Exception):
            await self.ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class TwilioCaller(_Caller):
    """Twilio's side of ``<Connect><Stream>``: μ-law 8 kHz, marks, clear, dtmf, stop."""

    def __init__(self, call_sid: str | None = None) -> None:
        super().__init__()
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.ear = Ear(bytes_per_ms=8)
        self.seq = 0
        self.marks_echoed: list[str] = []
        self.mark_at: dict[str, float] = {}  # mark -> ms of audio received before it
        self.clears = 0
        self._marks: collections.deque[tuple[float, str]] = collections.deque()
        self._mark_wake = asyncio.Event()

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def connect(
        self,
        url: str,
        parameters: dict[str, str],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.ws = await self.open_socket(url, headers or {})
        await self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send_json(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "start": {
                    "streamSid": self.stream_sid,
                    "accountSid": "AC" + "0" * 32,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        self.tasks = [
            asyncio.create_task(self._mic()),
            asyncio.create_task(self._receive()),
            asyncio.create_task(self._echo_marks()),
        ]

    async def send_frame(self, frame: bytes) -> None:
        chunk = self.frames_sent + 1
        await self.send_json(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "media": {
                    "track": "inbound",
                    "chunk": str(chunk),
                    "timestamp": str(chunk * FRAME_MS),
                    "payload": base64.b64encode(frame).decode(),
                },
            }
        )

    async def dtmf(self, digit: str) -> None:
        await self.send_json(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def stop(self) -> None:
        await self.send_json(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid},
            }
        )

    async def _receive(self) -> None:
        try:
            async for raw in self.ws:
                data = json.loads(raw)
                self.messages.append(data)
                event = data.get("event")
                assert data.get("streamSid") == self.stream_sid, data
                if event == "media":
                    self.ear.hear(base64.b64decode(data["media"]["payload"]))
                elif event == "mark":
                    self.mark_at[data["mark"]["name"]] = len(self.ear.received) / 8
                    # echoed once everything queued before it has played
                    self._marks.append(
                        (max(self.ear.play_end, time.monotonic()), data["mark"]["name"])
                    )
                    self._mark_wake.set()
                elif event == "clear":
                    self.clears += 1
                    self.ear.clear()
                    while self._marks:  # what Twilio does with marks of discarded audio
                        _, name = self._marks.popleft()
                        await self._echo(name)
                self._note(str(event))
        finally:
            self.close_code = getattr(self.ws, "close_code", None)
            self.closed.set()

    async def _echo(self, name: str) -> None:
        self.marks_echoed.append(name)
        with contextlib.suppress(Exception):
            await self.send_json(
                {
                    "event": "mark",
                    "sequenceNumber": self._next(),
                    "streamSid": self.stream_sid,
                    "mark": {"name": name},
                }
            )

    async def _echo_marks(self) -> None:
        while not self.closed.is_set():
            if not self._marks:
                self._mark_wake.clear()
                await self._mark_wake.wait()
                continue
            due, name = self._marks[0]
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.02))  # the ear's clock
                continue
            self._marks.popleft()
            await self._echo(name)


def parse_twiml(xml: str) -> tuple[str, dict[str, str]]:
    """The stream URL and parameters of a ``<Connect><Stream>`` answer."""
    root = ET.fromstring(xml)
    stream = root.find("./Connect/Stream")
    assert stream is not None, xml
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


class AcsCaller(_Caller):
    """ACS bidirectional media streaming: AudioMetadata, AudioData (PCM16), StopAudio, DtmfData."""

    def __init__(self, rate: int = 16000) -> None:
        super().__init__()
        self.rate = rate
        self.frame_bytes = rate * 2 * FRAME_MS // 1000
        self.silence = bytes(self.frame_bytes)
        self.ear = Ear(bytes_per_ms=rate * 2 / 1000)
        self.stops = 0
        self.participant = "4:+15551110000"

    async def connect(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.ws = await self.open_socket(url, headers or {})
        await self.send_json(
            {
                "kind": "AudioMetadata",
                "audioMetadata": {
                    "subscriptionId": str(uuid.uuid4()),
                    "encoding": "PCM",
                    "sampleRate": self.rate,
                    "channels": 1,
                    "length": self.frame_bytes,
                },
            }
        )
        self.tasks = [asyncio.create_task(self._mic()), asyncio.create_task(self._receive())]

    async def send_frame(self, frame: bytes) -> None:
        await self.send_json(
            {
                "kind": "AudioData",
                "audioData": {
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "participantRawID": self.participant,
                    "data": base64.b64encode(frame).decode(),
                    "silent": not any(frame),
                },
            }
        )

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"kind": "DtmfData", "dtmfData": {"data": digit}})

    async def _receive(self) -> None:
        try:
            async for raw in self.ws:
                data = json.loads(raw)
                self.messages.append(data)
                kind = data.get("Kind") or data.get("kind")
                if kind == "AudioData":
                    self.ear.hear(base64.b64decode(data["AudioData"]["Data"]))
                elif kind == "StopAudio":
                    self.stops += 1
                    self.ear.clear()
                self._note(str(kind))
        finally:
            self.close_code = getattr(self.ws, "close_code", None)
            self.closed.set()
