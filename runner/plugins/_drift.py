"""Where a profile's declared tool parameters and a plugin's JSON Schema disagree."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def schema_drift(declared: Mapping[str, Any], actual: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Where a profile's declared parameters and a plugin's schema disagree, both directions.

    Compares types, required names and enums, recursing into object properties and array
    items. Returns ``(subpath, message)`` pairs, e.g.
    ``("properties.unit.enum", "the profile allows ['c'] but the tool allows ['c', 'f']")``.
    """
    found: list[tuple[str, str]] = []
    _drift(declared, actual, "", found)
    return found


def _drift(
    declared: Mapping[str, Any], actual: Mapping[str, Any], path: str, out: list[tuple[str, str]]
) -> None:
    def at(key: str) -> str:
        return f"{path}.{key}" if path else key

    d_types, a_types = _types(declared), _types(actual)
    if d_types and a_types and d_types != a_types:
        # JSON "integer" values are numbers too; a profile saying number for an int is drift
        # the author should see, so this compares exactly.
        out.append(
            (
                at("type"),
                f"the profile says {_fmt_types(d_types)} but the tool takes {_fmt_types(a_types)}",
            )
        )
    d_enum, a_enum = declared.get("enum"), actual.get("enum")
    if d_enum is not None or a_enum is not None:
        if d_enum is None:
            out.append(
                (
                    at("enum"),
                    f"the tool only accepts {a_enum!r} "
                    "but the profile does not list the allowed values",
                )
            )
        elif a_enum is None:
            out.append(
                (
                    at("enum"),
                    f"the profile restricts values to {d_enum!r} "
                    "but the tool does not declare them",
                )
            )
        elif _enum_key(d_enum) != _enum_key(a_enum):
            extra = [v for v in d_enum if v not in a_enum]
            missing = [v for v in a_enum if v not in d_enum]
            detail = []
            if extra:
                detail.append(f"the tool does not accept {extra!r}")
            if missing:
                detail.append(f"the profile leaves out {missing!r}")
            out.append(
                (
                    at("enum"),
                    f"the profile allows {d_enum!r} but the tool allows "
                    f"{a_enum!r} ({'; '.join(detail)})",
                )
            )
    d_props = declared.get("properties")
    a_props = actual.get("properties")
    if isinstance(d_props, Mapping) or isinstance(a_props, Mapping):
        d_props = d_props if isinstance(d_props, Mapping) else {}
        a_props = a_props if isinstance(a_props, Mapping) else {}
        for key in d_props:
            if key not in a_props:
                out.append(
                    (
                        at(f"properties.{key}"),
                        f"the profile declares '{key}' but the tool has no such parameter",
                    )
                )
            elif isinstance(d_props[key], Mapping) and isinstance(a_props[key], Mapping):
                _drift(d_props[key], a_props[key], at(f"properties.{key}"), out)
        for key in a_props:
            if key not in d_props:
                out.append(
                    (
                        at(f"properties.{key}"),
                        f"the tool has a parameter '{key}' the profile does not declare",
                    )
                )
        d_req = set(declared.get("required") or ())
        a_req = set(actual.get("required") or ())
        for key in sorted(a_req - d_req):
            if key in d_props:
                out.append(
                    (at("required"), f"the tool requires '{key}' but the profile marks it optional")
                )
        for key in sorted(d_req - a_req):
            if key in a_props:
                out.append(
                    (
                        at("required"),
                        f"the profile requires '{key}' but the tool treats it as optional",
                    )
                )
    d_items, a_items = declared.get("items"), actual.get("items")
    if isinstance(d_items, Mapping) and isinstance(a_items, Mapping):
        _drift(d_items, a_items, at("items"), out)


def _types(schema: Mapping[str, Any]) -> frozenset[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return frozenset([kind])
    if isinstance(kind, list):
        return frozenset(k for k in kind if isinstance(k, str))
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        return frozenset().union(*(_types(s) for s in any_of if isinstance(s, Mapping)))
    return frozenset()


def _fmt_types(kinds: frozenset[str]) -> str:
    return " or ".join(sorted(kinds))


def _enum_key(values: Sequence[Any]) -> frozenset[str]:
    return frozenset(json.dumps(v, sort_keys=True) for v in values)
