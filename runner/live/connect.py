"""Where to connect and as whom: endpoint, credential and agent binding for the SDK's ``connect()``.

Precedence (first found wins, documented in docs/runner.md):
- endpoint: ``--endpoint`` > the profile's ``connection.endpoint`` > environment > embedded
  emulator. In the environment, the three naming families from Microsoft's docs and samples
  are read in this order: ``AZURE_VOICELIVE_ENDPOINT``, ``AZURE_VOICE_LIVE_ENDPOINT``,
  ``AZURE_COGNITIVE_SERVICES_ENDPOINT`` (same order for ``*_API_KEY``).
- credential: an API key when one is configured, else ``DefaultAzureCredential`` (async).
- ``.env``: loaded like the quickstarts (never overriding variables already set);
  ``VLRUN_DOTENV`` names another file, or ``none`` to skip it.

Every secret read here is registered with :func:`runner.redact.register_secret`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runner.aio import cancel_and_wait
from runner.config.service import CREDENTIAL_QUERY, V1
from runner.errors import AuthError, ConfigError, ConnectError
from runner.redact import register_secret

ENV_FAMILIES = ("AZURE_VOICELIVE_", "AZURE_VOICE_LIVE_", "AZURE_COGNITIVE_SERVICES_")
AGENT_SCOPE = "https://ai.azure.com/.default"
HUB_AGENT_SCOPE = "https://ml.azure.com/.default"  # hub projects (agent-connection-string)
DEFAULT_MODEL = "gpt-realtime"
EMULATOR_BANNER = "offline: local Voice Live emulator, scripted replies"
#: How many times faster than real time the embedded emulator sends a reply when nobody
#: listens (text mode): Voice Live itself streams a reply's audio ahead of playback, so a text
#: user never waits for speech that nobody plays. Tests and `vlrun emulate --speed` choose
#: their own speed (docs/runner.md#modes).
SERVICE_PACE = 4.0


EMULATOR_AGENT_TOKEN = "vlrun-emulator-agent-token"  # noqa: S105 (a placeholder, not a secret)


def env_lookup(env: Mapping[str, str], suffix: str) -> tuple[str | None, str | None]:
    """First non-empty ``<family><suffix>`` variable: (value, variable name)."""
    for family in ENV_FAMILIES:
        name = family + suffix
        value = env.get(name, "").strip()
        if value:
            return value, name
    return None, None


def load_dotenv_file(env: Mapping[str, str] | None = None) -> Path | None:
    """Load ``.env`` (cwd or a parent) or the file in ``VLRUN_DOTENV``; returns what loaded."""
    env = os.environ if env is None else env
    choice = env.get("VLRUN_DOTENV")
    if choice is not None and choice.strip().lower() in ("", "0", "none", "no", "off"):
        return None
    from dotenv import find_dotenv, load_dotenv

    path = Path(choice) if choice else (Path(p) if (p := find_dotenv(usecwd=True)) else None)
    if path is None or not path.is_file():
        if choice:
            raise ConfigError(
                f"VLRUN_DOTENV={choice}: no such file",
                hint="point it at a .env file, or set VLRUN_DOTENV=none",
            )
        return None
    load_dotenv(path, override=False)
    return path


#: An endpoint that accepts TCP and never answers must not hang the run or doctor.
DEFAULT_CONNECT_TIMEOUT_S = 15.0
#: WebSocket pings on the Voice Live connection: after this many seconds without a frame from
#: the service a ping goes out, and no pong within half as long is a drop. A service that
#: went silent with its TCP connection open is noticed in 1.5 times this (the SDK's own
#: default, 30 s, made that 45 s), for the price of a few bytes per quiet interval.
DEFAULT_HEARTBEAT_S = 5.0


@dataclass(frozen=True)
class Target:
    """Everything ``connect()`` needs, plus where each part came from (for doctor and logs)."""

    endpoint: str | None  # None: start the embedded emulator
    endpoint_source: str
    api_key: str | None = field(default=None, repr=False)
    key_source: str | None = None
    model: str | None = DEFAULT_MODEL
    api_version: str | None = None
    agent_kwargs: Mapping[str, str] = field(default_factory=dict)
    agent_query: Mapping[str, str] = field(default_factory=dict)  # legacy (classic) agents
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # query, headers, scopes
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S  # TCP + TLS + WebSocket handshake
    heartbeat_s: float = DEFAULT_HEARTBEAT_S  # ping after this long without a frame

    @property
    def embedded(self) -> bool:
        return self.endpoint is None

    def describe(self) -> str:
        """One line for the console and logs; never shows a secret."""
        if self.embedded:
            return EMULATOR_BANNER
        auth = (
            f"API key from {self.key_source}"
            if self.api_key
            else "Microsoft Entra ID (DefaultAzureCredential)"
        )
        who = (
            f"agent {self.agent_kwargs.get('agent_name')}"
            if self.agent_kwargs
            else f"agent {self.agent_query.get('agent-id')} (classic)"
            if self.agent_query
            else f"model {self.model}"
        )
        return f"{self.endpoint} ({self.endpoint_source}), {who}, {auth}"


def _check_url(url: str, source: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http", "wss", "ws") or not parsed.netloc:
        raise ConfigError(
            f"{source}: {url!r} is not an endpoint URL",
            hint="use the resource endpoint, e.g. https://<resource>.services.ai.azure.com/",
        )
    return url


def resolve_target(
    profile: Any = None,
    *,
    endpoint: str | None = None,
    emulator: bool = False,
    api_version: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """Apply the precedence rules; raises ConfigError naming the setting that is wrong."""
    env = os.environ if env is None else env
    conn = getattr(profile, "connection", None)
    model = getattr(conn, "model", None)
    if not model:
        model = env_lookup(env, "MODEL")[0] or DEFAULT_MODEL
    version = api_version or getattr(conn, "api_version", None) or None
    agent = getattr(conn, "agent", None) or getattr(profile, "agent", None)
    agent_kwargs: dict[str, str] = {}
    agent_query: dict[str, str] = {}
    if agent is not None:
        agent_kwargs = {k: v for k, v in dict(agent.connect_kwargs()).items() if v}
        agent_query = {k: v for k, v in dict(agent.query_params()).items() if v}
        if agent_kwargs and not (
            agent_kwargs.get("agent_name") and agent_kwargs.get("project_name")
        ):
            raise ConfigError(
                "the agent binding needs both an agent name and a project name",
                hint="set connection.agent.name and connection.agent.project in the profile",
            )
    if emulator and not endpoint:
        return Target(None, "--emulator", model=model, api_version=version)
    source = "--endpoint"
    url = endpoint
    if not url and conn is not None and getattr(conn, "endpoint", None):
        url, source = conn.endpoint, f"{getattr(profile, 'source', 'profile')}: connection.endpoint"
        env_url, var = env_lookup(env, "ENDPOINT")
        if env_url == url:  # the profile says ${env:…}: name the variable the user set
            source = f"{var}, through the profile"
    if not url:
        url, var = env_lookup(env, "ENDPOINT")
        source = var or ""
    if not url:
        key, key_var = env_lookup(env, "API_KEY")
        if key_var:
            # A key with no endpoint is almost certainly a half-finished set-up: say so.
            raise ConfigError(
                f"{key_var} is set but no endpoint is configured",
                hint="set AZURE_VOICELIVE_ENDPOINT (or pass --endpoint); "
                "use --emulator to run offline",
            )
        return Target(None, "no endpoint configured", model=model, api_version=version)
    _check_url(url, source)
    key, key_var = env_lookup(env, "API_KEY")
    register_secret(key)
    options = (
        conn.connect_options() if conn is not None and hasattr(conn, "connect_options") else {}
    )
    return Target(url, source, key, key_var, model, version, agent_kwargs, agent_query, options)


def make_credential(target: Target) -> Any:
    """AzureKeyCredential for a key, else async DefaultAzureCredential (caller closes it)."""
    if target.api_key:
        from azure.core.credentials import AzureKeyCredential

        return AzureKeyCredential(target.api_key)
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


@contextlib.asynccontextmanager
async def endpoint_for(
    target: Target, **emulator_options: Any
) -> AsyncIterator[tuple[str, Target]]:
    """Yield (endpoint, target); for the embedded default, run the emulator on loopback meanwhile.

    The embedded emulator gets a random key so nothing else on the machine can use it.
    """
    if not target.embedded:
        if not target.api_key and await _is_local_emulator(target.endpoint or ""):
            # `vlrun emulate` accepts any key unless started with --api-key; Entra sign-in
            # would only fail here with a message about `az login`.
            target = dataclasses.replace(
                target, api_key="vlrun-emulator", key_source="none needed (a local vlrun emulator)"
            )
        yield target.endpoint or "", target
        return
    # one piece for the loopback start and its random, registered key (vlrun serve's host runs
    # the same one)
    from runner.emulator import embedded_emulator

    async with embedded_emulator(**emulator_options) as emu:
        yield (
            emu.endpoint,
            dataclasses.replace(target, api_key=emu.api_key, key_source="embedded emulator"),
        )


async def _is_local_emulator(endpoint: str) -> bool:
    """True when a loopback endpoint says it is vlrun's emulator (its GET / answer)."""
    from urllib.parse import urlsplit

    import aiohttp

    host = urlsplit(endpoint).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        return False
    url = endpoint.replace("wss://", "https://").replace("ws://", "http://").rstrip("/") + "/"
    try:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):  # noqa: UP041
        return False
    return isinstance(body, dict) and body.get("service") == "vlrun Voice Live emulator"


