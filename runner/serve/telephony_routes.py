"""Mount the phone edges a serve file configures (and ``/metrics``) on an aiohttp application."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.serve.metrics import add_route as add_metrics_route
from runner.serve.telephony import Phones

log = logging.getLogger("vlrun.serve")


def add_phone_routes(
    app: Any,
    phones: Phones,
    *,
    metrics_route: bool = True,
    acs_options: dict[str, Any] | None = None,
) -> list[str]:
    """Add the Twilio and ACS routes the serve file asks for; returns the edges mounted."""
    serve = phones.serve
    mounted: list[str] = []
    if serve.twilio is not None:
        from runner.serve.twilio import TwilioEdge

        TwilioEdge(phones, serve.twilio, serve.public_url).add_routes(app)
        mounted.append("twilio")
    if serve.acs is not None:
        from runner.serve.acs import AcsEdge

        edge = AcsEdge(phones, serve.acs, serve.public_url, **(acs_options or {}))
        edge.add_routes(app)
        app.on_cleanup.append(lambda _app: edge.close())
        mounted.append("acs")
    if serve.sip is not None:
        from runner.serve.sip import SipEdge

        sip = SipEdge(phones, serve.sip)
        sip.add_routes(app)
        app.on_cleanup.append(lambda _app: sip.close())
        mounted.append("sip")
    if metrics_route:
        add_metrics_route(app, phones.metrics)
    if phones.owns_supervisor:

        async def supervise(_app: Any) -> Any:
            async with phones.supervisor.running():
                yield

        app.cleanup_ctx.append(supervise)
    return mounted


def installer_for(serve_path: Path, options: Any) -> Callable[[Any, Any, Any], None]:
    """`vlrun serve --serve-file`: the installer that puts the phone edges on the app.

    The serve file is loaded now (a mistake stops the command before it listens); its
    ``drain_timeout_s`` becomes the server's. The phone calls share the host's gate: a host
    at capacity or draining takes no call, and on shutdown the calls drain like the host's
    conversations, then the goodbye, then the hang-up.
    """
    from runner.config.serve_file import load_serve_file

    serve = load_serve_file(serve_path)
    _json_logs(serve.log_phone_numbers)
    if serve.drain_timeout_s is not None:
        options.drain_timeout_s = serve.drain_timeout_s

    def install(app: Any, host: Any, serve_options: Any) -> None:
        embedded = getattr(host, "_emulator_target", None) if host.embedded else None
        # One supervisor for the worker: phone calls and browser pages share max_calls, its
        # sweep, its drain and its metrics (the pages keep their own smaller limit too).
        supervisor = host.supervisor
        phones = Phones(
            serve,
            endpoint=host.options.endpoint or getattr(host, "_emulator_endpoint", None),
            logs_dir=host.options.logs,
            drain_timeout_s=serve_options.drain_timeout_s,
            embedded_target=embedded,
            supervisor=supervisor,
        )
        supervisor.max_calls = phones.max_calls

        async def start(_app: Any) -> None:
            from runner.serve.sip import API_VERSION

            await phones.prepare(api_versions=(API_VERSION,) if serve.sip is not None else ())
            for line in routes_summary(serve):
                log.info("%s", line)

        async def close(_app: Any) -> None:
            await phones.close()

        app.on_startup.append(start)
        app.on_cleanup.append(close)
        add_phone_routes(app, phones)

    return install


def routes_summary(serve: Any) -> list[str]:
    """What a provider must be pointed at, and which profile answers which call: said once
    at start-up (the base URL is public_url, or this server's own as the provider reaches it)."""
    base = serve.public_url or "<this server's URL>"
    lines = [f"phone edges from {serve.source.name} (base {base})"]
    if serve.twilio is not None:
        lines.append(
            f"twilio: POST {base}/twilio/voice[/NAME] (voice webhook, X-Twilio-Signature); "
            f"media {base}/twilio/media"
        )
    if serve.acs is not None:
        lines.append(
            f"acs: POST {base}/acs/incoming[/NAME]?secret=... (Event Grid IncomingCall); "
            f"POST {base}/acs/callbacks; media {base}/acs/media (ACS JWT)"
        )
    if serve.sip is not None:
        lines.append(f"voicelive_sip (preview): POST {base}/sip/webhook[/NAME]")
    routes = []
    for route in serve.routes:
        what = f"path {route.path}" if route.path else route.number or "default"
        routes.append(f"{what} -> {route.profile.name}")
    lines.append("routes: " + "; ".join(routes))
    lines.append("try a call locally: vlrun ring (docs/telephony.md, 'Ringing your server')")
    return lines


def _json_logs(reveal_numbers: bool = False) -> None:
    """A phone worker logs JSON lines on stderr, the call id on each, written by a thread
    (once per process); phone numbers masked unless the serve file asks for them."""
    import sys

    from runner.serve.calls_log import install_json_logging, reveal_phone_numbers

    install_json_logging(sys.stderr)
    reveal_phone_numbers(reveal_numbers)
