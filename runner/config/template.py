"""Instructions are Jinja2 templates, rendered in a sandbox where undefined names are errors.

Jinja2 costs ~35 ms to import, so text with no template syntax is returned as is and
Jinja2 is imported only when a template really needs rendering. Errors are reported at the
line inside the profile (or the template file) where the template went wrong.
"""

from __future__ import annotations

import re
import threading
import time
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


MAX_OUTPUT = 1_000_000  # characters (or list items) one template may produce or build
TIME_BUDGET_S = 2.0  # a profile's instructions render in milliseconds; seconds mean a loop bomb
MAX_INT_BITS = 4096  # 10**9 is fine, 10**10**10 is a memory bomb
_ITER_CHECK_EVERY = 1024
_FORMAT_WIDTH = re.compile(r"\d{7,}")  # a width or precision of a million or more


class BudgetExceeded(Exception):
    """A template went past its time or size budget (raised from inside the render)."""


class _Budget:
    """The time and size budget of one render, checked at every operator, call and loop step."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + TIME_BUDGET_S

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"took longer than {TIME_BUDGET_S:g} s")


_current = threading.local()


def _budget() -> _Budget:
    budget: _Budget | None = getattr(_current, "budget", None)
    if budget is None:  # compile-time constant folding: no render is running
        budget = _Budget()
    return budget


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _check_size(n: int, what: str) -> None:
    if n > MAX_OUTPUT:
        raise BudgetExceeded(f"{what} would be {n} long; the limit is {MAX_OUTPUT}")


# Filters and str methods whose integer arguments are output sizes (widths, counts); other
# calls may take big numbers freely ({{ 10**7|round }}, default(10**7)).
_SIZED = frozenset(
    {"center", "indent", "wordwrap", "truncate", "ljust", "rjust", "zfill", "expandtabs"}
)


def _check_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Any integer argument bigger than the output budget (center(10**9), lipsum(n=10**7),
    zfill, ljust, indent, wordwrap...) asks for more than a template may produce."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT:
            raise BudgetExceeded(f"argument {value} is larger than the limit of {MAX_OUTPUT}")
        if (
            isinstance(value, str)
            and _FORMAT_WIDTH.search(value)
            and ("%" in value or "{" in value)
        ):
            raise BudgetExceeded("a format width or precision of a million or more")


def _binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would exceed the budget, before computing it."""
    _budget().tick()
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int):
                _check_size(len(seq) * max(n, 0), "a repeated value")
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_INT_BITS
        ):
            raise BudgetExceeded(f"a product larger than {MAX_INT_BITS} bits")
    elif operator == "**":
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * left.bit_length() > MAX_INT_BITS
        ):
            raise BudgetExceeded(f"a power larger than {MAX_INT_BITS} bits")
    elif operator == "+":
        _check_size(_size(left) + _size(right), "a sum")
    elif operator == "%" and isinstance(left, str):
        _check_args((left,), {})


def _bounded_iter(iterable: Any) -> Any:
    """Every `{% for %}` iterates through this: nested loops meet the time budget."""
    budget = _budget()
    for i, item in enumerate(iterable):
        if i % _ITER_CHECK_EVERY == 0:
            budget.tick()
        yield item


def _bounded_concat(*parts: Any) -> str:
    strings = [str(p) for p in parts]
    _check_size(sum(map(len, strings)), "a joined string (~)")
    return "".join(strings)


def _environment() -> Any:
    global _env
    if _env is None:
        _env = _make_environment()
    return _env


def _make_environment() -> Any:
    from jinja2 import StrictUndefined, nodes
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.visitor import NodeTransformer

    class Budgeted(ImmutableSandboxedEnvironment):
        """The sandbox plus budgets: the operator and call hooks refuse a result too large
        before it is computed, loops and calls check the clock, output is counted as it
        streams. One mechanism for every template bomb, not a list of banned filters."""

        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _budget().tick()
            # the sandbox wraps str.format; the string is on the wrapped bound method
            owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
            if isinstance(owner, str) and getattr(__obj, "__name__", "").startswith("format"):
                _check_args((owner,), {})  # "{:999999999}".format(1)
            if getattr(__obj, "__name__", None) in _SIZED:
                _check_args(args, kwargs)
            if getattr(__obj, "__name__", None) in ("join", "replace") and args:
                _check_size(_expanded_size(__obj, args), f"the result of {__obj.__name__}()")
            return super().call(__context, __obj, *args, **kwargs)

        def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
            return _Rewrite().visit(super()._parse(source, name, filename))

        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            # Jinja hands back an Undefined here, which `|default`, `is defined`, `|pprint`
            # or a list's repr turn into text ("[Undefined]") with no error: refuse at once.
            raise SecurityError(
                f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe."
            )

    class _Strict(StrictUndefined):
        """StrictUndefined that also fails when shown inside a list or dict (via repr)."""

        __slots__ = ()

        def __repr__(self) -> str:
            self._fail_with_undefined_error()
            return "Undefined"  # pragma: no cover - the line above raises

    class _Rewrite(NodeTransformer):
        """Every loop iterates through the budget; every ``~`` joins through it."""

        def visit_For(self, node: Any) -> Any:
            self.generic_visit(node)
            node.iter = nodes.Call(nodes.Name("__vlrun_iter", "load"), [node.iter], [], None, None)
            return node

        def visit_Concat(self, node: Any) -> Any:
            self.generic_visit(node)
            return nodes.Call(
                nodes.Name("__vlrun_concat", "load"), list(node.nodes), [], None, None
            )

    # Immutable: a template cannot even mutate the lists and dicts it is given.
    env = Budgeted(undefined=_Strict, autoescape=False, keep_trailing_newline=True)
    env.globals["__vlrun_iter"] = _bounded_iter
    env.globals["__vlrun_concat"] = _bounded_concat
    lipsum: Any = env.globals["lipsum"]

    def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
        _check_size(int(n) * int(max) * 12, "lipsum()")  # ~12 characters per word
        return lipsum(n=n, html=html, min=min, max=max)

    env.globals["lipsum"] = bounded_lipsum
    for name, func in list(env.filters.items()):
        env.filters[name] = _wrap_filter(name, func)
    return env


