"""`when:` conditions of flow transitions: a small expression language, read and run safely.

A condition is Python-like: names of collected values, literals (strings, numbers, true /
false / null, lists), comparisons (``== != < <= > >= in``, ``not in``), ``and``, ``or``,
``not`` and parentheses. It is parsed with :mod:`ast` and walked by this module; nothing is
ever evaluated by Python itself, so a profile cannot call, import or reach attributes.

:func:`type_problems` checks a condition against the types of the values it names, so a
transition that can never be taken (``party_size == "four"`` for an integer) is caught by
``vlrun check`` instead of silently never firing.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_LITERAL_NAMES: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "none": None,
    "True": True,
    "False": False,
    "None": None,
}
_ORDER = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_SYMBOL = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}


class ConditionError(ValueError):
    """The text is not a condition this language reads; the message says what is wrong."""


@dataclass(frozen=True)
class Condition:
    """A parsed condition; :meth:`holds` runs it on the values collected so far."""

    text: str
    tree: ast.expr

    @property
    def names(self) -> frozenset[str]:
        """The value names the condition reads."""
        return frozenset(
            n.id
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Name) and n.id not in _LITERAL_NAMES
        )

    def holds(self, values: Mapping[str, Any]) -> bool:
        """True when the condition holds; a value not collected (yet) reads as null."""
        return bool(_eval(self.tree, values))


def parse(text: str) -> Condition:
    """Read a condition; :class:`ConditionError` names what is not allowed."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConditionError(f"cannot read the condition ({exc.msg})") from None
    for node in ast.walk(tree):
        _allowed(node)
    return Condition(text, tree)


def _allowed(node: ast.AST) -> None:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool) and node.value is not None:
            raise ConditionError(f"{node.value!r} is not a value a condition can use")
        return
    ok = (
        ast.BoolOp,
        ast.And,
        ast.Or,
        ast.UnaryOp,
        ast.Not,
        ast.USub,
        ast.Compare,
        ast.Name,
        ast.Load,
        ast.List,
        ast.Tuple,
        *_COMPARE,
        ast.In,
        ast.NotIn,
    )
    if not isinstance(node, ok):
        what = type(node).__name__.lower()
        raise ConditionError(
            f"`{what}` is not allowed in a condition; use value names, literals, "
            "comparisons, `in`, `and`, `or`, `not`"
        )
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and not (isinstance(node.operand, ast.Constant) and _is_number(node.operand.value))
    ):
        raise ConditionError("`-` is allowed only before a number")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eval(node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _LITERAL_NAMES:
            return _LITERAL_NAMES[node.id]
        return values.get(node.id)
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, values) for e in node.elts]
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        return (not operand) if isinstance(node.op, ast.Not) else -operand
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, values) for v in node.values)
        return any(_eval(v, values) for v in node.values)
    assert isinstance(node, ast.Compare)
    left = _eval(node.left, values)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _eval(right_node, values)
        if not _compare(op, left, right):
            return False
        left = right
    return True


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.In | ast.NotIn):
        inside = isinstance(right, list | str) and _contains(right, left)
        return inside if isinstance(op, ast.In) else not inside
    if isinstance(op, _ORDER):
        # An uncollected value, or two kinds that do not order, is never less or greater.
        same = (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        )
        return same and _COMPARE[type(op)](left, right)
    equal = _json_equal(left, right)
    return equal if isinstance(op, ast.Eq) else not equal


def _contains(container: list[Any] | str, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    return any(_json_equal(item, x) for x in container)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON's equality: true is not 1, 1 is 1.0 (the values come from JSON arguments)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


# --- types -------------------------------------------------------------------------------------

_KIND_OF = {str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}


def _kind(spec_type: str) -> str:
    return "number" if spec_type in ("integer", "number") else spec_type


def _literal(node: ast.expr) -> tuple[bool, Any]:
    """(True, value) when ``node`` is a literal; lists of literals included."""
    if isinstance(node, ast.Constant):
        return True, node.value
    if isinstance(node, ast.Name) and node.id in _LITERAL_NAMES:
        return True, _LITERAL_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        ok, value = _literal(node.operand)
        return ok, -value if ok else None
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(e) for e in node.elts]
        if all(ok for ok, _ in items):
            return True, [v for _, v in items]
    return False, None


