"""Schema and semantic checks of a profile document, as Problems positioned at file:line:col.

JSON Schema (the shipped ``profile.schema.json``) catches shapes, types and ranges; the
semantic pass catches what a schema says badly (combinations, per-voice-type requirements,
references between fields). Messages are vlrun's own, so they read the same for every
jsonschema version and can be pinned by golden tests. ``jsonschema`` is imported on first
use because it dominates vlrun's import time.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from runner.errors import Problem
from runner.voices import NATIVE_VOICES as REALTIME_NATIVE_VOICES
from runner.voices import OPENAI_VOICES
from runner.yamlsrc import PathKey, Pos, json_path

KNOWN_API_VERSIONS = (
    "2025-05-01-preview",
    "2025-10-01",
    "2026-01-01-preview",
    "2026-04-10",
    "2026-06-01-preview",
    "2026-07-15",
    "2026-07-31-preview",
)
TOOL_CHOICE_WORDS = ("auto", "none", "required")


@lru_cache(maxsize=1)
def schema_text() -> str:
    return resources.files("runner.schema").joinpath("profile.schema.json").read_text("utf-8")


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


class Locator:
    """Finds the best position for a JSON path: the value itself, else its nearest parent."""

    def __init__(self, positions: Mapping[PathKey, Pos], default_file: str) -> None:
        self.positions = positions
        self.default_file = default_file

    def pos(self, path: PathKey) -> Pos | None:
        for i in range(len(path), -1, -1):
            p = self.positions.get(tuple(path[:i]))
            if p is not None:
                return p
        return None

    def problem(
        self,
        path: PathKey,
        message: str,
        *,
        hint: str | None = None,
        at_key: bool = False,
        severity: str = "error",
    ) -> Problem:
        pos = self.pos(path)
        file, line, col = self.default_file, None, None
        if pos is not None:
            file = pos.file
            line, col = pos.at_key() if at_key else (pos.line, pos.col)
            if line == 0:  # a value from the command line (--set) has no line
                line, col = None, None
        return Problem(file, line, col, severity, message, json_path(path), hint)  # type: ignore[arg-type]


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean" hint, or None when nothing is close."""
    options = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in options}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f"did you mean `{close[0]}`?" if close else None


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
        return [
            loc.problem(path, f"expected {want}, got {_type_name(value)} {_show(value)}", hint=hint)
        ]
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
    "^[A-Za-z0-9_-]{1,64}$": "a label of letters, digits, '_' or '-' (at most 64)",
    "^https?://": "a URL starting with https:// or http://",
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


# --- semantic checks -------------------------------------------------------------------------

_VOICE_NEEDS = {
    "azure-custom": ("name", "endpoint_id"),
    "azure-personal": ("name", "model"),
    "avatar-voice-sync": ("model",),
    "azure-standard": ("name",),
    "openai": ("name",),
    "azure-realtime-native": ("name",),
}
_SEMANTIC_VADS = ("azure_semantic_vad", "azure_semantic_vad_en", "azure_semantic_vad_multilingual")


def semantic_problems(doc: Mapping[str, Any], loc: Locator) -> list[Problem]:
    """Checks across fields; assumes ``doc`` already passed the schema."""
    out: list[Problem] = []
    conn = doc.get("connection") or {}
    agent = conn.get("agent")
    if isinstance(agent, Mapping):
        out += _agent(agent, conn, doc, loc)
    voice = doc.get("voice")
    if isinstance(voice, Mapping):
        out += _voice(voice, loc)
    td = doc.get("turn_detection")
    if isinstance(td, Mapping):
        out += _turn(td, loc)
    modalities = doc.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities and "text" not in modalities:
        out.append(
            loc.problem(
                ("modalities",),
                "audio output needs `text` in modalities too",
                hint="use [text, audio]",
            )
        )
    audio = doc.get("audio") or {}
    out += _audio(audio, loc)
    tools = doc.get("tools") or []
    names = _unique(tools, "name", ("tools",), loc, out, what="tool")
    _unique(doc.get("mcp_servers") or [], "label", ("mcp_servers",), loc, out, what="MCP server")
    choice = doc.get("tool_choice")
    if isinstance(choice, str) and choice not in TOOL_CHOICE_WORDS and choice not in names:
        out.append(
            loc.problem(
                ("tool_choice",),
                f"tool_choice {choice!r} is neither auto, none, "
                "required nor a tool of this profile",
                hint=suggest(choice, [*TOOL_CHOICE_WORDS, *names]),
            )
        )
    interim = doc.get("interim_response")
    if isinstance(interim, Mapping):
        if interim.get("type") == "static" and not interim.get("texts"):
            out.append(
                loc.problem(("interim_response",), "a static interim response needs `texts`")
            )
        if interim.get("type") == "llm" and interim.get("texts"):
            out.append(
                loc.problem(
                    ("interim_response", "texts"),
                    "`texts` only applies to type static",
                    severity="warning",
                )
            )
    version = conn.get("api_version")
    if isinstance(version, str) and version not in KNOWN_API_VERSIONS:
        out.append(
            loc.problem(
                ("connection", "api_version"),
                f"unknown api_version {version!r}",
                hint=suggest(version, KNOWN_API_VERSIONS)
                or f"known versions: {', '.join(KNOWN_API_VERSIONS)}",
            )
        )
    return out


