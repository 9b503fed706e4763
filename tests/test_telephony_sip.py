"""Voice Live SIP calls (preview): the emulator rings through a signed webhook, vlrun serve
accepts or rejects, attaches, converses, transfers and hangs up over the SIP API; and the
emulator's SIP surface errs on the strict side (api-version, Entra only, problem bodies,
state machine, secrets shown once, rotation grace, decision timeout)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.emulator.sip import API_VERSION, PREFIX, sign
from runner.serve.sip import signature_ok
from tests.telephony_helpers import PROFILE, metric, phone_server
from tests.test_telephony_call_control import tool_output

pytest.importorskip("prometheus_client")

BEARER = {"Authorization": "Bearer test-token"}


def script(*tools: dict[str, Any]) -> dict[str, Any]:
    turns: list[dict[str, Any]] = [{"turn": 1, "transcript": "hello", "say": "Hi, phone desk."}]
    if tools:
        turns.append({"turn": 2, "transcript": "please", "tools": list(tools), "then": "Done."})
    return {"description": "sip", "turns": turns}


async def api(emu: Any, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    params = kw.pop("params", {"api-version": API_VERSION})
    headers = kw.pop("headers", BEARER)
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, emu.endpoint + PREFIX + path, json=body, params=params, headers=headers
        ) as r,
    ):
        text = await r.text()
        return r.status, json.loads(text) if text.strip() else None


async def ring(emu: Any, **options: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(emu.endpoint + "/_emulator/sip/calls", json=options) as r,
    ):
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def caller(emu: Any, call_id: str, action: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{emu.endpoint}/_emulator/sip/calls/{call_id}/{action}", json=body) as r,
    ):
        return r.status, await r.json()


@contextlib.asynccontextmanager
async def sip_server(
    tmp: Path,
    model: dict[str, Any],
    *,
    max_calls: int = 10,
    control: str = "",
    profile: str = PROFILE,
    **emu_options: Any,
) -> AsyncIterator[tuple[Any, str, Any, str]]:
    """(emulator, base URL, Phones, signing secret) with the emulator's webhook pointing here."""
    from runner.emulator import running_emulator

    (tmp / "phone.yaml").write_text(profile, encoding="utf-8")
    path = tmp / "serve.yaml"
    path.write_text(
        f"serve: 1\nmax_calls: {max_calls}\ndrain_timeout_s: 5\nroutes:\n"
        f"  - {{default: true, profile: phone.yaml, goodbye: Goodbye from SIP.{control}}}\n"
        "voicelive_sip:\n  preview: true\n  webhook_secret: ${env:TEST_SIP_SECRET}\n",
        encoding="utf-8",
    )
    async with running_emulator(scenario=model, speed=0, use_espeak=False, **emu_options) as emu:
        status, hook = await api(emu, "POST", "/webhooks", {"url": "https://example.invalid/"})
        assert status == 200 and hook["signing_secret"].startswith("whsec_")
        secret = hook["signing_secret"]
        async with phone_server(path, emu.endpoint, env={"TEST_SIP_SECRET": secret}) as (
            base,
            phones,
        ):
            status, _ = await api(
                emu, "POST", f"/webhooks/{hook['id']}", {"url": base + "/sip/webhook"}
            )
            assert status == 200
            yield emu, base, phones, secret


def state(emu: Any, call_id: str, wanted: str) -> Any:
    return lambda: emu.sip.calls[call_id].state == wanted


async def connected_call(emu: Any, phones: Any, **options: Any) -> str:
    rung = await ring(emu, **options)
    assert rung["webhook_statuses"] == [200]
    call_id = str(rung["call_id"])
    await emu.sip.until(state(emu, call_id, "Connected"))
    await emu.wait_for(lambda e: e["type"] == "session.update", timeout=10)
    await phones.until(lambda: any(c.session is not None for c in phones.calls.values()))
    for active in phones.calls.values():
        await active.session.ready.wait()
    return call_id


# ---------------------------------------------------------------------- the call's life


