"""Concurrent phone calls through one serve worker: how many before the audio suffers.

    python bench/bench_calls.py [--steps 10,25,50,100,150,200] [--duration 20] [--out FILE]

Three processes: the emulator (speed 1, real-time replies, synthetic voice; its load mode,
``vlrun emulate --load``, unless ``--emulator-normal``), one worker
(``vlrun serve --serve-file``), and this one, which places N simulated Twilio calls through
the worker's signed webhook and media socket. Calls arrive at ``--arrival-rate`` per second
(phone traffic ramps; it does not arrive in one instant) and stay up until the step ends, so
N calls are *concurrent*: the measured window starts once all N are connected and lasts
``--duration`` seconds. Each call is full duplex in real-time 20 ms μ-law frames and goes
round a conversation for as long as it lasts: the caller asks for the time in Tokyo (a tool
call), talks over the long reply (a barge-in: ``clear`` and a truncate), hears the short
answer, pauses as a person does (0.5 to 2 s, seeded), and asks again. Each caller starts its
first question at a random moment of its first two seconds, so turns do not all line up.

Per step, over the measured window, it reports:
- the worker's added delay per outbound frame (``vlrun_outbound_frame_delay_seconds``: from
  when the frame could have left, its audio in hand and the caller's buffer at the refill
  mark, to when it left); p99 must stay <= 20 ms;
- frame lateness at the callers' ears: how much later than its play-out slot each assistant
  frame arrived (slot = first frame of the talk spurt + 20 ms per frame). This includes the
  emulator's own pacing and the callers' process, so it is reported, not the target;
- underruns: frames of a reply the worker sent after the caller's buffer had run dry, as the
  worker counts them (``vlrun_edge_dropouts_total{kind="underrun"}``; must be 0), in the
  window and during the ramp (reported apart);
- turn latency (end of speech -> first audio): p50/p99, and p99 added over the 1-call p50;
- gaps heard at the callers: a frame due at a caller's play-out clock and nothing there,
  inside a reply (whoever was late: the worker, the emulator or the machine);
- the worker's garbage collections in the window and the longest one's pause (the bound of
  its ``vlrun_gc_pause_seconds`` bucket): each stops its loop and every call on it;
- the worker's CPU (% of one core) and RSS, per call, and its CPU per call as a multiple of
  the floor (``bench/bench_floor.py``, measured at the start of the same run); the emulator's,
  the callers' and the whole machine's CPU, and what limited the step (``limit``: the harness
  when the emulator or the callers were near a full core, the machine when its cores were
  nearly all busy, whoever's processes kept them so).
``--variant NAME=DIR`` (repeated) starts one worker per source tree against the same emulator
and runs each step on each in turn, so a change is measured against the code before it on the
same machine at the same time (``git archive HEAD | tar -x -C DIR`` makes a tree).
``--peer pipecat`` runs a Pipecat Twilio bot (``bench/pipecat_bot.py``: its
``TwilioFrameSerializer``, its FastAPI WebSocket transport and its Azure Voice Live service,
pointed at the same emulator) as one more variant, alternating with vlrun under the same
callers; its virtualenv (``bench/.venv-pipecat``, git-ignored) is made from PyPI on first use.
Pipecat counts no frame delays or underruns, so those columns are blank for it; what the
callers hear (gaps, turn latency) and what its process costs are measured as for vlrun.
``worker_cpu_us_per_frame`` is the worker's CPU per 20 ms media frame it relayed (both ways,
whatever the messages carrying them: the worker sends 60 ms a message): a
step where calls failed or stalled relayed less, and its CPU per call says less.
The largest N that meets both audio targets, with no failed call, is the result. The callers
share the machine's 2 cores with the worker and the emulator, so the figure is a floor for
the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import math
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from binascii import a2b_base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_floor import measure_floor  # noqa: E402
from bench.fast_caller import ClientSocket  # noqa: E402
from bench.fast_caller import connect as fast_connect  # noqa: E402
from runner.speedups import loads  # noqa: E402
from tests.phone_callers import FRAME_MS, Ear, TwilioCaller, mulaw_tone, parse_twiml  # noqa: E402

TOKEN = "bench-twilio-token-0123456789"
TICK = os.sysconf("SC_CLK_TCK")
PROFILE = """\
name: bench-phone
description: Benchmark phone desk with one tool.
instructions: You answer the phone.
voice: alloy
turn_detection: {type: server_vad, threshold: 0.5, prefix_padding_ms: 100, silence_duration_ms: 300}
tools:
  - name: current_time
