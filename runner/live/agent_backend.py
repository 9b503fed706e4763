"""A Foundry agent that answers GPT-Live's client delegations (docs/gpt-live.md: "vlrun uses
client delegation for a Foundry agent: the runner sends the caller's transcript since the last
reply to that backend and returns its answer as commentary").

The agent is asked through the Foundry project's Responses API, as Microsoft's agent samples do:
``POST <endpoint>/api/projects/<project>/openai/v1/responses`` with
``{"input": [...], "agent": {"name": ..., "type": "agent_reference"}}`` and an Entra token for
``https://ai.azure.com/.default`` (an API key goes in ``api-key``). The answer is the text of the
response's ``message`` output items.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from runner.errors import ConnectError
from runner.redact import clean_line, register_secret

AGENT_SCOPE = "https://ai.azure.com/.default"
ASK_TIMEOUT_S = 30.0
#: a commentary is at most 500 tokens (docs/gpt-live.md); about 4 characters a token
MAX_ANSWER_CHARS = 2000


class AgentUnavailable(ConnectError):
    """The agent could not be asked, or gave no answer."""


class FoundryAgentBackend:
    """Asks one Foundry agent a question; :meth:`ask` returns its answer's text."""

    def __init__(
        self, endpoint: str, name: str, project: str, credential: Any, *, timeout_s: float = 30.0
    ) -> None:
        parts = urlsplit(endpoint)
        scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
        self.url = f"{scheme}://{parts.netloc}/api/projects/{project}/openai/v1/responses"
        self.name, self.project = name, project
        self.credential = credential
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return f"Foundry agent {self.name} (project {self.project})"

    async def _headers(self) -> dict[str, str]:
        key = getattr(self.credential, "key", None)
        if isinstance(key, str) and key:
            return {"api-key": key}
        if hasattr(self.credential, "get_token"):
            token = await self.credential.get_token(AGENT_SCOPE)
            register_secret(token.token)
            return {"Authorization": f"Bearer {token.token}"}
        return {}

    async def ask(self, text: str) -> str:
        import aiohttp

        body = {
            "input": [{"role": "user", "content": text}],
            "agent": {"name": self.name, "type": "agent_reference"},
        }
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(self.url, json=body, headers=await self._headers()) as response,
            ):
                data = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise AgentUnavailable(
                f"{self.describe()} could not be asked ({type(exc).__name__})"
            ) from None
        if status >= 400 or not isinstance(data, dict):
            message = data.get("error", {}).get("message") if isinstance(data, dict) else None
            raise AgentUnavailable(
                f"{self.describe()} answered HTTP {status}"
                + (f": {clean_line(str(message))[:200]}" if message else "")
            )
        answer = answer_text(data)
        if not answer:
            raise AgentUnavailable(f"{self.describe()} gave no text")
        return answer[:MAX_ANSWER_CHARS]


def answer_text(response: dict[str, Any]) -> str:
    """The text of a Responses API response: its message items' output_text parts."""
    texts = []
    for item in response.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "output_text" and part.get("text"):
                texts.append(str(part["text"]))
    return " ".join(texts).strip()
