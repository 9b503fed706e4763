"""`vlrun run PROFILE` (talk to an agent), `vlrun devices` and `vlrun doctor`.

The click functions only parse options; :func:`execute_run` and friends do the work and return
the exit code, so tests can call them without a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from runner.commands.check import parse_pairs
from runner.errors import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    AudioUnavailable,
    ConfigError,
    UsageError,
    VlrunError,
)


@dataclass
class RunOptions:
    """Everything `vlrun run` was asked to do, after parsing."""

    profile: Path
    endpoint: str | None = None
    emulator: bool = False
    api_version: str | None = None
    vars: dict[str, str] = field(default_factory=dict)
    sets: tuple[str, ...] = ()
    text: bool = False
    input_wav: Path | None = None
    fast: bool = False
    chunk_ms: int | None = None  # None: runner.live.audio.CHUNK_MS
    output_wav: Path | None = None
    input_device: str | None = None
    output_device: str | None = None
    logs: Path | None = Path("logs")
    trace: Path | None = None
    tools: tuple[Path, ...] = ()
    verbosity: int = 1
    otel: bool = False


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
    default="logs",
    show_default=True,
    help="Folder for the conversation and technical logs ('-' for none).",
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
@click.option("-v", "--verbose", is_flag=True, help="Also show each server event type.")
@click.option("-q", "--quiet", is_flag=True, help="Show only the conversation.")
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
    logs: Path,
    trace: Path | None,
    tools: tuple[Path, ...],
    verbose: bool,
    quiet: bool,
    otel: bool,
) -> int:
    """Start a profile and talk to it."""
    if verbose and quiet:
        raise UsageError("--verbose and --quiet exclude each other")
    if fast and input_wav is None:
        raise UsageError("--fast only applies to --input FILE.wav")
    if text and input_wav is not None:
        raise UsageError("--text and --input exclude each other")
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
        logs=None if str(logs) == "-" else logs,
        trace=trace,
        tools=tuple(tools),
        verbosity=0 if quiet else 2 if verbose else 1,
        otel=otel,
    )
    return execute_run(options)


def execute_run(options: RunOptions) -> int:
    """Load, compile, connect and converse; returns the exit code."""
    from runner.config.compile import compile_session, greeting_event
    from runner.config.load import load_profile
    from runner.live.connect import load_dotenv_file, resolve_target

    load_dotenv_file()
    if not options.profile.is_file():
        raise ConfigError(
            f"{options.profile}: no such profile",
            hint="pass a YAML profile, e.g. profiles/casual-chat.yaml",
        )
    profile = load_profile(options.profile, vars=options.vars, sets=options.sets)
    target = resolve_target(
        profile,
        endpoint=options.endpoint,
        emulator=options.emulator,
        api_version=options.api_version,
    )
    registry = _registry(options, profile)
    payload = compile_session(
        profile,
        api_version=options.api_version or target.api_version,
        tool_schemas=registry.schemas() if registry is not None else None,
    )
    greeting = greeting_event(profile)
    if options.otel:
        _enable_otel()
    return asyncio.run(_converse(options, profile, target, registry, payload, greeting))


def _registry(options: RunOptions, profile: Any) -> Any:
    from runner.plugins import Registry

    dirs = list(options.tools) or [Path("tools")]
    registry = Registry.discover(dirs)
    return registry


async def _converse(
    options: RunOptions,
    profile: Any,
    target: Any,
    registry: Any,
    payload: dict[str, Any],
    greeting: dict[str, Any] | None,
) -> int:
    from runner.live.audio import release_pyaudio
    from runner.live.connect import endpoint_for, make_credential
    from runner.live.session import LiveSession, profile_settings
    from runner.live.transcript import Transcript

    transcript = Transcript(
        verbosity=options.verbosity,
        logs_dir=options.logs,
        trace_path=options.trace,
        name=str(getattr(profile, "name", "session")),
    )
    player = source = None
    credential = None
    try:
        for warning in getattr(profile, "warnings", ()):
            transcript.warning(warning.render())
        _warn_unbound_tools(profile, registry, transcript)
        session = payload.get("session", {})
        async with endpoint_for(target) as (endpoint, live_target):
            if live_target.embedded:
                transcript.banner(_banner(live_target))
            else:
                transcript.notice(f"connecting to {live_target.describe()}")
            source, player, mode = _open_audio(options, session, transcript)
            transcript.conv_note(
                f"profile {profile.name} ({profile.source}); {live_target.describe()}; "
                f"mode {mode}; voice {_voice(session)}"
            )
            credential = make_credential(live_target)
            live = LiveSession(
                target=live_target,
                endpoint=endpoint,
                credential=credential,
                session_update=payload,
                transcript=transcript,
                player=player,
                source=source,
                lines=True,
                greeting=greeting,
                registry=registry,
                **profile_settings(profile),
                api_version=options.api_version or live_target.api_version,
                end_when_input_ends=mode in ("wav", "text"),
                send_ms=_chunk_ms(options),
            )
            if mode == "text":
                transcript.notice("type a message and press Enter; 'q' + Enter ends")
            else:
                transcript.notice("listening; 'q' + Enter or Ctrl+C ends")
            code = await live.run()
            transcript.conv_note(f"session {live.session_id} ended")
            return code
    finally:
        if source is not None:
            source.close()
        if player is not None:
            player.close()
        if credential is not None and hasattr(credential, "close"):
            with contextlib.suppress(Exception):
                await credential.close()
        transcript.close()
        release_pyaudio()
        if options.output_wav is not None and player is not None and options.verbosity:
            print(f"-- assistant audio saved to {options.output_wav}", file=sys.stderr)


def _banner(target: Any) -> str:
    from runner.live.connect import EMULATOR_BANNER

    why = (
        ""
        if target.endpoint_source == "--emulator"
        else " (no endpoint configured: set AZURE_VOICELIVE_ENDPOINT to use Azure)"
    )
    return EMULATOR_BANNER + why


def _voice(session: dict[str, Any]) -> str:
    voice = session.get("voice")
    return str(voice.get("name") if isinstance(voice, dict) else voice or "default")


def _warn_unbound_tools(profile: Any, registry: Any, transcript: Any) -> None:
    if registry is None:
        return
    for binding in getattr(profile, "tools", ()):
        if binding.name not in registry:
            transcript.warning(
                f"tool {binding.name!r} has no plugin (looked in --tools / ./tools); "
                "calls to it will return an error to the model"
            )


def _formats(session: dict[str, Any]) -> tuple[Any, Any]:
    from runner.live.audio import AudioFormat

    out_format = str(session.get("output_audio_format") or "pcm16")
    if out_format.startswith("g711"):
        raise AudioUnavailable(
            f"output_audio_format {out_format} is not playable by vlrun",
            hint="use pcm16 (or pcm16_16000hz …) in the profile",
        )
    match = re.search(r"(\d+)hz$", out_format)
    out_rate = int(match.group(1)) if match else 24000
    in_rate = int(session.get("input_audio_sampling_rate") or 24000)
    return AudioFormat(in_rate), AudioFormat(out_rate)


def _chunk_ms(options: RunOptions) -> int:
    """The chunk the source hands over and the session appends: the same whole frames."""
    from runner.live.audio import CHUNK_MS, whole_frames_ms

    return whole_frames_ms(options.chunk_ms or CHUNK_MS)


def _open_audio(
    options: RunOptions, session: dict[str, Any], transcript: Any
) -> tuple[Any, Any, str]:
    """Pick the mode (mic / wav / text) and open its source and player."""
    from runner.live.audio import ClockPlayer, DevicePlayer, Microphone, WavRecorder, WavSource

    in_fmt, out_fmt = _formats(session)
    recorder = WavRecorder(options.output_wav, out_fmt) if options.output_wav else None
    source: Any
    if options.input_wav is not None:
        source = WavSource(
            options.input_wav, in_fmt, fast=options.fast, chunk_ms=_chunk_ms(options)
        )
        return source, ClockPlayer(out_fmt, recorder=recorder, realtime=not options.fast), "wav"
    if options.text:
        return None, ClockPlayer(out_fmt, recorder=recorder, realtime=False), "text"
    try:
        source = Microphone(in_fmt, options.input_device, chunk_ms=_chunk_ms(options))
    except AudioUnavailable as exc:
        if options.input_device:
            raise
        transcript.notice(f"{exc.message}; using text mode instead (--text)")
        return None, ClockPlayer(out_fmt, recorder=recorder, realtime=False), "text"
    try:
        player: Any = DevicePlayer(out_fmt, options.output_device, recorder=recorder)
    except AudioUnavailable as exc:
        if options.output_device:
            source.close()
            raise
        transcript.notice(f"{exc.message}; replies are shown as text only")
        player = ClockPlayer(out_fmt, recorder=recorder, realtime=True)
    return source, player, "mic"


def _enable_otel() -> None:
    """Turn on the SDK's OpenTelemetry spans: OTLP when configured, else the console."""
    try:
        from azure.ai.voicelive.telemetry import VoiceLiveInstrumentor
        from azure.core.settings import settings
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:
        raise ConfigError(
            f"--otel needs OpenTelemetry ({exc.name} is missing)", hint="pip install 'vlrun[otel]'"
        ) from None
    exporter: Any
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is missing",
                hint="pip install 'vlrun[otel]'",
            ) from None
        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter(out=sys.stderr)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    settings.tracing_implementation = "opentelemetry"
    VoiceLiveInstrumentor().instrument(enable_content_recording=False)


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
def doctor(profile: Path | None, endpoint: str | None, no_connect: bool) -> int:
    """Check the sound stack, endpoint, credentials and a profile; one line per finding."""
    return execute_doctor(profile, endpoint=endpoint, connect=not no_connect)