"""
QUESTION = """\
  - turn: {n}
    transcript: What time is it in Tokyo?
    tools:
      - {{name: current_time, arguments: {{timezone: Asia/Tokyo}}}}
    then: >-
      In Tokyo it is {{output.time}} on {{output.date}}. Tokyo is nine hours ahead of universal
      time, and it is a lovely time of year to visit the city, with its gardens and markets.
  - turn: {m}
    transcript: Thanks, that is enough.
    say: You are welcome. Ask me again any time.
"""
ROUNDS = 200  # question-and-barge-in rounds scripted per call (more than any step uses)
SCRIPT = "description: bench calls\nturns:\n" + "".join(
    QUESTION.format(n=2 * i + 1, m=2 * i + 2) for i in range(ROUNDS)
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (every process, this benchmark's or not)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class FastSocket:
    """websockets' client surface (send, iterate, close) over the lean client socket of
    bench/fast_caller.py, for what TwilioCaller itself sends (connected, start, stop). Received
    messages go to the caller's callback, so iterating yields nothing: it ends at the close."""

    def __init__(self, sock: ClientSocket) -> None:
        self.sock = sock

    @property
    def close_code(self) -> int | None:
        return self.sock.close_code

    async def send(self, text: str) -> None:
        if not self.sock.write(text.encode()):
            raise ConnectionResetError("the media socket is closed")
        await self.sock.drain()

    async def __aiter__(self) -> AsyncIterator[str]:
        await self.sock.closed.wait()
        nothing: tuple[str, ...] = ()
        for text in nothing:  # an async generator that yields nothing
            yield text

    async def close(self) -> None:
        await self.sock.close()


@dataclass
class BenchEar(Ear):
    """The ear, whose wait wakes its call once, when what it waits for has arrived (the base
    Ear wakes it at every frame: 50 task switches a second per call, for nothing)."""

    waiter: tuple[float, asyncio.Future[None]] | None = None

    async def until_heard(self, ms: float, timeout: float = 10.0) -> None:
        async def wait() -> None:
            if len(self.received) / self.bytes_per_ms < ms:
                arrived = asyncio.get_running_loop().create_future()
                self.waiter = (ms, arrived)
                await arrived
            # then the play-out clock (a device's time, not a wait for the server)
            await asyncio.sleep(max(0.0, ms - self.heard_ms()) / 1000 + 0.001)

        try:
            await asyncio.wait_for(wait(), timeout)
        finally:
            self.waiter = None

    def hear(self, audio: bytes) -> None:
        super().hear(audio)
        waiter = self.waiter
        if (
            waiter is not None
            and not waiter[1].done()
            and len(self.received) / self.bytes_per_ms >= waiter[0]
        ):
            waiter[1].set_result(None)


SILENCE = b"\xff" * 160
SILENCE_B64 = base64.b64encode(SILENCE)
# the media message BenchCaller sent through aiohttp, as bytes (sequenceNumber, the middle
# with the stream id, chunk, timestamp, payload)
MEDIA_FORMAT = b'{"event":"media","sequenceNumber":"%d%b%d","timestamp":"%d","payload":"%b"}}'
# the mark echo TwilioCaller sends (json.dumps of its dict, default separators), as bytes
MARK_FORMAT = b'{"event": "mark", "sequenceNumber": "%b", "streamSid": "%b", "mark": {"name": %b}}'
MEDIA_HEAD = b'{"event":"media",'  # the worker's media message, compact (its StreamEncoder)
PAYLOAD_KEY = b'"payload":"'
MEDIA_TAIL = b'"}}'  # the payload is the media object's last field in that shape


