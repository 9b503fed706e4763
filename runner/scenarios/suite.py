"""A suite of scenarios: find the files, run them side by side, summarise, write JUnit.

Scenarios run against the local emulator (each with its own, so they run in parallel) unless
an endpoint names a Voice Live resource; then each scenario's ``model:`` block is ignored
and its expectations test the real model.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from runner.errors import OutputError, Problem, UsageError
from runner.redact import redact, xml_text

DEFAULT_PATHS = ("tests/scenarios",)
_SCENARIO_KEY = re.compile(r"^scenarios?\s*:", re.MULTILINE)


def discover(paths: Sequence[str]) -> list[Path]:
    """Scenario files among files, folders and globs; folders keep only files with
    `scenario:` or `scenarios:`."""
    from runner.config.check import expand, file_head

    wanted = list(paths) or [p for p in DEFAULT_PATHS if os.path.isdir(p)]
    if not wanted:
        raise UsageError(
            "no scenarios given and no tests/scenarios folder here",
            hint="pass scenario files or folders: vlrun test path/to/scenarios",
        )
    out = []
    for path in expand(wanted):
        explicit = str(path) in wanted
        if explicit or _SCENARIO_KEY.search(file_head(path)):
            out.append(path)
    if not out:
        raise UsageError(
            f"no scenario files in {', '.join(wanted)}",
            hint="a scenario is a YAML file with a top-level `scenario:` key (docs/testing.md)",
        )
    return out


# --- running ----------------------------------------------------------------------------------


def run_all(
    paths: Sequence[Path],
    *,
    endpoint: str | None = None,
    api_version: str | None = None,
    jobs: int = 4,
    speed: float | None = None,
    record_dir: Path | None = None,
    repeat: int = 1,
    options: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Load and run every scenario ``repeat`` times; returns a ScenarioResult per run (an
    invalid file as one failed result), runs of one scenario together, in file order.

    ``options`` are further :class:`~runner.scenarios.run.RunSettings` fields (the caller
    and judge tiers, a phone edge)."""
    return asyncio.run(
        _run_all(paths, endpoint, api_version, jobs, speed, record_dir, repeat, options or {})
    )


async def _run_all(
    paths: Sequence[Path],
    endpoint: str | None,
    api_version: str | None,
    jobs: int,
    speed: float | None,
    record_dir: Path | None,
    repeat: int,
    options: Mapping[str, Any],
) -> list[Any]:
    from runner.scenarios.files import analyse_file
    from runner.scenarios.run import RunSettings, ScenarioResult, run_scenario_async

    limit = asyncio.Semaphore(max(1, jobs))
    loaded: list[tuple[Path, Any, list[Problem]]] = []
    for path in paths:
        scenarios, problems = analyse_file(path)
        # an invalid file is one failed entry; a valid one gives each of its scenarios
        loaded += [(path, s, problems) for s in scenarios] or [(path, None, problems)]
    taken: set[str] = set()  # recording names, given in file order so reruns agree
    runs = max(1, repeat)
    plan = [
        (
            path,
            scenario,
            problems,
            n,
            _trace_path(record_dir, _run_name(scenario.name, n, runs), path.stem, taken)
            if record_dir is not None and scenario is not None
            else None,
        )
        for path, scenario, problems in loaded
        for n in range(runs if scenario is not None else 1)
    ]

    async def one(
        path: Path, scenario: Any, problems: list[Problem], n: int, trace: Path | None
    ) -> Any:
        if scenario is None:
            result = ScenarioResult(path, path.stem)
            result.failures = [_problem_failure(p) for p in problems if p.severity == "error"]
            return result
        settings = RunSettings(endpoint, api_version, trace, speed, repeat=n, **options)
        async with limit:
            return await run_scenario_async(scenario, settings)

    return list(await asyncio.gather(*(one(*step) for step in plan)))


def _run_name(name: str, n: int, runs: int) -> str:
    """A run's recording name: the scenario's, with ``-run2`` and on when it repeats."""
    return name if runs == 1 else f"{name}-run{n + 1}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10))})
_RESERVED |= {f"lpt{i}" for i in range(10)}


def record_name(name: str, fallback: str = "scenario") -> str:
    """A file name for a scenario's recording, derived from its name: letters, digits, '.',
    '_' and '-' only, no leading dot, at most 100 characters. A name such as ``../../x``
    becomes ``x``: a name is a label, never a path."""
    slug = _UNSAFE.sub("-", name).strip(".-_")[:100].rstrip(".-_")
    if not slug:
        slug = _UNSAFE.sub("-", fallback).strip(".-_")[:100] or "scenario"
    if slug.split(".")[0].lower() in _RESERVED:  # names Windows will not create
        slug = f"{slug}-scenario"
    return slug


