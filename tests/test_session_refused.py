"""A session the service refuses ends the run at once with the reason, and `vlrun check` sees
the same combinations first (the emulator refuses them as the service does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.cli import main

AZURE_SPEECH_SERVER_VAD = (
    "name: refused\ninstructions: x\nconnection: {model: gpt-realtime}\n"
    "turn_detection: server_vad\ntranscription: {model: azure-speech}\n"
)
EC_TEXT_ONLY = (
    "name: refused\ninstructions: x\nmodalities: [text]\naudio: {echo_cancellation: true}\n"
)


def test_a_refused_session_ends_the_run_without_reconnecting(
    tmp_path: Path,
    emulator_in_thread: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # no model named: `vlrun check` can only warn (the environment may choose a cascaded one)
    (tmp_path / "p.yaml").write_text(
        AZURE_SPEECH_SERVER_VAD.replace("connection: {model: gpt-realtime}\n", "")
    )
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", emulator_in_thread.endpoint)
    monkeypatch.setenv("AZURE_VOICELIVE_API_KEY", "k")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("hello\nq\n"))
    code = main(["run", str(tmp_path / "p.yaml"), "--text", "--logs", "-"])
    err = capsys.readouterr().err
    assert code != 0
    assert "warning: azure-speech transcription needs" in err  # what check said, shown first
    assert "error: the service refused the session: When using azure-speech" in err
    assert "(session.turn_detection.type)" in err
    assert "reconnecting" not in err and "Traceback" not in err
    assert len(emulator_in_thread.sessions) == 1  # the same settings were not sent again


@pytest.mark.parametrize(
    ("profile", "where", "message"),
    [
        (AZURE_SPEECH_SERVER_VAD, ":4:", "azure-speech transcription needs azure_semantic_vad"),
        (EC_TEXT_ONLY, ":4:", "echo cancellation needs audio output"),
    ],
)
def test_check_names_what_the_service_would_refuse(
    tmp_path: Path, profile: str, where: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(profile)
    assert main(["check", str(tmp_path / "p.yaml")]) == 1
    out = capsys.readouterr().out
    assert f"p.yaml{where}" in out and message in out