class BenchCaller(TwilioCaller):
    """A Twilio caller whose microphone is driven by the shared ticker (one wake-up for all).

    Its socket is bench/fast_caller.py's: each tick's media message is formatted as bytes and
    written as one masked frame; each received message is handled in the socket's callback
    (no task wakes), a media message of the worker's known shape by slicing its payload out
    (anything else by JSON); marks are echoed by a timer when the audio before them has played
    (not a task polling every 20 ms). What goes on the wire is what TwilioCaller sends.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ear = BenchEar(bytes_per_ms=8)
        self.spurt_start: float | None = None
        self.spurt_frames: float = 0
        self.lateness: list[tuple[float, float]] = []  # (when, how late), a message each
        self.heard: list[tuple[float, float]] = []  # (when, 20 ms frames it carried)
        self.last_arrival = 0.0
        self.speech_end: float | None = None
        self.turn_latency: list[tuple[float, float]] = []
        self.connected = asyncio.Event()
        self.done = asyncio.Event()
        self.round_done = asyncio.Event()
        self.error: str | None = None
        self.rounds = 0
        self.sock: ClientSocket | None = None
        self._media_mid = (
            f'","streamSid":"{self.stream_sid}","media":{{"track":"inbound","chunk":"'
        ).encode()
        self._mark_timer: asyncio.TimerHandle | None = None
        self._sid = self.stream_sid.encode()  # "MZ" and hex: nothing for JSON to escape
        self.media_parsed_as_json = 0  # media messages not of the worker's known shape
        self._media_seen = False

    async def open_socket(self, url: str, headers: dict[str, str]) -> Any:
        self.sock = await fast_connect(url, headers, self.on_message)
        return FastSocket(self.sock)

    async def connect(self, url: str, parameters: dict[str, str], headers: Any = None) -> None:
        await super().connect(url, parameters, headers)
        # the microphone is the ticker's, the marks' echo a timer's; the receiver task stays
        # to see the close (its socket yields nothing: messages come by callback)
        self.tasks[0].cancel()
        self.tasks[2].cancel()

    def tick(self, frame: bytes) -> bool:
        """Send this tick's media message (the one Twilio sends) now: False if closed."""
        chunk = self.frames_sent + 1
        self.seq += 1
        payload = SILENCE_B64 if frame == SILENCE else base64.b64encode(frame)
        message = MEDIA_FORMAT % (self.seq, self._media_mid, chunk, chunk * FRAME_MS, payload)
        return self.sock is not None and self.sock.write(message)

    async def send_frame(self, frame: bytes) -> None:
        if not self.tick(frame):
            raise ConnectionResetError("the media socket is closed")
        assert self.sock is not None
        await self.sock.drain()

    def hear_frame(self, now: float, frames: float = 1.0) -> None:
        if self.spurt_start is None or now - self.last_arrival > 0.25:
            self.spurt_start, self.spurt_frames = now, 0  # a new talk spurt
            if self.speech_end is not None:
                self.turn_latency.append((now, now - self.speech_end))
                self.speech_end = None
        slot = self.spurt_start + self.spurt_frames * FRAME_MS / 1000
        self.lateness.append((now, max(0.0, now - slot)))
        self.heard.append((now, frames))
        self.spurt_frames += frames
        self.last_arrival = now

    def on_message(self, raw: bytes) -> None:
        """One text message from the worker (called from the socket's data_received)."""
        if raw.startswith(MEDIA_HEAD) and raw.endswith(MEDIA_TAIL):
            i = raw.find(PAYLOAD_KEY, len(MEDIA_HEAD))
            if i > 0 and raw.find(b'"', i + len(PAYLOAD_KEY)) == len(raw) - len(MEDIA_TAIL):
                self._media(a2b_base64(raw[i + len(PAYLOAD_KEY) : -len(MEDIA_TAIL)]))
                return
        data = loads(raw)
        event = data.get("event")
        if event == "media":
            self.media_parsed_as_json += 1
            self._media(base64.b64decode(data["media"]["payload"]))
            return
        if event == "mark":
            self._marks.append((max(self.ear.play_end, time.monotonic()), data["mark"]["name"]))
            if self._mark_timer is None:
                self._echo_due()
        elif event == "clear":
            self.clears += 1
            self.ear.clear()
            self.spurt_start = None
            while self._marks:  # what Twilio does with marks of discarded audio
                self._echo_now(self._marks.popleft()[1])
        self._note(str(event))

    def _media(self, audio: bytes) -> None:
        self.hear_frame(time.monotonic(), len(audio) / self.frame_bytes)
        self.ear.hear(audio)
        if not self._media_seen:  # noted once (got("media")): it stays noted
            self._media_seen = True
            self._note("media")

    def _echo_due(self) -> None:
        """Echo the marks whose audio has played; a timer for the next one (the ear's clock)."""
        self._mark_timer = None
        now = time.monotonic()
        while self._marks and self._marks[0][0] <= now:
            self._echo_now(self._marks.popleft()[1])
        if self._marks and not self.closed.is_set():
            # 1 ms over: uvloop's clock counts whole ms, a timer set for the due time itself
            # can fire just before it (and be set again)
            delay = self._marks[0][0] - now + 0.001
            self._mark_timer = asyncio.get_running_loop().call_later(delay, self._echo_due)

    def _echo_now(self, name: str) -> None:
        self.marks_echoed.append(name)
        if self.sock is not None:  # the bytes TwilioCaller._echo sends (its json.dumps)
            self.sock.write(
                MARK_FORMAT % (self._next().encode(), self._sid, json.dumps(name).encode())
            )

    async def close(self) -> None:
        if self._mark_timer is not None:
            self._mark_timer.cancel()
            self._mark_timer = None
        await super().close()


