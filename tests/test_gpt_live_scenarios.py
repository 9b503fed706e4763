"""GPT-Live's full duplex in the scenario language (issue 29 item 2): `talk_over`, `yielded`,
`backchannels`, `silent_for_ms` on the session's clock, and what `vlrun check` refuses before a
run. Each runs the real CLI, session and emulator (its deterministic gl-backchannel and gl-yield
rules, docs/emulator.md); each failing example states the exact line it must produce."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from runner.scenarios.files import ScenarioError, check_file, load_scenario
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "scenarios"


def line_of(path: Path, marker: str) -> int:
    """The 1-based line holding ``marker`` (exactly one)."""
    hits = [n for n, text in enumerate(path.read_text().splitlines(), 1) if marker in text]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def failure_lines(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if re.match(r"\s+\S+\.yaml:\d+: ", line)]


def test_the_assistant_does_not_yield_to_a_backchannel_and_yields_to_an_interruption() -> None:
    # The passing set: a backchannel over a 2.6 s question (before the caller's audio was put on
    # the session's timeline after the greeting, the runner took it for a reply, and the
    # assistant's answer was cut into pieces), the caller's "uh-huh" over a reply the assistant
    # talks through, and an interruption it yields to and then answers.
    shipped = ROOT / "tests" / "scenarios"
    proc = run_cli(
        "test",
        str(shipped / "gpt-live-backchannel.yaml"),
        str(shipped / "gpt-live-yield.yaml"),
        "-v",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "2 scenario(s): 2 passed, 0 failed" in out
    # the caller's backchannel is heard and not answered; the interruption is answered
    assert "you: [emulator] (0.4 s)" in out
    assert "assistant: [emulator] Once upon a time [interrupted]" in out
    assert "assistant: [emulator] Of course, I will stop there." in out


def test_failing_duplex_expectations_name_their_lines() -> None:
    path = DATA / "gpt-live-yield.yaml"
    proc = run_cli("test", str(path), "-v")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    shown = path
    lines = failure_lines(proc.stdout)
    assert lines[:3] == [
        f"{shown}:{line_of(path, 'yielded: false')}: the assistant yielded to the caller's "
        "talk-over at 1000 ms ('Wait, please stop, I have another question')",
        f"{shown}:{line_of(path, 'yielded: true')}: the assistant did not yield to the "
        "caller's talk-over at 1000 ms ('uh-huh'): its reply went on",
        f"{shown}:{line_of(path, 'backchannels: 0')}: the assistant made 1 backchannel(s): "
        "'[emulator] mm-hmm'; expected exactly 0",
    ]
    assert re.fullmatch(
        rf"{re.escape(str(shown))}:{line_of(path, 'at_ms: 60000')}: no talk-over at 60000 ms: "
        r"the reply was over after \d+ ms",
        lines[3],
    ), lines[3]
    assert len(lines) == 4
    assert "4 scenario(s): 0 passed, 4 failed" in proc.stdout


def gpt_live_project(tmp_path: Path, *, client: bool = False) -> Path:
    for folder in ("profiles", "tools"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "pyproject.toml").touch()
    shutil.copy(DATA / "red-3x2.png", tmp_path / "red.png")
    if client:  # no deployment: GPT-Live's default client delegation
        text = (tmp_path / "profiles" / "gpt-live.yaml").read_text()
        start = text.index("gpt_live:")
        end = text.index("tools: [current_time]")
        text = text[:start] + "gpt_live: {}\n" + text[end:].replace("tools: [current_time]\n", "")
        (tmp_path / "profiles" / "gpt-live.yaml").write_text(text)
    return tmp_path


def test_vlrun_check_names_the_turns_gpt_live_cannot_take(tmp_path: Path) -> None:
    here = gpt_live_project(tmp_path, client=True)
    (here / "s.yaml").write_text(
        """\
