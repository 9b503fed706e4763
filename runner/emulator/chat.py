"""The emulator's OpenAI-compatible chat completions endpoint (docs/evals.md#offline).

Simulated callers and judges (runner/evals) talk to chat models; offline they talk to this.
It is not a model and says so in every answer: a judge request is decided by the rubric's
offline rules and a caller request is answered from the caller's script, both carried in the
request's vendor field ``vlrun``. The request itself is checked as OpenAI's chat completions
reference defines it (``messages``, ``model``, ``response_format``), so a request that
passes here is one a model's endpoint accepts; parameters the reference does not list are
ignored with a ``fidelity:`` note. Rows ``chat-*`` of docs/evals.md#conformance.

Routes: ``POST /v1/chat/completions`` and ``/openai/v1/chat/completions`` (OpenAI and Azure
OpenAI's v1 API), ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``
(Azure OpenAI's dated API).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from runner.aio import Deadline
from runner.config.patterns import PatternError, compile_pattern
from runner.emulator import fidelity as fidelity_notes
from runner.emulator.fidelity import Fidelity

MAX_BODY = 1024 * 1024  # a judge's prompt holds a whole conversation; far more is a mistake
BODY_TIMEOUT_S = 30.0  # a body not all there by then is refused (a stalled client holds nothing)
MODEL = "vlrun-emulator"
NOTICE = "vlrun emulator, not a model"
EXTENSION = "vlrun"  # the vendor field (runner/evals/endpoint.py sends the same name)
KEPT_REQUESTS = 64  # the last requests, for tests (ChatDesk.requests)
MAX_NOTED_PARAMS = 32  # distinct unknown parameters noted per run: a bound on the notes

# source: docs/evals.md#chat-params - the request body's parameters in OpenAI's API reference
# (POST /v1/chat/completions; openai-python's completion_create_params.py mirrors it)
PARAMS = frozenset(
    {
        "messages", "model", "audio", "frequency_penalty", "function_call", "functions",
        "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
        "modalities", "moderation", "n", "parallel_tool_calls", "prediction",
        "presence_penalty", "prompt_cache_key", "prompt_cache_options",
        "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier",
        "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
        "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
        "web_search_options",
    }
)  # fmt: skip
# source: docs/evals.md#chat-messages - roles and the content part types each role takes
PARTS: dict[str, frozenset[str]] = {
    "developer": frozenset({"text"}),
    "system": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
    "function": frozenset(),
}
MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio"}
)
SCHEMA_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
RULE_KEYS = frozenset({"pass_if", "fail_if", "passed", "reason_pass", "reason_fail"})


class ChatError(Exception):
    """A refused request: OpenAI's error body ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.type = (
            message,
            param,
            code,
            status,
            type_,
        )

    def response(self) -> web.Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return web.json_response(body, status=self.status, headers={"x-vlrun-emulator": NOTICE})


def _note(fidelity: Fidelity, key: str, message: str) -> None:
    # The chat endpoint's notes join the emulator's table when first needed, so they are
    # passed on (and printed) exactly like the session's notes.
    fidelity_notes.NOTES.setdefault(key, message)
    fidelity.note(key)


class ChatDesk:
    """The chat completions routes of one emulator."""

    def __init__(
        self, fidelity: Fidelity, api_key: str | None = None, body_timeout_s: float = BODY_TIMEOUT_S
    ) -> None:
        self.fidelity, self.api_key = fidelity, api_key
        self.body_timeout_s = body_timeout_s
        #: the last requests' bodies, oldest first (tests read what a caller or judge sent)
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEPT_REQUESTS)
        self._ids = itertools.count(1)
        self._noted: set[str] = set()

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/chat/completions", self._openai)
        r.add_post("/openai/v1/chat/completions", self._openai)
        r.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, deployment=None)

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        # source: docs/evals.md#chat-azure-api-version (reported: Azure OpenAI answers a
        # deployments request without api-version 404 "Resource not found")
        if not request.query.get("api-version"):
            return web.json_response(
                {"error": {"code": "404", "message": "Resource not found"}}, status=404
            )
        return await self._serve(request, deployment=request.match_info["deployment"])

    async def _serve(self, request: web.Request, *, deployment: str | None) -> web.StreamResponse:
        try:
            self._authorise(request)
            body = await _json_body(request, Deadline(self.body_timeout_s))
            self.requests.append(body)
            self._check(body, azure=deployment is not None)
            content = answer(body)
        except ChatError as exc:
            return exc.response()
        except RecursionError:  # a body nested past what the checks (and json) walk
            return ChatError(
                "The request body is nested too deeply.", code="invalid_value"
            ).response()
        return web.json_response(
            _completion(next(self._ids), content, body), headers={"x-vlrun-emulator": NOTICE}
        )

    def _authorise(self, request: web.Request) -> None:
        # source: docs/evals.md#chat-auth (api-key for Azure, a bearer token for OpenAI)
        if self.api_key is None:
            return
        given = request.headers.get("api-key")
        bearer = request.headers.get("Authorization", "")
        if bearer.lower().startswith("bearer "):
            given = given or bearer[7:].strip()
        if given != self.api_key:
            raise ChatError(
                "Incorrect API key provided.", code="invalid_api_key", status=401
            )  # the key is never echoed

    def _check(self, body: dict[str, Any], *, azure: bool) -> None:
        for name in check_request(body, model_required=not azure):
            if name not in self._noted and len(self._noted) < MAX_NOTED_PARAMS:
                self._noted.add(name)
                # source: docs/evals.md#chat-unknown-params
                _note(
                    self.fidelity,
                    f"chat-param-{name}",
                    f"a chat completions request had {name!r}, which OpenAI's reference "
                    "does not list; the emulator ignored it (OpenAI refuses unknown "
                    "parameters; Ollama and llama.cpp ignore them)",
                )