async def ticker(callers: list[BenchCaller], stop: asyncio.Event) -> None:
    """Every 20 ms, one frame from each caller (speech if it has some queued, else silence):
    one write each, waiting only for a socket whose buffer is past its high-water mark."""
    loop = asyncio.get_running_loop()
    start, n = loop.time(), 0
    while not stop.is_set():
        n += 1
        await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))
        for c in callers:
            if c.sock is None or c.closed.is_set():
                continue
            if c.pending:
                frame = bytes(c.pending[:160])
                del c.pending[:160]
                if not c.pending:  # end of speech: the VAD's silence after it
                    c.speech_end = time.monotonic() + 0.3
                frame += b"\xff" * (160 - len(frame))
            else:
                frame = SILENCE
            if c.tick(frame):
                c.frames_sent += 1
            if c.sock.paused:
                with contextlib.suppress(Exception):
                    await c.sock.drain()


# what each caller says, made once (the same bytes every round: numpy and the μ-law encoder
# ran twice a round per call before)
QUESTION_TONE = mulaw_tone(800)
BARGE_IN_TONE = mulaw_tone(600)


async def one_call(
    base: str,
    caller: BenchCaller,
    rng: random.Random,
    stop: asyncio.Event,
    closes_on_stop: bool = True,
) -> None:
    import aiohttp
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    form = {"CallSid": caller.call_sid, "From": "+15559990000", "To": "+15550001111"}
    url = base + "/twilio/voice"
    headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
    stage = "connect"
    try:
        async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=headers) as r:
            xml = await r.text()
        stream, params = parse_twiml(xml)
        await caller.connect(
            stream, params, headers={"X-Twilio-Signature": validator.compute_signature(stream, {})}
        )
        caller.connected.set()
        # The caller's own timing (a person's pauses), seeded: not a wait for the server.
        await asyncio.sleep(rng.uniform(0, 2))
        while not stop.is_set():
            stage = f"round {caller.rounds + 1}: question"
            heard = len(caller.ear.received) / 8
            caller.say(QUESTION_TONE)  # the question: a tool call, then a long reply
            await caller.ear.until_heard(heard + 1500, timeout=30)  # well into the long reply
            stage = f"round {caller.rounds + 1}: barge-in"
            heard = len(caller.ear.received) / 8
            caller.say(BARGE_IN_TONE)  # the barge-in (a clear follows if audio was queued)
            await caller.ear.until_heard(heard + 1000, timeout=30)  # the short answer
            caller.rounds += 1
            caller.round_done.set()
            await asyncio.sleep(rng.uniform(0.5, 2.0))
        stage = "hang-up"
        await caller.stop()
        if closes_on_stop:
            await asyncio.wait_for(caller.closed.wait(), 10)
        else:  # Twilio closes the stream itself after its stop; a peer may wait for that
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(caller.closed.wait(), 2)
            await caller.close()
    except Exception as exc:  # one failed call is a result, not the end of the benchmark
        caller.error = f"{stage}: {type(exc).__name__}: {exc}"
    finally:
        caller.connected.set()
        caller.done.set()


