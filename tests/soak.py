"""A month of `vlrun serve` in minutes: one worker, many calls, everything that goes wrong.

One real worker (the `vlrun serve` app: the browser console, the Twilio and ACS edges, one
supervisor) on loopback, the emulator standing in for Voice Live (dropping some of its
connections mid-call), a fake ACS for Call Automation, and simulated callers of every kind:

- Twilio and ACS callers that speak, hear the reply and hang up;
- callers that vanish without closing their socket (their media just stops);
- replayed media sockets for a call already in progress (Twilio) and second media sockets
  for a call id (ACS);
- bursts of webhooks past capacity whose media sockets never come (reservations expire);
- browser pages that type a turn and leave;
- a secret rotated every couple of seconds (as Entra tokens are, hourly, for months).

At the end the worker must hold no slot and no task, and every call that got a slot must have
ended with an outcome in ``/metrics``. The test runs it at a size CI affords; the benchmark
(bench/bench_soak.py) runs it bigger and judges RSS and the event loop's lag as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.fake_acs import RESOURCE_ID, fake_acs
from tests.phone_callers import AcsCaller, TwilioCaller, mulaw_tone, parse_twiml, tone
from tests.telephony_helpers import PROFILE, TWILIO_TOKEN, twilio_signature

SIG = "X-Twilio-Signature"
EG_SECRET = "event-grid-secret-soak-0123456789"
KINDS = {  # what one call of the soak does, and how often
    "twilio": 30,
    "twilio_vanish": 10,
    "twilio_replay": 8,
    "acs": 20,
    "acs_vanish": 6,
    "acs_duplicate": 6,
    "burst": 5,
    "browser": 15,
}
STARTED_OUTCOMES = (
    "completed",
    "caller_hung_up",
    "dropped",
    "malformed",
    "drained",
    "failed",
    "max_length",
    "service_lost",
)


@dataclass
class SoakReport:
    calls: Counter[str] = field(default_factory=Counter)
    outcomes: dict[tuple[str, str], float] = field(default_factory=dict)
    slots: dict[tuple[str, str], float] = field(default_factory=dict)
    claimed_total: int = 0
    reconnects: int = 0
    held_at_end: int = 0
    tasks_left: list[str] = field(default_factory=list)
    rss_settled_kb: int = 0
    rss_end_kb: int = 0
    lag_p99_s: float = 0.0
    lag_worst_s: float = 0.0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def ended_with_outcome(self) -> int:
        return int(sum(v for (_, o), v in self.outcomes.items() if o in STARTED_OUTCOMES))


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _serve_yaml(
    tmp: Path, jwks_url: str, max_calls: int, *, media_timeout_s: float | None = None
) -> Path:
    (tmp / "profiles").mkdir(exist_ok=True)
    (tmp / "profiles" / "phone.yaml").write_text(PROFILE, encoding="utf-8")
    path = tmp / "serve.yaml"
    path.write_text(
        f"""\
serve: 1
max_calls: {max_calls}
drain_timeout_s: 5
{f"media_timeout_s: {media_timeout_s}" if media_timeout_s else ""}
routes:
  - default: true
    profile: profiles/phone.yaml
twilio:
  auth_token: ${{env:SOAK_TWILIO}}
acs:
  connection_string: ${{env:SOAK_ACS}}
  resource_id: {RESOURCE_ID}
  jwks_url: {jwks_url}
  event_grid_secret: ${{env:SOAK_EG}}
