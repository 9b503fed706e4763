"""`vlrun compile`, `vlrun explain` and `vlrun schema`: what a profile turns into, and why.

Output is masked: registered secrets (MCP header values) and credential-shaped strings never
reach the terminal. The runner itself calls :func:`runner.config.compile.compile_session` directly.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from runner.commands._options import binding_check, parse_pairs, profile_options
from runner.errors import EXIT_OK, UsageError
from runner.redact import redact, redact_obj


def _compiled(
    profile: str,
    vars_: Sequence[str],
    sets: Sequence[str],
    api_version: str | None,
    tools_dirs: Sequence[Path],
) -> Any:
    from runner.config.explain import compiled

    result = compiled(
        Path(profile),
        vars=parse_pairs(vars_, "--var"),
        sets=sets,
        api_version=api_version,
        bindings=binding_check(tools_dirs),
    )
    for problem in result[2]:  # warnings; errors raised ProfileError
        click.echo(redact(problem.render()), err=True)
    return result


@click.command("compile")
@click.argument("profile", type=click.Path(dir_okay=False))
@profile_options("Compile for this api-version.")
@click.option("--greeting", is_flag=True, help="Also print the greeting response.create event.")
@click.option(
    "--node",
    metavar="NAME",
    help="A flow node's whole session.update (values not collected yet show as <name>).",
)
def compile_(
    profile: str,
    vars_: tuple[str, ...],
    sets: tuple[str, ...],
    api_version: str | None,
    tools_dirs: tuple[Path, ...],
    greeting: bool,
    node: str | None,
) -> int:
    """Print the session.update event PROFILE compiles to (secrets masked)."""
    from runner.config.compile import greeting_event

    loaded, payload, _, _, schemas = _compiled(profile, vars_, sets, api_version, tools_dirs)
    if node is not None:
        payload = _node_payload(loaded, payload, node, schemas)
    click.echo(json.dumps(redact_obj(payload), indent=2, ensure_ascii=False))
    if greeting:
        click.echo(json.dumps(redact_obj(greeting_event(loaded)), indent=2, ensure_ascii=False))
    return EXIT_OK


@click.command("explain")
@click.argument("profile", type=click.Path(dir_okay=False))
@profile_options("Compile for this api-version.")
def explain(
    profile: str,
    vars_: tuple[str, ...],
    sets: tuple[str, ...],
    api_version: str | None,
    tools_dirs: tuple[Path, ...],
) -> int:
    """Show each compiled field of PROFILE and where its value came from."""
    from runner.config.explain import explain_rows, flow_rows, format_rows

    loaded, payload, _, trace, schemas = _compiled(profile, vars_, sets, api_version, tools_dirs)
    rows = explain_rows(loaded, payload, trace, api_version) + flow_rows(loaded, payload, schemas)
    # Masked before the rows are cut and wrapped, so that no secret is split past the mask.
    masked = [(redact(name), redact(value), redact(origin)) for name, value, origin in rows]
    for line in format_rows(masked, _terminal_columns()):
        click.echo(redact(line))
    return EXIT_OK


def _terminal_columns() -> int | None:
    """The terminal's width (COLUMNS first), or None when output goes to a pipe or file: there
    a row is never cut, for grep and diff (COLUMNS alone is no terminal: test runners and CI
    set it for processes whose output is captured)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _node_payload(
    loaded: Any, payload: dict[str, Any], node: str, schemas: dict[str, Any] | None
) -> dict[str, Any]:
    from runner.config.flow import node_sessions
    from runner.config.suggest import suggest

    flow = loaded.flow
    if flow is None:
        raise UsageError(f"--node {node}: {profile_name(loaded)} has no flow")
    for found, update, _ in node_sessions(flow, payload, loaded.vars, schemas):
        if found.name == node:
            return update
    raise UsageError(
        f"--node {node}: the flow has no node {node!r}",
        hint=suggest(node, flow.nodes) or "nodes: " + ", ".join(flow.nodes),
    )


def profile_name(loaded: Any) -> str:
    return f"profile {loaded.name} ({loaded.source})"


@click.command("schema")
@click.option(
    "--kind", type=click.Choice(["profile", "scenario"]), default="profile", show_default=True
)
@click.option("--scenario", is_flag=True, help="Short for --kind scenario.")
def schema(kind: str, scenario: bool) -> int:
    """Print the JSON Schema (draft 2020-12) of profiles or scenarios."""
    from importlib import resources

    if scenario:
        kind = "scenario"
    resource = resources.files("runner.config.schema").joinpath(f"{kind}.schema.json")
    if not resource.is_file():
        raise UsageError(f"no {kind} schema in this vlrun")
    click.echo(resource.read_text("utf-8").rstrip("\n"))
    return EXIT_OK
