"""A yes/no validator compiled from the shipped schema, for the keywords it uses. Valid
documents (nearly all of them) stop here; invalid ones go to jsonschema for the messages.
tests/test_check_schema_fastpath.py proves both agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "examples", "default"})
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def compile_schema(node: Any) -> Check:
    """Compile a schema (the keyword subset vlrun uses) into one yes/no function."""
    if node is True:
        return lambda v: True
    if node is False:
        return lambda v: False
    checks: list[Check] = []
    unknown = set(node) - _ANNOTATIONS - _COMPILERS.keys() - {"then"}
    if unknown:
        raise ValueError(f"fast schema path does not support {sorted(unknown)}")
    for key, value in node.items():
        if key in _COMPILERS:
            checks.append(_COMPILERS[key](value, node))
    return _all_of(checks)


def _all_of(checks: list[Check]) -> Check:
    """Chain checks with `and` (cheaper per call than all() over a generator)."""
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    first, rest = checks[0], _all_of(checks[1:])
    return lambda v: first(v) and rest(v)


def _c_type(value: Any, _node: Any) -> Check:
    tests = [_TYPES[t] for t in (value if isinstance(value, list) else [value])]
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(t(v) for t in tests)


def _c_enum(value: Any, _node: Any) -> Check:
    return lambda v: any(json_equal(v, e) for e in value)


def _c_bound(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Check]:
    def build(limit: Any, _node: Any) -> Check:
        return lambda v: not _is_number(v) or op(v, limit)

    return build


def _c_pattern(value: str, _node: Any) -> Check:
    rx = re.compile(value)
    return lambda v: not isinstance(v, str) or rx.search(v) is not None


def _c_len(kind: type, op: Callable[[int, int], bool]) -> Callable[[Any, Any], Check]:
    def build(limit: int, _node: Any) -> Check:
        return lambda v: not isinstance(v, kind) or op(len(v), limit)  # type: ignore[arg-type]

    return build


def _c_unique(value: bool, _node: Any) -> Check:
    def check(v: Any) -> bool:
        if not value or not isinstance(v, list):
            return True
        return not any(json_equal(v[i], v[j]) for i in range(len(v)) for j in range(i))

    return check


def _c_items(value: Any, _node: Any) -> Check:
    sub = compile_schema(value)
    return lambda v: not isinstance(v, list) or all(sub(x) for x in v)


def _c_required(value: list[str], _node: Any) -> Check:
    return lambda v: not isinstance(v, dict) or all(k in v for k in value)


def _c_properties(value: dict[str, Any], node: Any) -> Check:
    subs = {k: compile_schema(s) for k, s in value.items()}
    patterns = [
        (re.compile(p), compile_schema(s)) for p, s in node.get("patternProperties", {}).items()
    ]
    extra = compile_schema(node["additionalProperties"]) if "additionalProperties" in node else None

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for key, item in v.items():
            sub = subs.get(key)
            matched = False
            if sub is not None:
                matched = True
                if not sub(item):
                    return False
            for rx, psub in patterns:
                if rx.search(key):
                    matched = True
                    if not psub(item):
                        return False
            if not matched and extra is not None and not extra(item):
                return False
        return True

    return check


def _c_handled_by_properties(value: Any, node: Any) -> Check:
    if "properties" in node:
        return lambda v: True
    return _c_properties({}, node)


def _c_property_names(value: Any, _node: Any) -> Check:
    sub = compile_schema(value)
    return lambda v: not isinstance(v, dict) or all(sub(k) for k in v)


def _c_if(value: Any, node: Any) -> Check:
    cond = compile_schema(value)
    then = compile_schema(node.get("then", True))
    return lambda v: not cond(v) or then(v)


_COMPILERS: dict[str, Callable[[Any, Any], Check]] = {
    "type": _c_type,
    "enum": _c_enum,
    "minimum": _c_bound(lambda v, lim: v >= lim),
    "maximum": _c_bound(lambda v, lim: v <= lim),
    "exclusiveMinimum": _c_bound(lambda v, lim: v > lim),
    "pattern": _c_pattern,
    "minLength": _c_len(str, lambda n, lim: n >= lim),
    "maxLength": _c_len(str, lambda n, lim: n <= lim),
    "minItems": _c_len(list, lambda n, lim: n >= lim),
    "maxItems": _c_len(list, lambda n, lim: n <= lim),
    "minProperties": _c_len(dict, lambda n, lim: n >= lim),
    "maxProperties": _c_len(dict, lambda n, lim: n <= lim),
    "uniqueItems": _c_unique,
    "items": _c_items,
    "required": _c_required,
    "properties": _c_properties,
    "patternProperties": _c_handled_by_properties,
    "additionalProperties": _c_handled_by_properties,
    "propertyNames": _c_property_names,
    "if": _c_if,
}
