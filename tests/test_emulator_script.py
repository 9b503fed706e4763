"""The model script format, the built-in model's guesses, and `vlrun emulate` as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.emulator import ScriptError, load_script
from runner.emulator.model import ScriptedModel, guess_arguments, match_tool, render
from runner.errors import VlrunError

DATA = Path(__file__).parent / "data" / "emulator"
ROOT = Path(__file__).parents[1]


def test_weather_script_loads_with_lines() -> None:
    script = load_script(DATA / "weather.yaml")
    assert script.source.endswith("weather.yaml")
    assert script.rules[0].line == 4 and script.rules[0].turn == 1
    assert json.loads(script.rules[1].tools[1].arguments) == {"city": "Rome"}
    assert script.greeting == "Hello, I am the scripted weather desk."


def test_schema_problems_name_file_and_line() -> None:
    with pytest.raises(ScriptError) as err:
        load_script(DATA / "bad_schema.yaml")
    assert isinstance(err.value, VlrunError)
    rendered = err.value.render()
    assert "bad_schema.yaml:4:" in rendered and "sya" in rendered


def test_bad_regex_names_its_line() -> None:
    with pytest.raises(ScriptError) as err:
        load_script(DATA / "bad_regex.yaml")
    assert "bad_regex.yaml:3: error: bad regular expression" in err.value.render()


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("turns:\n  - say: [unclosed\n")
    with pytest.raises(ScriptError, match="not valid YAML") as err:
        load_script(broken)
    assert "broken.yaml:3" in err.value.render()
    with pytest.raises(ScriptError, match="file not found"):
        load_script(tmp_path / "absent.yaml")


def test_dict_scripts_name_their_origin() -> None:
    script = load_script({"turns": [{"say": "hi"}]}, origin="scenario.yaml")
    assert script.source == "scenario.yaml" and script.rules[0].say == "hi"
    with pytest.raises(ScriptError) as err:
        load_script({"turns": [{"transcript": "no turn"}]}, origin="scenario.yaml")
    assert err.value.render().startswith("scenario.yaml: error:")


def test_render_placeholders_are_data_only() -> None:
    ctx = {"output": '{"temp": 21, "list": [1, {"x": "y"}]}', "outputs": ["a"], "text": "hi"}
    assert render("{output.temp} {output.list.1.x} {outputs.0} {text}", ctx) == "21 y a hi"
    assert render("{output.missing} {nope} {{literal}}", ctx) == "{output.missing} {nope} {literal}"
    assert render("{output.__class__}", ctx) == "{output.__class__}"


TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
    {
        "type": "function",
        "name": "set_timer",
        "description": "Start a countdown timer",
        "parameters": {
            "type": "object",
            "properties": {
                "minutes": {"type": "integer", "minimum": 1},
                "label": {"type": "string"},
                "loud": {"type": "boolean"},
                "unit": {"enum": ["min", "sec"]},
            },
            "required": ["minutes", "label", "loud", "unit"],
        },
    },
]


def test_match_tool_uses_name_and_description_words() -> None:
    assert match_tool("What's the weather in Oslo?", TOOLS)["name"] == "get_weather"
    assert match_tool("start a countdown for 5 minutes", TOOLS)["name"] == "set_timer"
    assert match_tool("tell me a story", TOOLS) is None


@given(st.text(max_size=80))
def test_guessed_arguments_are_always_schema_valid(text: str) -> None:
    for tool in TOOLS:
        jsonschema.validate(guess_arguments(text, tool), tool["parameters"])


def test_guessed_arguments_take_the_phrase_after_in() -> None:
    assert guess_arguments("weather in Buenos Aires, please", TOOLS[0]) == {"city": "Buenos Aires"}
    args = guess_arguments("timer for 7 min called tea", TOOLS[1])
    assert args["minutes"] == 7 and args["unit"] == "min" and args["loud"] is False


def test_audio_turns_take_transcripts_by_turn_number() -> None:
    model = ScriptedModel(load_script(DATA / "weather.yaml"))
    assert model.audio_transcript(1) == "What is the weather in Paris?"
    assert model.audio_transcript(2) is None
    plan = model.plan_turn(2, None, 2500, {})
    assert plan.say == "[emulator] I heard 2.5 seconds of audio."


def test_schema_file_is_a_valid_json_schema() -> None:
    schema = json.loads(
        (ROOT / "runner" / "config" / "schema" / "model-script.schema.json").read_text()
    )
    jsonschema.Draft202012Validator.check_schema(schema)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_cli_bad_script_exits_1_with_location_and_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "emulate", "--scenario", str(DATA / "bad_schema.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 1
    assert "bad_schema.yaml:4:" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_bad_fault_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "emulate", "--fault", "explode=1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown fault" in proc.stderr


def test_cli_serves_until_interrupted_and_masks_the_key() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "emulate",
            "--speed",
            "0",
            "--api-key",
            "cli-secret-key",
            "--scenario",
            str(DATA / "weather.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        check = subprocess.run(
            [sys.executable, "-c", _CLIENT, endpoint],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
        assert check.stdout.strip() == "session.created 401", check.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "EMULATOR" in err and "cli-secret-key" not in err


_CLIENT = """
import asyncio, sys
import aiohttp
async def main(endpoint):
    ws_url = endpoint.replace("http", "ws") + "/voice-live/realtime?model=m"
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(ws_url, headers={"api-key": "cli-secret-key"}) as ws:
            first = (await ws.receive_json())["type"]
        try:
            await s.ws_connect(ws_url, headers={"api-key": "wrong"})
        except aiohttp.WSServerHandshakeError as exc:
            print(first, exc.status)
asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", ["device", "fifo", "alias bomb", "too big"])
def test_a_hostile_script_file_is_refused_at_once(kind: str, tmp_path: Path) -> None:
    """`vlrun emulate --script` and scenario model files read like profiles: bounded."""
    path = tmp_path / "script.yaml"
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "alias bomb":
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text("fallback: " + "x" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(ScriptError) as err:
        load_script(path)
    assert str(path) == err.value.problems[0].file
