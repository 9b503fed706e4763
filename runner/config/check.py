"""`vlrun check`'s engine: sort files into kinds, validate each, collect every problem at once.

Files are sorted into kinds by a small registry: a kind has a cheap detector (path and the
first few KB of text) and a validator named as "module:function", imported only when a file
of that kind turns up. Profiles are the fallback kind; upper wings register theirs (scenario
files) through :func:`register_kind`. Tool bindings are checked through a hook the caller
passes in :class:`CheckOptions`, because plugins sit above config.
"""

from __future__ import annotations

import glob
import importlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.config import source
from runner.errors import Problem, ProfileError, UsageError

#: (profile, problems so far) -> the plugins' tool schemas, or None when there are none.
BindingCheck = Callable[[Any, list[Problem]], "dict[str, Any] | None"]
#: (profile file, compiled session) -> warnings about this machine's sound devices.
DeviceCheck = Callable[[str, "dict[str, Any]"], list[Problem]]


@dataclass(frozen=True)
class CheckOptions:
    """What `vlrun check` was asked for, and the hooks for the checks above config."""

    vars: Mapping[str, str] = field(default_factory=dict)
    sets: Sequence[str] = ()
    tools_dirs: Sequence[Path] = ()
    api_version: str | None = None
    env: Mapping[str, str] | None = None
    bindings: BindingCheck | None = None  # checks tool bindings against plugins
    # the same check with these tool folders instead of tools_dirs (a serve file's routes)
    bindings_for: Callable[[Sequence[Path]], BindingCheck] | None = None
    devices: DeviceCheck | None = None  # checks the compiled formats against this machine


Validator = Callable[[Path, CheckOptions], list[Problem]]


@dataclass(frozen=True)
class FileKind:
    """A kind of file `vlrun check` knows: a cheap detector, and what validates it."""

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


_SERVE_HEAD = re.compile(r"^serve\s*:", re.MULTILINE)  # serve.yaml starts with `serve: 1`


def _is_serve_file(path: Path, head: str) -> bool:
    # Every profile is asked first: a substring search (a line that starts with "serve") is
    # ~10x cheaper than the regex's scan of each line of the head, and rules most out.
    return (
        (head.startswith("serve") or "\nserve" in head)
        and path.suffix in (".yaml", ".yml")
        and bool(_SERVE_HEAD.search(head))
    )


#: Checked in order; the first kind whose detector says yes validates the file.
KINDS: list[FileKind] = [
    FileKind("serve", _is_serve_file, "runner.config.serve_file:check_file"),
    FileKind("profile", lambda _p, _head: True, "runner.config.check:check_profile"),
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
    return list(dict.fromkeys(out))


def _folder(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        found += [Path(root) / f for f in sorted(files) if f.endswith(_YAML_SUFFIXES)]
    return found


def file_head(path: Path) -> str:
    """The first 4 KiB of a regular file as text ("" otherwise), for telling kinds apart."""
    return source.head_text(path)  # never blocks on a FIFO nor reads a device


def check_file(path: Path, options: CheckOptions) -> list[Problem]:
    """Every problem of one file of any registered kind, sorted by place."""
    try:
        problems = _by_kind(path, options)
    except ProfileError as exc:
        problems = list(exc.all_problems)
    problems.sort(key=lambda p: (p.file != str(path), p.file, p.line or 0, p.col or 0))
    return problems


def _by_kind(path: Path, options: CheckOptions) -> list[Problem]:
    head = file_head(path)
    for kind in KINDS:
        if kind.detect(path, head):
            validator = kind.resolve()
            if validator is None:
                message = f"{kind.name} files cannot be checked by this vlrun yet"
                return [Problem(str(path), None, None, "warning", message)]
            return validator(path, options)
    return []


def check_profile(path: Path, options: CheckOptions) -> list[Problem]:
    """Every problem of one profile: load, schema, semantics, templates, tools, api-version."""
    from runner.config.compile import compile_with_problems
    from runner.config.load import analyse

    profile, problems = analyse(
        path, vars=options.vars, sets=options.sets, env=options.env, partial=True
    )
    if profile is None:  # the document as a whole is wrong: nothing more can be checked
        return problems
    schemas = options.bindings(profile, problems) if options.bindings else None
    payload, found, _ = compile_with_problems(
        profile, api_version=options.api_version, tool_schemas=schemas
    )
    # a setting that already has an error is not compiled twice over: what compiling it says
    # (`threshold` not sent, beside "threshold or threshold_level, not both") is noise
    wrong = [
        p.json_path for p in problems if p.severity == "error" and p.json_path not in ("", "$")
    ]
    problems += [p for p in found if p not in problems and not _overlaps(p.json_path, wrong)]
    if options.devices is not None and not is_invalid(problems):
        problems += options.devices(str(path), dict((payload or {}).get("session") or {}))
    return problems


def _overlaps(at: str, paths: Sequence[str]) -> bool:
    """Whether JSON path ``at`` is one of ``paths``, inside one, or holds one."""
    return any(
        at == p or at.startswith((p + ".", p + "[")) or p.startswith((at + ".", at + "["))
        for p in paths
    )


def check_paths(paths: Sequence[str], options: CheckOptions) -> list[tuple[Path, list[Problem]]]:
    """Expand ``paths`` and check every file; (file, its problems) in a stable order."""
    files = expand(paths)
    if not files:  # an empty folder must not pass as a green check
        raise UsageError(
            f"nothing to check: {', '.join(paths)} holds no .yaml or .yml file",
            hint="name a profile, a scenario, or a folder that contains them",
        )
    return [(path, check_file(path, options)) for path in files]


def is_invalid(problems: Sequence[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)
