"""Fields that went first-class this round, run live: their effect on the wire, secrets masked.

Each profile runs through the real runner and SDK against the emulator, which records what
it received; the console and the logs must never show the secrets the wire carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli

ICE_PW = "ice-pw-7f3a9c1e55"
MCP_AUTH = "Bearer mcp-tok-0b8d2e6f44"

PROFILE = """\
name: fields
instructions: Be brief.
transcription: {model: azure-speech, include: [logprobs, phrases]}
avatar:
  character: lisa
  style: casual-sitting
  video: {bitrate: 2000000, codec: h264, resolution: {width: 1280, height: 720}}
  ice_servers:
    - urls: ["turn:relay.example:3478"]
      username: u
      credential: ${env:ICE_PW}
mcp_servers:
  - label: docs
    url: https://mcp.example/sse
    authorization: ${env:MCP_AUTH}
"""


@pytest.fixture
def ran(
    emulator_in_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], str]:
    (tmp_path / "p.yaml").write_text(PROFILE)
    monkeypatch.setenv("ICE_PW", ICE_PW)
    monkeypatch.setenv("MCP_AUTH", MCP_AUTH)
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emulator_in_thread.endpoint)
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "k")
    logs = tmp_path / "logs"
    result = CliRunner().invoke(
        cli,
        ["run", str(tmp_path / "p.yaml"), "--text", "--logs", str(logs)],
        input="hello\nq\n",
        standalone_mode=False,
    )
    assert result.return_value == 0, result.output
    (session,) = emulator_in_thread.sessions
    (update,) = [e for e in session.received if e["type"] == "session.update"][:1]
    shown = result.output + "".join(p.read_text() for p in logs.iterdir())
    return update["session"], shown


def test_transcription_include_asks_for_the_detail_session_wide(ran: Any) -> None:
    sent, _ = ran
    assert sent["include"] == [
        "item.input_audio_transcription.logprobs",
        "item.input_audio_transcription.phrases",
    ]
    assert "include" not in sent["input_audio_transcription"]


def test_avatar_goes_out_whole_with_its_credential(ran: Any) -> None:
    sent, shown = ran
    assert sent["avatar"]["character"] == "lisa"
    assert sent["avatar"]["video"]["resolution"] == {"width": 1280, "height": 720}
    assert sent["avatar"]["ice_servers"][0]["credential"] == ICE_PW
    assert ICE_PW not in shown


def test_mcp_authorization_reaches_the_server_entry_and_nowhere_else(ran: Any) -> None:
    sent, shown = ran
    (mcp,) = [t for t in sent["tools"] if t["type"] == "mcp"]
    assert mcp["authorization"] == MCP_AUTH
    assert "mcp-tok-0b8d2e6f44" not in shown
    assert "You said: hello" in shown


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("avatar:\n  charcter: lisa\n", "unknown key 'charcter' in `avatar`"),
        ("avatar:\n  character: lisa\n  video: {codec: vp9}\n", "codec 'vp9' is not one of"),
        (
            "avatar:\n  character: lisa\n  ice_servers: [{urls: ['http://x']}]\n",
            "a STUN or TURN URL",
        ),
        (
            "avatar:\n  character: lisa\n  ice_servers: [{urls: ['turn:x'], credential: pw}]\n",
            "an ICE server credential is written inline",
        ),
        (
            "mcp_servers:\n  - {label: d, url: 'https://x', authorization: 'Bearer abc'}\n",
            "authorization is written inline",
        ),
        ("transcription: {model: azure-speech, include: [words]}\n", "include item 'words'"),
        ("connection:\n  headers: {X-A: inline}\n", "connection header 'X-A' is written inline"),
        ("connection:\n  credential_scopes: []\n", "must not be empty"),
    ],
)
def test_mistakes_in_the_new_fields_are_named_at_their_line(
    tmp_path: Path, snippet: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.cli import main

    (tmp_path / "p.yaml").write_text("name: p\n" + snippet)
    assert main(["check", str(tmp_path / "p.yaml")]) == 1
    out = capsys.readouterr().out
    assert message in out, out
    assert f"{tmp_path / 'p.yaml'}:" in out


CONNECT = """\
name: connect-options
instructions: Be brief.
connection:
  query: {feature: preview-x}
  headers: {X-Trace-Token: "${env:TRACE_TOKEN}"}
  credential_scopes: ["https://cognitiveservices.azure.com/.default"]
"""
TRACE_TOKEN = "trace-tok-5e1c77a0d2"


def test_connect_options_reach_the_handshake_and_stay_masked(
    emulator_in_thread: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from runner.cli import main

    (tmp_path / "p.yaml").write_text(CONNECT)
    monkeypatch.setenv("TRACE_TOKEN", TRACE_TOKEN)
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emulator_in_thread.endpoint)
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "k")
    result = CliRunner().invoke(
        cli,
        ["run", str(tmp_path / "p.yaml"), "--text", "--logs", "-"],
        input="hi\nq\n",
        standalone_mode=False,
    )
    assert result.return_value == 0, result.output
    (session,) = emulator_in_thread.sessions
    assert session.query["feature"] == "preview-x"
    assert session.headers["X-Trace-Token"] == TRACE_TOKEN
    assert TRACE_TOKEN not in result.output
    assert main(["explain", str(tmp_path / "p.yaml")]) == 0
    explained = capsys.readouterr().out
    assert "connection.headers" in explained and TRACE_TOKEN not in explained
    assert '"feature": "preview-x"' in explained and "credential_scopes" in explained


def test_agent_identity_options_become_connect_keywords(tmp_path: Path) -> None:
    from runner.config.load import load_profile

    (tmp_path / "p.yaml").write_text(
        "name: a\nconnection:\n  agent:\n    name: helper\n    project: proj\n"
        "    identity_client_id: 0000-1111\n    foundry_resource: my-foundry\n"
    )
    agent = load_profile(tmp_path / "p.yaml", env={}).connection.agent
    assert agent is not None
    kwargs = agent.connect_kwargs()
    assert kwargs["authentication_identity_client_id"] == "0000-1111"
    assert kwargs["foundry_resource_override"] == "my-foundry"
    import inspect

    from azure.ai.voicelive.aio import connect

    assert set(kwargs) <= set(inspect.signature(connect).parameters)  # the SDK's own names
