"""Hostile environments, secrets and terminal hygiene: every form of a registered secret is
masked, and control characters never reach a terminal, a log or a JUnit file raw."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.redact import clean, clean_line, forget_secrets, redact, register_secret, xml_text
from tests.helpers import ROOT

FAKE = {  # one per kind of secret vlrun reads; each has characters URL encoding changes
    "api key": "fakekey/VLHOST+apikey=7f3a9c",
    "bearer token": "eyJfake.VLHOST-bearer/token+x",
    "agent token": "agent:VLHOST@token#51d2",
    "mcp header": "mcp key VLHOST & 0c4b77",
    "webhook secret": "whsec_VLHOST/secret?x=1",
}


def forms(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "plain": value,
        "url": urllib.parse.quote(value, safe=""),
        "url-plus": urllib.parse.quote_plus(value, safe=""),
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "json": json.dumps(value)[1:-1],
    }


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize("kind", sorted(FAKE))
def test_every_form_of_a_registered_secret_is_masked(kind: str) -> None:
    register_secret(FAKE[kind])
    for form, text in forms(FAKE[kind]).items():
        out = redact(f"GET /x?token={text} and again '{text}' in a log")
        assert text not in out, (kind, form)
        assert "VLHOST" not in out or form not in ("plain", "json"), (kind, form)


def test_a_key_in_an_endpoint_url_is_masked_without_registration() -> None:
    for url in (
        "wss://x.example.com/voice-live/realtime?api-key=VLHOSTsecret123&model=m",
        "https://x.example.com/?api_key=VLHOSTsecret123",
        "Authorization: Bearer VLHOSTsecret123",
    ):
        assert "VLHOSTsecret123" not in redact(url)


HOSTILE_TEXT = [
    "\x1b]0;pwned title\x07",
    "\x1b[2J\x1b[H",
    "ok\rOVERWRITE",
    "bell\x07 backspace\x08 nul\x00",
    "c1 \x9b31m csi",
    "trojan \u202egnp.exe",
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_control_characters_are_shown_not_obeyed(text: str) -> None:
    out = clean(text)
    assert not any(ord(c) < 0x20 and c not in "\n\t" for c in out)
    assert not any(0x7F <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E for c in out)
    assert "\\x" in out or "\\u" in out


def test_newlines_and_tabs_stay_in_text_but_not_in_a_log_line() -> None:
    assert clean("a\n\tb\r\n") == "a\n\tb\r\n"
    assert clean_line("a\nb") == "a\\nb"


@pytest.mark.parametrize("text", [*HOSTILE_TEXT, "\ufffe\uffff", "\ud800 lone surrogate"])
def test_xml_text_is_always_well_formed(text: str) -> None:
    suite = ET.Element("testsuite", name=xml_text(text))
    ET.SubElement(suite, "system-out").text = xml_text(text)
    ET.fromstring(ET.tostring(suite, encoding="unicode"))  # raises if not well-formed


def test_console_and_conversation_log_neutralise_control_characters(tmp_path: Path) -> None:
    """The real Transcript: a scripted reply's escapes reach neither screen nor log raw."""
    import io

    from runner.live.transcript import Transcript

    out = io.StringIO()
    transcript = Transcript(out=out, err=out, logs_dir=tmp_path, meter=False)
    evil = "\x1b]0;pwned\x07 hello \x1b[2J"
    transcript.user("u1", evil)
    transcript.assistant_delta("a1", evil)
    transcript.assistant_done("a1", evil)
    transcript.tool_result("c1", "t", True, evil, 0.1)
    transcript.close()
    written = out.getvalue() + "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert written.count("hello") >= 2  # the screen and the conversation log both got it
    assert "\x1b" not in written and "\x07" not in written


def test_mcp_header_tokens_never_reach_command_output(tmp_path: Path) -> None:
    """check and compile on a profile whose MCP headers come from env: scan every form."""
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\nmcp_servers:\n  - label: m\n    url: https://mcp.example.com/\n"
        "    approval: never\n    headers:\n"
        "      Authorization: Bearer ${env:HOSTILE_TOKEN}\n      X-Key: ${env:HOSTILE_KEY}\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VLRUN_DOTENV": "none",
        "HOSTILE_TOKEN": FAKE["bearer token"],
        "HOSTILE_KEY": FAKE["mcp header"],
    }
    seen = ""
    for args in (["check", "--format", "json", str(profile)], ["compile", str(profile)]):
        result = subprocess.run(
            [sys.executable, "-m", "runner", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
        seen += result.stdout + result.stderr
    assert "mcp.example.com" in seen  # the commands did print the server
    for kind in ("bearer token", "mcp header"):
        for form, text in forms(FAKE[kind]).items():
            assert text not in seen, (kind, form)


def test_credential_named_environment_variables_are_masked_in_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scenario that makes the emulator say a token the runner never reads: still masked."""
    from runner.cli import main

    token = "gh-tok-8c2e51f0b9a4"
    monkeypatch.setenv("SOME_SERVICE_TOKEN", token)
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "az-key-41d0c9e7b2f6")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "p.yaml").write_text("name: p\ninstructions: Hi.\n")
    (tmp_path / "s.yaml").write_text(
        "scenario: echo\nprofile: p.yaml\nmodel:\n  turns:\n"
        f"    - match: hi\n      say: the token is {token} and az-key-41d0c9e7b2f6\n"
        "turns:\n  - user: hi\n    expect: {reply_contains: the token}\n"
    )
    junit = tmp_path / "j.xml"
    assert main(["test", str(tmp_path / "s.yaml"), "--junit", str(junit)]) == 0
    shown = "".join(capsys.readouterr()) + junit.read_text()
    assert token not in shown and "az-key-41d0c9e7b2f6" not in shown
    assert "the token is" in shown


def test_a_key_over_plain_http_to_another_host_is_warned_about() -> None:
    from runner.live.connect import Target
    from runner.live.console import _plain_http_warning

    remote = Target("http://voice.example.com", "--endpoint", api_key="k")
    assert "over plain http" in (_plain_http_warning(remote) or "")
    assert _plain_http_warning(Target("https://voice.example.com", "x", api_key="k")) is None
    assert _plain_http_warning(Target("http://127.0.0.1:8765", "x", api_key="k")) is None
    assert _plain_http_warning(Target("http://voice.example.com", "x")) is None  # no key
