"""The emulator vlrun runs in-process for its offline default (`embedded_emulator`, one piece
for `vlrun run`/`test` through endpoint_for and for `vlrun serve`'s host): loopback only, a
random key nobody else knows, and that key never shown."""

from __future__ import annotations

import aiohttp
import pytest

from runner.emulator import embedded_emulator
from runner.redact import redact


async def test_the_embedded_emulator_is_on_loopback_with_a_random_key_never_shown() -> None:
    async with embedded_emulator(speed=0) as one, embedded_emulator(speed=0) as two:
        assert one.endpoint.startswith("http://127.0.0.1:")
        assert one.api_key and two.api_key and one.api_key != two.api_key
        assert one.api_key not in redact(f"the key is {one.api_key}")  # registered: masked
        url = one.endpoint + "/voice-live/realtime?model=gpt-realtime"
        async with aiohttp.ClientSession() as http:
            for headers, status in (({}, 401), ({"api-key": two.api_key}, 401)):
                async with http.get(url, headers=headers) as r:
                    assert r.status == status
            async with http.ws_connect(url, headers={"api-key": one.api_key}) as ws:
                event = await ws.receive_json(timeout=10)
                assert event["type"] == "session.created"


async def test_endpoint_for_runs_this_same_embedded_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # vlrun run/test's default (endpoint_for) kept its own copy of the key-and-loopback start
    import contextlib
    from collections.abc import AsyncIterator
    from typing import Any

    import runner.emulator
    from runner.live.connect import Target, endpoint_for

    started: list[Any] = []

    @contextlib.asynccontextmanager
    async def watched(**options: Any) -> AsyncIterator[Any]:
        async with embedded_emulator(**options) as emu:
            started.append(emu)
            yield emu

    monkeypatch.setattr(runner.emulator, "embedded_emulator", watched)
    async with endpoint_for(Target(None, "default"), speed=0) as (endpoint, target):
        assert len(started) == 1, "endpoint_for started an emulator of its own"
        assert endpoint == started[0].endpoint
        assert target.api_key == started[0].api_key
        assert target.key_source == "embedded emulator"
