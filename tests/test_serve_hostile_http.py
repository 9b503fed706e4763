"""Hostile bodies at the phone webhooks, through the real handlers (not only the codecs):
deep nesting is a 400, an oversize body a 413 however it is chunked, and nothing crashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.test_telephony_acs import SECRET, Acs, acs, emulator  # noqa: F401 - fixtures
from tests.test_telephony_twilio import SIG, twilio_signature

pytest.importorskip("azure.communication.callautomation")

DEEP = b"[" * 100_000 + b"]" * 100_000


async def _chunks(data: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.text()


async def test_deeply_nested_event_grid_and_callback_bodies_are_400(acs: Acs) -> None:  # noqa: F811
    status, text = await post(acs.base + "/acs/incoming?secret=" + SECRET, DEEP)
    assert status == 400 and "Traceback" not in text
    token = {"Authorization": f"Bearer {acs.fake.token()}"}
    status, _ = await post(acs.base + "/acs/callbacks?call=x", DEEP, token)
    assert status == 400
    assert not acs.phones.calls


async def test_a_two_megabyte_body_is_413_even_when_chunked(acs: Acs) -> None:  # noqa: F811
    big = b'[{"eventType": "x", "data": {"pad": "' + b"a" * (2 * 1024 * 1024) + b'"}}]'
    url = acs.base + "/acs/incoming?secret=" + SECRET
    assert (await post(url, big))[0] == 413  # with a Content-Length
    assert (await post(url, _chunks(big)))[0] == 413  # chunked: no length to check first


async def test_a_chunked_small_event_grid_body_is_read_whole(acs: Acs) -> None:  # noqa: F811
    """StreamReader.read(n) returns what has arrived: a body in chunks used to be cut."""
    import json

    from tests.test_telephony_acs import incoming_call

    body = json.dumps(incoming_call()).encode()
    status, _ = await post(acs.base + "/acs/incoming?secret=" + SECRET, _chunks(body, 97))
    assert status == 200
    assert len(acs.fake.answers()) == 1


async def test_a_pstn_caller_in_microsofts_casing_routes_by_number(acs: Acs) -> None:  # noqa: F811
    """Microsoft's PSTN IncomingCall example writes the identifier kind "PhoneNumber"."""
    from tests.test_telephony_acs import incoming_call

    event = incoming_call(to="+15550001111")
    for side in ("to", "from"):
        event[0]["data"][side]["kind"] = "PhoneNumber"
    status, _ = await post(acs.base + "/acs/incoming?secret=" + SECRET, _json(event))
    assert status == 200
    (answer,) = acs.fake.answers()
    assert "to=%2B15550001111" in answer["body"]["mediaStreamingOptions"]["transportUrl"]


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


async def test_an_oversize_twilio_webhook_is_413_not_a_forgery(acs: Acs) -> None:  # noqa: F811
    url = acs.base + "/twilio/voice"
    form = {"CallSid": "CA" + "0" * 32, "Pad": "a" * (128 * 1024)}
    headers = {SIG: twilio_signature(url, form)}
    async with aiohttp.ClientSession() as http:
        data = aiohttp.FormData(form)
        async with http.post(url, data=data, headers=headers) as r:
            assert r.status == 413