async def _json_body(request: web.Request, deadline: Deadline) -> dict[str, Any]:
    # source: docs/evals.md#chat-body-bound. read(n) returns what has arrived, up to n: read
    # until the end or past the bound, within the deadline
    raw = bytearray()
    while len(raw) <= MAX_BODY:
        try:
            chunk = await deadline.run(request.content.read(MAX_BODY + 1 - len(raw)))
        except asyncio.TimeoutError:
            raise ChatError(
                "The request body did not arrive in time.", code="request_timeout", status=408
            ) from None
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_BODY:
        raise ChatError(
            f"The request body is larger than the emulator's {MAX_BODY // 1024} KiB.",
            code="request_too_large",
            status=413,
        )
    try:
        body = json.loads(raw)
    except ValueError:
        raise ChatError(
            "We could not parse the JSON body of your request. (The body is not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise ChatError("The request body must be a JSON object.")
    return body


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "an object"
    )


def check_request(body: Mapping[str, Any], *, model_required: bool = True) -> list[str]:
    """Raise :class:`ChatError` for a body OpenAI's reference would refuse; return the names
    of the parameters it does not list (``messages[].KEY`` for a message's), which the
    emulator ignores."""
    unknown = [key[:40] for key in body if key not in PARAMS and key != EXTENSION]
    # source: docs/evals.md#chat-model (reference: `model` is required; Azure's deployments
    # route names the deployment in the path instead)
    model = body.get("model")
    if model is None and model_required:
        raise ChatError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    if model is not None and not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    unknown += _check_messages(body.get("messages"))
    _check_response_format(body.get("response_format"), body["messages"])
    # source: docs/evals.md#chat-stream: the emulator answers whole completions only
    if body.get("stream") is True:
        raise ChatError(
            f"stream=true is not supported by the {NOTICE}; callers and judges read whole answers.",
            param="stream",
            code="unsupported_value",
        )
    n = body.get("n")
    if n is not None and n != 1:
        raise ChatError(
            f"n={n!r}: the {NOTICE} answers one choice.", param="n", code="unsupported_value"
        )
    return sorted(set(unknown))


def _invalid_type(param: str, expected: str, got: Any) -> ChatError:
    return ChatError(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(got)} instead.",
        param=param,
        code="invalid_type",
    )


