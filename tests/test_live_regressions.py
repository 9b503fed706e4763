"""The nine findings of issue 12 (review of commit a492d98), one or more tests each.

Every test here failed on that commit; each says what it saw there. Most drive the real
LiveSession against the emulator in-process; those about the console or the process exit run
the real CLI in a subprocess (a pseudo-terminal where the runner must see a person).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import Faults, running_emulator
from runner.plugins import Registry, ToolContext, tool
from tests.helpers import MCP_APPROVAL_PROFILE
from tests.live_harness import (
    LiveMic,
    build,
    is_assistant,
    issued_calls,
    outputs,
    tone,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(90)


def _cli_env(endpoint: str, key: str = "regression-key-0123456789") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(
        VLRUN_DOTENV="none",
        VLRUN_TOOLS_ENTRY_POINTS="0",
        PYTHONUNBUFFERED="1",
        PULSE_SERVER="unix:/nonexistent/vlrun-test-no-pulse",
        AZURE_VOICELIVE_ENDPOINT=endpoint,
        AZURE_VOICELIVE_API_KEY=key,
    )
    return env


# ------------------------------------------------------------------------ 1. approval deadlock

MCP_PROFILE = MCP_APPROVAL_PROFILE
PROMPT = 'approve MCP call docs.search_docs({"query": "search the docs please"})? [y/N]'


class Terminal:
    """The CLI on a pseudo-terminal (the runner asks a person only when stdin is one)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], deadline_s: float) -> None:
        master, slave = os.openpty()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runner", *args],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self.fd = master
        self.deadline = time.monotonic() + deadline_s
        self.raw = b""
        self.eof = False

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def expect(self, pattern: str) -> None:
        while re.search(pattern, self.text, re.MULTILINE) is None:
            if self.eof:
                raise AssertionError(f"ended without {pattern!r}:\n{self.text}")
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {pattern!r} in time (deadlock?):\n{self.text}")
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            self.eof = not data
            self.raw += data

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.fd)


def test_a_line_typed_before_the_approval_prompt_does_not_deadlock(tmp_path: Path) -> None:
    # a492d98: the second line blocked the line reader on the approval task, which waited for
    # the `y` that the blocked reader would never read. Only Ctrl+C got out.
    from runner.emulator import emulator_thread

    (tmp_path / "profile.yaml").write_text(MCP_PROFILE)
    with emulator_thread(speed=0) as emu:
        term = Terminal(  # --plain: read as lines; the drawn console: test_console_tmux.py
            ["run", "profile.yaml", "--text", "--plain", "--logs", "logs"],
            tmp_path,
            _cli_env(emu.endpoint),
            20,
        )
        try:
            term.type("search the docs please")
            term.type("thanks")  # before the prompt has appeared
            term.expect(re.escape(PROMPT))
            term.type("y")
            term.expect(r"^-- MCP call \S+: completed$")
            term.expect(r"^you: thanks$")
            # the emulator reports an approved call's result in the next reply
            term.expect(r"^assistant: \[emulator\] search_docs on docs returned")
            term.type("q")
            assert term.proc.wait(10) == 0
        finally:
            term.close()


# ------------------------------------------------------------------- 2. tools that hold the exit

HANG_TOOLS = '''\
import time
from runner.plugins import tool

@tool
def hang_forever(city: str) -> str:
    """Hang forever looking a city up."""
    with open("started.fifo", "w") as fifo:  # tells the test that this thread runs
        fifo.write("running\\n")
    time.sleep(120)
    return "never"

@tool
def slow_lookup(city: str) -> str:
    """Slow lookup of a city, four seconds."""
    time.sleep(4)
    with open("slow.finished", "w") as done:  # only if the process outlived the tool
        done.write("finished\\n")
    return "late"
'''


def _tool_profile(tmp: Path, timeout_s: float) -> None:
    (tmp / "tools").mkdir()
    (tmp / "tools" / "hang.py").write_text(HANG_TOOLS)
    (tmp / "profile.yaml").write_text(
        f"name: hang\ntools: [hang_forever, slow_lookup]\ntool_timeout_s: {timeout_s}\n"
    )


def _popen(tmp: Path, endpoint: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "profile.yaml", "--text", "--logs", "logs"],
        cwd=tmp,
        env=_cli_env(endpoint),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 20) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([proc.stdout], [], [], left)[0], seen
        line = proc.stdout.readline()
        assert line, seen
        seen += line
    return seen


