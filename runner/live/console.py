"""`vlrun PROFILE`: one conversation at the console (microphone, WAV or typed turns).

:func:`execute_run` loads and compiles the profile, finds its tools, opens the audio edges
and runs a :class:`~runner.live.session.LiveSession`; it returns the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import AudioUnavailable, ConfigError, OutputError, UsageError


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
    logs: Path | None = None  # None: no logs; the command passes default_logs_dir()
    trace: Path | None = None
    tools: tuple[Path, ...] = ()
    mock_tools: Path | None = None  # a `mocks:` file: these tools answer from it
    connect_timeout_s: float | None = None  # None: DEFAULT_CONNECT_TIMEOUT_S
    emulator_speed: float | None = None  # None: SERVICE_PACE in text mode, real time with audio
    verbosity: int = 1
    otel: bool = False
    talk_key: str = "enter"  # push-to-talk (turn_detection: manual): the key that toggles talking
    plain: bool | None = None  # None: the drawn console when stdin and stdout are a terminal


def default_logs_dir() -> Path:
    """Logs go to the per-user state folder, never into whatever folder the user is in."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vlrun" / "logs"


def execute_run(options: RunOptions) -> int:
    """Load, compile, connect and converse; returns the exit code."""
    from runner import flows
    from runner.config.compile import compile_session, greeting_event
    from runner.config.load import load_profile
    from runner.live.connect import load_dotenv_file, resolve_target

    load_dotenv_file()
    _check_talk_key(options)
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
    if options.connect_timeout_s is not None:
        target = dataclasses.replace(target, connect_timeout_s=options.connect_timeout_s)
    registry = _registry(options, profile)
    payload = compile_session(
        profile,
        api_version=options.api_version or target.api_version,
        tool_schemas=registry.schemas() if registry is not None else None,
    )
    payload, greeting, walk = flows.opening(
        profile,
        payload,
        greeting_event(profile),
        registry.schemas() if registry is not None else None,
    )
    if options.otel:
        _enable_otel()
    return asyncio.run(_converse(options, profile, target, registry, payload, greeting, walk))


def _check_talk_key(options: RunOptions) -> None:
    if options.talk_key == "enter":
        return
    from runner.live.screen import check_key

    problem = check_key(options.talk_key)
    if problem is not None:
        raise UsageError(
            f"--talk-key {options.talk_key}: {problem}",
            hint="use a prompt_toolkit key name, e.g. enter, c-t, f2, c-space",
        )


def _registry(options: RunOptions, profile: Any) -> Any:
    # Tools come from the profile's location (and --tools), never the working directory.
    from runner.plugins import MockRegistry, Registry, tool_dirs

    registry = Registry.discover(list(tool_dirs(profile.source, options.tools)))
    if options.mock_tools is None:
        return registry
    from runner.config.mocks import load_mocks

    mocked = MockRegistry(registry)
    mocked.mocks = dict(load_mocks(options.mock_tools))
    return mocked


def _tools_note(profile: Any, options: RunOptions) -> str | None:
    """The banner line that names where this profile's tools come from."""
    from runner.plugins import tool_dirs

    if not getattr(profile, "tools", ()):
        return None
    dirs = tool_dirs(profile.source, options.tools)
    note = "tools from " + (", ".join(str(d) for d in dirs) if dirs else "installed plugins only")
    if options.mock_tools is not None:
        note += f"; mocked from {options.mock_tools}"
    return note


