"""`vlrun ring`'s carrier against a real phone server on loopback: refusals are exit 1 with the
reason, an unreachable server is exit 3, the caller's turns keep their order, its ear echoes a
mark only once the audio before it has played, and Ctrl+C hangs up cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runner.aio import cancel_and_wait
from runner.carrier import acs as carrier_acs
from runner.carrier import sip as carrier_sip
from runner.carrier import twilio as carrier_twilio
from runner.carrier.line import Line
from runner.carrier.ring import CallRefused, RingOptions
from runner.carrier.voice import Turn
from tests.telephony_helpers import (
    PROFILE,
    TWILIO_TOKEN,
    phone_server,
    quiet_emulator,
    write_serve,
)

pytest.importorskip("twilio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quiet(**kw: Any) -> RingOptions:
    lines: list[str] = []
    return RingOptions(out=lines.append, connect_timeout_s=10, **kw)


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    async with quiet_emulator() as emu:
        yield emu


# ---------------------------------------------------------------------- the command line


def test_turn_options_keep_their_command_line_order() -> None:
    from runner.commands.ring import ring

    args = ["twilio", "http://x/twilio/voice", "--dtmf", "1", "--say", "hi", "--dtmf=2"]
    ctx = ring.make_context("ring", [*args, "--say-wav", "a.wav"])
    assert ctx.meta["ring.turns"] == [("dtmf", "1"), ("say", "hi"), ("dtmf", "2"), ("wav", "a.wav")]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=timeout
    )


def test_an_unreachable_server_is_exit_3_and_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}/twilio/voice"
    done = run_cli("ring", "twilio", url, "--auth-token", "t", "--dtmf", "1")
    assert done.returncode == 3, done.stderr
    assert f"cannot reach {url}" in done.stderr and "vlrun serve --serve-file" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_dtmf_keys_are_a_usage_error_naming_the_option() -> None:
    done = run_cli("ring", "twilio", "http://127.0.0.1:1/twilio/voice", "--dtmf", "12x")
    assert done.returncode == 2 and "--dtmf '12x': not DTMF keys ('x')" in done.stderr


# ---------------------------------------------------------------------- the ear


async def test_a_mark_is_echoed_once_its_audio_has_played_and_at_once_on_clear() -> None:
    echoed: list[tuple[str, int]] = []
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    line = Line(8000, send)

    async def echo(name: str) -> None:
        echoed.append((name, line.played))

    line._echo = echo
    clock = asyncio.create_task(line.run())
    try:
        line.hear(b"\x01\x00" * (8000 * 3 // 10))  # 300 ms
        line.mark("a")
        line.hear(b"\x01\x00" * 8000)  # 1 s more
        line.mark("b")
        assert await line.changes.until(lambda: echoed, 5)
        assert echoed == [("a", 2 * 8000 * 3 // 10)]  # not before its 300 ms had played
        await line.clear()  # a barge-in: the rest is dropped, its mark answered now
        assert [name for name, _ in echoed] == ["a", "b"]
        assert echoed[1][1] < 2 * 8000 * 13 // 10 and not line.unplayed
        assert all(len(frame) == 320 for frame in sent)  # 20 ms frames of PCM16 at 8 kHz
    finally:
        line.hung_up()
        await cancel_and_wait(clock, 2)


# ---------------------------------------------------------------------- refusals


async def test_a_busy_twilio_server_is_refused_with_its_reason(
    tmp_path: Path, emulator: Any
) -> None:
    serve = write_serve(tmp_path, max_calls=1)
    async with phone_server(serve, emulator.endpoint) as (base, phones):
        url = base + "/twilio/voice"
        async with carrier_twilio.ring(url, TWILIO_TOKEN, quiet()):
            await asyncio.wait_for(phones.until(lambda: len(phones.calls) == 1), 10)
            with pytest.raises(CallRefused, match="the call was refused: busy") as busy:
                async with carrier_twilio.ring(url, TWILIO_TOKEN, quiet()):
                    pass
    assert busy.value.exit_code == 1


async def test_a_wrong_auth_token_is_refused_as_a_bad_signature(
    tmp_path: Path, emulator: Any
) -> None:
    async with phone_server(write_serve(tmp_path), emulator.endpoint) as (base, phones):
        with pytest.raises(CallRefused, match="403 .the signature did not match"):
            async with carrier_twilio.ring(base + "/twilio/voice", "not-the-token", quiet()):
                pass
        assert not phones.calls


@contextlib.asynccontextmanager
async def acs_server(
    tmp: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, Path]]:
    """A phone server whose serve file points at `vlrun ring acs --setup`'s folder; only the
    number +15550001111 is routed."""
    folder, port = tmp / "acs", free_port()
    carrier_acs.setup(folder, port, out=lambda _: None)
    env = dict(
        line.removeprefix("export ").replace("'", "").split("=", 1)
        for line in (folder / "env.sh").read_text().splitlines()
    )
    (tmp / "phone.yaml").write_text(PROFILE, encoding="utf-8")
    serve = tmp / "serve.yaml"
    serve.write_text(
        "serve: 1\nmax_calls: 2\nroutes:\n"
        '  - {number: "+15550001111", profile: phone.yaml}\n'
        "acs:\n  connection_string: ${env:ACS_CONNECTION_STRING}\n"
        f"  resource_id: {carrier_acs.RESOURCE_ID}\n"
        f"  jwks_url: https://127.0.0.1:{port}/calling/keys\n"
        "  event_grid_secret: ${env:ACS_EVENT_GRID_SECRET}\n",
        encoding="utf-8",
    )
    # what env.sh's SSL_CERT_FILE does for `vlrun serve`, given to the in-process edge
    trust = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    async with phone_server(
        serve,
        endpoint,
        env=env,
        acs_options={
            "client_options": {"connection_verify": str(folder / "ca.pem")},
            "http_options": {"ssl": trust},
        },
    ) as (base, _phones):
        monkeypatch.setenv("ACS_EVENT_GRID_SECRET", env["ACS_EVENT_GRID_SECRET"])
        yield base + "/acs/incoming", folder


async def test_acs_answers_speaks_and_hears(
    tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    options = RingOptions(
        turns=[Turn("dtmf", "1")], called="+15550001111", out=lines.append, greeting_s=0.5
    )
    async with acs_server(tmp_path, emulator.endpoint, monkeypatch) as (url, folder):
        assert await carrier_acs.call(url, folder, options) == 0
    assert lines[0].startswith("answered: ACS call cc-") and "(16000 Hz)" in lines[0]
    turn = next(line for line in lines if line.startswith("turn 1 (dtmf 1)"))
    assert "first audio after" in turn and "heard 0 ms" not in turn
    assert lines[-1] == "hung up"


async def test_an_acs_call_no_route_answers_is_rejected_with_the_reason(
    tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with acs_server(tmp_path, emulator.endpoint, monkeypatch) as (url, folder):
        with pytest.raises(CallRefused, match="the call was refused: forbidden"):
            await carrier_acs.call(url, folder, quiet(called="+15559998888"))
        monkeypatch.setenv("ACS_EVENT_GRID_SECRET", "not-the-secret")
        with pytest.raises(CallRefused, match="403 .the Event Grid secret did not match"):
            await carrier_acs.call(url, folder, quiet(called="+15550001111"))


async def test_sip_without_a_webhook_is_refused_and_says_how_to_register(emulator: Any) -> None:
    with pytest.raises(CallRefused, match="no SIP webhook registered") as refused:
        await carrier_sip.call(emulator.endpoint, quiet())
    assert "--create-webhook" in (refused.value.hint or "")


# ---------------------------------------------------------------------- Ctrl+C


LONG_TURN = "and then another story, slowly, with every detail you can remember about it"


def test_ctrl_c_hangs_up_cleanly(tmp_path: Path) -> None:
    serve = write_serve(tmp_path)
    port = free_port()
    env = {**os.environ, "TEST_TWILIO_TOKEN": TWILIO_TOKEN, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", str(tmp_path / "phone.yaml"),
         "--serve-file", str(serve), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert server.stdout is not None and "open http" in server.stdout.readline()
        ring = subprocess.Popen(
            [sys.executable, "-m", "runner", "ring", "twilio",
             f"http://127.0.0.1:{port}/twilio/voice", "--auth-token", TWILIO_TOKEN,
             "--say", "hello there", "--say", LONG_TURN, "--record", str(tmp_path / "h.wav")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert ring.stdout is not None
        # turn 1's line is printed once its reply is heard; the caller is then saying turn 2
        # (seconds of speech paced in real time), so the interrupt lands mid-call. After the
        # last turn the carrier hangs up by itself and a late SIGINT would meet the
        # interpreter's shutdown (exit -2): that race is why the call has a second turn.
        while not (line := ring.stdout.readline()).startswith("turn 1"):
            assert line, ring.stderr.read() if ring.stderr else ""
        ring.send_signal(signal.SIGINT)
        rest, err = ring.communicate(timeout=30)
        assert ring.returncode == 130, err
        assert "Traceback" not in err
        assert "turn 2" not in rest  # interrupted while saying it, not after
        assert (tmp_path / "h.wav").exists()  # the recording is kept
    finally:
        server.send_signal(signal.SIGTERM)
        _, log = server.communicate(timeout=30)
    assert "ended: caller_hung_up" in log  # a `stop` frame, not a dropped socket
    assert "ended: dropped" not in log


def test_acs_setup_keeps_a_folder_a_server_may_trust(tmp_path: Path) -> None:
    from runner.errors import UsageError

    folder = tmp_path / "acs"
    carrier_acs.setup(folder, 18443, out=lambda _: None)
    ca, key = (folder / "ca.pem").read_bytes(), (folder / "token-key.pem").read_bytes()
    carrier_acs.setup(folder, 18443, out=lambda _: None)
    assert (folder / "ca.pem").read_bytes() == ca  # not replaced under a running server
    assert (folder / "token-key.pem").read_bytes() == key
    assert (folder / "token-key.pem").stat().st_mode & 0o077 == 0  # private
    with pytest.raises(UsageError, match="set up for port 18443, not 9443"):
        carrier_acs.setup(folder, 9443, out=lambda _: None)
