"""Two `vlrun serve` workers behind Debian's HAProxy (the shipped deploy/haproxy.cfg, health
checks on /readyz), simulated Twilio and ACS callers talking through it to the emulator. One
worker gets SIGTERM mid-call: its calls go on to a normal end, new calls all go to the other
worker, no call is dropped, and the drained worker exits 0.

Every wait here is on something the processes say (a log line, a caller hearing audio, an exit),
bounded by a timeout; the callers' own clocks are their simulated devices.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fake_acs import RESOURCE_ID, fake_acs
from tests.phone_callers import AcsCaller, TwilioCaller, mulaw_tone, parse_twiml, tone
from tests.telephony_helpers import PROFILE, TWILIO_TOKEN, twilio_signature
from tests.test_telephony_acs import incoming_call

pytest.importorskip("twilio")
pytest.importorskip("azure.communication.callautomation")

ROOT = Path(__file__).resolve().parents[1]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SECRET = "lb-event-grid-secret-0123"
pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY), reason="haproxy is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process whose output lines are read as they come, and can be waited on."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, stream: Any) -> None:
        self.name, self.proc = name, proc
        self.lines: list[str] = []
        self._new = asyncio.Event()
        self._reader = asyncio.create_task(self._read(stream))

    async def _read(self, stream: Any) -> None:
        async for raw in stream:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())
            self._new.set()
        self._new.set()

    async def line(self, needle: str, timeout: float = 20) -> str:
        async def find() -> str:
            seen = 0
            while True:
                for text in self.lines[seen:]:
                    if needle in text:
                        return text
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError(
                        f"{self.name} ended without {needle!r}: {self.lines[-20:]}"
                    )
                self._new.clear()
                await self._new.wait()

        return await asyncio.wait_for(find(), timeout)

    def records(self) -> list[dict[str, Any]]:
        out = []
        for text in self.lines:
            if text.startswith("{"):
                try:
                    out.append(json.loads(text))
                except ValueError:
                    continue
        return out

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.wait({self._reader}, timeout=5)


async def start(name: str, args: list[str], env: dict[str, str], *, stderr: bool) -> Proc:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE if not stderr else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE if stderr else asyncio.subprocess.STDOUT,
        env=env,
        cwd=str(ROOT),
    )
    return Proc(name, proc, proc.stderr if stderr else proc.stdout)


async def active_calls(port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "vlrun_active_calls"
    )


class Lb:
    def __init__(self, base: str, fake: Any) -> None:
        self.base, self.fake = base, fake

    async def twilio_call(self) -> TwilioCaller:
        form = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+15559990000", "To": "+15550001111"}
        url = self.base + "/twilio/voice"
        headers = {"X-Twilio-Signature": twilio_signature(url, form)}
        async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=headers) as r:
            assert r.status == 200
            xml = await r.text()
        stream_url, params = parse_twiml(xml)
        caller = TwilioCaller(form["CallSid"])
        await caller.connect(
            stream_url, params, headers={"X-Twilio-Signature": twilio_signature(stream_url, {})}
        )
        return caller

    async def acs_call(self) -> AcsCaller:
        before = len(self.fake.answers())
        url = f"{self.base}/acs/incoming?secret={SECRET}"
        async with aiohttp.ClientSession() as http, http.post(url, json=incoming_call()) as r:
            assert r.status == 200
        (answer,) = self.fake.answers()[before:]
        caller = AcsCaller(16000)
        await caller.connect(
            answer["body"]["mediaStreamingOptions"]["transportUrl"],
            headers={"Authorization": f"Bearer {self.fake.token()}"},
        )
        return caller


async def converse(caller: Any, audio: bytes) -> None:
    """One turn: the caller speaks and hears (at least 300 ms of) a reply."""
    heard = len(caller.ear.received) / caller.ear.bytes_per_ms
    caller.say(audio)
    await caller.ear.until_heard(heard + 300, timeout=20)


async def hang_up(caller: Any) -> None:
    if isinstance(caller, TwilioCaller):
        await caller.stop()
        await asyncio.wait_for(caller.closed.wait(), 10)  # the worker closes the stream
    await caller.close()  # ACS: a normal close of the media stream


def call_endings(worker: Proc) -> list[str]:
    return [
        r["msg"].rsplit(": ", 1)[-1]
        for r in worker.records()
        if r.get("logger") == "vlrun.serve.telephony" and " ended: " in r.get("msg", "")
    ]


async def test_sigterm_one_worker_mid_call_behind_haproxy(
    tmp_path: Path, emulator_in_thread: Any, cli_env: Any
) -> None:
    lb_port, ports = free_port(), [free_port(), free_port()]
    procs: list[Proc] = []
    callers: list[Any] = []
    async with fake_acs(tmp_path) as fake:
        (tmp_path / "phone.yaml").write_text(PROFILE, encoding="utf-8")
        serve = tmp_path / "serve.yaml"
        serve.write_text(
            f"serve: 1\npublic_url: http://127.0.0.1:{lb_port}\nmax_calls: 10\n"
            "drain_timeout_s: 30\nroutes:\n  - {default: true, profile: phone.yaml}\n"
            "twilio:\n  auth_token: ${env:LB_TWILIO}\n"
            "acs:\n  connection_string: ${env:LB_ACS}\n"
            f"  resource_id: {RESOURCE_ID}\n  jwks_url: {fake.jwks_url}\n"
            "  event_grid_secret: ${env:LB_SECRET}\n",
            encoding="utf-8",
        )
        env = cli_env(
            {
                "LB_TWILIO": TWILIO_TOKEN,
                "LB_ACS": fake.connection_string,
                "LB_SECRET": SECRET,
                "SSL_CERT_FILE": str(fake.ca),  # the fake ACS's certificate, trusted by the SDK
                "VLRUN_LB_BIND": f"127.0.0.1:{lb_port}",
                "VLRUN_WORKER1": f"127.0.0.1:{ports[0]}",
                "VLRUN_WORKER2": f"127.0.0.1:{ports[1]}",
            }
        )
        try:
            for i, port in enumerate(ports, 1):
                worker = await start(
                    f"w{i}",
                    [
                        sys.executable,
                        "-m",
                        "runner",
                        "serve",
                        str(tmp_path / "phone.yaml"),
                        "--serve-file",
                        str(serve),
                        "--endpoint",
                        emulator_in_thread.endpoint,
                        "--port",
                        str(port),
                    ],
                    env,
                    stderr=False,
                )
                procs.append(worker)
            for worker in procs:
                await worker.line("open http://")  # `vlrun serve` is listening
            lb = await start(
                "haproxy",
                [HAPROXY, "-db", "-f", str(ROOT / "deploy" / "haproxy.cfg")],
                env,
                stderr=False,
            )
            procs.append(lb)
            for name in ("w1", "w2"):
                await lb.line(f"vlrun_workers/{name} succeeded")  # first /readyz check passed
            proxy = Lb(f"http://127.0.0.1:{lb_port}", fake)

            # Two calls up, one of each provider; leastconn spreads them.
            first = [await proxy.twilio_call(), await proxy.acs_call()]
            callers += first
            for caller, audio in zip(first, (mulaw_tone(700), tone(700, 16000)), strict=True):
                await converse(caller, audio)
            load = [await active_calls(p) for p in ports]
            assert sum(load) == 2
            victim = 0 if load[0] > 0 else 1
            survivor = 1 - victim
            on_victim = int(load[victim])

            procs[victim].proc.send_signal(signal.SIGTERM)
            await procs[victim].line("draining: ")  # the phone calls' drain began
            await lb.line(f"vlrun_workers/w{victim + 1} is DOWN")

            # New calls all go to the other worker.
            later = [await proxy.twilio_call(), await proxy.acs_call()]
            callers += later
            for caller, audio in zip(later, (mulaw_tone(700), tone(700, 16000)), strict=True):
                await converse(caller, audio)
            assert await active_calls(ports[survivor]) == 4 - on_victim

            # The draining worker's calls go on: another turn each, then a normal hang-up.
            for caller, audio in zip(first, (mulaw_tone(700), tone(700, 16000)), strict=True):
                await converse(caller, audio)
            for caller in callers:
                await hang_up(caller)
            code = await asyncio.wait_for(procs[victim].proc.wait(), 30)
            assert code == 0, procs[victim].lines[-20:]
            victim_endings = call_endings(procs[victim])
            assert victim_endings == ["caller_hung_up"] * on_victim
            survivor_worker = procs[survivor]
            await asyncio.wait_for(
                _until(
                    lambda: len(call_endings(survivor_worker)) == 4 - on_victim, survivor_worker
                ),
                10,
            )
            assert call_endings(survivor_worker) == ["caller_hung_up"] * (4 - on_victim)
        finally:
            for caller in callers:
                await caller.close()
            for proc in procs:
                await proc.stop()


async def _until(predicate: Any, proc: Proc) -> None:
    while not predicate():
        proc._new.clear()
        await proc._new.wait()