async def agent_access_token(target: Target, credential: Any, endpoint: str = "") -> str:
    """Entra token for a classic agent binding (``agent-access-token`` query parameter)."""
    scope = HUB_AGENT_SCOPE if "agent-connection-string" in target.agent_query else AGENT_SCOPE
    owned = None
    if not hasattr(credential, "get_token"):  # an API key cannot mint agent tokens
        if await _is_local_emulator(endpoint):
            # A local vlrun emulator checks no token; Entra sign-in would only fail offline.
            return EMULATOR_AGENT_TOKEN
        from azure.identity.aio import DefaultAzureCredential

        credential = owned = DefaultAzureCredential()
    try:
        token = await credential.get_token(scope)
    except Exception as exc:
        raise AuthError(
            f"could not get an agent access token for {scope} ({_first_line(exc)})",
            hint="classic agents need Microsoft Entra sign-in: "
            "run `az login` or set AZURE_CLIENT_ID/…",
        ) from None
    finally:
        if owned is not None:
            await owned.close()
    register_secret(token.token)
    return str(token.token)


@contextlib.asynccontextmanager
async def open_connection(
    target: Target, endpoint: str, credential: Any, *, api_version: str | None = None
) -> AsyncIterator[Any]:
    """``connect()`` with the target's binding; turns handshake failures into one clear line."""
    from azure.ai.voicelive.aio import connect

    kwargs: dict[str, Any] = {"credential": credential, "endpoint": endpoint}
    version = api_version or target.api_version
    if version:
        kwargs["api_version"] = version
    if target.agent_kwargs:
        kwargs.update(target.agent_kwargs)
        if target.model and target.model != DEFAULT_MODEL:
            kwargs["model"] = target.model
    else:
        kwargs["model"] = target.model
    kwargs.update(target.options)  # the profile's query, headers and credential scopes
    v1 = version == V1
    kwargs["connection_options"] = {
        "heartbeat": target.heartbeat_s,
        **dict(target.options.get("connection_options") or {}),
    }
    if target.agent_query:
        if v1:
            raise ConfigError(
                "a classic agent (agent-id in the query) authenticates with an "
                "agent-access-token query parameter, which api-version v1 does not take "
                "(its auth is in headers only)",
                hint="bind a Foundry agent by name and project (connection.agent.name, "
                ".project), or use a dated api-version",
            )
        query = {**kwargs.get("query", {}), **target.agent_query}
        query["agent-access-token"] = await agent_access_token(target, credential, endpoint)
        kwargs["query"] = query
    if v1:
        check_v1_query(kwargs.get("query") or {})
    manager = connect(**kwargs)
    conn = await _handshake(manager, endpoint, target)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await manager.__aexit__(None, None, None)


