"""Flow checks as a user sees them: `vlrun check` on example files, output compared whole.

Each ``tests/data/flows/bad-*.yaml`` has a ``.expected.txt`` beside it (file:line:col, message,
hint); ``ok-*.yaml`` files must check clean. Then the condition language on its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.config import condition as cond

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "flows"


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "check", "--no-plugins", path.name],
        cwd=DATA,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("path", sorted(DATA.glob("bad-*.yaml")), ids=lambda p: p.stem)
def test_bad_flows_are_reported_at_their_lines(path: Path) -> None:
    proc = _check(path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == path.with_suffix(".expected.txt").read_text()


@pytest.mark.parametrize("path", sorted(DATA.glob("ok-*.yaml")), ids=lambda p: p.stem)
def test_good_flows_check_clean(path: Path) -> None:
    proc = _check(path)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout


def test_a_loop_with_no_exit_is_a_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(
        "name: loop\ninstructions: x\nflow:\n  start: a\n  nodes:\n"
        "    a: {transitions: [{to: b}]}\n    b: {transitions: [{to: a}]}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "check", "--no-plugins", "loop.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
    assert "loop.yaml:5:3: warning: the flow has no end node" in proc.stdout


# ---------------------------------------------------------------- the condition language

VALUES = {"size": 6, "kind": "vpn", "ok": True, "note": None}


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("size > 4", True),
        ("size > 4 and not ok", False),
        ("kind in ['vpn', 'email']", True),
        ("kind not in ['vpn']", False),
        ("note == null", True),
        ("note > 3", False),  # a value not collected orders with nothing
        ("1 < size <= 6", True),
        ("ok == 1", False),  # JSON equality: true is not 1
        ("size == 6.0", True),
        ("missing == null", True),
        ("-1 < size", True),
    ],
)
def test_conditions_evaluate_like_json_values(text: str, holds: bool) -> None:
    assert cond.parse(text).holds(VALUES) is holds


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "size.__class__",
        "[x for x in size]",
        "size + 1 > 2",
        "lambda: 1",
        "size if ok else 2",
        "-size > 1",
        "kind[0] == 'v'",
    ],
)
def test_anything_beyond_comparisons_is_refused(text: str) -> None:
    with pytest.raises(cond.ConditionError):
        cond.parse(text)


@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_number_comparisons_agree_with_python(a: int, b: int) -> None:
    for op in ("<", "<=", ">", ">=", "==", "!="):
        expected = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b}.get(
            op, a != b
        )
        assert cond.parse(f"x {op} {b}").holds({"x": a}) is expected


def test_type_problems_find_conditions_that_cannot_hold() -> None:
    specs = {"size": {"type": "integer", "minimum": 1, "maximum": 8}, "kind": {"type": "string"}}
    assert cond.type_problems(cond.parse("size > 2 and kind == 'vpn'"), specs) == []
    assert cond.type_problems(cond.parse("size >= 8"), specs) == []
    assert cond.type_problems(cond.parse("size > 8"), specs)
    assert cond.type_problems(cond.parse("9 <= size"), specs)  # the name on the right
    assert cond.type_problems(cond.parse("kind in [1, 2]"), specs)
    assert cond.type_problems(cond.parse("1 == 2"), specs)
    assert cond.type_problems(cond.parse("other"), specs) == [
        "`other` is not a value collected before this transition"
    ]


def test_a_node_may_list_call_control_but_not_a_misspelling_of_it(tmp_path: Path) -> None:
    (tmp_path / "desk.yaml").write_text(
        "name: desk\ndescription: d\ninstructions: x\nflow:\n  start: a\n  nodes:\n"
        "    a: {tools: [transfer, hang_up], transitions: [{to: b}]}\n"
        "    b: {tools: [trnsfer], end: true}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "check", "desk.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout
    assert "'transfer'" not in proc.stdout.split("did you mean")[0]  # the real one is fine
    assert "uses tool 'trnsfer'" in proc.stdout and "transfer" in proc.stdout
    assert proc.stdout.count("error:") == 1, proc.stdout
