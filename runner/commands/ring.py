"""`vlrun ring PROVIDER URL`: ring a running `vlrun serve --serve-file` as a carrier would.

The caller's turns (``--say-wav``, ``--say``, ``--dtmf``) are taken in the order they are
given on the command line; click aggregates each repeated option on its own, so the order is
read from the arguments before click parses them (:class:`_InOrder`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from runner.errors import UsageError

TURN_OPTIONS = {"--say-wav": "wav", "--say": "say", "--dtmf": "dtmf"}


class _InOrder(click.Command):
    """Keeps the order of the turn options as given (``ctx.meta['ring.turns']``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        turns: list[tuple[str, str]] = []
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                break
            name, eq, value = token.partition("=")
            if name in TURN_OPTIONS:
                if eq:
                    turns.append((TURN_OPTIONS[name], value))
                elif i + 1 < len(args):
                    turns.append((TURN_OPTIONS[name], args[i + 1]))
                    i += 1
            i += 1
        ctx.meta["ring.turns"] = turns
        return super().parse_args(ctx, args)


@click.command("ring", cls=_InOrder)
@click.argument("provider", type=click.Choice(["twilio", "acs", "sip"]))
@click.argument("url", required=False)
@click.option("--say-wav", "say_wavs", multiple=True, metavar="FILE", help="Speak a WAV file.")
@click.option("--say", "says", multiple=True, metavar="TEXT", help="Speak text (espeak-ng).")
@click.option("--dtmf", "dtmfs", multiple=True, metavar="KEYS", help="Press keys, e.g. 123#.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write what the caller heard to this WAV file.",
)
@click.option(
    "--auth-token",
    envvar="TWILIO_AUTH_TOKEN",
    default=None,
    help="twilio: the serve file's twilio.auth_token (default: $TWILIO_AUTH_TOKEN).",
)
@click.option("--from", "caller", default="+15550199999", show_default=True, help="Caller.")
@click.option("--to", "called", default="+15550100000", show_default=True, help="Number rung.")
@click.option(
    "--acs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("vlrun-acs"),
    show_default=True,
    help="acs: the simulated ACS's keys, certificate and env.sh (made by --setup).",
)
@click.option(
    "--acs-port",
    default=8443,
    type=click.IntRange(1, 65535),
    show_default=True,
    help="acs --setup: the port of the simulated Call Automation endpoint.",
)
@click.option("--setup", is_flag=True, help="acs: write --acs-dir (keys, env.sh) and exit.")
@click.option(
    "--create-webhook",
    metavar="URL",
    default=None,
    help="sip: register this serve webhook with the emulator, write --env-file, and exit.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("sip.env"),
    show_default=True,
    help="sip --create-webhook: where the webhook's signing secret is written.",
)
@click.option(
    "--timeout",
    "turn_s",
    default=60.0,
    type=click.FloatRange(1, 3600),
    show_default=True,
    help="Longest wait for one reply (or for the call to connect).",
)
@click.pass_context
def ring(
    ctx: click.Context,
    provider: str,
    url: str | None,
    say_wavs: tuple[str, ...],
    says: tuple[str, ...],
    dtmfs: tuple[str, ...],
    record: Path | None,
    auth_token: str | None,
    caller: str,
    called: str,
    acs_dir: Path,
    acs_port: int,
    setup: bool,
    create_webhook: str | None,
    env_file: Path,
    turn_s: float,
) -> int:
    """Ring a running `vlrun serve --serve-file` as a carrier would (a simulated call).

    \b
    vlrun ring twilio http://127.0.0.1:8080/twilio/voice --say "hello" --record heard.wav
    vlrun ring acs http://127.0.0.1:8080/acs/incoming --dtmf 1
    vlrun ring sip http://127.0.0.1:8765 --say "hello"      (URL: a `vlrun emulate`)

    Exit 0 when the call was answered and hung up, 1 when it was refused or busy, 3 when
    the server cannot be reached.
    """
    from runner.carrier.ring import RingOptions
    from runner.carrier.voice import Turn, check_turn
    from runner.redact import register_secret

    if auth_token:
        register_secret(auth_token)
    ordered = ctx.meta.get("ring.turns") or []
    given = {"wav": list(say_wavs), "say": list(says), "dtmf": list(dtmfs)}
    if sorted(ordered) != sorted((k, v) for k, vs in given.items() for v in vs):
        ordered = [(k, v) for k, vs in given.items() for v in vs]  # click's order instead
    turns = [check_turn(Turn(kind, value)) for kind, value in ordered]  # type: ignore[arg-type]
    options = RingOptions(
        turns=turns, record=record, caller=caller, called=called, turn_s=turn_s,
        connect_timeout_s=min(turn_s, 10.0),
        out=lambda text: click.echo(text),
    )  # fmt: skip
    if provider == "acs":
        import runner.carrier.acs as acs

        if setup:
            acs.setup(acs_dir, acs_port, out=options.out)
            return 0
        return asyncio.run(acs.call(_url(url, provider), acs_dir, options))
    if provider == "sip":
        import runner.carrier.sip as sip

        if create_webhook:
            asyncio.run(sip.create_webhook(_url(url, provider), create_webhook, env_file, options))
            return 0
        return asyncio.run(sip.call(_url(url, provider), options))
    if not auth_token:
        raise UsageError(
            "vlrun ring twilio needs the serve file's Auth Token",
            hint="give --auth-token or set TWILIO_AUTH_TOKEN (the value of twilio.auth_token)",
        )
    from runner.carrier import twilio

    return asyncio.run(_twilio(twilio, _url(url, provider), auth_token, options))


async def _twilio(module: Any, url: str, auth_token: str, options: Any) -> int:
    from runner.carrier.ring import converse

    async with module.ring(url, auth_token, options) as call:
        return await converse(call, options)


def _url(url: str | None, provider: str) -> str:
    examples = {
        "twilio": "http://127.0.0.1:8080/twilio/voice",
        "acs": "http://127.0.0.1:8080/acs/incoming",
        "sip": "http://127.0.0.1:8765 (a `vlrun emulate`)",
    }
    if not url:
        raise UsageError(f"vlrun ring {provider} needs a URL", hint=f"e.g. {examples[provider]}")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{url}: not an http(s) URL", hint=f"e.g. {examples[provider]}")
    return url