def test_q_ends_the_process_with_a_hung_tool(tmp_path: Path) -> None:
    # a492d98: q waited for the tool (its reply is owed), then the interpreter joined the
    # global tool pool's thread: the process never ended.
    from runner.emulator import emulator_thread

    _tool_profile(tmp_path, timeout_s=60)
    os.mkfifo(tmp_path / "started.fifo")
    # opened without waiting for a writer; readable once the tool has written to it
    started_fd = os.open(tmp_path / "started.fifo", os.O_RDONLY | os.O_NONBLOCK)
    with emulator_thread(speed=0) as emu:
        proc = _popen(tmp_path, emu.endpoint)
        try:
            assert proc.stdin is not None
            proc.stdin.write("hang forever looking up Oslo\n")
            proc.stdin.flush()
            _read_until(proc, "[tool] hang_forever(")
            assert select.select([started_fd], [], [], 20)[0], "the tool's thread never ran"
            assert os.read(started_fd, 100) == b"running\n"
            started = time.monotonic()
            proc.stdin.write("q\n")
            proc.stdin.flush()
            code = proc.wait(15)
            took = time.monotonic() - started
            stderr = proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(started_fd)
    assert code == 0, stderr
    # The process ended while the tool hung (wait(15) against a 120 s tool): nothing joined
    # its thread. How fast is a measurement, not a test: it is logged, and bench/ reports it.
    print(f"q -> exit with a hung tool: {took:.2f} s")
    assert "hang_forever still running; not waiting" in stderr


def test_a_timed_out_sync_tool_does_not_hold_the_exit(tmp_path: Path) -> None:
    # a492d98: a 4 s tool with a short timeout made the exit wait for its thread (~4.5 s).
    from runner.emulator import emulator_thread

    _tool_profile(tmp_path, timeout_s=0.2)
    with emulator_thread(speed=0) as emu:
        proc = _popen(tmp_path, emu.endpoint)
        try:
            assert proc.stdin is not None
            proc.stdin.write("slow lookup of Oslo\n")
            proc.stdin.flush()
            _read_until(proc, "did not finish")  # the failed result, then the model's reply
            _read_until(proc, "assistant:")
            started = time.monotonic()
            proc.stdin.write("q\n")
            proc.stdin.flush()
            code = proc.wait(15)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0
    # Causal, not timed: had the exit waited for the 4 s tool's thread, the tool would have
    # finished and left its mark before the process ended.
    assert not (tmp_path / "slow.finished").exists(), f"the exit waited for the tool ({took:.1f} s)"


# --------------------------------------------------------------- 3. task exceptions never seen


@tool
def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: 7 degrees"


