"""Finding tools: ``*.py`` files loaded by path, and the ``vlrun.tools`` entry-point group."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import inspect
import io
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from runner.errors import ToolError
from runner.plugins._dispatch import describe_error
from runner.plugins._types import MARK

ENTRY_POINT_GROUP = "vlrun.tools"
#: What marks a project's root folder, whose ``tools/`` serves every profile below it.
PROJECT_MARKERS = ("pyproject.toml", ".git")


def project_root(folder: Path) -> Path | None:
    """The nearest folder at or above ``folder`` that holds a project marker, or None."""
    for candidate in (folder, *folder.parents):
        if any(_exists(candidate / marker) for marker in PROJECT_MARKERS):
            return candidate
    return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a folder we may not look into (EACCES) marks nothing
        return False


def project_tool_dirs(folder: Path, extra: Sequence[Path] = ()) -> tuple[Path, ...]:
    """The existing tool folders for a profile in ``folder``, nearest first, without repeats.

    ``tools/`` next to the profile, ``tools/`` at its project's root (:func:`project_root`),
    then ``extra`` (``--tools`` folders; a serve file's folder's ``tools/``). Never an
    arbitrary parent: a stray ``tools/`` in the folder above (the system's temporary folder,
    say) is none of the profile's business, and its tools would clash with the profile's own.
    """
    here = folder.resolve()
    root = project_root(here)
    dirs = [here / "tools", *([root / "tools"] if root else [])]
    dirs += [Path(d).resolve() for d in extra]
    return tuple(dict.fromkeys(d for d in dirs if d.is_dir()))


def python_files(folder: Path) -> list[Path]:
    if folder.is_file():
        return [folder] if folder.suffix == ".py" else []
    if not folder.is_dir():
        return []
    # Files starting with "_" are helpers (and __init__.py), not tool modules.
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def load_module_by_path(path: Path) -> ModuleType:
    """Import one file under a private, unique module name; errors name the file and line."""
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"vlrun_tools_{digest}_{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ToolError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    # dataclasses and typing look the module up in sys.modules while it executes.
    sys.modules[module_name] = module
    try:
        with _stdout_captured(path):
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise ToolError(
            f"{_display_path(exc.filename or str(path))}:{exc.lineno or 0}: "
            f"syntax error in tool file: {exc.msg}"
        ) from None
    except Exception as exc:
        del sys.modules[module_name]
        line = _line_in(exc, path)
        raise ToolError(
            f"{_display_path(str(path))}:{line}: loading the tool file failed: "
            f"{describe_error(exc)}",
            hint="a tool file must import cleanly; run it with python to see the full error",
        ) from None
    except KeyboardInterrupt:
        del sys.modules[module_name]
        raise
    except BaseException as exc:  # SystemExit & co from plugin code: the issue asks to contain it
        # one positioned error instead of vlrun exiting with the plugin's code and no word
        del sys.modules[module_name]
        what = f"SystemExit({exc.code!r})" if isinstance(exc, SystemExit) else type(exc).__name__
        raise ToolError(
            f"{_display_path(str(path))}:{_line_in(exc, path)}: the tool file raised {what} "
            "while being imported",
            hint="a tool file must not exit at import; move that code into a function",
        ) from None
    return module


@contextlib.contextmanager
def _stdout_captured(path: Path) -> Iterator[None]:
    """Whatever a tool file prints while importing goes to stderr, not stdout.

    stdout carries `--format json` and compiled output; an import-time print (or os.write
    to fd 1 from an extension) must not corrupt it. Both the Python stream and fd 1 are
    redirected; the text is passed on to stderr, control characters neutralised."""
    from runner.redact import clean

    sys.stdout.flush()
    saved_fd = None
    with tempfile.TemporaryFile() as spill:
        try:
            saved_fd = os.dup(1)
            os.dup2(spill.fileno(), 1)
        except OSError:  # no fd 1 (a daemon); the Python-level capture still holds
            saved_fd = None
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                yield
        finally:
            if saved_fd is not None:
                os.dup2(saved_fd, 1)
                os.close(saved_fd)
            spill.seek(0)
            printed = buffer.getvalue() + spill.read(64 * 1024).decode("utf-8", "replace")
            if printed.strip():
                first = clean(printed.strip().splitlines()[0])[:200]
                print(
                    f"{_display_path(str(path))}: printed while being imported "
                    f"(kept off stdout): {first}",
                    file=sys.stderr,
                )


def _line_in(exc: BaseException, path: Path) -> int:
    line = 0
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno or 0
    return line


def marked_in(module: ModuleType) -> list[Callable[..., Any]]:
    # Only functions defined in this file: an imported tool belongs to its own file.
    found = []
    for value in vars(module).values():
        if getattr(value, MARK, None) is None or not callable(value):
            continue
        if getattr(value, "__module__", module.__name__) == module.__name__:
            found.append(value)
    return sorted(found, key=lambda f: _line_of(f))


def entry_points_of_group() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def ep_source(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name if dist else '?'}:{ep.name}"


def load_entry_point(ep: importlib.metadata.EntryPoint) -> list[Callable[..., Any]]:
    """An entry point names a tool function, a module of tools, or a list of functions."""
    try:
        obj = ep.load()
    except Exception as exc:
        raise ToolError(
            f"entry point '{ep.name}' ({ep_source(ep)} -> {ep.value}) failed to load: "
            f"{describe_error(exc)}",
            hint=f"reinstall the package, or set VLRUN_TOOLS_ENTRY_POINTS=0 to skip "
            f"the '{ENTRY_POINT_GROUP}' entry points",
        ) from None
    if isinstance(obj, ModuleType):
        return [v for v in vars(obj).values() if getattr(v, MARK, None) is not None]
    if isinstance(obj, list | tuple):
        return list(obj)
    if callable(obj):
        return [obj]
    raise ToolError(
        f"entry point '{ep.name}' ({ep_source(ep)}) is a {type(obj).__name__}, "
        "not a tool function, a module or a list of functions"
    )


def only_names(only: Sequence[str] | None) -> frozenset[str] | None:
    if only is None:
        env = os.environ.get("VLRUN_TOOLS_ONLY", "").strip()
        if not env:
            return None
        only = env.split(",")
    return frozenset(n.strip() for n in only if n.strip())


def source_of(func: Callable[..., Any]) -> str:
    target = inspect.unwrap(func)
    code = getattr(target, "__code__", None)
    if code is None:
        return getattr(func, "__qualname__", repr(func))
    return f"{_display_path(code.co_filename)}:{code.co_firstlineno}"


def _line_of(func: Callable[..., Any]) -> int:
    code = getattr(inspect.unwrap(func), "__code__", None)
    return code.co_firstlineno if code else 0


def _display_path(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename
