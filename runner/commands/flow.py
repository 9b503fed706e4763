"""`vlrun flow PROFILE`: draw a profile's conversation flow (Mermaid, Graphviz dot or text)."""

from __future__ import annotations

from pathlib import Path

import click

from runner.commands._options import parse_pairs
from runner.errors import EXIT_OK, Problem, ProfileError, UsageError


@click.command("flow")
@click.argument("profile", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "text"]),
    default="mermaid",
    show_default=True,
    help="mermaid (GitHub renders it), dot (Graphviz: `| dot -Tsvg`) or an outline.",
)
@click.option("--var", "vars_", multiple=True, metavar="NAME=VALUE", help="A profile variable.")
def flow(profile: str, fmt: str, vars_: tuple[str, ...]) -> int:
    """Draw the conversation flow of PROFILE: nodes, values collected, transitions."""
    from runner.config.load import load_profile
    from runner.flows.draw import draw

    path = Path(profile)
    if not path.is_file():
        raise UsageError(f"{profile}: no such profile file")
    loaded = load_profile(path, vars=parse_pairs(vars_, "--var"))
    if loaded.flow is None:
        # The command line is fine; the profile lacks what it asks for: bad input (exit 1).
        raise ProfileError(
            [
                Problem(
                    profile,
                    None,
                    None,
                    "error",
                    "this profile has no flow to draw",
                    hint="add `flow:` with `start:` and `nodes:` (see docs/flows.md)",
                )
            ]
        )
    click.echo(draw(loaded.flow, fmt, title=loaded.name), nl=False)
    return EXIT_OK