async def _converse(
    options: RunOptions,
    profile: Any,
    target: Any,
    registry: Any,
    payload: dict[str, Any],
    greeting: dict[str, Any] | None,
    walk: Any = None,
) -> int:
    from runner.live.audio import release_pyaudio
    from runner.live.connect import endpoint_for, make_credential
    from runner.live.gpt_live import audio_fields, is_gpt_live_start
    from runner.live.session import LiveSession, SessionSettings, profile_settings
    from runner.live.transcript import Transcript

    try:
        transcript = Transcript(
            verbosity=options.verbosity,
            logs_dir=options.logs,
            trace_path=options.trace,
            name=str(getattr(profile, "name", "session")),
        )
    except OSError as exc:
        raise _output_error(exc, options) from None
    player = source = None
    credential = None
    try:
        for warning in getattr(profile, "warnings", ()):
            transcript.warning(warning.render())
        _warn_unbound_tools(profile, registry, transcript)
        if (note := _tools_note(profile, options)) is not None:
            transcript.notice(note)
        session = payload.get("session", {})
        gpt_live = is_gpt_live_start(payload)
        if gpt_live:  # one format both ways, under audio.format (docs/gpt-live.md)
            session = audio_fields(session)
        if target.embedded:  # said first: the user learns at once that this is not Azure
            transcript.banner(_banner(target))
        # The edges before the emulator: with no microphone the console falls back to text,
        # and a text console wants the emulator at the service's pace, not at real time.
        source, player, mode = _open_audio(options, session, transcript)
        speed = emulator_speed(options, text=mode == "text")
        async with endpoint_for(target, speed=speed) as (endpoint, live_target):
            if live_target.embedded:
                if not gpt_live:  # GPT-Live's desk speaks at real time
                    transcript.notice(_pace_note(speed, options))
            else:
                transcript.notice(f"connecting to {live_target.describe()}")
                if options.emulator_speed is not None:
                    transcript.warning(
                        "--emulator-speed sets the pace of the embedded emulator only; "
                        f"{live_target.endpoint} sends at its own pace"
                    )
                if (warning := _plain_http_warning(live_target)) is not None:
                    transcript.warning(warning)
            transcript.conv_note(
                f"profile {profile.name} ({profile.source}); {live_target.describe()}; "
                f"mode {mode}; voice {_voice(session)}"
            )
            credential = make_credential(live_target)
            drawn = _drawn_console(options)
            if gpt_live:
                return await _converse_gpt_live(
                    options,
                    profile,
                    payload,
                    greeting,
                    live_target,
                    endpoint,
                    credential,
                    transcript,
                    player,
                    source,
                    registry,
                    mode,
                    drawn,
                )
            settings = SessionSettings(
                endpoint=endpoint,
                session_update=payload,
                lines=not drawn,  # the drawn console reads the lines itself
                interactive=True if drawn else None,
                typed_barge_in=drawn or _stdin_is_terminal(),
                greeting=greeting,
                **profile_settings(profile),
                api_version=options.api_version or live_target.api_version,
                end_when_input_ends=mode in ("wav", "text"),
                send_ms=_chunk_ms(options),
            )
            live = LiveSession(
                settings,
                target=live_target,
                credential=credential,
                transcript=transcript,
                player=player,
                source=source,
                registry=registry,
                flow=walk,
            )
            if not drawn:
                live.talk_key = "enter"  # a line reader sees lines, not keys: a blank line
            transcript.notice(_start_notice(mode, live, drawn, options.talk_key))
            if drawn:
                from runner.live.screen import TerminalConsole

                code = await TerminalConsole(live, mode=mode, talk_key=options.talk_key).run()
            else:
                code = await live.run()
            transcript.conv_note(f"session {live.session_id} ended")
            if walk is not None:
                transcript.notice(f"flow path: {walk.describe()}")
            if options.verbosity:
                print(summary_line(transcript, live.metrics), file=sys.stderr)
            return code
    finally:
        if source is not None:
            source.close()
        if player is not None:
            player.close()
        if credential is not None and hasattr(credential, "close"):
            with contextlib.suppress(Exception):
                await credential.close()
        unwritten: OutputError | None = None
        try:
            transcript.close()
        except OSError as exc:  # e.g. a full disk: the last trace lines could not be flushed
            unwritten = _output_error(exc, options)
        if unwritten is None and transcript.first_failure is not None:
            unwritten = _output_error(transcript.first_failure, options)  # said mid-run already
        release_pyaudio()
        if transcript.conversation_path is not None and options.verbosity:
            print(
                f"-- logs: {transcript.conversation_path} and {transcript.technical_path}",
                file=sys.stderr,
            )
        if options.output_wav is not None and player is not None and options.verbosity:
            print(f"-- assistant audio saved to {options.output_wav}", file=sys.stderr)
        if unwritten is not None:
            raise unwritten


