"""Golden tests: every folder under data/profiles/valid compiles to its expected.json.

A case is ``profile.yaml`` (+ any base profiles, templates, ``tools/`` plugins next to it),
optional ``args.json`` ({"vars", "sets", "env", "api_version"}) and ``expected.json``: the
exact session.update event. The same cases must pass `vlrun check` with no errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.config.compile import compile_session
from runner.config.load import load_profile

VALID = Path(__file__).parent / "data" / "profiles" / "valid"
CASES = sorted(p.name for p in VALID.iterdir() if (p / "profile.yaml").is_file())


def case_args(case: Path) -> dict[str, Any]:
    path = case / "args.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def case_env(args: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLRUN_TEST_")}
    env.update(args.get("env", {}))
    return env


def compile_case(case: Path) -> dict[str, Any]:
    args = case_args(case)
    profile = load_profile(
        case / "profile.yaml",
        vars=args.get("vars", {}),
        sets=args.get("sets", []),
        env=case_env(args),
    )
    schemas = None
    if (case / "tools").is_dir():
        from runner.plugins import Registry

        schemas = Registry.discover([case / "tools"], entry_points=False).schemas()
    return compile_session(profile, api_version=args.get("api_version"), tool_schemas=schemas)


def test_corpus_is_not_empty() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", CASES)
def test_valid_profile_compiles_to_golden_payload(name: str) -> None:
    case = VALID / name
    expected = json.loads((case / "expected.json").read_text())
    payload = compile_case(case)
    assert payload == expected
    # stable key order too: the golden file is the committed serialisation
    assert list(payload["session"]) == list(expected["session"])


@pytest.mark.parametrize("name", CASES)
def test_valid_profile_passes_check(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = VALID / name
    args = case_args(case)
    for key in [k for k in os.environ if k.startswith("VLRUN_TEST_")]:
        monkeypatch.delenv(key)
    for key, value in args.get("env", {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(case)
    argv = ["check", "profile.yaml"]
    for k, v in args.get("vars", {}).items():
        argv += ["--var", f"{k}={v}"]
    for s in args.get("sets", []):
        argv += ["--set", s]
    if args.get("api_version"):
        argv += ["--api-version", args["api_version"]]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    assert ": error:" not in out
