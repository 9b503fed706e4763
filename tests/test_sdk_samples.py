"""The official azure-ai-voicelive samples, run unchanged against the emulator.

The samples ship in the SDK's source distribution. It is downloaded with pip at set-up (the
installed version, cached under ~/.cache/vlrun-test) and nothing of it is copied into this
repository. Each sample runs as a subprocess with only its endpoint and key settings (and, for
the agent sample, the agent's names) pointing at the emulator; the microphone samples talk
through the private PulseAudio null sinks (espeak speech is played into the virtual mic).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import emulator_thread

VERSION = importlib.metadata.version("azure-ai-voicelive")
CACHE = Path.home() / ".cache" / "vlrun-test" / f"azure-ai-voicelive-{VERSION}"
KEY = "sample-key-not-a-secret"
WAIT_S = 45.0  # bound on any one line a sample must print

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="session")
def samples() -> Path:
    root = CACHE / f"azure_ai_voicelive-{VERSION}" / "samples"
    if root.is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", f"azure-ai-voicelive=={VERSION}"]
            + ["--no-deps", "--no-binary", ":all:", "-d", str(CACHE), "-q"],
            capture_output=True,
            text=True,
            timeout=240,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot download the azure-ai-voicelive {VERSION} sdist: {exc}")
    archives = sorted(CACHE.glob(f"azure_ai_voicelive-{VERSION}.tar.gz"))
    if got.returncode != 0 or not archives:
        pytest.skip(
            f"cannot download the azure-ai-voicelive {VERSION} sdist (offline?): "
            + (got.stderr.strip().splitlines() or ["no archive"])[-1]
        )
    with tarfile.open(archives[0]) as tar:
        tar.extractall(CACHE, filter="data")
    if not root.is_dir():
        pytest.skip(f"the {VERSION} sdist has no samples/ folder")
    return root


@pytest.fixture
def audio_devices(pulse_audio: None) -> None:
    if shutil.which("paplay") is None:
        pytest.skip("paplay missing (apt-get install pulseaudio-utils)")


@pytest.fixture(scope="module")
def spoken(speech_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The speech with a second of silence before it: the sample opens its microphone stream
    just after printing the line we start playing on, and must not miss the first words."""
    out = tmp_path_factory.mktemp("spoken") / "padded.wav"
    with wave.open(str(speech_wav)) as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params)
        gap = b"\0" * params.sampwidth * params.nchannels * params.framerate
        dst.writeframes(gap + frames + gap)
    return out


@contextlib.contextmanager
def emulator(script: dict[str, Any]) -> Iterator[Any]:
    with emulator_thread(speed=0, scenario=script, api_key=KEY, use_espeak=False) as emu:
        yield emu


