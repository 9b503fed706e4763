"""Hostile command lines and profiles (issue 25, "Also outside serve"), through the real CLI:
output to a full device, a wrong `--set`, and a template the Jinja sandbox refuses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


def cli(
    *args: str, cwd: Path, stdout: int | object = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VLRUN_DOTENV": "none",
            "VLRUN_TOOLS_ENTRY_POINTS": "0",
        },
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "p.yaml").write_text("name: p\ninstructions: You help.\n")
    (tmp_path / "q.yaml").write_text(
        "name: q\nvoice:\n  name: en-US-Ava:DragonHDLatestNeural\n  type: azure-standard\n"
    )
    (tmp_path / "s.yaml").write_text(
        "scenario: s\nprofile: p.yaml\nmodel:\n  turns:\n    - match: hi\n      say: Hello.\n"
        "turns:\n  - user: hi\n"
    )
    return tmp_path


# --- a full device -------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize(
    "args",
    [("schema",), ("compile", "p.yaml"), ("explain", "p.yaml"), ("--help",), ("test", "s.yaml")],
    ids=lambda a: a[0],
)
def test_output_to_a_full_device_is_one_line_and_exit_3(
    project: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    # Before: exit 70, "vlrun failed unexpectedly (OSError)" and a crash log for a full disk.
    with open("/dev/full", "w") as full:
        result = cli(*args, cwd=project, stdout=full)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 3, result.stderr
    assert errors == ["error: cannot write to standard output: No space left on device"]
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr  # the interpreter's last flush is quiet
    assert "failed unexpectedly" not in result.stderr
    assert not list((tmp_path / "state").glob("**/crash-*.log"))


# --- --set ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expr", "message"),
    [
        ("p.yaml", "voice.type=azure-custom", "a voice of type azure-custom needs `name`"),
        ("q.yaml", "voice.type=azure-custom", "needs `endpoint_id`"),
        ("p.yaml", "flow.start=a", "missing required key 'nodes'"),
    ],
)
def test_a_problem_a_set_causes_inside_a_setting_names_the_set_and_the_fix(
    project: Path, profile: str, expr: str, message: str
) -> None:
    # Before: `p.yaml:1:1: error: a voice of type azure-custom needs `name``: the profile's
    # first line, which says nothing of the kind, and no word of --set.
    result = cli("compile", profile, "--set", expr, cwd=project)
    assert result.returncode == 1, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"--set {expr}: error:"), result.stderr
    assert message in result.stderr
    assert f"hint: change or drop --set {expr}" in result.stderr
    if profile == "q.yaml":  # the voice is in the file: its line is named too
        assert "the profile's setting is at q.yaml:2:1" in result.stderr
    else:  # the voice is not: no made-up position
        assert "p.yaml:1:1" not in result.stderr


def test_a_set_value_that_is_not_yaml_says_how_to_quote_it(project: Path) -> None:
    result = cli("compile", "p.yaml", "--set", "instructions={{ topic }}", cwd=project)
    assert result.returncode == 2
    assert "--set 'instructions={{ topic }}': the value is not valid YAML" in result.stderr
    assert (
        """hint: to pass it as text, quote it for YAML: --set "instructions='{{ topic }}'\""""
        in (result.stderr)
    )


def test_a_set_template_error_names_the_set_without_a_line_zero(project: Path) -> None:
    # Before: `--set instructions='{{ topic }}':0:0: error: ...`
    result = cli("compile", "p.yaml", "--set", "instructions='{{ topic }}'", cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "--set instructions='{{ topic }}': error: template: 'topic' is undefined"
    ), result.stderr
    assert ":0:0" not in result.stderr


def test_setting_extends_is_refused_rather_than_ignored(project: Path) -> None:
    # Before: exit 0, the --set silently changed nothing.
    result = cli("compile", "p.yaml", "--set", "extends=q.yaml", cwd=project)
    assert result.returncode == 2
    assert "--set 'extends=q.yaml': extends cannot be set from the command line" in result.stderr


def test_a_scenario_set_item_that_does_not_apply_is_placed_at_its_line(project: Path) -> None:
    # Before: the problem was placed at `profile:` and said "--set", which the scenario has not.
    (project / "s.yaml").write_text(
        "scenario: s\nprofile: p.yaml\nset:\n  - temperature=0.5\n  - voice.type=azure-custom\n"
        "turns:\n  - user: hi\n"
    )
    result = cli("check", "s.yaml", cwd=project)
    assert result.returncode == 1
    assert "s.yaml:5:5: error: set item 'voice.type=azure-custom' does not apply to $.voice" in (
        result.stdout + result.stderr
    )


# --- the Jinja sandbox ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "attribute", "owner"),
    [
        ('{{ [ "".__class__ ] }}', "__class__", "str"),  # was "[Undefined]"
        ("{{ ''|attr('__class__')|pprint }}", "__class__", "str"),  # was "Undefined"
        ("{{ ''.__class__|default('plain') }}", "__class__", "str"),  # was "plain"
        ("{{ {'k': range.__code__} }}", "__code__", "function"),  # was "{'k': Undefined}"
    ],
)
@pytest.mark.parametrize("command", ["check", "compile"])
def test_a_template_the_sandbox_refuses_fails_at_its_line(
    project: Path, command: str, template: str, attribute: str, owner: str
) -> None:
    (project / "t.yaml").write_text(
        f"name: t\ninstructions: |\n  You help.\n  Today: {template}\n  Be brief.\n"
    )
    result = cli(command, "t.yaml", cwd=project)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert (
        f"t.yaml:4: error: template refused by the sandbox: access to attribute '{attribute}' "
        f"of '{owner}' object is unsafe"
    ) in out
    assert "Undefined" not in out and "plain" not in out


def test_an_undefined_value_shown_inside_a_list_fails_too(project: Path) -> None:
    (project / "t.yaml").write_text("name: t\ninstructions: 'Topics: {{ [topic] }}'\n")
    result = cli("compile", "t.yaml", cwd=project)
    assert result.returncode == 1
    assert "template: 'topic' is undefined" in result.stderr
    assert "[Undefined]" not in result.stdout


def test_defaults_and_defined_tests_still_work(project: Path) -> None:
    (project / "t.yaml").write_text(
        "name: t\ninstructions: '{{ topic|default(\"news\") }} {{ other is defined }}'\n"
    )
    result = cli("compile", "t.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    assert '"instructions": "news False"' in result.stdout


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_junit_report_on_a_full_device_names_the_report(project: Path, tmp_path: Path) -> None:
    # Before: exit 70 and a crash log.
    result = cli("test", "s.yaml", "--junit", "/dev/full", cwd=project)
    assert result.returncode == 3, result.stderr
    assert "error: cannot write the JUnit report /dev/full: No space left on device" in (
        result.stderr
    )
    assert "hint: choose another --junit" in result.stderr
    assert not list((tmp_path / "state").glob("**/crash-*.log"))


def test_a_record_folder_that_is_a_device_is_named_before_anything_runs(project: Path) -> None:
    # A plain file is refused by the option itself; a device got through. Before: exit 70.
    result = cli("test", "s.yaml", "--record", os.devnull, cwd=project)
    assert result.returncode == 3, result.stderr
    assert f"error: cannot record scenario 's' in {os.devnull}: it is not a folder" in (
        result.stderr
    )
    assert "PASS" not in result.stdout and "Traceback" not in result.stderr