async def test_a_call_is_accepted_attached_answered_and_ends_when_the_caller_hangs_up(
    tmp_path: Path,
) -> None:
    async with sip_server(tmp_path, script()) as (emu, _base, phones, _secret):
        call_id = await connected_call(emu, phones)
        call = emu.sip.calls[call_id]
        # accepted with the route's compiled agent configuration, then attached
        assert call.config is not None and call.config["instructions"] == "You answer the phone."
        assert call.config["model"]
        assert emu.sessions[-1].query["call_id"] == call_id
        assert emu.sessions[-1].query["audio"] == "false"
        active = next(iter(phones.calls.values()))
        assert active.edge.provider == "sip" and active.edge.provider_call_id == call_id
        status, _ = await caller(emu, call_id, "say", {"text": "hello"})
        assert status == 200
        transcript = active.session.transcript
        await active.session.turn.until(
            lambda: any(t.text == "Hi, phone desk." for t in transcript.turns)
        )
        assert metric(phones, "vlrun_active_calls", edge="sip") == 1
        await caller(emu, call_id, "hangup")
        await phones.idle()
    assert metric(phones, "vlrun_calls_total", edge="sip", outcome="caller_hung_up") == 1
    assert call.terminal_reason == "CustomerHangup"


async def test_a_busy_worker_rejects_486_and_readyz_says_not_ready(tmp_path: Path) -> None:
    async with sip_server(tmp_path, script(), max_calls=1) as (emu, _base, phones, _secret):
        await connected_call(emu, phones)
        assert not phones.has_room()
        second = (await ring(emu))["call_id"]
        await emu.sip.until(state(emu, second, "Disconnected"))
        assert emu.sip.calls[second].terminal_reason == "Rejected"
        assert len(phones.calls) == 1
        assert metric(phones, "vlrun_calls_total", edge="sip", outcome="refused") == 1


@pytest.mark.parametrize("forgery", ["missing", "wrong secret", "stale", "tampered body"])
async def test_a_forged_webhook_gets_403_and_nothing_starts(
    tmp_path: Path, forgery: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with sip_server(tmp_path, script()) as (emu, base, phones, secret):
        body = json.dumps(
            {
                "type": "realtime.call.incoming",
                "call_id": "rtc_x",
                "chain_id": "c",
                "state": "WaitingForCustomer",
            }
        ).encode()
        stamp = int(time.time()) - (3600 if forgery == "stale" else 0)
        key = (
            "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
            if forgery == "wrong secret"
            else secret
        )
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp)}
        if forgery != "missing":
            headers["webhook-signature"] = sign(key, "msg_1", stamp, body)
        sent = body.replace(b"rtc_x", b"rtc_y") if forgery == "tampered body" else body
        async with (
            aiohttp.ClientSession() as http,
            http.post(base + "/sip/webhook", data=sent, headers=headers) as r,
        ):
            assert r.status == 403
        assert not phones.calls
        assert metric(phones, "vlrun_calls_total", edge="sip", outcome="forbidden") == 1
        assert "webhook-signature" in caplog.text
        assert secret not in caplog.text


def test_signature_check_accepts_either_secret_during_rotation() -> None:
    old, new = (
        "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZA==",
        "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldw==",
    )
    body, now = b'{"type":"realtime.call.incoming"}', int(time.time())
    both = sign(new, "m", now, body) + " " + sign(old, "m", now, body)
    headers = {"webhook-id": "m", "webhook-timestamp": str(now), "webhook-signature": both}
    assert signature_ok(old, headers, body, now)
    assert signature_ok(new, headers, body, now)
    assert not signature_ok(new, headers, body + b" ", now)
    assert not signature_ok(new, headers, body, now + 301)


# ---------------------------------------------------------------------- call control


async def ask_for_the_tool(emu: Any, call_id: str) -> None:
    """The caller's two turns: a greeting, then the request the script answers with a tool."""
    for text in ("hello", "please"):
        status, _ = await caller(emu, call_id, "say", {"text": text})
        assert status == 200


