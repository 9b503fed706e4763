"""What the service changed: the session vlrun sent against the one ``session.updated`` echoes.

The runner warns about every field the service dropped or rewrote, one line each, so a user
sees at once that (say) a voice or a VAD threshold did not take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Fields the service fills in or owns; differences there are expected, not news.
_IGNORED_DIFF_KEYS = frozenset({"id", "object", "expires_at", "agent", "model"})


def session_differences(
    sent: Mapping[str, Any], received: Mapping[str, Any], path: str = "session"
) -> list[str]:
    """Fields of ``sent`` that ``received`` lacks or holds with another value, one line each."""
    out: list[str] = []
    for key, want in sent.items():
        if key in _IGNORED_DIFF_KEYS and path == "session":
            continue
        where = f"{path}.{key}"
        if key not in received or (received[key] is None and want is not None):
            out.append(f"the service dropped {where} (sent {_short(want)})")
            continue
        got = received[key]
        if isinstance(want, Mapping) and isinstance(got, Mapping):
            out.extend(session_differences(want, got, where))
        elif key == "voice" and isinstance(want, str) and isinstance(got, Mapping):
            if got.get("name") != want:
                out.append(f"the service rewrote {where}: sent {_short(want)}, got {_short(got)}")
        elif key == "tools" and isinstance(want, list) and isinstance(got, list):
            names = {t.get("name") or t.get("server_label") for t in got if isinstance(t, Mapping)}
            for tool in want:
                name = tool.get("name") or tool.get("server_label")
                if name not in names:
                    out.append(f"the service dropped tool {name!r}")
        elif not _same(want, got):
            out.append(f"the service rewrote {where}: sent {_short(want)}, got {_short(got)}")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) < 1e-6
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            (not session_differences(x, y, ""))
            if isinstance(x, Mapping) and isinstance(y, Mapping)
            else _same(x, y)
            for x, y in zip(a, b, strict=True)
        )
    return bool(a == b)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
