"""`vlrun scenario TRACE`: turn a conversation `vlrun serve` recorded into a regression scenario.

TRACE is the conversation's ``<id>.trace.jsonl`` in serve's ``--logs`` folder (or one from
``vlrun run --trace``), or a conversation log (``*_conversation.log``: what serve keeps of a
phone call). The profile is found from serve's conversation log, or given with ``--profile``.
See runner/scenarios/from_trace.py and docs/reports.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from runner.errors import EXIT_OK, UsageError


@click.command("scenario")
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the scenario here (default: print it).",
)
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The profile the conversation ran (default: the one serve's log names).",
)
@click.option("--name", help="The scenario's name (default: from the trace's file name).")
def scenario(trace: Path, output: Path | None, profile: Path | None, name: str | None) -> int:
    """Turn a recorded conversation into a scenario file: the caller's turns, the model's
    replies and tool calls replayed offline, the tools answered as on the call, expectations
    proposed; secrets and phone numbers masked. TRACE is serve's LOGS/<id>.trace.jsonl, or a
    call's LOGS/*_conversation.log."""
    from runner.scenarios.from_trace import scenario_from_trace

    if not trace.is_file():
        raise UsageError(
            f"{trace}: no such trace file",
            hint="vlrun serve keeps each conversation's trace as LOGS/<id>.trace.jsonl and "
            "each call's log as LOGS/*_conversation.log (start it with --logs LOGS)",
        )
    if profile is not None and not profile.is_file():
        raise UsageError(f"{profile}: no such profile file")
    text = scenario_from_trace(trace, profile=profile, output=output, name=name)
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {output}; check it with: vlrun test {output}", err=True)
    return EXIT_OK
