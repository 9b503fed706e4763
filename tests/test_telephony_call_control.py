"""Call control as tools: the model hangs up (with a goodbye), transfers, presses keys; what an
edge cannot do reaches the model as a tool error. The emulator's model script makes the calls;
ACS's side is the fake ACS, which records what the official SDK asked for."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_acs import RESOURCE_ID, fake_acs
from tests.phone_callers import mulaw_tone, tone
from tests.telephony_helpers import PROFILE, TWILIO_TOKEN, metric, phone_server
from tests.test_telephony_acs import SECRET, Acs, incoming_call
from tests.test_telephony_twilio import call

pytest.importorskip("twilio")
pytest.importorskip("azure.communication.callautomation")


def script(*tools: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": "call control",
        "turns": [{"turn": 1, "transcript": "please", "tools": list(tools), "then": "Done."}],
    }


@contextlib.asynccontextmanager
async def server(tmp: Path, model: dict[str, Any], fake: Any = None) -> AsyncIterator[Any]:
    from runner.emulator import running_emulator

    (tmp / "phone.yaml").write_text(PROFILE, encoding="utf-8")
    acs = (
        "acs:\n  connection_string: ${env:TEST_ACS}\n"
        f"  resource_id: {RESOURCE_ID}\n  jwks_url: {fake.jwks_url}\n"
        "  event_grid_secret: ${env:TEST_EG_SECRET}\n"
        if fake is not None
        else ""
    )
    path = tmp / "serve.yaml"
    path.write_text(
        "serve: 1\nroutes:\n"
        "  - {default: true, profile: phone.yaml, call_control: [hang_up, transfer, send_dtmf]}\n"
        "twilio:\n  auth_token: ${env:TEST_TWILIO_TOKEN}\n" + acs,
        encoding="utf-8",
    )
    env = {"TEST_TWILIO_TOKEN": TWILIO_TOKEN, "TEST_EG_SECRET": SECRET}
    if fake is not None:
        env["TEST_ACS"] = fake.connection_string
    options = {"client_options": {"connection_verify": str(fake.ca)}} if fake else None
    async with (
        running_emulator(scenario=model, speed=0, use_espeak=False) as emu,
        phone_server(path, emu.endpoint, env=env, acs_options=options) as (base, phones),
    ):
        yield emu, base, phones


async def tool_output(emu: Any) -> dict[str, Any]:
    event = await emu.wait_for(
        lambda e: (
            e["type"] == "conversation.item.create"
            and e.get("item", {}).get("type") == "function_call_output"
        ),
        timeout=10,
    )
    output: dict[str, Any] = json.loads(event["item"]["output"])
    return output


async def test_the_model_hangs_up_with_a_goodbye(tmp_path: Path) -> None:
    model = script({"name": "hang_up", "arguments": {"goodbye": "Bye now, take care."}})
    async with server(tmp_path, model) as (emu, base, phones):
        caller = await call(base)
        try:
            caller.say(mulaw_tone(700))
            update = await emu.wait_for(lambda e: e["type"] == "session.update", timeout=5)
            names = {t["name"] for t in update["session"]["tools"]}
            assert {"hang_up", "transfer", "send_dtmf"} <= names
            assert (await tool_output(emu))["status"] == "hanging up after the goodbye"
            await emu.wait_for(
                lambda e: (
                    e["type"] == "response.create"
                    and "Bye now, take care."
                    in json.dumps(e.get("response", {}).get("pre_generated_assistant_message"))
                ),
                timeout=10,
            )
            await asyncio.wait_for(caller.closed.wait(), 20)  # the call ends after the goodbye
        finally:
            await caller.close()
        await asyncio.wait_for(phones.idle(), 10)
        assert metric(phones, "vlrun_calls_total", edge="twilio", outcome="completed") == 1


async def test_what_twilio_cannot_do_is_a_tool_error(tmp_path: Path) -> None:
    model = script(
        {"name": "send_dtmf", "arguments": {"digits": "12#"}},
        {"name": "transfer", "arguments": {"target": "+15557654321"}},
    )
    async with server(tmp_path, model) as (emu, base, _phones):
        caller = await call(base)
        try:
            caller.say(mulaw_tone(700))
            first, second = await tool_output(emu), await tool_output(emu)
        finally:
            await caller.stop()
            await caller.close()
    messages = json.dumps([first, second])
    assert "cannot send DTMF" in messages
    assert "transfers need twilio.account_sid" in messages


async def test_acs_transfer_and_dtmf_go_through_the_sdk(tmp_path: Path) -> None:
    model = script(
        {"name": "send_dtmf", "arguments": {"digits": "12#"}},
        {"name": "transfer", "arguments": {"target": "+15557654321"}},
    )
    async with fake_acs(tmp_path) as fake, server(tmp_path, model, fake) as (emu, base, phones):
        acs = Acs(fake, base, phones)
        await acs.post("/acs/incoming?secret=" + SECRET, incoming_call())
        caller = await acs.answer_media(fake.answers()[-1])
        try:
            caller.say(tone(700, 16000))
            outputs = [await tool_output(emu), await tool_output(emu)]
        finally:
            await caller.close()
    assert [o["status"] for o in outputs] == ["sent 12#", "transferring to +15557654321"]
    dtmf = next(r for r in fake.requests if r["path"].endswith(":sendDtmfTones"))
    assert dtmf["path"] == "/calling/callConnections/cc-media-1:sendDtmfTones"
    assert dtmf["body"]["tones"] == ["one", "two", "pound"]
    assert dtmf["body"]["targetParticipant"]["phoneNumber"]["value"] == "+15559990000"
    moved = next(r for r in fake.requests if r["path"].endswith(":transferToParticipant"))
    assert moved["body"]["targetParticipant"]["phoneNumber"]["value"] == "+15557654321"
    assert fake.bad_auth == 0
