"""The Twilio Media Streams edge against the emulator, driven by a caller speaking Twilio's frames.

The webhook and the media socket are signed the way Twilio signs them (the ``twilio`` package's
own RequestValidator computes the signatures); the caller echoes marks only once the audio
before them has played, so the truncation position is checked against what it really heard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.serve.calls import LEAD_MS, OUTBOUND_FRAME_MS
from tests.phone_callers import TwilioCaller, mulaw_tone, parse_twiml
from tests.telephony_helpers import (
    metric,
    phone_server,
    quiet_emulator,
    twilio_signature,
    write_serve,
)

pytest.importorskip("twilio")

SIG = "X-Twilio-Signature"


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    """This module's emulator: the synthetic voice (see telephony_helpers.quiet_emulator)."""
    async with quiet_emulator() as emu:
        yield emu


async def webhook(base: str, *, to: str = "+15550001111", sign: bool = True, path: str = "") -> Any:
    form = {
        "CallSid": "CA" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15559990000",
        "To": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    url = base + "/twilio/voice" + path
    headers = {SIG: twilio_signature(url, form) if sign else "bm90IGEgc2lnbmF0dXJl"}
    async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=headers) as r:
        return r.status, await r.text(), form


async def call(base: str, **kw: Any) -> TwilioCaller:
    status, xml, form = await webhook(base, **kw)
    assert status == 200, xml
    url, params = parse_twiml(xml)
    caller = TwilioCaller(form["CallSid"])
    await caller.connect(url, params, headers={SIG: twilio_signature(url, {})})
    return caller


async def answered(phones: Any, n: int = 1) -> Any:
    """Wait until ``n`` calls are in progress and their sessions are configured."""
    await asyncio.wait_for(phones.until(lambda: len(phones.calls) >= n and _sessions(phones)), 10)
    for active in phones.calls.values():
        await asyncio.wait_for(active.session.ready.wait(), 10)
    return next(iter(phones.calls.values()))


def _sessions(phones: Any) -> bool:
    return all(c.session is not None for c in phones.calls.values())


@pytest.fixture
def serve_file(tmp_path: Path) -> Path:
    return write_serve(tmp_path)


async def test_voice_webhook_answers_connect_stream_with_route_and_token(
    serve_file: Path, emulator: Any
) -> None:
    async with phone_server(serve_file, emulator.endpoint) as (base, _phones):
        status, xml, form = await webhook(base)
    assert status == 200
    url, params = parse_twiml(xml)
    assert url == base.replace("http://", "ws://") + "/twilio/media"
    assert params["route"] == "+15550001111"
    assert params["to"] == "+15550001111" and params["from"] == "+15559990000"
    assert params["token"].split(".")[0].isdigit()
    assert "<Connect><Stream" in xml


async def test_forged_webhook_gets_403_and_nothing_starts(
    serve_file: Path, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with phone_server(serve_file, emulator.endpoint) as (base, phones):
        status, text, _ = await webhook(base, sign=False)
        unsigned_ws = None
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(base + "/twilio/media")
            unsigned_ws = err.value.status
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="forbidden") == 2
        assert not phones.calls
    assert status == 403 and unsigned_ws == 403
    assert emulator.sessions == []  # no Voice Live session was opened
    assert "bad X-Twilio-Signature" in caplog.text
    assert "twilio-auth-token" not in caplog.text


async def test_stream_token_from_another_call_is_refused(serve_file: Path, emulator: Any) -> None:
    async with phone_server(serve_file, emulator.endpoint) as (base, phones):
        _, xml, _ = await webhook(base)
        url, params = parse_twiml(xml)
        caller = TwilioCaller("CA" + uuid.uuid4().hex)  # not the CallSid the token was made for
        await caller.connect(url, params, headers={SIG: twilio_signature(url, {})})
        await asyncio.wait_for(caller.closed.wait(), 5)
        await caller.close()
        assert caller.close_code == 1008
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="forbidden") == 1
    assert emulator.sessions == []


async def test_a_call_hears_the_reply_and_barge_in_truncates_at_what_was_heard(
    serve_file: Path, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vlrun.serve.call")
    async with phone_server(serve_file, emulator.endpoint) as (base, phones):
        caller = await call(base)
        try:
            caller.say(mulaw_tone(700))
            await caller.ear.until_heard(400)
            # The session runs μ-law 8 kHz end to end: nothing is transcoded.
            update = await emulator.wait_for(lambda e: e["type"] == "session.update", timeout=5)
            assert update["session"]["input_audio_format"] == "g711_ulaw"
            assert update["session"]["output_audio_format"] == "g711_ulaw"
            media = [m for m in caller.messages if m["event"] == "media"]
            # 60 ms a message: 480 bytes of μ-law, 640 base64 characters (the last may be short)
            assert all(len(m["media"]["payload"]) == 640 for m in media[:-1])
            # Paced, not dumped: what arrived is never more than the lead (plus the ear's own
            # 60 ms buffer and a frame) ahead of what was played.
            arrived_ms = len(caller.ear.received) / 8
            assert arrived_ms - caller.ear.heard_ms() < LEAD_MS + 100
            assert caller.marks_echoed, "marks follow the audio"
            caller.say(mulaw_tone(600))  # the caller talks over the assistant
            await caller.got("clear")
            heard_at_clear = caller.ear.heard_ms()
            echoed = [caller.mark_at[m] for m in caller.marks_echoed]
            truncate = await emulator.wait_for(
                lambda e: e["type"] == "conversation.item.truncate", timeout=5
            )
            # What the model is told it said is what the caller heard: the position of a mark
            # the caller echoed (so played), never more than it heard at the clear.
            assert truncate["audio_end_ms"] in echoed
            assert truncate["audio_end_ms"] <= heard_at_clear + 1
            assert truncate["audio_end_ms"] >= 300  # not 0: the reply was half heard
            assert metric(phones, "vlrun_barge_ins_total", edge="twilio") == 1
            assert metric(phones, "vlrun_active_calls", edge="twilio") == 1
        finally:
            await caller.stop()
            await caller.close()
        await asyncio.wait_for(phones.idle(), 10)
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="caller_hung_up") == 1
        assert metric(phones, "vlrun_active_calls", edge="twilio") == 0
        assert metric(phones, "vlrun_turn_latency_seconds_count", edge="twilio") >= 1
    # The call's log has the reply as one whole line (it is never written a word at a time).
    said = [r.getMessage() for r in caplog.records if r.name == "vlrun.serve.call"]
    whole = r"assistant: \[emulator\] I heard \d\.\d seconds of audio\."
    assert any(re.fullmatch(whole, line) for line in said), said


