"""The scenario language beyond tools and replies (issue 30): api-version v1 profiles, DTMF and
image turns, `silent_for_ms`, `tool_cancelled`, several scenarios in one file. Each runs the
real session, SDK and plugins against the emulator; each failing example states the exact
failure line it must produce."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runner.scenarios.files import ScenarioError, check_file, load_scenario, load_scenarios
from runner.scenarios.results import ScenarioResult
from runner.scenarios.run import run_scenario
from runner.scenarios.suite import run_all, summary_lines
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "scenarios"


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    """A project of its own in ``tmp_path`` (a scenario's paths stay inside its project)."""
    (tmp_path / "pyproject.toml").touch()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


V1_16K = """\
name: v1-16k
connection: {api_version: v1}
instructions: You are brief.
audio: {output_format: pcm16_16000hz, input_sampling_rate: 16000}
"""


def test_a_v1_profile_plays_its_replies_at_its_own_rate(tmp_path: Path) -> None:
    # v1 keeps the formats under audio.output.format; read as the dated fields they were
    # absent, the 16 kHz reply was counted as 24 kHz audio (32 s heard as 21 s) and a
    # barge-in 23.5 s into it "never happened"
    here = project(
        tmp_path,
        {
            "v1.yaml": V1_16K,
            "s.yaml": """\
scenario: v1 barge-in
profile: v1.yaml
model:
  turns:
    - match: story
      say: >-
        Once upon a time there was a cat who lived in a very small house by the sea. Every
        morning she walked along the harbour wall, counted the fishing boats, and waited for
        the baker to open his door, because the baker always saved her a little fish. In
        the afternoon she slept on the warm roof of the lighthouse, and in the evening she
        listened to the sailors telling stories about storms, whales and faraway islands,
        until the stars came out and it was time to walk home along the sea again.
speed: 20
turns:
  - user: Tell me a story
    barge_in: {at_ms: 23500}
    expect: {interrupted: true}
""",
        },
    )
    result = run_scenario(load_scenario(here / "s.yaml"))
    assert result.error is None, result.error
    (turn,) = result.turns
    assert turn.barge_in_missed is None, turn.barge_in_missed
    # truncated where the speaker stopped, past 23.5 s of the reply (a machine too busy to
    # cancel before the reply's end may fail response.cancel, never this)
    assert turn.truncated_at_ms is not None and turn.truncated_at_ms >= 23500 - 100


def test_formats_and_turn_detection_are_read_in_either_session_shape() -> None:
    from runner.scenarios.run import _formats, _turn_detection

    v1 = {
        "type": "realtime",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 16000},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 900},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 16000}},
        },
    }
    dated = {
        "input_audio_sampling_rate": 16000,
        "output_audio_format": "pcm16_16000hz",
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 900},
    }
    for session in (v1, dated):
        mic, speaker = _formats(session)
        assert (mic.rate, speaker.rate) == (16000, 16000)
        assert _turn_detection(session)["silence_duration_ms"] == 900


def line_of(path: Path, marker: str) -> int:
    """The 1-based line holding ``marker`` (exactly one)."""
    hits = [n for n, text in enumerate(path.read_text().splitlines(), 1) if marker in text]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


@pytest.fixture(scope="module")
def language_results() -> dict[str, ScenarioResult]:
    files = [DATA / "keys_and_silence.yaml", DATA / "tool_cancelled.yaml", DATA / "image.yaml"]
    return {r.name: r for r in run_all(files, jobs=4)}


def test_several_scenarios_in_one_file_run_and_report_each(
    language_results: dict[str, ScenarioResult],
) -> None:
    assert set(language_results) == {
        "dtmf menu",
        "cut-off",
        "patient",
        "slow weather",
        "kept tool",
        "what arrived",
        "wrong format",
    }
    assert all(r.error is None for r in language_results.values())
    lines = summary_lines(list(language_results.values()))
    assert lines[-1] == "7 scenario(s): 3 passed, 4 failed"
    assert f"PASS  {DATA / 'keys_and_silence.yaml'}  patient (1 turn(s)," in "\n".join(lines)


def test_dtmf_keys_reach_the_model_as_the_phone_edge_sends_them(
    language_results: dict[str, ScenarioResult],
) -> None:
    result = language_results["dtmf menu"]
    path = DATA / "keys_and_silence.yaml"
    said = [text for _, text in result.lines if text.startswith("you: ")]
    assert said == ["you: [DTMF] 1", "you: [DTMF] 2", "you: [DTMF] #"]
    # the first turn passed; the second (two keys, two replies) is one turn and fails here
    line = line_of(path, 'reply_contains: "nine to five"')
    assert [f.render() for f in result.failures] == [
        f"{path}:{line}: the reply does not "
        "contain 'nine to five': 'Connecting you to billing. Back to the main menu.'"
    ]


