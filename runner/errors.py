"""One root for every error a user can cause, and the one place that maps errors to exit codes.

Anything raised as a :class:`VlrunError` is a user-facing message: it is printed as is,
without a traceback. Anything else is a bug in vlrun: the CLI prints one line that says so
and where the full traceback was written.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Literal

#: Exit codes, shared by every command (documented in README "Exit codes").
EXIT_OK = 0
EXIT_INVALID = 1  # the input is wrong: profile, scenario, WAV file, failed test
EXIT_USAGE = 2  # the command line is wrong
EXIT_UNAVAILABLE = 3  # a service, device or credential needed to run is not there
EXIT_INTERRUPTED = 130
EXIT_BUG = 70  # EX_SOFTWARE: vlrun itself failed

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding about one file, positioned for a human and for a machine."""

    file: str
    line: int | None
    col: int | None
    severity: Severity
    message: str
    json_path: str = ""  # e.g. "$.turn_detection.threshold"
    hint: str | None = None

    @property
    def location(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def render(self) -> str:
        """``file:line:col: error: message (at $.path)`` plus an indented hint line."""
        text = f"{self.location}: {self.severity}: {self.message}"
        if self.json_path and self.json_path != "$":
            text += f" (at {self.json_path})"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class VlrunError(Exception):
    """Root of every error caused by input, configuration or environment, not by a bug."""

    exit_code: int = EXIT_INVALID

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class UsageError(VlrunError):
    """The command line itself is wrong (unknown option value, conflicting flags)."""

    exit_code = EXIT_USAGE


class ProfileError(VlrunError):
    """A profile (or scenario) file failed to load or validate; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = [p for p in problems if p.severity == "error"] or problems
        first = self.problems[0] if self.problems else None
        super().__init__(first.message if first else "invalid profile")
        self.all_problems = problems

    def render(self) -> str:
        return "\n".join(p.render() for p in self.all_problems)


@dataclass
class ProblemCollector:
    """Accumulates problems so a check can report every one of them at once."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise ProfileError(self.problems)


class ConfigError(VlrunError):
    """A setting outside the profile is wrong or missing (env var, endpoint, --var value)."""


class ToolError(VlrunError):
    """A tool plugin cannot be loaded or registered (bad signature, duplicate name)."""


class AudioUnavailable(VlrunError):
    """No sound stack, no device, or a device that cannot open the requested format."""

    exit_code = EXIT_UNAVAILABLE


class OutputError(VlrunError):
    """A log, trace or output file cannot be written (read-only folder, full disk, bad path)."""

    exit_code = EXIT_UNAVAILABLE


class ConnectError(VlrunError):
    """The endpoint could not be reached, refused the credentials, or closed the session."""

    exit_code = EXIT_UNAVAILABLE


class AuthError(ConnectError):
    """The endpoint refused the key or token."""


def exit_code_for(exc: BaseException) -> int:
    """Map any exception to the process exit code; the single source of that mapping."""
    if isinstance(exc, VlrunError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_BUG


#: A write failed because of where the output goes, not because of vlrun: a full device
#: (`> /dev/full`), a quota, a file too large, an I/O error, a reader that went away.
OUTPUT_ERRNOS = frozenset(
    e
    for e in (
        errno.ENOSPC,
        getattr(errno, "EDQUOT", None),
        errno.EFBIG,
        errno.EIO,
        errno.EPIPE,
    )
    if e is not None
)
