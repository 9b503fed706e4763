"""`vlrun check`: the invalid corpus, output formats, exit codes, path expansion, file kinds.

Each folder under data/profiles/invalid holds ``profile.yaml`` (and any files it refers to)
and ``expected.txt``: the exact stdout of ``vlrun check profile.yaml`` run in that folder.
Every case must exit 1 and name a line; none may print a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.cli import main
from runner.config import check as check_cmd
from runner.errors import Problem
from runner.redact import forget_secrets

ROOT = Path(__file__).resolve().parents[1]
INVALID = Path(__file__).parent / "data" / "profiles" / "invalid"
CASES = sorted(p.name for p in INVALID.iterdir() if (p / "profile.yaml").is_file())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("VLRUN_TEST_")]:
        monkeypatch.delenv(key)
    forget_secrets()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_corpus_covers_enough_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", CASES)
def test_invalid_profile_output_is_exact(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = INVALID / name
    monkeypatch.chdir(case)
    started = time.perf_counter()
    code, out, err = run(["check", "profile.yaml"], capsys)
    elapsed = time.perf_counter() - started
    assert code == 1, out + err
    assert out == (case / "expected.txt").read_text()
    first = out.splitlines()[0]
    # every problem names a file and a line
    assert first.split(":")[1].isdigit(), first
    assert "Traceback" not in out + err
    assert elapsed < 10  # bounded: alias bombs and recursion are cut off, not endured


# A handful through a real process: the installed entry point, no in-process shortcuts.
SUBPROCESS_CASES = [
    "yaml-unclosed-flow",
    "non-utf8",
    "python-object-apply-tag",
    "alias-bomb",
    "sandbox-class-escape",
    "extends-cycle",
    "several-errors",
    "tool-drift",
]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_invalid_profile_in_subprocess(name: str) -> None:
    case = INVALID / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLRUN_TEST_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "check", "profile.yaml"],
        cwd=case,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == (case / "expected.txt").read_text()
    assert "Traceback" not in proc.stderr
    assert "1 invalid" in proc.stderr


def test_python_tag_constructs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    profile = tmp_path / "p.yaml"
    profile.write_text(
        f"name: t\ninstructions: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    code, out, _ = run(["check", str(profile)], capsys)
    assert code == 1
    assert not marker.exists()
    assert "!!python/object/apply:os.system is not allowed" in out


def test_huge_file_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: t\ninstructions: |\n" + ("  " + "x" * 100 + "\n") * 20_000)
    started = time.perf_counter()
    code, out, _ = run(["check", str(big)], capsys)
    assert code == 1
    assert "file is too large" in out
    assert time.perf_counter() - started < 5


def test_deep_nesting_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: t\nsession: " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = run(["check", str(deep)], capsys)
    assert code == 1
    assert "Traceback" not in out + err
    assert f"{deep}:" in out


def test_shipped_profiles_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["check", str(ROOT / "profiles")], capsys)
    assert code == 0, out
    assert "error" not in out
    assert "0 invalid" in err


def test_reports_every_file_and_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nvoise: alloy\ntemperature: 9\n")
    (tmp_path / "b.yaml").write_text("name: b\nvoice: alloy\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yml").write_text("name: c\nturn_detection: server_vda\n")
    code, out, err = run(["check", str(tmp_path)], capsys)
    assert code == 1
    lines = [ln for ln in out.splitlines() if ": error:" in ln]
    assert [ln.split(":")[0] for ln in lines] == [str(tmp_path / "a.yaml")] * 2 + [
        str(tmp_path / "sub" / "c.yml")
    ]
    assert "checked 3 file(s): 2 invalid, 3 error(s)" in err


def test_glob_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.yaml").write_text("name: ok\n")
    (tmp_path / "bad.yaml").write_text("name: bad\ntemperature: x\n")
    code, _, err = run(["check", str(tmp_path / "o*.yaml")], capsys)
    assert code == 0 and "checked 1 file(s)" in err
    code, out, _ = run(["check", str(tmp_path / "*.yaml")], capsys)
    assert code == 1 and "bad.yaml:2:14" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "does-not-exist.yaml"],
        ["check", "nothing-*.yaml"],
        ["check", "--format", "xml", "x.yaml"],
        ["check"],
    ],
)
def test_usage_errors_exit_2(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == 2
    assert "Traceback" not in out + err


def test_unknown_var_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nvars:\n  persona: pirate\ninstructions: '{{ persona }}'\n")
    code, _, err = run(["check", str(p), "--var", "persno=robot"], capsys)
    assert code == 2
    assert "did you mean `persona`?" in err


def test_json_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nvoise: alloy\n")
    code, out, _ = run(["check", "--format", "json", str(p)], capsys)
    assert code == 1
    data = json.loads(out)
    (entry,) = data["files"]
    assert entry["valid"] is False
    (problem,) = entry["problems"]
    assert (problem["line"], problem["col"], problem["json_path"]) == (2, 1, "$.voise")
    assert problem["hint"] == "did you mean `voice`?"


def test_github_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: t\ntemperature: 4\n")
    code, out, _ = run(["check", "--format", "github", str(p)], capsys)
    assert code == 1
    assert out.startswith(f"::error file={p},line=2,col=14::4 is out of range")


def test_warnings_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nsession:\n  flux: 1\n  modalities: [text]\n")
    code, out, _ = run(["check", str(p)], capsys)
    assert code == 0
    assert out == (
        f"{p}:3:3: warning: session field 'flux' is not known to the SDK; sent as is"
        " (at $.session.flux)\n"
    )


def test_api_version_option_rechecks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nmcp_servers:\n  - {label: d, url: 'https://x.example'}\n")
    assert run(["check", str(p)], capsys)[0] == 0
    code, out, _ = run(["check", str(p), "--api-version", "2025-10-01"], capsys)
    assert code == 1 and "MCP servers need api_version 2026-04-10" in out


def test_secret_header_value_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "sk-very-secret-value-123"
    monkeypatch.setenv("VLRUN_TEST_TOKEN", secret)
    p = tmp_path / "p.yaml"
    # the url carries the secret too, so an error message quoting it would leak
    p.write_text(
        "name: t\nmcp_servers:\n  - label: d\n    url: 'https://x.example'\n"
        "    headers: {Authorization: '${env:VLRUN_TEST_TOKEN}'}\n"
        "    allowed_tools: '${env:VLRUN_TEST_TOKEN}'\n"
    )
    code, out, err = run(["check", str(p)], capsys)
    assert code == 1
    assert secret not in out + err
    assert "***" in out


def test_file_kind_registry_routes_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Path] = []

    def validate(path: Path, options: check_cmd.CheckOptions) -> list[Problem]:
        seen.append(path)
        return [Problem(str(path), 1, 1, "error", "custom kind says no")]

    monkeypatch.setattr(check_cmd, "KINDS", list(check_cmd.KINDS))
    check_cmd.register_kind(check_cmd.FileKind("thing", lambda p, head: "thing:" in head, validate))
    assert [k.name for k in check_cmd.KINDS][-1] == "profile"
    (tmp_path / "x.yaml").write_text("thing: 1\n")
    (tmp_path / "y.yaml").write_text("name: y\n")
    code, out, _ = run(["check", str(tmp_path)], capsys)
    assert code == 1
    assert seen == [tmp_path / "x.yaml"]
    assert out == f"{tmp_path / 'x.yaml'}:1:1: error: custom kind says no\n"


def test_unavailable_kind_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(check_cmd, "KINDS", list(check_cmd.KINDS))
    check_cmd.register_kind(
        check_cmd.FileKind("later", lambda p, head: True, "runner.not_built_yet:check_file")
    )
    (tmp_path / "x.yaml").write_text("anything: 1\n")
    code, out, _ = run(["check", str(tmp_path / "x.yaml")], capsys)
    assert code == 0
    assert "later files cannot be checked by this vlrun yet" in out


def test_every_schema_pattern_is_explained_in_words() -> None:
    from runner.config.validate import _PATTERN_RULES, schema

    found: set[str] = set()

    def walk(node: object, under_names: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and not under_names:
                    found.add(value)
                walk(value, under_names or key == "propertyNames")
        elif isinstance(node, list):
            for item in node:
                walk(item, under_names)

    walk(schema(), False)
    assert found and found <= set(_PATTERN_RULES)


@pytest.mark.parametrize("layout", ["empty", "only_other_files", "hidden_yaml_only"])
def test_a_path_with_nothing_checkable_is_a_usage_error(
    tmp_path: Path, layout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if layout == "only_other_files":
        (tmp_path / "notes.txt").write_text("name: x\n")
    elif layout == "hidden_yaml_only":
        (tmp_path / ".hidden").mkdir()
        (tmp_path / ".hidden" / "p.yaml").write_text("name: x\n")
    code, _, err = run(["check", str(tmp_path)], capsys)
    assert code == 2
    assert "nothing to check" in err and "Traceback" not in err
