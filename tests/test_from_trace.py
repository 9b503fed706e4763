"""From a real call to a regression test (runner/scenarios/from_trace.py, `vlrun scenario`):
a real `vlrun serve` records two conversations (typed over its console's WebSocket, as a
person would), `vlrun scenario` turns each trace into a scenario, and the scenario passes
`vlrun check` and `vlrun test` offline, with the caller's phone number and PIN masked."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.scenarios.from_trace import read_log_turns, read_turns
from runner.scenarios.replay import Entry

ROOT = Path(__file__).resolve().parents[1]
START_S = 60.0
PHONE = "+14155551234"
PIN = "2468"
BOOKING = [
    f"guest=Ann date=2026-12-24 time=19:30 party_size=4 and call me on {PHONE}",
    "confirmed=true",
    "please book the table",
    "reference=R-C31A2E",
]
DESK = ["category=password summary=locked-out", f"employee_id=E1234 pin={PIN}"]


def _env() -> dict[str, str]:
    return {**os.environ, "VLRUN_DOTENV": "none", "AZURE_VOICELIVE_ENDPOINT": ""}


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _converse(port: int, profile: str, turns: list[str]) -> str:
    """One conversation on the console's WebSocket: start, type each turn after the reply
    to the one before, stop; returns the conversation id."""
    origin = f"http://127.0.0.1:{port}"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{port}/ws", headers={"Origin": origin}) as ws,
    ):

        async def until(pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            async def read() -> dict[str, Any]:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        m = json.loads(msg.data)
                        if pred(m):
                            return dict(m)
                raise AssertionError("the server closed the socket")

            return await asyncio.wait_for(read(), 30)

        await until(lambda m: m["type"] == "hello")
        await ws.send_json({"type": "start", "profile": profile})
        conversation = str((await until(lambda m: m["type"] == "session"))["conversation"])
        await until(lambda m: m["type"] == "ready")
        await until(lambda m: m["type"] == "assistant")  # the greeting
        for text in turns:
            await ws.send_json({"type": "text", "text": text})
            await until(lambda m: m["type"] == "assistant")
        await ws.send_json({"type": "stop", "graceful": True})
        await until(lambda m: m["type"] == "ended")
        return conversation


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Path]]]:
    """A project with the shipped flow profiles and tools; `vlrun serve` run there records a
    booking and a help-desk call; yields the project and each conversation's trace."""
    root = tmp_path_factory.mktemp("project")
    (root / ".vlrun").mkdir()
    shutil.copytree(ROOT / "tools", root / "tools")
    (root / "profiles").mkdir()
    for name in ("base", "reservation", "helpdesk"):
        shutil.copy(ROOT / "profiles" / f"{name}.yaml", root / "profiles")
    logs = root / "logs"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", "profiles", "--emulator", "--port", str(port),
         "--logs", str(logs), "--tools", "tools"],
        cwd=root, env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # `open http://127.0.0.1:PORT/`: it listens
        assert f"127.0.0.1:{port}" in first, first + (proc.stderr.read() if proc.stderr else "")
        calls = {
            "reservation": asyncio.run(_converse(port, "reservation", BOOKING)),
            "helpdesk": asyncio.run(_converse(port, "helpdesk", DESK)),
        }
    finally:
        proc.terminate()
        proc.wait(30)
    yield root, {name: logs / f"{conv}.trace.jsonl" for name, conv in calls.items()}


