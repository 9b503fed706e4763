"""The ACS Call Automation edge: Event Grid in, the official SDK's answer to a fake ACS on
loopback (its HMAC signing checked), JWT-authenticated callbacks and media socket, and a caller
speaking ACS's media frames to the emulator."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fake_acs import RESOURCE_ID, FakeAcs, fake_acs
from tests.phone_callers import AcsCaller, tone
from tests.telephony_helpers import TWILIO_TOKEN, metric, phone_server, quiet_emulator, write_serve

pytest.importorskip("azure.communication.callautomation")
pytest.importorskip("jwt")

SECRET = "event-grid-secret-0123456789"


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    """This module's emulator: the synthetic voice (see telephony_helpers.quiet_emulator)."""
    async with quiet_emulator() as emu:
        yield emu


def incoming_call(to: str = "+15550001111") -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid4()),
            "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Communication/"
            "communicationServices/z",
            "subject": f"/caller/4:+15559990000/recipient/4:{to}",
            "eventType": "Microsoft.Communication.IncomingCall",
            "eventTime": "2026-12-02T07:00:00Z",
            "dataVersion": "1.0",
            "data": {
                "to": {"kind": "phoneNumber", "rawId": f"4:{to}", "phoneNumber": {"value": to}},
                "from": {
                    "kind": "phoneNumber",
                    "rawId": "4:+15559990000",
                    "phoneNumber": {"value": "+15559990000"},
                },
                "serverCallId": "server-call-" + uuid.uuid4().hex,
                "callerDisplayName": "",
                "incomingCallContext": "opaque-context-" + uuid.uuid4().hex,
                "correlationId": str(uuid.uuid4()),
            },
        }
    ]


class Acs:
    """The fake ACS plus a phone server whose serve file points at it."""

    def __init__(self, fake: FakeAcs, base: str, phones: Any) -> None:
        self.fake, self.base, self.phones = fake, base, phones

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.base + path, json=body, headers=headers or {}) as r,
        ):
            return r.status, await r.text()

    async def ring(self, to: str = "+15550001111") -> dict[str, Any]:
        before = len(self.fake.answers())
        status, _ = await self.post("/acs/incoming", incoming_call(to))
        assert status == 200
        answers = self.fake.answers()
        assert len(answers) == before + 1, self.fake.requests
        return answers[-1]

    async def answer_media(self, answer: dict[str, Any]) -> AcsCaller:
        url = answer["body"]["mediaStreamingOptions"]["transportUrl"]
        caller = AcsCaller(16000)
        await caller.connect(
            url,
            headers={
                "Authorization": f"Bearer {self.fake.token()}",
                "x-ms-call-connection-id": "cc-media-1",
            },
        )
        return caller


@pytest.fixture
async def acs(tmp_path: Path, emulator: Any) -> Any:
    async with fake_acs(tmp_path) as fake:
        serve = write_serve(
            tmp_path,
            "acs:\n"
            "  connection_string: ${env:TEST_ACS}\n"
            f"  resource_id: {RESOURCE_ID}\n"
            f"  jwks_url: {fake.jwks_url}\n"
            "  event_grid_secret: ${env:TEST_EG_SECRET}\n",
            max_calls=1,
        )
        env = {
            "TEST_TWILIO_TOKEN": TWILIO_TOKEN,
            "TEST_ACS": fake.connection_string,
            "TEST_EG_SECRET": SECRET,
        }
        async with phone_server(
            serve,
            emulator.endpoint,
            env=env,
            acs_options={"client_options": {"connection_verify": str(fake.ca)}},
        ) as (base, phones):
            yield Acs(fake, base, phones)


async def test_subscription_validation_handshake(acs: Acs) -> None:
    code = "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    event = {
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
        "topic": "/subscriptions/x",
        "subject": "",
        "data": {"validationCode": code, "validationUrl": "https://rp.example/validate"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-12-02T07:00:00Z",
        "metadataVersion": "1",
        "dataVersion": "1",
    }
    status, text = await acs.post(
        "/acs/incoming?secret=" + SECRET,
        [event],
        {"aeg-event-type": "SubscriptionValidation"},
    )
    assert status == 200
    assert json.loads(text) == {"validationResponse": code}
    status, _ = await acs.post("/acs/incoming?secret=wrong", [event])
    assert status == 403


async def test_incoming_call_is_answered_through_the_sdk_with_bidirectional_media(
    acs: Acs, emulator: Any
) -> None:
    status, _ = await acs.post("/acs/incoming?secret=" + SECRET, incoming_call())
    assert status == 200
    assert acs.fake.bad_auth == 0  # the SDK signed its request with the connection string's key
    (answer,) = acs.fake.answers()
    assert answer["query"]["api-version"]  # the SDK's REST api-version
    body = answer["body"]
    assert body["incomingCallContext"].startswith("opaque-context-")
    assert body["callbackUri"].startswith(acs.base + "/acs/callbacks?call=")
    media = body["mediaStreamingOptions"]
    assert media["transportUrl"].startswith(acs.base.replace("http://", "ws://") + "/acs/media?")
    assert {k: v for k, v in media.items() if k != "transportUrl"} == {
        "transportType": "websocket",
        "contentType": "audio",
        "audioChannelType": "mixed",
        "startMediaStreaming": True,
        "enableBidirectional": True,
        "audioFormat": "pcm16KMono",
        "enableDtmfTones": True,
    }
    assert emulator.sessions == []  # nothing runs until ACS opens the media socket