async def test_the_model_hangs_up_with_the_goodbye_first(tmp_path: Path) -> None:
    model = script({"name": "hang_up", "arguments": {"goodbye": "Bye from SIP now."}})
    control = ", call_control: [hang_up, transfer, send_dtmf]"
    async with sip_server(tmp_path, model, control=control) as (emu, _base, phones, _secret):
        call_id = await connected_call(emu, phones)
        await ask_for_the_tool(emu, call_id)
        await emu.sip.until(state(emu, call_id, "Disconnected"))
        goodbye = await emu.wait_for(
            lambda e: "pre_generated_assistant_message" in e.get("response", {}), timeout=10
        )
        assert "Bye from SIP now." in json.dumps(goodbye)
        await phones.idle()
    call = emu.sip.calls[call_id]
    assert call.hangup_reasons == ["call_completed"]
    assert metric(phones, "vlrun_calls_total", edge="sip", outcome="completed") == 1


@pytest.mark.parametrize("outcome", ["succeeded", "fail"])
async def test_transfer_is_a_refer_and_its_result_reaches_the_model(
    tmp_path: Path, outcome: str
) -> None:
    model = script({"name": "transfer", "arguments": {"target": "+15551234567"}})
    control = ", call_control: [transfer]"
    async with sip_server(tmp_path, model, control=control) as (emu, _base, phones, _secret):
        call_id = await connected_call(emu, phones, transfer=outcome)
        await ask_for_the_tool(emu, call_id)
        call = emu.sip.calls[call_id]
        if outcome == "succeeded":
            # the caller has left with the transfer: the call ends, no reply follows
            await emu.sip.until(state(emu, call_id, "Disconnected"))
            assert call.refer_targets == ["tel:+15551234567"]
            assert call.terminal_reason == "TransferSucceeded"
            await phones.idle()
            assert metric(phones, "vlrun_calls_total", edge="sip", outcome="completed") == 1
        else:
            output = await tool_output(emu)
            assert call.refer_targets == ["tel:+15551234567"]
            message = output["error"]["message"]
            assert "failed" in message and "486" in message
            assert call.state == "Connected"  # the caller stays with the assistant


FLOW = (
    PROFILE
    + """\
flow:
  start: desk
  nodes:
    desk:
      instructions: Ask whether the caller wants a person, then call record_desk.
      collect:
        wants_person: {type: boolean}
      transitions:
        - {to: person, when: wants_person}
        - {to: done}
    person:
      instructions: Transfer the caller to +15551234567 with the transfer tool.
      tools: [transfer]
    done:
      end: true
"""
)


async def test_a_flow_node_owns_transfer_as_its_way_out(tmp_path: Path) -> None:
    """A node lists transfer: only that node's session has it, with no route opt-in."""
    model = {
        "description": "sip flow",
        "turns": [
            {"turn": 1, "tools": [{"name": "record_desk", "arguments": {"wants_person": True}}],
             "then": "I will put you through."},
            {"turn": 2, "tools": [{"name": "transfer", "arguments": {"target": "+15551234567"}}]},
        ],
    }  # fmt: skip
    async with sip_server(tmp_path, model, profile=FLOW) as (emu, _base, phones, _secret):
        call_id = await connected_call(emu, phones)
        first = next(e for e in emu.sessions[-1].received if e["type"] == "session.update")
        assert "transfer" not in {t["name"] for t in first["session"].get("tools", [])}
        await caller(emu, call_id, "say", {"text": "a person, please"})
        person = await emu.wait_for(
            lambda e: (
                e["type"] == "session.update"
                and "transfer" in {t["name"] for t in e["session"].get("tools", [])}
            ),
            timeout=10,
        )
        tools = [t["name"] for t in person["session"]["tools"]]
        assert tools.count("transfer") == 1
        assert "Transfer the caller" in person["session"]["instructions"]
        session = next(iter(phones.calls.values())).session
        await session.turn.until(session.turn.idle)  # the node's turn is over: the caller speaks
        await caller(emu, call_id, "say", {"text": "yes"})
        await emu.sip.until(state(emu, call_id, "Disconnected"))
    call = emu.sip.calls[call_id]
    assert call.refer_targets == ["tel:+15551234567"]
    assert call.terminal_reason == "TransferSucceeded"


