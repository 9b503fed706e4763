"""A naive Voice Live client, written the way quickstart samples usually are (benchmark baseline).

What makes it naive (each is common in samples, and each is what vlrun's design avoids):
- a capture thread does blocking reads into a ``queue.Queue``; an asyncio task *polls* that
  queue (``get_nowait`` + ``sleep(10 ms)``) and sends each chunk;
- received audio goes into another queue; a playback thread polls it and only starts
  playing once several chunks are buffered (to "avoid stutter"), then blocks on
  ``stream.write``;
- no barge-in: ``speech_started`` is printed and nothing else, so the reply keeps playing
  until its buffered audio runs out.

It uses the real SDK and the same PortAudio devices as vlrun (on a headless machine the
PulseAudio null sinks from ``scripts/pulse-env.sh``), so the two are measured on one audio path.

    python bench/baseline_client.py --endpoint http://127.0.0.1:PORT --api-key KEY \
        --duration 60 --json out.json

It records, like vlrun's bench, the time from the first audio delta of each reply to the start
of its first device write, and from ``speech_started`` (while a reply is audible) to the moment
the output goes quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

RATE = 24000
CHUNK = 1200  # samples per read: 50 ms, as in the samples
PREBUFFER_CHUNKS = 5  # received deltas held back before playback starts
POLL_S = 0.01


class BaselineClient:
    """Quickstart-style client. :meth:`run` talks for a while and returns its figures;
    :meth:`start` / :meth:`stop` let another harness drive it (see :class:`HarnessClient`)."""

    name = "baseline"

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        model: str = "gpt-realtime",
        prebuffer_chunks: int = PREBUFFER_CHUNKS,
    ) -> None:
        self.endpoint = endpoint
        self.api_key = api_key
        self.model = model
        self.prebuffer_chunks = prebuffer_chunks
        self.running = False
        self.mic_q: queue.Queue[bytes] = queue.Queue()
        self.play_q: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self.write_first: list[float] = []  # first delta of a reply -> its first device write
        self.write_all: list[float] = []  # every delta -> its device write
        self.silence_latency: list[float] = []  # speech_started (while audible) -> quiet
        self.turn_latency: list[float] = []  # speech_stopped -> first reply audio written
        self.reply_started: asyncio.Event | None = None  # set on each reply's first write
        self._pending_barge: list[float] = []
        self._eos_at: float | None = None
        self._lock = threading.Lock()
        self._audible = False
        self.responses = 0
        self.speech_started = 0
        self._threads: list[threading.Thread] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._streams: list[Any] = []
        self._pa: Any = None
        self._manager: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ threads

    def _capture(self, stream: Any) -> None:
        while self.running:
            data = stream.read(CHUNK, exception_on_overflow=False)
            self.mic_q.put(data)

    def _playback(self, stream: Any | None) -> None:
        playing = False
        started: set[str] = set()
        while self.running:
            if not playing:
                if self.play_q.qsize() >= self.prebuffer_chunks:
                    playing = True
                else:
                    time.sleep(0.005)
                    continue
            try:
                rid, pcm, received = self.play_q.get_nowait()
            except queue.Empty:
                playing = False
                self._went_quiet()
                continue
            now = time.perf_counter()
            self.write_all.append(now - received)
            if rid not in started:
                started.add(rid)
                self.write_first.append(now - received)
                with self._lock:
                    eos, self._eos_at = self._eos_at, None
                if eos is not None:
                    self.turn_latency.append(now - eos)
                if self.reply_started is not None and self._loop is not None:
                    self._loop.call_soon_threadsafe(self.reply_started.set)
            with self._lock:
                self._audible = True
            if stream is not None:
                stream.write(pcm)
            else:  # no device: a speaker that takes as long as the audio lasts
                time.sleep(len(pcm) / 2 / RATE)

    def _went_quiet(self) -> None:
        now = time.perf_counter()
        with self._lock:
            self._audible = False
            pending, self._pending_barge = self._pending_barge, []
        self.silence_latency.extend(now - t for t in pending)

    # ------------------------------------------------------------------ asyncio side

    async def _capture_clock(self, mic: Any) -> None:
        """No device: the harness's clock-driven microphone feeds the same queue."""
        async for frame in mic.frames():
            if not self.running:
                return
            self.mic_q.put(frame)

    async def _send_audio(self, conn: Any) -> None:
        while self.running:
            try:
                data = self.mic_q.get_nowait()
            except queue.Empty:
                await asyncio.sleep(POLL_S)
                continue
            await conn.input_audio_buffer.append(audio=base64.b64encode(data).decode("utf-8"))

    async def _receive(self, conn: Any) -> None:
        async for event in conn:
            kind = getattr(event.type, "value", event.type)
            if kind == "response.audio.delta":
                delta = event.delta
                pcm = base64.b64decode(delta) if isinstance(delta, str) else delta
                self.play_q.put((str(event.response_id), pcm, time.perf_counter()))
            elif kind == "input_audio_buffer.speech_started":
                self.speech_started += 1
                print("(user started speaking)", file=sys.stderr)
                with self._lock:
                    if self._audible or not self.play_q.empty():
                        self._pending_barge.append(time.perf_counter())
            elif kind == "input_audio_buffer.speech_stopped":
                with self._lock:
                    self._eos_at = time.perf_counter()
            elif kind == "response.done":
                self.responses += 1
            elif kind == "error":
                print(f"error: {getattr(event.error, 'message', event.error)}", file=sys.stderr)

    async def start(self, *, devices: bool = True, mic: Any = None) -> None:
        """Open the devices (or use ``mic`` and a clock speaker), connect, start talking."""
        from azure.ai.voicelive.aio import connect
        from azure.core.credentials import AzureKeyCredential

        self._loop = asyncio.get_running_loop()
        mic_stream = spk_stream = None
        if devices:
            import pyaudio

            self._pa = pyaudio.PyAudio()
            mic_stream = self._pa.open(
                format=pyaudio.paInt16, channels=1, rate=RATE, input=True, frames_per_buffer=CHUNK
            )
            spk_stream = self._pa.open(
                format=pyaudio.paInt16, channels=1, rate=RATE, output=True, frames_per_buffer=CHUNK
            )
            self._streams = [mic_stream, spk_stream]
        self._manager = connect(
            endpoint=self.endpoint, credential=AzureKeyCredential(self.api_key), model=self.model
        )
        conn = await self._manager.__aenter__()
        await conn.session.update(
            session={
                "modalities": ["text", "audio"],
                "voice": "alloy",
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            }
        )
        self.running = True
        self._threads = [threading.Thread(target=self._playback, args=(spk_stream,), daemon=True)]
        if mic_stream is not None:
            self._threads.append(
                threading.Thread(target=self._capture, args=(mic_stream,), daemon=True)
            )
        for t in self._threads:
            t.start()
        self._tasks = [
            asyncio.create_task(self._send_audio(conn)),
            asyncio.create_task(self._receive(conn)),
        ]
        if mic_stream is None and mic is not None:
            self._tasks.append(asyncio.create_task(self._capture_clock(mic)))

    async def stop(self) -> None:
        self.running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for t in self._threads:
            t.join(2)
        if self._manager is not None:
            await self._manager.__aexit__(None, None, None)
        for stream in self._streams:
            stream.close()
        if self._pa is not None:
            self._pa.terminate()

    async def run(self, duration_s: float) -> dict[str, Any]:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await self.start(devices=True)
        try:
            await asyncio.wait(self._tasks, timeout=duration_s)
        finally:
            await self.stop()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        return {
            "client": "baseline (quickstart style)",
            "duration_s": round(wall, 2),
            "cpu_s": round(cpu, 3),
            "cpu_s_per_min": round(cpu / wall * 60, 3),
            "responses": self.responses,
            "speech_started": self.speech_started,
            "prebuffer_chunks": self.prebuffer_chunks,
            "write_latency_ms": summary(self.write_first),
            "write_latency_every_delta_ms": summary(self.write_all),
            "silence_latency_ms": summary(self.silence_latency),
            "turn_latency_ms": summary(self.turn_latency),
        }


