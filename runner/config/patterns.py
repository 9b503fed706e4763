"""Regular expressions written by users (scenario expectations, model scripts): RE2 only.

Python's ``re`` backtracks, so ``(a+)+$`` against a long reply runs for ever, holds the GIL
(SIGINT cannot stop it) and, in the emulator, blocks every session. RE2 matches in time
linear in the text and refuses the constructs that need backtracking (lookaround,
backreferences) when the pattern is compiled, i.e. when `vlrun check` reads the file.
Matching is case-insensitive, as it always was for these patterns.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MAX_PROGRAM_BYTES = 8 << 20  # RE2's own budget for one compiled pattern

# A pattern that can never match (RE2 has no ``(?!)``): at no position is there both a
# word boundary and none.
NEVER = r"\b\B"


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why, in RE2's words."""


@lru_cache(maxsize=1)
def _options() -> Any:
    import re2

    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # otherwise RE2 prints every bad pattern to stderr itself
    options.max_mem = MAX_PROGRAM_BYTES
    return options


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """A compiled, case-insensitive RE2 pattern with ``.search(text)``; PatternError if not."""
    import re2

    try:
        return re2.compile(pattern, options=_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        hint = ""
        if any(x in pattern for x in ("(?=", "(?!", "(?<", "\\1", "\\2")):
            hint = " (lookaround and backreferences need backtracking, which is not allowed)"
        raise PatternError(f"{reason}{hint}") from None


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` occurs in ``text``, case-insensitively, in linear time."""
    return compile_pattern(pattern).search(text) is not None
