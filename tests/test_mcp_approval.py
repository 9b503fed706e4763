"""MCP approval when the profile's policy says "ask": a person answers at the console.

The real CLI (`python -m runner run … --text`) runs against the emulator with its standard
input and output on a pseudo-terminal, because the runner asks only when stdin is a terminal.
The typed turn names the MCP server's tool, so the emulator's built-in matching calls it and
asks for approval (docs/emulator.md, MCP). Without a terminal the runner denies on its own.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import MCP_APPROVAL_PROFILE

KEY = "mcp-approval-test-key-123456"
PROFILE = MCP_APPROVAL_PROFILE
REQUEST = "search the docs please"  # "search" and "docs" match the docs server's search_docs
PROMPT = 'approve MCP call docs.search_docs({"query": "search the docs please"})? [y/N]'
FOLLOW_UP = "thanks"
DEADLINE_S = 30.0  # for a whole session; a healthy one takes about a second


def _env(endpoint: str) -> dict[str, str]:
    """As tests/conftest.py's cli_env (a function-scoped fixture there, and these sessions are
    module-scoped): no Azure settings but ours, no .env, no sound devices."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.update(
        VLRUN_DOTENV="none",
        VLRUN_TOOLS_ENTRY_POINTS="0",
        PYTHONUNBUFFERED="1",
        PULSE_SERVER="unix:/nonexistent/vlrun-test-no-pulse",
        AZURE_VOICELIVE_ENDPOINT=endpoint,
        AZURE_VOICELIVE_API_KEY=KEY,
    )
    return env


def _args() -> list[str]:
    # --plain: this reads the terminal's bytes as lines; the drawn console's approval prompt is
    # tested in tests/test_console_tmux.py
    return ["run", "profile.yaml", "--text", "--plain", "--trace", "trace.jsonl", "--logs", "logs"]


