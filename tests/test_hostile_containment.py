"""Hostile input, containment: scenario paths stay in the project, plugin imports are contained,
user regexes cannot backtrack. Several members of each class; a hang fails by subprocess timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.patterns import PatternError, compile_pattern, search
from runner.scenarios.files import check_file
from tests.helpers import ROOT


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VLRUN_DOTENV": "none"},
    )


# --- scenario paths ------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.yaml").write_text("name: p\n")
    (tmp_path / "scenarios").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / ".env").write_text("SECRET_TOKEN=do-not-print-me-0123456789\n")
    return tmp_path


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("profile: /etc/passwd", "must be a path relative"),
        ("profile: ~/.env", "must be a path relative"),
        ("profile: ../../{outside}/.env", "points outside the project"),
        ("profile: ../profiles/p.yaml\ntools: [../../{outside}]", "points outside the project"),
        ("profile: ../profiles/p.yaml\nturns:\n  - wav: /dev/zero", "must be a path relative"),
    ],
)
def test_scenario_paths_outside_the_project_are_refused_unread(
    project: Path, line: str, expected: str
) -> None:
    outside = f"{project.name}-outside"
    scenario = project / "scenarios" / "s.yaml"
    body = line.format(outside=outside)
    if "turns:" not in body:
        body += "\nturns:\n  - user: hi"
    scenario.write_text("scenario: s\n" + body + "\n")
    problems = check_file(scenario)
    assert problems and all(p.severity == "error" for p in problems)
    assert expected in problems[0].message
    assert problems[0].line is not None and problems[0].line >= 2
    assert not any("do-not-print-me" in p.message or "root:" in p.message for p in problems)


def test_a_scenario_inside_the_project_still_loads(project: Path) -> None:
    scenario = project / "scenarios" / "s.yaml"
    scenario.write_text("scenario: s\nprofile: ../profiles/p.yaml\nturns:\n  - user: hi\n")
    assert check_file(scenario) == []


@pytest.mark.parametrize(
    "content", ["root:x:0:0:root:/root:/bin/bash\nbin:x:1:1", "- a\n- b", "SECRET=abcdef123456"]
)
def test_a_non_mapping_file_is_named_never_quoted(tmp_path: Path, content: str) -> None:
    from runner.config.load import analyse

    path = tmp_path / "p.yaml"
    path.write_text(content + "\n")
    _, problems = analyse(path)
    assert len(problems) == 1
    assert "a profile is a mapping of settings" in problems[0].message
    for word in content.replace("\n", ":").replace("=", ":").split(":"):
        if len(word) > 3:
            assert word not in problems[0].message + (problems[0].hint or "")


# --- plugin imports ------------------------------------------------------------------------------

HOSTILE_TOOLS = {
    "exits.py": ("import sys\nsys.exit(3)\n", "SystemExit(3)", 2),
    "exits_quietly.py": ("raise SystemExit\n", "SystemExit(None)", 1),
    "generator.py": ("x = 1\nraise GeneratorExit()\n", "GeneratorExit", 2),
    "raises.py": ("\n\nraise ValueError('boom')\n", "ValueError", 3),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TOOLS))
def test_a_tool_file_that_exits_or_raises_is_one_positioned_error(
    tmp_path: Path, name: str
) -> None:
    source, expected, line = HOSTILE_TOOLS[name]
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / name).write_text(source)
    (tmp_path / "p.yaml").write_text("name: p\ntools: [anything]\n")
    result = cli("check", "p.yaml", cwd=tmp_path)
    assert result.returncode not in (0, 70), result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert f"tools/{name}:{line}" in out, out
    assert expected in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "printer",
    [
        "print('hello from import')",
        "import os\nos.write(1, b'raw fd write\\n')",
        "import sys\nsys.stdout.write('{not json')",
    ],
)
def test_an_import_time_print_does_not_corrupt_json_output(tmp_path: Path, printer: str) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "noisy.py").write_text(
        printer + "\nfrom runner.plugins import tool\n\n@tool\ndef ping() -> str:\n"
        "    '''Ping.'''\n    return 'pong'\n"
    )
    (tmp_path / "p.yaml").write_text("name: p\ntools: [ping]\n")
    result = cli("check", "--format", "json", "p.yaml", cwd=tmp_path)
    json.loads(result.stdout)  # the whole of stdout is the JSON document
    assert "printed while being imported" in result.stderr


# --- regexes -------------------------------------------------------------------------------------

CATASTROPHIC = ["(a+)+$", "(a|aa)+$", "(a*)*b", "(.*a){20}$", "([a-z]+)*[0-9]$"]


def test_catastrophic_patterns_match_in_linear_time() -> None:
    """In a subprocess with a timeout: with backtracking each of these would run for ages."""
    code = (
        "from runner.config.patterns import search\n"
        f"for p in {CATASTROPHIC!r}:\n"
        "    assert not search(p, 'a' * 200_000 + '!')\n"
        "print('done')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.stdout.strip() == "done", result.stderr


@pytest.mark.parametrize("pattern", ["(?=a)", "(?!a)", "(?<=a)b", "(a)\\1", "(unclosed"])
def test_patterns_that_need_backtracking_are_refused_when_checked(pattern: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern)


def test_matching_is_case_insensitive_as_before() -> None:
    assert search("forty[- ]two", "It is FORTY-TWO.")
    assert not search("^two", "forty-two")


def test_a_scenario_with_a_lookahead_is_a_check_error_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "p.yaml").write_text("name: p\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "scenario: s\nprofile: p.yaml\nturns:\n  - user: hi\n    expect:\n"
        "      reply_matches: '(?!x)y'\n"
    )
    problems = check_file(scenario)
    assert [(p.line, p.severity) for p in problems] == [(6, "error")]
    assert "lookaround" in problems[0].message


def test_tools_are_read_statically_without_running_the_file(tmp_path: Path) -> None:
    """The --no-plugins path: a file that would exit, print and sleep at import is only parsed."""
    from runner.plugins._static import read_tools

    path = tmp_path / "t.py"
    path.write_text(
        "import sys, time\nprint('x')\ntime.sleep(3600)\nsys.exit(1)\n"
        "from runner.plugins import tool\nimport runner.plugins as plugins\n\n"
        "@tool\ndef a(city: str, *, unit: str = 'c') -> str:\n    return city\n\n"
        "@plugins.tool(name='bee')\nasync def b(n: int) -> int:\n    return n\n\n"
        "def helper() -> None: ...\n"
    )
    tools, problems = read_tools(tmp_path)
    assert problems == []
    assert [(t.name, t.line, t.params) for t in tools] == [
        ("a", 8, ("city", "unit")),
        ("bee", 12, ("n",)),
    ]
    (tmp_path / "bad.py").write_text("def f(:\n")
    _, problems = read_tools(tmp_path)
    assert [(Path(p.file).name, p.line) for p in problems] == [("bad.py", 1)]
    assert "syntax error" in problems[0].message