async def test_dtmf_reaches_the_conversation(serve_file: Path, emulator: Any) -> None:
    async with phone_server(serve_file, emulator.endpoint) as (base, phones):
        caller = await call(base)
        try:
            await emulator.wait_for(lambda e: e["type"] == "session.update", timeout=5)
            await answered(phones)
            await caller.dtmf("5")
            item = await emulator.wait_for(
                lambda e: (
                    e["type"] == "conversation.item.create"
                    and "[DTMF] 5" in json.dumps(e.get("item", {}))
                ),
                timeout=5,
            )
            assert item["item"]["role"] == "user"
            edge = next(iter(phones.calls.values())).edge
            assert edge.dtmf == ["5"]
        finally:
            await caller.stop()
            await caller.close()


async def test_malformed_frames_are_logged_and_past_the_limit_the_call_ends_cleanly(
    serve_file: Path, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from runner.serve.calls import MALFORMED_LIMIT

    async with phone_server(serve_file, emulator.endpoint) as (base, phones):
        caller = await call(base)
        try:
            await answered(phones)
            for junk in ("not json", '{"event": "media", "media": {"payload": "%%%"}}', "[]"):
                await caller.ws.send(junk)
            caller.say(mulaw_tone(700))
            await caller.ear.until_heard(100)  # the call went on
            assert not caller.closed.is_set()
            assert (
                metric(phones, "vlrun_edge_dropouts_total", edge="twilio", kind="malformed_frame")
                == 3
            )
            for _ in range(MALFORMED_LIMIT):
                await caller.ws.send('{"event": "nonsense"}')
            await asyncio.wait_for(caller.closed.wait(), 5)
        finally:
            await caller.close()
        await asyncio.wait_for(phones.idle(), 10)
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="malformed") == 1
    assert "malformed twilio frame" in caplog.text


async def test_busy_worker_rejects_with_twiml(tmp_path: Path, emulator: Any) -> None:
    serve = write_serve(tmp_path, max_calls=1)
    async with phone_server(serve, emulator.endpoint) as (base, phones):
        first = await call(base)
        try:
            await answered(phones)
            status, xml, _ = await webhook(base)
            assert status == 200
            assert '<Reject reason="busy"' in xml
            assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="refused") == 1
        finally:
            await first.stop()
            await first.close()


async def test_drain_timeout_says_the_goodbye_then_hangs_up(
    serve_file: Path, emulator: Any
) -> None:
    async with phone_server(serve_file, emulator.endpoint) as (base, phones):
        caller = await call(base)
        try:
            await answered(phones)
            assert phones.has_room()
            drain = asyncio.create_task(phones.drain(timeout=0.2))
            await emulator.wait_for(
                lambda e: (
                    e["type"] == "response.create"
                    and "Goodbye from the phone desk."
                    in json.dumps(e.get("response", {}).get("pre_generated_assistant_message"))
                ),
                timeout=5,
            )
            assert not phones.has_room()  # /readyz is false from the first moment of the drain
            status, xml, _ = await webhook(base)
            assert status == 200 and '<Reject reason="busy"' in xml
            await asyncio.wait_for(drain, 20)
            await asyncio.wait_for(caller.closed.wait(), 5)
            # the goodbye was heard to its end before the hang-up
            assert caller.ear.heard_ms() >= len(caller.ear.received) / 8 - 1
            assert len(caller.ear.received) > 8 * 500
        finally:
            await caller.close()
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="drained") == 1


async def test_frame_delays_reach_metrics_while_the_call_is_up(
    serve_file: Path, emulator: Any
) -> None:
    """A scrape mid-call sees the call's outbound frames (they used to arrive at hang-up)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with phone_server(serve_file, emulator.endpoint) as (base, phones):
        caller = await call(base)
        try:
            caller.say(mulaw_tone(700))
            await caller.ear.until_heard(1500)  # 25 messages: more than one report's worth
            assert phones.calls, "the call is still up"
            async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
                text = await r.text()
        finally:
            await caller.close()
    counts = {
        s.labels["edge"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "vlrun_outbound_frame_delay_seconds_count"
    }
    assert counts.get("twilio", 0) >= 1000 // OUTBOUND_FRAME_MS, counts  # a second's worth
