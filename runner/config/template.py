"""Instructions are Jinja2 templates, rendered in a sandbox where undefined names are errors.

Jinja2 costs ~35 ms to import, so text with no template syntax is returned as is and
Jinja2 is imported only when a template really needs rendering. Errors are reported at the
line inside the profile (or the template file) where the template went wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any

from runner.errors import Problem

_SYNTAX = re.compile(r"\{\{|\{%|\{#")
_env: Any = None


@dataclass(frozen=True)
class Where:
    """Where template line 1 sits in its file, and how template lines map onto file lines."""

    file: str
    line: int  # file line of template line 1
    col: int = 1
    one_line: bool = False  # a flow scalar folded onto one line: every error goes to `line`
    json_path: str = ""


class TemplateProblem(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def needs_render(text: str) -> bool:
    return bool(_SYNTAX.search(text))


def _environment() -> Any:
    global _env
    if _env is None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        # Immutable: a template cannot even mutate the lists and dicts it is given.
        _env = ImmutableSandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
    return _env


def render(text: str, variables: Mapping[str, Any], where: Where) -> str:
    """Render ``text`` with ``variables``; raise :class:`TemplateProblem` positioned in the file."""
    if not needs_render(text):
        return text
    import jinja2
    from jinja2.exceptions import SecurityError

    try:
        return str(_compiled(text).render(**variables))
    except jinja2.TemplateSyntaxError as exc:
        raise _problem(where, exc.lineno, f"template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise _problem(
            where,
            _template_line(exc.__traceback__),
            f"template: {exc.message}",
            hint="declare it under `vars:` or pass --var NAME=VALUE",
        ) from None
    except SecurityError as exc:
        raise _problem(
            where,
            _template_line(exc.__traceback__),
            f"template refused by the sandbox: {exc}",
            hint="templates may use variables and filters, not Python internals",
        ) from None
    except jinja2.TemplateError as exc:
        raise _problem(where, _template_line(exc.__traceback__), f"template error: {exc}") from None
    except TypeError as exc:
        if "no loader" in str(exc):  # include/import/extends: there is deliberately no loader
            raise _problem(
                where,
                _template_line(exc.__traceback__),
                "templates cannot include, import or extend other templates",
                hint="keep the whole template in one place: inline or `instructions: {file: ...}`",
            ) from None
        raise _problem(
            where, _template_line(exc.__traceback__), f"template failed: TypeError: {exc}"
        ) from None
    except (
        ArithmeticError,
        ValueError,
        LookupError,
        RecursionError,
        OverflowError,
        MemoryError,
    ) as exc:
        raise _problem(
            where,
            _template_line(exc.__traceback__),
            f"template failed: {type(exc).__name__}: {exc}",
        ) from None


@lru_cache(maxsize=256)
def _compiled(text: str) -> Any:
    """Compiling costs ~1.5 ms; profiles in one folder often share their instructions."""
    return _environment().from_string(text)


def _template_line(tb: TracebackType | None) -> int | None:
    """Jinja2 rewrites tracebacks so template frames carry template line numbers."""
    line = None
    while tb is not None:
        if (
            tb.tb_frame.f_code.co_filename.startswith("<vlrun-template:")
            or tb.tb_frame.f_code.co_filename == "<template>"
        ):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _problem(
    where: Where, tline: int | None, message: str, hint: str | None = None
) -> TemplateProblem:
    if tline is None or where.one_line:
        line, col = where.line, where.col
    else:
        line, col = where.line + tline - 1, None
    return TemplateProblem(Problem(where.file, line, col, "error", message, where.json_path, hint))
