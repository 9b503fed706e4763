"""Tool plugins read without running them, for `vlrun check --no-plugins` on untrusted input.

A pull request's `tools/*.py` is code from a stranger: importing it runs it. This reads the
files as syntax trees instead and finds what ``@tool`` marks (names, ``name=`` and
``description=`` overrides, docstrings, parameters and which have defaults). The schemas it
gives are the parameter *names* with no types, so a binding is checked for a plugin, and
declared parameters for names the function does not take, but not for types.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.source import read_bounded
from runner.errors import Problem, ProfileError
from runner.plugins._check import tool_dirs
from runner.plugins._loading import python_files

_MAX_SOURCE = 1 << 20  # a tool file larger than 1 MiB is not read


@dataclass(frozen=True)
class StaticTool:
    name: str
    file: Path
    line: int
    description: str
    params: tuple[str, ...]
    required: tuple[str, ...]

    def schema(self) -> dict[str, Any]:
        return {
            "source": f"{self.file}:{self.line}",
            "description": self.description,
            "parameters": {
                "type": "object",
                "properties": {p: {} for p in self.params},
                "required": list(self.required),
            },
        }


def read_tools(folder: Path) -> tuple[list[StaticTool], list[Problem]]:
    """Every ``@tool`` function in the folder's tool files, and the files that do not parse."""
    tools: list[StaticTool] = []
    problems: list[Problem] = []
    for path in python_files(folder):
        try:
            tree = ast.parse(read_bounded(path, max_bytes=_MAX_SOURCE), filename=str(path))
        except SyntaxError as exc:
            problems.append(
                Problem(str(path), exc.lineno, exc.offset, "error", f"syntax error: {exc.msg}")
            )
            continue
        except ProfileError as exc:  # a FIFO, a device, a file over the size limit
            problems += exc.all_problems
            continue
        tools += [t for node in tree.body if (t := _tool_of(node, path)) is not None]
    return tools, problems


def _tool_of(node: ast.stmt, path: Path) -> StaticTool | None:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    for deco in node.decorator_list:
        call = deco if isinstance(deco, ast.Call) else None
        target = call.func if call else deco
        if _dotted_tail(target) != "tool":
            continue
        options = {
            kw.arg: kw.value.value
            for kw in (call.keywords if call else [])
            if kw.arg and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)
        }
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        params = [a.arg for a in args if not _is_context(a)]
        positional = [*node.args.posonlyargs, *node.args.args]
        defaults = {a.arg for a in positional[len(positional) - len(node.args.defaults) :]}
        defaults |= {
            a.arg
            for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)
            if d is not None
        }
        doc = (ast.get_docstring(node) or "").split("\n\n")[0].strip()
        return StaticTool(
            name=options.get("name", node.name),
            file=path,
            line=min([node.lineno, *(d.lineno for d in node.decorator_list)]),  # as co_firstlineno
            description=options.get("description", doc),
            params=tuple(params),
            required=tuple(p for p in params if p not in defaults),
        )
    return None


def _dotted_tail(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


def _is_context(arg: ast.arg) -> bool:
    note = arg.annotation
    text = ast.unparse(note) if note is not None else ""
    return text.split(".")[-1].strip("'\"") == "ToolContext"


def check_bindings_statically(
    profile: Any, problems: list[Problem], extra_dirs: Sequence[Path] = ()
) -> dict[str, Any] | None:
    """Like :func:`check_bindings`, from the syntax trees alone: no plugin code runs."""
    if not profile.tools:
        return None
    found: dict[str, StaticTool] = {}
    for folder in tool_dirs(profile.source, extra_dirs):
        tools, broken = read_tools(folder)
        problems += broken
        for tool in tools:
            found.setdefault(tool.name, tool)
    loc = profile.locator()
    for i, binding in enumerate(profile.tools):
        t = found.get(binding.name)
        if t is None or binding.parameters is None:
            continue
        declared = set((binding.parameters.get("properties") or {}).keys())
        for extra in sorted(declared - set(t.params)):
            problems.append(
                loc.problem(
                    ("tools", i, "parameters"),
                    f"declared parameter {extra!r} is not a parameter of {t.name} "
                    f"({t.file}:{t.line})",
                )
            )
    return {name: t.schema() for name, t in found.items()}