async def _converse_gpt_live(
    options: RunOptions,
    profile: Any,
    payload: dict[str, Any],
    greeting: dict[str, Any] | None,
    target: Any,
    endpoint: str,
    credential: Any,
    transcript: Any,
    player: Any,
    source: Any,
    registry: Any,
    mode: str,
    drawn: bool,
) -> int:
    """A GPT-Live profile: its own session (runner/live/gpt_live.py), the same console."""
    from runner.live.gpt_live import GptLiveSession
    from runner.live.session import profile_settings

    settings = profile_settings(profile)
    live = GptLiveSession(
        payload,
        client_backend=_agent_backend(profile, endpoint, credential),
        target=target,
        endpoint=endpoint,
        credential=credential,
        transcript=transcript,
        player=player,
        source=source,
        registry=registry,
        greeting=greeting,
        lines=not drawn,
        end_when_input_ends=mode in ("wav", "text"),
        tool_timeouts=settings["tool_timeouts"],
        profile_name=settings["profile_name"],
        profile_vars=settings["profile_vars"],
    )
    if mode == "text" and live.delegation_type != "responses":
        transcript.warning(
            "this GPT-Live profile delegates to the client: typed turns have no event, speak "
            "instead (a delegation deployment takes typed turns)"
        )
    transcript.notice(
        "GPT-Live: full duplex; it backchannels while you speak and decides when to answer; "
        "'q' + Enter ends"
    )
    if drawn:
        from runner.live.screen import TerminalConsole

        code = await TerminalConsole(live, mode=mode, talk_key=options.talk_key).run()
    else:
        code = await live.run()
    transcript.conv_note(f"session {live.session_id} ended")
    if options.verbosity:
        print(
            summary_line(transcript, live.metrics)
            + f"; {live.duplex.backchannels} backchannel(s), {live.duplex.yields} yield(s)",
            file=sys.stderr,
        )
    return int(code)


def _agent_backend(profile: Any, endpoint: str, credential: Any) -> Any:
    """The Foundry agent a GPT-Live profile delegates to (gpt_live.delegation.agent), if any."""
    from runner.config.gpt_live import delegation_agent
    from runner.live.agent_backend import FoundryAgentBackend

    agent = delegation_agent(getattr(profile, "settings", None) or {})
    if agent is None:
        return None
    return FoundryAgentBackend(endpoint, agent[0], agent[1], credential)


def emulator_speed(options: RunOptions, *, text: bool | None = None) -> float:
    """The embedded emulator's pace: ``--emulator-speed``, else the service's in text mode
    (no speaker to wait for) and real time with audio (what is played is heard as it comes).
    ``text``: the mode the console settled on (it falls back to text without a microphone)."""
    from runner.live.connect import SERVICE_PACE

    if options.emulator_speed is not None:
        return options.emulator_speed
    in_text = options.text if text is None else text
    return SERVICE_PACE if in_text and options.input_wav is None else 1.0


def _pace_note(speed: float, options: RunOptions) -> str:
    pace = (
        "as fast as it can"
        if speed == 0
        else "in real time"
        if speed == 1
        else f"at {speed:g}x real time"
    )
    why = (
        "--emulator-speed"
        if options.emulator_speed is not None
        else "the default; --emulator-speed X"
    )
    return f"the emulator sends replies {pace} ({why})"