def _expanded_size(method: Any, args: tuple[Any, ...]) -> int:
    """The length ``str.join`` or ``str.replace`` would produce, computed without producing it."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return 0
    if method.__name__ == "join":
        items = args[0] if isinstance(args[0], list | tuple) else ()
        return sum(len(x) for x in items if isinstance(x, str)) + len(owner) * len(items)
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = owner.count(args[0]) if args[0] else len(owner) + 1
        return len(owner) + count * len(args[1])
    return 0


def _wrap_filter(name: str, func: Any) -> Any:
    import functools

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        values = [a for a in args if not _is_jinja_internal(a)]
        if name == "format" and values:
            _check_args((values[0],), {})  # the widths in the format string, not the values
        elif name in _SIZED:
            _check_args(tuple(values[1:]), kwargs)
        if name == "join" and values and isinstance(values[0], list | tuple):
            sep = values[1] if len(values) > 1 and isinstance(values[1], str) else ""
            total = sum(len(str(x)) for x in values[0]) + len(sep) * len(values[0])
            _check_size(total, "the result of join")
        if name == "replace" and len(values) >= 3 and isinstance(values[0], str):
            old, new_ = str(values[1]), str(values[2])
            count = values[0].count(old) if old else len(values[0]) + 1
            _check_size(len(values[0]) + count * len(new_), "the result of replace")
        return func(*args, **kwargs)

    return bounded


def _is_jinja_internal(value: Any) -> bool:
    from jinja2.environment import Environment
    from jinja2.nodes import EvalContext
    from jinja2.runtime import Context

    return isinstance(value, Environment | EvalContext | Context)


def render(text: str, variables: Mapping[str, Any], where: Where) -> str:
    """Render ``text`` with ``variables``; raise :class:`TemplateProblem` positioned in the file."""
    if not needs_render(text):
        return text
    import jinja2
    from jinja2.exceptions import SecurityError

    try:
        return _render_budgeted(_compiled(text), variables)
    except BudgetExceeded as exc:
        raise _problem(
            where,
            _template_line(exc.__traceback__),
            f"template stopped: {exc}",
            hint="instructions are text with a few variables; this template builds far more",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise _problem(where, exc.lineno, f"template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        missing_name = "has no attribute" not in str(exc.message)
        raise _problem(
            where,
            _template_line(exc.__traceback__),
            f"template: {exc.message}",
            hint="declare it under `vars:` or pass --var NAME=VALUE"
            if missing_name
            else "check the attribute's name; a variable's value has only its own fields",
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


def _render_budgeted(template: Any, variables: Mapping[str, Any]) -> str:
    """Stream the output, counting it, with this render's budget in force."""
    previous = getattr(_current, "budget", None)
    budget = _current.budget = _Budget()
    try:
        out: list[str] = []
        total = 0
        for chunk in template.generate(**variables):
            total += len(chunk)
            _check_size(total, "the rendered text")
            budget.tick()
            out.append(chunk)
        return "".join(out)
    finally:
        _current.budget = previous


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
    line: int | None
    col: int | None
    if where.line <= 0:  # a value from the command line (--set) has no line
        line, col = None, None
    elif tline is None or where.one_line:
        line, col = where.line, where.col
    else:
        line, col = where.line + tline - 1, None
    return TemplateProblem(Problem(where.file, line, col, "error", message, where.json_path, hint))


def used_names(text: str) -> set[str]:
    """The names a template reads from its variables (``{{ date }}``, ``{% if vip %}``)."""
    import jinja2
    from jinja2 import meta

    try:
        return set(meta.find_undeclared_variables(_environment().parse(text)))
    except jinja2.TemplateSyntaxError as exc:
        raise _problem(Where("", 0), exc.lineno, f"template syntax error: {exc.message}") from None
