"""`vlrun check` reports every independent problem in one run (issue 28, item 3), and a problem
a `--set` causes inside a setting names that `--set` (Locator.problem). Real CLI runs."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
TOOLS = str(ROOT / "tools")

# Four mistakes of four kinds, none of which makes another meaningless. Before, one run
# reported only the schema error; the template, semantic and tool errors took two more runs.
FOUR = """\
name: four
instructions: |
  You answer for {{ restaurnt }}.
vars:
  restaurant: {default: Chez Emu}
voice:
  name: en-US-AvaNeural
  type: azure-standardd
modalities: [audio]
tools:
  - name: get_wether
"""


def _check(tmp_path: Path, text: str, *args: str) -> tuple[int, list[str], str]:
    (tmp_path / "p.yaml").write_text(text)
    proc = run_cli("check", str(tmp_path / "p.yaml"), "--tools", TOOLS, *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stdout.splitlines() if ": error: " in line]
    return proc.returncode, errors, proc.stdout + proc.stderr


def test_one_run_reports_a_schema_a_semantic_a_template_and_a_tool_error(tmp_path: Path) -> None:
    code, errors, out = _check(tmp_path, FOUR)
    assert code == 1, out
    p = str(tmp_path / "p.yaml")
    assert len(errors) == 4, out
    assert errors[0].startswith(f"{p}:3: error: template: 'restaurnt' is undefined"), out
    assert errors[1].startswith(f"{p}:8:9: error: type 'azure-standardd' is not one of"), out
    assert errors[2].startswith(f"{p}:9:13: error: audio output needs `text`"), out
    assert errors[3].startswith(f"{p}:11:5: error: tool 'get_wether' has no plugin"), out
    assert "did you mean `get_weather`?" in out
    assert "4 error(s)" in out


def test_a_node_tool_without_a_plugin_is_reported_beside_a_schema_error(tmp_path: Path) -> None:
    code, errors, out = _check(
        tmp_path,
        "name: flowy\n"
        "turn_detection: {type: server_vad, threshold: 7}\n"  # schema: out of range
        "flow:\n  start: a\n  nodes:\n"
        "    a:\n      tools: [book_tabel]\n      transitions: [{to: b}]\n"
        "    b: {end: true}\n",
    )
    p = str(tmp_path / "p.yaml")
    assert code == 1, out
    assert [e.split(": error: ")[0] for e in errors] == [f"{p}:2:47", f"{p}:7:15"], out
    assert "7 is out of range" in errors[0] and "'book_tabel'" in errors[1], out


def test_a_missing_env_value_does_not_hide_a_template_error(tmp_path: Path) -> None:
    code, errors, out = _check(
        tmp_path,
        "name: env\nconnection:\n  endpoint: ${env:VLRUN_NOT_SET_ANYWHERE}\n"
        "instructions: Hello {{ who }}.\n",
    )
    p = str(tmp_path / "p.yaml")
    assert code == 1, out
    assert [e.split(": error: ")[0] for e in errors] == [f"{p}:3:13", f"{p}:4:15"], out
    assert "VLRUN_NOT_SET_ANYWHERE is not set" in errors[0] and "'who'" in errors[1], out


def test_checks_that_read_a_broken_setting_are_skipped_not_misled(tmp_path: Path) -> None:
    # `vars` is wrong, so whether {{ guest }} is defined cannot be known; `tools` is wrong,
    # so whether tool_choice names one of them cannot either: one error each, no guesses.
    code, errors, out = _check(
        tmp_path,
        "name: deps\nvars: [guest]\ninstructions: Hello {{ guest }}.\n"
        "tools: [{name: get_weather, timeout_s: -1}]\ntool_choice: get_weather\n",
    )
    p = str(tmp_path / "p.yaml")
    assert code == 1, out
    assert [e.split(": error: ")[0] for e in errors] == [f"{p}:2:7", f"{p}:4:40"], out
    assert "undefined" not in out and "tool_choice" not in out, out


def test_a_document_that_is_not_a_mapping_is_one_problem(tmp_path: Path) -> None:
    code, errors, out = _check(tmp_path, "- voice: alloy\n- tools: [x]\n")
    assert code == 1 and len(errors) == 1, out


def test_a_setting_with_an_error_is_not_compiled_into_more_noise(tmp_path: Path) -> None:
    code, errors, out = _check(
        tmp_path,
        "name: t\nconnection:\n  agent: {name: helper, id: asst_1, project: p}\n"
        "voice: {name: alloy, type: openai, pitch: 1}\n",  # `pitch`: not for openai voices
    )
    assert code == 1 and len(errors) == 2, out
    assert "not both" in errors[0] and "`pitch` applies to Azure" in errors[1], out
    assert "warning" not in out.replace("0 warning(s)", ""), out  # no `id` is 2025-05-01...


# --- a problem a --set causes names that --set ------------------------------------------------

SET_PROFILE = "name: sets\ninstructions: hi\ntools:\n  - name: get_weather\n"


def test_a_tool_a_set_renamed_names_the_set_not_the_file_line(tmp_path: Path) -> None:
    # Before: `p.yaml:4:5: error: tool 'nope' has no plugin...`, a line that says get_weather.
    code, errors, out = _check(tmp_path, SET_PROFILE, "--set", "tools.0.name=nope")
    p = str(tmp_path / "p.yaml")
    assert code == 1, out
    assert errors == [
        "--set tools.0.name=nope: error: tool 'nope' has no plugin and no declared parameters "
        "(at $.tools[0])"
    ], out
    assert (
        f"hint: add a plugin in tools/ or declare `parameters:`; or change or drop --set "
        f"tools.0.name=nope (the profile's setting is at {p}:4:5)"
    ) in out
    assert f"{p}:4:5: error" not in out


def test_a_problem_beside_a_set_stays_at_its_own_line(tmp_path: Path) -> None:
    code, errors, out = _check(
        tmp_path, SET_PROFILE + "  - name: nothing_here\n", "--set", "tools.0.timeout_s=5"
    )
    p = str(tmp_path / "p.yaml")
    assert code == 1, out
    assert len(errors) == 1 and errors[0].startswith(f"{p}:5:5: error: tool 'nothing_here'"), out
    assert "--set" not in errors[0] and "change or drop" not in out, out


def test_a_set_is_not_blamed_for_the_whole_document(tmp_path: Path) -> None:
    # the document's root holds every --set; a problem about the root is not the --set's
    code, errors, out = _check(tmp_path, "name: x\nbogus: 1\n", "--set", "voice=alloy")
    p = str(tmp_path / "p.yaml")
    assert code == 1 and errors and errors[0].startswith(f"{p}:2:1: error: unknown key"), out
