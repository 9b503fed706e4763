"""`vlrun tools list/show` run as a real subprocess: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import EXAMPLE_TOOLS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "plugins"


def vlrun(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VLRUN_TOOLS_ENTRY_POINTS": "0", "PYTHONPATH": str(ROOT)}
    env.pop("VLRUN_TOOLS_ONLY", None)
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_list_shows_names_sources_and_descriptions() -> None:
    proc = vlrun("tools", "list", "--tools", str(DATA / "folder_a"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "DESCRIPTION"]
    assert [line.split()[0] for line in lines[1:]] == ["greet", "lookup_order", "shout"]
    assert "folder_a/greet.py:6" in lines[1] and "Say hello to someone." in lines[1]


def test_list_json() -> None:
    proc = vlrun("tools", "list", "--json", "--tools", str(DATA / "folder_a"))
    data = json.loads(proc.stdout)
    assert [t["name"] for t in data["tools"]] == ["greet", "lookup_order", "shout"]
    assert data["tools"][1]["async"] is True and data["tools"][1]["context"] is True
    assert data["missing"] == []


def test_list_uses_the_tools_folder_in_the_working_directory() -> None:
    proc = vlrun("tools", "list")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert names == EXAMPLE_TOOLS


def test_show_prints_the_definition_the_model_sees() -> None:
    proc = vlrun("tools", "show", "get_weather")
    assert proc.returncode == 0, proc.stderr
    definition = json.loads(proc.stdout)
    assert definition["type"] == "function" and definition["name"] == "get_weather"
    assert definition["parameters"]["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert list(definition["parameters"]["properties"]) == ["location", "unit"]  # no context
    assert "tools/get_weather.py" in proc.stderr


def test_show_unknown_name_suggests_and_exits_1() -> None:
    proc = vlrun("tools", "show", "get_wether")
    assert proc.returncode == 1
    assert (
        "no tool named 'get_wether'" in proc.stderr and "did you mean 'get_weather'" in proc.stderr
    )
    assert "Traceback" not in proc.stderr + proc.stdout


def test_duplicate_names_exit_1_naming_both_files() -> None:
    proc = vlrun(
        "tools", "list", "--tools", str(DATA / "folder_a"), "--tools", str(DATA / "folder_b")
    )
    assert proc.returncode == 1
    assert "folder_a/greet.py:6" in proc.stderr and "folder_b/greet_again.py:6" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_tool_file_exits_1_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "tool.py").write_text("from runner.plugins import tool\nraise KeyError('boom')\n")
    proc = vlrun("tools", "list", "--tools", str(tmp_path))
    assert proc.returncode == 1
    assert "tool.py:2: loading the tool file failed: KeyError: 'boom'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_tools_folder_is_a_usage_error() -> None:
    proc = vlrun("tools", "list", "--tools", "no/such/dir")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


PROFILE = DATA / "with_profile" / "profile.yaml"


def test_list_with_a_profile_marks_bindings_and_reports_missing_plugins() -> None:
    proc = vlrun("tools", "list", "--json", "--profile", str(PROFILE))
    assert proc.returncode == 1  # a bound tool without a plugin is an error, as in `vlrun check`
    data = json.loads(proc.stdout)
    rows = {t["name"]: t for t in data["tools"]}
    assert rows["lookup_stock"]["bound"] is True and rows["lookup_stock"]["timeout_s"] == 3
    assert rows["lookup_stock"]["description"] == "Check how many items are left in the warehouse."
    assert rows["unbound_helper"]["bound"] is False
    assert data["missing"] == ["not_written_yet"]
    assert "profile.yaml:6: error: the profile binds tool 'not_written_yet'" in proc.stderr


def test_show_with_a_profile_uses_its_description_override() -> None:
    proc = vlrun("tools", "show", "lookup_stock", "--profile", str(PROFILE))
    assert proc.returncode == 0, proc.stderr
    definition = json.loads(proc.stdout)
    assert definition["description"] == "Check how many items are left in the warehouse."
    assert definition["parameters"]["required"] == ["sku"]


def test_show_reports_drift_from_the_profiles_declared_parameters() -> None:
    proc = vlrun(
        "tools", "show", "lookup_stock", "--profile", str(DATA / "with_profile" / "drift.yaml")
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["name"] == "lookup_stock"  # the definition still prints
    assert (
        "drift.yaml:3: error: declared parameters differ at properties.sku.type: "
        "the profile says integer but the tool takes string" in proc.stderr
    )
