"""Twilio Media Streams: the voice webhook (TwiML ``<Connect><Stream>``) and the media socket.

Protocol (Twilio's Media Streams docs, the ``twilio`` package; facts with sources in
docs/telephony.md):
- ``POST /twilio/voice[/ROUTE]``: a form-encoded voice webhook signed with ``X-Twilio-Signature``
  (checked by the package's ``RequestValidator`` against the public URL). The answer is TwiML
  that connects the call to ``wss://…/twilio/media`` with the route and a short-lived token as
  ``<Parameter>``s (Twilio allows no query string on a stream URL). Past capacity or while
  draining the answer is ``<Reject reason="busy"/>``, Twilio's way to refuse a call.
- ``/twilio/media``: JSON text frames. In: ``connected``, ``start`` (streamSid, callSid,
  customParameters, mediaFormat), ``media`` (base64 μ-law 8 kHz), ``mark`` (an echo of ours,
  once the audio before it has played), ``dtmf``, ``stop``. Out: ``media``, ``mark``, ``clear``.
  The upgrade request is signed too; it is checked against the ``wss://`` URL.

No media frame is decoded: the session runs μ-law 8 kHz both ways, so what Twilio sends is what
Voice Live hears. With ``<Connect><Stream>``, closing the socket ends the stream, and the call
with it (nothing follows the ``<Connect>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runner.config.serve_file import TwilioSettings
from runner.live.audio import AudioFormat
from runner.serve import codec_twilio as codec
from runner.serve.calls import OUTBOUND_FRAME_MS, CallEdge, CallSource, MarkedPlayer
from runner.serve.calls_log import call_id_var
from runner.serve.http import TooLarge, read_body
from runner.serve.supervisor import Refused
from runner.serve.telephony import Phones, route_name
from runner.serve.ws_batch import BatchedSocket
from runner.serve.ws_media import MediaSocket, taker

log = logging.getLogger("vlrun.serve.twilio")

MULAW = AudioFormat(8000, 1, 1)
MAX_WEBHOOK_BYTES = 64 * 1024  # Twilio's voice webhook form is a few KB
MAX_FRAME_BYTES = codec.MAX_FRAME_BYTES
START_TIMEOUT_S = 10.0  # connected + start come at once; a socket that says nothing is closed
TOKEN_TTL_S = 300.0
# A media socket holding this much unsent output (its peer stopped reading) is skipped by the
# clock until it drains: about two seconds of frames.
BACKLOG_BYTES = 32 * 1024  # webhook -> media socket; Twilio connects within a second or two
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")  # Twilio's Call SID: CA + 32 hex digits
SIGNATURE = "X-Twilio-Signature"
SIGNATURE_SETTINGS = "X-Twilio-Webhooks-Signature-Settings"


def _twilio() -> Any:
    from runner.serve.metrics import INSTALL_HINT

    try:
        from twilio import request_validator
        from twilio.twiml import voice_response
    except ImportError:
        from runner.errors import VlrunError

        raise VlrunError("the twilio package is not installed", hint=INSTALL_HINT) from None
    return request_validator, voice_response


def public_url(request: Any, base: str | None, *, websocket: bool = False) -> str:
    """The URL Twilio called, as it signed it: the configured public base + path and query."""
    if base:
        parts = urlsplit(base)
        prefix = parts.path.rstrip("/")
        url = urlunsplit(
            (parts.scheme, parts.netloc, prefix + request.path, request.query_string, "")
        )
    else:
        url = str(request.url)
    if websocket:
        scheme, sep, rest = url.partition("://")
        url = ("wss" if scheme == "https" else "ws" if scheme == "http" else scheme) + sep + rest
    return url


class Signatures:
    """``X-Twilio-Signature`` checks, and the token that ties a media socket to its webhook."""

    def __init__(self, settings: TwilioSettings) -> None:
        request_validator, _ = _twilio()
        self._module = request_validator
        self._validator = request_validator.RequestValidator(settings.auth_token)
        self._key = hashlib.sha256(b"vlrun-twilio-stream:" + settings.auth_token.encode()).digest()

    def valid(self, url: str, params: Any, headers: Any) -> bool:
        signature = headers.get(SIGNATURE)
        if not signature:
            return False
        algorithm = self._module.get_signature_algorithm(headers.get(SIGNATURE_SETTINGS))
        return bool(self._validator.validate(url, params, signature, algorithm))

    def token(self, call_sid: str, route: str, now: float | None = None) -> str:
        stamp = str(int(now if now is not None else time.time()))
        mac = hmac.new(self._key, f"{call_sid}|{route}|{stamp}".encode(), hashlib.sha256)
        return f"{stamp}.{mac.hexdigest()}"

    def token_ok(self, token: str, call_sid: str, route: str) -> bool:
        stamp, _, _ = token.partition(".")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > TOKEN_TTL_S:
            return False
        return hmac.compare_digest(self.token(call_sid, route, float(stamp)), token)


class TwilioTransport:
    """Outbound frames of one stream (built by the codec); only the media clock writes, a
    refill's frames and marks in one socket write (:class:`BatchedSocket`)."""

    def __init__(self, ws: Any, stream_sid: str, transport: Any) -> None:
        self.frames = codec.StreamEncoder(stream_sid)
        self.out = BatchedSocket(ws, transport, BACKLOG_BYTES)
        self.writable = self.out.writable
        self.flush = self.out.flush

    async def send_audio(self, frame: bytes | memoryview) -> None:
        self.out.add(self.frames.media_bytes(frame))  # bytes: never a str to encode again

    async def send_mark(self, name: str) -> None:
        self.out.add(self.frames.mark(name).encode())

    async def send_clear(self) -> None:
        self.out.add(self.frames.clear().encode())


