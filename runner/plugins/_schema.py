"""Type hints -> the JSON Schema the model sees, plus converters that turn validated JSON back
into the Python values the tool asked for (Enum members, dataclass instances, tuples).

Everything here runs once, at registration; the dispatch hot path only calls the converters
that a tool actually needs. A type that JSON Schema cannot express is refused with an error
that names the function and the parameter, so the author finds out when the tool loads,
not when the model first calls it.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

from runner.errors import ToolError

Converter = Callable[[Any], Any]

_PRIMITIVES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SUPPORTED = (
    "str, int, float, bool, Literal[...], an Enum, list[...], tuple[X, ...], dict[str, X], "
    "Optional[...], a TypedDict or a dataclass"
)
_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns|Return|Yields|Raises|Examples?|Notes?|"
    r"Attributes|See Also|Warnings?|Todo):\s*$"
)
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclasses.dataclass(frozen=True)
class FunctionSchema:
    """What registration learns about one function's signature."""

    description: str
    parameters: dict[str, Any]
    context_param: str | None
    converters: dict[str, Converter]  # only parameters whose JSON value needs converting


class UnsupportedType(Exception):
    """Internal: raised deep in the type walk, turned into a ToolError that names the place."""


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {argument: description}).

    The description is everything before the first section header ("Args:", "Returns:", ...);
    argument descriptions come from the "Args:" section, continuation lines joined.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for raw in lines:
        stripped = raw.strip()
        header = _SECTION.match(stripped)
        if header and (len(raw) - len(raw.lstrip())) == 0:
            section = header.group(1)
            current, arg_indent = None, None
            continue
        if section is None:
            summary.append(raw)
            continue
        if section not in ("Args", "Arguments", "Parameters", "Params") or not stripped:
            continue
        indent = len(raw) - len(raw.lstrip())
        match = _ARG_LINE.match(stripped)
        if match and (arg_indent is None or indent <= arg_indent):
            arg_indent = indent
            current = match.group(1).lstrip("*")
            args[current] = match.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    description = "\n".join(summary).strip()
    # Paragraphs stay paragraphs; hard-wrapped lines inside one are joined.
    description = "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", description))
    return description, args


def function_schema(
    func: Callable[..., Any],
    *,
    where: str,
    context_types: tuple[type, ...] = (),
    description: str | None = None,
) -> FunctionSchema:
    """Build the parameters schema of ``func``; ``where`` names it in errors ("f in a.py:3")."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # NameError from a forward reference, mostly
        raise ToolError(
            f"tool {where}: cannot resolve its type hints ({type(exc).__name__}: {exc})",
            hint="import every type used in the annotations at module level",
        ) from None
    doc_description, arg_docs = parse_docstring(inspect.getdoc(func))
    properties: dict[str, Any] = {}
    required: list[str] = []
    converters: dict[str, Converter] = {}
    context_param: str | None = None
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolError(
                f"tool {where}: parameter '{param.name}' is *{param.name}; "
                "the model can only pass named arguments",
                hint="list each argument as its own typed parameter",
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolError(
                f"tool {where}: parameter '{param.name}' is positional-only; "
                "the model passes arguments by name",
                hint="remove the '/' from the signature",
            )
        if param.name not in hints:
            raise ToolError(
                f"tool {where}: parameter '{param.name}' has no type hint",
                hint=f"annotate it, e.g. '{param.name}: str'; supported: {_SUPPORTED}",
            )
        hint = hints[param.name]
        if _is_context(hint, context_types):
            if context_param is not None:
                raise ToolError(
                    f"tool {where}: asks for the context twice "
                    f"('{context_param}' and '{param.name}')"
                )
            context_param = param.name
            continue
        try:
            schema, converter = type_schema(hint)
        except UnsupportedType as exc:
            raise ToolError(
                f"tool {where}: parameter '{param.name}' has type {exc}, "
                "which a JSON Schema for the model cannot express",
                hint=f"use {_SUPPORTED}",
            ) from None
        if "description" not in schema and param.name in arg_docs and arg_docs[param.name]:
            schema = {**schema, "description": arg_docs[param.name]}
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            default = _json_default(param.default)
            if default is not _NO_DEFAULT:
                schema = {**schema, "default": default}
        properties[param.name] = schema
        if converter is not None:
            converters[param.name] = converter
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    parameters["additionalProperties"] = False
    text = description if description is not None else doc_description
    return FunctionSchema(text or "", parameters, context_param, converters)


def type_schema(hint: Any) -> tuple[dict[str, Any], Converter | None]:
    """JSON Schema for one annotation, and a converter if the JSON value is not already it."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    schema: dict[str, Any]
    if origin is typing.Annotated:
        schema, conv = type_schema(args[0])
        text = next((m for m in args[1:] if isinstance(m, str)), None)
        return ({**schema, "description": text} if text else schema), conv
    if hint in _PRIMITIVES:
        schema = {"type": _PRIMITIVES[hint]}
        # JSON has one number type: 3 arrives as an int even where a float is asked for.
        return schema, (float if hint is float else None)
    if hint is type(None):
        return {"type": "null"}, None
    if origin is Literal:
        return {**_enum_type(list(args)), "enum": list(args)}, None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [m.value for m in hint]
        return {**_enum_type(values), "enum": values}, hint
    if origin in (Union, types.UnionType):
        return _union_schema(args)
    if origin in (list, Sequence, typing.Sequence, set, frozenset) or hint in (list, tuple):
        if not args:
            return {"type": "array"}, None
        item, conv = type_schema(args[0])
        schema = {"type": "array", "items": item}
        if origin in (set, frozenset):
            schema["uniqueItems"] = True
        wrap = origin if origin in (set, frozenset) else None
        return schema, _list_converter(conv, wrap)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item, conv = type_schema(args[0])
            return {"type": "array", "items": item}, _list_converter(conv, tuple)
        parts = [type_schema(a) for a in args]
        schema = {
            "type": "array",
            "prefixItems": [p[0] for p in parts],
            "minItems": len(parts),
            "maxItems": len(parts),
        }
        convs = [p[1] for p in parts]
        return schema, (lambda v: tuple(c(x) if c else x for c, x in zip(convs, v, strict=True)))
    if origin in (dict, Mapping, typing.Mapping) or hint is dict:
        if not args:
            return {"type": "object"}, None
        if args[0] is not str:
            raise UnsupportedType(_name(hint))
        value, conv = type_schema(args[1])
        schema = {"type": "object", "additionalProperties": value}
        return schema, (None if conv is None else (lambda v: {k: conv(x) for k, x in v.items()}))
    if typing.is_typeddict(hint):
        return _typeddict_schema(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass_schema(hint)
    raise UnsupportedType(_name(hint))


def _union_schema(args: tuple[Any, ...]) -> tuple[dict[str, Any], Converter | None]:
    members = [a for a in args if a is not type(None)]
    nullable = len(members) < len(args)
    parts = [type_schema(a) for a in members]
    if len(parts) == 1:
        schema, conv = parts[0]
        if nullable:
            schema = _nullable(schema)
            conv = None if conv is None else (lambda v, c=conv: None if v is None else c(v))
        return schema, conv
    if any(c is not None for _, c in parts):
        # Which member a JSON value belongs to would be a guess; refuse rather than guess.
        raise UnsupportedType("a Union of types that need converting (Enum, dataclass, ...)")
    schemas = [p[0] for p in parts] + ([{"type": "null"}] if nullable else [])
    if all(set(s) == {"type"} and isinstance(s["type"], str) for s in schemas):
        return {"type": [s["type"] for s in schemas]}, None
    return {"anyOf": schemas}, None


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str) and "enum" not in schema:
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"], "enum": [*schema["enum"], None]}
    return {"anyOf": [schema, {"type": "null"}]}


