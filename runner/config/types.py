"""The frozen Profile record and its parts, as `load_profile` returns them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.config.greeting import Greeting as Greeting  # its old home: re-exported
from runner.config.locator import Locator
from runner.config.service import BYOM_QUERY, FEATURES_HEADER, features_header
from runner.config.source import PathKey, Pos
from runner.errors import Problem

if TYPE_CHECKING:  # the flow wing is imported only by a profile that has a flow
    from runner.config.flow_model import Flow


@dataclass(frozen=True)
class AgentBinding:
    """A Foundry agent: current form (name + project) or classic 2025-05-01-preview (id)."""

    name: str | None = None
    project: str | None = None
    version: str | None = None
    conversation_id: str | None = None
    id: str | None = None
    connection_string: str | None = None
    identity_client_id: str | None = None
    foundry_resource: str | None = None
    #: hosted agents (Invocations protocol): sent with each response.create as invoke_input
    invoke_input: Mapping[str, Any] | None = None

    @property
    def legacy(self) -> bool:
        return self.id is not None

    def connect_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``azure.ai.voicelive.aio.connect`` (current form; else empty)."""
        if self.legacy:
            return {}
        pairs = {
            "agent_name": self.name,
            "project_name": self.project,
            "agent_version": self.version,
            "conversation_id": self.conversation_id,
            "authentication_identity_client_id": self.identity_client_id,
            "foundry_resource_override": self.foundry_resource,
        }
        return {k: v for k, v in pairs.items() if v is not None}

    def query_params(self) -> dict[str, str]:
        """Query parameters of the classic form (the runner adds agent-access-token)."""
        if not self.legacy or self.id is None:
            return {}
        out = {"agent-id": self.id}
        if self.connection_string is not None:
            out["agent-connection-string"] = self.connection_string
        elif self.project is not None:
            out["agent-project-name"] = self.project
        return out


@dataclass(frozen=True)
class Connection:
    """Where and how a profile connects: endpoint, model, api-version, agent, extras."""

    endpoint: str | None
    model: str | None
    api_version: str | None  # None: the SDK default (runner.config.compile.DEFAULT_API_VERSION)
    agent: AgentBinding | None
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # resolved from env; secrets
    credential_scopes: tuple[str, ...] = ()
    preview: tuple[str, ...] = ()  # v1 preview features, sent as the VoiceLive-Features header
    byom: str | None = None  # a BYOM mode (byom-azure-openai-realtime|-chat-completion)

    def connect_options(self) -> dict[str, Any]:
        """The ``connect()`` keyword arguments beyond endpoint, model and agent."""
        out: dict[str, Any] = {}
        query = dict(self.query)
        if self.byom:
            # source: how-to-bring-your-own-model.md: `?profile=<your-byom-mode>&model=...`
            query[BYOM_QUERY] = self.byom
        if query:
            out["query"] = query
        headers = dict(self.headers)
        if self.preview:
            headers[FEATURES_HEADER] = features_header(self.preview)
        if headers:
            out["headers"] = headers
        if self.credential_scopes:
            out["credential_scopes"] = list(self.credential_scopes)
        return out


@dataclass(frozen=True)
class ToolBinding:
    """A function tool the profile binds to a plugin, with its timeout and overrides."""

    name: str
    timeout_s: float | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    cancel_on_barge_in: bool = True
    line: int | None = None
    file: str | None = None


@dataclass(frozen=True)
class McpServer:
    """An MCP server the profile gives the model, and which of its tools need approval."""

    label: str
    url: str
    allowed_tools: tuple[str, ...] | None
    approval: str | Mapping[str, tuple[str, ...]] | None  # always|never|ask|{always, never}
    headers: Mapping[str, str]  # resolved from env; values are registered secrets
    line: int | None = None
    authorization: str | None = None  # resolved from env; a registered secret


@dataclass(frozen=True)
class Profile:
    """A loaded, valid profile: what `load_profile` returns and `compile` compiles."""

    source: Path
    name: str
    description: str | None
    connection: Connection
    instructions: str | None
    greeting: Greeting | None
    tools: tuple[ToolBinding, ...]
    tool_timeout_s: float
    mcp_servers: tuple[McpServer, ...]
    input_format: str
    input_sampling_rate: int
    output_format: str
    output_sampling_rate: int
    vars: Mapping[str, Any]
    settings: Mapping[str, Any]  # the resolved document (read-only), for compile
    positions: Mapping[PathKey, Pos] = field(repr=False)
    env_refs: Mapping[PathKey, tuple[str, ...]] = field(repr=False)
    var_origins: Mapping[str, str] = field(repr=False)
    warnings: tuple[Problem, ...] = ()
    flow: Flow | None = None  # the conversation flow, when the profile declares one

    @property
    def agent(self) -> AgentBinding | None:
        return self.connection.agent

    def locator(self) -> Locator:
        return Locator(self.positions, str(self.source))

    def origin(self, path: PathKey) -> str | None:
        """Where the value at ``path`` came from: ``file:line``, ``--set ...``, with env names."""
        pos = self.locator().pos(path)
        if pos is None:
            return None
        text = pos.file if pos.line == 0 else f"{pos.file}:{pos.line}"
        for i in range(len(path), -1, -1):
            names = self.env_refs.get(tuple(path[:i]))
            if names:
                text += " (env " + ", ".join(names) + ")"
                break
        return text
