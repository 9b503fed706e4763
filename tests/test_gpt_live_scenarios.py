"""GPT-Live's full duplex in the scenario language (issue 29 item 2): `talk_over`, `yielded`,
`backchannels`, `silent_for_ms` on the session's clock, and what `vlrun check` refuses before a
run. Each runs the real CLI, session and emulator (its deterministic gl-backchannel and gl-yield
rules, docs/emulator.md); each failing example states the exact line it must produce."""

from __future__ import annotations

import re
import shutil
import subprocess
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


SHIPPED = ROOT / "tests" / "scenarios"
FILES = [
    SHIPPED / "gpt-live-backchannel.yaml",
    SHIPPED / "gpt-live-yield.yaml",
    DATA / "gpt-live-yield.yaml",
    DATA / "gpt-live-silence.yaml",
]


@pytest.fixture(scope="module")
def duplex_run() -> subprocess.CompletedProcess[str]:
    """One `vlrun test` of every GPT-Live duplex scenario, side by side (each has its own
    emulator; most of a GPT-Live scenario's time is waiting, so they share the 2 cores well)."""
    return run_cli("test", *(str(f.relative_to(ROOT)) for f in FILES), "--jobs", "8", "-v")


def scenario_block(stdout: str, name: str) -> list[str]:
    """The lines `vlrun test -v` printed for the scenario called ``name``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if f".yaml  {name}" in line)
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if re.match(r"(PASS|FAIL)  |\d+ scenario", lines[i])
        ),
        len(lines),
    )
    return lines[start:end]


def test_the_assistant_does_not_yield_to_a_backchannel_and_yields_to_an_interruption(
    duplex_run: subprocess.CompletedProcess[str],
) -> None:
    # The passing set: a backchannel over a 2.6 s question (before the caller's audio was put on
    # the session's timeline after the greeting, the runner took it for a reply, and the
    # assistant's answer was cut into pieces), the caller's "uh-huh" over a reply the assistant
    # talks through, and an interruption it yields to and then answers.
    out = duplex_run.stdout
    assert duplex_run.returncode == 1, out + duplex_run.stderr  # the failing examples
    assert "8 scenario(s): 3 passed, 5 failed" in out
    for path in FILES[:2]:
        assert f"PASS  {path.relative_to(ROOT)}  " in out
    talked_through = scenario_block(out, "GPT-Live backchannels over a long question and talks")
    # the caller's backchannel is heard and not answered, the reply goes on to its end
    assert "        you: [emulator] (0.4 s)" in talked_through
    assert talked_through[-1].endswith(
        "every morning she counted the fishing boats in the harbour."
    )
    yielded = scenario_block(out, "GPT-Live yields to an interruption and answers it")
    assert yielded[-3:] == [
        "        assistant: [emulator] Once upon a time [interrupted]",
        "        you: Wait, please stop, I have another question",
        "        assistant: [emulator] Of course, I will stop there.",
    ]


def test_failing_duplex_expectations_name_their_lines(
    duplex_run: subprocess.CompletedProcess[str],
) -> None:
    path = DATA / "gpt-live-yield.yaml"
    shown = path.relative_to(ROOT)
    lines = [line for line in failure_lines(duplex_run.stdout) if line.startswith(str(shown))]
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


def test_silent_for_ms_is_measured_on_the_session_clock(
    duplex_run: subprocess.CompletedProcess[str],
) -> None:
    # gl-turn-end: the emulator answers 600 ms of silence after the caller's last word, so a
    # 400 ms window holds and a 2000 ms one fails with what the session's clock said
    path = DATA / "gpt-live-silence.yaml"
    shown = path.relative_to(ROOT)
    assert f"PASS  {shown}  patient " in duplex_run.stdout
    (line,) = [line for line in failure_lines(duplex_run.stdout) if line.startswith(str(shown))]
    match = re.fullmatch(
        rf"{re.escape(str(shown))}:{line_of(path, 'silent_for_ms: 2000')}: the assistant "
        r"answered (\d+) ms after the turn; it had to stay silent for 2000 ms: "
        r"'\[emulator\] Hello to you\.'",
        line,
    )
    assert match is not None, line
    assert 600 <= int(match.group(1)) < 800  # gl-turn-end's 600 ms, to the VAD's window


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


def test_a_phone_line_never_passes_a_talk_over_by_in_silence() -> None:
    # over a phone line (vlrun test --via) nobody talks over the reply: `yielded: false` would
    # hold without a test, so the run stops at the key's line before the call is made
    from runner.scenarios.run import RunSettings, run_scenario

    async def never(*_: object) -> object:
        raise AssertionError("the call was made")

    path = SHIPPED / "gpt-live-yield.yaml"
    result = run_scenario(
        load_scenario(path),
        RunSettings(via="acs", phone_line=never),  # type: ignore[arg-type]
    )
    assert result.error == (
        f"{path}:{line_of(path, 'talk_over:')}: `talk_over` is not measured over a phone line "
        "yet\n    hint: run this scenario without --via"
    )


def test_silence_on_a_typed_turn_and_a_typing_caller_are_named_before_a_run(
    tmp_path: Path,
) -> None:
    here = gpt_live_project(tmp_path)
    (here / "s.yaml").write_text(
        "scenario: typed silence\nprofile: profiles/gpt-live.yaml\nturns:\n"
        "  - user: Time in Tokyo?\n    expect: {silent_for_ms: 500}\n"
    )
    ((line, message),) = [(p.line, p.message) for p in check_file(here / "s.yaml")]
    assert line == 5
    assert message.startswith("`silent_for_ms` on GPT-Live is measured on the session's clock")
    client = gpt_live_project(tmp_path / "client", client=True)
    (client / "c.yaml").write_text(
        "scenario: a typing caller\nprofile: profiles/gpt-live.yaml\n"
        "caller: {persona: a traveller, goal: the time in Tokyo, script: [Time in Tokyo?]}\n"
    )
    problems = [(p.line, p.severity, p.message) for p in check_file(client / "c.yaml")]
    assert problems == [
        (
            3,
            "warning",
            "a text-tier caller types its turns, and this GPT-Live profile takes typed turns "
            "only with a delegation deployment (gpt_live.delegation.deployment)",
        )
    ]
