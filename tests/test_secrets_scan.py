"""No secret ever leaves vlrun: run real commands with recognisable fake secrets, scan everything.

Each command runs in a subprocess (``python -m runner``) with fake API keys, Entra client
secrets and MCP header tokens in its environment. Afterwards every byte it produced is
scanned: stdout, stderr, conversation and technical logs, JSONL traces, recorded output and
crash reports (TMPDIR points into the test folder so even those land where we can look).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import emulator_thread

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent

SECRETS = {
    "AZURE_VOICELIVE_API_KEY": "fakekey-VLSCAN-apikey-7f3a9c1e5b",
    "AZURE_CLIENT_SECRET": "fakesecret-VLSCAN-entra-2d8e4a6c",
    "VLRUN_SCAN_MCP_TOKEN": "fakemcp-VLSCAN-bearer-51d2e9aa",
    "VLRUN_SCAN_MCP_KEY": "fakemcp-VLSCAN-headerkey-0c4b77",
}
MARKER = "VLSCAN"  # every fake secret carries it; nothing else does

PROFILE = """\
name: secret-scan
description: Weather with an MCP server whose headers carry credentials.
instructions: You answer weather questions with the get_weather tool.
tools:
  - name: get_weather
    parameters:
      type: object
      properties:
        location: {type: string, description: "City name, optionally with country"}
        unit: {type: string, enum: [celsius, fahrenheit]}
      required: [location]
mcp_servers:
  - label: internal
    url: https://mcp.example.com/
    approval: never
    headers:
      Authorization: Bearer ${env:VLRUN_SCAN_MCP_TOKEN}
      X-Api-Key: ${env:VLRUN_SCAN_MCP_KEY}
"""

CLASSIC_AGENT = """\
name: classic-agent
connection:
  api_version: 2025-05-01-preview
  agent:
    id: asst_scan
    connection_string: eastus.api.azureml.ms;sub;rg;proj
voice: alloy
"""

SCENARIO = """\
scenario: weather through a scenario, with secrets in the environment
profile: secret-scan.yaml
mocks:
  get_weather:
    output: {location: Paris, temperature: 18, unit: celsius}
turns:
  - user: What is the weather in Paris?
    expect:
      tools: [{name: get_weather}]
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("secrets")
    (root / "tmp").mkdir()
    (root / "secret-scan.yaml").write_text(PROFILE, encoding="utf-8")
    (root / "classic-agent.yaml").write_text(CLASSIC_AGENT, encoding="utf-8")
    (root / "scan.scenario.yaml").write_text(SCENARIO, encoding="utf-8")
    return root


def base_env(workdir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "VLRUN_", "OTEL_")) and k != "PYTEST_CURRENT_TEST"
    }
    env.update(SECRETS)
    env.update(
        {
            "TMPDIR": str(workdir / "tmp"),  # crash reports land here, inside the scan
            "VLRUN_DOTENV": "none",
            "VLRUN_TOOLS_ENTRY_POINTS": "0",
            "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000",
            "AZURE_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
            # Entra sign-in fails fast and offline: nothing listens on port 9
            "AZURE_AUTHORITY_HOST": "https://127.0.0.1:9",
            "PYTHONPATH": str(ROOT),
            "NO_COLOR": "1",
        }
    )
    return env


