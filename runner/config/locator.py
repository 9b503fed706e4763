"""Problems placed at file:line:col: a JSON path is mapped to the nearest known YAML position."""

from __future__ import annotations

from collections.abc import Mapping

from runner.config.source import PathKey, Pos, json_path
from runner.errors import Problem


class Locator:
    """Finds the best position for a JSON path: the value itself, else its nearest parent."""

    def __init__(self, positions: Mapping[PathKey, Pos], default_file: str) -> None:
        self.positions = positions
        self.default_file = default_file

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
        return Problem(file, line, col, severity, message, json_path(path), hint)  # type: ignore[arg-type]
