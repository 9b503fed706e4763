"""The thin click layer: parse the command line, call one command module, map errors to exits.

Command modules are imported only when their command runs, so `vlrun check` never pays for
the SDK's connection code or an audio library. `vlrun PROFILE.yaml` is short for
`vlrun run PROFILE.yaml`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import click

from runner import __version__
from runner.errors import EXIT_BUG, OUTPUT_ERRNOS, OutputError, VlrunError, exit_code_for
from runner.redact import redact, register_environment

# name -> (module, attribute, one-line help). The table is the registry of subcommands.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("runner.commands.run", "run", "Start a profile and talk to it (the default)."),
    "check": ("runner.commands.check", "check", "Validate profiles and scenarios."),
    "compile": ("runner.commands.compile", "compile_", "Print a profile's session.update."),
    "explain": ("runner.commands.compile", "explain", "Show where each compiled field came from."),
    "flow": ("runner.commands.flow", "flow", "Draw a profile's conversation flow."),
    "schema": ("runner.commands.compile", "schema", "Print the profile (or scenario) JSON Schema."),
    "emulate": ("runner.commands.emulate", "emulate", "Run the local Voice Live emulator."),
    "tools": ("runner.commands.tools", "tools", "List and inspect tool plugins."),
    "devices": ("runner.commands.run", "devices", "List audio input and output devices."),
    "doctor": ("runner.commands.run", "doctor", "Check sound stack, endpoint, keys, a profile."),
    "test": ("runner.commands.test", "test", "Run conversation scenarios (emulator or Azure)."),
    "serve": ("runner.commands.serve", "serve", "Serve a browser console for profiles."),
    "ring": ("runner.commands.ring", "ring", "Ring a running `vlrun serve` as a carrier would."),
    "scenario": (
        "runner.commands.scenario",
        "scenario",
        "Turn a conversation `vlrun serve` recorded into a test scenario.",
    ),
}


class VlrunGroup(click.Group):
    """A group whose commands load lazily and whose default command is `run`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not built yet
                return None
            raise
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table so `vlrun --help` imports no command module.
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # `vlrun profiles/x.yaml ...` -> `vlrun run profiles/x.yaml ...`
        if args and args[0] not in COMMANDS and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


@click.group(cls=VlrunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vlrun")
def cli() -> None:
    """vlrun: run Azure AI Voice Live agents from YAML profiles.

    \b
    vlrun profiles/casual-chat.yaml     talk to a profile (local emulator when no endpoint is set)
    vlrun check profiles/               validate profiles, with file:line for every problem
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code; the one place errors become exit codes."""
    register_environment(os.environ)
    try:
        # Commands return their exit code; click hands it back in non-standalone mode.
        rv = cli.main(args=argv, prog_name="vlrun", standalone_mode=False)
        sys.stdout.flush()  # here, not at interpreter exit, so a full disk is reported
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return exit_code_for(KeyboardInterrupt())
    except VlrunError as exc:
        click.echo(redact(exc.render()), err=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return exit_code_for(exc)
    except OSError as exc:
        if exc.errno not in OUTPUT_ERRNOS:
            return _crashed(argv)
        return _output_failed(exc)
    except Exception:  # a bug in vlrun: one line for the user, the traceback in a file
        return _crashed(argv)
    return rv if isinstance(rv, int) else 0


def _output_failed(exc: OSError) -> int:
    """One line on stderr (if it can still be written) and exit 3; no traceback, no crash log."""
    where = exc.filename or _stream_written(exc)
    for name, stream in (("standard output", sys.stdout), ("standard error", sys.stderr)):
        try:
            stream.flush()
        except OSError:
            where = where or name
            _discard(stream)  # else the interpreter's last flush fails again, with a traceback
        else:
            if where == name:
                _discard(stream)  # what is still to come (click's own last flush) goes nowhere
    reason = exc.strerror or type(exc).__name__
    error = OutputError(f"cannot write to {where or 'the output'}: {reason}")
    with contextlib.suppress(OSError):
        click.echo(redact(error.render()), err=True)
    return error.exit_code


def _stream_written(exc: BaseException) -> str | None:
    """Which file the failed write went to: a file object in the innermost frame that had one
    (click.echo's ``file``, a logging handler's ``stream``)."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, io.IOBase):
                try:
                    fd = value.fileno()
                except (OSError, ValueError):
                    continue
                names = {1: "standard output", 2: "standard error"}
                found = names.get(fd) or str(getattr(value, "name", "") or "") or found
        tb = tb.tb_next
    return found


def _discard(stream: object) -> None:
    """Point a broken standard stream at the null device, so what it still holds goes nowhere."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, AttributeError, ValueError):
        return
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _crashed(argv: list[str] | None) -> int:
    """A bug in vlrun: one line for the user, the traceback in a file (called in ``except``)."""
    crash = write_crash_log(traceback.format_exc(), argv)
    kind = sys.exc_info()[0]
    name = kind.__name__ if kind else "error"
    click.echo(
        f"vlrun failed unexpectedly ({name}); details in {crash}. Please report it.", err=True
    )
    return EXIT_BUG


def state_dir() -> Path:
    """This user's folder for vlrun's own state (crash logs): the platform's usual place."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "vlrun" / "Logs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Logs" / "vlrun"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vlrun"


def _versions() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    lines = [f"vlrun {__version__}", f"Python {platform.python_version()} ({sys.executable})"]
    for dist in ("azure-ai-voicelive", "aiohttp", "azure-core"):
        try:
            lines.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            lines.append(f"{dist} not installed")
    lines.append(f"platform {platform.platform()}")
    return lines


def write_crash_log(trace: str, argv: list[str] | None) -> Path:
    """Write the traceback where only this user can read it; returns the file's path.

    A new file each time (its name has the time and process id, created exclusively with mode
    0600 in a 0700 folder), headed by the versions a bug report needs, as pre-commit's log is.
    """
    args = sys.argv[1:] if argv is None else argv
    body = "\n".join(
        [
            "### version information",
            *_versions(),
            f"command: vlrun {' '.join(args)}",
            "",
            "### traceback",
            trace,
        ]
    )
    text = redact(body)
    name = f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        folder = state_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / name
        fd = os.open(path, flags, 0o600)
    except OSError:  # no usable home: a private file with an unpredictable name instead
        fd, raw = tempfile.mkstemp(prefix="vlrun-crash-", suffix=".log")
        path = Path(raw)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return path