def test_silent_for_ms_fails_on_a_prompt_reply_and_passes_on_a_late_one(
    language_results: dict[str, ScenarioResult],
) -> None:
    path = DATA / "keys_and_silence.yaml"
    (failure,) = language_results["cut-off"].failures
    assert failure.location == f"{path}:{line_of(path, ' silent_for_ms: 4000')}"
    assert re.fullmatch(
        r"the assistant answered \d+ ms after the turn; it had to stay silent for 4000 ms: "
        r"'Go on\.'",
        failure.message,
    ), failure.message
    patient = language_results["patient"]
    assert patient.passed, [f.render() for f in patient.failures]
    # the late reply (6000 ms of scripted delay) was still waited for and checked
    assert patient.turns[0].answered_after_ms is None
    assert patient.turns[0].reply == "Thank you for waiting."


def test_tool_cancelled_sees_a_barge_in_cancel_a_running_tool(
    language_results: dict[str, ScenarioResult],
) -> None:
    path = DATA / "tool_cancelled.yaml"
    slow = language_results["slow weather"]
    assert slow.passed, [f.render() for f in slow.failures]
    assert slow.turns[0].tools_cancelled == ["get_weather"]
    kept = language_results["kept tool"]
    assert [f.render() for f in kept.failures] == [
        f"{path}:{line_of(path, '  tool_cancelled: false')}: the barge-in cancelled get_weather"
    ]


def test_an_image_turn_sends_the_picture_with_its_question(
    language_results: dict[str, ScenarioResult],
) -> None:
    path = DATA / "image.yaml"
    arrived = language_results["what arrived"]
    assert arrived.passed, [f.render() for f in arrived.failures]
    # the emulator read the picture's own header: the bytes went as an input_image part
    assert arrived.turns[0].reply == "You sent an image (image/png, 73 bytes, 3x2 pixels)."
    assert arrived.lines[0] == (0, "you: [image png, 73 bytes] what is this?")
    assert [f.render() for f in language_results["wrong format"].failures] == [
        f"{path}:{line_of(path, 'reply_contains: image/jpeg')}: the reply does not contain "
        "'image/jpeg': 'You sent an image (image/png, 73 bytes, 3x2 pixels).'"
    ]


def test_an_image_the_session_refuses_stops_the_scenario_at_its_line(tmp_path: Path) -> None:
    here = project(
        tmp_path,
        {
            "p.yaml": "name: p\n",
            "fake.png": "",
            "s.yaml": "scenario: fake\nprofile: p.yaml\nturns:\n  - image: fake.png\n",
        },
    )
    result = run_scenario(load_scenario(here / "s.yaml"))
    assert result.error is not None
    assert result.error.startswith(f"{here / 's.yaml'}:4: "), result.error
    assert "the image is empty" in result.error


