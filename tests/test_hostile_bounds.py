"""Hostile input, bounds: files that never end or never open, template bombs, non-finite numbers.

Each class is closed by one mechanism (see docs/reliability.md); these tests try several members
of each class. Bounds are asserted with resource limits on a subprocess: address space via
``resource.setrlimit`` and wall time via the subprocess timeout. Nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT

MEMORY_LIMIT = 1536 * 1024 * 1024  # the bombs below want 3 to 8 GB; a check needs < 200 MB
TIME_LIMIT_S = 60  # a hang is the failure; a healthy run takes well under a second


def bounded_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with a memory cap; a hang fails with TimeoutExpired."""
    prelude = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_S,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VLRUN_DOTENV": "none"},
    )


def bounded_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    code = f"from runner.cli import main; raise SystemExit(main({list(args)!r}))"
    prelude = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_S,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VLRUN_DOTENV": "none",
            "AZURE_VOICELIVE_ENDPOINT": "",
            **(env or {}),
        },
    )


def analyse_in_subprocess(
    profile: Path, env: dict[str, str] | None = None
) -> list[dict[str, object]]:
    """``analyse()`` under the limits; returns its problems as dicts."""
    result = bounded_python(
        f"""
        import json, os
        from pathlib import Path
        from runner.config.load import analyse
        _, problems = analyse(Path({str(profile)!r}), env={env or {}!r})
        print(json.dumps([dict(file=p.file, line=p.line, severity=p.severity,
                               message=p.message) for p in problems]))
        """,
        profile.parent,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    problems: list[dict[str, object]] = json.loads(result.stdout)
    return problems


# --- files ---------------------------------------------------------------------------------------


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "loop-a.yaml").symlink_to(tmp_path / "loop-b.yaml")
    (tmp_path / "loop-b.yaml").symlink_to(tmp_path / "loop-a.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")  # a link inside the folder to a device
    (tmp_path / "urandom.md").symlink_to("/dev/urandom")
    (tmp_path / "huge.md").write_bytes(b"a" * (2 * 1024 * 1024))
    return tmp_path


@pytest.mark.parametrize("target", ["fifo.yaml", "loop-a.yaml", "zero.yaml"])
def test_a_hostile_file_as_the_profile_is_refused_at_once(hostile_dir: Path, target: str) -> None:
    problems = analyse_in_subprocess(hostile_dir / target)
    assert len(problems) == 1
    message = str(problems[0]["message"])
    assert message.startswith("is a "), message
    assert problems[0]["file"] == str(hostile_dir / target)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("fifo.yaml", "FIFO"),
        ("loop-a.yaml", "symlink loop"),
        ("/dev/zero", "must be a path relative"),
    ],
)
def test_a_hostile_extends_target_is_refused_at_the_extends_line(
    hostile_dir: Path, target: str, expected: str
) -> None:
    profile = hostile_dir / "child.yaml"
    profile.write_text(f"name: child\nextends: {target}\n")
    result = bounded_cli("check", str(profile), cwd=hostile_dir)
    assert result.returncode == 1, result.stderr
    assert "child.yaml:2:10: error: " in result.stdout
    assert expected in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("fifo.yaml", "FIFO"),
        ("loop-a.yaml", "symlink loop"),
        ("urandom.md", "outside the profile's folder"),  # checked before it is ever opened
        ("huge.md", "too large"),
    ],
)
def test_a_hostile_instructions_file_is_refused_at_the_file_line(
    hostile_dir: Path, target: str, expected: str
) -> None:
    profile = hostile_dir / "p.yaml"
    profile.write_text(f"name: p\ninstructions:\n  file: {target}\n")
    problems = analyse_in_subprocess(profile)
    assert [(p["line"], p["severity"]) for p in problems] == [(3, "error")]
    assert expected in str(problems[0]["message"])


def test_a_device_link_inside_the_folder_is_refused_not_read(hostile_dir: Path) -> None:
    """zero.yaml -> /dev/zero resolves outside the folder; urandom.md is checked by type."""
    profile = hostile_dir / "p.yaml"
    profile.write_text("name: p\nextends: zero.yaml\n")
    problems = analyse_in_subprocess(profile)
    assert len(problems) == 1 and problems[0]["line"] == 2


# --- templates -----------------------------------------------------------------------------------

BOMBS = [
    "{{ ([1]*10**9)|length }}",
    '{{ "a"*10**9 }}',
    '{{ "a"|center(10**9) }}',
    '{{ "a".ljust(10**9) }}',
    '{{ "%999999999d"|format(1) }}',
    '{{ "{:999999999}".format(1) }}',
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ lipsum(n=10**7) }}",
    "{{ lipsum(n=100000) }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s }}",
    "{{ (['a'*10**6]*10**6)|join }}",
    "{{ ('a'*10**6)|replace('a', 'a'*10**6) }}",
    "{{ 10**100000 }}",
]


