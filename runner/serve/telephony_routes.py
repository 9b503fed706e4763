"""Mount the phone edges a serve file configures (and ``/metrics``) on an aiohttp application."""

from __future__ import annotations

from typing import Any

from runner.serve.metrics import add_route as add_metrics_route
from runner.serve.telephony import Phones


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
    if metrics_route:
        add_metrics_route(app, phones.metrics)
    return mounted