def vlrun(
    workdir: Path, *args: str, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=workdir,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def forms(value: str) -> set[str]:
    """A secret as it could leak: plain, URL-encoded, and base64 (standard and URL-safe, with
    and without padding, alone and as the password of a Basic credential)."""
    raw = value.encode()
    encoded = {urllib.parse.quote(value), urllib.parse.quote_plus(value)}
    for blob in (raw, b"user:" + raw):
        for b64 in (base64.b64encode(blob), base64.urlsafe_b64encode(blob)):
            encoded |= {b64.decode(), b64.decode().rstrip("=")}
    return {value} | encoded


def leaks(text: str) -> list[str]:
    """Every fake secret, or a recognisable piece of one, found in ``text``."""
    found = []
    for name, value in SECRETS.items():
        for form in forms(value):
            if form in text:
                found.append(f"{name} ({form})")
    if MARKER in text and not found:
        found.append(f"a fragment containing {MARKER}")
    return found


def files_under(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path


@pytest.fixture(scope="module")
def runs(workdir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the representative commands once; tests below inspect what they produced."""
    env = base_env(workdir)
    profile = str(workdir / "secret-scan.yaml")
    tools = str(ROOT / "tools")
    out: dict[str, subprocess.CompletedProcess[str]] = {}
    out["check"] = vlrun(workdir, "check", profile, str(ROOT / "profiles"), env=env)
    out["compile"] = vlrun(workdir, "compile", profile, "--tools", tools, env=env)
    out["explain"] = vlrun(workdir, "explain", profile, "--tools", tools, env=env)
    out["tools show"] = vlrun(workdir, "tools", "show", "get_weather", "--tools", tools, env=env)
    out["tools list"] = vlrun(workdir, "tools", "list", "--tools", tools, env=env)
    out["test"] = vlrun(
        workdir,
        "test",
        str(workdir / "scan.scenario.yaml"),
        "--junit",
        str(workdir / "junit.xml"),
        "--record",
        str(workdir / "recorded"),
        env=env,
    )
    out["emulate"] = _emulate(workdir, env)
    key = SECRETS["AZURE_VOICELIVE_API_KEY"]
    with emulator_thread(api_key=key, speed=0, use_espeak=False) as emu:
        conversation = [
            "run",
            profile,
            "--endpoint",
            emu.endpoint,
            "--text",
            "--tools",
            tools,
            "--logs",
            str(workdir / "logs"),
            "--trace",
            str(workdir / "trace.jsonl"),
            "--output",
            str(workdir / "reply.wav"),
            "--verbose",
        ]
        out["conversation"] = vlrun(
            workdir, *conversation, env=env, stdin="What is the weather in Paris?\n"
        )
        out["doctor"] = vlrun(workdir, "doctor", profile, "--endpoint", emu.endpoint, env=env)
    with emulator_thread(api_key="the-right-key-is-another-one", speed=0) as emu:
        out["failing auth"] = vlrun(
            workdir,
            "run",
            profile,
            "--endpoint",
            emu.endpoint,
            "--text",
            "--tools",
            tools,
            "--logs",
            str(workdir / "logs-auth"),
            "--trace",
            str(workdir / "trace-auth.jsonl"),
            env=env,
        )
        out["classic agent, Entra fails"] = vlrun(
            workdir,
            "run",
            str(workdir / "classic-agent.yaml"),
            "--endpoint",
            emu.endpoint,
            "--text",
            "--logs",
            str(workdir / "logs-agent"),
            env={k: v for k, v in env.items() if k != "AZURE_VOICELIVE_API_KEY"},
        )
    return out


def _emulate(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`vlrun emulate --api-key SECRET` until it has printed its paste lines, then Ctrl-C."""
    import signal

    key = SECRETS["AZURE_VOICELIVE_API_KEY"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "emulate", "--api-key", key],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # bounded by the test timeout
        seen.append(line)
        if "Press Ctrl-C" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + err)


def test_commands_ran_as_expected(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """The scan only means something if the commands really did their work."""
    codes = {name: r.returncode for name, r in runs.items()}
    assert codes["check"] == 0, runs["check"].stdout
    assert codes["compile"] == 0, runs["compile"].stderr
    assert codes["explain"] == 0, runs["explain"].stderr
    assert codes["tools show"] == 0, runs["tools show"].stderr
    assert codes["tools list"] == 0 and "get_weather" in runs["tools list"].stdout
    assert codes["test"] == 0, runs["test"].stdout + runs["test"].stderr
    assert "AZURE_VOICELIVE_API_KEY=" in runs["emulate"].stderr  # the paste line, masked
    assert codes["conversation"] == 0, runs["conversation"].stderr
    assert "you: What is the weather in Paris?" in runs["conversation"].stdout
    assert "[tool] get_weather" in runs["conversation"].stdout
    assert codes["failing auth"] == 3 and "refused" in runs["failing auth"].stderr
    assert codes["classic agent, Entra fails"] == 3
    # the MCP header really went out (masked) in the compiled payload
    assert "mcp.example.com" in runs["compile"].stdout
    for name, r in runs.items():
        assert "Traceback" not in r.stdout + r.stderr, name


@pytest.mark.parametrize(
    "name",
    [
        "check",
        "compile",
        "explain",
        "tools show",
        "tools list",
        "test",
        "emulate",
        "conversation",
        "doctor",
        "failing auth",
        "classic agent, Entra fails",
    ],
)
def test_no_secret_in_command_output(
    runs: dict[str, subprocess.CompletedProcess[str]], name: str
) -> None:
    result = runs[name]
    assert leaks(result.stdout) == [], f"stdout of {name}"
    assert leaks(result.stderr) == [], f"stderr of {name}"


def test_no_secret_in_any_file_written(
    workdir: Path, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    written = [
        p for p in files_under(workdir) if p.suffix not in (".yaml",) and p.name != "reply.wav"
    ]
    names = {p.name for p in written}
    assert {"trace.jsonl", "junit.xml"} <= names
    assert any(n.endswith(".jsonl") and n != "trace.jsonl" for n in names)  # --record
    assert any(n.endswith("_conversation.log") for n in names)
    assert any(n.endswith("_technical.log") for n in names)
    found = {
        str(p.relative_to(workdir)): hits
        for p in written
        if (hits := leaks(p.read_bytes().decode("utf-8", errors="replace")))
    }
    assert found == {}


def test_trace_shows_the_headers_were_sent_masked(
    workdir: Path, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    """The trace still records the MCP server (so it is useful), just not the credentials."""
    trace = (workdir / "trace.jsonl").read_text(encoding="utf-8")
    assert "mcp.example.com" in trace and "X-Api-Key" in trace
    assert "***" in trace


def test_the_scan_finds_a_planted_leak(workdir: Path) -> None:
    """Control: the same environment, a program that does print a secret, and the scan sees it."""
    env = base_env(workdir)
    code = "import os, urllib.parse as u; print(u.quote(os.environ['VLRUN_SCAN_MCP_TOKEN']))"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert leaks(result.stdout) == [f"VLRUN_SCAN_MCP_TOKEN ({SECRETS['VLRUN_SCAN_MCP_TOKEN']})"]
    assert leaks("…VLSCAN-apikey…") != []  # a fragment is a leak too


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: base64.b64encode(v.encode()).decode(),
        lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
        lambda v: base64.b64encode(b"user:" + v.encode()).decode(),
        urllib.parse.quote_plus,
    ],
    ids=["base64", "base64url", "basic-auth", "url-plus"],
)
def test_the_scan_sees_encoded_forms(encode: Any) -> None:
    value = SECRETS["AZURE_VOICELIVE_API_KEY"]
    assert leaks(f"header: {encode(value)}\n") != []
