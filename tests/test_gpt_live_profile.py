"""Issue 29 item 2 on the config side: a GPT-Live profile compiles to the `session.start` of
docs/gpt-live.md, and `vlrun check` refuses at file:line every setting GPT-Live does not take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.config import gpt_live
from runner.config.compile import compile_with_problems, greeting_event
from runner.config.load import load_profile
from runner.redact import forget_secrets

ROOT = Path(__file__).resolve().parents[1]
HEAD = "name: p\nconnection: {model: gpt-live-1}\ninstructions: Be brief.\n"


@pytest.fixture(autouse=True)
def _forget() -> None:
    forget_secrets()


def _compile(tmp_path: Path, text: str) -> tuple[dict[str, Any], list[Any]]:
    (tmp_path / "p.yaml").write_text(HEAD + text)
    payload, problems, _ = compile_with_problems(load_profile(tmp_path / "p.yaml", env={}))
    return payload, problems


def test_the_shipped_profile_compiles_to_one_session_start_with_its_tool() -> None:
    profile = load_profile(ROOT / "profiles" / "gpt-live.yaml", env={})
    payload, problems, _ = compile_with_problems(profile)
    assert problems == []
    assert payload["type"] == "session.start"
    session = payload["session"]
    assert list(session) == ["model", "instructions", "audio", "delegation"]
    assert session["model"] == "gpt-live-1"
    assert session["audio"] == {"output": {"voice": "marin"}}
    backend = session["delegation"]["responses"]
    assert session["delegation"]["type"] == "responses"
    assert backend["model"] == "gpt-5.4-mini"
    assert [t["name"] for t in backend["tools"]] == ["current_time"]
    assert gpt_live.accepts_typed_turns(profile.settings)


def test_delegation_to_a_deployment_carries_the_profiles_backend_settings(tmp_path: Path) -> None:
    payload, problems = _compile(
        tmp_path,
        "gpt_live: {delegation: {deployment: dep-1, instructions: Use tools.}}\n"
        "tools: [{name: t, parameters: {type: object}}]\nweb_search: true\n"
        "tool_choice: t\nparallel_tool_calls: false\nreasoning_effort: low\n",
    )
    assert problems == []
    assert payload["session"]["delegation"] == {
        "type": "responses",
        "responses": {
            "model": "dep-1",
            "instructions": "Use tools.",
            "tools": [
                {"type": "function", "name": "t", "parameters": {"type": "object"}},
                {"type": "web_search"},
            ],
            "tool_choice": {"type": "function", "name": "t"},
            "parallel_tool_calls": False,
            "reasoning": {"effort": "low"},
        },
    }


def test_an_agent_or_no_delegation_is_client_delegation_without_typed_turns(
    tmp_path: Path,
) -> None:
    for text in ("", "gpt_live: {delegation: {agent: {name: a, project: p}}}\n"):
        payload, problems = _compile(tmp_path, text)
        assert problems == []
        assert payload["session"]["delegation"] == {"type": "client"}
        assert not gpt_live.accepts_typed_turns(load_profile(tmp_path / "p.yaml").settings)


def test_translation_is_the_sentence_the_contract_names(tmp_path: Path) -> None:
    payload, _ = _compile(tmp_path, "gpt_live: {translation: {source: de-DE, target: ja-JP}}\n")
    assert payload["session"]["instructions"] == (
        "Be brief.\n\nTranslate everything the caller says from de-DE into ja-JP, "
        "and speak only the translation."
    )


def test_a_non_default_audio_format_is_one_format_both_ways(tmp_path: Path) -> None:
    payload, problems = _compile(
        tmp_path, "audio: {input_format: g711_ulaw, output_format: g711_ulaw}\n"
    )
    assert problems == []
    assert payload["session"]["audio"] == {"format": {"type": "audio/pcmu", "rate": 8000}}
    payload, problems = _compile(tmp_path, "audio: {input_sampling_rate: 16000}\n")
    assert payload["session"]["audio"] == {"format": {"type": "audio/pcm", "rate": 16000}}


REFUSED = [
    ("turn_detection: server_vad\n", "turn_detection", "decides by itself"),
    ("audio: {noise_reduction: near_field}\n", "noise_reduction", "no separate noise-reduction"),
    ("audio: {echo_cancellation: server}\n", "echo_cancellation", "no echo cancellation"),
    ("transcription: {model: whisper-1}\n", "transcription", "always sends both transcripts"),
    ("modalities: [text]\n", "modalities", "voice only"),
    ("temperature: 0.8\n", "temperature", "no temperature"),
    ("max_response_tokens: 100\n", "max_response_tokens", "no reply token cap"),
    ("avatar: {character: lisa}\n", "avatar", "no avatar"),
    ("animation: {outputs: [viseme_id]}\n", "animation", "no animation"),
    ("interim_response: {type: llm}\n", "interim_response", "no interim responses"),
    ("mcp_servers: [{label: d, url: 'https://m.x/'}]\n", "mcp_servers", "MCP servers"),
    ("file_search: {vector_store_ids: [v]}\n", "file_search", "cannot delegate to file_search"),
    ("metadata: {a: b}\n", "metadata", "no metadata"),
    ("voice: en-US-AvaNeural\n", "voice", "not a GPT-Live voice"),
    ("voice: {name: juni, type: azure-standard}\n", "juni", "built-in name only"),
    ("greeting: Say hi.\n", "greeting", "takes no instructions"),
    ("tools: [{name: t, parameters: {type: object}}]\n", "tools", "client delegation has none"),
    ("web_search: true\n", "web_search", "client delegation has none"),
    (
        "audio: {input_sampling_rate: 16000, output_format: pcm16}\n",
        "output_format",
        "one audio format both ways",
    ),
    ("audio: {input_sampling_rate: 8000}\n", "input_sampling_rate", "16000 or 24000"),
    ("gpt_live: {delegation: {instructions: x}}\n", "instructions: x", "go with a delegation"),
    (
        "gpt_live: {delegation: {deployment: d, agent: {name: a, project: p}}}\n",
        "delegation",
        "not both",
    ),
]


@pytest.mark.parametrize(("text", "needle", "words"), REFUSED, ids=[r[1] for r in REFUSED])
def test_check_refuses_what_gpt_live_does_not_take_at_its_line(
    text: str, needle: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(HEAD + text)
    assert main(["check", str(tmp_path / "p.yaml"), "--format", "json"]) == 1
    problems = json.loads(capsys.readouterr().out)["files"][0]["problems"]
    found = [p for p in problems if words in p["message"]]
    assert found, problems
    line = next(i for i, ln in enumerate((HEAD + text).splitlines(), 1) if needle in ln)
    assert found[0]["line"] == line, found[0]
    assert found[0]["severity"] == "error"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("  api_version: 2026-07-15\n", "api_version"),
        ("  query: {a: b}\n", "query"),
        ("  preview: [BargeIn]\n", "preview"),
        ("  byom: byom-azure-openai-realtime\n", "byom"),
    ],
)
def test_check_refuses_voice_live_connection_settings(
    extra: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\nconnection:\n  model: gpt-live-1-mini\n" + extra + "instructions: Hi.\n"
    )
    assert main(["check", str(tmp_path / "p.yaml")]) == 1
    out = capsys.readouterr().out
    assert f"p.yaml:4:3: error: connection.{key}: " in out, out


def test_gpt_live_settings_without_a_gpt_live_model_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\ninstructions: Hi.\ngpt_live: {translation: {target: fr-FR}}\n"
    )
    assert main(["check", str(tmp_path / "p.yaml")]) == 1
    out = capsys.readouterr().out
    assert "p.yaml:3:1: error: gpt_live settings need a GPT-Live model" in out, out


def test_explain_shows_no_api_version_and_credits_the_delegation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["explain", str(ROOT / "profiles" / "gpt-live.yaml")]) == 0
    rows = capsys.readouterr().out.splitlines()
    version = next(r for r in rows if r.startswith("api_version"))
    assert "null" in version and "/openai/v1/live" in version
    backend = next(r for r in rows if r.startswith("session.delegation.responses.model"))
    text = (ROOT / "profiles" / "gpt-live.yaml").read_text().splitlines()
    line = next(i for i, ln in enumerate(text, 1) if "deployment:" in ln)
    assert backend.rstrip().endswith(f"gpt-live.yaml:{line}"), backend


def test_the_greeting_is_a_session_wide_commentary() -> None:
    profile = load_profile(ROOT / "profiles" / "gpt-live.yaml", env={})
    assert greeting_event(profile) == {
        "type": "session.commentary.append",
        "delegation_id": None,
        "content": "Hello! Ask me the time anywhere in the world.",
    }


def test_the_agent_that_answers_client_delegations(tmp_path: Path) -> None:
    _compile(tmp_path, "gpt_live: {delegation: {agent: {name: desk, project: proj}}}\n")
    doc = load_profile(tmp_path / "p.yaml", env={}).settings
    assert gpt_live.delegation_agent(doc) == ("desk", "proj")