def sample_env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {
        "AZURE_VOICELIVE_ENDPOINT": endpoint,
        "AZURE_VOICELIVE_API_KEY": KEY,
        "AZURE_VOICELIVE_USE_API_KEY": "true",
        **extra,
        # plumbing only: where programs and audio are, and unbuffered UTF-8 output to read
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    for name in ("PULSE_RUNTIME_PATH", "XDG_RUNTIME_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


async def run_sample(
    script: Path,
    env: dict[str, str],
    cwd: Path,
    expect: list[str],
    *,
    speak_after: str | None = None,
    speech: Path | None = None,
    args: tuple[str, ...] = (),
    answers: str | None = None,
) -> str:
    """Run ``script`` until every ``expect`` regex has matched a line, in order; then Ctrl-C.

    When a line matches ``speak_after``, ``speech`` is played into the virtual microphone.
    Returns everything it printed (stdout and stderr, merged).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *args,
        stdin=asyncio.subprocess.PIPE if answers else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
    )
    assert proc.stdout is not None
    if answers and proc.stdin is not None:  # what a person would type at its prompts
        proc.stdin.write(answers.encode())
        await proc.stdin.drain()
    lines: list[str] = []
    play: asyncio.subprocess.Process | None = None
    pending = list(expect)
    try:
        while pending:
            raw = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if speak_after and speech and play is None and re.search(speak_after, line):
                play = await asyncio.create_subprocess_exec(
                    "paplay", "--device=vmic", str(speech), env=env
                )
            if re.search(pending[0], line):
                pending.pop(0)
    except TimeoutError:
        pass
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                rest, _ = await asyncio.wait_for(proc.communicate(), 15)
                lines.extend(rest.decode("utf-8", "replace").splitlines())
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if play is not None and play.returncode is None:
            await asyncio.wait_for(play.wait(), 30)
    text = "\n".join(lines)
    assert not pending, f"{script.name} never printed {pending[0]!r}:\n{text[-4000:]}"
    assert KEY not in text
    return text


WEATHER_SCRIPT = {
    "turns": [
        {
            "turn": 1,
            "transcript": "What's the weather in Seattle?",
            "tools": [{"name": "get_current_weather", "arguments": {"location": "Seattle"}}],
            "then": "It is {output.temperature} degrees and {output.condition} in Seattle.",
        }
    ]
}


async def test_function_calling_sample(
    samples: Path, audio_devices: None, spoken: Path, tmp_path: Path
) -> None:
    with emulator(WEATHER_SCRIPT) as emu:
        out = await run_sample(
            samples / "async_function_calling_sample.py",
            sample_env(emu.endpoint),
            tmp_path,
            [
                r"VOICE ASSISTANT WITH FUNCTION CALLING READY",
                r"🎤 Listening\.\.\.",
                r"🔧 Calling function: get_current_weather",
                r"Function result sent: .*'location': 'Seattle'",
                r"Final response transcript: It is 22 degrees and Partly Cloudy in Seattle\.",
            ],
            speak_after=r"Ready for voice input",
            speech=spoken,
        )
    assert "Error" not in out.split("Final response transcript")[0].replace("ErrorType", "")


MCP_SCRIPT = {
    "turns": [
        {
            "turn": 1,
            "transcript": "Can you summarise the GitHub repo azure sdk for python?",
            "mcp": {
                "server_label": "deepwiki",
                "name": "ask_question",
                "arguments": {"repoName": "Azure/azure-sdk-for-python"},
                "output": "[emulator] It holds the Azure SDKs for Python.",
            },
        }
    ]
}


async def test_mcp_sample(samples: Path, audio_devices: None, spoken: Path, tmp_path: Path) -> None:
    with emulator(MCP_SCRIPT) as emu:
        out = await run_sample(
            samples / "async_mcp_sample.py",
            sample_env(emu.endpoint),
            tmp_path,
            [
                r"VOICE ASSISTANT WITH MCP READY",
                r"MCP list tools completed",
                r"MCP Call triggered: server_label=deepwiki, function_name=ask_question",
                r'MCP Call arguments received: \{"repoName": "Azure/azure-sdk-for-python"\}',
                r"MCP call completed for",
                r"MCP Call output received: \[emulator\] It holds the Azure SDKs for Python\.",
                r"🤖 Assistant finished speaking",
            ],
            speak_after=r"Ready for voice input",
            speech=spoken,
        )
        # the sample asked for the spoken answer itself, after the call completed
        creates = [e for e in emu.sessions[0].received if e["type"] == "response.create"]
    assert len(creates) == 1
    assert "Item ID mismatch" not in out and "Timeout waiting" not in out


async def test_mcp_sample_approval(
    samples: Path, audio_devices: None, spoken: Path, tmp_path: Path
) -> None:
    script = {
        "turns": [
            {
                "turn": 1,
                "transcript": "Can you summarise the Azure docs about voice live?",
                "mcp": {
                    "server_label": "azure_doc",
                    "name": "microsoft_docs_search",
                    "arguments": {"query": "voice live"},
                    "output": "[emulator] Voice Live is a speech to speech API.",
                },
            }
        ]
    }
    with emulator(script) as emu:
        await run_sample(
            samples / "async_mcp_sample.py",
            sample_env(emu.endpoint),
            tmp_path,
            [
                r"MCP Approval Request received: .*server_label=azure_doc",
                r"MCP Call triggered: server_label=azure_doc",
                r"MCP call completed for",
                r"MCP Call output received: \[emulator\] Voice Live is a speech to speech API\.",
                r"🤖 Assistant finished speaking",
            ],
            speak_after=r"Ready for voice input",
            speech=spoken,
            answers="y\n",
        )
        received = emu.sessions[0].received
    approvals = [
        e["item"] for e in received if e.get("item", {}).get("type") == "mcp_approval_response"
    ]
    assert [a["approve"] for a in approvals] == [True]
    # the sample sends no response.create after approving: the emulator went on by itself;
    # the only one it sent asked for the spoken answer after the call completed
    assert sum(e["type"] == "response.create" for e in received) == 1


async def test_basic_voice_assistant_sample(
    samples: Path, audio_devices: None, spoken: Path, tmp_path: Path
) -> None:
    script = {"turns": [{"turn": 1, "transcript": "Hello", "say": "Hello from the emulator."}]}
    with emulator(script) as emu:
        await run_sample(
            samples / "basic_voice_assistant_async.py",
            sample_env(emu.endpoint),
            tmp_path,
            [
                r"VOICE ASSISTANT READY",
                r"Session ready: sess_",
                r"🎤 Listening\.\.\.",
                r"🤔 Processing\.\.\.",
                r"Assistant response created",
                r"🎤 Ready for next input\.\.\.",
                r"Response complete",
            ],
            speak_after=r"Session ready",
            speech=spoken,
        )
        said = [e for e in emu.sessions[0].sent if e["type"] == "response.audio_transcript.done"]
    assert [e["transcript"] for e in said] == ["Hello from the emulator."]


async def test_agent_v2_sample(
    samples: Path, audio_devices: None, spoken: Path, tmp_path: Path
) -> None:
    script = {
        "turns": [
            {"turn": 0, "say": "Hi, I am the emulated agent."},
            {"turn": 1, "transcript": "What time is it in Tokyo?", "say": "It is late in Tokyo."},
        ]
    }
    with emulator(script) as emu:
        env = sample_env(emu.endpoint, AGENT_NAME="emulated-agent", AGENT_PROJECT_NAME="proj")
        await run_sample(
            samples / "agent_v2_sample.py",
            env,
            tmp_path,
            [
                r"AGENT V2 VOICE ASSISTANT READY",
                r"Agent: emulated-agent",
                r"👤 You said:\s+User Input:\s+What time is it in Tokyo\?",
                r"🤖 Agent responded with audio transcript:.*\sIt is late in Tokyo\.",
            ],
            speak_after=r"Session ready|session updated|Session updated",
            speech=spoken,
        )
        query = emu.sessions[0].query
    assert (query.get("agent-name"), query.get("agent-project-name")) == ("emulated-agent", "proj")


async def test_console_telemetry_sample(samples: Path, tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the telemetry sample needs opentelemetry-sdk")
    with emulator({"turns": [{"match": "joke", "say": "[emulator] No jokes here."}]}) as emu:
        out = await run_sample(
            samples / "telemetry" / "sample_voicelive_with_console_tracing.py",
            sample_env(emu.endpoint),
            tmp_path,
            [
                r"Connected to VoiceLive at http://127\.0\.0\.1:",
                r"Session configured\.",
                r"User message sent\.",
                r"Received event: (ServerEventType\.)?(RESPONSE_TEXT_DELTA|response\.text\.delta)",
                r"Response complete\.",
                r"Connection closed\.",
            ],
        )
        said = [e for e in emu.sessions[0].sent if e["type"] == "response.text.done"]
    assert [e["text"] for e in said] == ["[emulator] No jokes here."]
    assert '"name":' in out  # the console exporter printed spans
