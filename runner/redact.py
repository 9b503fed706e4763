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
from collections import OrderedDict
from collections.abc import Mapping
from functools import cache
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

# --- shapes: credentials recognised by their form, whether registered or not -------------------
# One RE2 pattern (linear time whatever the text: a caller's words pass through here too). Each
# alternative is ``(kept context)(secret)``: the context stays, the secret becomes MASK. The
# more specific alternatives come first, since RE2 takes the first that matches at a position.
_B64URL = "[A-Za-z0-9_-]"
_ALNUM = "[A-Za-z0-9]"
_JWT = rf"eyJ{_B64URL}{{4,}}\.{_B64URL}{{4,}}\.{_B64URL}*"
_SHAPE_PARTS = (
    # Authorization header or setting, whatever its scheme: the scheme word is masked with it
    r"((?i:authorization)\s*[=:]\s*)(?:(?i:bearer|basic|sharedaccesssignature)\s+)?"
    r"[^\s&\"',;}]+",
    r"((?i:bearer)\s+)[A-Za-z0-9\-._~+/=%]{8,}",
    # a JSON Web Token (an Entra access token): header.payload.signature, base64url
    rf"(^|[^A-Za-z0-9_-])(?:{_JWT})",
    # JSON members whose value is a credential
    r"(\"(?i:api-key|api_key|apikey|authorization|agent-access-token|access_token|token|"
    r"client_secret|password|sig)\"\s*:\s*\")[^\"]+",
    # header or setting lines: `api-key: …`, `Ocp-Apim-Subscription-Key: …`
    r"((?i:x-api-key|api-key|api_key|apikey|ocp-apim-subscription-key|subscription-key|"
    r"agent-access-token|access_token|client_secret)\s*[=:]\s*)[^\s&\"',;}]+",
    # URL query values: `?token=…`, a SAS `&sig=…`, `password=…`; connection-string keys
    r"((?:^|[^A-Za-z0-9_-])(?i:token|sig|password|accountkey|sharedaccesskey)=)[^\s&\"',;}<>]+",
    # Standard Webhooks / Svix signing secrets
    r"(^|[^A-Za-z0-9_])whsec_[A-Za-z0-9+/=_-]{8,}",
    # Azure keys with Microsoft's identifiable signature (84 characters, "JQQJ9" at 53)
    rf"(^|[^A-Za-z0-9])(?:{_ALNUM}{{52}}JQQJ9[9DH]{_ALNUM}[A-L]{_ALNUM}{{16}}[A-Za-z]{_ALNUM}{{7}}"
    rf"(?:{_ALNUM}{{2}}==)?)",
    # Microsoft Entra client secrets ("8Q~" at 4)
    r"(^|[^A-Za-z0-9_~.+/=-])[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
)


@cache
def _shapes() -> Any:
    """The shapes' one RE2 pattern, compiled at first use (RE2 costs a start without a secret)."""
    import re2  # type: ignore[import-untyped]

    return re2.compile("|".join(_SHAPE_PARTS))


# What every alternative above needs somewhere in the text: one of these words or marks (each
# is, case aside, a literal inside its alternative), looked for in the case-folded text
# (folding maps every character RE2's case-insensitive match equates with an ASCII letter, the
# Kelvin sign and the long s too, onto it). Most lines hold none of them, and this scan costs
# a fraction of the RE2 call (a case-insensitive Python pattern would cost more than RE2): a
# worker redacts every line it logs. tests/test_redact_fast.py checks it against every shape.
_SHAPE_HINT = re.compile(
    r"authorization|bearer|eyj|api.?key|token|sig|password|secret|subscription-key|"
    r"accountkey|sharedaccesskey|whsec_|jqqj9|q~"
)


@cache
def _jwt_only() -> Any:
    import re2

    return re2.compile(_JWT)


def _masked_shape(m: Any) -> str:
    kept = next((g for g in m.groups() if g is not None), "")
    return str(kept) + MASK


# --- values: a bounded registry of exact secrets ----------------------------------------------

#: How many secret values are remembered (the most recently registered; the oldest is dropped).
#: A worker registers a fresh token every hour for as long as it runs: without a bound the
#: registry, and the cost of matching it, would grow with uptime.
MAX_SECRETS = 256
# Matching: one RE2 pattern of the forms' first few characters finds every candidate in one
# linear pass; the candidates there are checked against the whole forms. The pattern holds at
# most MAX_SECRETS x 7 forms x 8 characters, so building it costs the same after an hour or a
# month, and it is rebuilt only when the registry changed, at the next redaction.
_PREFIX = 8
_FEW_PREFIXES = 16  # up to this many, prefixes are looked for as substrings before RE2 runs
_MIN_SECRET = 6  # very short values would mask ordinary words; real keys and tokens are long


