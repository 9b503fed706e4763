"""`vlrun run / devices / doctor` as a user runs them: `python -m runner …` in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CASUAL = str(Path(__file__).resolve().parents[1] / "profiles" / "casual-chat.yaml")
KEY = "cli-test-key-abcdef123456"


def _has_pyaudio() -> bool:
    try:
        import pyaudio  # noqa: F401
    except ImportError:  # the audio extra is not installed (or PortAudio is missing)
        return False
    return True


needs_pyaudio = pytest.mark.skipif(
    not _has_pyaudio(), reason="needs the audio extra (pip install 'vlrun[audio]')"
)


def emu_env(emu: Any, key: str = KEY) -> dict[str, str]:
    return {"AZURE_VOICELIVE_ENDPOINT": emu.endpoint, "AZURE_VOICELIVE_API_KEY": key}


def test_text_mode_conversation(run_cli: Any, emulator_in_thread: Any, tmp_path: Path) -> None:
    result = run_cli(
        [CASUAL, "--text", "--logs", "mylogs"],
        input="hello there\nhow are you?\n",
        env=emu_env(emulator_in_thread),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out == [
        "you: hello there",
        "assistant: [emulator] You said: hello there",
        "you: how are you?",
        "assistant: [emulator] You said: how are you?",
    ]
    assert "Traceback" not in result.stderr
    assert KEY not in result.stdout + result.stderr
    convs = list((tmp_path / "mylogs").glob("*_conversation.log"))
    techs = list((tmp_path / "mylogs").glob("*_technical.log"))
    assert len(convs) == 1 and len(techs) == 1
    log = convs[0].read_text()
    assert "user: how are you?" in log and "session sess_" in log
    assert KEY not in log + techs[0].read_text()


def test_wav_in_and_out(
    run_cli: Any, emulator_in_thread: Any, tmp_path: Path, speech_wav: Path, wav_stats: Any
) -> None:
    trace = tmp_path / "trace.jsonl"
    result = run_cli(
        [
            CASUAL,
            "--input",
            str(speech_wav),
            "--fast",
            "--output",
            "reply.wav",
            "--trace",
            str(trace),
            "--logs",
            "-",
        ],
        env=emu_env(emulator_in_thread),
    )
    assert result.returncode == 0, result.stderr
    assert "assistant: [emulator] I heard" in result.stdout
    seconds, dbfs = wav_stats(tmp_path / "reply.wav")
    assert seconds > 0.5 and dbfs > -40  # real speech, not silence
    assert not (tmp_path / "logs").exists()  # --logs - writes none
    kinds = trace.read_text()
    assert '"input_audio_buffer.speech_started"' in kinds and '"response.audio.delta"' in kinds
    assert KEY not in kinds


def test_q_typed_right_after_a_turn_still_gets_its_reply(
    run_cli: Any, emulator_in_thread: Any
) -> None:
    # Lines are turns in order (a script piped in, or a quick typist): the reply already asked
    # for is shown and logged, then the session ends; nothing after the q is sent.
    result = run_cli(
        [CASUAL, "--text"], input="hello\nq\nnever sent\n", env=emu_env(emulator_in_thread)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["you: hello", "assistant: [emulator] You said: hello"]


def test_chunk_ms_sets_how_much_audio_each_append_carries(
    run_cli: Any, emulator_in_thread: Any, speech_wav: Path
) -> None:
    import base64

    before = len(emulator_in_thread.sessions)
    args = [CASUAL, "--input", str(speech_wav), "--fast", "--logs", "-"]
    # 70 is not whole 20 ms frames: the file and the appends both use 60 ms chunks
    result = run_cli([*args, "--chunk-ms", "70"], env=emu_env(emulator_in_thread))
    assert result.returncode == 0, result.stderr
    (session,) = emulator_in_thread.sessions[before:]
    sizes = [
        len(base64.b64decode(e["audio"]))
        for e in session.received
        if e["type"] == "input_audio_buffer.append"
    ]
    assert len(sizes) > 10 and set(sizes[:-1]) == {24000 * 2 * 60 // 1000}  # 60 ms of PCM16
    bad = run_cli([*args, "--chunk-ms", "5"], env=emu_env(emulator_in_thread))
    assert bad.returncode == 2 and "--chunk-ms" in bad.stderr and "Traceback" not in bad.stderr


def test_auth_failure_is_one_clear_line(run_cli: Any, tmp_path: Path) -> None:
    from runner.emulator import emulator_thread

    with emulator_thread(speed=0, api_key="the-right-key-123456") as emu:
        result = run_cli(
            [CASUAL, "--text"], input="hi\n", env=emu_env(emu, key="the-wrong-key-987654")
        )
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {emu.endpoint} refused the API key from AZURE_VOICELIVE_API_KEY (HTTP 401)"
    ]
    assert "Traceback" not in result.stderr and "the-wrong-key" not in result.stderr + result.stdout


def test_unreachable_endpoint(run_cli: Any) -> None:
    result = run_cli(
        [CASUAL, "--text"],
        input="hi\n",
        env={"AZURE_VOICELIVE_ENDPOINT": "http://127.0.0.1:9", "AZURE_VOICELIVE_API_KEY": KEY},
    )
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach http://127.0.0.1:9 ")
    assert "Traceback" not in result.stderr


def test_wrong_endpoint_variable_names_the_variable(run_cli: Any) -> None:
    result = run_cli([CASUAL, "--text", "--endpoint", "voice-live.example"], input="")
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[0]
        == "error: --endpoint: 'voice-live.example' is not an endpoint URL"
    )
    result = run_cli([CASUAL, "--text"], input="", env={"AZURE_VOICE_LIVE_API_KEY": KEY})
    assert result.returncode == 1
    assert "AZURE_VOICE_LIVE_API_KEY is set but no endpoint is configured" in result.stderr
    assert KEY not in result.stderr


@needs_pyaudio
def test_no_microphone_is_a_clear_line(run_cli: Any) -> None:
    result = run_cli([CASUAL, "--emulator", "--input-device", "USB headset"], input="")
    assert result.returncode == 3
    assert result.stderr.splitlines()[-2:] == [
        "error: no microphone found (PortAudio lists no input device)",
        "    hint: connect one, or use --text / --input FILE.wav; "
        "`vlrun devices` lists what is seen",
    ]


def test_embedded_default_runs_offline_in_text_mode(run_cli: Any) -> None:
    """No endpoint anywhere and no sound device: the main-job command still converses."""
    result = run_cli([CASUAL], input="good morning\n", timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("offline: local Voice Live emulator, scripted replies")
    assert "using text mode instead" in result.stderr
    # fallen back to text, it is paced as text: nobody waits for speech nobody plays
    assert "the emulator sends replies at 4x real time" in result.stderr
    assert "assistant: [emulator] You said: good morning" in result.stdout


def _after_one_turn(emu: Any, cwd: Path, cli_env: Any) -> subprocess.Popen[str]:
    """`vlrun --text` in a subprocess whose stdin stays open, once "hello" has been answered."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", CASUAL, "--text"],
        cwd=cwd,
        env=cli_env(emu_env(emu)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("hello\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "you: hello\n"
    assert proc.stdout.readline().startswith("assistant: [emulator] You said: hello")
    return proc


def _close(proc: subprocess.Popen[str]) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_q_and_enter_ends_cleanly(emulator_in_thread: Any, tmp_path: Path, cli_env: Any) -> None:
    proc = _after_one_turn(emulator_in_thread, tmp_path, cli_env)
    assert proc.stdin is not None
    proc.stdin.write("q\n")  # stdin stays open: only the q ends it
    proc.stdin.flush()
    assert proc.wait(20) == 0
    log = next((tmp_path / "state/vlrun/logs").glob("*_conversation.log")).read_text()
    assert "ended" in log.splitlines()[-1]  # flushed to the end
    _close(proc)


def test_ctrl_c_ends_cleanly(emulator_in_thread: Any, tmp_path: Path, cli_env: Any) -> None:
    proc = _after_one_turn(emulator_in_thread, tmp_path, cli_env)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(20) == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    _close(proc)


@needs_pyaudio
def test_devices_without_sound_hardware(run_cli: Any) -> None:
    result = run_cli(["devices"])
    assert result.returncode == 3
    assert result.stderr.startswith("no audio devices found")


def test_doctor_reports_one_line_per_finding(run_cli: Any, emulator_in_thread: Any) -> None:
    result = run_cli(["doctor", CASUAL], env=emu_env(emulator_in_thread))
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    assert any(line.startswith("ok   profile") for line in lines)
    assert f"ok   API key set in AZURE_VOICELIVE_API_KEY ({len(KEY)} characters)" in lines
    assert any(line.startswith("ok   connected and got a session (sess_") for line in lines)
    # without the audio extra doctor says so instead of looking for a microphone
    sound = "no microphone found" if _has_pyaudio() else "PyAudio is not available"
    assert any(sound in line for line in lines), lines
    assert KEY not in result.stdout
    result = run_cli(["doctor"], env={"AZURE_VOICELIVE_ENDPOINT": "nope"})
    assert result.returncode == 1
    assert (
        "fix  AZURE_VOICELIVE_ENDPOINT: 'nope' is not an endpoint URL"
        in result.stdout.splitlines()[-2:][0]
    )


def test_otel_without_opentelemetry_is_one_clear_line(run_cli: Any) -> None:
    import importlib.util

    if importlib.util.find_spec("opentelemetry") is not None:
        pytest.skip("OpenTelemetry is installed here; the message is for when it is not")
    result = run_cli([CASUAL, "--emulator", "--text", "--otel"], input="")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("error: --otel needs OpenTelemetry")
    assert "pip install 'vlrun[otel]'" in result.stderr