async def test_send_dtmf_is_a_tool_error_on_sip_calls(tmp_path: Path) -> None:
    model = script({"name": "send_dtmf", "arguments": {"digits": "12#"}})
    control = ", call_control: [send_dtmf]"
    async with sip_server(tmp_path, model, control=control) as (emu, _base, phones, _secret):
        call_id = await connected_call(emu, phones)
        await ask_for_the_tool(emu, call_id)
        output = await tool_output(emu)
        assert "cannot send DTMF" in output["error"]["message"]


async def test_drain_says_the_goodbye_then_hangs_up(tmp_path: Path) -> None:
    async with sip_server(tmp_path, script()) as (emu, _base, phones, _secret):
        call_id = await connected_call(emu, phones)
        await phones.drain(timeout=0)
        assert emu.sip.calls[call_id].hangup_reasons == ["call_completed"]
        goodbye = await emu.wait_for(
            lambda e: "pre_generated_assistant_message" in e.get("response", {}), timeout=5
        )
        assert "Goodbye from SIP." in json.dumps(goodbye)
    assert metric(phones, "vlrun_calls_total", edge="sip", outcome="drained") == 1


# ---------------------------------------------------------------------- the emulator


async def test_emulator_sip_api_is_strict() -> None:
    from runner.emulator import running_emulator

    async with running_emulator(speed=0, use_espeak=False) as emu:
        status, body = await api(emu, "POST", "/calls/rtc_none/accept", {}, params={})
        assert status == 400 and body["code"] == "invalid_request"
        assert body["type"] == "https://aka.ms/voicelive/sip/errors/invalid_request"
        status, body = await api(emu, "POST", "/calls/rtc_none/accept", {})
        assert (status, body["code"]) == (404, "call_not_found")
        status, body = await api(emu, "POST", "/webhooks", {"url": "x"}, headers={"api-key": "k"})
        assert status == 401 and "Entra" in body["detail"]
        status, body = await api(emu, "POST", "/webhooks", {"url": "http://example.com/hook"})
        assert status == 400 and "url" in body["errors"]
        status, hook = await api(emu, "POST", "/webhooks", {"url": "https://example.invalid/"})
        assert "signing_secret" in hook
        status, listed = await api(emu, "GET", "/webhooks")
        assert listed["object"] == "list"
        assert "signing_secret" not in listed["data"][0]  # shown on create and rotate only
        assert hook["signing_secret"] not in json.dumps(listed)
        status, rotated = await api(emu, "POST", f"/webhooks/{hook['id']}/rotate_secret")
        assert rotated["signing_secret"] != hook["signing_secret"]
        # both secrets sign during the grace period
        assert emu.sip.webhooks[hook["id"]].signing_keys() == [
            rotated["signing_secret"],
            hook["signing_secret"],
        ]
        call_id = (await ring(emu))["call_id"]
        assert (await api(emu, "POST", f"/calls/{call_id}/accept", {"model": "gpt-realtime"}))[
            0
        ] == 200
        status, body = await api(emu, "POST", f"/calls/{call_id}/accept", {})
        assert (status, body["code"], body["state"]) == (409, "invalid_state", "Accepted")
        status, body = await api(emu, "POST", f"/calls/{call_id}/refer", {"target_uri": "+1555"})
        assert status == 400 and "target_uri" in body["errors"]


async def test_an_undecided_call_expires() -> None:
    from runner.emulator import running_emulator

    async with running_emulator(speed=0, use_espeak=False, sip_decision_timeout_s=0.05) as emu:
        call_id = (await ring(emu))["call_id"]
        await emu.sip.until(state(emu, call_id, "Expired"))
        assert emu.sip.calls[call_id].terminal_reason == "DecisionTimeout"
        assert "sip-decision-timeout" in emu.fidelity.seen
        status, body = await api(emu, "POST", f"/calls/{call_id}/accept", {})
        assert (status, body["state"]) == (409, "Expired")
