"""The Profile contract others code against: load_profile, the frozen record, composition."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runner.config.load import AgentBinding, Greeting, load_profile
from runner.errors import ProfileError, UsageError
from runner.redact import forget_secrets, redact

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, **kw: object) -> object:
    kw.setdefault("env", {})
    return load_profile(write(tmp_path, text), **kw)  # type: ignore[arg-type]


def test_record_is_frozen_and_read_only(tmp_path: Path) -> None:
    p = load(tmp_path, "name: t\nvoice: {name: alloy}\ntools: [f]\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "other"  # type: ignore[attr-defined,misc]
    with pytest.raises(TypeError):
        p.settings["voice"]["name"] = "echo"  # type: ignore[attr-defined,index]
    assert p.settings["tools"] == ("f",)  # type: ignore[attr-defined]


def test_defaults(tmp_path: Path) -> None:
    p = load(tmp_path, "description: hi\n")
    assert p.name == "p"  # file stem when no name
    assert p.description == "hi"
    assert p.source == tmp_path / "p.yaml"
    assert p.connection.endpoint is None and p.connection.api_version is None
    assert p.agent is None and p.greeting is None and p.instructions is None
    assert p.tools == () and p.mcp_servers == ()
    assert p.tool_timeout_s == 10.0
    assert (p.input_format, p.input_sampling_rate) == ("pcm16", 24000)
    assert (p.output_format, p.output_sampling_rate) == ("pcm16", 24000)


@pytest.mark.parametrize(
    ("audio", "expected"),
    [
        (
            "input_format: g711_ulaw\n  output_format: g711_alaw",
            ("g711_ulaw", 8000, "g711_alaw", 8000),
        ),
        (
            "input_sampling_rate: 16000\n  output_format: pcm16_16000hz",
            ("pcm16", 16000, "pcm16_16000hz", 16000),
        ),
        ("output_format: pcm16_44100hz", ("pcm16", 24000, "pcm16_44100hz", 44100)),
    ],
)
def test_audio_formats_for_the_runner(tmp_path: Path, audio: str, expected: tuple) -> None:
    p = load(tmp_path, f"name: t\naudio:\n  {audio}\n")
    got = (p.input_format, p.input_sampling_rate, p.output_format, p.output_sampling_rate)
    assert got == expected


def test_current_agent_binding(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        "name: t\nconnection:\n  agent:\n    name: helper\n    project: contoso\n"
        "    version: 3\n    conversation_id: conv_9\n",
    )
    assert p.agent == AgentBinding(
        name="helper", project="contoso", version="3", conversation_id="conv_9"
    )
    assert p.agent.connect_kwargs() == {
        "agent_name": "helper",
        "project_name": "contoso",
        "agent_version": "3",
        "conversation_id": "conv_9",
    }
    assert p.agent.query_params() == {}
    assert p.connection.agent is p.agent


def test_current_agent_only_required_keys(tmp_path: Path) -> None:
    p = load(tmp_path, "name: t\nconnection:\n  agent: {name: helper, project: contoso}\n")
    assert p.agent.connect_kwargs() == {"agent_name": "helper", "project_name": "contoso"}


@pytest.mark.parametrize(
    ("extra", "params"),
    [
        ("project: proj", {"agent-id": "asst_1", "agent-project-name": "proj"}),
        (
            "connection_string: 'eastus;s;r;p'",
            {"agent-id": "asst_1", "agent-connection-string": "eastus;s;r;p"},
        ),
    ],
)
def test_legacy_agent_binding(tmp_path: Path, extra: str, params: dict) -> None:
    p = load(
        tmp_path,
        f"name: t\nconnection:\n  api_version: 2025-05-01-preview\n  agent:\n"
        f"    id: asst_1\n    {extra}\n",
    )
    assert p.agent.legacy
    assert p.agent.query_params() == params
    assert p.agent.connect_kwargs() == {}
    assert "agent-access-token" not in p.agent.query_params()


def test_tool_bindings(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        "name: t\ntool_timeout_s: 4\ntools:\n  - calc\n  - name: weather\n"
        "    timeout_s: 2.5\n    description: Weather now.\n"
        "    parameters: {type: object, required: [city]}\n",
    )
    calc, weather = p.tools
    assert (calc.name, calc.timeout_s, calc.description, calc.parameters, calc.line) == (
        "calc",
        None,
        None,
        None,
        4,
    )
    assert (weather.name, weather.timeout_s, weather.description, weather.line) == (
        "weather",
        2.5,
        "Weather now.",
        5,
    )
    assert weather.parameters == {"type": "object", "required": ["city"]}
    assert p.tool_timeout_s == 4.0


def test_mcp_servers_and_secret_headers(tmp_path: Path) -> None:
    forget_secrets()
    p = load(
        tmp_path,
        "name: t\nmcp_servers:\n  - label: a\n    url: https://a.example\n"
        "    approval: ask\n  - label: b\n    url: https://b.example\n"
        "    allowed_tools: [x]\n    approval: {always: [w], never: [r]}\n"
        "    headers: {X-Key: '${env:KEY}'}\n",
        env={"KEY": "s3cret-header-value"},
    )
    a, b = p.mcp_servers
    assert (a.label, a.url, a.approval, a.allowed_tools, dict(a.headers)) == (
        "a",
        "https://a.example",
        "ask",
        None,
        {},
    )
    assert b.allowed_tools == ("x",)
    assert dict(b.approval) == {"always": ("w",), "never": ("r",)}
    assert dict(b.headers) == {"X-Key": "s3cret-header-value"}
    assert redact("value s3cret-header-value here") == "value *** here"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("greeting: true", Greeting(None)),
        ("greeting: false", None),
        ("greeting: Say hi to {{ who }}", Greeting("Say hi to Sam")),
        ("greeting: {instructions: Wave}", Greeting("Wave")),
        ("greeting: {instructions: Wave, enabled: false}", None),
    ],
)
def test_greeting_forms(tmp_path: Path, text: str, expected: Greeting | None) -> None:
    p = load(tmp_path, f"name: t\nvars: {{who: Sam}}\n{text}\n")
    assert p.greeting == expected


def test_extends_merge_semantics(tmp_path: Path) -> None:
    write(
        tmp_path,
        "voice: echo\ntemperature: 0.9\nmodalities: [text, audio]\n"
        "turn_detection: {type: server_vad, threshold: 0.4}\n"
        "tools: [a, {name: b, timeout_s: 1}]\n",
        "base.yaml",
    )
    p = load(
        tmp_path,
        "name: t\nextends: base.yaml\ntemperature: null\nmodalities: [text]\n"
        "turn_detection: {threshold: 0.6}\ntools: [{name: b, timeout_s: 2}, c]\n",
    )
    s = p.settings
    assert "temperature" not in s  # null removes
    assert s["modalities"] == ("text",)  # lists replace
    assert dict(s["turn_detection"]) == {"type": "server_vad", "threshold": 0.6}  # maps merge
    assert [(t.name, t.timeout_s) for t in p.tools] == [("a", None), ("b", 2.0), ("c", None)]
    # positions follow the file each value came from
    assert p.origin(("voice",)) == f"{tmp_path / 'base.yaml'}:1"
    assert p.origin(("turn_detection", "type")) == f"{tmp_path / 'base.yaml'}:4"
    assert p.origin(("turn_detection", "threshold")) == f"{tmp_path / 'p.yaml'}:5"
    assert p.tools[1].line == 6 and p.tools[0].file == str(tmp_path / "base.yaml")


def test_extends_problem_is_reported_in_base_file(tmp_path: Path) -> None:
    write(tmp_path, "voice: alloy\ntemperature: 7\n", "base.yaml")
    with pytest.raises(ProfileError) as info:
        load(tmp_path, "name: t\nextends: base.yaml\n")
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.col) == (str(tmp_path / "base.yaml"), 2, 14)


def test_set_overrides(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        "name: t\ntools: [{name: f, timeout_s: 1}]\n",
        sets=[
            "voice.name=echo",
            "tools.0.timeout_s=3",
            "audio.output_format=g711_ulaw",
            "instructions='Be brief: really'",
        ],
    )
    assert p.settings["voice"]["name"] == "echo"
    assert p.tools[0].timeout_s == 3.0
    assert p.output_format == "g711_ulaw"
    assert p.instructions == "Be brief: really"
    assert p.origin(("voice", "name")) == "--set voice.name=echo"


def test_set_value_is_validated_like_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load(tmp_path, "name: t\n", sets=["temperature=9"])
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("--set temperature=9", None)
    assert "out of range" in problem.message


@pytest.mark.parametrize("expr", ["temperature", "=3", "tools.5.x=1", "name.sub=1", "a..b=1"])
def test_bad_set_is_a_usage_error(tmp_path: Path, expr: str) -> None:
    with pytest.raises(UsageError):
        load(tmp_path, "name: t\ntools: [f]\n", sets=[expr])


def test_env_refs(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        "name: t\ntemperature: ${env:T}\nconnection:\n"
        "  endpoint: ${env:EP:-}\n  model: m-${env:M:-x}-${env:N}\n"
        "instructions: 'literal $${env:X}'\n",
        env={"T": "0.5", "N": "2"},
    )
    assert p.settings["temperature"] == 0.5  # a whole reference takes the value's type
    assert p.connection.endpoint is None  # empty means the emulator
    assert p.connection.model == "m-x-2"
    assert p.instructions == "literal ${env:X}"
    assert p.origin(("temperature",)) == f"{tmp_path / 'p.yaml'}:2 (env T)"


def test_env_defaults_to_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLRUN_TEST_MODEL", "from-os")
    p = load_profile(write(tmp_path, "name: t\nconnection: {model: '${env:VLRUN_TEST_MODEL}'}\n"))
    assert p.connection.model == "from-os"


def test_every_missing_env_var_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load(tmp_path, "name: t\nconnection:\n  endpoint: ${env:A}\n  model: ${env:B}\n")
    assert [(p.line, p.message) for p in info.value.problems] == [
        (3, "environment variable A is not set"),
        (4, "environment variable B is not set"),
    ]


def test_vars_typed_from_cli(tmp_path: Path) -> None:
    text = (
        "name: t\nvars:\n  n: 2\n  x: {type: number, default: 1.5}\n  on: {type: boolean, "
        "default: false}\n  who: {description: Name}\n"
        "instructions: '{{ n + 1 }} {{ x * 2 }} {{ on }} {{ who }}'\n"
    )
    p = load(tmp_path, text, vars={"n": "4", "on": "yes", "who": "Ann"})
    assert p.instructions == "5 3.0 True Ann"
    assert dict(p.vars) == {"n": 4, "x": 1.5, "on": True, "who": "Ann"}
    assert p.var_origins["n"] == "--var n" and p.var_origins["x"] == "default"
    with pytest.raises(UsageError, match="expected integer"):
        load(tmp_path, text, vars={"n": "four", "who": "Ann"})


def test_problem_positions_are_exact(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load(tmp_path, "name: t\nturn_detection:\n  type: server_vad\n  threshold: 3\n")
    (problem,) = info.value.problems
    assert problem.location == f"{tmp_path / 'p.yaml'}:4:14"
    assert problem.json_path == "$.turn_detection.threshold"


def test_block_template_error_line_inside_profile(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load(tmp_path, "name: t\ninstructions: |\n  one\n  two\n  three {{ missing }}\n")
    assert info.value.problems[0].line == 5


def test_template_file_next_to_base_profile(tmp_path: Path) -> None:
    write(tmp_path, "hello {{ who }}\n", "shared/persona.j2")
    write(tmp_path, "instructions: {file: persona.j2}\nvars: {who: base}\n", "shared/base.yaml")
    p = load(tmp_path, "name: t\nextends: shared/base.yaml\nvars: {who: child}\n")
    assert p.instructions == "hello child\n"


@pytest.mark.parametrize(
    "name",
    ["casual-chat", "foundry-agent", "sdk-style", "weather", "world-clock", "calculator", "base"],
)
def test_shipped_profiles_load_and_carry_modeline(name: str) -> None:
    path = ROOT / "profiles" / f"{name}.yaml"
    assert path.read_text().startswith(
        "# yaml-language-server: $schema=../runner/config/schema/profile.schema.json\n"
    )
    p = load_profile(path, env={})
    assert p.name == name


def test_foundry_agent_profile_uses_env(monkeypatch: pytest.MonkeyPatch) -> None:
    p = load_profile(
        ROOT / "profiles" / "foundry-agent.yaml",
        env={
            "AZURE_VOICELIVE_AGENT_NAME": "a1",
            "AZURE_VOICELIVE_PROJECT_NAME": "p1",
            "AZURE_VOICELIVE_ENDPOINT": "https://x.services.ai.azure.com",
        },
    )
    assert p.agent.connect_kwargs() == {"agent_name": "a1", "project_name": "p1"}
    assert p.connection.endpoint == "https://x.services.ai.azure.com"
    assert p.instructions is None


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("instructions: stolen\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "base.yaml").symlink_to(outside / "secret.yaml")
    (project / "p.yaml").write_text("name: t\nextends: base.yaml\n")
    with pytest.raises(ProfileError) as info:
        load_profile(project / "p.yaml", env={})
    assert "points outside the profile's folder" in info.value.problems[0].message
    assert info.value.problems[0].line == 2
