"""Problems placed at file:line:col: a JSON path is mapped to the nearest known YAML position."""

from __future__ import annotations

from collections.abc import Mapping

from runner.config.source import PathKey, Pos, json_path
from runner.errors import Problem

SET_PREFIX = "--set "  # the `file` of a value given on the command line: "--set a.b=1"


class Locator:
    """Finds the best position for a JSON path: the value itself, else its nearest parent."""

    def __init__(self, positions: Mapping[PathKey, Pos], default_file: str) -> None:
        self.positions = positions
        self.default_file = default_file
        self._sets: list[tuple[PathKey, Pos]] | None = None  # found on first use

    def pos(self, path: PathKey) -> Pos | None:
        for i in range(len(path), -1, -1):
            p = self.positions.get(tuple(path[:i]))
            if p is not None:
                return p
        return None

    def problem(
        self,
        path: PathKey,
        message: str,
        *,
        hint: str | None = None,
        at_key: bool = False,
        severity: str = "error",
    ) -> Problem:
        pos = self.pos(path)
        file, line, col = self.default_file, None, None
        if pos is not None:
            file = pos.file
            line, col = pos.at_key() if at_key else (pos.line, pos.col)
            if line == 0:  # a value from the command line (--set) has no line
                line, col = None, None
        if path and not file.startswith(SET_PREFIX):  # (any --set is inside the root)
            changed = self._set_inside(path)
            if changed is not None:
                # A --set changed something inside this setting (`--set voice.type=...` leaving
                # the voice without a name): the --set is what to fix, not the profile's line.
                fix = f"change or drop {changed.file}"
                exact = self.positions.get(tuple(path))
                if line is not None and exact is not None and not exact.file.startswith(SET_PREFIX):
                    at = f"{file}:{line}" + (f":{col}" if col is not None else "")
                    fix += f" (the profile's setting is at {at})"
                hint = f"{hint}; or {fix}" if hint else fix
                file, line, col = changed.file, None, None
        return Problem(file, line, col, severity, message, json_path(path), hint)  # type: ignore[arg-type]

    def _set_inside(self, path: PathKey) -> Pos | None:
        """The first --set that wrote ``path`` or a value inside it, if any."""
        if self._sets is None:
            self._sets = [
                (k, p) for k, p in self.positions.items() if p.file.startswith(SET_PREFIX)
            ]
        n = len(path)
        for key, pos in self._sets:
            if len(key) >= n and tuple(key[:n]) == tuple(path):
                return pos
        return None
