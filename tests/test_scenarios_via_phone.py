"""Tier 4 (issue 30): a scenario's turns over a phone line through an in-process `vlrun serve`
telephony edge, the simulated carrier and the emulator (runner/carrier/phone_line.py), fully
offline: the replies' words as the emulator said them, the tool calls with their arguments and
outputs, and the caller's timings come back per turn."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.carrier.phone_line import PhoneOptions, phone_script, run_via_phone
from runner.errors import UsageError
from runner.scenarios.files import load_scenario

pytest.importorskip("prometheus_client")

ROOT = Path(__file__).resolve().parents[1]
CALCULATOR = ROOT / "tests" / "scenarios" / "calculator.yaml"
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="the caller speaks with espeak-ng"
)

DESK = """\
name: desk
instructions: You answer the phone.
voice: alloy
greeting: Greet the caller.
turn_detection: {type: server_vad, silence_duration_ms: 300}
"""

MENU = """\
scenario: the menu over the phone
profile: desk.yaml
model:
  greeting: Welcome to the desk.
  turns:
    - match: '\\[DTMF\\] 1'
      say: We are open from nine to five.
    - match: '(?i)hello'
      say: Hello, how can I help?
turns:
  - user: hello there
  - dtmf: "1"
"""


def _menu(tmp_path: Path, extra_turn: str = "") -> Path:
    (tmp_path / "desk.yaml").write_text(DESK)
    path = tmp_path / "menu.yaml"
    path.write_text(MENU + extra_turn)
    return path


@needs_espeak
async def test_the_calculator_scenario_over_twilio(tmp_path: Path) -> None:
    lines: list[str] = []
    record = tmp_path / "heard.wav"
    run = await run_via_phone(
        load_scenario(CALCULATOR), "twilio", PhoneOptions(out=lines.append, record=record)
    )
    assert [t.said for t in run.turns] == ["What is 17.5 times 3?", "And 1 divided by 0?"]
    first, second = run.outcomes
    # the words the emulator said, the real plugin's tool call and output
    assert first.reply == "17.5 times 3 is 52.5."
    assert [(c.name, c.args) for c in first.tool_calls] == [
        ("calculate", {"expression": "17.5 * 3"})
    ]
    assert first.tool_calls[0].output is not None and "52.5" in first.tool_calls[0].output
    assert second.reply.startswith("I could not compute that") and "division by zero" in (
        second.reply
    )
    assert [c.name for c in second.tool_calls] == ["calculate"]
    # each spoken turn was heard as speech by the service, and its reply heard by the caller
    for turn in run.turns:
        assert turn.outcome.speech_heard and not turn.outcome.errors
        assert turn.heard_ms > 500 and turn.outcome.first_audio_ms is not None
    assert lines[-1] == "hung up" and run.lines == lines
    assert record.stat().st_size > 44  # what the caller heard, kept


@needs_espeak
async def test_the_calculator_scenario_over_acs() -> None:
    """ACS: a simulated Call Automation endpoint made for the call answers through the
    server's signed REST calls, then PCM16 media at the answer's rate."""
    pytest.importorskip("azure.communication.callautomation")
    lines: list[str] = []
    run = await run_via_phone(load_scenario(CALCULATOR), "acs", PhoneOptions(out=lines.append))
    assert any(line.startswith("answered: ACS call ") for line in lines), lines
    first, second = run.outcomes
    assert first.reply == "17.5 times 3 is 52.5."
    assert [(c.name, c.args) for c in first.tool_calls] == [
        ("calculate", {"expression": "17.5 * 3"})
    ]
    assert "division by zero" in second.reply
    for turn in run.turns:
        assert turn.outcome.speech_heard and turn.heard_ms > 500


@needs_espeak
async def test_a_typed_turn_is_spoken_and_keys_are_pressed_over_twilio(tmp_path: Path) -> None:
    run = await run_via_phone(load_scenario(_menu(tmp_path)), "twilio")
    assert run.greeting == "Welcome to the desk."
    typed, keys = run.outcomes
    # the typed turn was spoken on the line, and the emulator heard its words
    assert typed.reply == "Hello, how can I help?", run.lines
    assert keys.reply == "We are open from nine to five."
    assert [t.said for t in run.turns] == ["hello there", "1"]


def test_the_emulator_hears_a_spoken_typed_turn_as_its_words(tmp_path: Path) -> None:
    script = phone_script(load_scenario(_menu(tmp_path)))
    heard = [r for r in script["turns"] if "transcript" in r]
    # turn 1 is the typed turn, heard as its words; the key press is turn 2, typed by the edge
    assert [(r["turn"], r["transcript"]) for r in heard] == [(1, "hello there")]


async def test_the_calculator_scenario_over_sip(tmp_path: Path) -> None:
    run = await run_via_phone(load_scenario(CALCULATOR), "sip")
    first, second = run.outcomes
    assert first.reply == "17.5 times 3 is 52.5."
    assert [c.name for c in first.tool_calls] == ["calculate"]
    assert "division by zero" in second.reply
    # no SIP media reaches the emulator: text turns, nothing heard, no first-audio time
    assert all(t.heard_ms == 0 and t.outcome.first_audio_ms is None for t in run.turns)
    assert 'the reply: "17.5 times 3 is 52.5."' in run.turns[0].line


async def test_what_a_phone_cannot_carry_is_a_usage_error_at_its_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"menu\.yaml:\d+: a dtmf turn cannot be played"):
        await run_via_phone(load_scenario(_menu(tmp_path)), "sip")
    image = "  - image: red.png\n"
    (tmp_path / "red.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UsageError, match=r"menu\.yaml:\d+: an image turn cannot be played"):
        await run_via_phone(load_scenario(_menu(tmp_path, image)), "twilio")
    with pytest.raises(UsageError, match="not a phone line"):
        await run_via_phone(load_scenario(CALCULATOR), "pigeon")


@needs_espeak
async def test_acs_binds_its_own_port_so_no_other_process_can_take_it_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulated ACS's port was found by binding a probe and closing it; another process
    could take it before the ACS bound it. Here one does: right after the folder is made, a
    socket takes the port the folder names. The ACS binds port 0 itself and reads it back."""
    pytest.importorskip("azure.communication.callautomation")
    import json
    import socket

    import runner.carrier.acs as acs

    made = acs.setup
    thieves: list[socket.socket] = []

    def setup_then_taken(folder: Path, port: int, out: object = print) -> None:
        made(folder, port, out=lambda _line: None)
        thief = socket.socket()
        thief.bind(("127.0.0.1", int(json.loads((folder / "acs.json").read_text())["port"])))
        thief.listen()
        thieves.append(thief)

    monkeypatch.setattr(acs, "setup", setup_then_taken)
    try:
        run = await run_via_phone(load_scenario(CALCULATOR), "acs")
    finally:
        for thief in thieves:
            thief.close()
    assert thieves, "the folder was not made through acs.setup"
    assert run.outcomes[0].reply == "17.5 times 3 is 52.5."


