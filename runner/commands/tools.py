"""`vlrun tools list` and `vlrun tools show NAME`: which tools load, and what the model sees."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from runner.errors import EXIT_INVALID, EXIT_OK
from runner.plugins import ENTRY_POINT_GROUP, Registry, ToolSpec, schema_drift
from runner.redact import redact

_PROFILE_HELP = "Profile whose tools/ folder and tool bindings to use."
_TOOLS_HELP = (
    "Folder (or .py file) of tools; repeatable. Default: tools/ next to the profile or in the "
    "folder above it; without a profile, ./tools."
)

_profile_option = click.option(
    "--profile",
    "-p",
    "profile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=_PROFILE_HELP,
)
_tools_option = click.option(
    "--tools", "dirs", multiple=True, type=click.Path(exists=True, path_type=Path), help=_TOOLS_HELP
)
_no_entry_points_option = click.option(
    "--no-entry-points", is_flag=True, help="Skip tools from installed packages."
)


@click.group()
def tools() -> None:
    """List and inspect tool plugins."""


@tools.command("list")
@_profile_option
@_tools_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_no_entry_points_option
def list_(
    profile: Path | None, dirs: tuple[Path, ...], as_json: bool, no_entry_points: bool
) -> int:
    """List tools: where each comes from, and which ones the profile binds."""
    registry, bindings = _load(profile, dirs, entry_points=not no_entry_points)
    rows = []
    for spec in registry:
        binding = bindings.get(spec.name)
        rows.append(
            {
                "name": spec.name,
                "source": spec.source,
                "description": _description(spec, binding),
                "async": spec.is_async,
                "context": spec.wants_context,
                "bound": binding is not None if profile else None,
                "timeout_s": getattr(binding, "timeout_s", None),
            }
        )
    missing = [name for name in bindings if name not in registry]
    if as_json:
        click.echo(json.dumps({"tools": rows, "missing": missing}, indent=2))
    elif rows:
        _table(rows, with_binding=profile is not None)
    else:
        looked = ", ".join(str(d) for d in _dirs(profile, dirs)) or "no tools/ folder here"
        click.echo(f"no tools found (looked in: {looked}; entry points: {ENTRY_POINT_GROUP})")
    for name in missing:
        line = getattr(bindings[name], "line", None)
        where = f"{profile}:{line}" if profile and line else str(profile)
        click.echo(
            f"{where}: error: the profile binds tool '{name}' but no plugin provides it",
            err=True,
        )
    return EXIT_INVALID if missing else EXIT_OK


@tools.command("show")
@click.argument("name")
@_profile_option
@_tools_option
@_no_entry_points_option
def show(name: str, profile: Path | None, dirs: tuple[Path, ...], no_entry_points: bool) -> int:
    """Print the definition the model sees in session.update (JSON)."""
    registry, bindings = _load(profile, dirs, entry_points=not no_entry_points)
    spec = registry.get(name)  # ToolError with "did you mean" if unknown
    definition = spec.definition()
    definition["description"] = _description(spec, bindings.get(name))
    click.echo(redact(json.dumps(definition, indent=2, ensure_ascii=False)))
    click.echo(f"# from {spec.source}" + (" (async)" if spec.is_async else ""), err=True)
    binding = bindings.get(name)
    declared = getattr(binding, "parameters", None)
    if declared is None:
        return EXIT_OK
    drift = schema_drift(declared, spec.parameters)
    line = getattr(binding, "line", None)
    where = f"{profile}:{line}" if line else str(profile)
    for subpath, message in drift:
        click.echo(f"{where}: error: declared parameters differ at {subpath}: {message}", err=True)
    return EXIT_INVALID if drift else EXIT_OK


def _dirs(profile: Path | None, dirs: Sequence[Path]) -> list[Path]:
    if profile is not None:
        from runner.plugins import tool_dirs  # the one rule every command uses

        return list(tool_dirs(profile, dirs))
    if dirs:
        return list(dirs)
    folder = Path.cwd() / "tools"
    return [folder] if folder.is_dir() else []


def _load(
    profile: Path | None, dirs: Sequence[Path], *, entry_points: bool
) -> tuple[Registry, dict[str, Any]]:
    bindings = _bindings(profile) if profile else {}
    registry = Registry.discover(_dirs(profile, dirs), entry_points=entry_points)
    return registry, bindings


def _bindings(profile: Path) -> dict[str, Any]:
    """Tool bindings by name from the profile, if the profile loader is available."""
    try:
        from runner.config.load import load_profile
    except ImportError:
        click.echo(
            "note: profile loading is not available in this build; "
            "using only the profile's tools/ folder",
            err=True,
        )
        return {}
    loaded = load_profile(profile)
    return {b.name: b for b in getattr(loaded, "tools", ())}


def _description(spec: ToolSpec, binding: Any) -> str:
    override = getattr(binding, "description", None) if binding is not None else None
    return override or spec.description


def _table(rows: list[dict[str, Any]], *, with_binding: bool) -> None:
    # Shorten descriptions only for a person at a terminal; pipes and files get them whole.
    interactive = sys.stdout.isatty()
    width = shutil.get_terminal_size((120, 20)).columns
    name_w = max(len("NAME"), *(len(r["name"]) for r in rows))
    src_w = max(len("SOURCE"), *(len(r["source"]) for r in rows))
    head = f"{'NAME':<{name_w}}  {'SOURCE':<{src_w}}  "
    if with_binding:
        head += f"{'BOUND':<7}"
    click.echo(head + "DESCRIPTION")
    for r in rows:
        line = f"{r['name']:<{name_w}}  {r['source']:<{src_w}}  "
        if with_binding:
            timeout = f" {r['timeout_s']:g}s" if r["timeout_s"] else ""
            line += f"{('yes' + timeout) if r['bound'] else 'no':<7}"
        summary = (r["description"] or "(no description)").split("\n")[0]
        room = max(20, width - len(line))
        if interactive and len(summary) > room:
            summary = summary[: room - 1] + "…"
        click.echo(line + summary)
