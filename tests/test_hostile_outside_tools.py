"""Hostile tools inside a conversation (issue 25, "Also outside serve"): a tool that calls
sys.exit() or raises KeyboardInterrupt, and a sync tool that hangs past the scenario's own
turn timeout. Each runs through the real `vlrun test` against the embedded emulator: the tool's
misbehaviour is that tool's failed result, and the conversation goes on to its next turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

TOOLS = '''\
import sys
import threading

from runner.plugins import tool

RELEASE = threading.Event()  # never set: the hung tool waits on it for good


@tool
def exits() -> str:
    """Calls sys.exit(3)."""
    sys.exit(3)


@tool
async def exits_async() -> str:
    """Calls sys.exit(0) on the event loop."""
    sys.exit(0)


@tool
def interrupts() -> str:
    """Raises KeyboardInterrupt on its worker thread."""
    raise KeyboardInterrupt


@tool
async def interrupts_async() -> str:
    """Raises KeyboardInterrupt on the event loop."""
    raise KeyboardInterrupt


@tool
def hangs() -> str:
    """Never returns."""
    RELEASE.wait()
    return "never"
'''

PROFILE = """\
name: hostile-tools
instructions: You help.
tools:
  - name: exits
  - name: exits_async
  - name: interrupts
  - name: interrupts_async
  - name: hangs
    timeout_s: {hang_timeout}
"""

SCENARIO = """\
scenario: {tool} fails, the conversation goes on
profile: ../p.yaml
timeout_s: {turn_timeout}
model:
  turns:
    - match: use the tool
      tools: [{{name: {tool}, arguments: {{}}}}]
      then: The tool did not work.
    - match: hello
      say: Hi there, still here.
turns:
  - user: please use the tool
    expect:
      tools: [{{name: {tool}}}]
      reply_contains: did not work
  - user: hello
    expect:
      reply_contains: still here
"""


def vlrun_test(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "test", "-v", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VLRUN_DOTENV": "none",
            "VLRUN_TOOLS_ENTRY_POINTS": "0",
        },
    )


def project(
    tmp_path: Path, tool: str, *, hang_timeout: float = 5, turn_timeout: float = 30
) -> Path:
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "hostile.py").write_text(TOOLS)
    (tmp_path / "p.yaml").write_text(PROFILE.format(hang_timeout=hang_timeout))
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text(
        SCENARIO.format(tool=tool, turn_timeout=turn_timeout)
    )
    return tmp_path


@pytest.mark.parametrize(
    ("tool", "said"),
    [
        ("exits", "called sys.exit(3)"),
        ("exits_async", "called sys.exit(0)"),
        ("interrupts", "raised KeyboardInterrupt"),
        ("interrupts_async", "raised KeyboardInterrupt"),
    ],
)
def test_a_tool_that_exits_or_interrupts_is_its_own_failed_call(
    tmp_path: Path, tool: str, said: str
) -> None:
    # Before: sys.exit(3) in a tool ended `vlrun test` with exit 3, sys.exit(0) with a silent
    # exit 0 and no summary, KeyboardInterrupt with 130 ("aborted").
    result = vlrun_test(project(tmp_path, tool), "scenarios/s.yaml")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"[tool] {tool} failed: The tool '{tool}' {said}" in result.stdout, out
    assert "assistant: Hi there, still here." in result.stdout, out  # the next turn ran
    assert "1 scenario(s): 1 passed, 0 failed" in result.stdout, out
    assert "Traceback" not in out and "aborted" not in out


def test_a_hung_sync_tool_times_out_as_its_binding_says_and_the_scenario_goes_on(
    tmp_path: Path,
) -> None:
    # The tool's timeout_s (4 s) is longer than the turn's (2 s). Before: the turn failed
    # "no complete reply within 2 s" and the scenario stopped there. Now a tool's running time
    # (up to its own timeout) is not the turn's: the call times out, the model hears so, and
    # the next turn runs.
    result = vlrun_test(
        project(tmp_path, "hangs", hang_timeout=4, turn_timeout=2), "scenarios/s.yaml"
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "[tool] hangs failed: The tool 'hangs' did not finish within 4 s" in result.stdout, out
    assert "assistant: Hi there, still here." in result.stdout, out
    assert "no complete reply" not in out
