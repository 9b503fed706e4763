"""`vlrun check` knows a file of several scenarios (a top-level `scenarios:` list) for a
scenario file, as `vlrun test` does, and checks each scenario in it at its own line."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import ROOT, run_cli


def test_a_file_of_several_scenarios_is_checked_as_scenarios() -> None:
    # before, the `scenarios:` head was read as a profile: "unknown key 'profile'", exit 1
    done = run_cli("check", "tests/data/scenarios/diner.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "unknown key" not in done.stdout + done.stderr


def test_a_problem_in_the_second_scenario_is_reported_at_its_line(tmp_path: Path) -> None:
    text = (ROOT / "tests/data/scenarios/diner.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "../../../profiles/casual-chat.yaml", str(ROOT / "profiles/casual-chat.yaml")
    )
    lines = text.splitlines()
    second = next(i for i, line in enumerate(lines) if "scenario: forgetful host" in line)
    lines.insert(second + 1, "    turnz: []")
    bad = tmp_path / "several.yaml"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = run_cli("check", str(bad))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"several.yaml:{second + 2}" in done.stdout + done.stderr