""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def worker(tmp: Path, emulator: Any, fake: Any, max_calls: int) -> AsyncIterator[Any]:
    """The real `vlrun serve` app with the phone edges installed, as --serve-file does."""
    from runner.config.serve_file import load_serve_file
    from runner.serve.app import ServeOptions, serve
    from runner.serve.host import Host, HostOptions
    from runner.serve.telephony import Phones
    from runner.serve.telephony_routes import add_phone_routes

    serve_path = _serve_yaml(tmp, fake.jwks_url, max_calls)
    env = {"SOAK_TWILIO": TWILIO_TOKEN, "SOAK_ACS": fake.connection_string, "SOAK_EG": EG_SECRET}
    serve_file = load_serve_file(serve_path, env=env)
    host = Host(
        HostOptions(
            paths=[tmp / "profiles"],
            endpoint=emulator.endpoint,
            logs=tmp / "logs",
            max_conversations=max_calls,
        )
    )
    host.supervisor.reservation_ttl_s = 1.0
    host.supervisor.sweep_s = 0.1
    holder: dict[str, Any] = {}

    def install(app: Any, host: Any, _options: Any) -> None:
        phones = Phones(
            serve_file,
            endpoint=emulator.endpoint,
            logs_dir=tmp / "logs",
            supervisor=host.supervisor,
            media_timeout_s=0.6,
            heartbeat_s=2.0,
        )
        holder["phones"] = phones
        add_phone_routes(
            app, phones, acs_options={"client_options": {"connection_verify": str(fake.ca)}}
        )

        async def start(_app: Any) -> None:
            await phones.prepare()

        async def close(_app: Any) -> None:
            await phones.close()

        app.on_startup.append(start)
        app.on_cleanup.append(close)

    options = ServeOptions(port=0, heartbeat_s=2.0, drain_timeout_s=5.0)
    stop = asyncio.Event()
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(host, options, [install], started=started.set_result, stop=stop), name="soak-serve"
    )
    done, _ = await asyncio.wait({task, started}, timeout=30, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()
    base = started.result().split("?")[0].rstrip("/")
    try:
        yield base, host, holder["phones"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@contextlib.asynccontextmanager
async def worker_process(
    tmp: Path, emulator: Any, fake: Any, max_calls: int
) -> AsyncIterator[tuple[str, int]]:
    """The worker as production runs it: `vlrun serve --serve-file` in its own process, so its
    RSS and its event loop are its own. Yields (base URL, pid)."""
    import os
    import signal
    import sys

    serve_path = _serve_yaml(tmp, fake.jwks_url, max_calls, media_timeout_s=1)
    env = {
        **os.environ,
        "SOAK_TWILIO": TWILIO_TOKEN,
        "SOAK_ACS": fake.connection_string,
        "SOAK_EG": EG_SECRET,
        "SSL_CERT_FILE": str(fake.ca),  # the fake ACS's TLS, trusted by the worker's SDK
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runner",
        "serve",
        str(tmp / "profiles"),
        "--serve-file",
        str(serve_path),
        "--endpoint",
        emulator.endpoint,
        "--port",
        "0",
        "--max-conversations",
        str(max_calls),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        url = line.decode().strip().removeprefix("open ")
        assert url.startswith("http"), line
        yield url.split("?")[0].rstrip("/"), proc.pid
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


def _rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Calls:
    """One soak's callers against one worker."""

    def __init__(self, base: str, fake: Any, rng: random.Random) -> None:
        self.base, self.fake, self.rng = base, fake, rng
        self.http: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ Twilio

    async def _twilio_webhook(self) -> tuple[str, dict[str, str], str] | None:
        assert self.http is not None
        form = {
            "CallSid": "CA" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": "+15559990000",
            "To": "+15550001111",
        }
        url = self.base + "/twilio/voice"
        headers = {SIG: twilio_signature(url, form)}
        async with self.http.post(url, data=form, headers=headers) as r:
            xml = await r.text()
        if "<Connect>" not in xml:
            return None  # busy
        stream_url, params = parse_twiml(xml)
        return stream_url, params, form["CallSid"]

    async def _twilio_caller(self, stream_url: str, params: dict[str, str], sid: str) -> Any:
        caller = TwilioCaller(sid)
        await caller.connect(stream_url, params, headers={SIG: twilio_signature(stream_url, {})})
        return caller

    async def twilio(self, *, vanish: bool = False, replay: bool = False) -> str:
        answer = await self._twilio_webhook()
        if answer is None:
            return "busy"
        caller = await self._twilio_caller(*answer)
        try:
            if replay:
                again = await self._twilio_caller(*answer)
                await asyncio.wait_for(again.closed.wait(), 10)
                await again.close()
            if vanish:
                await asyncio.sleep(self.rng.uniform(0.0, 0.3))  # the caller's own clock
                caller.tasks[0].cancel()  # media stops, the socket stays open
                await asyncio.wait_for(caller.closed.wait(), 15)
                return "vanished"
            await _converse(caller, lambda: mulaw_tone(400))
            await caller.stop()
            return "spoke"
        finally:
            await caller.close()

    # ------------------------------------------------------------------ ACS

    async def _acs_ring(self) -> dict[str, Any] | None:
        from tests.test_telephony_acs import incoming_call

        assert self.http is not None
        event = incoming_call()
        context = event[0]["data"]["incomingCallContext"]
        async with self.http.post(self.base + "/acs/incoming?secret=" + EG_SECRET, json=event) as r:
            await r.read()
        # calls ring at once: this call's answer is the one naming its context
        mine = [a for a in self.fake.answers() if a["body"]["incomingCallContext"] == context]
        return mine[0] if mine else None

    async def _acs_media(self, answer: dict[str, Any]) -> AcsCaller:
        caller = AcsCaller(16000)
        await caller.connect(
            answer["body"]["mediaStreamingOptions"]["transportUrl"],
            headers={
                "Authorization": f"Bearer {self.fake.token()}",
                "x-ms-call-connection-id": "cc-" + uuid.uuid4().hex[:8],
            },
        )
        return caller

    async def acs(self, *, vanish: bool = False, duplicate: bool = False) -> str:
        import websockets

        answer = await self._acs_ring()
        if answer is None:
            return "busy"
        caller = await self._acs_media(answer)
        try:
            if duplicate:
                try:
                    again = await self._acs_media(answer)
                except websockets.InvalidStatus as exc:
                    assert exc.response.status_code == 409, exc
                else:
                    await again.close()
                    raise AssertionError("a second media socket for one call was accepted")
            if vanish:
                caller.tasks[0].cancel()
                await asyncio.wait_for(caller.closed.wait(), 15)
                return "vanished"
            await _converse(caller, lambda: tone(400, 16000))
            return "spoke"
        finally:
            await caller.close()

    # ------------------------------------------------------------------ the rest

    async def burst(self) -> str:
        """A few webhooks whose media sockets never come: reservations that must expire."""
        for _ in range(self.rng.randint(2, 4)):
            await self._twilio_webhook()
        return "burst"

    async def browser(self) -> str:
        assert self.http is not None
        origin = self.base
        async with self.http.ws_connect(self.base + "/ws", headers={"Origin": origin}) as ws:
            await ws.send_json({"type": "start", "profile": "phone"})
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = msg.json()
                if event.get("type") == "session":
                    await ws.send_json({"type": "text", "text": "hello"})
                elif event.get("type") == "assistant" or event.get("type") == "refused":
                    break
        return "browser"

    async def one(self, kind: str) -> str:
        if kind.startswith("twilio"):
            return await self.twilio(vanish=kind.endswith("vanish"), replay=kind.endswith("replay"))
        if kind.startswith("acs"):
            return await self.acs(vanish=kind.endswith("vanish"), duplicate=kind.endswith("te"))
        if kind == "burst":
            return await self.burst()
        return await self.browser()


async def _converse(caller: Any, speech: Any) -> None:
    """Speak until a reply is heard: a turn said while Voice Live dropped is lost, as on a
    real call, and the caller says it again."""
    for _ in range(4):
        caller.say(speech())
        with contextlib.suppress(asyncio.TimeoutError):
            await caller.ear.until_heard(200, timeout=4)
            return
    raise AssertionError("no reply heard after four turns")


def _vlrun_task(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    path = str(getattr(code, "co_filename", ""))
    return "/runner/" in path and "/runner/emulator/" not in path


def _lag_p99(text: str) -> float:
    """The 99th percentile of the loop-lag histogram (its bucket's upper bound)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "vlrun_event_loop_lag_seconds_bucket":
                buckets.append((float(s.labels["le"]), s.value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return 0.0
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= 0.99 * total)


async def soak(
    tmp: Path,
    *,
    calls: int = 200,
    concurrency: int = 10,
    max_calls: int = 8,
    seed: int = 1,
    process: bool = False,
) -> SoakReport:
    """Run the soak; the report says what happened (the caller judges it). ``process``: the
    worker runs as its own `vlrun serve` process (the benchmark's RSS and loop lag are then
    the worker's alone); otherwise in this loop, where its slots and tasks can be inspected."""
    from runner.emulator import Faults, running_emulator
    from runner.redact import register_secret

    rng = random.Random(seed)
    report = SoakReport()
    # Voice Live drops one connection in 23, mid-call: the call reconnects and goes on.
    faults = Faults(drop_at_s=0.4, connections=tuple(range(11, 50 * calls, 23)))
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        emulator = await stack.enter_async_context(
            running_emulator(speed=0, use_espeak=False, faults=faults)
        )
        fake = await stack.enter_async_context(fake_acs(tmp))
        host = None
        if process:
            base, pid = await stack.enter_async_context(
                worker_process(tmp, emulator, fake, max_calls)
            )
            rss: Any = lambda: _rss_of(pid)  # noqa: E731 - the worker's own
        else:
            base, host, _ = await stack.enter_async_context(worker(tmp, emulator, fake, max_calls))
            rss = _rss_kb
        http = await stack.enter_async_context(aiohttp.ClientSession())
        baseline_tasks = set(asyncio.all_tasks())
        runner = Calls(base, fake, rng)
        runner.http = http
        kinds = list(KINDS)
        weights = [KINDS[k] for k in kinds]
        gate = asyncio.Semaphore(concurrency)
        rotating = asyncio.Event()

        async def rotate() -> None:
            while not rotating.is_set():
                register_secret("rotated-token-" + secrets.token_urlsafe(24))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(rotating.wait(), 2.0)

        async def one(i: int) -> None:
            kind = rng.choices(kinds, weights)[0]
            async with gate:
                try:
                    result = await runner.one(kind)
                except Exception as exc:  # noqa: BLE001 - reported, the soak goes on
                    report.errors.append(f"call {i} ({kind}): {type(exc).__name__}: {exc}")
                    result = "error"
                report.calls[f"{kind}:{result}"] += 1
                if i == calls // 5:
                    report.rss_settled_kb = rss()

        rotation = asyncio.create_task(rotate(), name="soak-rotation")
        try:
            await asyncio.gather(*(one(i) for i in range(calls)))
        finally:
            rotating.set()
            await rotation
        if host is not None:
            await host.supervisor.changes.until(lambda: len(host.supervisor) == 0, 20)
            report.held_at_end = len(host.supervisor)
            report.claimed_total = host.supervisor.claimed_total
        else:
            report.held_at_end = await _held_after(http, base, 40.0)
        async with http.get(base + "/metrics") as r:
            text = await r.text()
        _read_metrics(report, text)
        if host is None:
            report.claimed_total = int(
                sum(v for (_, w), v in report.slots.items() if w == "claimed")
            )
        report.rss_end_kb = rss()
        if host is not None:
            report.lag_worst_s = host.supervisor.lag.worst_s if host.supervisor.lag else 0.0
            # vlrun's own tasks (aiohttp's keep-alive connection handlers are aiohttp's,
            # closed by its keep-alive timeout; the emulator's are the service's)
            report.tasks_left = sorted(
                f"{t.get_name()} ({getattr(t.get_coro(), '__qualname__', '?')})"
                for t in asyncio.all_tasks() - baseline_tasks
                if not t.done() and _vlrun_task(t)
            )
    report.seconds = time.monotonic() - started
    return report


async def _held_after(http: aiohttp.ClientSession, base: str, limit_s: float) -> int:
    """Slots a worker process still holds, once its reservations have had time to expire
    (a bench's poll of its probe, once a second, up to ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    while True:
        async with http.get(base + "/readyz") as r:
            body = await r.json()
        held = int(body.get("calls", 0)) + int(body.get("reserved", 0))
        if held == 0 or time.monotonic() > deadline:
            return held
        await asyncio.sleep(1.0)  # a probe's interval, not a synchronisation


def _read_metrics(report: SoakReport, text: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "vlrun_calls_total":
                report.outcomes[(s.labels["edge"], s.labels["outcome"])] = s.value
            elif s.name == "vlrun_slots_total":
                report.slots[(s.labels["edge"], s.labels["what"])] = s.value
            elif s.name == "vlrun_reconnects_total":
                report.reconnects += int(s.value)
    report.lag_p99_s = _lag_p99(text)
