"""Record and replay: a recorded session replayed into the real runner and plugins reproduces
the same tool calls and transcript; divergences and broken recordings name FILE.jsonl:line;
a promoted recording is a valid, passing scenario."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.plugins import Registry
from runner.scenarios.files import check_file, load_scenario
from runner.scenarios.replay import load_recording, replay, replay_file
from runner.scenarios.run import RunSettings, run_scenario_async
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "tests" / "scenarios"


async def record(name: str, trace: Path) -> object:
    result = await run_scenario_async(load_scenario(SHIPPED / name), RunSettings(trace_path=trace))
    assert result.passed, [f.render() for f in result.failures] or result.error
    return result


@pytest.mark.parametrize("name", ["calculator.yaml", "sdk-style.yaml", "world-clock.yaml"])
async def test_replay_reproduces_tool_calls_and_transcript(name: str, tmp_path: Path) -> None:
    trace = tmp_path / "rec.jsonl"
    original = await record(name, trace)
    entries = load_recording(trace)
    registry = Registry.discover([ROOT / "tools"])
    outcome = await replay(entries, trace, registry=registry)
    calls = [(c.name, c.arguments) for t in original.turns for c in t.tool_calls]  # type: ignore[attr-defined]
    assert outcome.tool_calls == calls
    texts = [text for _, text in original.lines]  # type: ignore[attr-defined]
    replayed = [text for _, text in outcome.lines]
    if name == "world-clock.yaml":  # the clock may have moved on: tool outputs can differ
        texts = [t for t in texts if not t.startswith("[tool] current_time ->")]
        replayed = [t for t in replayed if not t.startswith("[tool] current_time ->")]
        assert all(d.message.startswith("tool output for") for d in outcome.divergences)
    else:
        assert outcome.divergences == [], outcome.divergences
    assert replayed == texts


async def test_replay_of_a_barge_in_truncates_where_the_recording_did(tmp_path: Path) -> None:
    trace = tmp_path / "rec.jsonl"
    original = await record("casual-chat.yaml", trace)
    outcome = await replay(load_recording(trace), trace, registry=Registry())
    assert outcome.divergences == []
    recorded = [
        e.event["audio_end_ms"]
        for e in load_recording(trace)
        if e.type == "conversation.item.truncate"
    ]
    turn = original.turns[1]  # type: ignore[attr-defined]
    assert recorded == [turn.truncated_at_ms]
    # the runner truncated exactly where its speaker stopped, at or after the barge-in offset
    assert turn.stopped_at_ms == turn.truncated_at_ms >= 1500 - 100
    assert any(text.endswith("[interrupted]") for _, text in outcome.lines)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`vlrun run --text --trace` against a fast emulator: (recording, the run's stdout)."""
    from runner.emulator import emulator_thread

    rec = tmp_path_factory.mktemp("recorded") / "session.jsonl"
    with emulator_thread(speed=20, use_espeak=False) as emu:
        run = run_cli(
            "run", "profiles/calculator.yaml", "--text", "--endpoint", emu.endpoint,
            "--trace", str(rec), "--logs", "-", stdin="6 * 7\n",
            env={"AZURE_VOICELIVE_API_KEY": "test-key-not-secret"},
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return rec, run.stdout


def copy_of(recorded: tuple[Path, str], tmp_path: Path) -> Path:
    rec = tmp_path / "session.jsonl"
    rec.write_text(recorded[0].read_text())
    return rec


def test_vlrun_run_trace_is_a_recording_the_cli_replays(
    recorded: tuple[Path, str], tmp_path: Path
) -> None:
    rec = copy_of(recorded, tmp_path)
    assert "test-key-not-secret" not in rec.read_text()
    said = [line for line in recorded[1].splitlines() if line.startswith(("you:", "assistant:"))]
    assert any("42" in line for line in said), recorded[1]
    proc = run_cli("test", "--replay", str(rec), "--profile", "profiles/calculator.yaml", "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"PASS  replay of {rec} (1 tool call(s)")
    replayed = [line.strip() for line in proc.stdout.splitlines()]
    for line in said:
        assert line in replayed
    assert '[tool] calculate -> {"expression": "6 * 7", "result": 42}' in replayed


def test_replay_reports_a_tool_that_now_answers_differently(
    recorded: tuple[Path, str], tmp_path: Path
) -> None:
    rec = copy_of(recorded, tmp_path)
    lines = rec.read_text().splitlines()
    n = next(
        i
        for i, line in enumerate(lines)
        if '"function_call_output"' in line and '"dir": "out"' in line
    )
    rec_event = json.loads(lines[n])
    rec_event["event"]["item"]["output"] = '{"expression": "6 * 7", "result": 41}'
    lines[n] = json.dumps(rec_event)
    rec.write_text("\n".join(lines) + "\n")
    junit = tmp_path / "replay.xml"
    proc = run_cli(
        "test", "--replay", str(rec), "--profile", "profiles/calculator.yaml", "--junit", str(junit)
    )
    assert proc.returncode == 1
    assert f"{rec}:{n + 1}: tool output for " in proc.stdout
    assert '"result": 41' in proc.stdout and '"result": 42' in proc.stdout
    assert 'failures="1"' in junit.read_text()


def test_a_broken_recording_names_its_line(tmp_path: Path) -> None:
    rec = tmp_path / "bad.jsonl"
    rec.write_text(
        '{"t": 1, "dir": "out", "event": {"type": "session.update"}}\nnot json\n'
        '{"t": 2, "dir": "sideways", "event": {}}\n'
    )
    proc = run_cli("test", "--replay", str(rec))
    assert proc.returncode == 1
    assert f"{rec}:2: error: not JSON" in proc.stderr
    assert f"{rec}:3: error: expected " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_promoted_recording_is_a_passing_scenario(
    recorded: tuple[Path, str], tmp_path: Path
) -> None:
    import shutil

    rec = copy_of(recorded, tmp_path)
    # the promoted scenario names its profile relatively: both must be in one project
    for folder in ("profiles", "tools"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "pyproject.toml").touch()
    out = tmp_path / "scenarios" / "promoted.yaml"
    profile = str(tmp_path / "profiles" / "calculator.yaml")
    proc = run_cli("test", "--promote", str(rec), "--profile", profile, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert check_file(out) == []
    scenario = load_scenario(out)
    assert scenario.turns[0]["user"] == "6 * 7"
    assert scenario.turns[0]["expect"]["tools"] == [
        {"name": "calculate", "args": {"expression": "6 * 7"}}
    ]
    ran = run_cli("test", str(out))
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_replay_file_uses_the_profiles_tools(recorded: tuple[Path, str], tmp_path: Path) -> None:
    outcome = replay_file(
        copy_of(recorded, tmp_path), profile=ROOT / "profiles" / "calculator.yaml"
    )
    assert outcome.ok
    assert outcome.tool_outputs == [("calculate", '{"expression": "6 * 7", "result": 42}')]
