"""Bounded JSON for what the phone edges read off the network: a size and a nesting limit.

A pure codec (no I/O, no logging): :func:`loads_any` and :func:`loads_object` either return
the value or raise :class:`JsonError`, whose ``kind`` says why and whose ``status`` is the
HTTP answer a handler gives (413 for ``too_large``, 400 for the rest). Nothing else escapes,
``RecursionError`` least of all:

- orjson (the serve extra) refuses input nested deeper than 1024 levels by itself, without
  recursing in Python: its error becomes ``too_deep``. Nothing is scanned beforehand, so a
  media frame costs one size check and the parse.
- The standard library's parser, the fallback, recurses once per level and raises
  ``RecursionError`` near a thousand, less the caller's own stack. Its input is measured
  first, and anything deeper than ``max_depth`` (512) is ``too_deep``. The measurement is
  cheap where it matters: a text with no more opening brackets than that cannot nest deeper
  (two ``count`` calls); only a larger one is measured properly by :func:`nesting_depth`, a
  few milliseconds at most for the largest body an edge reads (256 KB), whatever its shape.

So input nested deeper than 1024 levels is refused on both, and no provider frame comes near
either limit (they nest at most 6 levels). What the codecs hand on is scalars, never a
nested value, so nothing deep reaches a ``repr`` or a log line later either.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections.abc import Callable
from itertools import accumulate
from operator import sub
from typing import Any, Final, Literal

ErrorKind = Literal["too_large", "not_json", "too_deep", "not_object"]

MAX_DEPTH: Final = 512  # for the standard library's parser, which dies near 1000 levels

_MESSAGES: Final[dict[str, str]] = {
    "too_large": "too large",
    "not_json": "not JSON",
    "too_deep": "nested too deeply",
    "not_object": "not a JSON object",
}


class JsonError(ValueError):
    """Why a body or frame was refused. ``str()`` of it is safe to send back or to log: it
    names the rule, never the input's content."""

    def __init__(self, kind: ErrorKind, detail: str = "") -> None:
        self.kind: ErrorKind = kind
        self.detail = detail
        super().__init__(f"{_MESSAGES[kind]} ({detail})" if detail else _MESSAGES[kind])

    @property
    def status(self) -> int:
        """The HTTP status a webhook answers with."""
        return 413 if self.kind == "too_large" else 400

    @property
    def message(self) -> str:
        """A short reason for an HTTP body: ``too large``, ``not JSON``, ..."""
        return _MESSAGES[self.kind]


Data = str | bytes | bytearray | memoryview