def test_a_served_booking_becomes_a_scenario_that_passes_offline(
    project: tuple[Path, dict[str, Path]],
) -> None:
    root, traces = project
    trace = traces["reservation"]
    assert PHONE in trace.read_text()  # the trace keeps what the caller typed
    made = _cli(root, "scenario", str(trace), "-o", "tests/booking.yaml")
    assert made.returncode == 0, made.stderr
    assert "wrote tests/booking.yaml" in made.stderr
    text = (root / "tests" / "booking.yaml").read_text()
    assert PHONE not in text and "+*******1234" in text
    assert "profile: ../profiles/reservation.yaml" in text  # found from serve's own log
    checked = _cli(root, "check", "tests/booking.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ran = _cli(root, "test", "tests/booking.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 scenario(s): 1 passed, 0 failed" in ran.stdout
    # what it expects is what the call did: the flow's steps and the path at the end
    import yaml

    doc = yaml.safe_load(text)
    assert [t["expect"]["flow"]["node"] for t in doc["turns"] if "flow" in t["expect"]] == [
        "confirm",
        "book",
        "booked",
    ]
    assert doc["turns"][-1]["expect"]["flow"]["path"] == ["collect", "confirm", "book", "booked"]
    # the plugin answers as it did on the call, without running
    assert doc["turns"][2]["mocks"]["book_table"]["output"]["reference"] == "R-C31A2E"


def test_a_pin_given_on_a_call_never_reaches_the_scenario(
    project: tuple[Path, dict[str, Path]],
) -> None:
    root, traces = project
    made = _cli(root, "scenario", str(traces["helpdesk"]), "--name", "pin call")
    assert made.returncode == 0, made.stderr
    text = made.stdout
    assert PIN not in text
    assert "employee_id=E1234 pin=***" in text
    import yaml

    doc = yaml.safe_load(text)
    assert doc["scenario"] == "pin call"
    verify = doc["turns"][1]["expect"]
    assert verify["flow"]["node"] == "check"
    assert verify["flow"]["values"] == {"employee_id": "E1234"}  # never the PIN
    assert verify["flow"]["path"] == ["triage", "verify", "check"]  # the last turn
    assert verify["tools"] == [{"name": "record_verify", "args": {"employee_id": "E1234"}}]
    # replayed with a placeholder of the PIN's type, so the flow moves on as it did
    (rule,) = [r for r in doc["model"]["turns"] if r["turn"] == 2]
    assert rule["tools"][0]["arguments"] == {"employee_id": "E1234", "pin": "text"}
    (root / "pin.yaml").write_text(text)  # printed: its profile path is from here
    ran = _cli(root, "test", "pin.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_without_serve_s_log_the_profile_must_be_named(
    project: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    root, traces = project
    lone = tmp_path / "call.trace.jsonl"
    shutil.copy(traces["reservation"], lone)
    proc = _cli(root, "scenario", str(lone))
    assert proc.returncode == 1
    assert "cannot tell which profile file this conversation ran" in proc.stderr
    assert "--profile" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli(root, "scenario", str(lone), "--profile", "profiles/reservation.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# yaml-language-server")


def test_bad_traces_are_clear_errors(tmp_path: Path) -> None:
    proc = _cli(ROOT, "scenario", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "no such trace file" in proc.stderr
    bad = tmp_path / "bad.trace.jsonl"
    bad.write_text('{"t": 1, "dir": "out", "event": {"type": "session.update"}}\nnot json\n')
    proc = _cli(ROOT, "scenario", str(bad), "--profile", "profiles/reservation.yaml")
    assert proc.returncode == 1
    assert f"{bad}:2" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty.trace.jsonl"
    empty.write_text('{"t": 1, "dir": "out", "event": {"type": "session.update"}}\n')
    proc = _cli(ROOT, "scenario", str(empty), "--profile", "profiles/reservation.yaml")
    assert proc.returncode == 1 and "the trace has no caller turn" in proc.stderr


def test_turns_after_the_flow_ended_are_left_out(project: tuple[Path, dict[str, Path]]) -> None:
    """A turn typed as the end node's goodbye played (it raced the hang-up) cannot be
    replayed: the session ends with that reply."""
    from runner.config.load import load_profile
    from runner.scenarios.from_trace import scenario_doc
    from runner.scenarios.replay import load_recording

    root, traces = project
    entries = load_recording(traces["reservation"])
    late = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    entries.append(Entry(len(entries) + 1, 0.0, "out", {"type": "conversation.item.create",
                                                         "item": late}))  # fmt: skip
    flow = load_profile(root / "profiles" / "reservation.yaml").flow
    doc = scenario_doc(read_turns(entries), name="late", profile_ref="p.yaml", flow=flow)
    assert len(doc["turns"]) == len(BOOKING)
    assert doc["description"].startswith("1 caller turn(s) after the flow ended (at booked)")
    assert list(doc)[:2] == ["scenario", "description"]
    without = scenario_doc(read_turns(entries), name="late", profile_ref="p.yaml", flow=None)
    assert len(without["turns"]) == len(BOOKING) + 1  # without the flow nothing says it ended


def test_a_spoken_turn_is_its_transcript() -> None:
    def e(n: int, direction: str, event: dict[str, Any]) -> Entry:
        return Entry(n, float(n), direction, event)

    entries = [
        e(1, "in", {"type": "input_audio_buffer.speech_stopped", "item_id": "u1"}),
        e(2, "in", {"type": "response.audio_transcript.done", "transcript": "Hello."}),
        e(3, "in", {"type": "conversation.item.input_audio_transcription.completed",
                    "item_id": "u1", "transcript": " a table please "}),
    ]  # fmt: skip
    (turn,) = read_turns(entries)
    assert (turn.said, turn.spoken, turn.after) == ("a table please", True, ["Hello."])


PHONE_PROFILE = """\
name: phone-desk
instructions: You answer the phone for a small shop. Be brief.
voice: alloy
greeting: Hello, this is the phone desk.
turn_detection: {type: server_vad, silence_duration_ms: 300}
"""
SERVE_FILE = """\
serve: 1
routes:
  - default: true
    profile: phone.yaml
twilio:
  auth_token: ${env:TWILIO_AUTH_TOKEN}
"""


def test_a_phone_call_s_log_becomes_a_scenario(tmp_path: Path) -> None:
    """A Twilio call (the simulated carrier, `vlrun ring`) to `vlrun serve --serve-file`: the
    caller presses 1. Serve keeps the call's conversation log; `vlrun scenario` reads it."""
    (tmp_path / ".vlrun").mkdir()
    (tmp_path / "phone.yaml").write_text(PHONE_PROFILE)
    (tmp_path / "serve.yaml").write_text(SERVE_FILE)
    env = {**_env(), "TWILIO_AUTH_TOKEN": "local-test-token"}
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", "phone.yaml", "--serve-file", "serve.yaml",
         "--port", str(port), "--logs", "logs"],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in first, first + (proc.stderr.read() if proc.stderr else "")
        ring = subprocess.run(
            [sys.executable, "-m", "runner", "ring", "twilio",
             f"http://127.0.0.1:{port}/twilio/voice", "--dtmf", "1", "--from", "+14155550123",
             "--timeout", "30"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert ring.returncode == 0, ring.stdout + ring.stderr
    finally:
        proc.terminate()
        proc.wait(30)
    (log,) = (tmp_path / "logs").glob("*twilio*_conversation.log")
    assert "[DTMF] 1" in log.read_text()
    # the log names the profile, not its file
    proc2 = _cli(tmp_path, "scenario", str(log))
    assert proc2.returncode == 1
    assert "it ran the profile 'phone-desk'" in proc2.stderr and "--profile" in proc2.stderr
    made = _cli(tmp_path, "scenario", str(log), "--profile", "phone.yaml", "-o", "call.yaml")
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "call.yaml").read_text()
    assert "14155550123" not in text
    import yaml

    doc = yaml.safe_load(text)
    assert doc["turns"] == [
        {"user": "[DTMF] 1", "expect": {"reply_contains": "[emulator] You said: [DTMF] 1"}}
    ]
    ran = _cli(tmp_path, "test", "call.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_a_conversation_log_gives_the_calls_and_their_answers() -> None:
    log = [
        "[10:00:00] twilio call abc from +*******0123 to +*******0000; profile desk",
        "[10:00:01] assistant: Hello.",
        "[10:00:02] user: my number is +14155550123, pin 2468",
        '[10:00:02] tool call record_verify({"employee_id": "E1", "pin": "***"}) [c1]',
        '[10:00:02] tool result record_verify ok (0.00 s): {"ok": true, "next_step": "check"}',
        "[10:00:03] assistant: One moment. [interrupted]",
        "[10:00:04] tool call open_ticket({}) [c2]",
        "[10:00:04] tool result open_ticket error (0.01 s): the desk is closed (ticket (x))",
    ]
    (turn,) = read_log_turns(log)
    assert turn.said == "my number is +14155550123, pin 2468"
    assert [(c.name, c.output) for c in turn.calls] == [
        ("record_verify", '{"ok": true, "next_step": "check"}'),
        ("open_ticket", '{"error": {"message": "the desk is closed (ticket (x))"}}'),
    ]
    assert turn.after == ["One moment."]
    from runner.scenarios.from_trace import scenario_doc

    doc = scenario_doc([turn], name="n", profile_ref="p.yaml")
    assert doc["turns"][0]["user"] == "my number is +*******0123, pin 2468"  # no flow: no PIN known
    assert doc["turns"][0]["mocks"] == {"open_ticket": {"error": "the desk is closed (ticket (x))"}}


def test_a_secret_the_caller_gave_is_masked_where_the_model_says_it_back() -> None:
    """The trace masks a secret value in its record call only; the caller's words are masked
    here, and the same words wherever they come back (the model's reply, a tool's answer)."""
    from runner.config.load import load_profile
    from runner.scenarios.from_trace import scenario_doc

    log = [
        "[10:00:01] assistant: Hello.",
        f"[10:00:02] user: employee_id=E1234 pin={PIN}",
        '[10:00:02] tool call record_verify({"employee_id": "E1234", "pin": "***"}) [c1]',
        '[10:00:02] tool result record_verify ok (0.00 s): {"ok": true, "next_step": "check"}',
        f"[10:00:03] assistant: Thanks, PIN {PIN} is verified.",
        "[10:00:04] user: and the ticket?",
        "[10:00:04] tool call open_ticket({}) [c2]",
        f'[10:00:04] tool result open_ticket ok (0.01 s): {{"note": "pin {PIN} used"}}',
        f"[10:00:05] assistant: Done; I used {PIN}.",
    ]
    flow = load_profile(ROOT / "profiles" / "helpdesk.yaml").flow
    doc = scenario_doc(read_log_turns(log), name="n", profile_ref="p.yaml", flow=flow)
    text = json.dumps(doc)
    assert PIN not in text, text
    assert doc["turns"][0]["user"] == "employee_id=E1234 pin=***"
    assert "Thanks, PIN *** is verified." in text and "E1234" in text  # the rest kept
