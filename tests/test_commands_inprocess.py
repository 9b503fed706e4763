"""The click commands run in-process with click.testing.CliRunner, so coverage sees them.

Subprocess tests elsewhere keep what needs a real process (signals, exit codes, TTYs); these
drive the same commands through their options with the real embedded emulator and the SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runner.cli import cli, main

ROOT = Path(__file__).resolve().parents[1]
# A same-named tool in the working directory: it must never be the one that runs.
SHADOW = (
    "from runner.plugins import tool\n\n\n@tool\n"
    'def get_weather(location: str) -> str:\n    """Shadow."""\n    return "shadow"\n'
)


def invoke(args: list[str], stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=stdin, standalone_mode=False)


def test_run_text_turn_answers_and_writes_the_conversation_log(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = invoke(
        ["run", str(ROOT / "profiles/casual-chat.yaml"), "--text", "--logs", str(logs)],
        stdin="hello there\nq\n",
    )
    assert result.exception is None, result.output
    assert result.return_value == 0
    assert "assistant: [emulator] You said: hello there" in result.output
    assert "(Enter -> first audio:" in result.output  # a typed turn has no end of speech
    assert "end of speech" not in result.output
    (conversation,) = [p for p in logs.iterdir() if "conversation" in p.name]
    assert "You said: hello there" in conversation.read_text()


def test_run_takes_tools_from_the_profile_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "get_weather.py").write_text(SHADOW)
    monkeypatch.chdir(tmp_path)
    result = invoke(["run", str(ROOT / "profiles/weather.yaml"), "--text", "--logs", "-"], "q\n")
    assert result.return_value == 0, result.output
    assert f"tools from {ROOT / 'tools'}" in result.output
    assert str(tmp_path) not in result.output
    assert "has no plugin" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fast"], "--fast only applies to --input FILE.wav"),
        (["--verbose", "--quiet"], "--verbose and --quiet exclude each other"),
        (["--text", "--input", "x.wav"], "--text and --input exclude each other"),
        (["--var", "novalue"], "--var 'novalue' must look like NAME=VALUE"),
    ],
)
def test_run_option_mistakes_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(ROOT / "profiles/casual-chat.yaml"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_run_of_a_missing_profile_names_it_and_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nope.yaml", "--text"]) != 0
    err = capsys.readouterr().err
    assert "nope.yaml: no such profile" in err and "profiles/casual-chat.yaml" in err


def test_tools_list_and_show_follow_the_profile_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "get_weather.py").write_text(SHADOW)
    monkeypatch.chdir(tmp_path)
    profile = str(ROOT / "profiles/weather.yaml")
    listed = invoke(["tools", "list", "--profile", profile, "--json"])
    assert listed.return_value == 0, listed.output
    tools = {t["name"]: t for t in json.loads(listed.output)["tools"]}
    assert tools["get_weather"]["source"].startswith(str(ROOT / "tools" / "get_weather.py"))
    assert tools["get_weather"]["bound"] is True
    shown = invoke(["tools", "show", "get_weather", "--profile", profile])
    assert shown.return_value == 0
    assert '"name": "get_weather"' in shown.output and "Shadow" not in shown.output


def test_tools_show_of_an_unknown_tool_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tools", "show", "no_such_tool", "--profile", str(ROOT / "profiles/weather.yaml")])
    assert code != 0
    assert "no_such_tool" in capsys.readouterr().err


def test_emulate_serves_the_sdk_and_stops_on_sigint(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.ai.voicelive.aio import connect
    from azure.core.credentials import AzureKeyCredential

    from runner.emulator import Emulator

    ready: dict[str, Any] = {}
    started = threading.Event()
    real_start = Emulator.start

    async def start(self: Emulator, host: str = "127.0.0.1", port: int = 0) -> str:
        endpoint = await real_start(self, host, port)
        ready["endpoint"] = endpoint
        started.set()
        return endpoint

    monkeypatch.setattr(Emulator, "start", start)

    async def probe(endpoint: str) -> str:
        async with connect(
            endpoint=endpoint, credential=AzureKeyCredential("any"), model="gpt-realtime"
        ) as conn:
            event = await asyncio.wait_for(conn.recv(), timeout=10)
            return str(event.type)

    def client() -> None:
        started.wait(timeout=30)
        try:
            ready["first_event"] = asyncio.run(probe(ready["endpoint"]))
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=client)
    thread.start()
    result = invoke(["emulate", "--speed", "0"])
    thread.join(timeout=30)
    assert result.return_value == 0, result.output
    assert ready["first_event"] == "session.created"
    assert ready["endpoint"] in result.output
    assert f"export AZURE_VOICELIVE_ENDPOINT={ready['endpoint']}" in result.output
    assert f"--endpoint {ready['endpoint']}   (no key needed)" in result.output
    assert "emulator stopped" in result.output


def test_emulate_rejects_a_bad_fault_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--fault", "no_such_fault=1"]) == 2
    err = capsys.readouterr().err
    assert "--fault" in err and "Traceback" not in err


def test_test_command_runs_a_scenario_and_writes_junit(tmp_path: Path) -> None:
    from xml.etree import ElementTree as ET

    junit = tmp_path / "junit.xml"
    result = invoke(["test", str(ROOT / "tests/scenarios/casual-chat.yaml"), "--junit", str(junit)])
    assert result.return_value == 0, result.output
    assert "1 scenario(s): 1 passed, 0 failed" in result.output
    suite = ET.parse(junit).getroot()
    assert sum(int(s.get("tests", 0)) for s in suite.iter("testsuite")) == 1
    assert not list(suite.iter("failure"))


def test_test_command_reports_a_failing_expectation(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text("name: agent\ninstructions: Be brief.\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "scenario: a reply that cannot match\n"
        "profile: agent.yaml\n"
        "turns:\n  - user: hello\n    expect:\n      reply_contains: a phrase no emulator says\n"
    )
    result = invoke(["test", str(broken)])
    assert result.return_value == 1, result.output
    assert "FAIL" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replay", "a.jsonl", "--promote", "b.jsonl"], "--replay and --promote exclude"),
        (["-o", "x.yaml"], "-o/--output only applies to --promote"),
    ],
)
def test_test_command_option_mistakes(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", *args]) == 2
    assert message in capsys.readouterr().err


def test_doctor_without_connecting_checks_the_profile_and_the_endpoint() -> None:
    result = invoke(["doctor", str(ROOT / "profiles/casual-chat.yaml"), "--no-connect"])
    assert result.exception is None, result.output
    assert "profile" in result.output and "loads and compiles" in result.output
    assert "local emulator" in result.output
    assert result.output.rstrip().splitlines()[-1] in ("all good",) or "to fix" in result.output


def test_doctor_names_a_broken_profile_as_a_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nvoice: 3\n")
    result = invoke(["doctor", str(bad), "--no-connect"])
    assert result.return_value == 1, result.output
    assert any(line.startswith("fix") and "bad.yaml" in line for line in result.output.splitlines())


def test_default_logs_go_to_the_state_folder_and_are_named_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    result = invoke(["run", str(ROOT / "profiles/casual-chat.yaml"), "--text"], "hi\nq\n")
    assert result.return_value == 0, result.output
    assert list(work.iterdir()) == []  # nothing appears in the folder the user was in
    (conversation,) = (tmp_path / "st" / "vlrun" / "logs").glob("*_conversation.log")
    assert "You said: hi" in conversation.read_text()
    assert f"-- logs: {conversation}" in result.output


def test_mock_tools_answer_the_weather_demo_offline(
    monkeypatch: pytest.MonkeyPatch, emulator_in_thread: Any
) -> None:
    # The real plugin would call this address; nothing listens there, so a call would fail.
    monkeypatch.setenv("VLRUN_WEATHER_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emulator_in_thread.endpoint)  # speed 0
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "k")
    result = invoke(
        [
            "run",
            str(ROOT / "profiles/weather.yaml"),
            "--text",
            "--logs",
            "-",
            "--mock-tools",
            str(ROOT / "tools/weather.mocks.yaml"),
        ],
        "what is the weather in Paris?\nq\n",
    )
    assert result.return_value == 0, result.output
    assert "mocked from" in result.output
    assert '[tool] get_weather({"location": "Paris"})' in result.output
    assert "partly cloudy" in result.output.split("assistant:", 1)[1]
    assert "could not be reached" not in result.output
    summary = next(line for line in result.output.splitlines() if line.startswith("-- session:"))
    assert "1 user turn(s)" in summary and "1 tool call(s), 0 failed" in summary
    assert "latency median" in summary and "0 reconnect(s)" in summary


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mocks:\n  get_weather: {outptu: 1}\n", "unknown key 'outptu'"),
        ("mocks:\n  get_weather: {delay_ms: -5}\n", "delay_ms"),
        ("get_weather: {output: 1}\n", "mocks"),
    ],
)
def test_a_wrong_mock_file_is_named_at_its_line(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mocks = tmp_path / "m.yaml"
    mocks.write_text(text)
    code = main(["run", str(ROOT / "profiles/weather.yaml"), "--text", "--mock-tools", str(mocks)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{mocks}:" in err and message in err and "Traceback" not in err


def test_a_local_emulator_endpoint_needs_no_key(
    monkeypatch: pytest.MonkeyPatch, emulator_in_thread: Any
) -> None:
    monkeypatch.delenv("AZURE_VOICELIVE_API_KEY", raising=False)
    result = invoke(
        ["run", str(ROOT / "profiles/casual-chat.yaml"), "--text", "--logs", "-"]
        + ["--endpoint", emulator_in_thread.endpoint],
        "hello\nq\n",
    )
    assert result.exception is None, result.output
    assert result.return_value == 0
    assert "none needed (a local vlrun emulator)" in result.output
    assert "az login" not in result.output
    assert "assistant: [emulator] You said: hello" in result.output