async def scrape(base: str) -> list[Any]:
    """The worker's /metrics samples (a peer's page is empty: it counts none of these)."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        text = await r.text()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def dropouts(samples: list[Any], kind: str = "underrun") -> float:
    """The worker's own count: frames of a reply sent after the caller's buffer ran dry
    although the audio was there in time (``underrun``), or because it came late
    (``audio_late``: the emulator's pacing, not the worker)."""
    return sum(
        s.value
        for s in samples
        if s.name == "vlrun_edge_dropouts_total" and s.labels.get("kind") == kind
    )


def buckets(samples: list[Any], histogram: str) -> dict[float, float]:
    """A histogram's cumulative counts by upper bound, summed over its labels:
    ``vlrun_outbound_frame_delay_seconds`` (what the worker added per frame) or
    ``vlrun_gc_pause_seconds`` (how long each collection stopped the worker's loop)."""
    out: dict[float, float] = {}
    for s in samples:
        if s.name == histogram + "_bucket":
            bound = float(s.labels["le"])
            out[bound] = out.get(bound, 0.0) + s.value
    return out


def bucket_at(before: dict[float, float], after: dict[float, float], share: float) -> float | None:
    """The upper bound (s) of the bucket holding the ``share`` quantile of the step's
    observations (0.99: its p99; 1.0: its longest); None when the step observed nothing."""
    counts = {b: after.get(b, 0.0) - before.get(b, 0.0) for b in after}
    total = counts.get(float("inf"), 0.0)
    if not total:
        return None
    for bound in sorted(counts):
        if counts[bound] >= share * total:
            return bound
    return None


class Window:
    """The worker's counters and every process's CPU at one moment (a window is two)."""

    def __init__(self, base: str, pids: tuple[int, int, int]) -> None:
        self.base, self.pids = base, pids

    async def read(self) -> dict[str, Any]:
        samples = await scrape(self.base)
        counters = {
            "underruns": dropouts(samples),
            "audio_late": dropouts(samples, "audio_late"),
            "delays": buckets(samples, "vlrun_outbound_frame_delay_seconds"),
            "gc": buckets(samples, "vlrun_gc_pause_seconds"),
        }
        # the clock and the CPU counters read together: a slow /metrics read on a busy
        # machine must not stretch one and not the other
        return {
            **counters,
            "at": time.monotonic(),
            "cpu": [cpu_s(pid) for pid in self.pids],
            "machine": machine_busy_s(),
        }


async def step(
    base: str,
    worker_pid: int,
    n: int,
    args: argparse.Namespace,
    emulator_pid: int = 0,
    peer: bool = False,
) -> dict[str, Any]:
    rng = random.Random(n)
    callers = [BenchCaller() for _ in range(n)]
    window = Window(base, (worker_pid, emulator_pid or os.getpid(), os.getpid()))
    ramp0 = await window.read()
    stop = asyncio.Event()  # the callers finish their round and hang up
    tick = asyncio.create_task(ticker(callers, asyncio.Event()))  # until every caller is done
    rss0 = rss_mb(worker_pid)
    peak_rss = rss0
    calls = []
    for caller in callers:  # calls arrive at the arrival rate, as phone traffic ramps
        calls.append(asyncio.create_task(one_call(base, caller, rng, stop, not peer)))
        await asyncio.sleep(1 / args.arrival_rate)
    await asyncio.gather(*(c.connected.wait() for c in callers))
    start = await window.read()
    sent0 = sum(c.frames_sent for c in callers)
    for _ in range(int(args.duration)):  # the measured window, all N calls up
        await asyncio.sleep(1.0)
        peak_rss = max(peak_rss, rss_mb(worker_pid))
    end = await window.read()
    sent1 = sum(c.frames_sent for c in callers)
    stop.set()
    for caller in callers:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(caller.done.wait(), 40)
    await tick_stop(tick, callers)
    for caller in callers:
        await caller.close()
    await asyncio.gather(*calls, return_exceptions=True)
    seconds = end["at"] - start["at"]

    def cpu_pct(i: int) -> float:
        return round(100 * (end["cpu"][i] - start["cpu"][i]) / seconds, 1)

    in_window = [(c, [t for t, _ in c.lateness if start["at"] <= t <= end["at"]]) for c in callers]
    lateness = [x for c in callers for t, x in c.lateness if start["at"] <= t <= end["at"]]
    # 20 ms frames heard, whatever the messages that carried them (a worker may send 60 ms)
    frames_heard = sum(f for c in callers for t, f in c.heard if start["at"] <= t <= end["at"])
    turns = [x for c in callers for t, x in c.turn_latency if start["at"] <= t <= end["at"]]
    errors = [c.error for c in callers if c.error]
    delay_p99 = bucket_at(start["delays"], end["delays"], 0.99)
    gc_longest = bucket_at(start["gc"], end["gc"], 1.0)
    worker_cpu = cpu_pct(0)
    return {
        "calls": n,
        "failed_calls": len(errors),
        "errors": errors[:3],
        "window_s": round(seconds, 1),
        "ramp_s": round(start["at"] - ramp0["at"], 1),
        "frames": round(frames_heard),
        "messages_heard": len(lateness),
        "rounds": sum(c.rounds for c in callers),
        "calls_heard_in_window": sum(1 for _, seen in in_window if seen),
        # what the worker added per frame, p99 (upper bound of its histogram bucket)
        "worker_added_delay_p99_ms": None if delay_p99 is None else delay_p99 * 1000,
        "lateness_p50_ms": round(pct(lateness, 50) * 1000, 2),
        "lateness_p99_ms": round(pct(lateness, 99) * 1000, 2),
        "underruns": int(end["underruns"] - start["underruns"]),
        "underruns_during_ramp": int(start["underruns"] - ramp0["underruns"]),
        "frames_after_late_service_audio": int(end["audio_late"] - start["audio_late"]),
        # the worker's garbage collections in the window: each stops its loop and every call
        "worker_gc_collections": int(end["gc"].get(math.inf, 0) - start["gc"].get(math.inf, 0)),
        "worker_gc_pause_max_ms": None if gc_longest is None else gc_longest * 1000,
        # a frame due at a caller's ear (the one before it had played) and nothing there,
        # inside a reply: what the caller heard, whoever was late (worker, emulator, machine)
        "gaps_heard": sum(
            1 for c in callers for t in c.ear.gap_at if start["at"] <= t <= end["at"]
        ),
        "calls_with_gaps_heard": sum(
            1 for c in callers if any(start["at"] <= t <= end["at"] for t in c.ear.gap_at)
        ),
        "gaps_heard_during_ramp": sum(1 for c in callers for t in c.ear.gap_at if t < start["at"]),
        "barge_ins_cleared": sum(c.clears for c in callers),
        "turn_latency_p50_ms": round(pct(turns, 50) * 1000, 1),
        "turn_latency_p99_ms": round(pct(turns, 99) * 1000, 1),
        "worker_cpu_pct": worker_cpu,
        "worker_cpu_pct_per_call": round(worker_cpu / n, 3),
        # the worker's CPU per media frame it relayed (in and out): a step where calls failed
        # or replies stalled did less work, and its CPU per call is not comparable
        "worker_cpu_us_per_frame": round(
            (end["cpu"][0] - start["cpu"][0]) * 1e6 / max(1, frames_heard + sent1 - sent0), 2
        ),
        "emulator_cpu_pct": cpu_pct(1) if emulator_pid else 0.0,
        "callers_cpu_pct": cpu_pct(2),
        "machine_cpu_pct": round(100 * (end["machine"] - start["machine"]) / seconds, 1),
        "worker_rss_mb": round(peak_rss, 1),
        "worker_rss_mb_per_call": round((peak_rss - rss0) / n, 3),
    }


async def tick_stop(tick: asyncio.Task[None], callers: list[BenchCaller]) -> None:
    for caller in callers:
        caller.closed.set()
    tick.cancel()
    await asyncio.gather(tick, return_exceptions=True)


async def wait_line(stream: Any, needle: str, timeout: float = 30) -> str:
    async def find() -> str:
        async for raw in stream:
            text = raw.decode("utf-8", "replace")
            if needle in text:
                return text
        raise RuntimeError(f"ended before {needle!r}")

    return await asyncio.wait_for(find(), timeout)


async def drain_output(stream: Any, keep: Path | None = None) -> None:
    if keep is None:
        async for _ in stream:
            pass
        return
    with keep.open("ab") as out:
        async for raw in stream:
            out.write(raw)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vlrun-bench-calls-"))
    (tmp / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "current_time.py", tmp / "tools" / "current_time.py")
    (tmp / "phone.yaml").write_text(PROFILE)
    (tmp / "script.yaml").write_text(SCRIPT)
    serve = tmp / "serve.yaml"
    serve.write_text(
        "serve: 1\nmax_calls: 2000\nroutes:\n  - {default: true, profile: phone.yaml}\n"
        "twilio:\n  auth_token: ${env:BENCH_TWILIO}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLRUN_DOTENV": "none", "BENCH_TWILIO": TOKEN}
    # With --harness-nice, the stand-ins for remote systems (the emulator for Azure, this
    # process for the callers and Twilio) yield the CPU to the worker, which has the machine
    # to itself in production; without it, all three compete as equals.
    nice = ["nice", "-n", str(args.harness_nice)] if args.harness_nice else []
    emulator = await asyncio.create_subprocess_exec(
        *nice, sys.executable, "-m", "runner", "emulate", "--port", "0",
        "--speed", str(args.emulator_speed), "--no-espeak", "--scenario", str(tmp / "script.yaml"),
        *([] if args.emulator_normal else ["--load"]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert emulator.stdout is not None
    endpoint = (await wait_line(emulator.stdout, "http://")).strip().split()[0]
    drains = [asyncio.create_task(drain_output(emulator.stdout))]
    workers: list[tuple[str, Any, str]] = []  # (variant, process, base URL)
    try:
        for name, root in args.variant:
            port = free_port()
            profile = (
                ["-m", "cProfile", "-o", str(args.profile_worker)] if args.profile_worker else []
            )
            if name in PEERS:  # a peer's own bot, from its own virtualenv
                command = [str(root), str(PEERS[name]), "--port", str(port)]
                command += ["--endpoint", endpoint]
                cwd = ROOT
            else:
                command = [sys.executable, *profile, "-m", "runner", "serve"]
                command += [str(tmp / "phone.yaml"), "--serve-file", str(serve)]
                command += ["--endpoint", endpoint, "--port", str(port)]
                command += ["--max-conversations", "2000"]
                command += ["--logs", str(args.logs)] if args.logs else []
                cwd = root
            worker = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env={**env, "PYTHONPATH": str(root if name not in PEERS else "")},
                cwd=str(cwd),
            )  # fmt: skip
            assert worker.stdout is not None
            workers.append((name, worker, f"http://127.0.0.1:{port}"))
            await wait_line(worker.stdout, "open http://")
            keep = args.worker_output and args.worker_output.with_suffix(f".{name}.log")
            drains.append(asyncio.create_task(drain_output(worker.stdout, keep)))
        # The floor in the same run, on the same machine: what any relay pays per call.
        floor = await measure_floor(args.floor_calls, args.floor_duration)
        print(json.dumps({"floor": floor}), file=sys.stderr, flush=True)
        # The harness's start-up heap (libraries, the floor's run) never becomes garbage: kept
        # out of the collector, full collections in the window walk only the calls' objects.
        gc.freeze()
        if args.harness_nice:
            os.nice(args.harness_nice)
        results: list[dict[str, Any]] = []
        best: dict[str, int] = {}
        baselines: dict[str, dict[str, Any]] = {}
        for name, worker, base in workers:
            baselines[name] = await step(base, worker.pid, 1, args, emulator.pid, name in PEERS)
            baselines[name]["variant"] = name
            results.append(baselines[name])
            best[name] = 0
        failed: set[str] = set()
        for n in args.steps:
            for name, worker, base in workers:  # alternating: the same machine for each
                if name in failed:
                    continue
                result = await step(base, worker.pid, n, args, emulator.pid, name in PEERS)
                result["variant"] = name
                result["added_turn_latency_p99_ms"] = round(
                    result["turn_latency_p99_ms"] - baselines[name]["turn_latency_p50_ms"], 1
                )
                result["worker_cpu_per_call_over_floor"] = round(
                    result["worker_cpu_pct_per_call"] / floor["floor_cpu_pct_per_call"], 2
                )
                result["limit"] = limit(result)
                added = result["worker_added_delay_p99_ms"]
                result["meets_target"] = (
                    name not in PEERS  # a peer counts no frame delays or underruns
                    and added is not None
                    and added <= 20
                    and result["underruns"] == 0
                    and result["failed_calls"] == 0
                )
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
                if not result["meets_target"] and len(workers) == 1:
                    failed.add(name)
                elif result["meets_target"] and name not in failed:
                    best[name] = n
        return {
            "steps": results,
            "floor": floor,
            "max_calls_meeting_target": best if len(workers) > 1 else best[workers[0][0]],
            "target": "worker-added frame delay p99 <= 20 ms, no worker underrun, no failed call",
            "machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]},
            "harness_nice": args.harness_nice,
        }
    finally:
        for proc in [w for _, w, _ in workers] + [emulator]:
            if proc.returncode is None:
                proc.terminate()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), 20)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        for task in drains:
            task.cancel()
        shutil.rmtree(tmp, ignore_errors=True)


