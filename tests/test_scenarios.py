"""`vlrun test`: shipped scenarios pass, mutated ones fail at the right scenario line, JUnit is
valid, and `vlrun check` positions scenario problems. Everything runs against the real
emulator, SDK, session and plugins, with the emulator clock sped up."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from runner.scenarios.files import check_file, load_scenario, model_script
from runner.scenarios.run import settled, squeeze_pauses
from runner.scenarios.suite import run_all, summary_lines, write_junit
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "tests" / "scenarios"
MUTATED = ROOT / "tests" / "data" / "scenarios"


def project_copy(tmp_path: Path, profile: str) -> str:
    """The shipped profiles and tools copied into ``tmp_path`` as a project of its own.

    A scenario's paths must stay inside its project, so a scenario in a temporary folder
    names a copy, never the repository's files."""
    import shutil

    for folder in ("profiles", "tools"):
        if not (tmp_path / folder).exists():
            shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "pyproject.toml").touch()
    return profile


def line_of(path: Path, marker: str) -> int:
    """The 1-based line holding ``marker`` (exactly one)."""
    hits = [n for n, text in enumerate(path.read_text().splitlines(), 1) if marker in text]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


# --- shipped scenarios --------------------------------------------------------------------------


def test_every_shipped_profile_has_a_scenario() -> None:
    covered = {load_scenario(p).profile_path for p in SHIPPED.glob("*.yaml")}
    profiles = {p.resolve() for p in (ROOT / "profiles").glob("*.yaml")}
    assert profiles, "no shipped profiles found"
    assert profiles <= covered, sorted(str(p) for p in profiles - covered)


def test_shipped_scenarios_pass_through_the_cli(tmp_path: Path) -> None:
    junit = tmp_path / "results.xml"
    # the shipped flows are covered whole: every node, transition, when: branch and value
    # (issue 30); the gate fails the run when a scenario or a flow change leaves a part out
    proc = run_cli("test", "tests/scenarios", "--junit", str(junit), "--min-flow-coverage", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for profile, items in (("reservation", 16), ("helpdesk", 23)):
        assert (
            f"flow coverage of {ROOT / 'profiles' / profile}.yaml: 100% ({items}/{items})"
        ) in proc.stdout
    files = sorted(SHIPPED.glob("*.yaml"))
    for f in files:
        assert f"PASS  tests/scenarios/{f.name}" in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(files))
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    cases = suite.findall("testcase")
    assert {c.get("file") for c in cases} == {f"tests/scenarios/{f.name}" for f in files}
    assert all(c.find("failure") is None for c in cases)


def test_default_discovery_runs_tests_scenarios() -> None:
    proc = run_cli("test", "tests/scenarios/base.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 scenario(s): 1 passed, 0 failed" in proc.stdout


def test_no_scenarios_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "profile.yaml").write_text("name: x\n")
    proc = run_cli("test", str(tmp_path))
    assert proc.returncode == 2
    assert "no scenario files" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- mutated scenarios --------------------------------------------------------------------------

MUTATIONS = [
    ("wrong_tool.yaml", "- name: current_time", "expected a call to current_time; got calculate"),
    (
        "wrong_args.yaml",
        'args: {expression: "2 + 3"}',
        "calculate was called with expression='2 + 2'",
    ),
    ("tight_latency.yaml", "first_audio_ms: 300", "over the budget of 300 ms"),
    ("missing_barge_in.yaml", "barge_in: {at_ms: 20000}", "no barge-in at 20000 ms"),
]


@pytest.fixture(scope="module")
def mutated_results() -> dict[str, object]:
    paths = [MUTATED / name for name, _, _ in MUTATIONS]
    return {r.path.name: r for r in run_all(paths, jobs=4)}


@pytest.mark.parametrize(("name", "marker", "message"), MUTATIONS)
def test_mutated_scenario_fails_at_its_line(
    mutated_results: dict[str, object], name: str, marker: str, message: str
) -> None:
    result = mutated_results[name]
    assert not result.passed  # type: ignore[attr-defined]
    assert result.error is None, result.error  # type: ignore[attr-defined]
    first = result.failures[0]  # type: ignore[attr-defined]
    assert first.file == str(MUTATED / name)
    assert first.line == line_of(MUTATED / name, marker)
    assert message in first.message


