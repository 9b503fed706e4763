"""`vlrun serve [PROFILE|DIR ...]`: the browser console, one conversation per page."""

from __future__ import annotations

from pathlib import Path

import click

from runner.commands._options import parse_pairs


@click.command("serve")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--host",
    "bind",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback requires an access token; without "
    "one, only loopback Host names (127.0.0.1, localhost, [::1]) are served.",
)
@click.option(
    "--port", default=8080, type=click.IntRange(0, 65535), show_default=True, help="0: any."
)
@click.option("--token", default=None, help="Access token (default off loopback: generated).")
@click.option("--endpoint", default=None, help="Voice Live endpoint (default: as `vlrun run`).")
@click.option("--emulator", is_flag=True, help="Use the embedded emulator even if configured.")
@click.option("--api-version", default=None, help="Voice Live api-version.")
@click.option(
    "--emulator-speed",
    type=click.FloatRange(0, 100),
    default=None,
    metavar="X",
    help="How many times faster than real time the embedded emulator sends a reply "
    "(default: the service's pace, 4; 1: real time; 0: at once). Pages and phone lines "
    "play it at real time all the same.",
)
@click.option("--var", "vars_", multiple=True, metavar="NAME=VALUE", help="Template variable.")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help="Override a setting.")
@click.option(
    "--tools", multiple=True, type=click.Path(path_type=Path), help="Extra tool plugin folder."
)
@click.option(
    "--mock-tools",
    type=click.Path(exists=True, path_type=Path),
    help="Answer tool calls from this `mocks:` file instead of running the plugins; a "
    "folder: each profile from its PROFILE.mocks.yaml there. Offline (the embedded "
    "emulator) a profile's own PROFILE.mocks.yaml, beside it or in its tools folder, "
    "answers without this.",
)
@click.option(
    "--no-mocks",
    is_flag=True,
    help="Offline, run the tool plugins even for a profile with its own PROFILE.mocks.yaml.",
)
@click.option(
    "--logs",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep each conversation's logs and trace here (default: a temporary folder).",
)
@click.option("--max-conversations", default=16, type=click.IntRange(1, 10000), show_default=True)
@click.option(
    "--drain-timeout",
    "drain_timeout_s",
    default=20.0,
    type=click.FloatRange(0, 3600),
    show_default=True,
    help="On SIGTERM: seconds running conversations get to finish before they are ended.",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    help="Another page origin allowed on the WebSocket (the page's own always is; a socket "
    "without an Origin is refused).",
)
@click.option(
    "--serve-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Answer phone calls (Twilio, ACS) as this serve.yaml routes them.",
)
def serve(
    paths: tuple[Path, ...],
    bind: str,
    port: int,
    token: str | None,
    endpoint: str | None,
    emulator: bool,
    api_version: str | None,
    emulator_speed: float | None,
    vars_: tuple[str, ...],
    sets: tuple[str, ...],
    tools: tuple[Path, ...],
    mock_tools: Path | None,
    no_mocks: bool,
    logs: Path | None,
    max_conversations: int,
    drain_timeout_s: float,
    origins: tuple[str, ...],
    serve_file: Path | None,
) -> int:
    """Serve a browser console for profiles (files or folders; default profiles/)."""
    from runner.live.connect import SERVICE_PACE
    from runner.serve.app import ServeOptions, execute_serve
    from runner.serve.host import HostOptions

    host_options = HostOptions(
        paths=list(paths),
        endpoint=endpoint,
        emulator=emulator,
        api_version=api_version,
        vars=parse_pairs(vars_, "--var"),
        sets=sets,
        tools=tools,
        mock_tools=mock_tools,
        offline_mocks=not no_mocks,
        logs=logs,
        max_conversations=max_conversations,
        # Voice Live streams a reply ahead of playback; the edges play it at real time.
        emulator_options={"speed": SERVICE_PACE if emulator_speed is None else emulator_speed},
    )
    options = ServeOptions(
        host=bind, port=port, token=token, origins=origins, drain_timeout_s=drain_timeout_s
    )
    installers = []
    if serve_file is not None:
        from runner.serve.telephony_routes import installer_for

        installers.append(installer_for(serve_file, options))
        if not paths:  # the routes' profiles are the console's too
            from runner.config.serve_file import load_serve_file

            routed = load_serve_file(serve_file).routes
            host_options.paths = list(dict.fromkeys(route.profile for route in routed))
    return execute_serve(host_options, options, installers)