HARNESS_FULL_PCT = 85.0  # one event loop per process: past this it is the bottleneck
MACHINE_FULL_PCT = 90.0  # of all cores


def limit(row: dict[str, Any]) -> str:
    """What limited the step: the harness (emulator, callers), the machine, or nothing seen."""
    full = []
    if row["emulator_cpu_pct"] >= HARNESS_FULL_PCT:
        full.append(f"emulator at {row['emulator_cpu_pct']:.0f}% of a core")
    if row["callers_cpu_pct"] >= HARNESS_FULL_PCT:
        full.append(f"callers at {row['callers_cpu_pct']:.0f}% of a core")
    if full:
        return "harness: " + ", ".join(full)
    cores = os.cpu_count() or 1
    if row["machine_cpu_pct"] >= MACHINE_FULL_PCT * cores:
        return f"machine: {row['machine_cpu_pct']:.0f}% of {cores} cores busy (all processes)"
    if row["worker_cpu_pct"] >= HARNESS_FULL_PCT:
        return f"worker at {row['worker_cpu_pct']:.0f}% of a core"
    return "none"


# Peers run beside vlrun under the same callers and emulator (``--peer NAME``): their bot, run
# by the python of a bench-only virtualenv that ``peer_python`` makes on first use.
PEERS = {"pipecat": ROOT / "bench" / "pipecat_bot.py"}
PEER_VENV = ROOT / "bench" / ".venv-pipecat"  # git-ignored (bench/.gitignore)
PEER_PACKAGES = ["pipecat-ai[websocket]==1.14.0", "uvicorn[standard]"]


