"""`vlrun check PATH...`: validate every file, report every problem at once, exit 0/1/2.

Files are sorted into kinds by a small registry: a kind has a cheap detector (path and the
first few KB of text) and a validator named as "module:function", imported only when a file
of that kind turns up. Profiles are the fallback kind; scenario files (issue 6) register as
``runner.scenarios.files:check_file`` with the signature of :func:`check_profile`.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import click

from runner.errors import EXIT_INVALID, EXIT_OK, Problem, ProfileError, UsageError
from runner.redact import redact

Validator = Callable[[Path, "CheckOptions"], list[Problem]]


@dataclass(frozen=True)
class CheckOptions:
    vars: Mapping[str, str] = field(default_factory=dict)
    sets: Sequence[str] = ()
    tools_dirs: Sequence[Path] = ()
    api_version: str | None = None
    env: Mapping[str, str] | None = None
    plugins: bool = True  # discover tool plugins to check bindings


@dataclass(frozen=True)
class FileKind:
    name: str
    detect: Callable[[Path, str], bool]  # (path, first 4 KB of text) -> is this kind?
    validator: str | Validator  # "module:function" (imported lazily) or a callable

    def resolve(self) -> Validator | None:
        if callable(self.validator):
            return self.validator
        module_name, _, attr = self.validator.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        found: Validator | None = getattr(module, attr, None)
        return found


_SCENARIO = re.compile(r"^(scenario|turns)\s*:", re.MULTILINE)

#: Checked in order; the first kind whose detector says yes validates the file.
KINDS: list[FileKind] = [
    FileKind(
        "scenario",
        lambda _p, head: bool(_SCENARIO.search(head)),
        "runner.scenarios.files:check_file",
    ),
    FileKind("profile", lambda _p, _head: True, "runner.commands.check:check_profile"),
]


def register_kind(kind: FileKind) -> None:
    """Add (or replace, by name) a file kind; it is tried before the profile fallback."""
    KINDS[:] = [k for k in KINDS if k.name != kind.name]
    KINDS.insert(len(KINDS) - 1 if KINDS and KINDS[-1].name == "profile" else len(KINDS), kind)


_YAML_SUFFIXES = (".yaml", ".yml")


def expand(paths: Sequence[str]) -> list[Path]:
    """Files, folders (their YAML files, recursively) and globs -> files, in a stable order."""
    out: list[Path] = []
    for arg in paths:
        if glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise UsageError(f"{arg}: no files match")
            out += [Path(m) for m in matches if Path(m).is_file()]
        elif os.path.isdir(arg):
            out += _folder(Path(arg))
        elif os.path.exists(arg):
            out.append(Path(arg))
        else:
            raise UsageError(f"{arg}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _folder(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        found += [Path(root) / f for f in sorted(files) if f.endswith(_YAML_SUFFIXES)]
    return found


def file_head(path: Path) -> str:
    """The first 4 KiB of a file as text (empty if unreadable), for telling file kinds apart."""
    try:
        with path.open("rb") as fh:
            return fh.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return ""


def check_file(path: Path, options: CheckOptions) -> list[Problem]:
    head = file_head(path)
    for kind in KINDS:
        if kind.detect(path, head):
            validator = kind.resolve()
            if validator is None:
                return [
                    Problem(
                        str(path),
                        None,
                        None,
                        "warning",
                        f"{kind.name} files cannot be checked by this vlrun yet",
                    )
                ]
            return validator(path, options)
    return []


def check_profile(path: Path, options: CheckOptions) -> list[Problem]:
    """Every problem of one profile: load, schema, semantics, templates, tools, api-version."""
    from runner.config.compile import compile_with_problems
    from runner.config.load import analyse

    profile, problems = analyse(path, vars=options.vars, sets=options.sets, env=options.env)
    if profile is None:
        return problems
    schemas = _plugin_problems(profile, options, problems) if options.plugins else None
    _, found, _ = compile_with_problems(
        profile, api_version=options.api_version, tool_schemas=schemas
    )
    problems += [p for p in found if p not in problems]
    return problems


_registries: dict[tuple[Path, ...], Any] = {}


def tool_dirs(profile_path: Path, extra: Sequence[Path]) -> tuple[Path, ...]:
    """`tools/` next to the profile, `tools/` of the project folder above it, and --tools."""
    return _tool_dirs(profile_path.parent.absolute(), tuple(Path(d).absolute() for d in extra))


@lru_cache(maxsize=64)
def _tool_dirs(folder: Path, extra: tuple[Path, ...]) -> tuple[Path, ...]:
    here = folder.resolve()
    dirs = [here / "tools", here.parent / "tools", *(Path(d).resolve() for d in extra)]
    return tuple(dict.fromkeys(d for d in dirs if d.is_dir()))


def _plugin_problems(
    profile: Any, options: CheckOptions, problems: list[Problem]
) -> dict[str, Any] | None:
    """Check tool bindings against plugins; None (step skipped) without runner.plugins."""
    if not profile.tools:
        return None
    try:
        from runner import plugins
    except ImportError:
        return None
    from runner.errors import VlrunError

    dirs = tool_dirs(profile.source, options.tools_dirs)
    loc = profile.locator()
    try:
        if dirs not in _registries:
            _registries[dirs] = plugins.Registry.discover(list(dirs), entry_points=True)
        schemas: dict[str, Any] = _registries[dirs].schemas()
    except VlrunError as exc:
        problems.append(
            loc.problem(
                ("tools",),
                f"tool plugins failed to load: {exc.message}",
                hint=exc.hint,
                at_key=True,
            )
        )
        return None
    for i, binding in enumerate(profile.tools):
        actual = schemas.get(binding.name)
        if actual is None:
            continue  # no plugin: compile reports it unless parameters are declared
        if binding.parameters is not None:
            for sub, message in plugins.schema_drift(binding.parameters, actual["parameters"]):
                problems.append(
                    loc.problem(
                        ("tools", i, "parameters"),
                        f"declared parameters differ from the plugin at "
                        f"{sub or '(root)'}: {message}",
                    )
                )
    return schemas


# --- output ----------------------------------------------------------------------------------


def render_text(problems: Sequence[Problem]) -> Iterator[str]:
    for p in problems:
        yield redact(p.render())


def render_github(problems: Sequence[Problem]) -> Iterator[str]:
    def esc(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    for p in problems:
        props = [f"file={p.file}"]
        if p.line is not None:
            props.append(f"line={p.line}")
            if p.col is not None:
                props.append(f"col={p.col}")
        msg = p.message + (f" (at {p.json_path})" if p.json_path not in ("", "$") else "")
        if p.hint:
            msg += f"\nhint: {p.hint}"
        yield f"::{p.severity} {','.join(props)}::{esc(redact(msg))}"


def render_json(results: Sequence[tuple[Path, list[Problem]]]) -> str:
    files = [
        {
            "file": str(path),
            "valid": not any(p.severity == "error" for p in problems),
            "problems": [
                {
                    "file": p.file,
                    "line": p.line,
                    "col": p.col,
                    "severity": p.severity,
                    "message": redact(p.message),
                    "json_path": p.json_path,
                    "hint": redact(p.hint) if p.hint else None,
                }
                for p in problems
            ],
        }
        for path, problems in results
    ]
    return json.dumps({"files": files}, indent=2)


def run_check(paths: Sequence[str], options: CheckOptions, fmt: str = "text") -> int:
    files = expand(paths)
    results: list[tuple[Path, list[Problem]]] = []
    for path in files:
        try:
            problems = check_file(path, options)
        except ProfileError as exc:
            problems = list(exc.all_problems)
        problems.sort(key=lambda p: (p.file != str(path), p.file, p.line or 0, p.col or 0))
        results.append((path, problems))
    invalid = sum(1 for _, ps in results if any(p.severity == "error" for p in ps))
    if fmt == "json":
        click.echo(render_json(results))
    else:
        render = render_github if fmt == "github" else render_text
        for _, problems in results:
            for line in render(problems):
                click.echo(line)
    errors = sum(1 for _, ps in results for p in ps if p.severity == "error")
    warnings = sum(1 for _, ps in results for p in ps if p.severity == "warning")
    click.echo(
        f"checked {len(results)} file(s): {invalid} invalid, {errors} error(s), "
        f"{warnings} warning(s)",
        err=True,
    )
    return EXIT_INVALID if invalid else EXIT_OK


def parse_pairs(values: Sequence[str], option: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {item!r} must look like NAME=VALUE")
        out[key.strip()] = value
    return out


@click.command("check")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="github: workflow annotations.",
)
@click.option("--var", "vars_", multiple=True, metavar="NAME=VALUE", help="Template variable.")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help="Override a setting.")
@click.option("--api-version", default=None, help="Check against this api-version.")
@click.option(
    "--tools",
    "tools_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Extra folder of tool plugins.",
)
def check(
    paths: tuple[str, ...],
    fmt: str,
    vars_: tuple[str, ...],
    sets: tuple[str, ...],
    api_version: str | None,
    tools_dirs: tuple[str, ...],
) -> int:
    """Validate profiles (files, folders, globs); print every problem as file:line:col."""
    options = CheckOptions(
        vars=parse_pairs(vars_, "--var"),
        sets=sets,
        tools_dirs=tuple(Path(d) for d in tools_dirs),
        api_version=api_version,
    )
    return run_check(paths, options, fmt)
