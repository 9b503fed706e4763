"""The fast yes/no schema path must agree with jsonschema on every document.

`vlrun check` trusts the fast path for valid documents and asks jsonschema only when it says
no; a disagreement would let an invalid profile through or invent an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runner.config import source as yamlsrc
from runner.config.validate import compile_schema, json_equal, schema
from runner.errors import ProfileError

DATA = Path(__file__).parent / "data" / "profiles"
REFERENCE = Draft202012Validator(schema())
FAST = compile_schema(schema())


def corpus_documents() -> list[tuple[str, Any]]:
    docs = []
    for path in sorted(DATA.rglob("*.yaml")):
        try:
            docs.append((str(path.relative_to(DATA)), yamlsrc.load_file(path).data))
        except ProfileError:
            continue
    return docs


DOCS = corpus_documents()


def test_corpus_has_both_outcomes() -> None:
    outcomes = {REFERENCE.is_valid(doc) for _, doc in DOCS}
    assert outcomes == {True, False}
    assert len(DOCS) > 100


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[n for n, _ in DOCS])
def test_agrees_on_corpus(name: str, doc: Any) -> None:
    assert FAST(doc) == REFERENCE.is_valid(doc)


FIELDS = [
    "name",
    "voice",
    "type",
    "temperature",
    "threshold",
    "modalities",
    "tools",
    "audio",
    "input_sampling_rate",
    "noise_reduction",
    "echo_cancellation",
    "channels",
    "vars",
    "default",
    "metadata",
    "greeting",
    "enabled",
    "mcp_servers",
    "label",
    "url",
    "approval",
    "max_response_tokens",
    "turn_detection",
    "x-anchor",
    "bad key",
    "timeout_s",
]
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 30000),
    st.floats(-2, 3),
    st.sampled_from(
        [
            "alloy",
            "text",
            "audio",
            "server_vad",
            "manual",
            "inf",
            "off",
            "https://x",
            "ask",
            "g711_ulaw",
            "",
            "1bad",
            "ok_1",
            "azure-standard",
            "client",
            "server",
        ]
    ),
    st.sampled_from([0, 1, 2, 8000, 16000, 24000, 1.0, 0.5, 4096, 4097]),
)
DOCS_STRATEGY = st.recursive(
    LEAVES,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(FIELDS), kids, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), DOCS_STRATEGY, max_size=6))
def test_agrees_on_generated_documents(doc: dict[str, Any]) -> None:
    assert FAST(doc) == REFERENCE.is_valid(doc)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        ([1, True], [1.0, True], True),
        ({"a": 1}, {"a": True}, False),
        ("1", 1, False),
        (None, None, True),
    ],
)
def test_json_equality(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal


def test_unsupported_keyword_is_refused() -> None:
    with pytest.raises(ValueError, match="oneOf"):
        compile_schema({"oneOf": [{"type": "string"}]})