def execute_doctor(
    profile_path: Path | None, *, endpoint: str | None = None, connect: bool = True
) -> int:
    from runner.live.connect import load_dotenv_file

    findings: list[tuple[str, str]] = []  # (status, text): ok | warn | fix

    def add(status: str, text: str) -> None:
        findings.append((status, text))
        click.echo(f"{status:<4} {text}")

    try:
        dotenv = load_dotenv_file()
        add(
            "ok",
            f".env loaded from {dotenv}" if dotenv else "no .env file (environment variables only)",
        )
    except VlrunError as exc:
        add("fix", exc.message + (f" -- {exc.hint}" if exc.hint else ""))
    _doctor_audio(add)
    profile = None
    if profile_path is not None:
        profile = _doctor_profile(profile_path, add)
    _doctor_endpoint(profile, endpoint, connect, add)
    fixes = sum(1 for s, _ in findings if s == "fix")
    click.echo(f"{'all good' if not fixes else f'{fixes} thing(s) to fix'}")
    return EXIT_OK if not fixes else EXIT_INVALID


def _doctor_audio(add: Any) -> None:
    from runner.live.audio import find_device, import_pyaudio, release_pyaudio, supported_rates

    try:
        pyaudio = import_pyaudio()
        add(
            "ok",
            f"PyAudio {getattr(pyaudio, '__version__', '?')} "
            f"with {pyaudio.get_portaudio_version_text()}",
        )
    except AudioUnavailable as exc:
        add("warn", f"{exc.message} -- {exc.hint} (text and WAV modes still work)")
        return
    try:
        for kind in ("input", "output"):
            try:
                dev = find_device(None, kind)
            except AudioUnavailable as exc:
                add("warn", f"{exc.message} -- {exc.hint}")
                continue
            rates = supported_rates(dev, kind)
            note = "" if 24000 in rates else " (24 kHz not native: vlrun resamples)"
            add(
                "ok" if rates else "fix",
                f"{kind} device {dev.index} '{dev.name}': "
                f"mono PCM16 at {rates or 'no tested rate'}{note}",
            )
    finally:
        release_pyaudio()