def _agent(
    agent: Mapping[str, Any], conn: Mapping[str, Any], doc: Mapping[str, Any], loc: Locator
) -> list[Problem]:
    out = []
    base = ("connection", "agent")
    current = "name" in agent
    legacy = "id" in agent
    if current and legacy:
        out.append(
            loc.problem(
                base,
                "an agent binding has either `name` (current Foundry agents) or "
                "`id` (classic agents), not both",
            )
        )
    elif not current and not legacy:
        out.append(
            loc.problem(
                base,
                "an agent binding needs `name` and `project` (current) or `id` "
                "and `project`/`connection_string` (classic)",
            )
        )
    elif current:
        if "project" not in agent:
            out.append(loc.problem(base, "agent `name` needs `project` too"))
        if "connection_string" in agent:
            out.append(
                loc.problem(
                    (*base, "connection_string"),
                    "`connection_string` belongs to classic agents (`id`)",
                )
            )
    else:
        if ("project" in agent) == ("connection_string" in agent):
            out.append(
                loc.problem(
                    base,
                    "a classic agent (`id`) needs exactly one of `project` or `connection_string`",
                )
            )
        for key in ("version", "conversation_id"):
            if key in agent:
                out.append(loc.problem((*base, key), f"`{key}` belongs to current agents (`name`)"))
    if doc.get("instructions") is not None:
        out.append(
            loc.problem(
                ("instructions",),
                "instructions cannot be set when an agent is bound (the agent has its own)",
                hint="remove `instructions` or the agent",
            )
        )
    return out


def _voice(voice: Mapping[str, Any], loc: Locator) -> list[Problem]:
    out = []
    vtype = voice.get("type") or (
        "openai" if voice.get("name") in OPENAI_VOICES else "azure-standard"
    )
    for key in _VOICE_NEEDS.get(vtype, ()):
        if not voice.get(key):
            out.append(
                loc.problem(("voice",), f"a voice of type {vtype} needs `{key}`", at_key=True)
            )
    name = voice.get("name")
    if vtype == "openai" and isinstance(name, str) and name not in OPENAI_VOICES:
        out.append(
            loc.problem(
                ("voice", "name"),
                f"{name!r} is not an OpenAI voice",
                hint=suggest(name, OPENAI_VOICES) or f"OpenAI voices: {', '.join(OPENAI_VOICES)}",
            )
        )
    if (
        vtype == "azure-realtime-native"
        and isinstance(name, str)
        and name not in REALTIME_NATIVE_VOICES
    ):
        out.append(
            loc.problem(
                ("voice", "name"),
                f"{name!r} is not an azure-realtime-native voice",
                hint=suggest(name, REALTIME_NATIVE_VOICES),
            )
        )
    if vtype == "openai":
        for key in voice:
            if key not in ("type", "name"):
                out.append(
                    loc.problem(
                        ("voice", key),
                        f"`{key}` applies to Azure voices, not OpenAI voices",
                        at_key=True,
                    )
                )
    if vtype != "azure-custom" and "endpoint_id" in voice:
        out.append(
            loc.problem(
                ("voice", "endpoint_id"),
                "`endpoint_id` only applies to azure-custom voices",
                at_key=True,
            )
        )
    return out


