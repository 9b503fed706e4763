"""Twilio's side of a call: the signed voice webhook, the TwiML, the signed media socket.

As Twilio does it (docs/telephony.md "Twilio Media Streams"): a form-encoded POST signed with
``X-Twilio-Signature`` (HMAC-SHA1 of the URL and the sorted form, keyed by the Auth Token; the
``twilio`` package's ``RequestValidator`` computes it when installed), then the TwiML answer's
``<Connect><Stream url>`` opened as a WebSocket whose upgrade is signed too, and the stream's
frames: ``connected``, ``start`` (with the ``<Parameter>``s), ``media`` (μ-law 8 kHz, 20 ms),
``mark`` echoes once played, ``dtmf``, ``stop``. The server's frames are read by the server's
own codec (runner/serve/codec_twilio.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

from runner import g711
from runner.carrier.line import Line
from runner.carrier.ring import CallRefused, RingOptions, unreachable
from runner.errors import VlrunError
from runner.serve import codec_twilio as codec
from runner.serve.codec_json import JsonError, loads_object

SIGNATURE = "X-Twilio-Signature"
ACCOUNT_SID = "AC" + "0" * 32
MAX_TWIML = 64 * 1024


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature`` for a POST of ``params`` to ``url``."""
    try:
        from twilio.request_validator import RequestValidator
    except ImportError:  # the same algorithm, as Twilio documents it
        data = url + "".join(k + params[k] for k in sorted(params))
        mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
        return base64.b64encode(mac.digest()).decode()
    return str(RequestValidator(auth_token).compute_signature(url, params))


def parse_twiml(xml: str) -> tuple[str, dict[str, str]]:
    """(stream URL, parameters) of a ``<Connect><Stream>`` answer; a ``<Reject>`` is
    :class:`CallRefused` with its reason."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise VlrunError(f"the voice webhook's answer is not TwiML ({exc})") from None
    reject = root.find("./Reject")
    if reject is not None:
        raise CallRefused(f"the call was refused: {reject.get('reason', 'rejected')}")
    stream = root.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise VlrunError("the voice webhook's TwiML has no <Connect><Stream url>")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return str(stream.get("url")), params


class TwilioCall:
    """One answered call's media stream."""

    def __init__(self, ws: Any, call_sid: str) -> None:
        self.ws = ws
        self.call_sid = call_sid
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.seq = 0
        self.line: Line | None = Line(8000, self._media, self._echo)
        self.close_code: int | None = None
        self._stopped = False

    def _frame(self, event: str, **body: Any) -> str:
        self.seq += 1
        return json.dumps(
            {"event": event, "sequenceNumber": str(self.seq), "streamSid": self.stream_sid, **body}
        )

    async def start(self, parameters: dict[str, str]) -> None:
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        await self.ws.send_str(json.dumps(connected))
        await self.ws.send_str(
            self._frame(
                "start",
                start={
                    "streamSid": self.stream_sid,
                    "accountSid": ACCOUNT_SID,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": codec.MULAW, "sampleRate": 8000, "channels": 1},
                },
            )
        )

    async def _media(self, pcm: bytes) -> None:
        chunk = self.seq + 1
        payload = base64.b64encode(g711.encode(pcm, "ulaw")).decode()
        await self.ws.send_str(
            self._frame(
                "media",
                media={
                    "track": "inbound",
                    "chunk": str(chunk),
                    "timestamp": str(chunk * 20),
                    "payload": payload,
                },
            )
        )

    async def _echo(self, name: str) -> None:
        await self.ws.send_str(self._frame("mark", mark={"name": name}))

    async def dtmf(self, digits: str) -> None:
        for digit in digits:
            await self.ws.send_str(
                self._frame("dtmf", dtmf={"track": "inbound_track", "digit": digit})
            )

    async def say_text(self, text: str) -> str:
        raise VlrunError("a Twilio call carries audio: say text with --say (espeak-ng)")

    async def hang_up(self) -> None:
        """The caller hangs up: ``stop``, then the socket closes."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            await self.ws.send_str(
                self._frame("stop", stop={"accountSid": ACCOUNT_SID, "callSid": self.call_sid})
            )
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def receive(self) -> None:
        """The server's frames, until the socket closes."""
        from aiohttp import WSMsgType

        line = self.line
        assert line is not None
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                event = codec.parse(msg.data)
                if isinstance(event, codec.Media):
                    line.hear(g711.decode(event.payload, "ulaw"))
                elif isinstance(event, codec.Mark):
                    line.mark(event.name)
                elif isinstance(event, codec.Malformed) and _event_name(msg.data) == "clear":
                    await line.clear()  # the codec reads what a caller sends; clear is ours
        finally:
            self.close_code = self.ws.close_code
            line.hung_up()


def _event_name(data: str) -> str:
    try:
        return str(loads_object(data, max_bytes=codec.MAX_FRAME_BYTES).get("event", ""))
    except JsonError:
        return ""


@contextlib.asynccontextmanager
async def ring(url: str, auth_token: str, options: RingOptions) -> AsyncIterator[TwilioCall]:
    """Ring ``url`` (the voice webhook) and open the media stream; hangs up on the way out."""
    import asyncio

    import aiohttp

    call_sid = "CA" + uuid.uuid4().hex
    form = {
        "CallSid": call_sid,
        "AccountSid": ACCOUNT_SID,
        "From": options.caller,
        "To": options.called,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    timeout = aiohttp.ClientTimeout(total=options.connect_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.post(
                url, data=form, headers={SIGNATURE: signature(auth_token, url, form)}
            ) as response:
                text = (await response.content.read(MAX_TWIML)).decode(errors="replace")
                status = response.status
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise unreachable(url, exc) from None
        if status == 403:
            raise CallRefused(
                "the call was refused: 403 (the signature did not match)",
                hint="give the serve file's twilio.auth_token with --auth-token or "
                "TWILIO_AUTH_TOKEN, and the URL exactly as the server's public_url names it",
            )
        if status == 404:
            raise CallRefused(
                f"the call was refused: 404 (no Twilio voice webhook at {url})",
                hint="the URL is http://HOST:PORT/twilio/voice[/ROUTE], and the serve file "
                "needs a twilio: section",
            )
        if status != 200:
            raise CallRefused(f"the call was refused: HTTP {status} {text[:120]!r}")
        stream_url, parameters = parse_twiml(text)
        headers = {SIGNATURE: signature(auth_token, stream_url, {})}
        try:
            ws = await http.ws_connect(stream_url, headers=headers, max_msg_size=2**20)
        except aiohttp.WSServerHandshakeError as exc:
            raise CallRefused(f"the media socket was refused: HTTP {exc.status}") from None
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise unreachable(stream_url, exc) from None
        call = TwilioCall(ws, call_sid)
        reader = asyncio.create_task(call.receive(), name="vlrun-ring-twilio")
        try:
            await call.start(parameters)
            yield call
        finally:
            await call.hang_up()
            from runner.aio import cancel_and_wait

            await cancel_and_wait(reader, timeout=2)
        if call.close_code == 1008 and call.line is not None and not call.line.received:
            raise CallRefused("the media stream was refused (closed with 1008: token or signature)")
