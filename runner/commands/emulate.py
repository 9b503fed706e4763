"""`vlrun emulate`: run the local Voice Live emulator until interrupted.

The endpoint URL goes to stdout on its own line (scripts read it); the banner goes to stderr.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from pathlib import Path

import click

from runner import speedups
from runner.errors import ConfigError, UsageError
from runner.redact import register_secret


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def paste_lines(endpoint: str, api_key: str | None) -> list[str]:
    """What to paste into another shell to talk to this emulator (the key stays masked)."""
    key = "<the --api-key value>" if api_key else "any"
    return [
        "Talk to it from another shell:",
        f"  export AZURE_VOICELIVE_ENDPOINT={endpoint} AZURE_VOICELIVE_API_KEY={key}",
        "  vlrun profiles/casual-chat.yaml",
        f"or: vlrun profiles/casual-chat.yaml --endpoint {endpoint}"
        + ("" if api_key else "   (no key needed)"),
    ]


@click.command("emulate")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Loopback unless you ask for another.",
)
@click.option(
    "--port",
    default=0,
    type=click.IntRange(0, 65535),
    show_default=True,
    help="TCP port; 0 picks a free one.",
)
@click.option(
    "--scenario",
    "scenario",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Model script (YAML) that decides replies turn by turn; see docs/emulator.md.",
)
@click.option(
    "--speed",
    default=1.0,
    type=click.FloatRange(min=0),
    show_default=True,
    help="Pace reply audio at this multiple of real time; 0 = as fast as possible.",
)
@click.option(
    "--api-key",
    envvar="VLRUN_EMULATOR_API_KEY",
    default=None,
    help="Require this key (api-key header or Bearer); otherwise any key is accepted.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME=VALUE",
    help="Inject a fault, e.g. drop_after_events=20, close_code=1011, delay_ms=200, "
    "refuse_auth=true. Repeatable.",
)
@click.option(
    "--session-limit",
    "session_limit_s",
    default=3600.0,
    type=click.FloatRange(min=1),
    show_default=True,
    help="Seconds before a session expires (the service allows 60 min).",
)
@click.option(
    "--no-espeak", is_flag=True, help="Use the synthetic voice even if espeak-ng is installed."
)
@click.option(
    "--mcp-latency-ms",
    "mcp_latency_ms",
    default=None,
    type=click.FloatRange(min=0, max=60000),
    help="How long one MCP network step takes at speed 1 (default 40, or the script's).",
)
@click.option(
    "--load",
    is_flag=True,
    help="Benchmark load mode: keeps no event history, reuses replies' encoded audio.",
)
def emulate(
    host: str,
    port: int,
    scenario: Path | None,
    speed: float,
    api_key: str | None,
    faults: tuple[str, ...],
    session_limit_s: float,
    no_espeak: bool,
    mcp_latency_ms: float | None,
    load: bool,
) -> int:
    """Run a local Voice Live emulator (not Azure) for offline runs and tests."""
    from runner.emulator import Emulator, Faults, fidelity
    from runner.emulator.server import uptime_banner

    register_secret(api_key)
    try:
        fault_set = Faults.parse(list(faults)) if faults else None
    except ValueError as exc:
        raise UsageError(f"--fault: {exc}") from None
    emu = Emulator(
        scenario=scenario,
        speed=speed,
        api_key=api_key,
        faults=fault_set,
        session_limit_s=session_limit_s,
        use_espeak=not no_espeak,
        record_audio=False,
        mcp_latency_ms=mcp_latency_ms,
        load=load,
    )
    if not _is_loopback(host):
        click.echo(f"warning: listening on {host}, reachable from other machines", err=True)

    async def serve() -> None:
        try:
            await emu.start(host, port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another --port, or 0 for a free one",
            ) from None
        async with speedups.settled_heap():
            click.echo(emu.endpoint)
            click.echo(uptime_banner(emu), err=True)
            for line in paste_lines(emu.endpoint, api_key):
                click.echo(line, err=True)
            click.echo("Press Ctrl-C to stop.", err=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await stop.wait()
            finally:
                await emu.stop()

    def note(key: str, message: str) -> None:
        # once per run: each assumption the emulator made for a client, on stderr
        click.echo(fidelity.line(message), err=True)

    with fidelity.listening(note):
        speedups.run(serve())
    click.echo("emulator stopped", err=True)
    return 0
