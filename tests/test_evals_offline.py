"""Simulated callers (tiers script and text) and judges, offline: the official openai client
against the emulator's chat endpoint on loopback (issue 30; docs/evals.md)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.emulator import running_emulator
from runner.errors import UsageError
from runner.evals import (
    CallerTurn,
    ChatEndpoint,
    EvalsError,
    Exchange,
    caller_for,
    caller_problems,
    judge_for,
    offline_problems,
)
from runner.evals.judge import VERDICT_SCHEMA
from tests.loopback import on_loopback

SCRIPT = ["hi, a table for two please", "seven pm", "yes"]
SPEC: dict[str, Any] = {
    "persona": "a hurried diner",
    "goal": "book a table for two at 7pm",
    "success": "the assistant confirmed a booking",
    "max_turns": 6,
    "script": SCRIPT,
}
RULES = {"pass_if": "7|seven", "reason_pass": "time confirmed", "reason_fail": "no time"}


async def converse(caller: Any, replies: list[str]) -> list[CallerTurn]:
    """Run a caller against canned assistant replies until it hangs up (bounded)."""
    history: list[Exchange] = []
    turns: list[CallerTurn] = []
    for reply in replies:
        turn = await caller.next_turn(history)
        if turn is None:
            return turns
        turns.append(turn)
        history += [Exchange("caller", turn.text), Exchange("assistant", reply)]
    assert await caller.next_turn(history) is None, "the caller outlived the replies"
    return turns


# --- judges -------------------------------------------------------------------------------------


async def test_judge_decides_by_offline_rules_and_keeps_prompt_verdict_and_reason() -> None:
    history = [
        Exchange("caller", "a table for two at seven"),
        Exchange("assistant", "Booked for 7 pm, see you then."),
    ]
    async with running_emulator(speed=0) as emu:
        judge = judge_for(ChatEndpoint.emulator(emu.endpoint))
        good = await judge.judge("confirms the time", history, offline=RULES)
        bad = await judge.judge(
            "confirms the time", history, reply="See you tomorrow.", offline=RULES
        )
        sent = emu.chat.requests[-1]
    assert good.passed and not bad.passed
    assert good.reason == "[vlrun emulator, not a model] time confirmed"
    assert bad.reason == "[vlrun emulator, not a model] no time"
    assert good.model == "vlrun-emulator" and json.loads(good.raw)["passed"] is True
    # the prompt kept is the one sent; the per-reply rubric names the reply
    assert sent["messages"] == bad.prompt
    assert "Rubric: confirms the time" in bad.prompt[1]["content"]
    assert bad.prompt[1]["content"].endswith("See you tomorrow.")
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "vlrun_verdict", "strict": True, "schema": VERDICT_SCHEMA},
    }
    assert sent["vlrun"] == {"judge": {"rules": RULES, "text": "See you tomorrow."}}


async def test_conversation_rubric_is_judged_on_the_assistant_lines_only() -> None:
    # the caller said "seven"; the assistant never did: the rule must not see the caller's line
    history = [Exchange("caller", "seven pm please"), Exchange("assistant", "Booked.")]
    async with running_emulator(speed=0) as emu:
        judge = judge_for(ChatEndpoint.emulator(emu.endpoint))
        verdict = await judge.judge("confirms the time", history, offline={"pass_if": "seven"})
    assert not verdict.passed
    assert "does not match pass_if /seven/" in verdict.reason


async def test_fail_if_wins_over_pass_if_and_a_fixed_verdict_wins_over_both() -> None:
    history = [Exchange("assistant", "Seven pm is fully booked, sorry.")]
    async with running_emulator(speed=0) as emu:
        judge = judge_for(ChatEndpoint.emulator(emu.endpoint))
        failed = await judge.judge("r", history, offline={"pass_if": "seven", "fail_if": "sorry"})
        fixed = await judge.judge("r", history, offline={"passed": True, "fail_if": "sorry"})
    assert not failed.passed and "matches fail_if /sorry/" in failed.reason
    assert fixed.passed and "a fixed verdict" in fixed.reason


async def test_offline_judge_without_rules_is_a_clear_error_naming_the_fix() -> None:
    async with running_emulator(speed=0) as emu:
        judge = judge_for(ChatEndpoint.emulator(emu.endpoint))
        with pytest.raises(EvalsError, match="no `offline:` rules") as caught:
            await judge.judge("polite", [Exchange("assistant", "hi")])
        with pytest.raises(EvalsError, match="unknown key 'pass'"):
            await judge.judge("polite", [Exchange("assistant", "hi")], offline={"pass": "x"})
        assert not emu.chat.requests  # refused before anything was sent
    assert caught.value.hint is not None and "offline: {pass_if:" in caught.value.hint


def test_offline_rule_problems_name_each_mistake() -> None:
    assert offline_problems({"pass_if": "7|seven"}) == []
    problems = offline_problems({"pass_if": "(?=x)", "passed": "yes", "why": 1})
    assert any("unknown key 'why'" in p for p in problems)
    assert any("offline.pass_if" in p and "lookaround" in p for p in problems)
    assert any("offline.passed" in p for p in problems)
    assert offline_problems("7") == ["`offline` must be a mapping, e.g. {pass_if: '7|seven'}"]


# --- callers ------------------------------------------------------------------------------------


async def test_script_caller_follows_its_script_and_hangs_up() -> None:
    caller = caller_for(SPEC, tier="script", endpoint=None, seed=0)
    turns = await converse(caller, ["Hello!", "What time?", "Booked for seven.", "Bye"])
    assert [t.text for t in turns] == SCRIPT
    assert [t.done for t in turns] == [False, False, True]
    assert all(t.audio is None for t in turns)
    short = caller_for({**SPEC, "max_turns": 2}, tier="script", endpoint=None, seed=0)
    capped = await converse(short, ["a", "b", "c"])
    assert [t.text for t in capped] == SCRIPT[:2] and capped[-1].done


async def test_text_caller_is_played_through_the_chat_endpoint_with_roles_swapped() -> None:
    async with running_emulator(speed=0) as emu:
        caller = caller_for(SPEC, tier="text", endpoint=ChatEndpoint.emulator(emu.endpoint), seed=0)
        turns = await converse(caller, ["Hello, Chez Nous.", "For when?", "Booked for 7."])
        sent = list(emu.chat.requests)
    assert [t.text for t in turns] == SCRIPT and [t.done for t in turns] == [False, False, True]
    assert len(sent) == 3  # one request per turn; none after the caller said it was done
    last = sent[-1]["messages"]
    # the caller speaks as the chat's assistant; the voice assistant's lines are the user's
    assert [m["role"] for m in last] == ["system", "assistant", "user", "assistant", "user"]
    assert last[1]["content"] == SCRIPT[0] and last[2]["content"] == "Hello, Chez Nous."
    assert "a hurried diner" in last[0]["content"] and "7pm" in last[0]["content"]
    assert sent[0]["messages"][-1]["content"].startswith("(The call has connected")


async def test_text_caller_stops_at_max_turns_before_asking_again() -> None:
    spec = {**SPEC, "max_turns": 2}
    async with running_emulator(speed=0) as emu:
        caller = caller_for(spec, tier="text", endpoint=ChatEndpoint.emulator(emu.endpoint), seed=0)
        turns = await converse(caller, ["Hello.", "For when?"])
        assert len(emu.chat.requests) == 2
    assert [t.text for t in turns] == SCRIPT[:2] and not turns[-1].done


async def test_text_caller_without_a_script_says_its_goal_offline() -> None:
    spec = {"persona": "p", "goal": "cancel my booking"}
    async with running_emulator(speed=0) as emu:
        caller = caller_for(spec, tier="text", endpoint=ChatEndpoint.emulator(emu.endpoint), seed=0)
        turns = await converse(caller, ["Done."])
    assert turns == [CallerTurn(text="cancel my booking", done=True)]


def test_caller_spec_problems_are_named() -> None:
    assert caller_problems(SPEC, "script") == []
    assert any("caller.script" in p for p in caller_problems({"goal": "g"}, "script"))
    assert any("caller.max_turns" in p for p in caller_problems({**SPEC, "max_turns": 0}, "text"))
    assert any("caller.voice" in p for p in caller_problems({**SPEC, "voice": "robot"}, "audio"))
    assert caller_problems(SPEC, "video") == [
        "unknown caller tier 'video' (one of script, text, audio)"
    ]
    with pytest.raises(EvalsError, match="needs a chat endpoint"):
        caller_for(SPEC, tier="text", endpoint=None, seed=0)


# --- endpoints and keys -------------------------------------------------------------------------


async def test_azure_deployment_route_with_api_version_and_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VLRUN_TEST_AOAI_KEY", "azure-key-0123456789")
    async with running_emulator(speed=0, api_key="azure-key-0123456789") as emu:
        endpoint = ChatEndpoint(
            base_url=emu.endpoint,
            model="judge-deployment",
            api_key_env="VLRUN_TEST_AOAI_KEY",
            azure_api_version="2024-10-21",
            offline_rules=True,
        )
        verdict = await judge_for(endpoint).judge(
            "r", [Exchange("assistant", "seven")], offline={"pass_if": "seven"}
        )
    assert verdict.passed and verdict.model == "vlrun-emulator"


async def test_a_wrong_key_is_an_error_that_names_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VLRUN_TEST_JUDGE_KEY", "wrong-key-abcdef123456")
    async with running_emulator(speed=0, api_key="right-key-abcdef123456") as emu:
        endpoint = ChatEndpoint(
            base_url=f"{emu.endpoint}/v1",
            model="m",
            api_key_env="VLRUN_TEST_JUDGE_KEY",
            offline_rules=True,
        )
        with pytest.raises(EvalsError, match="HTTP 401") as caught:
            await judge_for(endpoint).judge("r", [], offline={"passed": True})
    text = caught.value.render()
    assert "wrong-key" not in text and "VLRUN_TEST_JUDGE_KEY" in text
    monkeypatch.delenv("VLRUN_TEST_JUDGE_KEY")
    with pytest.raises(EvalsError, match="VLRUN_TEST_JUDGE_KEY is not set"):
        await judge_for(endpoint).judge("r", [], offline={"passed": True})


async def test_an_unreachable_endpoint_is_a_clear_error() -> None:
    async with running_emulator(speed=0) as emu:
        url = emu.endpoint
    endpoint = ChatEndpoint.emulator(url)  # stopped: nothing listens there now
    with pytest.raises(EvalsError, match="cannot reach its chat endpoint"):
        await judge_for(endpoint).judge("r", [], offline={"passed": True})


async def test_missing_openai_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # import openai raises ImportError
    endpoint = ChatEndpoint.emulator("http://127.0.0.1:9")
    with pytest.raises(EvalsError, match="need the openai package") as caught:
        await judge_for(endpoint).judge("r", [], offline={"passed": True})
    assert caught.value.hint is not None and "vlrun[evals]" in caught.value.hint


def test_endpoint_from_one_command_line_value() -> None:
    ollama = ChatEndpoint.parse("gemma3:12b@http://127.0.0.1:11434/v1/")
    assert ollama == ChatEndpoint(base_url="http://127.0.0.1:11434/v1", model="gemma3:12b")
    azure = ChatEndpoint.parse(
        "judge@https://res.openai.azure.com?api-version=2024-10-21&key-env=AOAI_KEY"
    )
    assert (azure.base_url, azure.model, azure.azure_api_version, azure.api_key_env) == (
        "https://res.openai.azure.com",
        "judge",
        "2024-10-21",
        "AOAI_KEY",
    )
    assert not azure.offline_rules  # a model is never sent the offline rules
    with pytest.raises(UsageError, match="expected MODEL@URL"):
        ChatEndpoint.parse("http://127.0.0.1:11434/v1")
    with pytest.raises(UsageError, match="unknown setting 'key'") as caught:
        ChatEndpoint.parse("m@https://h/v1?key=sk-secret")
    assert "sk-secret" not in caught.value.render()
    with pytest.raises(UsageError) as caught:
        ChatEndpoint.parse("m@https://h/v1?key-env=sk-proj-secret-value")
    assert "sk-proj-secret-value" not in caught.value.render()


def test_emulator_endpoint_from_ws_or_http_urls() -> None:
    assert ChatEndpoint.emulator("ws://127.0.0.1:5/").base_url == "http://127.0.0.1:5/v1"
    assert ChatEndpoint.emulator("https://h/v1").base_url == "https://h/v1"
    assert ChatEndpoint.emulator("http://h").offline_rules


# --- the emulator's chat endpoint: the request as OpenAI's reference defines it ----------------


async def post(url: str, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


JUDGE_BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "judge this"}],
    "vlrun": {"judge": {"rules": {"passed": True}, "text": ""}},
}


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"model": None}, "model", "missing_required_parameter"),
        ({"messages": []}, "messages", "empty_array"),
        ({"messages": "hi"}, "messages", "invalid_type"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", "invalid_type"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
            "invalid_value",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "missing_required_parameter",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
        ({"response_format": {"type": "json_object"}}, "messages", None),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
            "missing_required_parameter",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
            "response_format.json_schema.name",
            "invalid_value",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "v",
                        "strict": True,
                        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    },
                }
            },
            "response_format",
            "invalid_value",
        ),
        ({"stream": True}, "stream", "unsupported_value"),
    ],
)
async def test_requests_outside_the_reference_are_refused_the_openai_way(
    change: dict[str, Any], param: str, code: str | None
) -> None:
    body = {k: v for k, v in {**JUDGE_BODY, **change}.items() if v is not None}
    async with running_emulator(speed=0) as emu:
        status, answer = await post(f"{emu.endpoint}/v1/chat/completions", body)
    assert status == 400, answer
    assert answer["error"]["param"] == param and answer["error"]["code"] == code
    assert answer["error"]["type"] == "invalid_request_error"


async def test_strict_schema_rules_and_a_schema_the_answer_does_not_fit() -> None:
    async with running_emulator(speed=0) as emu:
        url = f"{emu.endpoint}/v1/chat/completions"
        unfit = {
            **JUDGE_BODY,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "v",
                    "schema": {"type": "object", "required": ["score"]},
                },
            },
        }
        status, answer = await post(url, unfit)
        assert status == 400 and "does not fit" in answer["error"]["message"]
        missing = {
            **JUDGE_BODY,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "v",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"passed": {"type": "boolean"}, "reason": {"type": "string"}},
                        "required": ["passed"],
                        "additionalProperties": False,
                    },
                },
            },
        }
        status, answer = await post(url, missing)
        assert status == 400 and "Missing 'reason'" in answer["error"]["message"]


async def test_azure_route_without_api_version_is_not_found_and_json_mode_needs_the_word() -> None:
    async with running_emulator(speed=0) as emu:
        status, answer = await post(
            f"{emu.endpoint}/openai/deployments/d/chat/completions", JUDGE_BODY
        )
        assert (status, answer) == (
            404,
            {"error": {"code": "404", "message": "Resource not found"}},
        )
        json_mode = {
            **JUDGE_BODY,
            "messages": [{"role": "user", "content": "answer in JSON"}],
            "response_format": {"type": "json_object"},
        }
        # the Azure route takes the deployment from the path: no model needed
        body = {k: v for k, v in json_mode.items() if k != "model"}
        status, answer = await post(
            f"{emu.endpoint}/openai/deployments/d/chat/completions?api-version=2024-10-21", body
        )
    assert status == 200 and json.loads(answer["choices"][0]["message"]["content"])["passed"]


async def test_unknown_parameters_are_answered_with_a_fidelity_note_each() -> None:
    body = {
        **JUDGE_BODY,
        "frobnicate": 1,
        "messages": [{"role": "user", "content": "x", "mood": "grumpy"}],
    }
    async with running_emulator(speed=0) as emu:
        status, answer = await post(f"{emu.endpoint}/v1/chat/completions", body)
        assert status == 200, answer
        assert {"chat-param-frobnicate", "chat-param-messages[].mood"} <= set(emu.fidelity.seen)
        assert "OpenAI refuses unknown parameters" in emu.fidelity.seen["chat-param-frobnicate"]


async def test_every_answer_says_it_is_the_emulator_and_bodies_are_bounded() -> None:
    plain = {"model": "m", "messages": [{"role": "user", "content": "are you a model?"}]}
    async with running_emulator(speed=0) as emu:
        url = f"{emu.endpoint}/v1/chat/completions"
        status, answer = await post(url, plain)
        assert status == 200 and answer["model"] == "vlrun-emulator"
        assert answer["object"] == "chat.completion"
        assert "vlrun emulator, not a model" in answer["choices"][0]["message"]["content"]
        json_only = {**plain, "response_format": {"type": "json_object"}}
        json_only["messages"] = [{"role": "user", "content": "json please"}]
        status, answer = await post(url, json_only)
        assert status == 400 and "not a model" in answer["error"]["message"]
        # a long conversation arrives in many chunks: read whole, up to the bound
        long = {**plain, "messages": [{"role": "user", "content": "x" * (900 * 1024)}]}
        status, answer = await post(url, long)
        assert status == 200, answer
        huge = {**plain, "messages": [{"role": "user", "content": "x" * (1024 * 1024)}]}
        status, answer = await post(url, huge)
        assert status == 413 and answer["error"]["code"] == "request_too_large"


ROOT = Path(__file__).resolve().parents[1]


def test_every_conformance_row_names_existing_tests_and_is_cited_in_the_code() -> None:
    text = (ROOT / "docs" / "evals.md").read_text(encoding="utf-8")
    section = text.split("## Conformance", 1)[1].split("\n## ", 1)[0]
    code = (ROOT / "runner" / "emulator" / "chat.py").read_text(encoding="utf-8")
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`chat-[a-z0-9-]+`", cells[0]):
            rows.append(cells)
    assert len(rows) >= 12
    for rid, behaviour, source, kind, tests in rows:
        rid = rid.strip("`")
        assert kind in ("strict", "permissive", "documented") and source, rid
        assert f'<a id="{rid}"></a>' in behaviour, f"row {rid} has no anchor"
        assert f"docs/evals.md#{rid}" in code, f"no `# source:` comment cites {rid}"
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", tests)
        assert named, f"row {rid} names no test"
        for path, name in named:
            body = (ROOT / path).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {name}\(", body, re.M), f"{path}::{name} missing"


async def test_a_model_that_refuses_temperature_zero_is_asked_again_without_it() -> None:
    """Reasoning models answer temperature 0 with 400 param "temperature" (as OpenAI words it);
    the judge asks once more without it instead of failing the scenario."""
    from aiohttp import web

    seen: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if "temperature" in body:
            error = {
                "message": "Unsupported value: 'temperature' does not support 0 with this "
                "model. Only the default (1) value is supported.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "unsupported_value",
            }
            return web.json_response({"error": error}, status=400)
        verdict = json.dumps({"passed": True, "reason": "it confirmed 7 pm"})
        return web.json_response(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": "reasoner",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": verdict},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with on_loopback(app) as port:
        endpoint = ChatEndpoint(base_url=f"http://127.0.0.1:{port}/v1", model="reasoner")
        verdict = await judge_for(endpoint).judge("confirms", [Exchange("assistant", "7 pm")])
    assert verdict.passed and verdict.model == "reasoner"
    assert [("temperature" in body) for body in seen] == [True, False]
    assert "vlrun" not in seen[0]  # a model's endpoint is never sent the offline rules


async def test_the_embedded_emulators_key_goes_to_its_chat_endpoint_not_the_environment() -> None:
    """The scenario runner's offline judge and caller talk to the embedded emulator, which
    takes only its random key: the endpoint carries that key itself (it was put in a
    VLRUN_EMULATOR_CHAT_KEY_<hex> environment variable, seen by every child process)."""
    import os

    from runner.emulator import embedded_emulator
    from runner.redact import redact
    from runner.scenarios.judged import EvalSettings, chat_endpoints

    history = [Exchange("caller", "at seven"), Exchange("assistant", "Booked for 7 pm.")]
    async with embedded_emulator(speed=0) as emu:
        key = emu.api_key
        with chat_endpoints(EvalSettings(), emu.endpoint, key) as chat:
            assert chat.judge is chat.caller and chat.judge.offline_rules
            assert key not in os.environ.values()
            assert key not in repr(chat.judge) and key not in chat.judge.describe()
            verdict = await judge_for(chat.judge).judge("confirms the time", history, offline=RULES)
            assert verdict.passed  # the keyed emulator took the request
        # a key that is not the emulator's is refused, and the error does not show it
        wrong = ChatEndpoint.emulator(emu.endpoint, api_key="not-the-emulators-key-0123")
        with pytest.raises(EvalsError) as refused:
            await judge_for(wrong).judge("confirms the time", history, offline=RULES)
        assert "401" in refused.value.message
        shown = f"{refused.value.message} {refused.value.hint}"
        assert "not-the-emulators-key-0123" not in shown
        assert "not-the-emulators-key-0123" not in redact("the key not-the-emulators-key-0123")