def _trace_path(record_dir: Path, name: str, stem: str, taken: set[str]) -> Path:
    """``DIR/NAME.jsonl``, always inside ``record_dir``; two scenarios never share a file."""
    base = record_name(name, stem)
    slug, n = base, 1
    while slug.lower() in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug.lower())
    trace = record_dir / f"{slug}.jsonl"
    try:
        record_dir.mkdir(parents=True, exist_ok=True)
        # The transcript appends; a rerun starts a fresh recording. A link left in its place
        # is removed, not followed, so the recording is written in the folder.
        trace.unlink(missing_ok=True)
    except OSError as exc:
        why = "it is not a folder" if record_dir.exists() and not record_dir.is_dir() else None
        raise OutputError(
            f"cannot record scenario {name!r} in {record_dir}: {why or exc.strerror or exc}",
            hint="pass --record a folder you can write to",
        ) from None
    return trace


def _problem_failure(p: Problem) -> Any:
    from runner.scenarios.run import Failure

    return Failure(p.file, p.line, f"invalid scenario: {p.message}")


# --- output -----------------------------------------------------------------------------------


def summary_lines(
    results: Sequence[Any], *, verbose: bool = False, min_pass_rate: float = 1.0
) -> list[str]:
    """The readable report: one line per scenario, and for a failure the first failing
    expectation with the transcript of its turn (and the turn before).

    Repeated runs (``--repeat``) are one line per scenario with its pass rate; a scenario
    whose runs disagree is FLAKY when the gate (``min_pass_rate``) still holds, else FAIL."""
    from runner.scenarios.results import group_runs

    groups = group_runs(list(results))
    repeated = any(len(g.runs) > 1 for g in groups)
    lines: list[str] = []
    for g in groups:
        r = g.first_failed or g.runs[0]
        if not repeated:
            status = "PASS" if r.passed else ("ERROR" if r.error else "FAIL")
            turns = f"{len(r.turns)} turn(s), " if r.turns else ""
            lines.append(f"{status:<5} {r.path}  {r.name} ({turns}{r.duration_s:.1f} s)")
        else:
            ok = g.meets(min_pass_rate)
            status = "PASS" if g.passed_runs == len(g.runs) else ("FLAKY" if ok else "FAIL")
            if not ok and all(x.error for x in g.runs):
                status = "ERROR"
            gate = "" if status == "PASS" else f" {'>=' if ok else '<'} {min_pass_rate:.0%}"
            mark = "; flaky" if g.flaky and status == "FAIL" else ""
            lines.append(
                f"{status:<5} {r.path}  {r.name} ({g.passed_runs}/{len(g.runs)} runs passed, "
                f"{g.pass_rate:.0%}{gate}{mark})"
            )
        if r.passed:
            if verbose and r.lines:
                lines += [f"        {text}" for _, text in r.lines]
            continue
        if repeated:
            lines.append(f"      run {r.repeat + 1}:")
        lines += _failure_lines(r, verbose)
    if not repeated:
        passed = sum(1 for g in groups if g.runs[0].passed)
        lines.append(f"{len(groups)} scenario(s): {passed} passed, {len(groups) - passed} failed")
    else:
        runs = max(len(g.runs) for g in groups)
        passed = sum(1 for g in groups if g.meets(min_pass_rate))
        flaky = sum(1 for g in groups if g.flaky)
        lines.append(
            f"{len(groups)} scenario(s) x {runs} runs: {passed} passed the gate "
            f"(min pass rate {min_pass_rate:.0%}), {len(groups) - passed} failed, {flaky} flaky"
        )
    return [redact(line) for line in lines]


def gate_passed(results: Sequence[Any], min_pass_rate: float = 1.0) -> bool:
    """Every scenario passed in at least ``min_pass_rate`` of its runs (exit code 0)."""
    from runner.scenarios.results import group_runs

    return all(g.meets(min_pass_rate) for g in group_runs(list(results)))


def _failure_lines(r: Any, verbose: bool) -> list[str]:
    lines: list[str] = []
    if r.error:
        lines.append(f"      could not run: {r.error}")
    if r.failures:
        first = r.failures[0]
        lines.append(f"      {first.render()}")
        more = len(r.failures) - 1
        if more:
            lines.append(f"      (and {more} more failure(s); -v lists them)")
            if verbose:
                lines += [f"      {f.render()}" for f in r.failures[1:]]
        shown = _around(r.lines, first.turn) if not verbose else r.lines
        if shown:
            lines.append("      transcript:")
            lines += [f"        {text}" for _, text in shown]
    return lines


def _around(lines: Sequence[tuple[int, str]], turn: int | None) -> list[tuple[int, str]]:
    if turn is None:
        return list(lines[-8:])
    return [(n, text) for n, text in lines if turn - 1 <= n <= turn]


