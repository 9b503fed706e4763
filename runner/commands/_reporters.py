"""`vlrun check` reporters: one class per `--format`, looked up by name.

A reporter gets every file's problems at once and writes them to stdout; the one-line
summary goes to stderr in every format, so `--format json` output stays parseable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import click

from runner.errors import Problem
from runner.redact import redact

Results = Sequence[tuple[Path, list[Problem]]]


class Reporter:
    """Base: ``report`` writes all results; subclasses say how one problem reads."""

    name: ClassVar[str]

    def report(self, results: Results) -> None:
        for _, problems in results:
            for problem in problems:
                click.echo(self.line(problem))

    def line(self, problem: Problem) -> str:
        raise NotImplementedError


class TextReporter(Reporter):
    """file:line:col: severity: message, and the hint beneath."""

    name = "text"

    def line(self, problem: Problem) -> str:
        return redact(problem.render())


class GithubReporter(Reporter):
    """GitHub Actions workflow commands, so problems show as annotations on the diff."""

    name = "github"

    def line(self, problem: Problem) -> str:
        props = [f"file={problem.file}"]
        if problem.line is not None:
            props.append(f"line={problem.line}")
            if problem.col is not None:
                props.append(f"col={problem.col}")
        msg = problem.message
        if problem.json_path not in ("", "$"):
            msg += f" (at {problem.json_path})"
        if problem.hint:
            msg += f"\nhint: {problem.hint}"
        return f"::{problem.severity} {','.join(props)}::{_escape(redact(msg))}"


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class JsonReporter(Reporter):
    """One JSON document: every file, whether it is valid, and its problems."""

    name = "json"

    def report(self, results: Results) -> None:
        files = [
            {
                "file": str(path),
                "valid": not any(p.severity == "error" for p in problems),
                "problems": [self.problem(p) for p in problems],
            }
            for path, problems in results
        ]
        click.echo(json.dumps({"files": files}, indent=2))

    def problem(self, p: Problem) -> dict[str, object]:
        return {
            "file": p.file,
            "line": p.line,
            "col": p.col,
            "severity": p.severity,
            "message": redact(p.message),
            "json_path": p.json_path,
            "hint": redact(p.hint) if p.hint else None,
        }


REPORTERS: dict[str, type[Reporter]] = {
    cls.name: cls for cls in (TextReporter, JsonReporter, GithubReporter)
}


def summary(results: Results) -> str:
    invalid = sum(1 for _, ps in results if any(p.severity == "error" for p in ps))
    errors = sum(1 for _, ps in results for p in ps if p.severity == "error")
    warnings = sum(1 for _, ps in results for p in ps if p.severity == "warning")
    return (
        f"checked {len(results)} file(s): {invalid} invalid, {errors} error(s), "
        f"{warnings} warning(s)"
    )
