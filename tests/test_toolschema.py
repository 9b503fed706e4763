"""Type hints -> JSON Schema: golden schemas for every supported type, and clear refusals."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runner.errors import ToolError
from runner.plugins import Registry, ToolContext, tool
from runner.plugins._schema import compile_checker, parse_docstring

DATA = Path(__file__).parent / "data" / "plugins"
GOLDEN = DATA / "golden"
CASES = Registry.discover([DATA / "schema_cases"], entry_points=False)


@pytest.mark.parametrize("name", CASES.names())
def test_schema_matches_golden(name: str) -> None:
    definition = CASES.get(name).definition()
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("VLRUN_UPDATE_GOLDEN") == "1":
        golden.write_text(json.dumps(definition, indent=2, ensure_ascii=False) + "\n")
    assert definition == json.loads(golden.read_text())


def test_every_golden_file_has_a_tool() -> None:
    # A renamed or deleted case must not leave a golden file that silently tests nothing.
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == CASES.names()


def test_golden_schemas_are_valid_draft_2020_12() -> None:
    import jsonschema

    for spec in CASES:
        jsonschema.Draft202012Validator.check_schema(spec.parameters)


def test_context_parameter_is_hidden_from_the_model() -> None:
    spec = CASES.get("renamed_tool")
    assert spec.wants_context
    assert list(spec.parameters["properties"]) == ["value"]
    assert spec.description == "A description set in the decorator."


def test_decorator_only_marks() -> None:
    def plain(x: int) -> int:
        return x

    marked = tool(plain)
    assert marked is plain
    assert tool(name="other")(plain) is plain
    assert plain(3) == 3


UNSUPPORTED: list[tuple[str, Callable[..., Any]]] = []


def _case(fn: Callable[..., Any]) -> Callable[..., Any]:
    UNSUPPORTED.append((fn.__name__, fn))
    return fn


class Opaque:
    pass


@_case
def takes_object(thing: Opaque) -> None: ...


@_case
def takes_bytes(data: bytes) -> None: ...


@_case
def takes_any(value: Any) -> None: ...


@_case
def takes_int_keys(table: dict[int, str]) -> None: ...


@_case
def takes_callable(cb: Callable[[int], int]) -> None: ...


@dataclasses.dataclass
class HasOpaque:
    inner: Opaque


@_case
def takes_bad_dataclass(box: HasOpaque) -> None: ...


@_case
def takes_list_of_bytes(items: list[bytes]) -> None: ...


@pytest.mark.parametrize(("name", "fn"), UNSUPPORTED, ids=[n for n, _ in UNSUPPORTED])
def test_unsupported_type_names_function_and_parameter(name: str, fn: Callable[..., Any]) -> None:
    param = next(iter(fn.__annotations__))
    with pytest.raises(ToolError) as info:
        Registry.of(fn)
    message = info.value.message
    assert f"'{name}'" in message
    assert f"parameter '{param}'" in message
    assert "test_toolschema.py:" in message  # where the function is
    assert info.value.hint and "Literal" in info.value.hint


def test_dataclass_field_is_named_in_the_error() -> None:
    with pytest.raises(ToolError, match=r"HasOpaque with field 'inner' of type Opaque"):
        Registry.of(takes_bad_dataclass)


def test_missing_hint_is_an_error() -> None:
    def untyped(city) -> None:  # type: ignore[no-untyped-def]
        ...

    with pytest.raises(ToolError, match=r"'untyped'.*parameter 'city' has no type hint"):
        Registry.of(untyped)


def test_var_args_are_refused() -> None:
    def star(*names: str) -> None: ...

    def kw(**options: str) -> None: ...

    for fn in (star, kw):
        with pytest.raises(ToolError, match="only pass named arguments"):
            Registry.of(fn)


@dataclasses.dataclass
class A:
    x: int


@dataclasses.dataclass
class B:
    y: int


def test_union_that_needs_conversion_is_refused() -> None:
    def either(value: A | B) -> None: ...

    with pytest.raises(ToolError, match="parameter 'value'"):
        Registry.of(either)


def test_literal_of_mixed_types() -> None:
    def pick(value: Literal["auto", 0, 1]) -> None: ...

    schema = Registry.of(pick).get("pick").parameters["properties"]["value"]
    assert schema == {"type": ["integer", "string"], "enum": ["auto", 0, 1]}


def test_unusable_tool_name_is_refused() -> None:
    @tool(name="get weather!")
    def bad() -> None: ...

    with pytest.raises(ToolError, match="not usable"):
        Registry.of(bad)


def test_generator_is_refused() -> None:
    def gen(n: int):  # type: ignore[no-untyped-def]
        yield n

    with pytest.raises(ToolError, match="generator"):
        Registry.of(gen)


def test_two_context_parameters_are_refused() -> None:
    def twice(a: ToolContext, b: ToolContext) -> None: ...

    with pytest.raises(ToolError, match="context twice"):
        Registry.of(twice)


def test_forward_reference_that_does_not_resolve() -> None:
    def later(x: NotDefinedAnywhere) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ToolError, match="cannot resolve its type hints"):
        Registry.of(later)


def test_docstring_sections() -> None:
    doc = """Summary line.

    More detail
    here.

    Args:
        a: First.
        b (list[str]): Second,
            continued.
        *rest: Ignored star.

    Raises:
        ValueError: not an argument.
    """
    description, args = parse_docstring(doc)
    assert description == "Summary line.\n\nMore detail here."
    assert args == {"a": "First.", "b": "Second, continued.", "rest": "Ignored star."}
    assert parse_docstring(None) == ("", {})


def test_annotated_description_wins_over_docstring() -> None:
    def f(x: Annotated[int, "from Annotated"]) -> None:
        """Doc.

        Args:
            x: from docstring
        """

    assert Registry.of(f).get("f").parameters["properties"]["x"]["description"] == "from Annotated"


# ---------------------------------------------------------------- the fast validity check

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-3, 3, allow_nan=False)
    | st.sampled_from([1.0, 2.0, "fast", "slow", "celsius", "red", "a", "x", ""]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "text",
                    "count",
                    "ratio",
                    "flag",
                    "mode",
                    "level",
                    "unit",
                    "names",
                    "lat",
                    "lon",
                    "label",
                    "where",
                    "filters",
                    "tags",
                    "min_rating",
                    "points",
                    "pair",
                    "city",
                    "limit",
                    "extra",
                    "value",
                    "zz",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _from_schema(schema: Any) -> st.SearchStrategy[Any]:
    """Values shaped by the schema, each node sometimes replaced by arbitrary JSON, so the
    draws mix valid and nearly-valid arguments."""
    return st.one_of(_shaped(schema), _shaped(schema), _shaped(schema), JSON_VALUES)


def _shaped(schema: Any) -> st.SearchStrategy[Any]:
    if not isinstance(schema, dict) or not schema:
        return JSON_VALUES
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([_from_schema(s) for s in schema["anyOf"]])
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or ["null"])
    options: list[st.SearchStrategy[Any]] = []
    for kind in kinds:
        if kind == "object":
            props = schema.get("properties", {})
            required = set(schema.get("required", ()))
            extra = schema.get("additionalProperties")
            values = st.dictionaries(st.sampled_from(["k1", "zz"]), _from_schema(extra))
            options.append(
                st.fixed_dictionaries(
                    {k: _from_schema(v) for k, v in props.items() if k in required},
                    optional={k: _from_schema(v) for k, v in props.items() if k not in required},
                )
                if props or extra is False
                else values
            )
        elif kind == "array":
            if "prefixItems" in schema:
                options.append(st.tuples(*map(_from_schema, schema["prefixItems"])).map(list))
            else:
                options.append(st.lists(_from_schema(schema.get("items", {})), max_size=3))
        else:
            options.append(
                {
                    "string": st.text(max_size=3),
                    "integer": st.integers(-5, 5),
                    "number": st.floats(-5, 5, allow_nan=False),
                    "boolean": st.booleans(),
                    "null": st.none(),
                }[kind]
            )
    return st.one_of(options)


@pytest.mark.parametrize("name", CASES.names())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_check_agrees_with_jsonschema(name: str, data: st.DataObject) -> None:
    spec = CASES.get(name)
    assert spec.checker is not None, "every generated schema should have a fast check"
    validator = spec.validator  # jsonschema's Draft 2020-12 validator, the reference
    value = data.draw(_from_schema(spec.parameters))
    expected = validator.is_valid(value)
    event("valid" if expected else "invalid")
    assert spec.checker(value) == expected


def test_fast_check_declines_unknown_keywords() -> None:
    assert compile_checker({"type": "string", "pattern": "^a"}) is None
    assert compile_checker({"type": "object", "properties": {"x": {"minimum": 1}}}) is None
    check = compile_checker({"type": ["integer", "null"], "enum": [1, None]})
    assert check is not None
    assert [check(v) for v in (1, 1.0, True, None, 2, "1")] == [
        True,
        True,
        False,
        True,
        False,
        False,
    ]
