"""Issue 29 item 8: the azure-realtime-native version gate and the emulator doc's interim claim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.config.compile import compile_with_problems
from runner.config.load import load_profile

ROOT = Path(__file__).resolve().parents[1]

NATIVE = """name: t
connection:
  api_version: {version}
  model: azure-realtime
voice:
  type: azure-realtime-native
  name: ava
"""


def _errors(tmp_path: Path, version: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(NATIVE.format(version=version))
    _, problems, _ = compile_with_problems(load_profile(path, env={}))
    return [p.message for p in problems if p.severity == "error"]


# source: REF 2026-06-01-preview "What's new": the voice type is new on top of 2026-04-10.
@pytest.mark.parametrize("version", ["2026-01-01-preview", "2026-04-10"])
def test_native_voices_refused_before_2026_06_01_preview(tmp_path: Path, version: str) -> None:
    errors = _errors(tmp_path, version)
    assert errors == [
        "azure-realtime-native voices need api_version 2026-06-01-preview or later "
        f"(target: {version})"
    ]


@pytest.mark.parametrize("version", ["2026-06-01-preview", "2026-07-15", "2026-07-31-preview"])
def test_native_voices_accepted_from_2026_06_01_preview(tmp_path: Path, version: str) -> None:
    assert _errors(tmp_path, version) == []


def test_profiles_doc_gates_native_voices_where_the_code_does() -> None:
    from runner.config.compile import MIN_VERSION

    doc = (ROOT / "docs" / "profiles.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `azure-realtime-native`"))
    assert row.split("|")[2].strip().startswith(MIN_VERSION["azure-realtime-native"])


def test_emulator_doc_does_not_call_interim_responses_unemulated() -> None:
    doc = (ROOT / "docs" / "emulator.md").read_text()
    not_emulated = re.search(r"\*\*Not emulated\.\*\*(.*?)\n\n", doc, re.S)
    assert not_emulated is not None
    assert "interim_response" not in not_emulated.group(1)
    # The emulated behaviour the doc describes exists in the emulator.
    assert "**Interim responses**" in doc
    assert "INTERIM_LLM_TEXT" in (ROOT / "runner" / "emulator" / "responses.py").read_text()
