"""`vlrun flow`, `vlrun explain` and `vlrun compile --node` on flows, and scenarios that
expect a node path: real CLI runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["reservation", "helpdesk"])
def test_the_drawings_in_the_docs_are_those_of_the_shipped_profiles(name: str) -> None:
    proc = run_cli("flow", f"profiles/{name}.yaml", "--format", "dot")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "docs" / "flows" / f"{name}.dot").read_text()


def test_dot_output_is_a_graph_graphviz_reads(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("graphviz is not installed (apt-get install graphviz)")
    proc = run_cli("flow", "profiles/helpdesk.yaml", "--format", "dot")
    svg = subprocess.run(["dot", "-Tsvg"], input=proc.stdout, capture_output=True, text=True)
    assert svg.returncode == 0, svg.stderr
    for node in ("triage", "verify", "check", "solve", "escalate", "locked"):
        assert f">{node}</text>" in svg.stdout


def test_mermaid_names_every_node_and_condition_even_reserved_words(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: words\ninstructions: x\nflow:\n  start: graph\n  nodes:\n"
        "    graph:\n      collect: {n: {type: integer}}\n"
        '      transitions: [{to: end, when: "n > 2"}, {to: subgraph}]\n'
        "    subgraph: {transitions: [{to: end}]}\n    end: {end: true}\n"
    )
    proc = run_cli("flow", str(tmp_path / "p.yaml"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "  start_((start)) --> n_graph" in lines
    assert '  n_graph["graph<br/>n"]' in lines and '  n_end(["end"])' in lines
    assert '  n_graph -- "n > 2" --> n_end' in lines and "  n_graph --> n_subgraph" in lines


def test_flow_of_a_profile_without_one_says_how_to_add_it() -> None:
    proc = run_cli("flow", "profiles/weather.yaml")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "has no flow" in proc.stderr and "docs/flows.md" in proc.stderr


def test_explain_shows_each_node_with_its_line() -> None:
    proc = run_cli("explain", "profiles/reservation.yaml")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("  ")[0]: line for line in proc.stdout.splitlines()}
    assert "profiles/reservation.yaml:20" in rows["flow.collect (start)"]
    assert '["book_table", "record_book"]' in rows["flow.book.tools"]
    assert '"when party_size > 8"' in rows["flow.collect -> large_party"]
    assert "<party_size>" in rows["flow.confirm"]


def test_compile_node_prints_that_nodes_whole_session() -> None:
    proc = run_cli("compile", "profiles/reservation.yaml", "--node", "book")
    assert proc.returncode == 0, proc.stderr
    session = json.loads(proc.stdout)["session"]
    assert session["voice"]["name"] == "en-US-AvaNeural"  # whole: the profile's fields too
    assert session["instructions"].endswith(
        "Book the table with book_table now, then call record_book with the reference it\nreturns."
    )
    record = session["tools"][-1]
    assert record["name"] == "record_book"
    assert record["parameters"]["required"] == ["reference"]
    wrong = run_cli("compile", "profiles/reservation.yaml", "--node", "bok")
    assert wrong.returncode == 2 and "did you mean `book`?" in wrong.stderr


def _project_copy(tmp: Path, old: str, new: str) -> tuple[Path, str]:
    """The reservation profile, its tool and its scenario (edited) in a project of their own."""
    (tmp / ".vlrun").write_text("")  # marks the project root
    for rel in ("profiles/reservation.yaml", "profiles/base.yaml", "tools/book_table.py"):
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp / rel)
    text = (ROOT / "tests" / "scenarios" / "reservation.yaml").read_text().replace(old, new)
    scenario = tmp / "tests" / "scenarios" / "s.yaml"
    scenario.parent.mkdir(parents=True)
    scenario.write_text(text)
    return scenario, text


def test_a_scenario_expecting_the_wrong_node_fails_at_its_line(tmp_path: Path) -> None:
    scenario, text = _project_copy(tmp_path, "flow: {node: book}", "flow: {node: booked}")
    proc = run_cli("test", str(scenario), env={"XDG_STATE_HOME": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "node: booked" in t)
    assert f"s.yaml:{line}" in proc.stdout
    assert "expected the flow in node 'booked'; it is in 'book'" in proc.stdout


def test_a_scenario_naming_an_unknown_node_is_invalid(tmp_path: Path) -> None:
    scenario, _ = _project_copy(tmp_path, "flow: {node: book}", "flow: {node: nowhere}")
    proc = run_cli("check", str(scenario))
    assert proc.returncode == 1
    assert "expects the flow node 'nowhere', which the profile does not have" in proc.stdout
