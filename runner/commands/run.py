"""`vlrun run PROFILE` (talk to an agent), `vlrun devices` and `vlrun doctor`: options only.

The work is in the live wing: :func:`runner.live.console.execute_run` and
:func:`runner.live.doctor.execute_doctor` return the exit code.
"""

from __future__ import annotations

from pathlib import Path

import click

from runner.commands._options import parse_pairs
from runner.errors import EXIT_OK, EXIT_UNAVAILABLE, UsageError

_connect_timeout = click.option(
    "--connect-timeout",
    "connect_timeout_s",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds to wait for the endpoint's handshake (default 15).",
)

# ------------------------------------------------------------------------------------ run


@click.command("run")
@click.argument("profile", type=click.Path(path_type=Path))
@click.option(
    "--endpoint", help="Voice Live endpoint URL (overrides the profile and the environment)."
)
@click.option(
    "--emulator", is_flag=True, help="Use the local emulator even if an endpoint is configured."
)
@click.option(
    "--api-version", help="api-version query parameter (default: the profile's, else the SDK's)."
)
@click.option("--var", "vars_", multiple=True, metavar="NAME=VALUE", help="Set a profile variable.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATH=VALUE",
    help="Override a profile setting, e.g. voice.name=en-US-AvaNeural.",
)
@click.option(
    "--text", is_flag=True, help="Type your turns; replies are printed (audio saved with --output)."
)
@click.option(
    "--input",
    "input_wav",
    type=click.Path(path_type=Path),
    help="Stream a WAV file as the microphone, end after the reply.",
)
@click.option("--fast", is_flag=True, help="With --input: stream the file as fast as possible.")
@click.option(
    "--chunk-ms",
    type=click.IntRange(20, 1000),
    help="Microphone audio per append, in whole 20 ms frames (default 100): "
    "less reaches the service sooner and costs more CPU.",
)
@click.option(
    "--output",
    "output_wav",
    type=click.Path(path_type=Path),
    help="Record the assistant's audio to a WAV file.",
)
@click.option(
    "--input-device", help="Microphone: index or (part of) the name from `vlrun devices`."
)
@click.option("--output-device", help="Speaker: index or (part of) the name from `vlrun devices`.")
@click.option(
    "--logs",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the conversation and technical logs ('-' for none; default: the per-user "
    "state folder, $XDG_STATE_HOME/vlrun/logs).",
)
@click.option(
    "--trace",
    "--record",
    "trace",
    type=click.Path(path_type=Path),
    help="Write every event to a JSONL file (secrets stripped); replay with `vlrun test --replay`.",
)
@click.option(
    "--tools",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Folder of tool plugins (default: ./tools).",
)
@_connect_timeout
@click.option(
    "--emulator-speed",
    type=click.FloatRange(min=0),
    default=None,
    metavar="X",
    help="The embedded emulator's pace: X times real time, 0 as fast as it can (default: "
    "the service's pace, 4, in text mode; real time with audio).",
)
@click.option(
    "--mock-tools",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Answer tool calls from this file (a scenario-style `mocks:` mapping) instead of "
    "running the plugins: demos and offline runs.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also show, per turn, how many events of each type came; word timestamps; rate "
    "limits (every event: --trace).",
)
@click.option("-q", "--quiet", is_flag=True, help="Show only the conversation.")
@click.option(
    "--talk-key",
    default="enter",
    show_default=True,
    metavar="KEY",
    help="Push-to-talk (turn_detection: manual): the key that starts and ends a turn, as "
    "prompt_toolkit names it (enter, c-t, f2, ...). Without a terminal: an empty line.",
)
@click.option(
    "--plain",
    is_flag=True,
    default=None,
    help="Plain lines even on a terminal (no input line or status line).",
)
@click.option(
    "--otel",
    is_flag=True,
    help="Trace the SDK with OpenTelemetry (console; OTLP if OTEL_EXPORTER_OTLP_ENDPOINT is set).",
)
def run(
    profile: Path,
    endpoint: str | None,
    emulator: bool,
    api_version: str | None,
    vars_: tuple[str, ...],
    sets: tuple[str, ...],
    text: bool,
    input_wav: Path | None,
    fast: bool,
    chunk_ms: int | None,
    output_wav: Path | None,
    input_device: str | None,
    output_device: str | None,
    logs: Path | None,
    trace: Path | None,
    tools: tuple[Path, ...],
    mock_tools: Path | None,
    connect_timeout_s: float | None,
    emulator_speed: float | None,
    verbose: bool,
    quiet: bool,
    talk_key: str,
    plain: bool | None,
    otel: bool,
) -> int:
    """Start a profile and talk to it."""
    from runner.live.transcript import process_log_levels

    process_log_levels()  # the technical log keeps the session's DEBUG lines (this program's)
    if verbose and quiet:
        raise UsageError("--verbose and --quiet exclude each other")
    if fast and input_wav is None:
        raise UsageError("--fast only applies to --input FILE.wav")
    if text and input_wav is not None:
        raise UsageError("--text and --input exclude each other")
    from runner.live.console import RunOptions, default_logs_dir, execute_run

    options = RunOptions(
        profile=profile,
        endpoint=endpoint,
        emulator=emulator,
        api_version=api_version,
        vars=parse_pairs(vars_, "--var"),
        sets=tuple(sets),
        text=text,
        input_wav=input_wav,
        fast=fast,
        chunk_ms=chunk_ms,
        output_wav=output_wav,
        input_device=input_device,
        output_device=output_device,
        logs=default_logs_dir() if logs is None else None if str(logs) == "-" else logs,
        trace=trace,
        tools=tuple(tools),
        mock_tools=mock_tools,
        connect_timeout_s=connect_timeout_s,
        emulator_speed=emulator_speed,
        verbosity=0 if quiet else 2 if verbose else 1,
        otel=otel,
        talk_key=talk_key.lower(),
        plain=True if plain else None,
    )
    return execute_run(options)


# ------------------------------------------------------------------------------------ devices


@click.command("devices")
def devices() -> int:
    """List audio input and output devices."""
    from runner.live.audio import list_devices, release_pyaudio

    try:
        found = list_devices()
    finally:
        release_pyaudio()
    if not found:
        click.echo("no audio devices found (PortAudio sees none)", err=True)
        click.echo(
            "    hint: on a headless machine, scripts/pulse-env.sh start "
            "creates a virtual mic and speaker",
            err=True,
        )
        return EXIT_UNAVAILABLE
    click.echo(f"{'index':>5}  {'in':>2} {'out':>3}  {'rate':>6}  {'host API':<10} name")
    for d in found:
        click.echo(
            f"{d.index:>5}  {d.max_input_channels:>2} {d.max_output_channels:>3}  "
            f"{d.default_rate:>6}  {d.host_api:<10} {d.name}"
        )
    return EXIT_OK


# ------------------------------------------------------------------------------------ doctor


@click.command("doctor")
@click.argument("profile", required=False, type=click.Path(path_type=Path))
@click.option("--endpoint", help="Check this endpoint instead of the configured one.")
@click.option("--no-connect", is_flag=True, help="Do not open a connection to the endpoint.")
@_connect_timeout
def doctor(
    profile: Path | None, endpoint: str | None, no_connect: bool, connect_timeout_s: float | None
) -> int:
    """Check the sound stack, endpoint, credentials and a profile; one line per finding."""
    from runner.live.doctor import execute_doctor

    return execute_doctor(
        profile, endpoint=endpoint, connect=not no_connect, connect_timeout_s=connect_timeout_s
    )
