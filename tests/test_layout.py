"""The house in wings: what may sit at the top, what `vlrun check` may load, what is public.

The import contracts themselves are import-linter's (pyproject.toml, run by the README's test
command); these tests hold the parts it cannot see.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import runner.plugins

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("azure.ai.voicelive.aio", "aiohttp", "pyaudio", "numpy", "soxr")


def _loaded_after(code: str) -> list[str]:
    """Modules from HEAVY that a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint([m for m in sys.modules if m.startswith({HEAVY!r})])"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return eval(out.strip().splitlines()[-1])  # a printed list of str


def test_importing_compile_loads_no_connection_audio_or_numpy() -> None:
    assert _loaded_after("import runner.config.compile") == []


@pytest.mark.parametrize("profile", ["weather", "calculator", "world-clock"])
def test_check_of_a_profile_with_tools_loads_no_connection_code(profile: str) -> None:
    code = f"from runner.cli import main\nassert main(['check', 'profiles/{profile}.yaml']) == 0"
    assert _loaded_after(code) == []


def test_top_level_holds_only_the_entry_errors_redaction_and_wings() -> None:
    top = sorted(p.name for p in (ROOT / "runner").iterdir() if not p.name.startswith("__"))
    modules = {n for n in top if n.endswith(".py")}
    packages = {n for n in top if (ROOT / "runner" / n / "__init__.py").exists()}
    assert modules == {
        "aio.py",
        "cli.py",
        "errors.py",
        "g711.py",
        "linewriter.py",
        "redact.py",
        "speedups.py",
        "testing.py",
    }
    assert packages == {
        "carrier",
        "commands",
        "config",
        "emulator",
        "evals",
        "flows",
        "live",
        "plugins",
        "scenarios",
        "serve",
    }


def test_plugin_internals_are_private_and_the_public_names_resolve() -> None:
    folder = ROOT / "runner" / "plugins"
    public = [p.name for p in folder.glob("*.py") if p.name != "__init__.py"]
    assert public and all(name.startswith("_") for name in public)
    for name in runner.plugins.__all__:
        assert getattr(runner.plugins, name) is not None
    assert {"tool", "Registry", "ToolContext", "ToolResult"} <= set(runner.plugins.__all__)