def _enum_type(values: list[Any]) -> dict[str, Any]:
    kinds = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("boolean")
        elif isinstance(v, int):
            kinds.add("integer")
        elif isinstance(v, float):
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("string")
        elif v is None:
            kinds.add("null")
        else:
            raise UnsupportedType(f"a Literal/Enum value {v!r}")
    if len(kinds) == 1:
        return {"type": kinds.pop()}
    return {"type": sorted(kinds)}


def _list_converter(conv: Converter | None, wrap: Callable[[Any], Any] | None) -> Converter | None:
    if conv is None and wrap is None:
        return None
    if conv is None:
        assert wrap is not None
        return wrap
    if wrap is None:
        return lambda v: [conv(x) for x in v]
    return lambda v: wrap(conv(x) for x in v)


def _fields_schema(
    fields: list[tuple[str, Any, Any]], where: str
) -> tuple[dict[str, Any], dict[str, Converter]]:
    """fields: (name, hint, default); default is _REQUIRED, _NO_DEFAULT or a JSON value."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    converters: dict[str, Converter] = {}
    for name, hint, default in fields:
        try:
            schema, conv = type_schema(hint)
        except UnsupportedType as exc:
            raise UnsupportedType(f"{where} with field '{name}' of type {exc}") from None
        if default is _REQUIRED:
            required.append(name)
        elif default is not _NO_DEFAULT:
            schema = {**schema, "default": default}
        properties[name] = schema
        if conv is not None:
            converters[name] = conv
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema, converters


def _typeddict_schema(hint: type) -> tuple[dict[str, Any], Converter | None]:
    hints = typing.get_type_hints(hint, include_extras=True)
    required_keys = getattr(hint, "__required_keys__", frozenset(hints))
    fields = [(n, h, _REQUIRED if n in required_keys else _NO_DEFAULT) for n, h in hints.items()]
    schema, convs = _fields_schema(fields, hint.__name__)
    _add_title(schema, hint)
    if not convs:
        return schema, None
    return schema, lambda v: {k: (convs[k](x) if k in convs else x) for k, x in v.items()}


def _dataclass_schema(hint: type) -> tuple[dict[str, Any], Converter | None]:
    hints = typing.get_type_hints(hint, include_extras=True)
    fields = []
    for f in dataclasses.fields(hint):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = _json_default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _NO_DEFAULT
        else:
            default = _REQUIRED
        fields.append((f.name, hints[f.name], default))
    schema, convs = _fields_schema(fields, hint.__name__)
    _add_title(schema, hint)

    def build(value: Mapping[str, Any]) -> Any:
        return hint(**{k: (convs[k](x) if k in convs else x) for k, x in value.items()})

    return schema, build


def _add_title(schema: dict[str, Any], hint: type) -> None:
    doc = hint.__doc__ or ""
    # dataclasses invent a docstring from the signature; only a real one is worth sending.
    if doc and not doc.startswith(f"{hint.__name__}("):
        description, _ = parse_docstring(doc)
        if description:
            schema["description"] = description


_NO_DEFAULT = object()
_REQUIRED = object()


def _json_default(value: Any) -> Any:
    """A default worth telling the model, or _NO_DEFAULT when it has no JSON form."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple) and all(
        v is None or isinstance(v, str | int | float | bool) for v in value
    ):
        return list(value)
    return _NO_DEFAULT


