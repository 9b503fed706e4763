"""scripts/pulse-env.sh never takes over or stops a sound server it did not start (issue 28, 1).

A "user" PulseAudio runs in its own runtime folder; the script is run with that environment, as
`make test` once did, and the user's server must keep its default sink and keep running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pulse-env.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("pulseaudio") is None or shutil.which("pactl") is None,
    reason="PulseAudio is not installed (apt-get install pulseaudio)",
)


def _env(runtime: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}
    env["PULSE_RUNTIME_PATH"] = str(runtime)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)


def _pulse_env(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(["bash", str(SCRIPT), command], env)


def _sinks(env: dict[str, str]) -> list[str]:
    out = _run(["pactl", "list", "short", "sinks"], env).stdout
    return [line.split("\t")[1] for line in out.splitlines() if "\t" in line]


@pytest.fixture
def user_pulse(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The user's own PulseAudio, with its own default speaker "usersink"."""
    runtime = tmp_path / "user-runtime"
    runtime.mkdir()
    env = _env(runtime)
    started = _run(
        [
            "pulseaudio",
            "-D",
            "-n",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=usersink",
            "--exit-idle-time=-1",
            "--log-target=stderr",
        ],
        env,
    )
    if started.returncode != 0:
        pytest.skip(f"PulseAudio could not start: {started.stderr.strip()}")
    try:
        assert _run(["pactl", "set-default-sink", "usersink"], env).returncode == 0
        yield env
    finally:
        _run(["pulseaudio", "--kill"], env)


def test_start_and_stop_leave_the_users_sound_server_alone(
    user_pulse: dict[str, str],
) -> None:
    started = _pulse_env("start", user_pulse)
    # It says why it did nothing, and how to get private devices.
    assert started.returncode == 3, started
    assert "did not start" in started.stderr and "PULSE_RUNTIME_PATH" in started.stderr

    default = _run(["pactl", "get-default-sink"], user_pulse).stdout.strip()
    assert default == "usersink"
    # Nothing added to the user's server either.
    assert _sinks(user_pulse) == ["usersink"]

    stopped = _pulse_env("stop", user_pulse)
    assert stopped.returncode == 0
    assert "left running" in stopped.stdout
    assert _run(["pulseaudio", "--check"], user_pulse).returncode == 0
    assert _run(["pactl", "get-default-sink"], user_pulse).stdout.strip() == "usersink"
    # status speaks only for pulse-env's own daemon.
    assert _pulse_env("status", user_pulse).returncode != 0


def test_its_own_daemon_gets_the_virtual_devices_and_stop_ends_only_it(
    tmp_path: Path, user_pulse: dict[str, str]
) -> None:
    private = tmp_path / "private-runtime"
    private.mkdir()
    env = _env(private)
    try:
        assert _pulse_env("start", env).returncode == 0
        first_pid = (private / "pid").read_text().strip()
        # Idempotent: a second start keeps the daemon and one copy of each sink.
        assert _pulse_env("start", env).returncode == 0
        assert (private / "pid").read_text().strip() == first_pid
        assert sorted(_sinks(env)) == ["vmic", "vspk"]
        assert _run(["pactl", "get-default-sink"], env).stdout.strip() == "vspk"
        assert _run(["pactl", "get-default-source"], env).stdout.strip() == "mic"
        assert _pulse_env("status", env).returncode == 0
    finally:
        stopped = _pulse_env("stop", env)
    assert stopped.returncode == 0, stopped
    assert _run(["pulseaudio", "--check"], env).returncode != 0
    # The user's daemon, running beside it all along, is untouched.
    assert _run(["pulseaudio", "--check"], user_pulse).returncode == 0
    assert _run(["pactl", "get-default-sink"], user_pulse).stdout.strip() == "usersink"
    assert _sinks(user_pulse) == ["usersink"]


def test_make_test_does_not_start_or_stop_a_sound_server_itself() -> None:
    """The tests start their private daemon (tests/conftest.py's pulse_audio fixture, with its
    own PULSE_RUNTIME_PATH); bootstrap's test job must not run pulse-env in the user's
    environment, where its stop at exit once killed the user's server."""
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    code = "\n".join(line for line in bootstrap.splitlines() if not line.lstrip().startswith("#"))
    assert "pulse-env.sh" not in code