def check_v1_query(query: Mapping[str, Any]) -> None:
    """On api-version v1 no credential rides in the query (VoiceLive/v1/readme.md:
    "Authentication is header-only ... Credential-bearing query parameters are not
    supported"); the SDK puts the key or token in a header, and a profile's own query may not
    add one."""
    for name in query:
        if str(name).lower() in CREDENTIAL_QUERY or "token" in str(name).lower():
            raise ConfigError(
                f"connection.query.{name}: api-version v1 takes no credential in the query "
                "(its auth is in headers only)",
                hint="remove it: the API key or Entra token goes in a header by itself; "
                "a dated api-version still takes the query",
            )


async def _handshake(manager: Any, endpoint: str, target: Target) -> Any:
    """``manager.__aenter__()`` within the target's connect timeout.

    The SDK opens an aiohttp ``ClientSession`` for the handshake and closes it only when
    aiohttp itself fails; cut off by a timeout (or our own cancellation) it would be left
    open, one "Unclosed client session" per attempt in a worker that retries for a month.
    So the sessions the suspended handshake holds are found and closed here.
    """
    enter = asyncio.ensure_future(manager.__aenter__())
    waited = False
    try:
        done, _ = await asyncio.wait({enter}, timeout=target.connect_timeout_s)
        waited = True
    finally:
        if not enter.done():
            held = _client_sessions(enter.get_coro())
            await cancel_and_wait(enter, timeout=1.0)
            for http in held:
                with contextlib.suppress(Exception):
                    await http.close()
        elif not waited and not enter.cancelled() and enter.exception() is None:
            # we were cancelled just as it connected: nobody will use (or close) it
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)
    if enter not in done:
        raise ConnectError(
            f"{endpoint} did not answer the handshake within {target.connect_timeout_s:g} s",
            hint="check the endpoint URL and the network; --connect-timeout sets the wait",
        )
    try:
        return enter.result()
    except Exception as exc:
        raise connect_failure(exc, endpoint, target) from None


