"""`vlrun check --no-plugins`: tool bindings checked from syntax trees; no plugin code runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main

HOSTILE = """\
import pathlib, sys
pathlib.Path({marker!r}).write_text("ran")
print("import-time noise that would corrupt --format json")
from runner.plugins import ToolContext, tool


@tool(name="lookup", description="Find a thing.")
async def find(query: str, context: ToolContext, limit: int = 3) -> str:
    return query


@tool
def ping(*, host: str, count: int = 1) -> str:
    \"\"\"Ping a host.

    More words.\"\"\"
    return host

sys.exit(5)
"""


def _project(tmp_path: Path, tools_yaml: str) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "net.py").write_text(HOSTILE.format(marker=str(marker)))
    profile = tmp_path / "agent.yaml"
    profile.write_text("name: agent\ninstructions: Help.\ntools:\n" + tools_yaml)
    return profile, marker


def test_no_plugin_code_runs_and_json_stays_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, marker = _project(tmp_path, "  - name: lookup\n  - name: ping\n")
    code = main(["check", "--no-plugins", "--format", "json", str(profile)])
    out = capsys.readouterr().out
    assert not marker.exists()
    assert code == 0, out
    (entry,) = json.loads(out)["files"]
    assert entry["valid"] is True and entry["problems"] == []


def test_a_binding_without_a_marked_function_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, marker = _project(tmp_path, "  - name: lookup\n  - name: find\n")
    code = main(["check", "--no-plugins", str(profile)])
    out = capsys.readouterr().out
    assert code == 1 and not marker.exists()
    assert "tool 'find' has no plugin" in out  # `find` is registered under its name= override
    assert "agent.yaml:5:" in out


def test_declared_parameters_the_function_does_not_take_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, _ = _project(
        tmp_path,
        "  - name: ping\n    parameters:\n      type: object\n"
        "      properties: {host: {type: string}, timeout: {type: number}}\n",
    )
    code = main(["check", "--no-plugins", str(profile)])
    out = capsys.readouterr().out
    assert code == 1
    assert "declared parameter 'timeout' is not a parameter of ping" in out
    assert f"{tmp_path / 'tools' / 'net.py'}:12" in out  # the decorator's line, as tools list says
    assert "'host'" not in out


def test_a_tool_file_that_does_not_parse_is_reported_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, _ = _project(tmp_path, "  - name: ping\n")
    (tmp_path / "tools" / "broken.py").write_text("x = 1\ndef f(:\n    pass\n")
    code = main(["check", "--no-plugins", str(profile)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{tmp_path / 'tools' / 'broken.py'}:2:" in out and "syntax error" in out


def test_the_static_schema_keeps_names_requiredness_and_descriptions(tmp_path: Path) -> None:
    from runner.plugins._static import read_tools

    _project(tmp_path, "  - name: ping\n")
    tools, problems = read_tools(tmp_path / "tools")
    assert problems == []
    by_name = {t.name: t for t in tools}
    assert by_name["lookup"].params == ("query", "limit")  # the ToolContext is not a parameter
    assert by_name["lookup"].required == ("query",)
    assert by_name["lookup"].description == "Find a thing."
    assert by_name["ping"].required == ("host",)
    assert by_name["ping"].description == "Ping a host."
