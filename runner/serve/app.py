"""The aiohttp application around a :class:`~runner.serve.host.Host`, and serving it.

Contract for other edges (phone, metrics):

- :func:`make_app` builds the application: ``/healthz`` (200 while the process is alive),
  ``/readyz`` (200 when a new conversation would be accepted, 503 while draining or at
  ``max_conversations``), the browser console (``/``, ``/static/...``, ``/ws``, downloads)
  and, for each callable in ``installers``, ``installer(app, host, options)`` called before
  the app is frozen: that is where another edge adds its routes (``app.router.add_get(...)``)
  or middlewares. The host is at ``app[HOST_KEY]`` and the options at ``app[OPTIONS_KEY]``.
- :func:`serve` starts the host and the site, prints the URL to open, and runs until SIGTERM
  or SIGINT: then it drains (no new conversations; running ones get ``drain_timeout_s`` to
  finish, then are ended) and returns 0.

Security (the checks are in :mod:`runner.serve.web`): loopback needs no token, but then only
loopback Host names are served (DNS rebinding); any other address requires a token
(``--token`` or generated), checked on the page, the downloads and the WebSocket. The
WebSocket also needs an Origin: the page's own or a listed one. Every refusal is logged (the
token itself is a registered secret, so no log shows it). Idle connections, request heads
never finished and slow request bodies are timed out (``ServeOptions.idle_timeout_s``,
``body_timeout_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from runner.errors import EXIT_OK, UsageError
from runner.redact import register_secret
from runner.serve.browser import STATIC
from runner.serve.browser import install as install_browser
from runner.serve.host import Host

# The options, the keys and the checks live in runner.serve.web (the browser edge uses them
# too, and imports that module, not this one); these names stay importable from here.
from runner.serve.web import (
    HOST_KEY,
    OPTIONS_KEY,
    ServeOptions,
    bounded_body,
    console_log,
    host_ok,
    is_loopback,
    origin_ok,
    refuse,
    token_ok,
)

__all__ = [
    "HOST_KEY",
    "OPTIONS_KEY",
    "STATIC",
    "Installer",
    "ServeOptions",
    "execute_serve",
    "host_ok",
    "is_loopback",
    "make_app",
    "origin_ok",
    "page_url",
    "refuse",
    "serve",
    "settle_token",
    "token_ok",
]

log = logging.getLogger("vlrun.serve")

Installer = Callable[[web.Application, Host, ServeOptions], None]

#: After an answer, how long unread request data is read and ignored before the close.
LINGER_S = 2.0


def settle_token(options: ServeOptions) -> ServeOptions:
    """Off loopback a token is required: the one given, or a fresh one (registered secret)."""
    if options.token is not None and len(options.token) < 16:
        raise UsageError(
            "--token must be at least 16 characters", hint="omit it and one is generated"
        )
    if options.token is None and not is_loopback(options.host):
        options.token = secrets.token_urlsafe(24)
    if options.token is not None:
        register_secret(options.token)
    return options


def make_app(
    host: Host, options: ServeOptions, installers: Sequence[Installer] = ()
) -> web.Application:
    """The application: probes, the browser console, then each installer's routes."""
    app = web.Application(client_max_size=options.max_body_bytes, middlewares=[bounded_body])
    app[HOST_KEY] = host
    app[OPTIONS_KEY] = options
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    install_browser(app, host, options)
    for installer in installers:
        installer(app, host, options)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    host = request.app[HOST_KEY]
    slots = host.supervisor.status()
    body = {
        "ready": host.ready(),
        "active": host.active,  # browser conversations (kept for existing probes)
        "draining": host.draining,
        "calls": slots["active"],  # every conversation holding a slot, phone and browser
        "reserved": slots["reserved"],  # first requests whose media socket has not come yet
    }
    return web.json_response(body, status=200 if host.ready() else 503)


def page_url(options: ServeOptions, port: int) -> str:
    """The URL to open (with the token when one is needed)."""
    shown = options.host
    if shown in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        shown = "127.0.0.1"
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{port}/"
    return url + (f"?token={options.token}" if options.token else "")


async def serve(
    host: Host,
    options: ServeOptions,
    installers: Sequence[Installer] = (),
    *,
    started: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    settle_heap: bool = False,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then drain; returns the exit code.

    ``started(url)`` is called once listening (default: print the URL to stdout)."""
    settle_token(options)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        async with host.running():
            app = make_app(host, options, installers)
            runner = web.AppRunner(
                app,
                access_log=None,
                handle_signals=False,
                # idle keep-alive connections and request heads never finished are closed
                keepalive_timeout=options.idle_timeout_s,
                lingering_time=min(LINGER_S, options.idle_timeout_s),
            )
            await runner.setup()
            heap = contextlib.AsyncExitStack()  # the CLI's own process: its collector's timer
            try:
                site = web.TCPSite(runner, options.host, options.port)
                try:
                    await site.start()
                except OSError as exc:
                    raise UsageError(
                        f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}",
                        hint="choose another --port (0 picks a free one)",
                    ) from None
                port = _bound_port(runner, options.port)
                url = page_url(options, port)
                if settle_heap:  # the process is this server's (the CLI), not an embedder's
                    from runner import speedups

                    # start-up is done (the profiles are compiled): freeze it, and set the
                    # collector so that no collection pauses the calls for long
                    await heap.enter_async_context(speedups.settled_heap())
                if started is not None:
                    started(url)
                else:
                    print(f"vlrun serve: {_target_line(host)}", file=sys.stderr)
                    print(f"open {url}", flush=True)
                await stop.wait()
                log.info("stopping: draining %d conversation(s)", host.active)
                print("-- stopping: finishing the conversations in progress", file=sys.stderr)
                await host.drain(options.drain_timeout_s)
            finally:
                await heap.aclose()
                await runner.cleanup()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGINT)
    return EXIT_OK


def _target_line(host: Host) -> str:
    """What serves the conversations; the embedded emulator's pace too (--emulator-speed)."""
    speed = host.status().get("emulator_speed")
    if speed is None:
        return host.target_line
    pace = "at real time" if speed == 1 else "at once" if speed == 0 else f"at {speed:g}x real time"
    return f"{host.target_line}; replies sent {pace} (--emulator-speed)"


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


def execute_serve(
    host_options: Any, options: ServeOptions, installers: Sequence[Installer] = ()
) -> int:
    """`vlrun serve`: build the host from ``host_options`` and serve until stopped."""
    from runner.serve.host import HostOptions

    assert isinstance(host_options, HostOptions)
    if not host_options.paths:
        default = Path("profiles")
        if not default.is_dir():
            raise UsageError(
                "no profiles given and no profiles/ folder here",
                hint="pass profile files or folders: vlrun serve profiles/",
            )
        host_options.paths = [default]
    for path in host_options.paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    settle_token(options)
    from runner import speedups

    with console_log():  # refusals reach the terminal even without a phone worker's log
        return speedups.run(serve(Host(host_options), options, installers, settle_heap=True))
