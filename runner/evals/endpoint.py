"""Chat completions endpoints for callers and judges: Azure OpenAI or any OpenAI-compatible one.

The official ``openai`` package (the ``evals`` extra) is imported only when a request is made,
so ``vlrun test`` without simulated callers or judges never needs it. One client per request,
closed when it ends: callers and judges make a few requests per scenario, and no pool outlives
the scenario that opened it.

The key is read from the environment variable the endpoint names, registered with
:mod:`runner.redact` and never written anywhere; error messages name the variable, not the value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.evals.types import EvalsError

#: the vendor field carrying offline rules to the emulator's chat endpoint (docs/evals.md#offline)
EXTENSION = "vlrun"
EMULATOR_MODEL = "vlrun-emulator"
REQUEST_TIMEOUT_S = 60.0  # one attempt at a completion (the client's timeout is per attempt)
MAX_RETRIES = 2
#: One answer, whatever it takes: the attempts, their back-off, a sign-in, the temperature retry.
COMPLETION_DEADLINE_S = 180.0
_USERINFO = re.compile(r"//[^/]*@")  # a URL's user:password@, never shown
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
INSTALL_HINT = 'install the evals extra: pip install "vlrun[evals]" (or: pip install openai)'


@dataclass(frozen=True)
class ChatEndpoint:
    """An OpenAI-compatible chat completions endpoint, or an Azure OpenAI resource.

    - OpenAI-compatible (OpenAI, a local Ollama ``http://127.0.0.1:11434/v1``, llama.cpp's
      ``llama-server`` ``http://127.0.0.1:8080/v1``): ``base_url`` ends in ``/v1``, ``model`` is
      the model's name;
    - Azure OpenAI: ``base_url`` is the resource (``https://NAME.openai.azure.com``), ``model``
      the deployment, ``azure_api_version`` the api-version; without ``api_key_env`` the
      request signs in with Microsoft Entra (DefaultAzureCredential).
    - ``offline_rules``: the endpoint is vlrun's emulator, which is sent the scenario's offline
      rules (:meth:`emulator`); a model is never sent them.
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    azure_api_version: str | None = None
    offline_rules: bool = False
    #: the key itself, for an endpoint vlrun started (the embedded emulator's random key): never
    #: shown (not in repr), registered for masking
    key: str | None = field(default=None, repr=False)

    @classmethod
    def emulator(cls, base_url: str, *, api_key: str | None = None) -> ChatEndpoint:
        """The emulator's chat endpoint, given the emulator's endpoint (http or ws) and the key
        it takes (the embedded emulator's random one; None: it takes any)."""
        url = base_url.rstrip("/")
        for scheme, http in (("ws://", "http://"), ("wss://", "https://")):
            if url.startswith(scheme):
                url = http + url[len(scheme) :]
        if not url.endswith("/v1"):
            url += "/v1"
        if api_key:
            from runner.redact import register_secret

            register_secret(api_key)
        return cls(base_url=url, model=EMULATOR_MODEL, offline_rules=True, key=api_key or None)

    @classmethod
    def parse(cls, text: str, *, option: str = "--judge") -> ChatEndpoint:
        """An endpoint from one command-line value, ``MODEL@URL[?api-version=V][&key-env=VAR]``:

        - ``gemma3:12b@http://127.0.0.1:11434/v1`` (Ollama; no key);
        - ``gpt-4o-mini@https://api.openai.com/v1?key-env=OPENAI_API_KEY``;
        - ``DEPLOYMENT@https://NAME.openai.azure.com?api-version=2024-10-21`` (Azure OpenAI,
          Entra sign-in; add ``&key-env=AZURE_OPENAI_API_KEY`` for a key).
        """
        from urllib.parse import parse_qs, urlsplit, urlunsplit

        from runner.errors import UsageError

        # a query or a URL's user:password@ might hold a key by mistake: never shown
        shown = _USERINFO.sub("//***@", text.partition("?")[0])
        model, at, url = text.rpartition("@")
        parts = urlsplit(url)
        if not at or not model or parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(
                f"{option} {shown!r}: expected MODEL@URL",
                hint=f"e.g. {option} gemma3:12b@http://127.0.0.1:11434/v1, or "
                f"{option} DEPLOYMENT@https://NAME.openai.azure.com?api-version=2024-10-21",
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"api-version", "key-env"})
        if unknown:
            raise UsageError(
                f"{option} {shown!r}: unknown setting {unknown[0]!r}",
                hint="the URL takes api-version=... (Azure OpenAI) and key-env=VARIABLE",
            )
        key_env = query.get("key-env", [None])[-1] or None
        if key_env is not None and not key_env.replace("_", "").isalnum():
            raise UsageError(
                f"{option}: key-env is not an environment variable's name (not shown: it "
                "may be the key itself)",
                hint="name the variable that holds the key, never the key itself",
            )
        base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        return cls(
            base_url=base,
            model=model,
            api_key_env=key_env,
            azure_api_version=query.get("api-version", [None])[-1] or None,
        )

    def describe(self) -> str:
        """Where requests go, for messages (never the key)."""
        kind = f"Azure OpenAI {self.azure_api_version}" if self.azure_api_version else "chat"
        return f"{kind} {self.base_url} model {self.model}"

    def api_key(self) -> str | None:
        """The key given, else the one from the environment, or None (Entra on Azure, a
        placeholder elsewhere)."""
        if self.key is not None:
            return self.key
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env, "")
        if not value:
            raise EvalsError(
                f"the chat endpoint's key variable {self.api_key_env} is not set "
                f"({self.describe()})",
                hint=f"export {self.api_key_env}=... (or put it in .env)",
            )
        from runner.redact import register_secret

        register_secret(value)
        return value