def _doctor_profile(path: Path, add: Any) -> Any:
    from runner.config.compile import compile_session
    from runner.config.load import load_profile

    try:
        profile = load_profile(path)
        compile_session(profile)
    except VlrunError as exc:
        for line in exc.render().splitlines():
            add("fix", line)
        return None
    add("ok", f"profile {path} loads and compiles")
    return profile


def _doctor_endpoint(profile: Any, endpoint: str | None, connect: bool, add: Any) -> None:
    from runner.live.connect import resolve_target

    try:
        target = resolve_target(profile, endpoint=endpoint)
    except VlrunError as exc:
        add("fix", exc.message + (f" -- {exc.hint}" if exc.hint else ""))
        return
    if target.embedded:
        add(
            "ok",
            "no endpoint configured: `vlrun run` uses the local emulator "
            "(set AZURE_VOICELIVE_ENDPOINT and AZURE_VOICELIVE_API_KEY for Azure)",
        )
        return
    add("ok", f"endpoint {target.endpoint} (from {target.endpoint_source})")
    if target.api_key:
        add("ok", f"API key set in {target.key_source} ({len(target.api_key)} characters)")
    else:
        add("ok", "no API key: Microsoft Entra ID sign-in (DefaultAzureCredential) will be used")
    if connect:
        try:
            session_id = asyncio.run(_probe(target))
            add("ok", f"connected and got a session ({session_id})")
        except VlrunError as exc:
            add("fix", exc.message + (f" -- {exc.hint}" if exc.hint else ""))


async def _probe(target: Any) -> str:
    from runner.live.connect import make_credential, open_connection

    credential = make_credential(target)
    try:
        async with open_connection(target, target.endpoint, credential) as conn:
            event = await asyncio.wait_for(conn.recv(), timeout=15)
            return str(
                getattr(getattr(event, "session", None), "id", "") or getattr(event, "type", "?")
            )
    except asyncio.TimeoutError:
        from runner.errors import ConnectError

        raise ConnectError(
            f"{target.endpoint} accepted the connection but sent nothing for 15 s"
        ) from None
    finally:
        if hasattr(credential, "close"):
            with contextlib.suppress(Exception):
                await credential.close()
