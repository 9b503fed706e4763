"""`vlrun test [PATHS...]`: run conversation scenarios, print a summary, write JUnit, exit 0/1/2.

Scenarios run against the local emulator (each with its own, so they run in parallel) unless
``--endpoint`` names a Voice Live resource; then each scenario's ``model:`` block is ignored
and its expectations test the real model. ``--replay`` and ``--promote`` work on event
streams recorded with ``vlrun run --trace FILE.jsonl`` (see docs/testing.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.errors import EXIT_INVALID, EXIT_OK, UsageError
from runner.redact import redact
from runner.scenarios.suite import discover, gate_passed, run_all, summary_lines, write_junit


@click.command("test")
@click.argument("paths", nargs=-1)
@click.option(
    "--endpoint",
    help="Run against this Voice Live endpoint instead of the emulator (`model:` is ignored).",
)
@click.option("--api-version", help="api-version query parameter for the endpoint.")
@click.option("--junit", type=click.Path(path_type=Path), help="Write JUnit XML results here.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Scenarios run at the same time (each has its own emulator).",
)
@click.option(
    "--speed", type=click.FloatRange(0.1, 100), help="Emulator time factor for every scenario."
)
@click.option(
    "--record",
    "record_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep each scenario's event stream as DIR/NAME.jsonl (replayable).",
)
@click.option(
    "--replay",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Replay a recorded session (vlrun run --trace) into the runner and plugins.",
)
@click.option(
    "--promote",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Turn a recorded session into a scenario with proposed expectations.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --promote: write the scenario here (default: print it).",
)
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --replay/--promote: the profile the session ran.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Run every scenario N times; each gets a pass rate (flaky: some runs failed).",
)
@click.option(
    "--min-pass-rate",
    type=click.FloatRange(0.0, 1.0),
    default=1.0,
    show_default=True,
    help="The gate: each scenario must pass in at least this share of its runs (0.8 = 80 %).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show every failure and full transcripts.")
def test(
    paths: tuple[str, ...],
    endpoint: str | None,
    api_version: str | None,
    junit: Path | None,
    jobs: int,
    speed: float | None,
    record_dir: Path | None,
    replay: Path | None,
    promote: Path | None,
    output: Path | None,
    profile: Path | None,
    repeat: int,
    min_pass_rate: float,
    verbose: bool,
) -> int:
    """Run conversation scenarios against the emulator (default) or Azure; exit 0, 1 or 2."""
    from runner.live.transcript import process_log_levels

    process_log_levels()  # the technical log keeps the session's DEBUG lines (this program's)
    if replay and promote:
        raise UsageError("--replay and --promote exclude each other")
    if output is not None and promote is None:
        raise UsageError("-o/--output only applies to --promote")
    if promote is not None:
        from runner.scenarios.replay import promote_to_file

        text = promote_to_file(promote, profile=profile, output=output)
        if output is None:
            click.echo(text, nl=False)
        else:
            click.echo(
                f"wrote {output}; edit the proposed expectations, then: vlrun test {output}",
                err=True,
            )
        return EXIT_OK
    if replay is not None:
        from runner.scenarios.replay import replay_file

        outcome = replay_file(replay, profile=profile, tools=[Path(p) for p in paths])
        for line in outcome.report_lines(verbose=verbose):
            click.echo(redact(line))
        if junit is not None:
            write_junit([outcome.as_result()], junit)
        return EXIT_OK if outcome.ok else EXIT_INVALID
    files = discover(paths)
    if endpoint is None:
        click.echo("offline: each scenario runs against its own local emulator", err=True)
    results = run_all(
        files,
        endpoint=endpoint,
        api_version=api_version,
        jobs=jobs,
        speed=speed,
        record_dir=record_dir,
        repeat=repeat,
    )
    for line in summary_lines(results, verbose=verbose, min_pass_rate=min_pass_rate):
        click.echo(line)
    if junit is not None:
        write_junit(results, junit, min_pass_rate=min_pass_rate)
        click.echo(f"JUnit report: {junit}", err=True)
    sys.stdout.flush()
    return EXIT_OK if gate_passed(results, min_pass_rate) else EXIT_INVALID