def test_problems_in_a_list_of_scenarios_name_their_own_lines(tmp_path: Path) -> None:
    here = project(
        tmp_path,
        {
            "p.yaml": "name: p\n",
            "m.yaml": """\
profile: p.yaml
scenarios:
  - scenario: one
    turns:
      - user: hi
  - scenario: two
    turns:
      - image: nothere.png
      - user: x
        text: y
      - dtmf: "12x"
""",
        },
    )
    problems = [(p.line, p.message, p.json_path) for p in check_file(here / "m.yaml")]
    assert problems == [
        (11, "'12x' has a key no keypad has", "$.scenarios[1].turns[2].dtmf"),
    ]
    (here / "m.yaml").write_text((here / "m.yaml").read_text().replace('"12x"', '"12#"'))
    problems = [(p.line, p.message, p.json_path) for p in check_file(here / "m.yaml")]
    assert problems == [
        (8, f"no image at {here / 'nothere.png'}", "$.scenarios[1].turns[0].image"),
        (10, "`text` goes with an `image` turn", "$.scenarios[1].turns[1].text"),
    ]
    text = (here / "m.yaml").read_text()
    (here / "m.yaml").write_text(text.replace("nothere.png", "x.png").replace("user: x", "user: z"))
    (here / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (here / "m.yaml").write_text((here / "m.yaml").read_text().replace("        text: y\n", ""))
    assert [s.name for s in load_scenarios(here / "m.yaml")] == ["one", "two"]
    with pytest.raises(ScenarioError, match="holds 2 scenarios"):
        load_scenario(here / "m.yaml")


def test_a_file_is_one_scenario_or_a_list_not_both(tmp_path: Path) -> None:
    here = project(
        tmp_path,
        {
            "p.yaml": "name: p\n",
            "b.yaml": "profile: p.yaml\nscenarios:\n  - scenario: one\n    turns: [{user: hi}]\n"
            "turns: [{user: hi}]\n",
            "n.yaml": "scenarios:\n  - scenario: one\n    turns: [{user: hi}]\n",
        },
    )
    (problem,) = check_file(here / "b.yaml")
    assert (problem.line, problem.message) == (
        5,
        "`turns` beside `scenarios:`: a file holds one scenario or a list",
    )
    (here / "d.yaml").write_text(
        "profile: p.yaml\nscenarios:\n  - scenario: one\n    turns: [{user: hi}]\n"
        "  - scenario: one\n    turns: [{user: ho}]\n"
    )
    (problem,) = check_file(here / "d.yaml")
    assert (problem.line, problem.message) == (5, "a second scenario named 'one' in this file")
    (problem,) = check_file(here / "n.yaml")
    assert (problem.line, problem.message) == (
        2,
        "scenario 'one' has no `profile` (here or at the top level)",
    )


# --- repeats and the gate -----------------------------------------------------------------------

COIN = '''\
"""A coin that lands heads, tails, heads, ... across runs: a scenario that is flaky by design."""

from pathlib import Path

from runner.plugins import tool

COUNT = Path(__file__).with_name("tosses.txt")


@tool
def coin() -> str:
    """Toss a coin."""
    n = int(COUNT.read_text()) if COUNT.exists() else 0
    COUNT.write_text(str(n + 1))
    return "heads" if n % 2 == 0 else "tails"
'''


def coin_project(tmp_path: Path) -> Path:
    here = project(
        tmp_path,
        {
            "coin.yaml": "name: coin\ninstructions: Toss coins.\ntools:\n  - name: coin\n",
            "toss.yaml": """\
scenario: toss
profile: coin.yaml
model:
  turns:
    - match: toss
      tools: [{name: coin, arguments: {}}]
      then: "It landed {output}."
turns:
  - user: toss a coin
    expect:
      reply_contains: heads
""",
        },
    )
    (here / "tools").mkdir()
    (here / "tools" / "coin.py").write_text(COIN)
    return here


def test_repeats_give_pass_rates_and_the_gate_sets_the_exit_code(tmp_path: Path) -> None:
    here = coin_project(tmp_path)
    junit = here / "junit.xml"
    scenario = str(here / "toss.yaml")
    # runs one at a time so the coin's tosses come in order: heads, tails, heads, tails
    args = ("test", scenario, "--repeat", "4", "--jobs", "1", "--junit", str(junit))
    proc = run_cli(*args, "--min-pass-rate", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"FLAKY {scenario}  toss (2/4 runs passed, 50% >= 50%)"
    assert lines[1] == "      run 2:"
    assert lines[2] == (
        f"      {scenario}:11: the reply does not contain 'heads': 'It landed \"tails\".'"
    )
    assert lines[-1] == (
        "1 scenario(s) x 4 runs: 1 passed the gate (min pass rate 50%), 0 failed, 1 flaky"
    )
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None and case.find("failure") is None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["flaky"] == "true" and props["pass_rate"] == "0.500"
    assert props["runs"] == "4" and props["passed_runs"] == "2"
    flaky = case.findall("flakyFailure")
    assert [f.text.splitlines()[0] for f in flaky] == ["run 2:", "run 4:"]  # type: ignore[union-attr]

    (here / "tools" / "tosses.txt").unlink()
    proc = run_cli(*args, "--min-pass-rate", "0.75")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == (
        f"FAIL  {scenario}  toss (2/4 runs passed, 50% < 75%; flaky)"
    )
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("2/4 runs passed (50%), ")
    assert "run 2: " in (failure.text or "") and "run 4: " in (failure.text or "")


def test_a_gpt_live_scenario_names_the_turns_it_cannot_take(tmp_path: Path) -> None:
    import shutil

    for folder in ("profiles", "tools"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "s.yaml").write_text(
        'scenario: keys to a duplex model\nprofile: profiles/gpt-live.yaml\nturns:\n  - dtmf: "1"\n'
    )
    # refused when the file is read (as `vlrun check` does), at the turn's line: no session
    # is opened for a scenario that cannot run
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path / "s.yaml")
    (problem,) = caught.value.all_problems
    assert (problem.line, problem.severity, problem.message) == (
        4,
        "error",
        "a GPT-Live scenario takes spoken and typed turns, not DTMF keys",
    )
