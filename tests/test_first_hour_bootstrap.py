"""scripts/bootstrap.sh installs what each job needs once (issue 28, 5).

`make serve` needs the serve extra (`--serve-file`, /metrics); switching between `make run`,
`make serve` and `make test` must not re-run pip when the venv already holds what the job needs.
The script is sourced (its jobs do not run) and its venv_install is driven against a venv whose
python records the pip commands it is asked to run instead of installing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv whose python logs each `-m pip install ...` line and answers everything else."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1 $2 $3" = "-m pip install" ] && [ "$4" != "--upgrade" ]; then\n'
        '    shift 3; echo "$*" >>"$(dirname "$0")/../pip.log"\n'
        "fi\n"
    )
    python.chmod(0o755)
    return venv


def _job(venv: Path, *words: str) -> subprocess.CompletedProcess[str]:
    """What `venv_install WORDS` of a job does (e.g. serve: extra:serve)."""
    env = {**os.environ, "VLRUN_VENV": str(venv), "VLRUN_SETUP_LOG": str(venv / "setup.log")}
    script = f'source "{BOOTSTRAP}"; venv_install "$@"'
    return subprocess.run(
        ["bash", "-c", script, "bootstrap", *words],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _pip_runs(venv: Path) -> list[str]:
    log = venv / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


RUN = ("extra:audio",)
SERVE = ("extra:serve",)
TEST = ("extra:audio", "extra:serve", "group:test")


def test_serve_installs_the_serve_extra(venv: Path) -> None:
    assert _job(venv, *SERVE).returncode == 0
    assert _pip_runs(venv) == ["-e .[serve]"]


def test_switching_jobs_runs_pip_only_for_what_is_missing(venv: Path) -> None:
    assert _job(venv, *RUN).returncode == 0
    assert _pip_runs(venv) == ["-e .[audio]"]
    # serve needs more: one install of the union, so going back to run costs nothing.
    assert _job(venv, *SERVE).returncode == 0
    assert _pip_runs(venv)[1:] == ["-e .[audio,serve]"]
    for words in (RUN, SERVE, RUN, SERVE):
        assert _job(venv, *words).returncode == 0
    assert len(_pip_runs(venv)) == 2
    # test adds the test group; after it, every job is already covered.
    assert _job(venv, *TEST).returncode == 0
    assert _pip_runs(venv)[2:] == ["-e .[audio,serve] --group test"]
    for words in (RUN, SERVE, TEST, ()):
        assert _job(venv, *words).returncode == 0
    assert len(_pip_runs(venv)) == 3


def test_a_changed_pyproject_reinstalls_what_was_there(venv: Path) -> None:
    assert _job(venv, *TEST).returncode == 0
    stamp = venv / ".vlrun-installed"
    line = stamp.read_text()
    stamp.write_text("0000000000000000" + line[16:])  # as if pyproject.toml had changed since
    assert _job(venv, *RUN).returncode == 0
    # All that was installed before, not just what run needs (else test would install again).
    assert _pip_runs(venv) == ["-e .[audio,serve] --group test"] * 2
    assert _job(venv, *TEST).returncode == 0
    assert len(_pip_runs(venv)) == 2


def _make(venv: Path, job: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`scripts/bootstrap.sh JOB ARGS` whole, with the venv's vlrun printing its arguments."""
    vlrun = venv / "bin" / "vlrun"
    vlrun.write_text('#!/usr/bin/env bash\necho "vlrun $*"\n')
    vlrun.chmod(0o755)
    env = {**os.environ, "VLRUN_VENV": str(venv), "VLRUN_SETUP_LOG": str(venv / "setup.log")}
    return subprocess.run(
        ["bash", str(BOOTSTRAP), job, *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_make_serve_and_make_run_install_once_between_them(venv: Path) -> None:
    if subprocess.run(["dpkg", "-s", "portaudio19-dev"], capture_output=True).returncode != 0:
        pytest.skip("the run job would install portaudio19-dev first")
    serve = _make(venv, "serve", "--port", "0")
    assert serve.returncode == 0, serve.stderr
    assert serve.stdout.strip().endswith("vlrun serve --port 0")
    assert _pip_runs(venv) == ["-e .[serve]"]  # --serve-file and /metrics need it
    run = _make(venv, "run", "--text")
    assert run.returncode == 0 and run.stdout.strip().endswith("vlrun --text")
    assert _pip_runs(venv) == ["-e .[serve]", "-e .[audio,serve]"]
    for job in ("serve", "run", "serve"):
        assert _make(venv, job).returncode == 0
    assert len(_pip_runs(venv)) == 2