def write_junit(results: Sequence[Any], path: Path, *, min_pass_rate: float = 1.0) -> None:
    """JUnit XML, one testcase per scenario: what CI systems show as test results.

    With repeated runs a testcase carries its pass rate as properties; it fails when the
    gate fails, and a scenario whose runs disagree is marked ``flaky`` (a property, and each
    failed run as a ``flakyFailure`` element, as Maven Surefire writes reruns, when the gate
    still holds).

    Every text goes through :func:`_xml`: masked, and only characters XML 1.0 can hold, so a
    control character in a transcript never makes the report unreadable."""
    from runner.scenarios.results import group_runs

    groups = group_runs(list(results))
    repeated = any(len(g.runs) > 1 for g in groups)
    failing = [g for g in groups if not g.meets(min_pass_rate)]
    errors = [g for g in failing if all(r.error for r in g.runs)]
    suite = ET.Element(
        "testsuite",
        name="vlrun scenarios",
        tests=str(len(groups)),
        failures=str(len(failing) - len(errors)),
        errors=str(len(errors)),
        skipped="0",
        time=f"{sum(r.duration_s for r in results):.3f}",
    )
    for g in groups:
        r = g.first_failed or g.runs[0]
        case = ET.SubElement(
            suite,
            "testcase",
            classname=str(g.path.with_suffix("")).replace(os.sep, "."),
            name=_xml(g.name),
            file=str(g.path),
            time=f"{sum(x.duration_s for x in g.runs):.3f}",
        )
        if repeated:
            props = ET.SubElement(case, "properties")
            for key, value in (
                ("runs", str(len(g.runs))),
                ("passed_runs", str(g.passed_runs)),
                ("pass_rate", f"{g.pass_rate:.3f}"),
                ("min_pass_rate", f"{min_pass_rate:.3f}"),
                ("flaky", "true" if g.flaky else "false"),
            ):
                ET.SubElement(props, "property", name=key, value=value)
        transcript = "\n".join(text for _, text in r.lines)
        rate = (
            f"{g.passed_runs}/{len(g.runs)} runs passed ({g.pass_rate:.0%}), " if repeated else ""
        )
        if g in errors:
            node = ET.SubElement(
                case, "error", message=_xml(rate + str(r.error)), type="ScenarioError"
            )
            node.text = _xml(str(r.error) + ("\n\n" + transcript if transcript else ""))
        elif g in failing:
            first = r.failures[0].render() if r.failures else f"could not run: {r.error}"
            node = ET.SubElement(
                case, "failure", message=_xml(rate + first), type="ExpectationFailed"
            )
            node.text = _xml(
                _runs_text(g) + ("\n\ntranscript:\n" + transcript if transcript else "")
            )
        elif g.flaky:
            for bad in (x for x in g.runs if not x.passed):
                first = bad.failures[0].render() if bad.failures else f"could not run: {bad.error}"
                node = ET.SubElement(
                    case, "flakyFailure", message=_xml(first), type="ExpectationFailed"
                )
                node.text = _xml(f"run {bad.repeat + 1}:\n" + _run_text(bad))
        if transcript:
            ET.SubElement(case, "system-out").text = _xml(transcript)
    root = ET.Element("testsuites")
    root.append(suite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:  # a full disk, a read-only folder: the user's to fix, not a crash
        raise OutputError(
            f"cannot write the JUnit report {path}: {exc.strerror or exc}",
            hint="choose another --junit",
        ) from None


def _run_text(r: Any) -> str:
    if r.error:
        return f"could not run: {r.error}"
    return "\n".join(f.render() for f in r.failures)


def _runs_text(g: Any) -> str:
    if len(g.runs) == 1:
        return _run_text(g.runs[0])
    return "\n".join(f"run {r.repeat + 1}: {_run_text(r)}" for r in g.runs if not r.passed)


def result_records(results: Sequence[Any]) -> list[dict[str, Any]]:
    """The lines of ``results.jsonl``: one masked record per run, with the judge's verdicts
    (rubric, where it is written, verdict, reason, prompt, raw answer, model) and, when the
    run was drawn, its time axis."""
    from runner.scenarios.report_html import result_record

    return [
        result_record(
            r,
            profile=r.profile,
            repeat=r.repeat,
            timeline=r.timeline,
            judge=r.verdicts,
        )
        for r in results
    ]


def write_results(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    """``results.jsonl``: one JSON object a line."""
    import json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    except OSError as exc:
        raise OutputError(
            f"cannot write the results {path}: {exc.strerror or exc}",
            hint="choose another --results",
        ) from None


def flow_coverage(results: Sequence[Any]) -> dict[str, Any]:
    """Flow coverage per profile with a flow, over every run of ``results``
    (runner.scenarios.coverage): profile path -> CoverageReport."""
    from runner.scenarios.coverage import coverage_by_profile

    runs = [(r.loaded_profile, r) for r in results if r.loaded_profile is not None]
    return coverage_by_profile(runs)


# --- the command ------------------------------------------------------------------------------


def _xml(text: str) -> str:
    return xml_text(redact(text))
