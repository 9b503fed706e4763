"""Simulated callers and judged expectations in `vlrun test` (issue 30): the three caller
tiers offline (the emulator's chat endpoint plays the caller and the judge and says it is not
a model), verdicts kept with their prompts in results.jsonl and the HTML report, the flow
coverage gate. Real sessions, SDK, emulator and openai client; no key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.scenarios.files import check_file
from runner.scenarios.judged import EvalSettings
from runner.scenarios.results import ScenarioResult
from runner.scenarios.suite import run_all
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
DINER = ROOT / "tests" / "data" / "scenarios" / "diner.yaml"
REL = "tests/data/scenarios/diner.yaml"
EMULATED = "[vlrun emulator, not a model] "


def line_of(path: Path, marker: str) -> int:
    hits = [n for n, text in enumerate(path.read_text().splitlines(), 1) if marker in text]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


@pytest.fixture(scope="module", params=["script", "text", "audio"])
def tier_results(request: pytest.FixtureRequest) -> tuple[str, dict[str, ScenarioResult]]:
    tier = str(request.param)
    results = run_all([DINER], jobs=2, options={"evals": EvalSettings(tier)})
    return tier, {r.name: r for r in results}


def test_a_simulated_caller_reaches_its_goal_on_every_offline_tier(
    tier_results: tuple[str, dict[str, ScenarioResult]],
) -> None:
    tier, results = tier_results
    diner = results["hurried diner"]
    assert diner.passed, [f.render() for f in diner.failures] or diner.error
    said = [text for _, text in diner.lines if text.startswith("you: ")]
    if tier == "audio":  # spoken, heard by the service's turn detection
        assert len(said) == 3 and all(s.startswith("you: [speech ") for s in said), said
    else:
        assert said == ["you: hi, a table for two please", "you: seven pm", "you: yes"]
    assert diner.lines[-1] == (2, "assistant: Booked. See you tonight.")
    verdicts = {v["rubric"]: v for v in diner.verdicts}
    time_back = verdicts["The assistant confirms the time back to the caller."]
    success = verdicts["the assistant confirmed a booking"]
    assert time_back["where"] == f"{DINER}:{line_of(DINER, '- rubric: The assistant confirms')}"
    assert success["where"] == f"{DINER}:{line_of(DINER, 'success: the assistant confirmed')}"
    for v, reason in ((time_back, "it said the time"), (success, "it said booked")):
        assert v["passed"] is True and v["reason"] == EMULATED + reason
        assert v["model"] == "vlrun-emulator" and v["turn"] is None
        # the prompt the judge was sent holds the conversation it judged
        assert v["prompt"][0]["role"] == "system"
        assert "Booked. See you tonight." in json.dumps(v["prompt"])


def test_a_failed_rubric_fails_at_its_line_with_the_judges_reason(
    tier_results: tuple[str, dict[str, ScenarioResult]],
) -> None:
    _, results = tier_results
    host = results["forgetful host"]
    line = line_of(DINER, "rubric: The assistant asks for the time.")
    assert [f.render() for f in host.failures] == [
        f"{DINER}:{line}: judged: 'The assistant asks for the time.' does not hold: "
        f"{EMULATED}it did not ask for a time"
    ]
    (verdict,) = host.verdicts
    assert verdict["turn"] == 0 and verdict["passed"] is False


def test_the_text_tier_asks_the_caller_endpoint_and_the_script_tier_does_not() -> None:
    # nothing listens on port 9: the text tier must fail there, naming the endpoint
    dead = "m@http://127.0.0.1:9/v1"
    proc = run_cli("test", REL, "--caller", "text", "--caller-endpoint", dead)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = line_of(DINER, "    caller:")
    assert (
        f"{REL}:{line + 1}: the caller could not speak: the simulated caller cannot reach its "
        "chat endpoint (chat http://127.0.0.1:9/v1 model m)"
    ) in proc.stdout
    assert "Traceback" not in proc.stderr
    proc = run_cli("test", REL, "--caller-endpoint", dead)  # tier script: the script speaks
    assert f"PASS  {REL}  hurried diner" in proc.stdout, proc.stdout + proc.stderr


def test_results_jsonl_and_the_html_report_keep_the_verdicts(tmp_path: Path) -> None:
    results, page = tmp_path / "results.jsonl", tmp_path / "report.html"
    proc = run_cli("test", REL, "--results", str(results), "--html", str(page))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["name"], r["passed"]) for r in records] == [
        ("hurried diner", True),
        ("forgetful host", False),
    ]
    (verdict,) = records[1]["judge"]
    assert verdict["rubric"] == "The assistant asks for the time."
    assert verdict["reason"] == EMULATED + "it did not ask for a time"
    assert verdict["prompt"] and verdict["raw"] and verdict["model"] == "vlrun-emulator"
    assert records[0]["timeline"]["replies"], "the run is drawn on a time axis"
    html = page.read_text()
    assert "it did not ask for a time" in html and "hurried diner" in html


def test_the_flow_coverage_gate_names_what_is_not_covered() -> None:
    proc = run_cli("test", "tests/scenarios/reservation.yaml", "--min-flow-coverage", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "PASS  tests/scenarios/reservation.yaml" in proc.stdout
    assert "not exercised: node large_party" in proc.stdout
    assert "is under the minimum 100% (--min-flow-coverage)" in proc.stdout
    proc = run_cli("test", "tests/scenarios/reservation.yaml", "--min-flow-coverage", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_caller_and_rubric_problems_are_positioned(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "p.yaml").write_text("name: p\n")
    (tmp_path / "s.yaml").write_text(
        """\
profile: p.yaml
scenarios:
  - scenario: both
    caller: {goal: x, script: [hi]}
    turns: [{user: hi}]
  - scenario: no script
    caller: {goal: x, max_turns: 2}
    judge:
      - rubric: polite
        offline: {reason_pass: ok}
"""
    )
    problems = [(p.line, p.severity, p.message) for p in check_file(tmp_path / "s.yaml")]
    assert problems == [
        (4, "error", "a scenario has scripted `turns` or a `caller`, not both"),
        (7, "warning", "the caller has no `script`: it cannot run offline (--caller script)"),
        (10, "error", "`offline` needs pass_if, fail_if or passed (a fixed verdict)"),
    ]


def test_caller_expectations_are_checked_on_every_caller_turn(tmp_path: Path) -> None:
    import shutil

    for folder in ("profiles", "tools"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "s.yaml").write_text(
        """\
scenario: never say booked
profile: profiles/casual-chat.yaml
model:
  turns:
    - {match: "^hi", say: Hello there.}
    - {match: "^book", say: Booked for you.}
caller:
  goal: book
  script: [hi, book it]
  expect:
    reply_not_contains: booked
"""
    )
    (result,) = run_all([tmp_path / "s.yaml"])
    # the first caller turn passed; the second fails at the caller's expectation, turn 2
    assert [(f.line, f.turn, f.message) for f in result.failures] == [
        (11, 1, "the reply contains 'booked': 'Booked for you.'")
    ]
    assert [t.reply for t in result.turns] == ["Hello there.", "Booked for you."]