scenario: what a client-delegation GPT-Live cannot take
profile: profiles/gpt-live.yaml
turns:
  - say: Hello there
  - user: What time is it?
  - image: red.png
    text: What colour is this?
  - say: Tell me a story
    barge_in: {at_ms: 500}
    expect: {tool_cancelled: true}
"""
    )
    proc = run_cli("check", str(here / "s.yaml"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    where = str(here / "s.yaml")
    assert [line for line in proc.stdout.splitlines() if ": error: " in line] == [
        f"{where}:5:11: error: GPT-Live takes typed turns only with a delegation deployment "
        "(gpt_live.delegation.deployment); this profile delegates to the client "
        "(at $.turns[1].user)",
        f"{where}:6:12: error: a GPT-Live scenario takes spoken and typed turns, not image "
        "turns (at $.turns[2].image)",
        f"{where}:9:15: error: a GPT-Live scenario takes spoken and typed turns, not barge_in "
        "(at $.turns[3].barge_in)",
        f"{where}:10:30: error: `tool_cancelled` cannot be measured on GPT-Live: it has no "
        "cancel event, and a delegated call's result is always returned (the wire never says "
        "it went unused) (at $.turns[3].expect.tool_cancelled)",
    ]
    assert "hint: GPT-Live's WebSocket has no image event" in proc.stdout


def test_typed_turns_pass_the_check_under_responses_delegation(tmp_path: Path) -> None:
    here = gpt_live_project(tmp_path)
    (here / "s.yaml").write_text(
        "scenario: typed\nprofile: profiles/gpt-live.yaml\nturns:\n  - user: Time in Tokyo?\n"
    )
    assert [p.message for p in check_file(here / "s.yaml") if p.severity == "error"] == []


def test_duplex_keys_are_refused_on_a_voice_live_profile(tmp_path: Path) -> None:
    here = gpt_live_project(tmp_path)
    (here / "s.yaml").write_text(
        """\
scenario: duplex keys on Voice Live
profile: profiles/casual-chat.yaml
turns:
  - say: Tell me a story
    talk_over: {at_ms: 500}
    expect: {yielded: false, backchannels: 0}
"""
    )
    problems = [(p.line, p.message) for p in check_file(here / "s.yaml")]
    assert [line for line, _ in problems] == [5, 6, 6]
    assert problems[0][1].startswith("`talk_over` is for GPT-Live profiles (full duplex); ")
    # and a run does not start (load_scenario is what `vlrun test` reads a file with)
    with pytest.raises(ScenarioError, match="^`talk_over` is for GPT-Live profiles"):
        load_scenario(here / "s.yaml")


def test_silent_for_ms_is_measured_on_the_session_clock(tmp_path: Path) -> None:
    # gl-turn-end: the emulator answers 600 ms of silence after the caller's last word, so a
    # 400 ms window holds and a 2000 ms one fails with what the session's clock said
    here = gpt_live_project(tmp_path)
    (here / "s.yaml").write_text(
        """\
profile: profiles/gpt-live.yaml
model:
  turns:
    - match: hello
      say: Hello to you.
scenarios:
  - scenario: patient
    turns:
      - say: Hello there
        expect: {silent_for_ms: 400, reply_contains: hello to you}
  - scenario: too soon
    turns:
      - say: Hello there
        expect: {silent_for_ms: 2000}
"""
    )
    proc = run_cli("test", str(here / "s.yaml"), "-v")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"PASS  \S+s\.yaml  patient ", proc.stdout), proc.stdout
    (line,) = failure_lines(proc.stdout)
    match = re.fullmatch(
        rf"{re.escape(str(here / 's.yaml'))}:14: the assistant answered (\d+) ms after the "
        r"turn; it had to stay silent for 2000 ms: '\[emulator\] Hello to you\.'",
        line,
    )
    assert match is not None, line
    assert 600 <= int(match.group(1)) < 800  # gl-turn-end's 600 ms, to the VAD's window
