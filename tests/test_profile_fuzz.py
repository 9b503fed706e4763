"""Property tests: whatever the text, loading and compiling fail only with VlrunError.

A user mistake must never surface as a traceback, so arbitrary text, arbitrary YAML data
and random mutations of the shipped profiles may produce problems, never other exceptions.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.config.check import CheckOptions, check_profile
from runner.config.compile import compile_with_problems
from runner.config.load import analyse
from runner.errors import Problem, VlrunError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "profiles").glob("*.yaml"))
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(ROOT / "profiles" / "base.yaml", folder / "base.yaml")
        yield folder


def exercise(folder: Path, text: str | bytes) -> list[Problem]:
    path = folder / "fuzz.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        profile, problems = analyse(path, env={"AZURE_VOICELIVE_ENDPOINT": "https://x.example"})
        if profile is not None:
            _, more, _ = compile_with_problems(profile)
            problems = problems + more
    except VlrunError:
        return []
    for p in problems:
        assert isinstance(p, Problem)
        assert p.file and p.message
    return problems


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(workdir: Path, text: str) -> None:
    exercise(workdir, text.encode("utf-8", errors="replace"))


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(workdir: Path, data: bytes) -> None:
    exercise(workdir, data)


KEYS = st.sampled_from(
    [
        "name",
        "voice",
        "turn_detection",
        "type",
        "threshold",
        "tools",
        "audio",
        "extends",
        "vars",
        "instructions",
        "session",
        "connection",
        "agent",
        "mcp_servers",
        "greeting",
        "modalities",
        "echo_cancellation",
        "file",
        "end_of_utterance_detection",
        "timeout",
        "label",
        "url",
        "headers",
        "x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "${env:X}",
            "${env:Y:-1}",
            "{{ v }}",
            "manual",
            "alloy",
            "base.yaml",
            "../x.yaml",
            "{% for %}",
            "server_vad",
        ]
    ),
)
DATA = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=25,
)


@FUZZ
@given(st.dictionaries(KEYS, DATA, max_size=8))
def test_arbitrary_yaml_data(workdir: Path, data: dict) -> None:
    exercise(workdir, yaml.safe_dump(data, allow_unicode=True))


@st.composite
def mutated_profile(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SHIPPED)).read_text()
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "truncate", "indent"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=30)) + "\n")
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            lines[i] = draw(st.sampled_from([" ", "  ", "\t", "- "])) + lines[i]
    return "".join(lines)


@FUZZ
@given(mutated_profile())
def test_mutated_shipped_profiles(workdir: Path, text: str) -> None:
    exercise(workdir, text)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutated_profile())
def test_mutated_profiles_through_check(workdir: Path, text: str) -> None:
    path = workdir / "checked.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        problems = check_profile(path, CheckOptions(env={}))
    except VlrunError:
        return
    assert all(isinstance(p, Problem) for p in problems)