class Terminal:
    """The CLI with stdin, stdout and stderr on one pseudo-terminal, as a person runs it."""

    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        master, slave = os.openpty()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runner", *_args()],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.fd = master
        self.deadline = time.monotonic() + DEADLINE_S
        self._raw = b""
        self._eof = False

    @property
    def text(self) -> str:
        """Everything shown so far (the terminal's \\r\\n as \\n; typed lines are echoed)."""
        return self._raw.decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def _read(self) -> None:
        """Wait for more output (up to the session's deadline) and keep it."""
        left = self.deadline - time.monotonic()
        ready = select.select([self.fd], [], [], max(0.0, left))[0] if left > 0 else []
        if not ready:
            raise AssertionError(f"no more output within {DEADLINE_S} s; so far:\n{self.text}")
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: every slave end is closed, the process has exited
            data = b""
        self._eof = not data
        self._raw += data

    def expect(self, pattern: str) -> re.Match[str]:
        """Read until the regular expression matches the output."""
        while (found := re.search(pattern, self.text, re.MULTILINE)) is None:
            if self._eof:
                raise AssertionError(f"ended without {pattern!r}; output:\n{self.text}")
            self._read()
        return found

    def quit(self) -> int:
        """Type q + Enter, read to the end of the output, return the exit code."""
        self.type("q")
        while not self._eof:
            self._read()
        return self.proc.wait(max(1.0, self.deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.fd)


@dataclass
class Run:
    """What one session left behind."""

    code: int
    console: str
    log: str  # the conversation log
    trace: list[dict[str, Any]]  # the --trace lines, in order

    def events(self, direction: str, kind: str) -> list[dict[str, Any]]:
        return [
            t["event"] for t in self.trace if t["dir"] == direction and t["event"]["type"] == kind
        ]

    def request_id(self) -> str:
        """The id of the one mcp_approval_request the service sent."""
        items = [e["item"] for e in self.events("in", "conversation.item.created")]
        requests = [i for i in items if i["type"] == "mcp_approval_request"]
        assert [(r["server_label"], r["name"]) for r in requests] == [("docs", "search_docs")]
        return str(requests[0]["id"])

    def approvals(self) -> list[dict[str, Any]]:
        """The mcp_approval_response items the runner sent."""
        items = [e["item"] for e in self.events("out", "conversation.item.create")]
        return [i for i in items if i["type"] == "mcp_approval_response"]

    def mcp_call_events(self) -> list[dict[str, Any]]:
        return [
            t["event"]
            for t in self.trace
            if t["dir"] == "in" and t["event"]["type"].startswith("response.mcp_call")
        ]


def _finish(folder: Path, code: int, console: str) -> Run:
    logs = list((folder / "logs").glob("*_conversation.log"))
    assert len(logs) == 1, logs
    trace = [json.loads(line) for line in (folder / "trace.jsonl").read_text().splitlines()]
    return Run(code, console, logs[0].read_text(), trace)


def _at_the_console(folder: Path, endpoint: str, answer: str, *, outcome: str) -> Run:
    """Ask for the tool, answer the approval question, see the turn go on to ``outcome``,
    type one more turn, wait, quit."""
    folder.mkdir()
    (folder / "profile.yaml").write_text(PROFILE)
    term = Terminal(folder, _env(endpoint))
    try:
        term.type(REQUEST)
        term.expect(re.escape(PROMPT) + "$")
        # The question is pending, so the next line is its answer, and the turn goes on.
        term.type(answer)
        term.expect(outcome)
        # Typed only now: on a terminal a line typed while the outcome is being said would
        # interrupt it, as speech does (tests/test_typed_barge_in.py), and whether the reply
        # had begun when the line came in is up to the machine's timing.
        term.type(FOLLOW_UP)
        term.expect(NEXT_TURN)
        code = term.quit()
    finally:
        term.close()
    return _finish(folder, code, term.text)


COMPLETED = r"^-- MCP call (\S+): completed$"
NOT_APPROVED = r"^assistant: \[emulator\] search_docs on docs failed: not approved$"
NEXT_TURN = rf"^you: {FOLLOW_UP}$"


@pytest.fixture(scope="module")
def emulator_endpoint() -> Iterator[str]:
    from runner.emulator import emulator_thread

    with emulator_thread(speed=0) as emu:
        yield emu.endpoint


@pytest.fixture(scope="module")
def approved(emulator_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("mcp") / "approved"
    return _at_the_console(folder, emulator_endpoint, "y", outcome=COMPLETED)


@pytest.fixture(scope="module")
def denied(emulator_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("mcp") / "denied"
    return _at_the_console(folder, emulator_endpoint, "n", outcome=NOT_APPROVED)


def test_y_at_the_console_approves_and_the_call_runs(approved: Run) -> None:
    assert approved.code == 0, approved.console
    assert approved.console.count(PROMPT) == 1
    assert "approval needs a person" not in approved.console
    assert re.search(r"^\[[\d:]+\] MCP docs\.search_docs: approve$", approved.log, re.M)
    request = approved.request_id()
    assert approved.approvals() == [
        {"type": "mcp_approval_response", "approval_request_id": request, "approve": True}
    ]
    # The call the person approved is the call that ran, and it completed. (Today it runs only
    # in the response to the follow-up turn: see test_the_answer_continues_the_turn.)
    done = [e["item"] for e in approved.events("in", "response.output_item.done")]
    calls = [i for i in done if i["type"] == "mcp_call"]
    assert [(c["name"], c["approval_request_id"], c["error"]) for c in calls] == [
        ("search_docs", request, None)
    ]
    completed = approved.events("in", "response.mcp_call.completed")
    assert [e["item_id"] for e in completed] == [calls[0]["id"]]
    assert f"-- MCP call {calls[0]['id']}: completed" in approved.console.splitlines()
    assert KEY not in approved.console + approved.log


def test_n_at_the_console_denies_and_the_call_does_not_run(denied: Run) -> None:
    assert denied.code == 0, denied.console
    assert denied.console.count(PROMPT) == 1
    assert re.search(r"^\[[\d:]+\] MCP docs\.search_docs: deny$", denied.log, re.M)
    assert denied.approvals() == [
        {
            "type": "mcp_approval_response",
            "approval_request_id": denied.request_id(),
            "approve": False,
        }
    ]
    # Had it been approved, the follow-up turn's response would have run the call instead.
    assert denied.mcp_call_events() == []
    assert "-- MCP call" not in denied.console
    assert "assistant: [emulator] search_docs on docs failed: not approved" in denied.log


@pytest.mark.parametrize("case", ["approved", "denied"])
def test_the_answer_continues_the_turn(case: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(case)
    out = [t["event"] for t in run.trace if t["dir"] == "out"]
    answered = next(
        i for i, e in enumerate(out) if e.get("item", {}).get("type") == "mcp_approval_response"
    )
    following = [
        e["type"] if e["type"] == "response.create" else e["item"]["type"]
        for e in out[answered + 1 :]
        if e["type"] == "response.create" or e.get("item", {}).get("type") == "message"
    ]
    # Before the user's next typed turn, the runner asks the service to go on.
    assert following[:1] == ["response.create"], following


def test_without_a_terminal_the_call_is_denied(emulator_endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "profile.yaml").write_text(PROFILE)
    result = subprocess.run(
        [sys.executable, "-m", "runner", *_args()],
        input=REQUEST + "\n",  # then end of input: the run ends after the reply
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(emulator_endpoint),
        timeout=DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr
    assert "-- MCP docs.search_docs: approval needs a person; denied" in result.stderr.splitlines()
    assert "approve MCP call" not in result.stdout + result.stderr
    run = _finish(tmp_path, result.returncode, result.stdout + result.stderr)
    assert re.search(r"^\[[\d:]+\] MCP docs\.search_docs: deny$", run.log, re.M)
    assert run.approvals() == [
        {"type": "mcp_approval_response", "approval_request_id": run.request_id(), "approve": False}
    ]
    assert run.mcp_call_events() == []
