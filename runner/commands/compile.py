"""`vlrun compile`, `vlrun explain` and `vlrun schema`: what a profile turns into, and why.

Output is masked: registered secrets (MCP header values) and credential-shaped strings never
reach the terminal. The runner itself calls :func:`runner.config.compile.compile_session` directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from runner.errors import EXIT_OK, Problem, ProfileError, UsageError
from runner.redact import redact, redact_obj

_common = [
    click.option("--var", "vars_", multiple=True, metavar="NAME=VALUE", help="Template variable."),
    click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help="Override a setting."),
    click.option("--api-version", default=None, help="Compile for this api-version."),
    click.option(
        "--tools",
        "tools_dirs",
        multiple=True,
        type=click.Path(file_okay=False),
        help="Extra folder of tool plugins.",
    ),
]


def _options(func: Any) -> Any:
    for option in reversed(_common):
        func = option(func)
    return func


def _load(
    profile_path: str,
    vars_: Sequence[str],
    sets: Sequence[str],
    api_version: str | None,
    tools_dirs: Sequence[str],
) -> tuple[Any, dict[str, Any], list[Problem], dict[Any, Any]]:
    from runner.commands.check import CheckOptions, _plugin_problems, parse_pairs
    from runner.config.compile import compile_with_problems
    from runner.config.load import load_profile

    path = Path(profile_path)
    if not path.is_file():
        raise UsageError(f"{profile_path}: no such profile file")
    profile = load_profile(path, vars=parse_pairs(vars_, "--var"), sets=sets)
    problems = list(profile.warnings)
    schemas = _plugin_problems(
        profile, CheckOptions(tools_dirs=[Path(d) for d in tools_dirs]), problems
    )
    payload, found, trace = compile_with_problems(
        profile, api_version=api_version, tool_schemas=schemas
    )
    problems += found
    if any(p.severity == "error" for p in problems):
        raise ProfileError(problems)
    for p in problems:
        click.echo(redact(p.render()), err=True)
    return profile, payload, problems, trace


@click.command("compile")
@click.argument("profile", type=click.Path(dir_okay=False))
@_options
@click.option("--greeting", is_flag=True, help="Also print the greeting response.create event.")
def compile_(
    profile: str,
    vars_: tuple[str, ...],
    sets: tuple[str, ...],
    api_version: str | None,
    tools_dirs: tuple[str, ...],
    greeting: bool,
) -> int:
    """Print the session.update event PROFILE compiles to (secrets masked)."""
    from runner.config.compile import greeting_event

    loaded, payload, _, _ = _load(profile, vars_, sets, api_version, tools_dirs)
    click.echo(json.dumps(redact_obj(payload), indent=2, ensure_ascii=False))
    if greeting:
        click.echo(json.dumps(redact_obj(greeting_event(loaded)), indent=2, ensure_ascii=False))
    return EXIT_OK


def _leaves(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def _dotted(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def origin_of(profile: Any, trace: dict[Any, Any], out_path: tuple[Any, ...]) -> str:
    """The profile place a compiled field came from, via the compile trace."""
    for i in range(len(out_path), 0, -1):
        source = trace.get(out_path[:i])
        if source is None:
            continue
        rest = out_path[i:]
        candidate = (*source, *rest)
        if candidate in profile.positions:
            source = candidate
        if source == ("instructions",) and profile.vars:
            used = ", ".join(f"{k} from {profile.var_origins.get(k, '?')}" for k in profile.vars)
            return f"{profile.origin(source) or 'default'}; vars: {used}"
        return profile.origin(source) or "default"
    return "default"


def _exact_origin(profile: Any, key: str) -> str:
    path = ("connection", key)
    if path not in profile.positions:
        return "default (SDK)" if key == "api_version" else "default"
    return str(profile.origin(path))


@click.command("explain")
@click.argument("profile", type=click.Path(dir_okay=False))
@_options
def explain(
    profile: str,
    vars_: tuple[str, ...],
    sets: tuple[str, ...],
    api_version: str | None,
    tools_dirs: tuple[str, ...],
) -> int:
    """Show each compiled field of PROFILE and where its value came from."""
    from runner.config.compile import effective_api_version

    loaded, payload, _, trace = _load(profile, vars_, sets, api_version, tools_dirs)
    masked = redact_obj(payload["session"])
    rows: list[tuple[str, str, str]] = []
    version = effective_api_version(loaded, api_version)
    version_from = "--api-version" if api_version else _exact_origin(loaded, "api_version")
    rows.append(("api_version", json.dumps(version), version_from))
    for key in ("endpoint", "model"):
        value = getattr(loaded.connection, key)
        rows.append(
            (
                f"connection.{key}",
                json.dumps(redact(value) if value else value),
                _exact_origin(loaded, key),
            )
        )
    if loaded.agent is not None:
        for key, value in {**loaded.agent.connect_kwargs(), **loaded.agent.query_params()}.items():
            rows.append(
                (
                    f"agent.{key}",
                    json.dumps(value),
                    loaded.origin(("connection", "agent")) or "default",
                )
            )
    for path, value in _leaves(masked, ()):
        text = json.dumps(value, ensure_ascii=False)
        if len(text) > 60:
            text = text[:57] + "..."
        rows.append(("session." + _dotted(path), text, origin_of(loaded, trace, path)))
    for name, value in loaded.vars.items():
        rows.append(
            (f"vars.{name}", json.dumps(redact_obj(value)), loaded.var_origins.get(name, "default"))
        )
    width = max(len(r[0]) for r in rows)
    vwidth = min(60, max(len(r[1]) for r in rows))
    for name, value, origin in rows:
        click.echo(redact(f"{name.ljust(width)}  {value.ljust(vwidth)}  <- {origin}"))
    return EXIT_OK


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
