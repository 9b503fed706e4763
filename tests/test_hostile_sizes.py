"""Sizes are bounded: a huge tool result becomes a `result_too_large` error the model can act on
(before, a 10 MB result dropped the socket and the answer was lost)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.plugins import Registry, ToolContext
from runner.plugins._dispatch import MAX_RESULT_BYTES

TOOLS = """\
from runner.plugins import tool


@tool
def big(n: int) -> str:
    \"\"\"Return n characters.\"\"\"
    return "é" * n


@tool
async def many(n: int) -> list:
    \"\"\"Return n items.\"\"\"
    return list(range(n))
"""


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    (tmp_path / "t.py").write_text(TOOLS)
    return Registry.discover([tmp_path], entry_points=False)


@pytest.mark.parametrize(
    ("name", "n"),
    [("big", MAX_RESULT_BYTES), ("big", 10_000_000), ("many", 2_000_000)],
)
async def test_a_result_over_the_limit_is_an_error_result(
    registry: Registry, name: str, n: int
) -> None:
    result = await registry.dispatch(
        name, "call_1", json.dumps({"n": n}), context=ToolContext(call_id="call_1"), timeout_s=30
    )
    assert not result.ok
    error = json.loads(result.output)["error"]
    assert error["type"] == "result_too_large"
    assert str(MAX_RESULT_BYTES) in error["message"]
    assert len(result.output) < 1000


async def test_a_result_at_the_limit_goes_through(registry: Registry) -> None:
    # "é" is two bytes in UTF-8 and the JSON string adds two quotes
    n = (MAX_RESULT_BYTES - 2) // 2
    result = await registry.dispatch(
        "big", "call_2", json.dumps({"n": n}), context=ToolContext(call_id="call_2"), timeout_s=30
    )
    assert result.ok and len(result.output.encode()) == MAX_RESULT_BYTES


def test_a_typed_turn_over_the_limit_is_refused_with_a_line_and_the_session_goes_on(
    emulator_in_thread: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from runner.cli import cli
    from runner.live.inputs import MAX_TYPED_CHARS

    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emulator_in_thread.endpoint)  # type: ignore[attr-defined]
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "k")
    huge = "x" * (MAX_TYPED_CHARS + 1)
    result = CliRunner().invoke(
        cli,
        ["run", "profiles/casual-chat.yaml", "--text", "--logs", "-"],
        input=f"{huge}\nhello\nq\n",
        standalone_mode=False,
    )
    assert result.return_value == 0, result.output[-2000:]
    assert f"over the {MAX_TYPED_CHARS}-character limit; not sent" in result.output
    assert "You said: hello" in result.output and huge not in result.output
