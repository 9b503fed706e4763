"""Azure Communication Services Call Automation: the Event Grid webhook, callbacks, media socket.

Protocol (Microsoft's Call Automation docs and the ``azure-communication-callautomation`` SDK;
facts with sources in docs/telephony.md):
- ``POST /acs/incoming[/ROUTE]``: Event Grid. The subscription's validation handshake is
  answered with ``{"validationResponse": code}``; an ``IncomingCall`` is answered through the
  SDK's ``answer_call`` with bidirectional media streaming to ``wss://…/acs/media`` (PCM 16 or
  24 kHz mono, DTMF tones on), or refused with ``reject_call(busy)`` at capacity or while
  draining. Event Grid's delivery can carry a secret in the URL (``?secret=``), checked when
  the serve file sets one.
- ``POST /acs/callbacks``: CloudEvents about the call (CallConnected, CallDisconnected, ...),
  each request with a JWT that ACS signs (RS256, issuer ACS, audience the resource id).
- ``/acs/media``: the media socket, opened by ACS with the same kind of JWT. In: JSON frames
  ``AudioMetadata``, ``AudioData`` (base64 PCM16), ``DtmfData``. Out: ``AudioData`` and, on a
  barge-in, ``StopAudio``.

Nothing ties a call to one worker: the media URL carries its route, signed, so behind a load
balancer any worker can take the socket (ACS names the call in ``x-ms-call-connection-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from runner.config.serve_file import AcsSettings
from runner.errors import VlrunError
from runner.live.audio import AudioFormat
from runner.serve import codec_acs as codec
from runner.serve.calls import OUTBOUND_FRAME_MS, CallEdge, CallPlayer, CallSource
from runner.serve.calls_log import call_id_var
from runner.serve.codec_json import JsonError
from runner.serve.http import TooLarge, read_body
from runner.serve.metrics import INSTALL_HINT
from runner.serve.supervisor import Refused
from runner.serve.telephony import Phones, route_name
from runner.serve.ws_batch import BatchedSocket
from runner.serve.ws_media import MediaSocket, taker

log = logging.getLogger("vlrun.serve.acs")

MAX_EVENT_BYTES = 256 * 1024  # an IncomingCall is a few KB; Event Grid batches are bounded too
MAX_FRAME_BYTES = 64 * 1024  # 20 ms at 24 kHz is 960 bytes, ~1.4 KB of JSON
METADATA_TIMEOUT_S = 10.0
# A media socket holding this much unsent output (its peer stopped reading) is skipped by the
# clock until it drains: about a second of 16 kHz frames.
BACKLOG_BYTES = 64 * 1024
TOKEN_TTL_S = 24 * 3600.0  # the media URL is used once, soon after answering
JWKS_TTL_S = 3600.0
JWKS_MIN_REFRESH_S = 30.0  # an unknown key id refetches the keys, at most this often
_TONES = {
    **{
        str(i): w
        for i, w in enumerate(
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        )
    },
    "*": "asterisk",
    "#": "pound",
    **{c: c.lower() for c in "ABCD"},
}  # the SDK's DtmfTone values


def _sdk() -> Any:
    try:
        import azure.communication.callautomation as sdk
    except ImportError:
        raise VlrunError(
            "azure-communication-callautomation is not installed", hint=INSTALL_HINT
        ) from None
    return sdk


class AcsTokenRejected(Exception):
    """A callback or media socket whose token is missing, forged or for someone else."""


class TokenVerifier:
    """Checks ACS's callback and media-socket JWTs: RS256, ACS's keys, issuer, audience.

    The keys come from ACS's JWKS URL, fetched without blocking the loop and cached; a token
    signed by a key id not yet seen refetches them (bounded), as keys rotate.
    """

    def __init__(self, settings: AcsSettings, *, http_options: dict[str, Any] | None = None):
        self.settings = settings
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()
        self._http_options = http_options or {}

    async def _refresh(self, force: bool) -> None:
        import aiohttp
        import jwt

        async with self._lock:
            age = time.monotonic() - self._fetched
            if self._keys and (age < JWKS_MIN_REFRESH_S or (not force and age < JWKS_TTL_S)):
                return
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(self.settings.jwks_url, **self._http_options) as response,
            ):
                response.raise_for_status()
                doc = await response.json(content_type=None)
            keys = {}
            for entry in doc.get("keys", []) if isinstance(doc, dict) else []:
                with contextlib.suppress(Exception):  # a key of a type we cannot use
                    key = jwt.PyJWK(entry)
                    keys[str(entry.get("kid", ""))] = key
            self._keys = keys
            self._fetched = time.monotonic()

    async def verify(self, authorization: str | None) -> dict[str, Any]:
        import jwt

        if not authorization or not authorization.startswith("Bearer "):
            raise AcsTokenRejected("no bearer token")
        token = authorization[len("Bearer ") :].strip()
        try:
            kid = str(jwt.get_unverified_header(token).get("kid", ""))
        except jwt.PyJWTError as exc:
            raise AcsTokenRejected(f"not a JWT ({exc})") from None
        try:
            await self._refresh(force=kid not in self._keys)
        except Exception as exc:  # the key service is unreachable: nothing can be trusted
            raise AcsTokenRejected(f"ACS signing keys unavailable ({exc})") from None
        key = self._keys.get(kid)
        if key is None:
            raise AcsTokenRejected(f"signed by an unknown key {kid!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.settings.resource_id,
                issuer=self.settings.issuer,
                options={"require": ["exp", "iss", "aud"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise AcsTokenRejected(str(exc)) from None
        return claims


class AcsTransport:
    """Outbound frames of one media socket (built by the codec, in the casing Microsoft's
    Python docs send); only the media clock writes, a refill's frames in one socket write
    (:class:`BatchedSocket`)."""

    def __init__(self, ws: Any, transport: Any) -> None:
        self.out = BatchedSocket(ws, transport, BACKLOG_BYTES)
        self.writable = self.out.writable
        self.flush = self.out.flush

    async def send_audio(self, frame: bytes | memoryview) -> None:
        self.out.add(codec.audio_frame_bytes(frame))  # bytes: never a str to encode again

    async def send_clear(self) -> None:
        self.out.add(codec.stop_audio_frame().encode())


def _url(base: str, path: str, query: dict[str, str] | None = None, *, ws: bool = False) -> str:
    parts = urlsplit(base)
    scheme = parts.scheme
    if ws:
        scheme = "wss" if scheme == "https" else "ws"
    return urlunsplit(
        (scheme, parts.netloc, parts.path.rstrip("/") + path, urlencode(query or {}), "")
    )


class AcsEdge:
    """The aiohttp side of the ACS edge."""

    def __init__(
        self,
        phones: Phones,
        settings: AcsSettings,
        base_url: str | None,
        *,
        client_options: dict[str, Any] | None = None,
        http_options: dict[str, Any] | None = None,
    ) -> None:
        self.phones = phones
        self.settings = settings
        self.base_url = base_url
        self.metrics = phones.metrics
        self.verifier = TokenVerifier(settings, http_options=http_options)
        self._client_options = client_options or {}
        self._client: Any = None
        self._key = hashlib.sha256(
            b"vlrun-acs-media:" + settings.connection_string.encode()
        ).digest()

    @property
    def client(self) -> Any:
        if self._client is None:
            from azure.communication.callautomation.aio import CallAutomationClient

            _sdk()
            self._client = CallAutomationClient.from_connection_string(
                self.settings.connection_string, **self._client_options
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def add_routes(self, app: Any) -> None:
        app.router.add_post("/acs/incoming", self.incoming)
        app.router.add_post("/acs/incoming/{route}", self.incoming)
        app.router.add_post("/acs/callbacks", self.callbacks)
        app.router.add_get("/acs/media", self.media)

    def _base(self, request: Any) -> str:
        return self.base_url or f"{request.scheme}://{request.host}"

    # ------------------------------------------------------------------ media URL tokens

    def token(self, call_id: str, route: str, now: float | None = None) -> str:
        stamp = str(int(now if now is not None else time.time()))
        mac = hmac.new(self._key, f"{call_id}|{route}|{stamp}".encode(), hashlib.sha256)
        return f"{stamp}.{mac.hexdigest()}"

    def token_ok(self, token: str, call_id: str, route: str) -> bool:
        stamp, _, _ = token.partition(".")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > TOKEN_TTL_S:
            return False
        return hmac.compare_digest(self.token(call_id, route, float(stamp)), token)

    # ------------------------------------------------------------------ Event Grid

    async def incoming(self, request: Any) -> Any:
        from aiohttp import web

        secret = self.settings.event_grid_secret
        if secret and not hmac.compare_digest(request.query.get("secret", ""), secret):
            log.warning(
                "acs incoming webhook refused: missing or bad secret (from %s)", request.remote
            )
            self.metrics.refused("acs", "forbidden")
            return web.Response(status=403, text="forbidden")
        try:
            body = await read_body(request, MAX_EVENT_BYTES)
        except TooLarge:
            return web.Response(status=413, text="too large")
        try:
            events = codec.parse_event_grid(body, max_bytes=MAX_EVENT_BYTES)
        except JsonError as exc:  # too deep, not JSON, not an event batch: said, never a crash
            return web.Response(status=exc.status, text=exc.message)
        for event in events:
            if isinstance(event, codec.SubscriptionValidation):
                log.info("acs: Event Grid subscription validation answered")
                return web.json_response({"validationResponse": event.code})
            if isinstance(event, codec.IncomingCall):
                await self._incoming_call(request, event)
            elif isinstance(event, codec.InvalidEvent):
                log.warning("acs: an Event Grid event was ignored: %s", event.reason)
        return web.Response(status=200)

    async def _incoming_call(self, request: Any, event: codec.IncomingCall) -> None:
        sdk = _sdk()
        context = event.context
        called = event.called.id
        caller = event.caller.id
        route = self.phones.route(path=request.match_info.get("route"), called=called)
        # The call's id comes from its context: an IncomingCall delivered twice (Event Grid
        # retries) is the same call, answered once.
        call_id = hashlib.sha256(context.encode()).hexdigest()[:16]
        if self.phones.supervisor.slot(f"acs:{call_id}") is not None:
            log.info("acs: IncomingCall for call %s delivered again; answered already", call_id)
            return
        slot = None
        why = "no route answers it"
        if route is not None:
            try:
                slot = self.phones.reserve("acs", call_id)
            except Refused as exc:
                if exc.reason == "duplicate":
                    log.info("acs: IncomingCall for call %s has had its session; ignored", call_id)
                    return
                why = exc.message
        if route is None or slot is None:
            log.info("acs call %s refused: %s", call_id, why)
            if route is None:
                self.metrics.refused("acs", "refused")
            try:
                await self.client.reject_call(
                    context,
                    call_reject_reason=sdk.CallRejectReason.BUSY
                    if route is not None
                    else sdk.CallRejectReason.FORBIDDEN,
                )
            except Exception as exc:  # the call may have gone already
                log.warning("acs: reject_call failed: %s", exc)
            return
        name = route_name(route)
        base = self._base(request)
        query = {
            "call": call_id,
            "route": name,
            "from": caller,
            "to": called,
            "token": self.token(call_id, name),
        }
        media = sdk.MediaStreamingOptions(
            transport_url=_url(base, "/acs/media", query, ws=True),
            transport_type=sdk.StreamingTransportType.WEBSOCKET,
            content_type=sdk.MediaStreamingContentType.AUDIO,
            audio_channel_type=sdk.MediaStreamingAudioChannelType.MIXED,
            start_media_streaming=True,
            enable_bidirectional=True,
            audio_format=sdk.AudioFormat.PCM24_K_MONO
            if self.settings.rate == 24000
            else sdk.AudioFormat.PCM16_K_MONO,
            enable_dtmf_tones=True,
        )
        try:
            answered = await self.client.answer_call(
                context,
                _url(base, "/acs/callbacks", {"call": call_id}),
                media_streaming=media,
                operation_context=call_id,
            )
        except Exception as exc:  # ACS refused or is unreachable: this call is lost
            log.error("acs: answer_call failed for call %s: %s", call_id, exc)
            self.metrics.refused("acs", "failed")
            self.phones.release(slot)
            return
        log.info("acs call %s answered (connection %s)", call_id, answered.call_connection_id)

    # ------------------------------------------------------------------ callbacks

    async def callbacks(self, request: Any) -> Any:
        from aiohttp import web

        try:
            await self.verifier.verify(request.headers.get("Authorization"))
        except AcsTokenRejected as exc:
            log.warning("acs callback refused: %s (from %s)", exc, request.remote)
            return web.Response(status=401, text="unauthorized")
        try:
            body = await read_body(request, MAX_EVENT_BYTES)
        except TooLarge:
            return web.Response(status=413, text="too large")
        try:
            events = codec.parse_callbacks(body, max_bytes=MAX_EVENT_BYTES)
        except JsonError as exc:
            return web.Response(status=exc.status, text=exc.message)
        for event in events:
            if not isinstance(event, codec.CallEvent):
                continue
            connection = event.call_connection_id
            log.info("acs callback %s (connection %s)", event.type, connection)
            if isinstance(event, codec.CallDisconnected):
                for active in list(self.phones.calls.values()):
                    if active.edge.provider_call_id == connection:
                        active.edge.end("caller_hung_up")
            elif isinstance(event, codec.MediaStreamingFailed):
                detail = event.result.message if event.result else ""
                log.warning("acs media streaming failed: %s %s", event.status_details, detail)
        return web.Response(status=200)

    # ------------------------------------------------------------------ media socket

    async def media(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        try:
            await self.verifier.verify(request.headers.get("Authorization"))
        except AcsTokenRejected as exc:
            log.warning("acs media socket refused: %s", exc)
            self.metrics.refused("acs", "forbidden")
            return web.Response(status=401, text="unauthorized")
        q = request.query
        call_id, route_name = q.get("call", ""), q.get("route", "")
        if not self.token_ok(q.get("token", ""), call_id, route_name):
            log.warning("acs media socket refused: bad or expired media token")
            self.metrics.refused("acs", "forbidden")
            return web.Response(status=403, text="forbidden")
        route = self.phones.route_named(route_name)
        if route is None:
            return web.Response(status=404, text="no route")
        try:
            # one media socket, one session, per call id on this worker; the signed media URL
            # says a worker answered the call (behind a load balancer, maybe another one)
            slot = self.phones.claim("acs", call_id, unreserved_ok=True)
        except Refused as exc:
            log.warning("acs media socket for %s refused: %s", call_id, exc.message)
            return web.Response(status=409, text="this call has its media socket already")
        # No permessage-deflate: compressing 20 ms of audio costs more than sending it. The
        # heartbeat notices a peer that is gone without closing (no pong: the socket closes).
        ws = MediaSocket(
            max_msg_size=MAX_FRAME_BYTES, compress=False, heartbeat=self.phones.heartbeat_s
        )
        try:
            await ws.prepare(request)
            rate = await asyncio.wait_for(self._metadata(ws), METADATA_TIMEOUT_S)
        except (asyncio.TimeoutError, ValueError, ConnectionError) as exc:
            log.warning("acs media socket closed: no valid AudioMetadata (%s)", exc)
            self.phones.release(slot)
            await ws.close(code=1008, message=b"no metadata")
            return ws
        fmt = AudioFormat(rate)
        player = CallPlayer(fmt, frame_ms=OUTBOUND_FRAME_MS)
        player.transport = AcsTransport(ws, request.transport)
        edge = CallEdge(
            "acs",
            CallSource(fmt),
            player,
            call_id=call_id,
            caller=q.get("from", ""),
            called=q.get("to", ""),
            provider_call_id=request.headers.get("x-ms-call-connection-id", ""),
        )
        call_id_var.set(edge.call_id)

        async def hang_up() -> None:
            if edge.provider_call_id:
                try:
                    connection = self.client.get_call_connection(edge.provider_call_id)
                    await connection.hang_up(is_for_everyone=True)
                except Exception as exc:  # already ended, or ACS unreachable
                    log.warning("call %s: ACS hang_up failed: %s", edge.call_id, exc)
            await ws.close()

        edge.hang_up = hang_up
        edge.transfer, edge.send_dtmf = self._call_control(edge)
        conversation = asyncio.create_task(
            self.phones.converse(edge, route, slot=slot, rate=rate),
            name=f"vlrun-acs-{edge.call_id}",
        )
        self.phones.clock.add(player)  # the worker's one media clock sends its frames
        closer = asyncio.create_task(_close_when_done(ws, conversation), name="vlrun-acs-closer")
        try:
            await self._read(ws, edge, conversation, WSMsgType)
        finally:
            if not edge.ended.is_set():
                edge.end("dropped")
            with contextlib.suppress(Exception):
                await conversation  # its own failures are logged and counted by converse
            if edge.outcome == "malformed":
                await hang_up()  # a clean end of the call, not only of the socket
            player.close()  # off the clock
            closer.cancel()
            await asyncio.wait({closer})
            if not ws.closed:
                await ws.close()
        return ws

    def _call_control(self, edge: CallEdge) -> tuple[Any, Any]:
        """transfer and send_dtmf through the SDK's CallConnectionClient."""
        sdk = _sdk()

        def connection() -> Any:
            if not edge.provider_call_id:
                raise RuntimeError("ACS did not name this call (no x-ms-call-connection-id)")
            return self.client.get_call_connection(edge.provider_call_id)

        async def transfer(target: str) -> None:
            if not target.startswith("+"):
                raise ValueError("an ACS call is transferred to a phone number (E.164)")
            await connection().transfer_call_to_participant(
                sdk.PhoneNumberIdentifier(target), operation_context=edge.call_id
            )

        async def send_dtmf(digits: str) -> None:
            if not edge.caller.startswith("+"):
                raise RuntimeError("the caller is not a phone number; no tones can be sent")
            await connection().send_dtmf_tones(
                [_TONES[d] for d in digits],
                sdk.PhoneNumberIdentifier(edge.caller),
                operation_context=edge.call_id,
            )

        return transfer, send_dtmf

    async def _metadata(self, ws: Any) -> int:
        async for msg in ws:
            event = codec.parse_media(msg.data) if isinstance(msg.data, str) else None
            if isinstance(event, codec.AudioMetadata):
                problem = event.unsupported()
                if problem:
                    raise ValueError(problem)
                return event.sample_rate
            if isinstance(event, codec.Malformed):
                raise ValueError(event.reason)
            raise ValueError(f"{type(event).__name__ if event else 'a binary frame'} first")
        raise ValueError("closed before AudioMetadata")

    async def _read(
        self, ws: Any, edge: CallEdge, conversation: asyncio.Task[str], msg_types: Any
    ) -> None:
        feed, parse, text = edge.source.feed, codec.parse_media, msg_types.TEXT
        # The caller's audio, 50 frames a second, is taken where the socket's parser produces
        # it; silent frames are forwarded too: the service's VAD keeps a continuous clock.
        ws.on_text = taker(parse, codec.AudioData, lambda event: feed(event.pcm, event.silent))
        try:
            async for msg in ws:  # what the taker left, in order: DTMF, the malformed, the end
                if msg.type != text:
                    if self._bad(edge, "not a text frame", msg.type):
                        return
                    continue
                event = parse(msg.data)
                if type(event) is codec.AudioData:  # queued behind another message
                    feed(event.pcm, event.silent)  # ACS says which frames are silent
                elif isinstance(event, codec.DtmfData):
                    edge.on_dtmf(event.digit)
                elif isinstance(event, codec.Malformed) and self._bad(
                    edge, event.reason, event.sample
                ):
                    return
        finally:
            ws.on_text = None
        if not edge.ended.is_set() and not conversation.done():
            if ws.close_code == 1000:
                edge.end("caller_hung_up")  # ACS closed the stream normally: the call ended
            else:
                self.metrics.dropout("acs", "socket_closed")
                edge.end("dropped")

    def _bad(self, edge: CallEdge, reason: str, sample: Any) -> bool:
        self.metrics.dropout("acs", "malformed_frame")
        if edge.bad_frame(reason, sample):
            log.warning("call %s: too many malformed frames; hanging up", edge.call_id)
            edge.end("malformed")
            return True
        return False


async def _close_when_done(ws: Any, conversation: asyncio.Task[str]) -> None:
    await asyncio.wait({conversation})
    if not ws.closed:
        await ws.close()
