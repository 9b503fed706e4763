"""Options shared by several commands, and their parsing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from runner.errors import Problem, UsageError

F = TypeVar("F", bound=Callable[..., Any])


def parse_pairs(values: Sequence[str], option: str) -> dict[str, str]:
    """``NAME=VALUE`` items -> a dict; a malformed item is a usage error naming the option."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {item!r} must look like NAME=VALUE")
        out[key.strip()] = value
    return out


def profile_options(api_help: str) -> Callable[[F], F]:
    """--var, --set, --api-version and --tools, as check, compile and explain take them."""

    def decorate(func: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--var", "vars_", multiple=True, metavar="NAME=VALUE", help="Template variable."
                ),
                click.option(
                    "--set", "sets", multiple=True, metavar="PATH=VALUE", help="Override a setting."
                ),
                click.option("--api-version", default=None, help=api_help),
                tools_option,
            ]
        ):
            func = option(func)
        return func

    return decorate


tools_option = click.option(
    "--tools",
    "tools_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Extra folder of tool plugins.",
)


def binding_check(
    tools_dirs: Sequence[Path], *, run_plugins: bool = True
) -> Callable[[Any, list[Problem]], Any]:
    """`CheckOptions.bindings` for the plugins wing, imported only for profiles with tools.

    ``run_plugins=False`` reads the tool files as syntax trees and imports none of them.
    """

    def check(profile: Any, problems: list[Problem]) -> Any:
        flow = getattr(profile, "flow", None)
        node_tools = flow is not None and any(n.tools for n in flow.nodes.values())
        if not profile.tools and not node_tools:
            return None  # nothing names a plugin
        from runner import plugins

        how = plugins.check_bindings if run_plugins else plugins.check_bindings_statically
        return how(profile, problems, tools_dirs)

    return check