@dataclass(frozen=True)
class Completion:
    """One answer: its text and the model that wrote it."""

    content: str
    model: str


def _openai() -> Any:
    try:
        import openai
    except ImportError:
        raise EvalsError(
            "simulated callers and judges need the openai package, which is not installed",
            hint=INSTALL_HINT,
        ) from None
    return openai


@contextlib.asynccontextmanager
async def _client(endpoint: ChatEndpoint) -> AsyncIterator[Any]:
    openai = _openai()
    key = endpoint.api_key()
    common: dict[str, Any] = {"timeout": REQUEST_TIMEOUT_S, "max_retries": MAX_RETRIES}
    async with contextlib.AsyncExitStack() as stack:
        if endpoint.azure_api_version:
            auth: dict[str, Any] = {"api_key": key}
            if key is None:
                from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

                credential = await stack.enter_async_context(DefaultAzureCredential())
                provider = get_bearer_token_provider(credential, ENTRA_SCOPE)
                auth = {"azure_ad_token_provider": provider}
            client = openai.AsyncAzureOpenAI(
                azure_endpoint=endpoint.base_url.rstrip("/"),
                api_version=endpoint.azure_api_version,
                **auth,
                **common,
            )
        else:
            # Local servers (Ollama, llama.cpp, the emulator) take any key; the client needs one.
            client = openai.AsyncOpenAI(
                base_url=endpoint.base_url, api_key=key or "not-needed", **common
            )
        yield await stack.enter_async_context(client)


async def complete(
    endpoint: ChatEndpoint,
    messages: list[dict[str, str]],
    *,
    schema_name: str,
    schema: Mapping[str, Any],
    extension: Mapping[str, Any] | None = None,
    purpose: str,
    deadline_s: float = COMPLETION_DEADLINE_S,
) -> Completion:
    """One chat completion whose answer is JSON fitting ``schema`` (structured outputs).

    ``extension`` (offline rules) goes to the emulator only (``endpoint.offline_rules``), in
    the vendor field :data:`EXTENSION`; ``purpose`` names the asker in errors ("the judge").
    The answer comes within ``deadline_s``, retries included, or it is an
    :class:`EvalsError`.
    """
    work = _complete(endpoint, messages, schema_name, schema, extension, purpose)
    try:
        return await asyncio.wait_for(work, deadline_s)
    except asyncio.TimeoutError:
        raise EvalsError(
            f"{purpose}'s chat endpoint did not answer within {deadline_s:g} s "
            f"({endpoint.describe()})",
            hint="check that the model's server is up and not overloaded",
        ) from None


async def _complete(
    endpoint: ChatEndpoint,
    messages: list[dict[str, str]],
    schema_name: str,
    schema: Mapping[str, Any],
    extension: Mapping[str, Any] | None,
    purpose: str,
) -> Completion:
    openai = _openai()
    request: dict[str, Any] = {
        "model": endpoint.model,
        "messages": messages,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "strict": True, "schema": dict(schema)},
        },
        "temperature": 0,  # as repeatable as the model allows
    }
    if endpoint.offline_rules and extension is not None:
        request["extra_body"] = {EXTENSION: dict(extension)}
    try:
        async with _client(endpoint) as client:
            try:
                response = await client.chat.completions.create(**request)
            except openai.BadRequestError as exc:
                # Reasoning models (o-series, gpt-5) take only the default temperature and
                # refuse 0 with param "temperature": ask once more without it.
                if _param(exc) != "temperature":
                    raise
                del request["temperature"]
                response = await client.chat.completions.create(**request)
    except openai.APIStatusError as exc:
        raise EvalsError(
            f"{purpose}'s chat endpoint answered HTTP {exc.status_code}: {_said(exc)} "
            f"({endpoint.describe()})",
            hint=_hint(exc.status_code, endpoint),
        ) from None
    except openai.APIConnectionError as exc:  # also APITimeoutError
        raise EvalsError(
            f"{purpose} cannot reach its chat endpoint ({endpoint.describe()}): "
            f"{_redacted(str(exc))}",
            hint="check the endpoint's URL and that the server is running",
        ) from None
    choices = response.choices or []
    content = choices[0].message.content if choices else None
    if not content:
        raise EvalsError(f"{purpose}'s chat endpoint sent no answer ({endpoint.describe()})")
    return Completion(content=content, model=str(response.model or endpoint.model))


def parse_json_object(content: str) -> dict[str, Any] | None:
    """The JSON object in a model's answer (code fences and text around it allowed), or None."""
    text = content.strip()
    candidates = [text]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _redacted(text: str) -> str:
    from runner.redact import redact

    return redact(text)[:300]


def _param(exc: Any) -> str | None:
    body = getattr(exc, "body", None)
    inner = body.get("error", body) if isinstance(body, Mapping) else None
    param = inner.get("param") if isinstance(inner, Mapping) else None
    return param if isinstance(param, str) else None


def _said(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return _redacted(inner["message"])
    return _redacted(str(getattr(exc, "message", exc)))


def _hint(status: int, endpoint: ChatEndpoint) -> str | None:
    if status in (401, 403):
        where = f"${endpoint.api_key_env}" if endpoint.api_key_env else "your Entra sign-in"
        return f"check the key or role ({where}) for {endpoint.base_url}"
    if status == 404:
        what = "deployment" if endpoint.azure_api_version else "model"
        return f"check the {what} name {endpoint.model!r} and the URL"
    return None
