"""Schema and semantic checks of a profile document, as Problems positioned at file:line:col.

JSON Schema (the shipped ``profile.schema.json``) catches shapes, types and ranges; the
semantic pass catches what a schema says badly (combinations, per-voice-type requirements,
references between fields). Messages are vlrun's own, so they read the same for every
jsonschema version and can be pinned by golden tests. ``jsonschema`` is imported on first
use because it dominates vlrun's import time.

The semantic pass is in ``validate_semantic.py``, the compiled yes/no schema check in
``schema_fastpath.py``; :class:`Locator` (``locator.py``) and :func:`suggest` (``suggest.py``)
are shared with profile loading and compiling. All of them are importable from here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from runner.config.fastpath import compile_schema
from runner.config.fastpath import json_equal as json_equal  # re-exported
from runner.config.locator import Locator
from runner.config.semantic import KNOWN_API_VERSIONS, TOOL_CHOICE_WORDS, semantic_problems
from runner.config.source import PathKey, json_path
from runner.config.suggest import suggest
from runner.config.voices import NATIVE_VOICES as REALTIME_NATIVE_VOICES
from runner.config.voices import OPENAI_VOICES
from runner.errors import Problem

__all__ = [
    "KNOWN_API_VERSIONS",
    "OPENAI_VOICES",
    "REALTIME_NATIVE_VOICES",
    "TOOL_CHOICE_WORDS",
    "Locator",
    "compile_schema",
    "json_equal",
    "schema",
    "schema_problems",
    "schema_text",
    "semantic_problems",
    "suggest",
]


@lru_cache(maxsize=1)
def schema_text() -> str:
    return (
        resources.files("runner.config.schema").joinpath("profile.schema.json").read_text("utf-8")
    )


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text())
    return data


@lru_cache(maxsize=1)
def _fast() -> Callable[[Any], bool]:
    return compile_schema(schema())


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_EXPECTED = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def schema_problems(data: Any, loc: Locator) -> list[Problem]:
    """Every schema violation, with vlrun's wording and a hint where one helps."""
    if _fast()(data):
        return []  # the common case never imports jsonschema (~90 ms) nor walks it
    out: list[Problem] = []
    errors = sorted(
        _validator().iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.validator)
    )
    for err in errors:
        out.extend(_convert(err, loc))
    # one message per place and text: `if/then` and `type` can repeat each other
    seen: set[tuple[str, int | None, int | None, str]] = set()
    unique = []
    for p in out:
        key = (p.file, p.line, p.col, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def problems_against(schema_doc: dict[str, Any], data: Any, loc: Locator) -> list[Problem]:
    """Another schema's violations (e.g. a tool-mocks file), in the same words as profiles'."""
    from jsonschema import Draft202012Validator

    errors = sorted(
        Draft202012Validator(schema_doc).iter_errors(data),
        key=lambda e: (list(map(str, e.absolute_path)), e.validator),
    )
    return [p for err in errors for p in _convert(err, loc)]


def _convert(err: Any, loc: Locator) -> list[Problem]:
    path: PathKey = tuple(err.absolute_path)
    kind = err.validator
    value = err.instance
    sch = err.schema if isinstance(err.schema, dict) else {}
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(sch.get("properties", {}))
        problems = []
        patterns = [re.compile(p) for p in sch.get("patternProperties", {})]
        for key in value:
            if key in sch.get("properties", {}) or any(p.search(key) for p in patterns):
                continue
            where = "at the top level" if not path else f"in `{_dotted(path)}`"
            hint = suggest(key, allowed) or (
                f"allowed keys: {', '.join(allowed)}" if allowed else None
            )
            problems.append(
                loc.problem((*path, key), f"unknown key {key!r} {where}", hint=hint, at_key=True)
            )
        return problems
    if kind == "type":
        types = (
            err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        )
        want = " or ".join(_EXPECTED.get(str(t), str(t)) for t in types)
        hint = None
        if path and path[-1] == "turn_detection" and value is False:
            hint = _MANUAL_HINT  # `turn_detection: off` reads as false in YAML
        if isinstance(value, str) and any(t in ("number", "integer") for t in types):
            try:
                float(value)
                hint = "write numbers without quotes"
            except ValueError:
                pass
        got = "null" if value is None else f"{_type_name(value)} {_show(value)}"  # not "null null"
        return [loc.problem(path, f"expected {want}, got {got}", hint=hint)]
    if kind in ("enum", "const"):
        choices = err.validator_value if kind == "enum" else [err.validator_value]
        label = _field_label(path)
        hint = suggest(value, [str(c) for c in choices]) if isinstance(value, str) else None
        if "manual" in choices and str(value).lower().replace("-", "_") in _NO_VAD:
            hint = _MANUAL_HINT
        listed = ", ".join(c if isinstance(c, str) else json.dumps(c) for c in choices)
        return [loc.problem(path, f"{label}{_show(value)} is not one of: {listed}", hint=hint)]
    if kind == "required":
        missing = [k for k in err.validator_value if isinstance(value, dict) and k not in value]
        return [loc.problem(path, f"missing required key {k!r}", at_key=True) for k in missing]
    if kind in ("minimum", "exclusiveMinimum"):
        op = "at least" if kind == "minimum" else "greater than"
        return [
            loc.problem(path, f"{_show(value)} is out of range: must be {op} {err.validator_value}")
        ]
    if kind in ("maximum", "exclusiveMaximum"):
        op = "at most" if kind == "maximum" else "less than"
        return [
            loc.problem(path, f"{_show(value)} is out of range: must be {op} {err.validator_value}")
        ]
    if "propertyNames" in err.schema_path:  # the failing instance is a key of `path`
        hint = (
            "use letters, digits and _, not starting with a digit"
            if kind == "pattern"
            else f"names are at most {err.validator_value} characters"
            if kind == "maxLength"
            else None
        )
        return [loc.problem((*path, value), f"invalid name {value!r}", at_key=True, hint=hint)]
    if kind == "pattern":
        rule = _PATTERN_RULES.get(err.validator_value, f"the form {err.validator_value!r}")
        return [loc.problem(path, f"{_show(value)} is not valid here: expected {rule}")]
    if kind in ("minLength", "minItems"):
        return [loc.problem(path, "must not be empty")]
    if kind in ("maxItems", "maxProperties", "maxLength"):
        return [loc.problem(path, f"too long: at most {err.validator_value} allowed")]
    if kind == "uniqueItems":
        return [loc.problem(path, "list items must be unique")]
    if kind in ("if", "then"):
        return []  # the `then` branch reports its own errors
    return [loc.problem(path, err.message)]


_NO_VAD = {"push_to_talk", "ptt", "none", "off", "false", "disabled", "no_vad"}
_MANUAL_HINT = "use `manual` for push-to-talk (no voice activity detection)"

# The schema's patterns, in words.
_PATTERN_RULES = {
    "^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$": "a name of letters, digits, '.', '_', '-' or spaces "
    "(at most 64, starting with a letter or digit)",
    "^[A-Za-z_][A-Za-z0-9_-]{0,63}$": "a tool name of letters, digits, '_' or '-' (at most 64, "
    "not starting with a digit)",
    "^[a-z][a-z0-9_]{0,39}$": "a node name of lower-case letters, digits or '_' (at most 40, "
    "starting with a letter)",
    "^[A-Za-z0-9_-]{1,64}$": "a label of letters, digits, '_' or '-' (at most 64)",
    "^https?://": "a URL starting with https:// or http://",
    "^(stun|stuns|turn|turns):": "a STUN or TURN URL (stun:, stuns:, turn: or turns:)",
    "^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$": "a colour as #RRGGBB or #RRGGBBAA",
    "^[A-Za-z][A-Za-z0-9]*$": "a preview feature name of letters and digits, e.g. BargeIn "
    "(sent as BargeIn=V1Preview)",
}


def _dotted(path: PathKey) -> str:
    return json_path(path)[2:] or "$"


def _field_label(path: PathKey) -> str:
    if not path:
        return ""
    last = path[-1]
    if isinstance(last, int) and len(path) > 1:
        return f"{path[-2]} item "
    return f"{last} " if isinstance(last, str) else ""