class TwilioEdge:
    """The aiohttp side of the Twilio edge."""

    def __init__(self, phones: Phones, settings: TwilioSettings, base_url: str | None) -> None:
        self.phones = phones
        self.settings = settings
        self.base_url = base_url
        self.signatures = Signatures(settings)
        self.metrics = phones.metrics
        _, self._twiml = _twilio()

    def add_routes(self, app: Any) -> None:
        app.router.add_post("/twilio/voice", self.voice)
        app.router.add_post("/twilio/voice/{route}", self.voice)
        app.router.add_get("/twilio/media", self.media)

    # ------------------------------------------------------------------ voice webhook

    async def voice(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = await read_body(request, MAX_WEBHOOK_BYTES)
        except TooLarge:
            return web.Response(status=413, text="too large")
        from urllib.parse import parse_qsl

        from multidict import MultiDict

        form = MultiDict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        url = public_url(request, self.base_url)
        if not self.signatures.valid(url, form, request.headers):
            log.warning(
                "twilio voice webhook refused: missing or bad %s (from %s, url %s)",
                SIGNATURE,
                request.remote,
                url,
            )
            self.metrics.refused("twilio", "forbidden")
            return web.Response(status=403, text="forbidden")
        call_sid = form.get("CallSid", "")
        called = form.get("To", "")
        if not _CALL_SID.fullmatch(call_sid):
            log.warning("twilio voice webhook refused: no valid CallSid")
            self.metrics.refused("twilio", "refused")
            return web.Response(status=400, text="no CallSid")
        route = self.phones.route(path=request.match_info.get("route"), called=called)
        response = self._twiml.VoiceResponse()
        if route is None:
            log.warning("twilio call %s: no route answers it; rejected", call_sid)
            self.metrics.refused("twilio", "refused")
            response.reject(reason="rejected")
            return web.Response(text=str(response), content_type="text/xml")
        try:
            # The slot is held from this moment: a burst of webhooks cannot all be answered.
            self.phones.reserve("twilio", call_sid)
        except Refused as exc:
            log.info("twilio call %s refused: %s", call_sid, exc.message)
            response.reject(reason="busy" if exc.reason != "duplicate" else "rejected")
            return web.Response(text=str(response), content_type="text/xml")
        name = route_name(route)
        stream = response.connect().stream(
            url=public_url(request, self.base_url, websocket=True).split("/twilio/")[0]
            + "/twilio/media"
        )
        stream.parameter(name="route", value=name)
        stream.parameter(name="token", value=self.signatures.token(call_sid, name))
        stream.parameter(name="from", value=form.get("From", ""))
        stream.parameter(name="to", value=called)
        log.info("twilio call %s: connecting the media stream", call_sid)
        return web.Response(text=str(response), content_type="text/xml")

    # ------------------------------------------------------------------ media socket

    async def media(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        url = public_url(request, self.base_url, websocket=True)
        if not self.signatures.valid(url, {}, request.headers):
            log.warning("twilio media socket refused: missing or bad %s (url %s)", SIGNATURE, url)
            self.metrics.refused("twilio", "forbidden")
            return web.Response(status=403, text="forbidden")
        # No permessage-deflate: compressing 20 ms of audio costs more than sending it. The
        # heartbeat notices a peer that is gone without closing (no pong: the socket closes).
        ws = MediaSocket(
            max_msg_size=MAX_FRAME_BYTES, compress=False, heartbeat=self.phones.heartbeat_s
        )
        await ws.prepare(request)
        try:
            start = await asyncio.wait_for(self._until_start(ws), START_TIMEOUT_S)
        except (asyncio.TimeoutError, ValueError) as exc:
            log.warning("twilio media socket closed: no valid start (%s)", exc)
            await ws.close(code=1008, message=b"no start")
            return ws
        params = start.custom_parameters
        call_sid = start.call_sid
        route_name = params.get("route", "")
        if not self.signatures.token_ok(params.get("token", ""), call_sid, route_name):
            log.warning("twilio media socket for %s refused: bad or expired stream token", call_sid)
            self.metrics.refused("twilio", "forbidden")
            await ws.close(code=1008, message=b"forbidden")
            return ws
        route = self.phones.route_named(route_name)
        if route is None:
            await ws.close(code=1008, message=b"no route")
            return ws
        try:
            # one session per call id on this worker, ever; the stream token says a worker
            # answered the webhook (behind a load balancer, maybe another one)
            slot = self.phones.claim("twilio", call_sid, unreserved_ok=True)
        except Refused as exc:
            log.warning("twilio media socket for %s refused: %s", call_sid, exc.message)
            await ws.close(code=1008, message=b"duplicate")
            return ws
        stream_sid = start.stream_sid
        player = MarkedPlayer(MULAW, frame_ms=OUTBOUND_FRAME_MS)
        player.transport = TwilioTransport(ws, stream_sid, request.transport)
        edge = CallEdge(
            "twilio",
            CallSource(MULAW),
            player,
            caller=params.get("from", ""),
            called=params.get("to", ""),
            provider_call_id=call_sid,
        )
        call_id_var.set(edge.call_id)

        async def hang_up() -> None:
            await ws.close()  # ends <Connect><Stream>; nothing follows it, so the call ends

        edge.hang_up = hang_up
        edge.transfer = self._transfer(call_sid)  # Media Streams cannot send DTMF: none
        log.info("call %s is twilio %s (stream %s)", edge.call_id, call_sid, stream_sid)
        conversation = asyncio.create_task(
            self.phones.converse(edge, route, slot=slot, rate=8000),
            name=f"vlrun-twilio-{edge.call_id}",
        )
        self.phones.clock.add(player)  # the worker's one media clock sends its frames
        try:
            await self._read(ws, edge, player, conversation, WSMsgType)
        finally:
            if not edge.ended.is_set():
                edge.end("dropped")
            with contextlib.suppress(Exception):
                await conversation  # its own failures are logged and counted by converse
            player.close()  # off the clock
            if player.error is not None:
                log.info("call %s: outbound stopped: %s", edge.call_id, player.error)
            self.metrics.dropout("twilio", "stale_mark", player.stale_marks)
            if not ws.closed:
                await ws.close()
        return ws

    def _transfer(self, call_sid: str) -> Any:
        """Redirect the live call to TwiML that dials the target (Twilio's REST Call update)."""

        async def transfer(target: str) -> None:
            if not self.settings.account_sid:
                raise RuntimeError("transfers need twilio.account_sid in serve.yaml")
            from twilio.rest import Client

            response = self._twiml.VoiceResponse()
            dial = response.dial()
            if target.startswith("sip"):
                dial.sip(target)
            else:
                dial.number(target)
            client = Client(self.settings.account_sid, self.settings.auth_token)
            # the twilio client is synchronous: its HTTP request runs off the event loop
            await asyncio.to_thread(lambda: client.calls(call_sid).update(twiml=str(response)))

        return transfer

    async def _until_start(self, ws: Any) -> codec.Start:
        async for msg in ws:
            event = codec.parse(msg.data) if isinstance(msg.data, str) else None
            if isinstance(event, codec.Start):
                return event
            if isinstance(event, codec.Connected):
                continue
            if isinstance(event, codec.Malformed):
                raise ValueError(event.reason)
            raise ValueError(f"{type(event).__name__ if event else 'a binary frame'} before start")
        raise ValueError("closed before start")

    async def _read(
        self,
        ws: Any,
        edge: CallEdge,
        player: MarkedPlayer,
        conversation: asyncio.Task[str],
        msg_types: Any,
    ) -> None:
        stopper = asyncio.create_task(_closer(ws, conversation), name="vlrun-twilio-closer")
        feed, parse, text = edge.source.feed, codec.parse, msg_types.TEXT

        def media(event: codec.Media) -> None:
            if event.inbound:  # only the caller's side is speech for the assistant
                feed(event.payload)

        ws.on_text = taker(parse, codec.Media, media)  # the caller's media, 50 a second
        try:
            async for msg in ws:
                if msg.type != text:
                    if self._bad(edge, "not a text frame", msg.type):
                        return
                    continue
                event = parse(msg.data)
                if type(event) is codec.Media:  # 50 a second: the first, cheapest test
                    if event.inbound:  # only the caller's side is speech for the assistant
                        feed(event.payload)
                elif isinstance(event, codec.Mark):
                    player.mark_echoed(event.name)
                elif isinstance(event, codec.Dtmf):
                    edge.on_dtmf(event.digit)
                elif isinstance(event, codec.Stop):
                    edge.end("caller_hung_up")
                    return
                elif isinstance(event, codec.Malformed) and self._bad(
                    edge, event.reason, event.sample
                ):
                    return
            if not edge.ended.is_set() and not conversation.done():
                self.metrics.dropout("twilio", "socket_closed")
                edge.end("dropped")
        finally:
            ws.on_text = None
            stopper.cancel()
            await asyncio.wait({stopper})

    def _bad(self, edge: CallEdge, reason: str, sample: Any) -> bool:
        self.metrics.dropout("twilio", "malformed_frame")
        if edge.bad_frame(reason, sample):
            log.warning("call %s: too many malformed frames; hanging up", edge.call_id)
            edge.end("malformed")
            return True
        return False


async def _closer(ws: Any, conversation: asyncio.Task[str]) -> None:
    """When the conversation ends on our side, close the socket (which ends the call)."""
    await asyncio.wait({conversation})
    if not ws.closed:
        await ws.close()
