"""The emulator's conformance rules (docs/emulator.md#conformance), one test each, and the
table itself: every row names a test that exists and is cited by a `# source:` comment."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from runner.emulator import running_emulator

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "emulator.md"


def url(endpoint: str, **query: str) -> str:
    q = {"api-version": "2026-07-15", "model": "gpt-realtime", **query}
    return (
        endpoint.replace("http://", "ws://")
        + "/voice-live/realtime?"
        + "&".join(f"{k}={v}" for k, v in q.items())
    )


async def next_of(ws: ClientConnection, *types: str, timeout: float = 5) -> dict[str, Any]:
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event["type"] in types:
            return event


async def update(ws: ClientConnection, session: dict[str, Any], eid: str = "u") -> dict[str, Any]:
    """Send a session.update; return the session.updated or the (first) error it got."""
    await ws.send(json.dumps({"type": "session.update", "event_id": eid, "session": session}))
    return await next_of(ws, "session.updated", "error")


# --- the table ------------------------------------------------------------------------------------


def table_rows() -> list[dict[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Conformance", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[a-z0-9-]+`", cells[0]):
            rows.append(
                dict(zip(("id", "behaviour", "source", "kind", "test"), cells, strict=True))
            )
    return rows


def test_every_row_names_existing_tests_and_is_cited_in_the_code() -> None:
    rows = table_rows()
    assert len(rows) >= 20
    cited = "\n".join(p.read_text() for p in (ROOT / "runner" / "emulator").glob("*.py"))
    for row in rows:
        rid = row["id"].strip("`")
        assert row["kind"] in ("strict", "permissive", "documented"), row
        assert row["source"], row
        assert f"docs/emulator.md#{rid}" in cited, f"no `# source:` comment cites {rid}"
        tests = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row["test"])
        assert tests, f"row {rid} names no test"
        for path, name in tests:
            body = (ROOT / path).read_text()
            assert re.search(rf"^(async )?def {name}\(", body, re.M), f"{path}::{name} missing"
        # the anchor the code cites exists in the doc
        assert f'<a id="{rid}"></a>' in row["behaviour"], f"row {rid} has no anchor"


# --- history-dependent session.update -------------------------------------------------------------


async def test_events_before_the_first_update_are_refused() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await ws.send(json.dumps({"type": "response.create", "event_id": "early"}))
        err = (await next_of(ws, "error"))["error"]
        assert (err["code"], err["event_id"]) == ("session_not_configured", "early")
        assert (await update(ws, {"turn_detection": None}))["type"] == "session.updated"
        await ws.send(json.dumps({"type": "response.create"}))
        assert (await next_of(ws, "response.created", "error"))["type"] == "response.created"
        # a refused update does not count as the first one
        assert "response.created" not in [e["type"] for e in emu.sessions[0].sent[:2]]


async def test_turn_detection_type_cannot_change_after_configuration() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        first = await update(ws, {"turn_detection": {"type": "azure_semantic_vad"}})
        assert first["type"] == "session.updated"  # the first update may change the default
        same = await update(
            ws, {"turn_detection": {"type": "azure_semantic_vad", "threshold": 0.7}}
        )
        assert same["session"]["turn_detection"]["threshold"] == 0.7
        other = await update(ws, {"turn_detection": {"type": "server_vad"}}, "change")
        assert other["type"] == "error"
        assert other["error"]["param"] == "session.turn_detection.type"
        assert other["error"]["event_id"] == "change"
        assert emu.sessions[0].fidelity == []  # full updates: nothing assumed


async def test_turn_detection_null_switch_is_allowed_with_a_fidelity_note() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await update(ws, {"turn_detection": {"type": "server_vad"}})
        off = await update(ws, {"turn_detection": None})
        assert off["type"] == "session.updated" and off["session"]["turn_detection"] is None
        assert emu.sessions[0].fidelity == ["turn-detection-null"]


async def test_azure_speech_with_server_vad_on_a_realtime_model_is_refused() -> None:
    bad = {
        "turn_detection": {"type": "server_vad"},
        "input_audio_transcription": {"model": "azure-speech"},
    }
    async with running_emulator(speed=0) as emu:
        async with connect(url(emu.endpoint)) as ws:
            await next_of(ws, "session.created")
            err = await update(ws, bad)
            assert err["error"]["message"] == (
                "When using azure-speech as InputAudioTranscription, turn_detection must be of "
                "type AzureSemanticVAD or AzureMultilingualSemanticVAD"
            )
            ok = {**bad, "turn_detection": {"type": "azure_semantic_vad_multilingual"}}
            assert (await update(ws, ok))["type"] == "session.updated"
        async with connect(url(emu.endpoint, model="gpt-4.1-mini")) as ws:  # cascaded: fine
            await next_of(ws, "session.created")
            assert (await update(ws, bad))["type"] == "session.updated"
        async with connect(url(emu.endpoint)) as ws:  # the default VAD left alone: assumed ok
            await next_of(ws, "session.created")
            lone = await update(ws, {"input_audio_transcription": {"model": "azure-speech"}})
            assert lone["type"] == "session.updated"
        assert emu.sessions[2].fidelity == ["azure-speech-default-vad"]


async def test_echo_cancellation_with_text_only_modalities_is_refused() -> None:
    ec = {"type": "server_echo_cancellation"}
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        err = await update(ws, {"modalities": ["text"], "input_audio_echo_cancellation": ec})
        assert err["error"]["code"] == "ec_not_supported"
        both = await update(
            ws, {"modalities": ["text", "audio"], "input_audio_echo_cancellation": ec}
        )
        assert both["type"] == "session.updated"


async def test_partial_update_merges_and_notes_fidelity() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await update(ws, {"instructions": "one", "voice": "echo", "turn_detection": None})
        again = await update(ws, {"instructions": "one", "voice": "echo", "turn_detection": None})
        assert emu.sessions[0].fidelity == []  # the same keys again: whole, no note
        part = await update(ws, {"instructions": "two"})
        assert part["session"]["instructions"] == "two"
        assert part["session"]["voice"] == again["session"]["voice"] == "echo"  # merged
        assert emu.sessions[0].fidelity == ["partial-update"]


# --- defaults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "model", "prefix", "transcription"),
    [
        ("2025-05-01-preview", "gpt-realtime", 300, None),
        ("2025-10-01", "gpt-4o", 300, {"model": "azure-speech"}),
        ("2026-01-01-preview", "gpt-realtime", 300, None),
        ("2026-04-10", "gpt-4.1", 400, {"model": "azure-speech"}),
        ("2026-07-15", "gpt-realtime", 400, None),
    ],
)
async def test_session_created_defaults_per_api_version(
    api: str, model: str, prefix: int, transcription: dict[str, str] | None
) -> None:
    async with (
        running_emulator(speed=0) as emu,
        connect(url(emu.endpoint, **{"api-version": api, "model": model})) as ws,
    ):
        session = (await next_of(ws, "session.created"))["session"]
    td = session["turn_detection"]
    assert (td["type"], td["threshold"], td["silence_duration_ms"]) == ("server_vad", 0.5, 500)
    assert td["prefix_padding_ms"] == prefix
    assert session["input_audio_transcription"] == transcription
    assert session["input_audio_noise_reduction"] is None
    assert session["input_audio_echo_cancellation"] is None


# --- MCP ------------------------------------------------------------------------------------------

MCP = {
    "type": "mcp",
    "server_label": "docs",
    "server_url": "https://mcp.example",
    "allowed_tools": ["search"],
    "require_approval": "never",
}


def _stamps(record: Any, types: tuple[str, ...]) -> list[str]:
    return [e["type"] for e in record.sent if e["type"] in types]


async def test_mcp_events_are_spread_over_the_latency() -> None:
    script = {"mcp_latency_ms": 150, "turns": [{"match": "docs", "mcp": {"server_label": "docs",
              "name": "search", "output": "found"}}]}  # fmt: skip
    async with running_emulator(speed=1, scenario=script) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await update(ws, {"turn_detection": None, "tools": [MCP]})
        started = time.monotonic()
        await next_of(ws, "mcp_list_tools.completed")
        assert time.monotonic() - started >= 0.14  # one network step
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text",
            "text": "search the docs"}]}}))  # fmt: skip
        await ws.send(json.dumps({"type": "response.create"}))
        await next_of(ws, "response.done")
        done_at = time.monotonic()
        completed = await next_of(ws, "response.mcp_call.completed")
        assert time.monotonic() - done_at >= 0.14
        item = (await next_of(ws, "response.output_item.done"))["item"]
        assert item["id"] == completed["item_id"] and item["output"] == "found"
    # even at speed 0 the call's events do not leave in the same instant
    async with running_emulator(speed=0, scenario=script) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await update(ws, {"turn_detection": None, "tools": [MCP]})
        await next_of(ws, "mcp_list_tools.completed")
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text",
            "text": "docs"}]}}))  # fmt: skip
        await ws.send(json.dumps({"type": "response.create"}))
        started = time.monotonic()
        await next_of(ws, "response.output_item.done")  # the call's, after response.done
        assert time.monotonic() - started >= 0.006  # at least three floor steps
        assert "mcp-order" in emu.sessions[0].fidelity


async def test_a_finished_mcp_result_never_answers_a_later_turn() -> None:
    script = {"turns": [{"match": "docs", "mcp": {"server_label": "docs", "name": "search",
              "output": "found"}}]}  # fmt: skip
    async with running_emulator(speed=0, scenario=script) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await update(ws, {"turn_detection": None, "tools": [MCP], "modalities": ["text"]})

        async def turn(text: str) -> str:
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text",
                "text": text}]}}))  # fmt: skip
            await ws.send(json.dumps({"type": "response.create"}))
            return str((await next_of(ws, "response.text.done", "response.done")).get("text"))

        await turn("search the docs")
        await next_of(ws, "response.mcp_call.completed")
        # the client never asked for the result; the next, unrelated turn is answered itself
        assert await turn("what time is it") == "[emulator] You said: what time is it"
        assert not any("found" in json.dumps(e) for e in emu.sessions[0].sent[-8:])


# --- avatar, input_text, scripted failures --------------------------------------------------------


async def test_avatar_connect_gets_an_emulated_sdp_answer() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await update(ws, {"turn_detection": None})
        offer = base64.b64encode(b"v=0\r\n").decode()
        await ws.send(json.dumps({"type": "session.avatar.connect", "client_sdp": offer}))
        answer = await next_of(ws, "session.avatar.connecting")
        sdp = base64.b64decode(answer["server_sdp"]).decode()
        assert "[emulator]" in sdp and "no avatar video" in sdp and "m=" not in sdp
        await ws.send(json.dumps({"type": "session.avatar.connect", "event_id": "x"}))
        assert (await next_of(ws, "error"))["error"]["param"] == "client_sdp"
        assert not any(e["type"] == "response.video.delta" for e in emu.sessions[0].sent)
        assert emu.sessions[0].fidelity == ["avatar"]


async def test_input_text_streams_into_a_user_turn() -> None:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await update(ws, {"turn_detection": None, "modalities": ["text"]})
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {"id": "msg_1",
            "type": "message", "role": "user", "content": [{"type": "input_text",
            "text": ""}]}}))  # fmt: skip
        for piece in ("hello ", "stream"):
            await ws.send(json.dumps({"type": "input_text.delta", "id": "msg_1", "delta": piece}))
        await ws.send(json.dumps({"type": "input_text.done", "id": "msg_1"}))
        await ws.send(json.dumps({"type": "response.create"}))
        done = await next_of(ws, "response.text.done")
        assert done["text"] == "[emulator] You said: hello stream"
        await ws.send(json.dumps({"type": "input_text.delta", "id": "nope", "delta": "x"}))
        assert (await next_of(ws, "error"))["error"]["code"] == "item_not_found"
        assert "input-text" in emu.sessions[0].fidelity


async def test_scripted_transcription_failure_and_warning() -> None:
    from runner.emulator.speech import synthetic

    script = {
        "turns": [
            {
                "turn": 1,
                "transcription_failed": {"code": "audio_unintelligible", "message": "no words"},
                "warning": {"code": "slow_backend", "message": "the backend is slow"},
                "say": "Sorry?",
            }
        ]
    }
    speech = synthetic("one two three four", 24000)
    async with running_emulator(speed=0, scenario=script) as emu, connect(url(emu.endpoint)) as ws:
        await next_of(ws, "session.created")
        await update(
            ws, {"turn_detection": None, "input_audio_transcription": {"model": "whisper-1"}}
        )
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(speech).decode()}))  # fmt: skip
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await ws.send(json.dumps({"type": "response.create"}))
        failed = await next_of(ws, "conversation.item.input_audio_transcription.failed")
        assert failed["error"]["message"] == "no words" and failed["content_index"] == 0
        warning = await next_of(ws, "warning")
        assert warning["warning"] == {
            "message": "the backend is slow",
            "code": "slow_backend",
            "param": None,
        }
        await next_of(ws, "response.done")
        sent = [e["type"] for e in emu.sessions[0].sent]
        assert "conversation.item.input_audio_transcription.completed" not in sent


# --- vlrun's own side: the whole compiled session, every time -------------------------------------


async def test_vlrun_sends_the_whole_compiled_session_on_greeting_and_reconnect(
    tmp_path: Path,
) -> None:
    from runner.config.compile import compile_session
    from runner.config.load import load_profile
    from runner.emulator import Faults
    from tests.test_session import PLAIN, build, is_assistant, write_profile

    path = write_profile(tmp_path, PLAIN)
    compiled = compile_session(load_profile(path))
    # the first connection is cut a few events into the first reply
    async with running_emulator(
        speed=0, faults=Faults(drop_after_events=4, connections=(1,))
    ) as emu:
        h = build(path, emu.endpoint, tmp_path)
        h.start()
        await emu.wait_for(lambda e: e["type"] == "session.update")
        await h.session.send_text("first question")
        await emu.wait_for(lambda e: e["type"] == "session.update", timeout=10)
        await h.session.send_text("hello again")
        await h.turn(is_assistant("You said: hello again"))
        assert await h.stop() == 0
    updates = [
        (record.number, e) for record in emu.sessions for e in record.received
        if e["type"] == "session.update"
    ]  # fmt: skip
    assert [n for n, _ in updates] == [1, 2]
    for _, event in updates:
        assert event["session"] == compiled["session"]
    for record in emu.sessions:
        assert record.received[0]["type"] == "session.update"  # before the greeting
        assert "partial-update" not in record.fidelity


async def test_vlrun_emulate_prints_each_fidelity_line_once() -> None:
    import signal
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "emulate", "--speed", "0", "--no-espeak",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        endpoint = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        for _ in range(2):  # two sessions, each with two partial updates
            async with connect(url(endpoint)) as ws:
                await next_of(ws, "session.created")
                await update(ws, {"instructions": "a", "turn_detection": None})
                await update(ws, {"instructions": "b"})
                await update(ws, {"instructions": "c"})
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = [line for line in err.decode().splitlines() if line.startswith("fidelity: ")]
    assert len(lines) == 1 and "merges it into the session" in lines[0]