def _turn(td: Mapping[str, Any], loc: Locator) -> list[Problem]:
    out = []
    ttype = td.get("type")
    base = ("turn_detection",)
    if ttype == "manual":
        extra = [k for k in td if k != "type"]
        for key in extra:
            out.append(
                loc.problem(
                    (*base, key),
                    "manual turns have no detector settings",
                    at_key=True,
                    severity="warning",
                )
            )
        return out
    if ttype == "semantic_vad":
        allowed = {"type", "eagerness", "create_response", "interrupt_response"}
        for key in td:
            if key not in allowed:
                out.append(
                    loc.problem(
                        (*base, key), f"`{key}` does not apply to semantic_vad", at_key=True
                    )
                )
        return out
    if "eagerness" in td:
        out.append(
            loc.problem(
                (*base, "eagerness"), "`eagerness` only applies to semantic_vad", at_key=True
            )
        )
    if ttype not in _SEMANTIC_VADS and "remove_filler_words" in td:
        out.append(
            loc.problem(
                (*base, "remove_filler_words"),
                "`remove_filler_words` needs an azure_semantic_vad* detector",
                at_key=True,
            )
        )
    if ttype in ("server_vad", "azure_semantic_vad_en") and "languages" in td:
        out.append(
            loc.problem((*base, "languages"), f"`languages` does not apply to {ttype}", at_key=True)
        )
    if td.get("auto_truncate") and td.get("interrupt_response") is False:
        out.append(
            loc.problem(
                (*base, "auto_truncate"),
                "auto_truncate needs interrupt_response",
                severity="warning",
            )
        )
    eou = td.get("end_of_utterance_detection")
    if isinstance(eou, Mapping):
        p = (*base, "end_of_utterance_detection")
        if "threshold" in eou and "threshold_level" in eou:
            out.append(
                loc.problem(
                    p,
                    "give `threshold_level` (current) or `threshold` "
                    "(2025-05-01-preview), not both",
                )
            )
        if "timeout" in eou and "timeout_ms" in eou:
            out.append(loc.problem(p, "give `timeout_ms` or `timeout` (seconds), not both"))
    return out


def _audio(audio: Mapping[str, Any], loc: Locator) -> list[Problem]:
    out = []
    fmt = audio.get("input_format")
    rate = audio.get("input_sampling_rate")
    if isinstance(fmt, str) and fmt.startswith("g711") and rate not in (None, 8000):
        out.append(loc.problem(("audio", "input_sampling_rate"), f"{fmt} audio is always 8000 Hz"))
    ec = audio.get("echo_cancellation")
    if isinstance(ec, Mapping):
        src = ec.get("reference_source", "server")
        ch = ec.get("channels", 2 if src == "client" else 1)
        if src == "server" and ch != 1:
            out.append(
                loc.problem(
                    ("audio", "echo_cancellation", "channels"),
                    "server echo cancellation uses 1 channel",
                    hint="set reference_source: client for a stereo reference",
                )
            )
        if src == "client" and ch != 2:
            out.append(
                loc.problem(
                    ("audio", "echo_cancellation", "channels"),
                    "a client reference needs 2 channels (mic + speaker)",
                )
            )
    if (
        ec == "client" or (isinstance(ec, Mapping) and ec.get("reference_source") == "client")
    ) and fmt not in (None, "pcm16"):
        out.append(
            loc.problem(("audio", "input_format"), "a client echo reference needs pcm16 input")
        )
    return out


def _unique(
    items: list[Any], key: str, base: PathKey, loc: Locator, out: list[Problem], *, what: str
) -> list[str]:
    names: list[str] = []
    for i, item in enumerate(items):
        name = (
            item if isinstance(item, str) else item.get(key) if isinstance(item, Mapping) else None
        )
        if not isinstance(name, str):
            continue
        if name in names:
            out.append(loc.problem((*base, i), f"{what} {name!r} is listed twice"))
        names.append(name)
    return names


# --- fast path -------------------------------------------------------------------------------
# A yes/no validator compiled from the shipped schema, for the keywords it uses. Valid
# documents (nearly all of them) stop here; invalid ones go to jsonschema for the messages.
# tests/test_check_schema_fastpath.py proves both agree.

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