def _stdin_is_terminal() -> bool:
    """A person types the lines (a pipe or a file is a script: its turns queue)."""
    try:
        return bool(sys.stdin is not None and sys.stdin.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _drawn_console(options: RunOptions) -> bool:
    """The drawn console (input line, status line) on a terminal; plain lines otherwise."""
    if options.plain is not None:
        return not options.plain
    from runner.live.screen import terminal_console

    return terminal_console()


def _start_notice(mode: str, live: Any, drawn: bool, talk_key: str) -> str:
    if mode == "text":
        return "type a message and press Enter; 'q' + Enter ends"
    if live.push_to_talk:
        from runner.live.inputs import key_label

        key = key_label(talk_key) if drawn else "Enter on an empty line"
        return f"push-to-talk: press {key} to talk, {key} again to send; 'q' + Enter ends"
    return "listening; 'q' + Enter or Ctrl+C ends"


def summary_line(transcript: Any, metrics: Any) -> str:
    """The end-of-session line: turns, latency, tool calls and failures, reconnects."""
    import statistics

    turns = [t for t in transcript.turns if t.role in ("user", "assistant")]
    users = sum(1 for t in turns if t.role == "user")
    calls = sum(1 for t in transcript.turns if t.role == "tool")
    parts = [f"{users} user turn(s), {len(turns) - users} repl(ies)"]
    if metrics.turn_latency:
        ms = [x * 1000 for x in metrics.turn_latency]
        parts.append(f"latency median {statistics.median(ms):.0f} ms, worst {max(ms):.0f} ms")
    parts.append(f"{calls} tool call(s), {transcript.tool_failures} failed")
    parts.append(f"{metrics.reconnects} reconnect(s)")
    return "-- session: " + "; ".join(parts)


def _output_error(exc: OSError, options: RunOptions) -> OutputError:
    """One line for a log or trace that cannot be written, and the option that moves it."""
    where = Path(exc.filename) if exc.filename else options.trace or options.logs
    trace = options.trace
    option = "--trace" if trace and where in (trace, trace.parent, *trace.parents) else "--logs"
    if options.logs and where in (options.logs, *options.logs.parents) and option == "--trace":
        option = "--logs or --trace"
    return OutputError(
        f"cannot write {where}: {exc.strerror or exc}",
        hint=f"choose another {option} (`--logs -` writes no logs)",
    )


def _plain_http_warning(target: Any) -> str | None:
    """A key about to cross the network unencrypted deserves a word before it does."""
    from urllib.parse import urlsplit

    parts = urlsplit(target.endpoint or "")
    host = parts.hostname or ""
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if not target.api_key or parts.scheme not in ("http", "ws") or loopback:
        return None
    return (
        f"the API key goes to {host} over plain {parts.scheme}, unencrypted; "
        "use an https:// endpoint"
    )


def _banner(target: Any) -> str:
    from runner.live.connect import EMULATOR_BANNER

    why = (
        ""
        if target.endpoint_source == "--emulator"
        else " (no endpoint configured: set AZURE_VOICELIVE_ENDPOINT to use Azure)"
    )
    return EMULATOR_BANNER + why


def _voice(session: dict[str, Any]) -> str:
    from runner.config.service import dated_audio

    voice = dated_audio(session).get("voice")
    return str(voice.get("name") if isinstance(voice, dict) else voice or "default")


def _warn_unbound_tools(profile: Any, registry: Any, transcript: Any) -> None:
    if registry is None:
        return
    for binding in getattr(profile, "tools", ()):
        if binding.name not in registry:
            transcript.warning(
                f"tool {binding.name!r} has no plugin (looked in tools/ beside the profile "
                "and in --tools); calls to it will return an error to the model"
            )


def _chunk_ms(options: RunOptions) -> int:
    """The chunk the source hands over and the session appends: the same whole frames."""
    from runner.live.audio import CHUNK_MS, whole_frames_ms

    return whole_frames_ms(options.chunk_ms or CHUNK_MS)


def _open_audio(
    options: RunOptions, session: dict[str, Any], transcript: Any
) -> tuple[Any, Any, str]:
    """Pick the mode (mic / wav / text) and open its source and player, G.711 on the wire."""
    from runner.live.audio import G711Player, G711Source, wire_formats
    from runner.live.echo_reference import (
        ReferencePlayer,
        ReferenceTap,
        StereoReferenceSource,
        wants_client_reference,
    )

    source, player, mode = _open_pcm_edges(options, session, transcript)
    in_fmt, out_fmt, in_law, out_law = wire_formats(session)
    if wants_client_reference(session) and source is not None:
        # pcm16 only (the service says so), so this never meets the G.711 wrappers below
        tap = ReferenceTap(out_fmt.rate, in_fmt.rate)
        source, player = StereoReferenceSource(source, tap), ReferencePlayer(player, tap)
    if in_law and source is not None:
        source = G711Source(source, in_law)
    if out_law:
        player = G711Player(player, out_law)
    return source, player, mode


def _open_pcm_edges(
    options: RunOptions, session: dict[str, Any], transcript: Any
) -> tuple[Any, Any, str]:
    from runner.live.audio import (
        ClockPlayer,
        DevicePlayer,
        Microphone,
        WavRecorder,
        WavSource,
        wire_formats,
    )

    in_fmt, out_fmt, _, _ = wire_formats(session)
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