def type_problems(condition: Condition, specs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Why the condition can never hold (or names a value nobody collects); empty when fine.

    ``specs`` maps each value name it may use to its collect spec (type, enum, minimum,
    maximum).
    """
    problems: list[str] = []
    for name in sorted(condition.names - specs.keys()):
        problems.append(f"`{name}` is not a value collected before this transition")
    for node in ast.walk(condition.tree):
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                problems += _pair_problems(op, left, right, specs)
                left = right
    if not condition.names and not problems and not condition.holds({}):
        problems.append("the condition uses no collected value and is always false")
    return problems


def _pair_problems(
    op: ast.cmpop, left: ast.expr, right: ast.expr, specs: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    if isinstance(right, ast.Name) and right.id in specs and not isinstance(op, ast.In | ast.NotIn):
        left, right = right, left  # name on the left: `5 < size` reads as `size > 5`
        op = {ast.Lt: ast.Gt(), ast.Gt: ast.Lt(), ast.LtE: ast.GtE(), ast.GtE: ast.LtE()}.get(
            type(op), op
        )
    if not (isinstance(left, ast.Name) and left.id in specs):
        return []
    spec, name = specs[left.id], left.id
    kind = _kind(str(spec.get("type", "string")))
    ok, value = _literal(right)
    if not ok:
        return []
    symbol = _SYMBOL[type(op)]
    if isinstance(op, ast.In | ast.NotIn):
        if not isinstance(value, list):
            return [f"`{name} {symbol}` needs a list on the right, e.g. [1, 2]"]
        wrong = [v for v in value if v is not None and _KIND_OF.get(type(v)) != kind]
        if wrong:
            return [f"`{name}` is {_a(spec)}; the list holds {wrong[0]!r}"]
        if (
            isinstance(op, ast.In)
            and "enum" in spec
            and not any(_contains(list(spec["enum"]), v) for v in value)
        ):
            return [f"`{name}` is one of {list(spec['enum'])}; none of {value} can match"]
        return []
    if value is None:
        return []  # `name == null`: the value was not given (optional values)
    if _KIND_OF.get(type(value)) != kind:
        return [f"`{name}` is {_a(spec)}, so `{name} {symbol} {value!r}` is never true"]
    if isinstance(op, _ORDER) and kind not in ("number", "string"):
        return [f"`{name}` is {_a(spec)}; `{symbol}` needs numbers or strings"]
    if isinstance(op, ast.Eq) and "enum" in spec and not _contains(list(spec["enum"]), value):
        return [f"`{name}` is one of {list(spec['enum'])}, never {value!r}"]
    if kind == "number" and isinstance(op, _ORDER):
        lo, hi = spec.get("minimum"), spec.get("maximum")
        never = (
            (isinstance(op, ast.Gt) and hi is not None and value >= hi)
            or (isinstance(op, ast.GtE) and hi is not None and value > hi)
            or (isinstance(op, ast.Lt) and lo is not None and value <= lo)
            or (isinstance(op, ast.LtE) and lo is not None and value < lo)
        )
        if never:
            span = (
                f"lies in [{lo}, {hi}]"
                if lo is not None and hi is not None
                else (f"is at most {hi}" if hi is not None else f"is at least {lo}")
            )
            return [f"`{name}` {span}, so `{name} {symbol} {value!r}` is never true"]
    return []


def _a(spec: Mapping[str, Any]) -> str:
    kind = str(spec.get("type", "string"))
    return ("an " if kind[0] in "aeiou" else "a ") + kind