async def test_media_socket_and_callbacks_need_acs_tokens(acs: Acs) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    await acs.post("/acs/incoming?secret=" + SECRET, incoming_call())
    url = acs.fake.answers()[-1]["body"]["mediaStreamingOptions"]["transportUrl"]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "none": {},
        "wrong audience": {"Authorization": f"Bearer {acs.fake.token(audience='other')}"},
        "forged": {"Authorization": f"Bearer {acs.fake.token(key=other_key)}"},
        "expired": {"Authorization": f"Bearer {acs.fake.token(ttl=-120)}"},
    }
    async with aiohttp.ClientSession() as http:
        for what, headers in bad.items():
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(url, headers=headers)
            assert err.value.status == 401, what
        tampered = url.replace("route=", "route=x")
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(tampered, headers={"Authorization": f"Bearer {acs.fake.token()}"})
        assert err.value.status == 403
    status, _ = await acs.post("/acs/callbacks?call=x", [{"type": "x"}])
    assert status == 401
    assert not acs.phones.calls


async def test_a_call_streams_pcm_both_ways_and_barge_in_sends_stop_audio(
    acs: Acs, emulator: Any
) -> None:
    await acs.post("/acs/incoming?secret=" + SECRET, incoming_call())
    caller = await acs.answer_media(acs.fake.answers()[-1])
    try:
        caller.say(tone(700, 16000))
        await caller.ear.until_heard(400)
        update = await emulator.wait_for(lambda e: e["type"] == "session.update", timeout=5)
        session = update["session"]
        assert session["input_audio_format"] == "pcm16"
        assert session["input_audio_sampling_rate"] == 16000
        assert session["output_audio_format"] == "pcm16_16000hz"
        frames = [m for m in caller.messages if m.get("Kind") == "AudioData"]
        assert frames and all(m["StopAudio"] is None for m in frames)
        caller.say(tone(600, 16000))
        await caller.got("StopAudio")
        heard = caller.ear.heard_ms()
        truncate = await emulator.wait_for(
            lambda e: e["type"] == "conversation.item.truncate", timeout=5
        )
        # ACS reports no play-out, so the clock of what was sent stands in: never more than
        # the caller had heard plus its play-out buffer (60 ms) and a frame; a slow machine
        # only makes what was heard larger.
        assert truncate["audio_end_ms"] <= heard + 80
        assert truncate["audio_end_ms"] >= 300  # not 0: the reply was half heard
        await caller.dtmf("7")
        await emulator.wait_for(
            lambda e: (
                e["type"] == "conversation.item.create"
                and "[DTMF] 7" in json.dumps(e.get("item", {}))
            ),
            timeout=5,
        )
        (active,) = acs.phones.calls.values()
        assert active.edge.provider_call_id == "cc-media-1"
        # ACS says the call is over: the callback (with its token) ends it.
        status, _ = await acs.post(
            "/acs/callbacks?call=" + active.edge.call_id,
            [
                {
                    "id": str(uuid.uuid4()),
                    "source": "calling/callConnections/cc-media-1",
                    "type": "Microsoft.Communication.CallDisconnected",
                    "data": {"callConnectionId": "cc-media-1", "operationContext": "x"},
                    "specversion": "1.0",
                }
            ],
            {"Authorization": f"Bearer {acs.fake.token()}"},
        )
        assert status == 200
        await asyncio.wait_for(acs.phones.idle(), 10)
        await asyncio.wait_for(caller.closed.wait(), 5)
    finally:
        await caller.close()
    assert metric(acs.phones, "vlrun_calls_total", edge="acs", outcome="caller_hung_up") == 1
    assert metric(acs.phones, "vlrun_barge_ins_total", edge="acs") == 1


async def test_busy_worker_rejects_the_call_the_acs_way(acs: Acs) -> None:
    await acs.post("/acs/incoming?secret=" + SECRET, incoming_call())
    caller = await acs.answer_media(acs.fake.answers()[-1])
    try:
        await asyncio.wait_for(acs.phones.until(lambda: len(acs.phones.calls) == 1), 10)
        await acs.post("/acs/incoming?secret=" + SECRET, incoming_call())
        rejects = [r for r in acs.fake.requests if r["path"].endswith(":reject")]
        assert len(rejects) == 1
        assert rejects[0]["body"]["callRejectReason"] == "busy"
        assert len(acs.fake.answers()) == 1
    finally:
        await caller.close()
