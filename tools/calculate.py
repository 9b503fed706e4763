"""Example tool: safe arithmetic. The expression is parsed with ``ast`` and walked node by node;
only numbers, arithmetic operators and a few math functions are allowed. No ``eval``."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from runner.plugins import tool

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_LENGTH = 500
_MAX_EXPONENT = 10_000  # 10**10000 is still instant; 9**9**9 would take the process down
_MAX_DIGITS = 4300  # keep integer results printable (Python's int -> str limit)
_MAX_MAGNITUDE = 10**_MAX_DIGITS


class CalculationError(ValueError):
    """The expression is not plain arithmetic, or cannot be computed."""


@tool
def calculate(
    expression: Annotated[str, 'Arithmetic such as "(17.5 * 3) / 4" or "sqrt(2) ** 10"'],
) -> dict[str, Any]:
    """Evaluate an arithmetic expression exactly, instead of doing mental math.

    Supports + - * / // % ** and parentheses, the constants pi and e, and the functions
    sqrt, abs, round, min, max, floor, ceil, log, log10, exp, sin, cos and tan.
    """
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if len(text) > _MAX_LENGTH:
        raise CalculationError(f"the expression is longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalculationError(f"{expression!r} is not an arithmetic expression") from None
    try:
        value = _evaluate(tree.body)
    except ZeroDivisionError:
        raise CalculationError("division by zero") from None
    except OverflowError:
        raise CalculationError("the result is too large") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return {"expression": expression, "result": value}


def _check_power(base: Any, exponent: Any) -> None:
    # Refuse before computing: a big integer power can take minutes and gigabytes.
    if abs(exponent) > _MAX_EXPONENT:
        raise CalculationError(f"the exponent {exponent} is too large")
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and exponent * math.log10(abs(base)) > _MAX_DIGITS
    ):
        raise CalculationError("the result is too large")


def _evaluate(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, int) and abs(result) > _MAX_MAGNITUDE:
            raise CalculationError("the result is too large")
        if isinstance(result, complex):
            raise CalculationError("the result is not a real number")
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(a) for a in node.args]
        try:
            return _FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError) as exc:
            raise CalculationError(f"{node.func.id}(): {exc}") from None
    raise CalculationError(f"{ast.unparse(node)!r} is not allowed; only arithmetic is")
