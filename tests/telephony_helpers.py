"""What the telephony tests share: a serve file and profile on disk, a phone server on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from runner.config.serve_file import load_serve_file

TWILIO_TOKEN = "twilio-auth-token-for-tests-0123456789"
ACS_CONNECTION = "endpoint=http://127.0.0.1:1/;accesskey=" + "QUNTLWtleS1mb3ItdGVzdHM=" * 2

PROFILE = """\
name: phone-desk
description: A phone assistant for the telephony tests.
instructions: You answer the phone.
voice: alloy
turn_detection:
  type: server_vad
  threshold: 0.5
  prefix_padding_ms: 100
  silence_duration_ms: 200
"""


def write_serve(tmp: Path, extra: str = "", *, max_calls: int = 10) -> Path:
    (tmp / "phone.yaml").write_text(PROFILE, encoding="utf-8")
    path = tmp / "serve.yaml"
    path.write_text(
        f"""\
serve: 1
max_calls: {max_calls}
drain_timeout_s: 5
routes:
  - number: "+15550001111"
    profile: phone.yaml
    goodbye: Goodbye from the phone desk.
  - default: true
    profile: phone.yaml
twilio:
  auth_token: ${{env:TEST_TWILIO_TOKEN}}
{extra}""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def phone_server(
    serve_path: Path,
    endpoint: str,
    env: dict[str, str] | None = None,
    acs_options: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[str, Any]]:
    """(base URL, Phones) of an aiohttp server with the serve file's phone routes."""
    from aiohttp import web

    from runner.serve.telephony import Phones
    from runner.serve.telephony_routes import add_phone_routes

    serve = load_serve_file(
        serve_path, env=env or {"TEST_TWILIO_TOKEN": TWILIO_TOKEN, "TEST_ACS": ACS_CONNECTION}
    )
    app = web.Application()
    phones = Phones(serve, endpoint=endpoint, **options)
    await phones.prepare()
    add_phone_routes(app, phones, acs_options=acs_options)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", phones
    finally:
        await phones.drain(timeout=2)
        await runner.cleanup()
        await phones.close()


def twilio_signature(url: str, params: dict[str, str]) -> str:
    from twilio.request_validator import RequestValidator

    return str(RequestValidator(TWILIO_TOKEN).compute_signature(url, params))


def metric(phones: Any, name: str, **labels: str) -> float:
    value = phones.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


@contextlib.asynccontextmanager
async def quiet_emulator() -> AsyncIterator[Any]:
    """The emulator with its synthetic voice: no espeak-ng subprocess can outlive a call that
    the test hangs up mid-reply (phone tests end calls while the assistant speaks)."""
    from runner.emulator import running_emulator

    async with running_emulator(speed=0, use_espeak=False) as emu:
        yield emu