def test_every_template_bomb_fails_fast_with_a_positioned_problem(tmp_path: Path) -> None:
    """All bombs in one interpreter under the memory cap and one timeout: each is a problem."""
    result = bounded_python(
        f"""
        import json
        from runner.config.template import render, Where, TemplateProblem
        out = []
        for bomb in {BOMBS!r}:
            try:
                render(bomb, {{}}, Where("p.yaml", 7))
                out.append(None)
            except TemplateProblem as exc:
                out.append([exc.problem.file, exc.problem.line, exc.problem.message])
        print(json.dumps(out))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = json.loads(result.stdout)
    for bomb, outcome in zip(BOMBS, outcomes, strict=True):
        assert outcome is not None, f"rendered: {bomb}"
        assert outcome[:2] == ["p.yaml", 7], bomb
        assert outcome[2].startswith(("template stopped:", "template failed:")), outcome


def test_ordinary_templates_still_render() -> None:
    from runner.config.template import Where, render

    text = (
        "Hi {{ name|upper }} {% for i in range(3) %}{{ i }}{% endfor %} {{ 'a' ~ name }} "
        "{{ '%5d'|format(3) }} {{ 2**10 }} {{ [1, 2]|join(',') }} {{ 'ab'*3 }} "
        "{{ ('x' ~ 'y')|center(6) }} {{ '%d'|format(10**7) }} {{ missing|default(10**7) }}"
    )
    assert render(text, {"name": "bo"}, Where("p", 1)) == (
        "Hi BO 012 abo     3 1024 1,2 ababab   xy   10000000 10000000"
    )


def test_a_template_bomb_in_a_profile_is_a_check_error(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text('name: p\ninstructions: |\n  Hello\n  {{ "a"*10**9 }}\n')
    result = bounded_cli("check", str(profile), cwd=tmp_path)
    assert result.returncode == 1
    assert "p.yaml:4: error: template stopped" in result.stdout


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ("temperature: .nan", 2),
        ("tool_timeout_s: .inf", 2),
        ("turn_detection:\n  type: server_vad\n  threshold: -.inf", 4),
        ("tools:\n  - name: t\n    timeout_s: .NaN", 4),
    ],
)
def test_non_finite_numbers_are_refused_at_their_line(
    tmp_path: Path, setting: str, line: int
) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(f"name: p\n{setting}\n")
    result = bounded_cli("check", str(profile), cwd=tmp_path)
    assert result.returncode == 1
    assert f"p.yaml:{line}:" in result.stdout
    assert "is not a finite number" in result.stdout


@pytest.mark.parametrize(
    "args",
    [("--set", "temperature=.nan"), ("--var", "t=nan"), ("--var", "t=inf")],
)
def test_non_finite_numbers_from_the_command_line_are_refused(
    tmp_path: Path, args: tuple[str, str]
) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\nvars:\n  t: 0.5\ninstructions: 'T {{ t }}'\n")
    result = bounded_cli("compile", str(profile), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    assert "finite" in result.stderr


def test_a_non_finite_env_value_for_a_number_is_an_error(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\ntemperature: ${env:T}\n")
    problems = analyse_in_subprocess(profile, env={"T": ".nan"})
    assert problems and problems[0]["line"] == 2 and problems[0]["severity"] == "error"


def test_sexagesimal_numbers_get_a_warning(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\ntool_timeout_s: 1:30\nvars:\n  wait:\n    default: 1:00\n")
    result = bounded_cli("check", str(profile), cwd=tmp_path)
    assert result.returncode == 0
    assert "p.yaml:2:17: warning: '1:30' is read as the base-60 number 90" in result.stdout
    assert "p.yaml:5:14: warning: '1:00' is read as the base-60 number 60" in result.stdout
    quoted = tmp_path / "q.yaml"
    quoted.write_text("name: q\ndescription: '1:30'\n")
    assert "warning" not in bounded_cli("check", str(quoted), cwd=tmp_path).stdout


# --- environment values are data -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["{{ 7*7 }}", "{% if true %}x{% endif %}", "{%", "{# comment", "}}{{", "{{ lipsum(n=10**7) }}"],
)
def test_env_values_reach_the_instructions_as_written(tmp_path: Path, value: str) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\nvars:\n  who: Ann\n"
        "instructions: 'Hello {{ who }}: ${env:X}.'\ngreeting: 'Say ${env:X}'\n"
    )
    result = bounded_cli("compile", str(profile), cwd=tmp_path, env={"X": value})
    assert result.returncode == 0, result.stdout + result.stderr
    session = json.loads(result.stdout)["session"]
    assert session["instructions"] == f"Hello Ann: {value}."


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"A": "a"}, "a"),
        ({"B": "b"}, "b"),
        ({}, "c"),
        ({"B": "b", "A": ""}, ""),
    ],
)
def test_nested_env_defaults_resolve(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    from runner.config.load import load_profile

    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\ndescription: '[${env:A:-${env:B:-c}}]'\n")
    loaded = load_profile(profile, env=env)
    assert loaded.description == f"[{expected}]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${env:A:-${env:B}}", "environment variable B is not set"),
        ("${env:A:-${env:B}", "malformed reference"),
        ("${env:A:-x", "malformed reference"),
        ("${nope}", "malformed reference"),
    ],
)
def test_nested_env_defaults_that_cannot_resolve_are_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    from runner.config.load import analyse

    profile = tmp_path / "p.yaml"
    profile.write_text(f"name: p\ndescription: '{text}'\n")
    loaded, problems = analyse(profile, env={})
    assert loaded is None
    assert [p.line for p in problems] == [2]
    assert message in problems[0].message
