"""A phone-only serve worker: the edges of a serve file, health, readiness, metrics, drain.

``python -m runner.serve.telephony_worker --serve-file serve.yaml --endpoint URL --port N``
runs one worker process. On SIGTERM it stops taking calls (``/readyz`` turns 503, so a load
balancer sends new calls elsewhere), lets the calls in progress finish up to the drain timeout,
ends the rest with the goodbye, and exits 0. Logs are JSON lines on stderr, with the call id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from runner.serve.calls_log import json_handler
from runner.serve.metrics import ServeMetrics
from runner.serve.telephony import Phones

log = logging.getLogger("vlrun.serve.worker")


def build_app(phones: Phones, *, acs_options: dict[str, Any] | None = None) -> Any:
    """The worker's aiohttp application: /healthz, /readyz, /metrics and the phone edges."""
    from aiohttp import web

    from runner.serve.telephony_routes import add_phone_routes

    app = web.Application(client_max_size=256 * 1024)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        ready = phones.accepting()
        body = {
            "ready": ready,
            "draining": phones.draining,
            "active_calls": len(phones.calls),
            "max_calls": phones.max_calls,
        }
        return web.json_response(body, status=200 if ready else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_phone_routes(app, phones, acs_options=acs_options)
    return app


async def run_worker(
    serve_path: Path,
    *,
    endpoint: str | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    logs_dir: Path | None = None,
    max_calls: int | None = None,
    drain_timeout_s: float | None = None,
) -> int:
    from aiohttp import web

    from runner.config.serve_file import load_serve_file

    serve = load_serve_file(serve_path)
    phones = Phones(
        serve,
        endpoint=endpoint,
        metrics=ServeMetrics(),
        logs_dir=logs_dir,
        max_calls=max_calls,
        drain_timeout_s=drain_timeout_s,
    )
    await phones.prepare()
    app = build_app(phones)
    # shutdown_timeout: open media sockets are ended by the drain, not cut by aiohttp
    runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info(
        "listening on %s:%d (%s)",
        host,
        port,
        ", ".join(r.path or r.number or "default" for r in serve.routes),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("SIGTERM: draining")
        await phones.drain()
        log.info("drained; exiting")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await runner.cleanup()
        await phones.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.serve.telephony_worker")
    parser.add_argument("--serve-file", type=Path, required=True)
    parser.add_argument("--endpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--logs", type=Path)
    parser.add_argument("--max-calls", type=int)
    parser.add_argument("--drain-timeout", type=float)
    args = parser.parse_args(argv)
    root = logging.getLogger("vlrun")
    root.addHandler(json_handler(sys.stderr))
    root.setLevel(logging.INFO)
    from runner.errors import VlrunError

    try:
        return asyncio.run(
            run_worker(
                args.serve_file,
                endpoint=args.endpoint,
                host=args.host,
                port=args.port,
                logs_dir=args.logs,
                max_calls=args.max_calls,
                drain_timeout_s=args.drain_timeout,
            )
        )
    except VlrunError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