def test_mutated_scenarios_only_fail_what_was_mutated(mutated_results: dict[str, object]) -> None:
    # the unmutated expectations (reply text) in the same files still pass
    for result in mutated_results.values():
        assert len(result.failures) == 1, [f.render() for f in result.failures]  # type: ignore[attr-defined]


def test_summary_shows_first_failure_and_its_transcript(mutated_results: dict[str, object]) -> None:
    lines = summary_lines([mutated_results["wrong_tool.yaml"]])
    text = "\n".join(lines)
    path = MUTATED / "wrong_tool.yaml"
    where = f"{path}:{line_of(path, '- name: current_time')}"
    assert lines[0].startswith("FAIL  ")
    assert where in text
    assert "you: What is 2 plus 2?" in text
    assert '[tool] calculate({"expression": "2 + 2"})' in text
    assert "assistant: That is 4." in text
    assert lines[-1] == "1 scenario(s): 0 passed, 1 failed"


def test_junit_lists_failures_with_scenario_lines(
    mutated_results: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "junit.xml"
    write_junit(list(mutated_results.values()), out)
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    assert root.tag == "testsuites" and suite is not None
    assert suite.get("tests") == str(len(MUTATIONS)) and suite.get("failures") == str(
        len(MUTATIONS)
    )
    for case in suite.findall("testcase"):
        failure = case.find("failure")
        assert failure is not None
        name = Path(case.get("file") or "").name
        marker = next(m for n, m, _ in MUTATIONS if n == name)
        assert failure.get("message", "").startswith(
            f"{MUTATED / name}:{line_of(MUTATED / name, marker)}: "
        )
        assert "transcript:" in (failure.text or "")


def test_cli_exits_1_on_a_failing_scenario() -> None:
    proc = run_cli("test", "tests/data/scenarios/wrong_args.yaml")
    assert proc.returncode == 1
    line = line_of(MUTATED / "wrong_args.yaml", 'args: {expression: "2 + 3"}')
    assert f"tests/data/scenarios/wrong_args.yaml:{line}: calculate was called with" in proc.stdout


# --- vlrun check on scenarios -----------------------------------------------------------------


def test_vlrun_check_names_file_and_line_of_scenario_problems() -> None:
    proc = run_cli("check", "tests/data/scenarios/broken.yaml")
    assert proc.returncode == 1
    both = line_of(MUTATED / "broken.yaml", "say: hi too") - 1  # the turn's first key
    typo = line_of(MUTATED / "broken.yaml", "reply_contain:")
    assert f"broken.yaml:{both}:5: error: a turn has one input, not user and say" in proc.stdout
    assert f"broken.yaml:{typo}:7: error: unknown key 'reply_contain'" in proc.stdout
    assert "hint: did you mean `reply_contains`?" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_vlrun_check_accepts_shipped_scenarios() -> None:
    proc = run_cli("check", "tests/scenarios")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_semantic_problems_are_positioned(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        f"""scenario: semantic
profile: {project_copy(tmp_path, "profiles/calculator.yaml")}
model:
  turns:
    - match: "(unclosed"
      say: hi
turns:
  - wav: missing.wav
  - user: hello
    expect:
      interrupted: true
      reply_matches: "[bad"
      tools:
        - name: get_weather
""",
        encoding="utf-8",
    )
    problems = {(p.line, p.message.split(":")[0]) for p in check_file(scenario)}
    assert (8, "no WAV file at " + str(tmp_path / "missing.wav")) in {
        (p.line, p.message) for p in check_file(scenario)
    }
    assert (11, "expects an interruption but the turn has no `barge_in`") in problems
    assert (12, "bad regular expression '[bad'") in problems
    assert (14, "expects a call to 'get_weather', which the profile does not offer") in problems
    assert any(line == 5 and "bad regular expression" in msg for line, msg in problems)


def test_missing_profile_is_reported_at_the_profile_line(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("scenario: x\nturns:\n  - user: hi\nprofile: nowhere.yaml\n")
    problems = check_file(scenario)
    assert [(p.line, p.message) for p in problems] == [
        (4, f"no profile at {(tmp_path / 'nowhere.yaml').resolve()}")
    ]


def test_model_scripts_are_checked_as_model_scripts() -> None:
    # emulator scripts also have a top-level `turns:`; vlrun check routes them here
    assert check_file(ROOT / "tests" / "data" / "emulator" / "weather.yaml") == []
    bad = check_file(ROOT / "tests" / "data" / "emulator" / "bad_regex.yaml")
    assert bad and all(p.severity == "error" and p.line for p in bad)


# --- pieces -------------------------------------------------------------------------------------


def test_spoken_turns_get_transcripts_in_the_model_script() -> None:
    scenario = load_scenario(SHIPPED / "sdk-style.yaml")
    rules = model_script(scenario)["turns"]
    heard = [(r["turn"], r["transcript"]) for r in rules if "transcript" in r]
    assert heard == [(1, "Who are you?"), (2, "What should I do this weekend?"), (3, "please stop")]
    # the scenario's own rules stay first, so they decide the replies
    assert rules[: len(scenario.data["model"]["turns"])] == scenario.data["model"]["turns"]


def test_settled_needs_the_tool_round_to_finish() -> None:
    def ev(kind: str, **kw: object) -> tuple[float, str, dict[str, object]]:
        return (0.0, "in", {"type": kind, **kw})

    call = {"id": "r1", "status": "completed", "output": [{"type": "function_call"}]}
    answer = {"id": "r2", "status": "completed", "output": [{"type": "message"}]}
    events = [ev("response.created", response={"id": "r1"}), ev("response.done", response=call)]
    assert not settled(events)
    events.append(ev("response.created", response={"id": "r2"}))
    assert not settled(events)
    events.append(ev("response.done", response=answer))
    assert settled(events)
    assert settled([ev("response.done", response={**call, "status": "cancelled"})])


def test_squeeze_pauses_keeps_speech_and_shortens_silence() -> None:
    import numpy as np

    rate = 24000
    tone = (np.sin(np.arange(rate // 5) / 3) * 8000).astype("<i2").tobytes()  # 200 ms
    gap = bytes(rate * 2 // 2)  # 500 ms of silence
    out = squeeze_pauses(gap + tone + gap + tone + gap, rate, keep_ms=60)
    assert len(out) // 2 == pytest.approx(2 * rate // 5 + rate * 60 // 1000, abs=rate // 100)


def test_promoted_yaml_is_plain() -> None:
    # anchors would make a proposed scenario hard to edit
    from runner.scenarios.replay import Entry, promote

    args = {"expression": "1 + 1"}
    entries = [
        Entry(1, 0.0, "out", {"type": "session.update", "session": {}}),
        Entry(
            2,
            1.0,
            "out",
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "1+1?"}],
                },
            },
        ),
        Entry(
            3,
            1.1,
            "in",
            {
                "type": "response.function_call_arguments.done",
                "name": "calculate",
                "call_id": "c1",
                "arguments": '{"expression": "1 + 1"}',
            },
        ),
        Entry(4, 1.3, "in", {"type": "response.audio.delta", "delta": "<4 chars audio>"}),
        Entry(5, 1.4, "in", {"type": "response.audio_transcript.done", "transcript": "It is 2."}),
    ]
    text = promote(entries, name="p", profile="x.yaml")
    assert "&id" not in text and "*id" not in text
    doc = yaml.safe_load(text)
    assert doc["turns"] == [
        {
            "user": "1+1?",
            "expect": {
                "tools": [{"name": "calculate", "args": args}],
                "reply_contains": "It is 2.",
                "latency": {"first_audio_ms": 1100},
            },
        }
    ]
    assert doc["model"]["turns"] == [
        {"turn": 1, "tools": [{"name": "calculate", "arguments": args}], "then": "It is 2."}
    ]


# --- against an endpoint ------------------------------------------------------------------------


def test_endpoint_mode_ignores_the_model_block(tmp_path: Path) -> None:
    # the "service" here is an unscripted emulator: only the built-in behaviour can answer
    from runner.emulator import emulator_thread

    scenario = tmp_path / "echo.yaml"
    scenario.write_text(
        f"""scenario: endpoint
profile: {project_copy(tmp_path, "profiles/base.yaml")}
model:
  fallback: "scripted: {{text}}"
turns:
  - user: Can you hear me?
    expect:
      reply_contains: "[emulator] You said: Can you hear me?"
      reply_not_contains: scripted
""",
        encoding="utf-8",
    )
    with emulator_thread(speed=20, use_espeak=False, api_key="endpoint-test-key") as emu:
        proc = run_cli(
            "test", str(scenario), "--endpoint", emu.endpoint,
            env={"AZURE_VOICELIVE_API_KEY": "endpoint-test-key"},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "endpoint-test-key" not in proc.stdout + proc.stderr
    assert "offline:" not in proc.stderr


# --- integrations -------------------------------------------------------------------------------


def test_pre_commit_hooks_run_real_commands() -> None:
    import re

    from runner.cli import COMMANDS

    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"vlrun-check", "vlrun-test"}
    for hook in hooks.values():
        program, command = hook["entry"].split()[:2]
        assert program == "vlrun" and command in COMMANDS
    files = re.compile(hooks["vlrun-check"]["files"])
    assert files.search("profiles/weather.yaml") and files.search("tests/scenarios/base.yaml")
    assert not files.search(".github/workflows/ci.yml")
    assert hooks["vlrun-test"]["pass_filenames"] is False


def test_github_actions_example_matches_the_docs_and_uses_real_options() -> None:
    example = yaml.safe_load((ROOT / "docs" / "examples" / "github-actions.yml").read_text())
    doc = (ROOT / "docs" / "testing.md").read_text()
    block = doc.split("## GitHub Actions", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block)["jobs"] == example["jobs"]
    runs = [s["run"] for job in example["jobs"].values() for s in job["steps"] if "run" in s]
    vlrun_lines = [r for r in runs if r.startswith("vlrun ")]
    assert any(r.startswith("vlrun check") for r in vlrun_lines)
    assert any(r.startswith("vlrun test") and "--endpoint" not in r for r in vlrun_lines)
    for line in vlrun_lines:
        command = line.split()[1]
        help_text = run_cli(command, "--help").stdout
        for option in (w for w in line.split() if w.startswith("--")):
            assert option in help_text, (command, option)


def test_junit_stays_well_formed_with_control_characters_and_secrets(tmp_path: Path) -> None:
    from runner.redact import register_secret
    from runner.scenarios.results import ScenarioResult

    secret = "junit-secret-93c1d0aa7e"
    register_secret(secret)
    hostile = f"bell\x07 esc\x1b]0;title\x07 nul\x00 vt\x0b {secret}"
    results = [
        ScenarioResult(ROOT / "a.yaml", f"name {hostile}", error=f"boom {hostile}"),
        ScenarioResult(ROOT / "b.yaml", "b", lines=[(0, f"assistant: {hostile}")]),
    ]
    out = tmp_path / "junit.xml"
    write_junit(results, out)
    text = out.read_text(encoding="utf-8")
    root = ET.parse(out).getroot()  # parses: every character is one XML 1.0 can hold
    assert secret not in text
    cases = root.findall("./testsuite/testcase")
    assert "\\x07" in (cases[0].get("name") or "")  # shown, not dropped silently
    assert (cases[1].findtext("system-out") or "").startswith("assistant: bell")


def test_a_wav_turn_of_pure_silence_says_no_speech_was_detected(tmp_path: Path) -> None:
    import wave

    profile = project_copy(tmp_path, "profiles/casual-chat.yaml")
    with wave.open(str(tmp_path / "silence.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(bytes(24000 * 2))  # one second of digital silence
    scenario = tmp_path / "quiet.yaml"
    scenario.write_text(
        f"scenario: a silent recording\nprofile: {profile}\ntimeout_s: 1\n"
        "turns:\n  - wav: silence.wav\n    transcript: nothing\n"
    )
    (result,) = run_all([scenario])
    messages = [f.render() for f in result.failures]
    assert any("no speech detected in silence.wav" in m for m in messages), messages
    assert not any("no complete reply" in m for m in messages)
