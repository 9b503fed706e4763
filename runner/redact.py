"""Keep secrets out of everything vlrun writes: logs, transcripts, traces, errors, compiled output.

Two layers, because either alone misses cases:
- values: every secret vlrun reads (API keys, tokens, MCP header values) is registered with
  :func:`register_secret` and replaced wherever it appears, whatever the context;
- shapes: things that look like credentials (``Bearer …``, ``api-key=…`` in a URL,
  ``agent-access-token``) are masked even if vlrun never saw the value itself.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Keys whose values are credentials wherever they appear in a JSON-like structure.
SECRET_KEYS = frozenset(
    {
        "api-key",
        "api_key",
        "apikey",
        "authorization",
        "agent-access-token",
        "agent_access_token",
        "access_token",
        "token",
        "password",
        "client_secret",
        "secret",
        "credential",
    }
)

_SHAPES = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/=%]{8,}"),
    re.compile(
        r"(?i)((?:api-key|api_key|agent-access-token|access_token|authorization)[=:]\s*)[^\s&\"',}]+"
    ),
    re.compile(r"(?i)(\"(?:api-key|api_key|authorization|agent-access-token)\"\s*:\s*\")[^\"]+"),
]

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember a secret value so that every later :func:`redact` masks it."""
    global _pattern
    # Very short values would mask ordinary words; real keys and tokens are long.
    if not value or len(value) < 6:
        return
    with _lock:
        if value in _values:
            return
        _values.add(value)
        ordered = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def forget_secrets() -> None:
    """Drop registered values (tests use this to isolate cases)."""
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None


def redact(text: str) -> str:
    """Mask registered secret values and credential-shaped substrings in ``text``."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + MASK, text)
    return text


def redact_obj(obj: Any) -> Any:
    """Return a copy of a JSON-like structure with secret keys masked and strings redacted."""
    if isinstance(obj, Mapping):
        return {
            k: (MASK if isinstance(k, str) and k.lower() in SECRET_KEYS and v else redact_obj(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    if isinstance(obj, str):
        return redact(obj)
    return obj
