"""`vlrun check --devices`: the profile's audio against this machine's real sound devices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

G711 = "name: phone\ninstructions: x\naudio: {input_format: g711_ulaw, output_format: g711_ulaw}\n"


def _check(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "p.yaml").write_text(G711)
    return subprocess.run(
        [sys.executable, "-m", "runner", "check", str(tmp_path / "p.yaml"), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_sound_device_is_a_warning_that_says_what_will_happen(
    tmp_path: Path, cli_env: Any
) -> None:
    proc = _check(tmp_path, cli_env(), "--devices")  # cli_env hides every sound device
    assert proc.returncode == 0, proc.stdout + proc.stderr  # warnings: still a valid profile
    assert "p.yaml: warning: no microphone found" in proc.stdout
    assert "this profile runs in text mode here" in proc.stdout
    assert "this profile shows its replies as text only here" in proc.stdout
    plain = _check(tmp_path, cli_env())  # without --devices nothing is asked of the machine
    assert "warning" not in plain.stdout


@pytest.mark.audio
def test_8_khz_g711_meets_real_devices_through_resampling(
    pulse_audio: None, tmp_path: Path, cli_env: Any
) -> None:
    proc = _check(tmp_path, cli_env(sound=True), "--devices")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stdout, proc.stdout  # PulseAudio opens rates vlrun resamples
