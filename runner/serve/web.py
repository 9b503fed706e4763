"""What the HTTP side of `vlrun serve` shares: its options, the app keys, and the checks.

The application (:mod:`runner.serve.app`) and the browser edge (:mod:`runner.serve.browser`)
both import from here, and this module imports neither, so neither imports the other.

The checks, in the order a console route applies them (:func:`console_route`):

- **Host.** Without a token (the loopback console), only loopback names are served:
  ``127.0.0.1`` (any loopback address), ``localhost``, ``[::1]``, with any port. A web page
  the user visits can point its own name at 127.0.0.1 (DNS rebinding) and then talk to the
  console as a same-origin page; its requests still say ``Host: its.name``, so they are
  refused. With a token, the token is the guard and any Host is served (a proxy's name).
- **Token.** ``?token=`` or ``Authorization: Bearer``, compared in constant time.
- **Origin** (WebSocket only). Browsers always send it on a WebSocket: one without it is not
  a browser page, and one from another origin is another site's page. The page's own origin
  and those given with ``--origin`` are allowed.

Every refusal is logged on ``vlrun.serve`` with the method, the path, the peer and the reason,
as one line with control characters shown, redacted (never the token, whatever was sent).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import logging.handlers
import queue
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from aiohttp import web

from runner.redact import clean_line, redact
from runner.serve.host import Host

log = logging.getLogger("vlrun.serve")


@dataclass
class ServeOptions:
    """How the server listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # None on loopback: no token; elsewhere one is generated
    origins: Sequence[str] = ()  # extra allowed WebSocket origins (the page's own is allowed)
    max_frame_bytes: int = 64 * 1024  # one WebSocket message (audio or JSON)
    max_body_bytes: int = 1024 * 1024  # any HTTP request body (uploads)
    # an image turn's upload (the console's image route only): the live layer's bound on one
    # image, plus room for the form around it and its question
    max_image_body_bytes: int = 8 * 1024 * 1024 + 64 * 1024
    drain_timeout_s: float = 20.0
    heartbeat_s: float = 2.0  # WebSocket ping: a vanished browser is noticed within 2x this
    # An HTTP connection with no request in progress (idle keep-alive, or a request head not
    # finished) is closed after this: aiohttp's own default is an hour.
    idle_timeout_s: float = 60.0
    # A request with a body (webhooks) is answered within this: 408 if the body has not all
    # arrived by then (a client sending half a body and waiting), else 503.
    body_timeout_s: float = 20.0
    # A push-to-talk press while the session connects waits this long for it, off the read
    # loop; then it is applied anyway (and the session says it is not connected yet).
    connect_wait_s: float = 15.0
    # A page's socket is gone: its conversation gets this long to end before it is cancelled.
    end_timeout_s: float = 4.0
    extra: dict[str, Any] = field(default_factory=dict)  # for other edges' settings


HOST_KEY: web.AppKey[Host] = web.AppKey("vlrun_host", Host)
OPTIONS_KEY: web.AppKey[ServeOptions] = web.AppKey("vlrun_serve_options", ServeOptions)

#: Longest piece of a header quoted in a log line.
_QUOTE = 120


def is_loopback(host: str) -> bool:
    """Whether the bind address ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_host_header(value: str | None) -> bool:
    """Whether a ``Host`` header names this machine's loopback: ``localhost``, a loopback
    address (``127.0.0.1``, ``[::1]`` and their other spellings), with or without a port."""
    if not value:
        return False
    name = value.strip().lower()
    if name.startswith("["):  # [v6] or [v6]:port
        end = name.find("]")
        if end < 0:
            return False
        name, rest = name[1:end], name[end + 1 :]
        if rest and not _port(rest):
            return False
    elif name.count(":") == 1:  # name:port (more colons: a bare v6 address, no port)
        name, rest = name.split(":")
        if not _port(":" + rest):
            return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _port(rest: str) -> bool:
    digits = rest[1:]
    return rest.startswith(":") and digits.isdigit() and len(digits) <= 5


def token_ok(request: web.Request, token: str | None) -> bool:
    """The request carries the access token (query ``token=`` or ``Authorization: Bearer``)."""
    if token is None:
        return True
    given = request.query.get("token", "")
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        given = auth[7:]
    return secrets.compare_digest(given.encode(), token.encode())


def host_ok(request: web.Request, options: ServeOptions) -> bool:
    """Without a token only loopback Host names are served (DNS rebinding); with one, any."""
    return options.token is not None or loopback_host_header(request.headers.get("Host"))


def origin_ok(request: web.Request, options: ServeOptions) -> bool:
    """A WebSocket must come from this server's own page (or a listed origin); one with no
    ``Origin`` is refused (every browser sends it, so nothing a page opened lacks it)."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    if origin in options.origins:
        return True
    parts = urlsplit(origin)
    own = request.headers.get("Host", "").strip().lower()
    return parts.scheme in ("http", "https") and bool(own) and parts.netloc.lower() == own