async def test_a_failed_drain_of_the_phone_server_is_logged_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from runner.carrier import phone_line
    from runner.serve.telephony import Phones

    async def broken_drain(self: Phones, timeout: float) -> None:
        raise RuntimeError("drain broke")

    monkeypatch.setattr(Phones, "drain", broken_drain)
    (tmp_path / "desk.yaml").write_text(DESK)
    serve = phone_line._serve_file(tmp_path, tmp_path / "desk.yaml", "twilio")
    env = {phone_line._TOKEN_ENV: "a-token-for-this-test"}
    with caplog.at_level(logging.ERROR, logger="vlrun.carrier.phone_line"):
        async with phone_line._phone_server(serve, "http://127.0.0.1:9", env, sip=False) as base:
            assert base.startswith("http://127.0.0.1:")
    failed = [r for r in caplog.records if r.name == "vlrun.carrier.phone_line"]
    assert failed and "drain" in failed[0].getMessage()
    assert failed[0].exc_info is not None and "drain broke" in str(failed[0].exc_info[1])


async def test_a_sip_webhook_without_a_secret_is_named_by_its_keys_not_its_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from runner.carrier import phone_line
    from runner.carrier import sip as carrier_sip
    from runner.errors import VlrunError

    async def answered(*_args: object, **_kwargs: object) -> dict[str, object]:
        return {"id": "wh_1", "url": "https://user:hunter2-password@example.invalid/"}

    monkeypatch.setattr(carrier_sip, "webhook", answered)
    serve = phone_line._serve_file(tmp_path, tmp_path / "desk.yaml", "sip")
    with pytest.raises(VlrunError) as raised:
        emu = SimpleNamespace(endpoint="http://127.0.0.1:9")  # asked nothing: webhook answers
        await phone_line._sip(emu, serve, [], phone_line.PhoneRun("sip"), PhoneOptions())
    message = raised.value.message
    assert "hunter2" not in message and "wh_1" not in message
    assert "id, url" in message and "signing_secret" in message
