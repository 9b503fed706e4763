"""Issue 25's findings on the phone edges, each against a real server, emulator and caller.

- capacity is held from a call's first request (a burst of webhooks is not all answered);
- one call id holds one Voice Live session (a replayed media socket is refused);
- a caller that vanishes without closing is noticed by the media watchdog;
- a Voice Live drop during the goodbye still hangs the call up;
- a worker that loses Voice Live ends its calls within the reconnect budget.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.phone_callers import TwilioCaller, parse_twiml
from tests.relay import relay
from tests.telephony_helpers import metric, phone_server, quiet_emulator, write_serve
from tests.test_telephony_twilio import SIG, answered, call, twilio_signature, webhook

pytest.importorskip("twilio")


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    async with quiet_emulator() as emu:
        yield emu


async def test_a_burst_of_webhooks_past_max_calls_is_refused_busy(
    tmp_path: Path, emulator: Any
) -> None:
    """max_calls: 1 and three calls ring before any media socket opens: one is answered."""
    serve = write_serve(tmp_path, max_calls=1)
    async with phone_server(serve, emulator.endpoint) as (base, phones):
        answers = [await webhook(base) for _ in range(3)]
        assert [status for status, _, _ in answers] == [200, 200, 200]
        connects = [xml for _, xml, _ in answers if "<Connect>" in xml]
        busy = [xml for _, xml, _ in answers if '<Reject reason="busy"' in xml]
        assert (len(connects), len(busy)) == (1, 2)
        assert not phones.has_room()  # /readyz: 503 from the first webhook
        assert metric(phones, "vlrun_slots_total", edge="twilio", what="reserved") == 1


async def test_a_replayed_media_socket_gets_no_second_session(
    tmp_path: Path, emulator: Any
) -> None:
    serve = write_serve(tmp_path)
    async with phone_server(serve, emulator.endpoint) as (base, phones):
        _, xml, form = await webhook(base)
        url, params = parse_twiml(xml)
        first = TwilioCaller(form["CallSid"])
        await first.connect(url, params, headers={SIG: twilio_signature(url, {})})
        try:
            await answered(phones)
            replay = TwilioCaller(form["CallSid"])  # the same signed URL and stream token
            await replay.connect(url, params, headers={SIG: twilio_signature(url, {})})
            await asyncio.wait_for(replay.closed.wait(), 5)
            await replay.close()
            assert replay.close_code == 1008
            assert len(phones.calls) == 1
            assert len(emulator.sessions) == 1  # one Voice Live session for the call
            assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="duplicate") == 1
        finally:
            await first.stop()
            await first.close()


async def test_a_caller_that_vanishes_without_closing_is_ended_as_dropped(
    tmp_path: Path, emulator: Any
) -> None:
    """The caller's media stops but its socket stays open (a dead NAT, a frozen carrier)."""
    serve = write_serve(tmp_path)
    async with phone_server(serve, emulator.endpoint, media_timeout_s=0.5, sweep_s=0.1) as (
        base,
        phones,
    ):
        caller = await call(base)
        try:
            active = await answered(phones)
            caller.tasks[0].cancel()  # its microphone: no more media frames, socket open
            await asyncio.wait_for(phones.idle(), 10)
            await asyncio.wait_for(caller.closed.wait(), 5)
        finally:
            await caller.close()
        assert active.edge.outcome == "dropped"
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="dropped") == 1
        assert metric(phones, "vlrun_active_calls", edge="twilio") == 0
        assert phones.supervisor.status()["active"] == 0
    # the billed Voice Live session went with the call
    assert all(record.closed for record in emulator.sessions)


def _goodbye(frame: str) -> bool:
    event = json.loads(frame)
    message = (event.get("response") or {}).get("pre_generated_assistant_message")
    return event.get("type") == "response.create" and "Goodbye" in json.dumps(message)


async def test_a_voice_live_drop_during_the_goodbye_still_hangs_up(
    tmp_path: Path, emulator: Any
) -> None:
    serve = write_serve(tmp_path)
    async with (
        relay(emulator.endpoint, cut_when=_goodbye) as endpoint,
        phone_server(serve, endpoint) as (base, phones),
    ):
        caller = await call(base)
        try:
            active = await answered(phones)
            await asyncio.wait_for(phones.drain(timeout=0), 15)
            await asyncio.wait_for(caller.closed.wait(), 5)
        finally:
            await caller.close()
        assert active.edge.outcome == "drained"
        assert not phones.calls
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="drained") == 1


async def test_losing_voice_live_mid_call_ends_the_call_within_its_budget(
    tmp_path: Path, emulator: Any
) -> None:
    """Voice Live goes away for good mid-call: jittered retries, then the call ends (not a
    caller left in silence while a session retries for minutes)."""
    serve = write_serve(tmp_path)
    async with (
        relay(emulator.endpoint, cut_when=lambda frame: '"[DTMF] 9"' in frame) as endpoint,
        phone_server(serve, endpoint) as (base, phones),
    ):
        caller = await call(base)
        try:
            active = await answered(phones)
            await caller.dtmf("9")  # the next client event cuts the link
            await asyncio.wait_for(phones.idle(), 20)
            await asyncio.wait_for(caller.closed.wait(), 5)
        finally:
            await caller.close()
        assert active.edge.outcome == "service_lost"
        assert active.session.end_reason in ("reconnect_failed", "reconnect_budget")
        assert 1 <= active.session.metrics.reconnects <= 8
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="service_lost") == 1


async def test_a_call_past_max_call_s_hears_the_goodbye_and_is_hung_up(
    tmp_path: Path, emulator: Any
) -> None:
    serve = write_serve(tmp_path, "max_call_s: 30\nmedia_timeout_s: 7\n")
    async with phone_server(serve, emulator.endpoint, sweep_s=0.1) as (base, phones):
        assert (phones.supervisor.max_call_s, phones.media_timeout_s) == (30, 7)
        caller = await call(base)
        try:
            active = await answered(phones)
            phones.supervisor.max_call_s = 0.2  # the serve file's floor is 10 s; a test's is not
            await emulator.wait_for(
                lambda e: (
                    e["type"] == "response.create"
                    and "Goodbye from the phone desk." in json.dumps(e.get("response", {}))
                ),
                timeout=10,
            )
            await asyncio.wait_for(caller.closed.wait(), 20)
        finally:
            await caller.close()
        await asyncio.wait_for(phones.idle(), 10)
        assert active.edge.outcome == "max_length"
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="max_length") == 1