def quoted(value: str | None) -> str:
    """A header value as a log line may show it: shortened, controls shown, secrets masked."""
    if value is None:
        return "none"
    short = value if len(value) <= _QUOTE else value[:_QUOTE] + "…"
    return repr(clean_line(redact(short)))


def refuse(request: web.Request, status: int, why: str) -> web.Response:
    """A refusal, logged with who asked (never the token they sent)."""
    peer = request.remote or "?"
    line = f"refused {request.method} {request.path} from {peer}: {why}"
    log.warning("%s", clean_line(redact(line)))
    return web.Response(status=status, text=f"{status}: {why}\n")


def check(
    request: web.Request, *, websocket: bool = False, token: bool = True
) -> web.Response | None:
    """The refusal for a console request (Host, token unless ``token`` is False, and Origin
    on a WebSocket), or None."""
    options: ServeOptions = request.app[OPTIONS_KEY]
    if not host_ok(request, options):
        return refuse(
            request,
            403,
            f"Host {quoted(request.headers.get('Host'))} is not a loopback name (the console "
            "without a token answers only http://127.0.0.1, localhost or [::1]; "
            "give --token to serve other names)",
        )
    if token and not token_ok(request, options.token):
        what = "on the WebSocket" if websocket else "(open the URL vlrun printed)"
        return refuse(request, 401, f"missing or wrong access token {what}")
    if websocket and not origin_ok(request, options):
        origin = request.headers.get("Origin")
        if not origin:
            return refuse(request, 403, "WebSocket without an Origin header (not a browser page)")
        return refuse(request, 403, f"WebSocket from origin {quoted(origin)}")
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def console_route(
    handler: Handler | None = None, *, websocket: bool = False, token: bool = True
) -> Any:
    """Decorate a console route: :func:`check` runs first, and a refusal is the answer."""

    def wrap(inner: Handler) -> Handler:
        @functools.wraps(inner)
        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = check(request, websocket=websocket, token=token)
            if refused is not None:
                return refused
            return await inner(request)

        return guarded

    return wrap(handler) if handler is not None else wrap


#: Set on a route handler whose bodies may be as large as an image turn (the route reads its
#: body itself, bounded): ``handler.image_upload = True``.
IMAGE_UPLOAD = "image_upload"


def body_limit(request: web.Request) -> int:
    """The largest body ``request`` may have: the app's, or an image upload route's own."""
    handler = getattr(request.match_info, "handler", None)
    if getattr(handler, IMAGE_UPLOAD, False):
        options: ServeOptions = request.app[OPTIONS_KEY]
        return options.max_image_body_bytes
    return request.client_max_size


@web.middleware
async def bounded_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request with a body is answered within ``body_timeout_s``: a client that sends half a
    body and waits would otherwise hold its handler (and the connection) for ever. A body
    declared larger than the app's ``client_max_size`` is refused at once (413)."""
    if not request.can_read_body:
        return await handler(request)
    options: ServeOptions = request.app[OPTIONS_KEY]
    limit, size = body_limit(request), request.content_length
    if size is not None and size > limit:
        return refuse(request, 413, f"a body of {size} bytes is over the {limit}-byte limit")
    try:
        return await asyncio.wait_for(handler(request), options.body_timeout_s)
    except asyncio.TimeoutError:
        if not request.content.at_eof():
            why = f"the request body did not arrive within {options.body_timeout_s:g} s"
            return refuse(request, 408, why)
        return refuse(request, 503, f"no answer within {options.body_timeout_s:g} s")


class _BoundedQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread; past the bound a record is dropped and counted
    (the loop never waits for a slow terminal or a full pipe)."""

    def __init__(self, bound: int) -> None:
        super().__init__(queue.Queue(bound))
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _OneLine(logging.Formatter):
    """One line per record: secrets masked, control characters and newlines shown."""

    def format(self, record: logging.LogRecord) -> str:
        return clean_line(redact(super().format(record)))


@contextmanager
def console_log(stream: TextIO | None = None, *, bound: int = 10_000) -> Iterator[None]:
    """While serving from the command line: warnings of ``vlrun`` (refusals, bad input) go
    to stderr, written by a thread, unless a handler is there already (the phone worker's
    JSON log). The level is the handler's: the process's loggers are left as they are."""
    root = logging.getLogger("vlrun")
    if any(not isinstance(h, logging.NullHandler) for h in root.handlers):
        yield
        return
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(_OneLine("vlrun serve: %(levelname)s %(message)s"))
    handler = _BoundedQueueHandler(bound)
    handler.setLevel(logging.WARNING)
    listener = logging.handlers.QueueListener(handler.queue, out)  # type: ignore[arg-type]
    listener.start()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        listener.stop()  # writes what is queued, then the thread ends
