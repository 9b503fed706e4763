"""A suite of scenarios: find the files, run them side by side, summarise, write JUnit.

Scenarios run against the local emulator (each with its own, so they run in parallel) unless
an endpoint names a Voice Live resource; then each scenario's ``model:`` block is ignored
and its expectations test the real model.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
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
) -> list[Any]:
    """Load and run every scenario; returns ScenarioResult per file (invalid ones as failures)."""
    return asyncio.run(_run_all(paths, endpoint, api_version, jobs, speed, record_dir))


async def _run_all(
    paths: Sequence[Path],
    endpoint: str | None,
    api_version: str | None,
    jobs: int,
    speed: float | None,
    record_dir: Path | None,
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
    traces = [
        _trace_path(record_dir, scenario.name, path.stem, taken)
        if record_dir is not None and scenario is not None
        else None
        for path, scenario, _ in loaded
    ]

    async def one(path: Path, scenario: Any, problems: list[Problem], trace: Path | None) -> Any:
        if scenario is None:
            result = ScenarioResult(path, path.stem)
            result.failures = [_problem_failure(p) for p in problems if p.severity == "error"]
            return result
        settings = RunSettings(endpoint, api_version, trace, speed)
        async with limit:
            return await run_scenario_async(scenario, settings)

    return list(
        await asyncio.gather(
            *(one(p, s, found, t) for (p, s, found), t in zip(loaded, traces, strict=True))
        )
    )


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


def summary_lines(results: Sequence[Any], *, verbose: bool = False) -> list[str]:
    """The readable report: one line per scenario, and for a failure the first failing
    expectation with the transcript of its turn (and the turn before)."""
    lines: list[str] = []
    for r in results:
        status = "PASS" if r.passed else ("ERROR" if r.error else "FAIL")
        turns = f"{len(r.turns)} turn(s), " if r.turns else ""
        lines.append(f"{status:<5} {r.path}  {r.name} ({turns}{r.duration_s:.1f} s)")
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
        elif verbose and r.lines:
            lines += [f"        {text}" for _, text in r.lines]
    passed = sum(1 for r in results if r.passed)
    lines.append(f"{len(results)} scenario(s): {passed} passed, {len(results) - passed} failed")
    return [redact(line) for line in lines]


def _around(lines: Sequence[tuple[int, str]], turn: int | None) -> list[tuple[int, str]]:
    if turn is None:
        return list(lines[-8:])
    return [(n, text) for n, text in lines if turn - 1 <= n <= turn]


def write_junit(results: Sequence[Any], path: Path) -> None:
    """JUnit XML, one testcase per scenario: what CI systems show as test results.

    Every text goes through :func:`_xml`: masked, and only characters XML 1.0 can hold, so a
    control character in a transcript never makes the report unreadable."""
    suite = ET.Element(
        "testsuite",
        name="vlrun scenarios",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if r.failures and not r.error)),
        errors=str(sum(1 for r in results if r.error)),
        skipped="0",
        time=f"{sum(r.duration_s for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=str(r.path.with_suffix("")).replace(os.sep, "."),
            name=_xml(r.name),
            file=str(r.path),
            time=f"{r.duration_s:.3f}",
        )
        transcript = "\n".join(text for _, text in r.lines)
        if r.error:
            node = ET.SubElement(case, "error", message=_xml(r.error), type="ScenarioError")
            node.text = _xml(r.error + ("\n\n" + transcript if transcript else ""))
        elif r.failures:
            first = r.failures[0]
            node = ET.SubElement(
                case, "failure", message=_xml(first.render()), type="ExpectationFailed"
            )
            body = "\n".join(f.render() for f in r.failures)
            node.text = _xml(body + ("\n\ntranscript:\n" + transcript if transcript else ""))
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


# --- the command ------------------------------------------------------------------------------


def _xml(text: str) -> str:
    return xml_text(redact(text))
