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
