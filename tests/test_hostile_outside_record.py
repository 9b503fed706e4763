"""Scenario names that look like paths (issue 25, "Also outside serve"): `vlrun test --record
DIR` keeps each scenario's stream as DIR/NAME.jsonl, NAME a safe file name derived from the
scenario's name. A name such as ``../../x`` is a label: it runs, and its recording stays in DIR.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

SCENARIO = """\
scenario: {name}
profile: ../p.yaml
model:
  turns:
    - match: hi
      say: Hello.
turns:
  - user: hi
    expect:
      reply_contains: Hello
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b""
        for p in folder.rglob("*")
        if not p.is_symlink()
    }


def test_a_name_that_would_traverse_runs_and_records_inside_the_folder(tmp_path: Path) -> None:
    base = tmp_path / "base"  # the names climb two levels from rec/: keep that in tmp_path
    project = base / "project"
    (project / "scenarios").mkdir(parents=True)
    (project / "pyproject.toml").touch()
    (project / "p.yaml").write_text("name: p\ninstructions: You help.\n")
    names = {"a.yaml": "../../escape", "b.yaml": "../../escape", "c.yaml": "/etc/cron.d/x"}
    for file, name in names.items():
        (project / "scenarios" / file).write_text(SCENARIO.format(name=name))
    rec = project / "rec"
    rec.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    (rec / "etc-cron.d-x.jsonl").symlink_to(outside)  # a link where c.yaml's recording goes
    before = snapshot(tmp_path)

    result = subprocess.run(
        [sys.executable, "-m", "runner", "test", "scenarios", "--record", "rec"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VLRUN_DOTENV": "none"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 scenario(s): 3 passed, 0 failed" in result.stdout
    # each scenario has its own recording, named after it, in rec/
    assert sorted(p.name for p in rec.iterdir()) == [
        "escape-2.jsonl",
        "escape.jsonl",
        "etc-cron.d-x.jsonl",
    ]
    assert all(p.is_file() and not p.is_symlink() for p in rec.iterdir())
    assert '"session.updated"' in (rec / "escape.jsonl").read_text()
    # nothing outside rec/ was written: no escape file up the tree, the link's target intact
    after = snapshot(tmp_path)
    changed = {
        k for k in after if before.get(k) != after[k] and not k.startswith("base/project/rec/")
    }
    assert changed == set(), changed
    assert outside.read_text() == "keep me\n"
    assert {p.parent for p in tmp_path.rglob("escape*")} == {rec}


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("../../x", "x"),
        ("weather: asks for Paris", "weather-asks-for-Paris"),
        ("a/b\\c d", "a-b-c-d"),
        ("...", "fallback"),
        ("CON", "CON-scenario"),
        ("nul.txt", "nul.txt-scenario"),
        ("é" * 5 + "ok", "ok"),
        ("x" * 300, "x" * 100),
    ],
)
def test_record_names_are_plain_file_names(name: str, slug: str) -> None:
    from runner.scenarios.suite import record_name

    assert record_name(name, "fallback") == slug
