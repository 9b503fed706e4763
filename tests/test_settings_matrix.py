"""Every profile setting, run live: a one-setting profile through the real CLI, SDK and emulator.

The entries are in tests/settings_matrix.py. Each asserts the setting's effect on the wire (what
the emulator received) and, where a user would see one, on the console or in the logs. A schema
leaf without an entry fails here, and so does docs/profiles.md when its table drifts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import settings_matrix as m  # noqa: E402

from runner.cli import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MISSING = object()


def test_every_schema_leaf_has_an_entry_and_every_entry_a_leaf() -> None:
    leaves, entries = m.schema_leaves(), set(m.by_leaf())
    assert len(entries) == len(m.MATRIX), "a leaf has two entries"
    assert sorted(leaves - entries) == [], "schema fields with no live test in the matrix"
    assert sorted(entries - leaves) == [], "matrix entries for fields the schema does not have"


def test_the_leaf_walk_finds_scalar_and_object_forms() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "object"], "properties": {"b": {"type": "integer"}}},
            "c": {"type": "array", "items": {"type": "object", "properties": {"d": {}}}},
            "e": {"type": "object"},
        },
    }
    assert m.schema_leaves(schema) == {"a", "a.b", "c[].d", "e"}


def test_docs_table_is_generated_from_the_matrix() -> None:
    doc = (ROOT / "docs" / "profiles.md").read_text()
    table = "\n".join(m.markdown())
    assert table in doc, "regenerate with: .venv/bin/python tests/settings_matrix.py --write"


def test_deeper_tests_named_by_the_matrix_exist() -> None:
    for s in m.ALL:
        if not s.covered_by:
            continue
        file, _, name = s.covered_by.partition("::")
        path = ROOT / file
        assert path.is_file(), f"{s.leaf}: {file} does not exist"
        if name:
            assert f"def {name}(" in path.read_text(), f"{s.leaf}: no test {name} in {file}"


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return MISSING
    return data


def test_every_value_row_names_a_leaf_and_one_of_its_values() -> None:
    for s in m.VALUES:
        leaf, _, value = s.leaf.partition(": ")
        assert leaf in m.by_leaf(), f"{s.leaf}: no such leaf"
        assert value and value in s.yaml, f"{s.leaf}: the profile does not set {value!r}"


@pytest.mark.parametrize("setting", m.ALL, ids=lambda s: s.leaf)
def test_setting_works_live(
    setting: m.Setting,
    emulator_in_thread: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for rel, text in m.FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "p.yaml").write_text(setting.profile())
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emulator_in_thread.endpoint)
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "matrix-key-0000")
    monkeypatch.setenv("MATRIX_TOKEN", m.SECRET)
    if setting.leaf == "connection.endpoint":  # only the profile's endpoint leads to the emulator
        monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", "http://127.0.0.1:9/unused")
        monkeypatch.setenv("MATRIX_ENDPOINT", emulator_in_thread.endpoint)
    logs = tmp_path / "logs"
    if setting.audio:  # spoken: a typed turn has no event on some sessions (GPT-Live, client)
        mode, stdin = ["--input", str(ROOT / "tests/scenarios/audio/time-in-tokyo.wav")], ""
    else:
        mode, stdin = ["--text"], f"{setting.say}\nq\n"
    result = CliRunner().invoke(
        cli,
        ["run", str(tmp_path / "p.yaml"), *mode, "--logs", str(logs)],
        input=stdin,
        standalone_mode=False,
    )
    assert result.return_value == 0, result.output
    records = emulator_in_thread.sessions
    assert len(records) == setting.connections, [r.query for r in records]
    record = records[0]
    # a Voice Live session.update, or GPT-Live's session.start (docs/gpt-live.md)
    updates = [
        e["session"] for e in record.received if e["type"] in ("session.update", "session.start")
    ]
    assert updates, "no session.update reached the emulator"
    errors = [e for e in record.sent if e["type"] == "error"]
    assert errors == [], f"the emulator refused something: {errors}"
    shown = result.output + "".join(p.read_text() for p in sorted(logs.iterdir()))
    sent = [json.dumps(e) for e in record.received]
    for check in setting.checks:
        # the query of the last connection: a hand-over's agent is on the second one
        on = records[-1] if check.kind == "query" else record
        _assert(check, updates[0], on, sent, shown)


def _assert(
    check: m.Check, session: dict[str, Any], record: Any, sent: list[str], shown: str
) -> None:
    kind, path, value = check.kind, check.path, check.value
    if kind == "session":
        assert _get(session, path) == value, f"session.{path}: {_get(session, path)!r}"
    elif kind == "absent":
        assert _get(session, path) is MISSING, f"session.{path} was sent"
    elif kind == "query":
        assert record.query.get(path) == value, record.query
    elif kind == "header":
        assert record.headers.get(path) == value, record.headers
    elif kind == "client":
        assert any(f'"type": "{path}"' in e and value in e for e in sent), (path, value)
    elif kind == "server":
        assert path in record.sent_types()
    elif kind == "no_server":
        assert path not in record.sent_types()
    elif kind == "seen":
        assert path in shown, shown
    elif kind == "unseen":
        assert path not in shown
    else:  # pragma: no cover - a typo in the matrix
        raise AssertionError(f"unknown check kind {kind}")