class ExplodingRegistry(Registry):
    """A registry whose dispatch itself fails (a bug, not a tool error)."""

    async def dispatch(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the registry exploded")

    async def dispatch_many(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the registry exploded")


async def test_a_failing_tool_task_is_reported_and_the_turn_recovers(tmp_path: Path) -> None:
    # a492d98: the task's exception was never retrieved; no output, no response.create, and
    # the next turn waited forever for the reply still owed.
    registry = ExplodingRegistry()
    registry.add(lookup)
    async with running_emulator(speed=0) as emu:
        h = build(emu.endpoint, tmp_path, registry=registry)
        h.start()
        await asyncio.wait_for(h.session.send_text("lookup the city Oslo"), 10)
        await h.turn(is_assistant("lookup"), timeout=10)  # the model reports the error result
        await asyncio.wait_for(h.session.send_text("and then?"), 5)  # the turn recovered
        await h.turn(is_assistant("You said: and then?"), timeout=10)
        assert await h.stop() == 0
        sent = outputs(emu.sessions[0])
    assert len(sent) == 1 and "error" in json.loads(sent[0]["output"])
    assert "the registry exploded" in h.err
    technical = h.technical()
    assert "the registry exploded" in technical and "Traceback" in technical


async def test_a_failing_approval_task_is_reported_and_the_turn_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runner.live.mcp

    def broken(*args: Any) -> str:
        raise RuntimeError("the policy exploded")

    monkeypatch.setattr(runner.live.mcp, "decide", broken)
    update = {
        "type": "session.update",
        "session": {
            "modalities": ["text"],
            "turn_detection": None,
            "tools": [
                {
                    "type": "mcp",
                    "server_label": "docs",
                    "server_url": "https://mcp.example.com/mcp",
                    "allowed_tools": ["search_docs"],
                    "require_approval": "always",
                }
            ],
        },
    }
    async with running_emulator(speed=0) as emu:
        h = build(emu.endpoint, tmp_path, update=update, api_version="2026-04-10")
        h.start()
        await asyncio.wait_for(h.session.send_text("search the docs please"), 10)
        await asyncio.wait_for(h.session.send_text("and then?"), 10)
        await h.turn(is_assistant("You said: and then?"), timeout=10)
        assert await h.stop() == 0
        answers = [
            e["item"]
            for e in emu.sessions[0].received
            if e.get("item", {}).get("type") == "mcp_approval_response"
        ]
    assert [a["approve"] for a in answers] == [False]  # a failure never approves
    assert "the policy exploded" in h.err
    assert "the policy exploded" in h.technical()


# ---------------------------------------------------------------- 4. cancellation is swallowed


def test_no_code_swallows_cancellation() -> None:
    # a492d98: contextlib.suppress(BaseException) at session.py:198, 262 and 284.
    offenders = []
    for path in sorted((ROOT / "runner" / "live").glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"suppress\([^)]*BaseException|except BaseException\s*:", line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert not offenders, offenders


@pytest.mark.parametrize("steps", range(0, 9))
async def test_cancelling_around_a_drop_ends_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    # a492d98: a cancellation that arrived while the session tidied up after a drop was
    # swallowed and the session reconnected instead of ending. Cancel `steps` loop turns
    # after the drop is seen, at every point of the tidy-up.
    import runner.live.state as state

    real_init = state.Drop.__init__
    run_task: list[asyncio.Task[int]] = []

    def later(n: int) -> None:
        if n == 0:
            run_task[0].cancel()
        else:
            asyncio.get_running_loop().call_soon(later, n - 1)

    def init(self: Any, *args: Any) -> None:
        real_init(self, *args)
        if run_task and not getattr(init, "fired", False):
            init.fired = True  # type: ignore[attr-defined]
            later(steps)

    monkeypatch.setattr(state.Drop, "__init__", init)
    faults = Faults(drop_after_events=2, connections=(1,))  # right after session.updated
    async with running_emulator(speed=0, faults=faults) as emu:
        h = build(emu.endpoint, tmp_path)
        run_task.append(h.start())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(run_task[0]), 3)
        assert run_task[0].done(), "the cancellation was swallowed: the session went on"
        assert run_task[0].cancelled()


# ------------------------------------------------- 5. tool results across reconnects, barge-in


async def test_the_emulator_refuses_an_output_for_a_call_it_never_issued() -> None:
    from azure.ai.voicelive.aio import connect
    from azure.ai.voicelive.models import FunctionCallOutputItem
    from azure.core.credentials import AzureKeyCredential

    from tests.helpers import events_until

    async with (
        running_emulator(speed=0) as emu,
        connect(endpoint=emu.endpoint, credential=AzureKeyCredential("k"), model="m") as conn,
    ):
        await events_until(conn, "session.created")
        await conn.session.update(session={"turn_detection": None})  # events need it first
        await events_until(conn, "session.updated")
        await conn.conversation.item.create(
            item=FunctionCallOutputItem(call_id="call_never_issued", output="{}")
        )
        events = await events_until(conn, "error", timeout=5)
    error = events[-1].error
    assert error.param == "item.call_id"
    assert "call_never_issued" in error.message


async def test_a_late_tool_output_is_not_sent_on_the_new_connection(tmp_path: Path) -> None:
    # a492d98: the output of a call from connection 1 went out on connection 2.
    started, release = asyncio.Event(), asyncio.Event()

    @tool
    async def slow_lookup(city: str) -> str:
        """Slow lookup of a city."""
        started.set()
        await release.wait()  # until connection 2 is up
        return "late"

    registry = Registry.of(slow_lookup)
    async with running_emulator(speed=0) as emu:
        h = build(emu.endpoint, tmp_path, registry=registry, tool_timeouts=5.0)
        h.start()
        await asyncio.wait_for(h.session.ready.wait(), 5)
        await h.session.send_text("slow lookup of Oslo")
        await asyncio.wait_for(started.wait(), 5)
        # cut connection 1 while the tool runs
        emu_conn = emu.sessions[0]
        await _drop(emu, 0)
        await emu.wait_for(lambda e: e["type"] == "session.update", 5)
        await emu.wait_for(lambda e: e["type"] == "session.update", 5)
        release.set()  # the tool finishes on connection 2's watch
        turn = h.session.turn
        await asyncio.wait_for(turn.until(lambda: not h.session.tools_running), 5)
        assert await h.stop() == 0
        second = emu.sessions[1]
        errors = [e for e in second.sent if e["type"] == "error"]
    assert not outputs(second), "an output of connection 1 went out on connection 2"
    assert not [e for e in errors if e["error"].get("param") == "item.call_id"]
    assert issued_calls(emu_conn)
    assert "dropped the output of slow_lookup" in h.technical()


async def _drop(emu: Any, index: int) -> None:
    """Cut one emulated connection's TCP link (as the drop fault does)."""
    await emu.cut_all(None)


@pytest.mark.parametrize("cancellable", [True, False])
async def test_barge_in_cancels_a_running_tool(tmp_path: Path, cancellable: bool) -> None:
    # a492d98: barge-in left the running tool running; its result came 5 s later.
    started, cancelled = asyncio.Event(), asyncio.Event()

    @tool
    async def slow_lookup(city: str) -> str:
        """Slow lookup of a city."""
        started.set()
        try:
            await asyncio.Event().wait()  # runs until cancelled
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    registry = Registry.of(slow_lookup)
    mic = LiveMic()
    async with running_emulator(speed=0, use_espeak=False) as emu:
        h = build(
            emu.endpoint,
            tmp_path,
            registry=registry,
            source=mic,
            tool_timeouts=10.0,
            cancel_on_barge_in={"slow_lookup": cancellable},
        )
        h.start()
        await asyncio.wait_for(h.session.ready.wait(), 5)
        await h.session.send_text("slow lookup of Oslo")
        await asyncio.wait_for(started.wait(), 5)
        mic.say(tone(600))  # the user talks while the tool runs
        if cancellable:
            await asyncio.wait_for(cancelled.wait(), 2)
            await emu.wait_for(lambda e: e.get("item", {}).get("type") == "function_call_output", 2)
        else:
            # speech_stopped is handled after the speech_started handler, barge-in included
            turn = h.session.turn
            await asyncio.wait_for(
                turn.until(
                    lambda: any(t == "input_audio_buffer.speech_stopped" for t, _ in turn.history)
                ),
                5,
            )
            assert not cancelled.is_set()
            assert h.session.tools_running
        assert await h.stop() == 0
        sent = outputs(emu.sessions[0])
    if cancellable:
        assert len(sent) == 1
        error = json.loads(sent[0]["output"])["error"]
        assert error["type"] == "interrupted"
        assert "interrupted" in error["message"]
    else:
        assert not sent  # still running when the test ended


# ------------------------------------------------------------------------- 6. split logging


async def test_tool_logs_reach_the_technical_log_and_levels_are_restored(tmp_path: Path) -> None:
    # a492d98: the session logged to runner.*, tools to vlrun.tools (no handler: stderr
    # only), and the azure/runner levels stayed changed after the run.
    @tool
    def noisy(city: str, context: ToolContext) -> str:
        """Noisy lookup of a city."""
        logging.getLogger("vlrun.tools").warning("noisy says hello from the module logger")
        context.logger.warning("noisy says hello from its context")
        return "ok"

    from runner.live.transcript import process_log_levels

    saved = {n: logging.getLogger(n).level for n in ("vlrun", "azure", "runner")}
    try:
        process_log_levels()  # what the vlrun command does once at its start
        before = {n: logging.getLogger(n).level for n in saved}
        async with running_emulator(speed=0) as emu:
            h = build(emu.endpoint, tmp_path, registry=Registry.of(noisy))
            h.start()
            await h.session.send_text("noisy lookup of Oslo")
            await h.turn(is_assistant("noisy"), timeout=10)
            assert await h.stop() == 0
        technical = h.technical()
        assert "noisy says hello from the module logger" in technical
        assert "noisy says hello from its context" in technical
        assert re.search(r" vlrun\.live\.\w+: ", technical), "the session logs outside vlrun.*"
        # a session changes no logger's level (levels are the handlers')
        assert {n: logging.getLogger(n).level for n in saved} == before
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# ------------------------------------------------------------------------- 7. wrong types


def test_connect_failure_of_a_value_error_is_a_connect_error() -> None:
    from runner.errors import ConnectError
    from runner.live.connect import Target, connect_failure

    err = connect_failure(ValueError("bad url"), "http://x", Target("http://x", "test"))
    assert isinstance(err, ConnectError)


async def test_run_returns_the_exit_code_of_what_ended_it(tmp_path: Path) -> None:
    # a492d98: run() always returned 0, even when the microphone failed.
    from runner.errors import AudioUnavailable

    class BrokenMic(LiveMic):
        async def frames(self) -> Any:
            yield bytes(self.fmt.frame_bytes)  # it worked for one frame, then went away
            raise AudioUnavailable("the microphone went away")

    async with running_emulator(speed=0) as emu:
        h = build(emu.endpoint, tmp_path, source=BrokenMic())
        code = await asyncio.wait_for(h.session.run(), 10)
    assert code == AudioUnavailable.exit_code
    assert "the microphone went away" in h.err


# ------------------------------------------------------------------------- 8. crash log


def test_the_crash_log_is_private_and_says_which_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a492d98: /tmp/vlrun-crash.log, a predictable name in a shared folder, mode 0644.
    import runner.cli as cli

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in vlrun")

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(cli.cli, "main", boom)
    assert cli.main(["check"]) == 70
    logs = list((tmp_path / "state" / "vlrun").glob("crash-*.log"))
    assert len(logs) == 1
    assert stat.S_IMODE(logs[0].stat().st_mode) == 0o600
    text = logs[0].read_text()
    assert "RuntimeError: a bug in vlrun" in text
    from importlib.metadata import version

    assert f"vlrun {cli.__version__}" in text
    assert f"Python {sys.version.split()[0]}" in text
    assert f"azure-ai-voicelive {version('azure-ai-voicelive')}" in text
    assert str(logs[0]) in capsys.readouterr().err


# ------------------------------------------------------------- 9. tests that need PyAudio


def test_the_cli_tests_skip_without_the_audio_extra(tmp_path: Path) -> None:
    # a492d98: three tests in tests/test_run_cli.py failed instead of skipping.
    shim = tmp_path / "shim" / "pyaudio"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'pyaudio\'", name="pyaudio")\n'
    )
    env = {**os.environ, "PYTHONPATH": f"{shim.parent}{os.pathsep}{ROOT}"}
    tests = [
        "test_no_microphone_is_a_clear_line",
        "test_devices_without_sound_hardware",
        "test_doctor_reports_one_line_per_finding",
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "tests/test_run_cli.py",
            "-k",
            " or ".join(tests),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "failed" not in result.stdout.splitlines()[-1], result.stdout[-3000:]


def test_two_sessions_in_one_process_keep_their_own_technical_logs(tmp_path: Path) -> None:
    import io

    from runner.live.transcript import Transcript, session_logging

    a = Transcript(logs_dir=tmp_path / "a", out=io.StringIO(), err=io.StringIO(), name="a")
    b = Transcript(logs_dir=tmp_path / "b", out=io.StringIO(), err=io.StringIO(), name="b")
    log = logging.getLogger("vlrun.live.session")
    with session_logging(a):
        log.warning("only in a")
    with session_logging(b):
        log.warning("only in b")
    log.warning("in neither (no session, two open)")  # a worker's own record: no call's
    a.close()
    b.close()
    assert a.technical_path is not None and b.technical_path is not None
    text_a, text_b = a.technical_path.read_text(), b.technical_path.read_text()
    assert "only in a" in text_a and "only in b" not in text_a
    assert "only in b" in text_b and "only in a" not in text_b
    assert "in neither" not in text_a + text_b


def test_cancel_on_barge_in_comes_from_the_profile(tmp_path: Path) -> None:
    from runner.config.load import load_profile
    from runner.live.session import profile_settings

    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\ntools:\n  - calculate\n  - name: get_weather\n    cancel_on_barge_in: false\n"
    )
    settings = profile_settings(load_profile(path))
    assert settings["cancel_on_barge_in"] == {"calculate": True, "get_weather": False}