class _Matcher:
    """The registry's forms, as the prefix pattern and the candidates behind each prefix."""

    def __init__(self, forms: list[bytes]) -> None:
        self.by_prefix: dict[bytes, list[bytes]] = {}
        for form in sorted(set(forms), key=len, reverse=True):
            self.by_prefix.setdefault(form[:_PREFIX], []).append(form)
        self.lengths = sorted({len(p) for p in self.by_prefix}, reverse=True)
        # A few prefixes (a worker's key or token: seven forms) are looked for as substrings
        # first, at C speed: a line without any skips the RE2 call.
        self.few = tuple(self.by_prefix) if len(self.by_prefix) <= _FEW_PREFIXES else None
        self.pattern = self._compile(sorted(self.by_prefix)) if self.by_prefix else None

    @staticmethod
    def _compile(prefixes: list[bytes]) -> Any:
        import re2

        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1  # bytes in, bytes out: no decoding
        options.max_mem = 64 << 20
        return re2.compile(b"|".join(re2.escape(p) for p in prefixes), options)

    def sub(self, text: str) -> str:
        pattern = self.pattern
        if pattern is None:
            return text
        data = text.encode("utf-8", "surrogatepass")
        few = self.few
        if few is not None and not any(prefix in data for prefix in few):
            return text
        m = pattern.search(data)
        if m is None:
            return text
        out: list[bytes] = []
        done = 0  # data[:done] is in ``out``
        while m is not None:
            at = m.start()
            size = self._longest(data, at)
            if size:
                out += (data[done:at], MASK.encode())
                done = at + size
            m = pattern.search(data, max(done, at + 1))
        out.append(data[done:])
        return b"".join(out).decode("utf-8", "surrogatepass")

    def _longest(self, data: bytes, at: int) -> int:
        """The length of the longest registered form at ``data[at:]``, 0 if none is there."""
        best = 0
        for length in self.lengths:
            for form in self.by_prefix.get(data[at : at + length], ()):
                if len(form) > best and data.startswith(form, at):
                    best = len(form)
                    break  # the candidates are longest first
        return best


_lock = threading.Lock()
_values: OrderedDict[str, tuple[bytes, ...]] = OrderedDict()  # oldest registration first
_matcher: _Matcher | None = None  # None: rebuilt at the next redaction
_builds = 0  # how many times the matcher was built (tests watch that it stays bounded)


def is_jwt(value: str) -> bool:
    """Whether ``value`` is a JSON Web Token, which :func:`redact` masks by its shape alone."""
    return _jwt_only().fullmatch(value) is not None


def register_secret(value: str | None) -> None:
    """Remember a secret value so that every later :func:`redact` masks it.

    A JWT (an Entra access token, renewed every hour) needs no entry: its shape masks it. The
    registry keeps the :data:`MAX_SECRETS` most recently registered values; registering a
    value again makes it the newest."""
    global _matcher
    if not value or len(value) < _MIN_SECRET or is_jwt(value):
        return
    with _lock:
        if value in _values:
            _values.move_to_end(value)
            return
        _values[value] = tuple(f.encode("utf-8", "surrogatepass") for f in _forms(value))
        while len(_values) > MAX_SECRETS:
            _values.popitem(last=False)
        _matcher = None


def registry_size() -> tuple[int, int]:
    """(values, prefixes in the compiled pattern): both bounded, whatever the uptime."""
    matcher = _current_matcher()
    return len(_values), len(matcher.by_prefix)


def registry_builds() -> int:
    """How many times the registry's pattern was built in this process."""
    return _builds


def _current_matcher() -> _Matcher:
    global _matcher, _builds
    matcher = _matcher
    if matcher is None:
        with _lock:
            if _matcher is None:
                _matcher = _Matcher([f for forms in _values.values() for f in forms])
                _builds += 1
            matcher = _matcher
    return matcher


def _forms(value: str) -> set[str]:
    """The value as it may appear in an output: plain, URL-encoded, base64 and JSON-escaped.

    A token in a URL query is percent-encoded, one in a Basic header or a data URL is base64;
    masking only the plain text would let those through."""
    raw = value.encode("utf-8", "surrogatepass")
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
    return {f for f in forms if len(f) >= _MIN_SECRET}


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
    global _matcher
    with _lock:
        _values.clear()
        _matcher = None


def redact(text: str) -> str:
    """Mask registered secret values and credential-shaped substrings in ``text``."""
    text = _current_matcher().sub(text)
    if _SHAPE_HINT.search(text.casefold()) is None:
        return text
    shapes = _shapes()
    if shapes.search(text) is None:
        return text
    return str(shapes.sub(_masked_shape, text))


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


# --- phone numbers ------------------------------------------------------------------------------

# A caller's number is caller data: logs keep its last four digits, enough to tell calls apart.
# E.164 with its "+" (also spaced or dotted), or a bare run of 10 to 15 digits.
_PHONE = re.compile(r"\+[1-9](?:[ .-]?\d){6,14}(?!\d)|(?<![\w.+-])\d{10,15}(?![\w])")
_DIGIT_RUN = re.compile(r"\d[ .-]?\d[ .-]?\d")  # every shape above has three such digits


def mask_phone(value: str, reveal: bool = False) -> str:
    """``+14155551234`` -> ``+*******1234``: every digit but the last four hidden, the rest of
    the text (a "+", spaces) kept. ``reveal`` returns ``value`` unchanged."""
    if reveal:
        return value
    digits = sum(c.isdigit() for c in value)
    hide = digits - 4
    if hide <= 0:
        return value
    out = []
    for c in value:
        if c.isdigit() and hide > 0:
            out.append("*")
            hide -= 1
        else:
            out.append(c)
    return "".join(out)


def mask_phone_numbers(text: str) -> str:
    """Every phone-number shape in ``text`` masked by :func:`mask_phone`."""
    if _DIGIT_RUN.search(text) is None:  # most lines: one quick scan, no lookbehinds
        return text
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


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
