"""Tier 4 (issue 30): `vlrun test --via twilio` plays a scenario's turns over vlrun serve's
Twilio edge with the simulated carrier (runner.carrier.phone_line), then checks them as any
turn: tools, reply, and the flow replayed from the call's record calls. Real CLI, real
loopback sockets, real time (one call per scenario, both at once)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
REL = "tests/data/scenarios/phone.yaml"


def test_a_scenario_over_a_phone_line_is_checked_like_any_other() -> None:
    proc = run_cli("test", REL, "--via", "twilio", "--jobs", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"PASS  {REL}  large party (1 turn(s), ") for line in lines), lines
    wrong = (ROOT / REL).read_text().splitlines().index("          flow: {node: confirm}") + 1
    assert (
        f"      {REL}:{wrong}: expected the flow in node 'confirm'; it is in 'large_party' "
        "(path collect -> large_party)"
    ) in lines
    # the words the caller spoke into the line, and the tool call the call made
    assert "        you: A table for nine of us, name Bo." in lines
    assert any(line.startswith('        [tool] record_collect -> {"ok": true') for line in lines)


def test_via_plays_against_the_emulator_only() -> None:
    proc = run_cli("test", REL, "--via", "twilio", "--endpoint", "https://x.example.com")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--via plays the call against the emulator; it does not take --endpoint" in proc.stderr
    proc = run_cli("test", REL, "--via", "fax")
    assert proc.returncode == 2
    assert "'fax' is not one of 'twilio', 'acs', 'sip'" in proc.stderr