def _check_messages(messages: Any) -> list[str]:
    # source: docs/evals.md#chat-messages
    unknown: list[str] = []
    if messages is None:
        raise ChatError(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array of objects", messages)
    if not messages:
        raise ChatError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise ChatError(
                f"Missing required parameter: '{where}.role'.",
                param=f"{where}.role",
                code="missing_required_parameter",
            )
        if role not in PARTS:
            raise ChatError(
                f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        unknown += [f"messages[].{key[:40]}" for key in message if key not in MESSAGE_KEYS]
        content = message.get("content")
        optional = role == "assistant" and (
            message.get("tool_calls") or message.get("function_call")
        )
        if content is None:
            if optional:
                continue
            raise ChatError(
                f"Missing required parameter: '{where}.content'.",
                param=f"{where}.content",
                code="missing_required_parameter",
            )
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in PARTS[role]:
                    allowed = ", ".join(f"'{p}'" for p in sorted(PARTS[role])) or "none"
                    raise ChatError(
                        f"Invalid value: {kind!r}. Supported values for a {role} message's "
                        f"content parts are: {allowed}.",
                        param=f"{where}.content[{j}].type",
                        code="invalid_value",
                    )
                if kind == "text" and not isinstance(part.get("text"), str):
                    raise _invalid_type(f"{where}.content[{j}].text", "a string", part.get("text"))
        elif not isinstance(content, str):
            raise _invalid_type(f"{where}.content", "one of a string or array of objects", content)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise ChatError(
                f"Missing required parameter: '{where}.tool_call_id'.",
                param=f"{where}.tool_call_id",
                code="missing_required_parameter",
            )
    return unknown


def _check_response_format(fmt: Any, messages: list[Any]) -> None:
    # source: docs/evals.md#chat-response-format
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _invalid_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        # source: docs/evals.md#chat-json-mode (reference: JSON mode needs the word in a message)
        said = json.dumps(messages).lower()
        if "json" not in said:
            raise ChatError(
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
            )
        return
    if kind != "json_schema":
        raise ChatError(
            f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and "
            "'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise ChatError(
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
            code="missing_required_parameter",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ChatError(
            "Missing required parameter: 'response_format.json_schema.name'.",
            param="response_format.json_schema.name",
            code="missing_required_parameter",
        )
    if len(name) > 64 or not set(name) <= SCHEMA_NAME_CHARS:
        raise ChatError(
            f"Invalid 'response_format.json_schema.name': string does not match pattern. "
            f"Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 "
            f"characters, got {name[:80]!r}.",
            param="response_format.json_schema.name",
            code="invalid_value",
        )
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise _invalid_type("response_format.json_schema.schema", "an object", schema)
    if spec.get("strict") is True and schema is not None:
        _check_strict(schema, name, ())


def _check_strict(node: Any, name: str, path: tuple[str, ...]) -> None:
    """Structured Outputs' rules for a strict schema: every object closes its properties
    (additionalProperties false) and requires all of them."""
    # source: docs/evals.md#chat-strict-schema
    if not isinstance(node, dict):
        return
    where = f"Invalid schema for response_format '{name}': In context=({', '.join(path)})"
    if node.get("type") == "object" or "properties" in node:
        if node.get("additionalProperties") is not False:
            raise ChatError(
                f"{where}, 'additionalProperties' is required to be supplied and to be false.",
                param="response_format",
                code="invalid_value",
            )
        properties = node.get("properties") or {}
        required = node.get("required")
        missing = [k for k in properties if not isinstance(required, list) or k not in required]
        if missing:
            raise ChatError(
                f"{where}, 'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'.",
                param="response_format",
                code="invalid_value",
            )
        for key, sub in properties.items():
            _check_strict(sub, name, (*path, "'properties'", f"'{key}'"))
    if "items" in node:
        _check_strict(node["items"], name, (*path, "'items'"))
    for key in ("anyOf", "$defs", "definitions"):
        group = node.get(key)
        subs = (
            group.values() if isinstance(group, dict) else group if isinstance(group, list) else ()
        )
        for sub in subs:
            _check_strict(sub, name, (*path, f"'{key}'"))


# --- answers ------------------------------------------------------------------------------------


def answer(body: Mapping[str, Any]) -> str:
    """The message content for a checked request: a judge's verdict or a caller's turn (JSON),
    or, for a request without offline rules, a sentence saying what this endpoint is."""
    extension = body.get(EXTENSION)
    fmt = body.get("response_format") or {}
    if extension is None:
        if fmt.get("type", "text") == "text":
            return (
                f"This is the {NOTICE}. It answers simulated callers and judges that carry "
                "their offline rules (docs/evals.md#offline); point your client at a model "
                "for anything else."
            )
        raise ChatError(
            f"The {NOTICE}, answers JSON only for requests carrying offline rules in the "
            f"'{EXTENSION}' field (docs/evals.md#offline).",
            param=EXTENSION,
            code="missing_required_parameter",
        )
    if not isinstance(extension, dict):
        raise _invalid_type(EXTENSION, "an object", extension)
    if "judge" in extension:
        reply: dict[str, Any] = _judge(extension["judge"])
    elif "caller" in extension:
        reply = _caller(extension["caller"], body["messages"])
    else:
        raise ChatError(
            f"'{EXTENSION}' needs 'judge' or 'caller' (docs/evals.md#offline).", param=EXTENSION
        )
    _fits(reply, fmt)
    return json.dumps(reply, ensure_ascii=False)


def _judge(spec: Any) -> dict[str, Any]:
    """A verdict by the rubric's rules: a fixed ``passed``, else ``fail_if`` then ``pass_if``
    searched (RE2, case-insensitive) in the text under judgement."""
    if not isinstance(spec, dict) or not isinstance(spec.get("rules"), dict):
        raise ChatError(f"'{EXTENSION}.judge.rules' must be an object.", param=EXTENSION)
    rules, text = spec["rules"], spec.get("text", "")
    if not isinstance(text, str):
        raise _invalid_type(f"{EXTENSION}.judge.text", "a string", text)
    unknown = sorted(set(rules) - RULE_KEYS)
    if unknown:
        raise ChatError(
            f"Unknown offline rule {unknown[0]!r} (known: {', '.join(sorted(RULE_KEYS))}).",
            param=f"{EXTENSION}.judge.rules",
        )

    def found(key: str) -> bool:
        pattern = rules[key]
        if not isinstance(pattern, str) or not pattern:
            raise _invalid_type(f"{EXTENSION}.judge.rules.{key}", "a pattern", pattern)
        try:
            return compile_pattern(pattern).search(text) is not None
        except PatternError as exc:
            raise ChatError(
                f"offline rule {key} {pattern!r} is not a valid pattern: {exc}",
                param=f"{EXTENSION}.judge.rules.{key}",
            ) from None

    if isinstance(rules.get("passed"), bool):
        passed, why = rules["passed"], "a fixed verdict"
    elif "fail_if" in rules and found("fail_if"):
        passed, why = False, f"the text matches fail_if /{rules['fail_if']}/"
    elif "pass_if" in rules:
        passed = found("pass_if")
        why = f"the text {'matches' if passed else 'does not match'} pass_if /{rules['pass_if']}/"
    elif "fail_if" in rules:
        passed, why = True, f"the text does not match fail_if /{rules['fail_if']}/"
    else:
        raise ChatError(
            "offline rules need pass_if, fail_if or passed.", param=f"{EXTENSION}.judge.rules"
        )
    given = rules.get("reason_pass" if passed else "reason_fail")
    reason = f"[{NOTICE}] " + (given if isinstance(given, str) and given else why)
    return {"passed": passed, "reason": reason}


def _caller(spec: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The caller's next line: its script's line N, N being how many turns it has taken (its
    own lines are the ``assistant`` messages of its chat); without a script, its goal."""
    if not isinstance(spec, dict):
        raise _invalid_type(f"{EXTENSION}.caller", "an object", spec)
    taken = sum(1 for m in messages if m.get("role") == "assistant")
    script = spec.get("script")
    if script is not None:
        if not isinstance(script, list) or not all(isinstance(s, str) for s in script):
            raise _invalid_type(f"{EXTENSION}.caller.script", "an array of strings", script)
        if taken < len(script):
            return {"say": script[taken], "done": taken == len(script) - 1}
        return {"say": "", "done": True}
    goal = spec.get("goal")
    if not isinstance(goal, str):
        raise _invalid_type(f"{EXTENSION}.caller.goal", "a string", goal)
    return {"say": goal, "done": True} if taken == 0 else {"say": "", "done": True}


def _fits(reply: dict[str, Any], fmt: Mapping[str, Any]) -> None:
    """The answer fits the request's JSON schema, or the request is refused: a client whose
    schema this answer does not fit would not read a model's answer either."""
    spec = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        return
    import jsonschema

    try:
        jsonschema.validate(reply, schema)
    except jsonschema.ValidationError as exc:
        raise ChatError(
            f"The {NOTICE}'s offline answer {json.dumps(reply)[:200]} does not fit "
            f"response_format's schema: {exc.message[:200]} (docs/evals.md#offline).",
            param="response_format.json_schema.schema",
        ) from None
    except jsonschema.SchemaError as exc:
        raise ChatError(
            f"Invalid schema for response_format: {exc.message[:200]}",
            param="response_format.json_schema.schema",
        ) from None


def _completion(number: int, content: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A chat.completion object (OpenAI's reference: the chat completion object)."""
    # source: docs/evals.md#chat-completion-object
    prompt_words = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", ()))
    answer_words = len(content.split())
    return {
        "id": f"chatcmpl-vlrun-emulator-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "system_fingerprint": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        # words, not tokens: the emulator has no tokenizer, and says so in docs/evals.md
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": answer_words,
            "total_tokens": prompt_words + answer_words,
        },
    }