class HarnessClient:
    """The baseline behind the ``Client`` interface of bench/bench_runner.py.

    That harness feeds every client the same speech on the same clock and reads the same
    timings, so vlrun and the baseline are measured identically. bench/run_all.py registers
    this class in ``bench_runner.CLIENTS`` (the extension point its docstring names).
    """

    name = "baseline"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.reply_started = asyncio.Event()
        self.client: BaselineClient | None = None

    async def start(self, endpoint: str, devices: bool, mic: Any) -> None:
        import bench_runner  # the harness that is driving us

        self.client = BaselineClient(endpoint, bench_runner.KEY)
        self.client.reply_started = self.reply_started
        await self.client.start(devices=devices, mic=mic)

    async def stop(self) -> None:
        assert self.client is not None
        await self.client.stop()

    def timings(self) -> dict[str, list[float]]:
        """Seconds; ``write`` is every delta -> device write, as vlrun's own metric is."""
        c = self.client
        assert c is not None
        return {
            "silence": list(c.silence_latency),
            "handler_silence": [],  # no barge-in handler at all
            "write": list(c.write_all),
            "turn": list(c.turn_latency),
        }


def summary(samples_s: list[float]) -> dict[str, Any]:
    """Median / p95 / max in ms (None when there were no samples)."""
    if not samples_s:
        return {"n": 0, "median": None, "p95": None, "max": None}
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return {
        "n": len(ms),
        "median": round(statistics.median(ms), 2),
        "p95": round(p95, 2),
        "max": round(ms[-1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--prebuffer", type=int, default=PREBUFFER_CHUNKS)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    client = BaselineClient(args.endpoint, args.api_key, prebuffer_chunks=args.prebuffer)
    result = asyncio.run(client.run(args.duration))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
