"""Keep secrets out of everything vlrun writes: logs, transcripts, traces, errors, compiled output.

Two layers, because either alone misses cases:
- values: every secret vlrun reads (API keys, tokens, MCP header values) is registered with
  :func:`register_secret` and replaced wherever it appears, whatever the context;
- shapes: things that look like credentials (``Bearer …``, ``api-key=…`` in a URL,
  ``agent-access-token``) are masked even if vlrun never saw the value itself.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
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
        _values.update(_forms(value))
        ordered = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def _forms(value: str) -> set[str]:
    """The value as it may appear in an output: plain, URL-encoded, base64 and JSON-escaped.

    A token in a URL query is percent-encoded, one in a Basic header or a data URL is base64;
    masking only the plain text would let those through."""
    raw = value.encode("utf-8")
    forms = {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
        base64.b64encode(raw).decode("ascii"),
        base64.urlsafe_b64encode(raw).decode("ascii"),
        json.dumps(value)[1:-1],
    }
    for form in list(forms):
        if form.endswith("="):  # base64 padding is dropped in URLs and JWT-like tokens
            forms.add(form.rstrip("="))
    return {f for f in forms if len(f) >= 6}


#: Environment variables whose values are credentials by their name (API keys, tokens, ...).
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_NOT_SECRET = frozenset({"AZURE_VOICELIVE_ENDPOINT", "SSH_AUTH_SOCK", "XAUTHORITY"})


def register_environment(env: Mapping[str, str]) -> None:
    """Register every variable that names a credential, whether vlrun reads it or not.

    A scenario, a model script or a tool may echo any of them; masking them all up front
    closes the class instead of the cases."""
    for name, value in env.items():
        if _SECRET_NAME.search(name) and name not in _NOT_SECRET and len(value) >= 6:
            register_secret(value)


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


# --- terminal and log hygiene ---------------------------------------------------------------------

# C0 controls but tab and newline, DEL, C1 controls, and the bidi overrides that reorder text
# on screen ("trojan source"): a scripted reply carrying ESC]0;...BEL set a terminal's title.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|\r(?!\n)")
# What XML 1.0 cannot hold at all, even escaped: JUnit with one of these is not well-formed.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _visible(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """``text`` safe to print to a terminal or a log: control characters shown as ``\\x1b``.

    Newlines and tabs stay (and CR before LF); a lone carriage return is shown, since it
    rewrites the line on screen."""
    return _CONTROL.sub(_visible, text)


def clean_line(text: str) -> str:
    """Like :func:`clean` for one line of a log or a table: newlines are shown as well."""
    return clean(text).replace("\n", "\\n")


def xml_text(text: str) -> str:
    """``text`` that any XML 1.0 document can hold (JUnit): unrepresentable characters shown
    as escapes, control characters too. Markup escaping stays the XML writer's job."""
    return clean(_NOT_XML.sub(_visible, text))


def safe(text: str) -> str:
    """Redacted and cleaned: the one call for anything that leaves vlrun as text."""
    return clean(redact(text))
