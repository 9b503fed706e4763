"""The emulator vlrun runs in-process for its offline default (`embedded_emulator`, one piece
for `vlrun run`/`test` through endpoint_for and for `vlrun serve`'s host): loopback only, a
random key nobody else knows, and that key never shown."""

from __future__ import annotations

import aiohttp

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