def peer_python(name: str) -> Path:
    """The peer's virtualenv python, made and filled from PyPI the first time."""
    import subprocess
    import venv

    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", "import pipecat, uvicorn, fastapi"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing {name} into {PEER_VENV} (once)", file=sys.stderr, flush=True)
    venv.create(PEER_VENV, with_pip=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def variant(text: str) -> tuple[str, Path]:
    name, sep, root = text.partition("=")
    if not sep or not (Path(root) / "runner" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=DIR, DIR a vlrun source tree")
    return name, Path(root).resolve()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 25, 50, 100, 150, 200],
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured window, s")
    parser.add_argument("--arrival-rate", type=float, default=20.0, help="new calls per second")
    parser.add_argument(
        "--harness-nice", type=int, default=0, help="run the emulator and callers at this nice"
    )
    parser.add_argument(
        "--variant",
        type=variant,
        action="append",
        help="NAME=DIR: a worker run from this source tree (repeat to compare, alternating)",
    )
    parser.add_argument(
        "--emulator-normal",
        action="store_true",
        help="run the emulator in its normal mode, not its load mode (which keeps no event "
        "history and reuses replies' encoded audio: cheaper for the same events)",
    )
    parser.add_argument(
        "--emulator-speed",
        type=float,
        default=1.0,
        help="the emulator's pace (2: its audio comes twice as fast as it plays, as a real "
        "service sends ahead)",
    )
    parser.add_argument("--floor-duration", type=float, default=8.0, help="floor window, s")
    parser.add_argument(
        "--floor-calls", type=int, default=100, help="calls through the floor's relay"
    )
    parser.add_argument(
        "--peer",
        choices=sorted(PEERS),
        action="append",
        default=[],
        help="run this peer's bot too, alternating with vlrun (its virtualenv is made once)",
    )
    parser.add_argument("--logs", type=Path, help="keep the worker's per-call logs here")
    parser.add_argument(
        "--worker-output", type=Path, help="keep each worker's own log (FILE.VARIANT.log)"
    )
    parser.add_argument("--profile-worker", type=Path, help="write the worker's cProfile here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "calls.json")
    args = parser.parse_args()
    args.variant = (args.variant or [("vlrun", ROOT)]) + [
        (name, peer_python(name)) for name in args.peer
    ]
    from runner import speedups

    data = speedups.run(main_async(args))  # the callers on the worker's event loop too
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: v for k, v in data.items() if k != "steps"}))
    floor = data["floor"]["floor_cpu_pct_per_call"]
    for row in data["steps"]:
        print(
            f"{row.get('variant', '')} {row['calls']:>4} calls: worker "
            f"{row['worker_cpu_pct_per_call']:.3f}% of a core per call = "
            f"{row['worker_cpu_pct_per_call'] / floor:.2f}x the floor ({floor:.3f}%, same run); "
            f"gaps heard {row['gaps_heard']} ({row['calls_with_gaps_heard']} calls); "
            f"limit: {row.get('limit', '-')}"
        )
        print(
            f"      added p99 <= {row['worker_added_delay_p99_ms']} ms, "
            f"lateness at the ear p99 {row['lateness_p99_ms']:.1f} ms, "
            f"underruns {row['underruns']}, turn p99 {row['turn_latency_p99_ms']:.0f} ms, "
            f"worker {row['worker_cpu_pct']:.0f}% CPU, "
            f"{row['worker_rss_mb_per_call']:.2f} MB/call, "
            f"{row.get('worker_cpu_us_per_frame', 0):.1f} us/frame, "
            f"failed {row['failed_calls']}; emulator {row['emulator_cpu_pct']:.0f}% CPU, "
            f"callers {row['callers_cpu_pct']:.0f}% CPU, "
            f"late service audio {row['frames_after_late_service_audio']}, "
            f"worker GC {row.get('worker_gc_collections', 0)} collections, "
            f"longest <= {row.get('worker_gc_pause_max_ms')} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
