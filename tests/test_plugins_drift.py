"""Profile-declared parameters vs the plugin's schema (both directions), and MCP approval policy."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from runner.live.mcp import decide, require_approval
from runner.plugins import schema_drift

TOOL = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
        "stops": {
            "type": "array",
            "items": {"type": "object", "properties": {"x": {"type": "number"}}},
        },
    },
    "required": ["location"],
}


def changed(**edits: object) -> dict:
    schema = copy.deepcopy(TOOL)
    for path, value in edits.items():
        node = schema
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return schema


def test_identical_schemas_have_no_drift() -> None:
    assert schema_drift(TOOL, copy.deepcopy(TOOL)) == []


def test_type_mismatch_is_reported_with_its_subpath() -> None:
    declared = changed(properties__days={"type": "string"})
    assert schema_drift(declared, TOOL) == [
        ("properties.days.type", "the profile says string but the tool takes integer")
    ]


def test_nullable_types_compare_as_sets() -> None:
    declared = changed(properties__location={"type": ["null", "string"]})
    actual = changed(properties__location={"type": ["string", "null"]})
    assert schema_drift(declared, actual) == []
    assert schema_drift(declared, TOOL)[0][0] == "properties.location.type"


def test_required_drift_in_both_directions() -> None:
    assert schema_drift(changed(required=[]), TOOL) == [
        ("required", "the tool requires 'location' but the profile marks it optional")
    ]
    assert schema_drift(changed(required=["location", "days"]), TOOL) == [
        ("required", "the profile requires 'days' but the tool treats it as optional")
    ]


def test_enum_drift_in_both_directions() -> None:
    narrower = changed(properties__unit={"type": "string", "enum": ["celsius"]})
    [(path, message)] = schema_drift(narrower, TOOL)
    assert path == "properties.unit.enum" and "leaves out ['fahrenheit']" in message
    wider = changed(
        properties__unit={"type": "string", "enum": ["celsius", "fahrenheit", "kelvin"]}
    )
    [(path, message)] = schema_drift(wider, TOOL)
    assert "does not accept ['kelvin']" in message
    no_enum = changed(properties__unit={"type": "string"})
    assert schema_drift(no_enum, TOOL)[0][0] == "properties.unit.enum"
    assert "does not declare" in schema_drift(TOOL, no_enum)[0][1]


def test_enum_order_does_not_matter() -> None:
    reordered = changed(properties__unit={"type": "string", "enum": ["fahrenheit", "celsius"]})
    assert schema_drift(reordered, TOOL) == []


def test_parameters_missing_on_either_side() -> None:
    declared = changed(properties__days=None)
    assert schema_drift(declared, TOOL) == [
        ("properties.days", "the tool has a parameter 'days' the profile does not declare")
    ]
    extra = changed(properties__hours={"type": "integer"})
    assert schema_drift(extra, TOOL) == [
        ("properties.hours", "the profile declares 'hours' but the tool has no such parameter")
    ]


def test_drift_inside_array_items() -> None:
    declared = changed(
        properties__stops={
            "type": "array",
            "items": {"type": "object", "properties": {"x": {"type": "string"}}},
        }
    )
    assert schema_drift(declared, TOOL) == [
        (
            "properties.stops.items.properties.x.type",
            "the profile says string but the tool takes number",
        )
    ]


def test_several_problems_are_all_reported() -> None:
    declared = {"type": "object", "properties": {"location": {"type": "integer"}}}
    paths = [p for p, _ in schema_drift(declared, TOOL)]
    assert paths == [
        "properties.location.type",
        "properties.unit",
        "properties.days",
        "properties.stops",
        "required",
    ]


# ---------------------------------------------------------------- MCP approval


@pytest.mark.parametrize(
    ("policy", "server", "tool", "expected"),
    [
        # The profile speaks the service's require_approval words (the compiler sends them).
        ("never", "wiki", "read", "approve"),  # no approval needed
        ("always", "wiki", "read", "ask"),  # approval always needed: a person decides
        ("ask", "wiki", "read", "ask"),
        ("Never ", "wiki", "read", "approve"),
        (None, "wiki", "read", "ask"),
        ("sometimes", "wiki", "read", "ask"),  # unknown words never approve
        (True, "wiki", "read", "ask"),
        ({"never": ["read_*"]}, "wiki", "read_page", "approve"),
        ({"never": ["read_*"]}, "wiki", "delete_page", "ask"),  # unlisted: service default
        ({"never": ["read_*"], "always": ["read_secrets"]}, "wiki", "read_secrets", "ask"),
        ({"never": ("search",), "always": ()}, "wiki", "search", "approve"),  # profile tuples
        ({"never": ["wiki.read"]}, "wiki", "read", "approve"),
        ({"never": ["wiki.read"]}, "other", "read", "ask"),
        # The runner's own answers, without asking anyone.
        ("deny", "wiki", "read", "deny"),
        ("approve", "wiki", "read", "approve"),
        ({"approve": ["read_*"], "deny": ["read_secrets"]}, "wiki", "read_secrets", "deny"),
        ({"never": ["drop"], "deny": "drop"}, "db", "drop", "deny"),
        # Per-server policies.
        ({"wiki": "never", "*": "deny"}, "wiki", "x", "approve"),
        ({"wiki": "never", "*": "deny"}, "db", "x", "deny"),
        ({"wiki": {"never": ["read"]}}, "wiki", "read", "approve"),
        ({"wiki": "never"}, "db", "x", "ask"),
    ],
)
def test_decide(policy: object, server: str, tool: str, expected: str) -> None:
    assert decide(policy, server, tool) == expected


def test_decide_accepts_the_profile_record() -> None:
    @dataclasses.dataclass(frozen=True)
    class Policy:
        never: tuple[str, ...] | None = None
        always: tuple[str, ...] | None = None

    assert decide(Policy(never=("search",)), "wiki", "search") == "approve"
    assert decide(Policy(always=("search",)), "wiki", "search") == "ask"


def test_require_approval_matches_the_local_policy() -> None:
    assert require_approval("never") == "never"
    assert require_approval("approve") == "never"  # we approve everything: no round trip
    assert require_approval("always") == "always"
    assert require_approval("ask") == "always"
    assert require_approval("deny") == "always"  # the service must ask so we can deny
    assert require_approval({"never": ["search", "read_*"], "deny": ["search"]}) == "always"
    assert require_approval({"never": ["search", "fetch"]}) == {"never": ["search", "fetch"]}
    assert require_approval({"wiki": "never", "*": "ask"}, "wiki") == "never"
    assert require_approval({"wiki": "never", "*": "ask"}, "db") == "always"
