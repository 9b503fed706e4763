"""compile_session, greeting_event and the compile/explain/schema commands."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.config.compile import (
    DEFAULT_API_VERSION,
    SDK_SESSION_KEYS,
    compile_session,
    compile_with_problems,
    greeting_event,
)
from runner.config.load import load_profile
from runner.errors import ProfileError
from runner.redact import forget_secrets

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"

# The quickstart's session.update for api-version 2025-05-01-preview, as given in issue 2.
QUICKSTART_SESSION = {
    "instructions": "You are a helpful AI assistant responding in natural, engaging language.",
    "turn_detection": {
        "type": "azure_semantic_vad",
        "threshold": 0.3,
        "prefix_padding_ms": 200,
        "silence_duration_ms": 200,
        "remove_filler_words": False,
        "end_of_utterance_detection": {
            "model": "semantic_detection_v1",
            "threshold": 0.01,
            "timeout": 2,
        },
    },
    "input_audio_noise_reduction": {"type": "azure_deep_noise_suppression"},
    "input_audio_echo_cancellation": {"type": "server_echo_cancellation"},
    "voice": {
        "name": "en-US-Ava:DragonHDLatestNeural",
        "type": "azure-standard",
        "temperature": 0.8,
    },
}


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_profile(path, env={})


def normalised(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def test_default_api_version_is_the_sdks() -> None:
    from azure.ai.voicelive.aio import connect

    assert inspect.signature(connect).parameters["api_version"].default == DEFAULT_API_VERSION


def test_session_keys_match_the_sdk_model() -> None:
    from azure.ai.voicelive.models import RequestSession

    RequestSession()  # the generated model computes its field table on first use
    fields = {f._rest_name for f in RequestSession._attr_to_rest_field.values()}
    assert fields == SDK_SESSION_KEYS


def test_casual_chat_reproduces_the_quickstart_byte_for_byte() -> None:
    profile = load_profile(PROFILES / "casual-chat.yaml", env={})
    payload = compile_session(profile, api_version="2025-05-01-preview")
    assert payload["type"] == "session.update"
    assert normalised(payload["session"]) == normalised(QUICKSTART_SESSION)


def test_casual_chat_for_the_current_api_version() -> None:
    profile = load_profile(PROFILES / "casual-chat.yaml", env={})
    payload, problems, _ = compile_with_problems(profile, api_version="2026-07-15")
    eou = payload["session"]["turn_detection"]["end_of_utterance_detection"]
    assert eou == {"model": "semantic_detection_v1", "timeout_ms": 2000}
    (warning,) = problems
    assert warning.severity == "warning" and warning.line == 21
    assert "not sent" in warning.message


def test_compile_does_not_import_sdk_or_audio() -> None:
    code = (
        "import sys; from pathlib import Path; from runner.config.load import load_profile; "
        "from runner.config.compile import compile_session; "
        "p = load_profile(Path('profiles/weather.yaml'), env={}); compile_session(p); "
        "bad = [m for m in sys.modules if m.startswith(('azure.ai.voicelive.aio', 'aiohttp', "
        "'pyaudio', 'numpy', 'soxr', 'websockets'))]; print(bad)"
    )
    out = _python(code)
    assert out.strip() == "[]"


def test_plain_profiles_do_not_import_jinja() -> None:
    code = (
        "import sys; from pathlib import Path; from runner.config.load import load_profile; "
        "load_profile(Path('profiles/casual-chat.yaml'), env={}); "
        "print('jinja2' in sys.modules)"
    )
    out = _python(code)
    assert out.strip() == "False"


def test_tool_schema_precedence(tmp_path: Path) -> None:
    profile = load(
        tmp_path,
        "name: t\ntools:\n  - name: a\n    description: mine\n"
        "  - b\n  - name: c\n    parameters: {type: object, required: [q]}\n",
    )
    schemas = {
        "a": {"description": "plugin a", "parameters": {"type": "object", "title": "A"}},
        "b": {"description": "plugin b", "parameters": {"type": "object", "title": "B"}},
    }
    tools = compile_session(profile, tool_schemas=schemas)["session"]["tools"]
    assert tools == [
        {
            "type": "function",
            "name": "a",
            "description": "mine",
            "parameters": {"type": "object", "title": "A"},
        },
        {
            "type": "function",
            "name": "b",
            "description": "plugin b",
            "parameters": {"type": "object", "title": "B"},
        },
        {"type": "function", "name": "c", "parameters": {"type": "object", "required": ["q"]}},
    ]


def test_tool_without_any_schema_is_an_error_once_plugins_are_known(tmp_path: Path) -> None:
    profile = load(tmp_path, "name: t\ntools: [ghost]\n")
    assert compile_session(profile)["session"]["tools"] == [{"type": "function", "name": "ghost"}]
    with pytest.raises(ProfileError, match="no plugin and no declared parameters"):
        compile_session(profile, tool_schemas={"ghosts": {"description": "", "parameters": {}}})


def test_version_checks_raise(tmp_path: Path) -> None:
    profile = load(tmp_path, "name: t\nmcp_servers: [{label: d, url: 'https://d.example'}]\n")
    assert compile_session(profile)["session"]["tools"][0]["type"] == "mcp"
    with pytest.raises(ProfileError) as info:
        compile_session(profile, api_version="2025-10-01")
    assert info.value.problems[0].line == 2
    with pytest.raises(ProfileError, match="unknown api_version"):
        compile_session(profile, api_version="2099-01-01")


def test_parallel_tool_calls_dropped_with_warning_on_old_versions(tmp_path: Path) -> None:
    profile = load(tmp_path, "name: t\nparallel_tool_calls: false\n")
    new = compile_session(profile)
    assert new["session"] == {"parallel_tool_calls": False}
    old, problems, _ = compile_with_problems(profile, api_version="2026-04-10")
    assert old["session"] == {}
    assert [p.severity for p in problems] == ["warning"]


def test_escape_hatch_merges_last(tmp_path: Path) -> None:
    profile = load(
        tmp_path,
        "name: t\nvoice: alloy\nturn_detection: {type: server_vad, "
        "threshold: 0.5}\nsession:\n  voice: echo\n  turn_detection: "
        "{threshold: 0.9}\n  speech_duration_assistant_speaking_ms: 5\n",
    )
    payload, problems, _ = compile_with_problems(profile)
    assert payload["session"]["voice"] == "echo"
    assert payload["session"]["turn_detection"] == {"type": "server_vad", "threshold": 0.9}
    assert [(p.severity, p.line) for p in problems] == [("warning", 7)]


def test_greeting_event(tmp_path: Path) -> None:
    assert greeting_event(load(tmp_path, "name: t\n")) is None
    plain = greeting_event(load(tmp_path, "name: t\ngreeting: true\n"))
    assert plain == {"type": "response.create"}
    assert greeting_event(load(tmp_path, "name: t\ngreeting: Say hi\n")) == {
        "type": "response.create",
        "additional_instructions": "Say hi",
    }


def test_output_is_stable(tmp_path: Path) -> None:
    profile = load_profile(PROFILES / "weather.yaml", env={})
    first = json.dumps(compile_session(profile))
    again = json.dumps(compile_session(load_profile(PROFILES / "weather.yaml", env={})))
    assert first == again


# --- commands ---------------------------------------------------------------------------------


def test_compile_command_prints_payload(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    code = main(["compile", "profiles/casual-chat.yaml", "--api-version", "2025-05-01-preview"])
    out = capsys.readouterr().out
    assert code == 0
    assert normalised(json.loads(out)["session"]) == normalised(QUICKSTART_SESSION)


def test_compile_command_uses_plugins_and_greeting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    code = main(["compile", "profiles/world-clock.yaml", "--greeting"])
    out = capsys.readouterr().out
    assert code == 0
    payload_text, _, greeting_text = out.partition("\n}\n")
    tool = json.loads(payload_text + "\n}")["session"]["tools"][0]
    assert tool["name"] == "current_time"
    assert tool["parameters"]["required"] == ["timezone"]  # from tools/current_time.py
    assert json.loads(greeting_text) is None


def test_compile_command_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    forget_secrets()
    monkeypatch.setenv("VLRUN_TEST_SECRET", "abcdef-secret-123")
    p = tmp_path / "p.yaml"
    p.write_text(
        "name: t\nmcp_servers:\n  - label: d\n    url: https://d.example\n"
        "    headers: {X-Token: '${env:VLRUN_TEST_SECRET}'}\n"
    )
    assert main(["compile", str(p)]) == 0
    assert main(["explain", str(p)]) == 0
    out = capsys.readouterr().out
    assert "abcdef-secret-123" not in out
    assert '"X-Token": "***"' in out


def test_compile_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nvoice: {type: nope}\n")
    assert main(["compile", str(p)]) == 1
    assert f"{p}:2:15: error: type 'nope' is not one of" in capsys.readouterr().err
    assert main(["compile", str(tmp_path / "missing.yaml")]) == 2


def test_explain_names_origins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    code = main(
        [
            "explain",
            "profiles/sdk-style.yaml",
            "--set",
            "turn_detection.threshold=0.6",
            "--var",
            "assistant_name=Max",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert rows["api_version"].endswith("<- default (SDK)")
    assert rows["session.turn_detection.threshold"].endswith(
        "<- --set turn_detection.threshold=0.6"
    )
    assert rows["session.turn_detection.type"].endswith("<- profiles/sdk-style.yaml:19")
    assert rows["session.input_audio_noise_reduction.type"].endswith("<- profiles/base.yaml:10")
    assert "assistant_name from --var assistant_name" in rows["session.instructions"]
    assert rows["connection.endpoint"].endswith("(env AZURE_VOICELIVE_ENDPOINT)")


def test_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    from jsonschema import Draft202012Validator

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # editors show help: every top-level property is described
    assert all("description" in v for v in schema["properties"].values())


def test_every_valid_golden_profile_satisfies_the_schema() -> None:
    """The shipped schema alone (as an editor uses it) accepts every shipped profile."""
    import yaml
    from jsonschema import Draft202012Validator

    schema = json.loads((ROOT / "runner" / "config" / "schema" / "profile.schema.json").read_text())
    validator = Draft202012Validator(schema)
    for path in sorted(PROFILES.glob("*.yaml")):
        text = path.read_text().replace("2025-05-01-preview", "'2025-05-01-preview'")
        data = yaml.safe_load(text)
        assert list(validator.iter_errors(data)) == [], path


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the project root; return its stdout."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout


def test_explain_credits_plugin_values_to_the_plugin_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["explain", str(ROOT / "profiles" / "weather.yaml")]) == 0
    rows = {
        line.split()[0]: line.rsplit("<- ", 1)[1]
        for line in capsys.readouterr().out.splitlines()
        if "<- " in line
    }
    plugin = rows["session.tools[0].description"]
    assert re.fullmatch(r"(.*/)?tools/get_weather\.py:\d+ \(plugin\)", plugin), plugin
    assert rows["session.tools[0].parameters.properties.location.description"] == plugin
    assert re.fullmatch(r".*profiles/weather\.yaml:\d+", rows["session.tools[0].name"])