def _is_context(hint: Any, context_types: tuple[type, ...]) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return isinstance(hint, type) and bool(context_types) and issubclass(hint, context_types)


def _name(hint: Any) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


# --------------------------------------------------------------------------- fast validity check

Checker = Callable[[Any], bool]

# Keywords the fast checker understands; any other keyword (a hand-written schema from an
# entry point, say) means "let jsonschema do it".
_ANNOTATIONS = frozenset({"description", "default", "title", "examples", "$comment"})
_FAST_KEYWORDS = _ANNOTATIONS | {
    "type",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "anyOf",
}


def _is_integer(v: Any) -> bool:
    return (type(v) is int) or (type(v) is float and v.is_integer())


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "integer": _is_integer,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "array": lambda v: type(v) is list,
    "object": lambda v: type(v) is dict,
}


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema means it: true is not 1, 1 is 1.0."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def compile_checker(schema: Any) -> Checker | None:
    """A plain-Python validity test for the schemas this module generates, or None.

    It answers only valid/invalid, in a few microseconds instead of jsonschema's ~100; on
    "invalid" the caller asks jsonschema for the message. None means the schema uses keywords
    the checker does not know, and jsonschema should be used for everything.
    """
    try:
        return _compile(schema)
    except _Unsupported:
        return None


class _Unsupported(Exception):
    pass


def _compile(schema: Any) -> Checker:
    if schema is True or schema == {}:
        return lambda v: True
    if schema is False:
        return lambda v: False
    if not isinstance(schema, Mapping) or set(schema) - _FAST_KEYWORDS:
        raise _Unsupported
    checks: list[Checker] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if any(k not in _TYPE_TESTS for k in kinds):
            raise _Unsupported
        tests = [_TYPE_TESTS[k] for k in kinds]
        checks.append(tests[0] if len(tests) == 1 else (lambda v: any(t(v) for t in tests)))
    if "enum" in schema:
        allowed = list(schema["enum"])
        checks.append(lambda v: any(json_equal(v, a) for a in allowed))
    if "anyOf" in schema:
        options = [_compile(s) for s in schema["anyOf"]]
        checks.append(lambda v: any(o(v) for o in options))
    obj = _object_check(schema)
    if obj is not None:
        checks.append(lambda v: type(v) is not dict or obj(v))
    arr = _array_check(schema)
    if arr is not None:
        checks.append(lambda v: type(v) is not list or arr(v))
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)


def _object_check(schema: Mapping[str, Any]) -> Checker | None:
    keys = ("properties", "required", "additionalProperties")
    if not any(k in schema for k in keys):
        return None
    props = {k: _compile(s) for k, s in (schema.get("properties") or {}).items()}
    required = tuple(schema.get("required") or ())
    extra = schema.get("additionalProperties", True)
    extra_check = None if extra is True else _compile(extra)

    def check(value: dict[str, Any]) -> bool:
        for key in required:
            if key not in value:
                return False
        for key, item in value.items():
            test = props.get(key)
            if test is None:
                if extra_check is not None and not extra_check(item):
                    return False
            elif not test(item):
                return False
        return True

    return check


def _array_check(schema: Mapping[str, Any]) -> Checker | None:
    keys = ("items", "prefixItems", "minItems", "maxItems", "uniqueItems")
    if not any(k in schema for k in keys):
        return None
    prefix = [_compile(s) for s in schema.get("prefixItems") or ()]
    items = _compile(schema["items"]) if "items" in schema else None
    low, high = schema.get("minItems"), schema.get("maxItems")
    unique = bool(schema.get("uniqueItems"))

    def check(value: list[Any]) -> bool:
        if low is not None and len(value) < low:
            return False
        if high is not None and len(value) > high:
            return False
        for i, item in enumerate(value):
            if i < len(prefix):
                if not prefix[i](item):
                    return False
            elif items is not None and not items(item):
                return False
        if unique:
            for i, a in enumerate(value):
                if any(json_equal(a, b) for b in value[i + 1 :]):
                    return False
        return True

    return check
