"""Issue 29 items 7, 3, 4 and 6 on the config side: the capability matrix `vlrun check` applies
(model family x api-version x deployment mode, each row with its source), BYOM as a setting,
smart end-of-turn detection behind the preview api-versions, the built-in search tools and a
hosted agent's invoke_input. Every check runs the real CLI (`vlrun check`/`compile`) in process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.config import capabilities as caps
from runner.config.compile import compile_with_problems, greeting_event
from runner.config.load import load_profile
from runner.redact import forget_secrets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _forget() -> None:
    forget_secrets()


def head(text: str) -> str:
    """A name, and instructions unless an agent brings its own."""
    return "name: p\n" + ("" if "agent:" in text else "instructions: Be brief.\n")


def check(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, Any]]]:
    path = tmp_path / "p.yaml"
    path.write_text(head(text) + text)
    code = main(["check", str(path), "--format", "json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)["files"][0]["problems"]


def line_of(text: str, needle: str) -> int:
    """The profile line (with the two header lines `check` adds) holding ``needle``."""
    lines = (head(text) + text).splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


# (profile text, the line's needle, severity, words in the message, words in the hint)
REFUSED = {
    "semantic_vad on a chat model": (
        "connection: {model: gpt-4.1}\nturn_detection: {type: semantic_vad}\n",
        "semantic_vad",
        "error",
        "names only gpt-realtime and gpt-realtime-mini",
        "azure_semantic_vad",
    ),
    "semantic_vad on phi": (
        "connection: {model: phi4-mm-realtime}\nturn_detection: semantic_vad\n",
        "semantic_vad",
        "error",
        "phi4-mm-realtime",
        "azure_semantic_vad",
    ),
    "semantic_vad on a later gpt-realtime": (
        "connection: {model: gpt-realtime-2.1}\nturn_detection: {type: semantic_vad}\n",
        "semantic_vad",
        "warning",
        "names only gpt-realtime and gpt-realtime-mini",
        "azure_semantic_vad",
    ),
    "an Azure voice on azure-realtime": (
        "connection: {model: azure-realtime}\nvoice: en-US-AvaNeural\n",
        "voice:",
        "error",
        "accepts only azure-realtime-native voices",
        "type: azure-realtime-native",
    ),
    "MCP with phi": (
        "connection: {model: phi4-mm-realtime}\nmcp_servers: [{label: d, url: 'https://m.x/'}]\n",
        "mcp_servers",
        "error",
        "not supported with phi models",
        "drop mcp_servers",
    ),
    "MCP with a classic agent": (
        "connection:\n  api_version: 2026-04-10\n  agent: {id: asst_1, project: p}\n"
        "mcp_servers: [{label: d, url: 'https://m.x/'}]\n",
        "mcp_servers",
        "error",
        "Foundry (classic) agents",
        "current agent",
    ),
    "native voice on gpt-realtime": (
        "connection: {model: gpt-realtime, api_version: 2026-07-15}\n"
        "voice: {type: azure-realtime-native, name: ava}\n",
        "voice:",
        "error",
        "only with the azure-realtime model",
        "connection.model: azure-realtime",
    ),
    "native voice on the default model": (
        "connection: {api_version: 2026-07-15}\nvoice: {type: azure-realtime-native, name: ava}\n",
        "voice:",
        "warning",
        "(the default)",
        "azure-realtime",
    ),
    "temperature above 1.2 on a realtime model": (
        "connection: {model: gpt-realtime-mini}\ntemperature: 1.5\n",
        "temperature",
        "error",
        "outside Voice Live's range 0.6 to 1.2",
        "0.6 to 1.2",
    ),
    "temperature below 0.6 on a chat model": (
        "connection: {model: gpt-5}\ntemperature: 0.2\n",
        "temperature",
        "warning",
        "may differ",
        "0.6 to 1.2",
    ),
    "an unknown model": (
        "connection: {model: gpt-realtme-mini}\n",
        "gpt-realtme-mini",
        "warning",
        "not in the Voice Live model catalog",
        "did you mean `gpt-realtime-mini`?",
    ),
    "a BYOM-only model without BYOM": (
        "connection: {model: gpt-5.5}\n",
        "gpt-5.5",
        "warning",
        "reached through BYOM",
        "connection.byom",
    ),
    "BYOM without a deployment": (
        "connection: {byom: byom-azure-openai-realtime}\n",
        "byom",
        "error",
        "needs connection.model",
        "deployment",
    ),
    "BYOM and the profile query": (
        "connection:\n  model: mine\n  byom: byom-azure-openai-realtime\n  query: {profile: x}\n",
        "query",
        "error",
        "what connection.byom sends",
        "drop connection.query.profile",
    ),
    "smart EOT on a GA version": (
        "connection: {api_version: 2026-07-15}\nturn_detection:\n  type: azure_semantic_vad\n"
        "  end_of_utterance_detection: {model: smart_end_of_turn_detection}\n",
        "smart_end_of_turn_detection",
        "error",
        "-preview api_versions from 2026-06-01-preview take it, not 2026-07-15",
        "2026-06-01-preview",
    ),
    "smart EOT on an older preview": (
        "connection: {api_version: 2026-01-01-preview}\nturn_detection:\n  type: server_vad\n"
        "  end_of_utterance_detection: {model: smart_end_of_turn_detection}\n",
        "smart_end_of_turn_detection",
        "error",
        "not 2026-01-01-preview",
        "2026-06-01-preview",
    ),
    "smart EOT on v1": (
        "connection: {api_version: v1}\nturn_detection:\n  type: azure_semantic_vad\n"
        "  end_of_utterance_detection: {model: smart_end_of_turn_detection}\n",
        "smart_end_of_turn_detection",
        "error",
        "no VoiceLive-Features key",
        "2026-06-01-preview",
    ),
    "smart EOT with the legacy threshold": (
        "connection: {api_version: 2026-06-01-preview}\nturn_detection:\n  type: server_vad\n"
        "  end_of_utterance_detection:\n    model: smart_end_of_turn_detection\n"
        "    threshold: 0.1\n",
        "threshold: 0.1",
        "error",
        "takes threshold_level and timeout_ms, not threshold",
        None,
    ),
    "web search before 2026-04-10": (
        "connection: {api_version: 2026-01-01-preview}\nweb_search: true\n",
        "web_search",
        "error",
        "needs api_version 2026-04-10",
        None,
    ),
    "file search on v1": (
        "connection: {api_version: v1}\nfile_search: {vector_store_ids: [vs_1]}\n",
        "file_search",
        "error",
        "v1 tools are function or mcp, not file_search",
        "dated api_version",
    ),
    "invoke_input on a classic agent": (
        "connection:\n  api_version: 2025-05-01-preview\n"
        "  agent: {id: asst_1, project: p, invoke_input: {a: b}}\n",
        "invoke_input",
        "error",
        "not classic agents",
        None,
    ),
    "invoke_input before 2026-06-01-preview": (
        "connection:\n  api_version: 2026-04-10\n"
        "  agent: {name: h, project: p, invoke_input: {a: b}}\n",
        "invoke_input",
        "error",
        "needs api_version 2026-06-01-preview",
        None,
    ),
}


@pytest.mark.parametrize("case", REFUSED, ids=str)
def test_each_capability_is_checked_at_its_line_with_the_fix(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, needle, severity, words, hint = REFUSED[case]
    code, problems = check(tmp_path, text, capsys)
    found = [p for p in problems if words in p["message"]]
    assert found, problems
    problem = found[0]
    assert problem["severity"] == severity
    assert problem["line"] == line_of(text, needle), problem
    if hint:
        assert hint in (problem["hint"] or ""), problem
    assert code == (1 if severity == "error" else 0)


# the same settings, where they are accepted: no problem at all
ACCEPTED = {
    "semantic_vad on gpt-realtime-mini": "connection: {model: gpt-realtime-mini}\n"
    "turn_detection: semantic_vad\n",
    "semantic_vad on the default model": "turn_detection: semantic_vad\n",
    "MCP with a current agent": "connection:\n  agent: {name: a, project: p}\n"
    "mcp_servers: [{label: d, url: 'https://m.x/'}]\n",
    "native voice on azure-realtime": "connection: {model: azure-realtime, api_version: "
    "2026-07-15}\nvoice: {type: azure-realtime-native, name: ava}\n",
    "temperature 1.2 on gpt-realtime": "connection: {model: gpt-realtime}\ntemperature: 1.2\n",
    "every catalog model": "".join(f"# {m}\n" for m in caps.CATALOG),
    "GPT-Live's models": "connection: {model: gpt-live-1-mini}\n",
    "BYOM with any deployment name": "connection: {model: my-ft-4.1, byom: "
    "byom-azure-openai-chat-completion}\n",
    "smart EOT on 2026-06-01-preview": "connection: {api_version: 2026-06-01-preview}\n"
    "turn_detection:\n  type: azure_semantic_vad\n  end_of_utterance_detection:\n"
    "    {model: smart_end_of_turn_detection, threshold_level: low, timeout_ms: 800}\n",
    "smart EOT on 2026-07-31-preview": "connection: {api_version: 2026-07-31-preview}\n"
    "turn_detection:\n  type: server_vad\n  end_of_utterance_detection:\n"
    "    {model: smart_end_of_turn_detection}\n",
    "web and file search on 2026-04-10": "connection: {api_version: 2026-04-10}\n"
    "web_search: true\nfile_search: {vector_store_ids: [vs_1], max_num_results: 3}\n",
    "invoke_input on a hosted agent": "connection:\n  api_version: 2026-07-15\n"
    "  agent: {name: h, project: p, invoke_input: {locale: en-US}}\n",
}


@pytest.mark.parametrize("case", ACCEPTED, ids=str)
def test_where_the_matrix_accepts_a_setting_check_is_silent(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, problems = check(tmp_path, ACCEPTED[case], capsys)
    assert (code, problems) == (0, [])


def test_every_catalog_model_is_known_by_name(tmp_path: Path) -> None:
    for name in caps.CATALOG:
        assert caps.family(name) is not None, name
        (tmp_path / "p.yaml").write_text(f"name: p\nconnection: {{model: {name}}}\n")
        _, problems, _ = compile_with_problems(load_profile(tmp_path / "p.yaml", env={}))
        assert problems == [], (name, problems)


def test_the_catalog_is_the_overview_pages_table() -> None:
    # source: voice-live.md "Supported models and regions" (23 rows) + gpt-5-chat from its
    # pricing table + GPT-Live's two models
    assert len(caps.CATALOG) == len(set(caps.CATALOG)) == 26
    for name in ("gpt-realtime-2.1-datazone", "gpt-5.6-terra", "phi4-mm-realtime", "gpt-live-1"):
        assert name in caps.CATALOG
    assert not set(caps.BYOM_ONLY) & set(caps.CATALOG)


def test_every_rule_has_a_source_and_a_row_in_the_docs() -> None:
    doc = (ROOT / "docs" / "profiles.md").read_text()
    assert "\n".join(caps.markdown()) in doc, "regenerate: python -m runner.config.capabilities"
    assert "\n".join(caps.catalog_markdown()) in doc
    for rule in caps.RULES:
        assert rule.source and rule.setting and rule.accepts, rule.name
    assert len({r.name for r in caps.RULES}) == len(caps.RULES)


def _compile(tmp_path: Path, text: str, version: str | None = None) -> tuple[Any, list[Any]]:
    (tmp_path / "p.yaml").write_text("name: p\ninstructions: Be brief.\n" + text)
    profile = load_profile(tmp_path / "p.yaml", env={})
    payload, problems, _ = compile_with_problems(profile, api_version=version)
    return payload["session"], problems


def test_byom_is_the_profile_query_of_the_connection(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\nconnection:\n  model: my-rt\n  byom: byom-azure-openai-realtime\n"
        "  query: {feature: x}\n"
    )
    profile = load_profile(tmp_path / "p.yaml", env={})
    assert profile.connection.connect_options()["query"] == {
        "feature": "x",
        "profile": "byom-azure-openai-realtime",
    }


def test_smart_eot_compiles_to_the_documented_shape(tmp_path: Path) -> None:
    session, problems = _compile(
        tmp_path,
        "turn_detection:\n  type: azure_semantic_vad\n  end_of_utterance_detection:\n"
        "    {model: smart_end_of_turn_detection, threshold_level: high, timeout_ms: 700}\n",
        "2026-06-01-preview",
    )
    assert problems == []
    # source: REF 2026-06-01-preview "SmartEndOfTurnDetection": model, threshold_level, timeout_ms
    assert session["turn_detection"]["end_of_utterance_detection"] == {
        "model": "smart_end_of_turn_detection",
        "threshold_level": "high",
        "timeout_ms": 700,
    }


SEARCH = "web_search: true\nfile_search: {vector_store_ids: [vs_a, vs_b], max_num_results: 5}\n"


@pytest.mark.parametrize("version", ["2026-04-10", "2026-07-15", "2026-07-31-preview"])
def test_built_in_search_tools_compile_beside_function_tools(tmp_path: Path, version: str) -> None:
    session, problems = _compile(
        tmp_path, "tools: [{name: t, parameters: {type: object}}]\n" + SEARCH, version
    )
    assert session["tools"] == [
        {"type": "function", "name": "t", "parameters": {"type": "object"}},
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": ["vs_a", "vs_b"], "max_num_results": 5},
    ]
    assert problems == []


def test_v1_names_both_built_in_tools_it_cannot_say_at_their_lines(tmp_path: Path) -> None:
    _, problems = _compile(tmp_path, SEARCH, "v1")
    assert [(p.line, p.severity) for p in problems] == [(3, "error"), (4, "error")]
    assert "not web_search" in problems[0].message and "not file_search" in problems[1].message


def test_explain_credits_the_search_tools_to_their_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text("name: p\ninstructions: Be brief.\n" + SEARCH)
    assert main(["explain", str(tmp_path / "p.yaml")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert rows["session.tools[0].type"].endswith("p.yaml:3")
    assert rows["session.tools[1].vector_store_ids"].endswith("p.yaml:4")


def test_a_hosted_agents_invoke_input_rides_on_the_greeting(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\nconnection:\n  agent: {name: h, project: p, invoke_input: {city: Oslo}}\n"
        "greeting: {text: Hello.}\n"
    )
    event = greeting_event(load_profile(tmp_path / "p.yaml", env={}))
    assert event is not None
    assert event["response"]["invoke_input"] == {"city": "Oslo"}
    assert event["response"]["pre_generated_assistant_message"]["content"][0]["text"] == "Hello."


def test_explain_credits_the_byom_query_to_connection_byom(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\ninstructions: Hi.\nconnection:\n  model: my-rt\n"
        "  byom: byom-azure-openai-realtime\n  query: {feature: x}\n"
    )
    assert main(["explain", str(tmp_path / "p.yaml")]) == 0
    rows = {r.split()[0]: r for r in capsys.readouterr().out.splitlines() if r}
    assert '"byom-azure-openai-realtime"' in rows["connection.query.profile"]
    assert rows["connection.query.profile"].endswith("p.yaml:5")
    assert rows["connection.query"].split()[1:3] == ['{"feature":', '"x"}']
    assert rows["connection.query"].endswith("p.yaml:6")