def _stdlib_parse(data: str | bytes) -> Any:
    return json.loads(data, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN / Infinity: as strict as orjson


_parse: Callable[[str | bytes], Any]
try:
    import orjson

    _parse = orjson.loads
    BACKEND = "orjson"
except ImportError:  # pragma: no cover - the serve extra brings orjson
    _parse = _stdlib_parse
    BACKEND = "json"

_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_PARENS: Final = bytes.maketrans(b"[{]}", b"(())")
_RUNS = re.compile(rb"\(+|\)+")


def nesting_depth(data: bytes) -> int:
    """How deep the arrays and objects in ``data`` nest (brackets inside strings ignored).

    Linear, in C: strings are cut out, brackets become ``(`` and ``)``; rounds of
    ``replace(b"()", b"")`` each remove every innermost pair (one level), while a round still
    shrinks the text by a quarter; what is left is measured from its runs of ``(`` and ``)``
    (they alternate, so the depth is a running sum over their lengths). Exact for valid JSON;
    unbalanced input (not JSON, refused by the parser anyway) may be measured a little deeper.
    """
    # Strings out: escaped backslashes first, then escaped quotes (left to right, as a JSON
    # reader pairs them); then every other piece between quotes is outside a string.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[0::2])
    parens = outside.translate(_PARENS, _NOT_BRACKETS)
    rounds = 0
    while parens:
        shorter = parens.replace(b"()", b"")
        removed = len(parens) - len(shorter)
        if not removed:
            break
        parens, rounds = shorter, rounds + 1
        if removed * 4 < len(parens):
            break  # few pairs left to remove per round: measure the runs instead
    runs = list(map(len, _RUNS.findall(parens)))
    if not runs:
        return rounds
    if parens.startswith(b")"):
        runs.insert(0, 0)
    opened = accumulate(runs[0::2])
    closed = accumulate(runs[1::2], initial=0)
    return rounds + max(map(sub, opened, closed))


def _check(data: Data, max_bytes: int, max_depth: int) -> str | bytes:
    """``data`` as str or bytes once its size (and, for the fallback parser, its nesting) is
    within bounds."""
    if isinstance(data, str):
        # A character is one to four bytes: the exact size is measured only in between.
        if len(data) * 4 > max_bytes and (
            len(data) > max_bytes or len(data.encode("utf-8", "surrogatepass")) > max_bytes
        ):
            raise JsonError("too_large", f"over {max_bytes} bytes")
        if (
            _parse is _stdlib_parse
            and data.count("[") + data.count("{") > max_depth
            and nesting_depth(data.encode("utf-8", "surrogatepass")) > max_depth
        ):
            raise JsonError("too_deep", f"over {max_depth} levels")
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise JsonError("not_json", f"a {type(data).__name__}, not text")
    if (data.nbytes if isinstance(data, memoryview) else len(data)) > max_bytes:
        raise JsonError("too_large", f"over {max_bytes} bytes")
    raw = bytes(data)  # no copy for bytes
    if (
        _parse is _stdlib_parse
        and raw.count(b"[") + raw.count(b"{") > max_depth
        and nesting_depth(raw) > max_depth
    ):
        raise JsonError("too_deep", f"over {max_depth} levels")
    return raw


def _parse_checked(text: str | bytes) -> Any:
    try:
        return _parse(text)
    except RecursionError:  # unreachable past the checks; kept as the last guard
        raise JsonError("too_deep") from None
    except (ValueError, TypeError) as exc:
        reason = str(exc).lower()
        if "depth limit" in reason or "recursion" in reason:  # orjson's own limit (by version)
            raise JsonError("too_deep", "over 1024 levels") from None
        raise JsonError("not_json") from None


def loads_any(data: Data, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Any JSON value from ``data``, or :class:`JsonError` (never another exception).
    ``max_depth`` bounds the standard library's parser; orjson's own bound is 1024."""
    return _parse_checked(_check(data, max_bytes, max_depth))


def loads_object(data: Data, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A JSON object from ``data``, or :class:`JsonError` (``not_object`` for other values).

    A media frame's path (50 a second per call) on orjson: a type and size check, the parse,
    a type check; no function call between them unless the frame is refused."""
    text: str | bytes
    if _parse is _stdlib_parse:
        text = _check(data, max_bytes, max_depth)
    elif (isinstance(data, str) and len(data) * 4 <= max_bytes) or (
        isinstance(data, bytes) and len(data) <= max_bytes
    ):
        text = data  # its size is within bounds; orjson bounds the nesting
    else:
        text = _check(data, max_bytes, max_depth)
    try:
        value = _parse(text)
    except (ValueError, TypeError, RecursionError):
        value = _parse_checked(text)  # raises the right JsonError
    if type(value) is not dict:
        raise JsonError("not_object", f"a JSON {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


if sys.version_info >= (3, 11):

    def b64decode_strict(text: str) -> bytes:
        """Base64 that refuses what is not base64 (other characters, stray or missing
        padding) with ``binascii.Error`` / ``ValueError``, rather than skipping it silently.
        One C call, no regular expression (cheaper than a ``partial`` with a keyword)."""
        return binascii.a2b_base64(text, strict_mode=True)

else:  # pragma: no cover - Python 3.10

    def b64decode_strict(text: str) -> bytes:
        return base64.b64decode(text, validate=True)


_CONTROL = re.compile(r"[^\x20-\x7e]")
_DIGITS = re.compile(r"\d{5,}")  # a phone number, or part of one


def safe_sample(data: Any, limit: int = 64) -> str:
    """The start of a refused frame, fit for a log line: printable ASCII only (control and
    other characters escaped, so no CR/LF/ESC/bidi override reaches a log), runs of five or
    more digits masked to their last four (a caller's number in a participant id), at most
    ``limit`` characters, with ``...`` when cut."""
    if isinstance(data, bytes | bytearray | memoryview):
        text = bytes(data[: limit * 2]).decode("utf-8", "replace")
    elif isinstance(data, str):
        text = data[: limit * 2]
    else:
        text = type(data).__name__
    text = _DIGITS.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], text)
    text = _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
