"""`vlrun test [PATHS...]`: run conversation scenarios, print a summary, write JUnit, exit 0/1/2.

Scenarios run against the local emulator (each with its own, so they run in parallel) unless
``--endpoint`` names a Voice Live resource; then each scenario's ``model:`` block is ignored
and its expectations test the real model. ``--replay`` and ``--promote`` work on event
streams recorded with ``vlrun run --trace FILE.jsonl`` (see docs/testing.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from runner.errors import EXIT_INVALID, EXIT_OK, UsageError
from runner.redact import redact
from runner.scenarios.suite import (
    discover,
    flow_coverage,
    gate_passed,
    result_records,
    run_all,
    summary_lines,
    write_junit,
    write_results,
)


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
@click.option(
    "--caller",
    "caller_tier",
    type=click.Choice(["script", "text", "audio"]),
    default="script",
    show_default=True,
    help="How a scenario's `caller:` plays: its script, a chat model (text turns), or "
    "either spoken (audio).",
)
@click.option(
    "--caller-endpoint",
    metavar="MODEL@URL",
    help="The chat model playing callers (MODEL@URL[?api-version=V][&key-env=VAR]); "
    "offline: the emulator's.",
)
@click.option(
    "--judge-endpoint",
    metavar="MODEL@URL",
    help="The chat model judging rubrics (same form); offline: the emulator's, by the "
    "rubrics' offline rules.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seeds the audio caller's noise (with the run's number), for a run you can repeat.",
)
@click.option(
    "--via",
    type=click.Choice(["twilio", "acs", "sip"]),
    help="Tier 4: play each scenario's turns over this phone edge (an in-process vlrun serve "
    "and the simulated carrier), at real time.",
)
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every run as a line of JSON (results.jsonl): failures, turns, verdicts.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write an HTML report: pass rates, the judge's reasons, latency, each conversation "
    "on a time axis, flow coverage.",
)
@click.option(
    "--min-flow-coverage",
    type=click.FloatRange(0.0, 1.0),
    help="Fail unless the scenarios exercise at least this share of each flow they test "
    "(nodes, transitions, when: branches, values); prints what is not covered.",
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
    caller_tier: str,
    caller_endpoint: str | None,
    judge_endpoint: str | None,
    seed: int,
    via: str | None,
    results_path: Path | None,
    html_path: Path | None,
    min_flow_coverage: float | None,
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
    evals = _eval_settings(caller_tier, caller_endpoint, judge_endpoint, seed)
    phone_line = _phone_line(via, endpoint) if via is not None else None
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
        options={
            "evals": evals,
            "timeline": html_path is not None or results_path is not None,
            "via": via,
            "phone_line": phone_line,
        },
    )
    for line in summary_lines(results, verbose=verbose, min_pass_rate=min_pass_rate):
        click.echo(line)
    ok = gate_passed(results, min_pass_rate)
    coverage = flow_coverage(results) if html_path or min_flow_coverage is not None else {}
    if min_flow_coverage is not None:
        ok = _coverage_gate(coverage, min_flow_coverage) and ok
    if junit is not None:
        write_junit(results, junit, min_pass_rate=min_pass_rate)
        click.echo(f"JUnit report: {junit}", err=True)
    if results_path is not None or html_path is not None:
        records = result_records(results)
        if results_path is not None:
            write_results(records, results_path)
            click.echo(f"results: {results_path}", err=True)
        if html_path is not None:
            from runner.scenarios.report_html import write_html_report

            write_html_report(records, html_path, coverage=coverage or None)
            click.echo(f"HTML report: {html_path}", err=True)
    sys.stdout.flush()
    return EXIT_OK if ok else EXIT_INVALID


def _coverage_gate(coverage: dict[str, Any], minimum: float) -> bool:
    """Print each flow's coverage; False when one is under ``minimum``."""
    if not coverage:
        click.echo("flow coverage: no scenario tested a profile with a flow")
        return True
    ok = True
    for report in coverage.values():
        for line in report.render_text().rstrip("\n").splitlines():
            click.echo(redact(line))
        if report.ratio + 1e-9 < minimum:
            ok = False
            click.echo(
                f"flow coverage {report.ratio:.0%} of {report.title} is under the minimum "
                f"{minimum:.0%} (--min-flow-coverage)"
            )
    return ok


def _phone_line(via: str, endpoint: str | None) -> Any:
    """The simulated carrier's phone line for ``--via``: one this build can ring, on the
    emulator (the call's service is emulated). The scenario runner gets it from here: it sits
    below serve in the wings, and the line runs serve's phone edge."""
    from runner.carrier.phone_line import PROVIDERS, run_via_phone

    if endpoint is not None:
        raise UsageError(
            "--via plays the call against the emulator; it does not take --endpoint",
            hint="run the phone tier offline, and the same scenarios against Azure without --via",
        )
    if via not in PROVIDERS:
        raise UsageError(
            f"--via {via}: not a phone line vlrun test can ring yet",
            hint=f"use one of {', '.join(PROVIDERS)}",
        )
    return run_via_phone


def _eval_settings(
    tier: str, caller_endpoint: str | None, judge_endpoint: str | None, seed: int
) -> Any:
    """Callers' tier and the chat endpoints; runner.evals only when an endpoint is named."""
    from runner.scenarios.judged import EvalSettings

    caller = judge = None
    if caller_endpoint or judge_endpoint:
        from runner.evals import ChatEndpoint

        if caller_endpoint:
            caller = ChatEndpoint.parse(caller_endpoint, option="--caller-endpoint")
        if judge_endpoint:
            judge = ChatEndpoint.parse(judge_endpoint, option="--judge-endpoint")
    return EvalSettings(tier, caller, judge, seed)
