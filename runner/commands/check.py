"""`vlrun check PATH...`: validate every file, report every problem at once, exit 0/1/2."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from runner.commands._options import binding_check, parse_pairs, profile_options
from runner.commands._reporters import REPORTERS, summary
from runner.config.check import CheckOptions, FileKind, check_paths, is_invalid, register_kind
from runner.errors import EXIT_INVALID, EXIT_OK, Problem

_SCENARIO = re.compile(r"^(scenarios?|turns)\s*:", re.MULTILINE)
_SCENARIO_CHECK = "runner.scenarios.files:check_file"


def _is_scenario_file(_path: Path, head: str) -> bool:
    # Every profile is asked: substring searches for a line that starts with either word are
    # ~5x cheaper than the regex's scan of each line, and rule most profiles out.
    return (
        head.startswith(("scenario", "turns")) or "\nscenario" in head or "\nturns" in head
    ) and bool(_SCENARIO.search(head))


# Scenario files (and emulator model scripts) belong to the scenarios wing, above config.
register_kind(FileKind("scenario", _is_scenario_file, _SCENARIO_CHECK))


def _device_check(path: str, session: dict[str, Any]) -> list[Problem]:
    from runner.live.devices import device_problems  # audio code only when asked for

    return device_problems(path, session)


@click.command("check")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(REPORTERS, key=["text", "json", "github"].index)),
    default="text",
    show_default=True,
    help="github: workflow annotations.",
)
@profile_options("Check against this api-version.")
@click.option(
    "--no-plugins",
    is_flag=True,
    help="Import no tool plugin: read them as syntax (for untrusted code, e.g. pull requests).",
)
@click.option(
    "--devices",
    is_flag=True,
    help="Also warn where this machine's microphone or speaker cannot carry the audio.",
)
def check(
    paths: tuple[str, ...],
    fmt: str,
    vars_: tuple[str, ...],
    sets: tuple[str, ...],
    api_version: str | None,
    tools_dirs: tuple[Path, ...],
    no_plugins: bool,
    devices: bool,
) -> int:
    """Validate profiles (files, folders, globs); print every problem as file:line:col."""
    options = CheckOptions(
        vars=parse_pairs(vars_, "--var"),
        sets=sets,
        tools_dirs=tools_dirs,
        api_version=api_version,
        bindings=binding_check(tools_dirs, run_plugins=not no_plugins),
        bindings_for=lambda dirs: binding_check(dirs, run_plugins=not no_plugins),
        devices=_device_check if devices else None,
    )
    results = check_paths(paths, options)
    REPORTERS[fmt]().report(results)
    click.echo(summary(results), err=True)
    return EXIT_INVALID if any(is_invalid(ps) for _, ps in results) else EXIT_OK
