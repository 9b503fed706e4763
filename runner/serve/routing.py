"""Which route answers a call: by the webhook's path name, else the called number, else default.

Numbers are compared in E.164 form (providers send ``+15551230000``; ACS identifiers may carry a
``4:`` raw-id prefix, which is dropped first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from runner.config.serve_file import Route

_NON_DIGITS = re.compile(r"[^\d+]")


def normalise_number(raw: str | None) -> str:
    """``4:+1 555 123`` -> ``+1555123``; "" for nothing."""
    text = (raw or "").strip()
    if text.startswith("4:"):
        text = text[2:]
    return _NON_DIGITS.sub("", text)


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self._by_path = {r.path: r for r in self.routes if r.path}
        self._by_number = {normalise_number(r.number): r for r in self.routes if r.number}
        self._default = next((r for r in self.routes if r.default), None)

    def route(self, *, path: str | None = None, called: str | None = None) -> Route | None:
        """The route for a webhook path name or a called number; None when nothing answers."""
        if path:
            return self._by_path.get(path)  # an unknown path is a wrong URL, not the default
        found = self._by_number.get(normalise_number(called))
        return found or self._default
