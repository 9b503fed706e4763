"""The docs and the code say the same thing: exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner import errors

ROOT = Path(__file__).resolve().parents[1]


def _table_codes(path: Path, heading: str) -> dict[int, str]:
    """The `| code | meaning |` rows under ``heading`` in a Markdown file."""
    text = path.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return {
        int(m.group(1)): m.group(2).strip()
        for m in re.finditer(r"^\|\s*(\d+)\s*\|(.*)\|\s*$", section, flags=re.MULTILINE)
    }


def _constants() -> dict[int, str]:
    return {v: k for k, v in vars(errors).items() if k.startswith("EXIT_") and isinstance(v, int)}


@pytest.mark.parametrize(
    ("doc", "heading"), [("README.md", "### Exit codes"), ("docs/runner.md", "## Exit codes")]
)
def test_every_exit_code_in_the_docs_is_a_constant_and_every_constant_is_documented(
    doc: str, heading: str
) -> None:
    documented = _table_codes(ROOT / doc, heading)
    assert set(documented) == set(_constants()), (doc, sorted(documented), _constants())


def test_the_documented_ctrl_c_codes_match_exit_code_for() -> None:
    readme = _table_codes(ROOT / "README.md", "### Exit codes")
    assert errors.exit_code_for(KeyboardInterrupt()) == errors.EXIT_INTERRUPTED
    assert "Ctrl+C" in readme[errors.EXIT_INTERRUPTED]
    assert "Ctrl+C" in readme[errors.EXIT_OK]  # a conversation ended with Ctrl+C is a success