def _client_sessions(coro: Any) -> list[Any]:
    """The aiohttp ``ClientSession`` objects a suspended coroutine chain holds in its locals."""
    import aiohttp

    found: list[Any] = []
    seen = 0
    while coro is not None and seen < 32:  # the await chain, outermost first
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            for value in frame.f_locals.values():
                if isinstance(value, aiohttp.ClientSession) and value not in found:
                    found.append(value)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return found


def connect_failure(exc: BaseException, endpoint: str, target: Target) -> ConnectError:
    """Map what the SDK, aiohttp or azure-identity raised to a user-facing error."""
    cause: BaseException | None = exc
    status = None
    while cause is not None:
        status = getattr(cause, "status", None)
        if isinstance(status, int):
            break
        cause = cause.__cause__ or cause.__context__
    name = type(exc).__name__
    if status in (401, 403):
        how = f"the API key from {target.key_source}" if target.api_key else "your Entra sign-in"
        return AuthError(
            f"{endpoint} refused {how} (HTTP {status})",
            hint="check the key or role assignment (Cognitive Services User) "
            "and that it belongs to this resource",
        )
    if status == 404:
        what = (
            "agent or project"
            if (target.agent_kwargs or target.agent_query)
            else "Voice Live endpoint"
        )
        return ConnectError(
            f"{endpoint}: {what} not found (HTTP 404)",
            hint="check the endpoint URL, the agent name and the project name",
        )
    if isinstance(status, int):
        return ConnectError(f"{endpoint} rejected the connection (HTTP {status})")
    if "Credential" in name or "ClientAuthentication" in name:
        return AuthError(
            f"no API key is configured and Azure sign-in failed ({_first_line(exc)})",
            hint="set AZURE_VOICELIVE_API_KEY, or sign in with `az login`",
        )
    if isinstance(exc, ValueError):  # the SDK refused the endpoint or an argument
        return ConnectError(
            f"cannot connect to {endpoint}: {_first_line(exc)}",
            hint="check the endpoint URL and the connection settings in the profile",
        )
    return ConnectError(
        f"cannot reach {endpoint} ({_first_line(exc)})",
        hint="check the endpoint and your network; `vlrun doctor` tests the connection",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
