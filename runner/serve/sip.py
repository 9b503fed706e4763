"""Voice Live's own SIP calls (preview, api-version 2026-07-31-preview) on `vlrun serve`.

Voice Live answers the SIP call itself and carries its media; vlrun decides and steers:
1. Voice Live posts ``realtime.call.incoming`` to ``/sip/webhook[/NAME]``, signed with the
   webhook's ``whsec_`` secret (checked here; a bad or missing signature gets 403 and nothing
   starts).
2. vlrun rejects the call (486 busy) when it has no room, else accepts it with the route's
   compiled agent configuration,
3. attaches a WebSocket to the call (``audio=false``) and runs the call's conversation over
   it: tools, flows, transcript, metrics and drain, as on the other edges.
4. ``hang_up`` and ``transfer`` become the API's hangup and REFER; ``send_dtmf`` is a tool error.

The signature scheme is inferred: the spec's webhook object mirrors Azure OpenAI's, whose
deliveries are signed the Standard Webhooks way (telephony-protocols.md §3.2).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from runner import speedups
from runner.config.serve_file import SIP_API_VERSION as API_VERSION
from runner.config.serve_file import SipSettings
from runner.errors import AuthError
from runner.live.audio import AudioFormat
from runner.redact import register_secret
from runner.serve.calls import CallEdge, CallSource
from runner.serve.codec_json import JsonError, loads_any
from runner.serve.http import TooLarge, read_body
from runner.serve.supervisor import Refused
from runner.serve.telephony import Phones

log = logging.getLogger("vlrun.serve.sip")

PREFIX = "/voice-agent/realtime/sip"
SCOPE = "https://cognitiveservices.azure.com/.default"  # the spec's only auth scheme
TOLERANCE_S = 300  # how far a webhook's timestamp may be from now (Azure OpenAI's SDK: 300 s)
MAX_WEBHOOK_BYTES = 64 * 1024
TRANSFER_WAIT_S = 60.0  # REFER completes only by an event (no polling URL in the spec)
EMULATOR_TOKEN = "vlrun-emulator-placeholder"  # a local vlrun emulator checks no Entra token
_FORMAT = AudioFormat(rate=24000)  # nothing flows: Voice Live carries the call's media


class SipApiError(RuntimeError):
    """The SIP API refused a request: its problem body's code and detail."""


def signature_ok(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """A Standard Webhooks signature: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not (msg_id and stamp.isdigit() and given and secret):
        return False
    if abs(now - int(stamp)) > TOLERANCE_S:
        return False  # a replay, or a clock far off
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return False
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    # several signatures, space-separated, while a rotated secret is in its grace period
    return any(hmac.compare_digest(expected, part) for part in given.split())


def incoming_call(body: Any) -> str | None:
    """The call id of a ``realtime.call.incoming`` event (bare, or in an event envelope)."""
    if not isinstance(body, dict):
        return None
    event = body.get("data") if body.get("object") == "event" else body
    kind = body.get("type")
    if kind != "realtime.call.incoming" or not isinstance(event, dict):
        return None
    call_id = event.get("call_id")
    return call_id if isinstance(call_id, str) and 1 <= len(call_id) <= 256 else None


class SilentPlayer:
    """The player of a call whose audio Voice Live plays itself: nothing to send or count."""

    fmt = _FORMAT
    sink: Any = None

    def write(self, item_id: str, pcm: bytes) -> None:
        """No audio reaches vlrun on a SIP call (the socket is attached with audio=false)."""

    def interrupt(self) -> tuple[str | None, int]:
        return None, 0  # Voice Live truncates what the caller heard itself

    def played_ms(self) -> int:
        return 0

    def pending_ms(self) -> float:
        return 0.0

    async def drain(self) -> None:
        """Nothing is queued here."""

    def close(self) -> None:
        """Nothing to release."""

    def flush(self) -> None:
        """No frame delays to report."""


class AttachedSocket:
    """The live session's connection for a SIP call: the WebSocket attached to the call.

    It reads and sends like the SDK's connection (raw frames in, events out), and hands the
    call's own events (``realtime.call.*``) to the edge before the session sees them.
    """

    def __init__(self, ws: Any, on_call_event: Callable[[dict[str, Any]], None]) -> None:
        self.ws = ws
        self.on_call_event = on_call_event
        self.call_over = False  # Voice Live said the call ended: its socket closes next

    async def recv_bytes(self) -> bytes:
        from aiohttp import WSMsgType
        from azure.ai.voicelive.aio import ConnectionClosed

        msg = await self.ws.receive()
        if msg.type == WSMsgType.TEXT:
            data = msg.data.encode()
            if b'"realtime.call.' in data:
                with contextlib.suppress(ValueError):
                    event = speedups.loads(data)
                    if isinstance(event, dict):
                        self.call_over |= event.get("type") == "realtime.call.disconnected"
                        self.on_call_event(event)
            return data
        if msg.type == WSMsgType.BINARY:
            return bytes(msg.data)
        if self.call_over:
            # The end of the call, not a drop to recover from: the edge has ended the call,
            # and the session, told so, cancels this read.
            await asyncio.Event().wait()
        raise ConnectionClosed(self.ws.close_code or 1006, str(msg.extra or "closed"))

    async def send(self, event: Any) -> None:
        data = event if isinstance(event, Mapping) else event.as_dict()
        await self.ws.send_str(speedups.dumps(dict(data)))


class SipEdge:
    """The ``/sip/webhook`` route and the calls it answers."""

    def __init__(self, phones: Phones, settings: SipSettings) -> None:
        self.phones = phones
        self.settings = settings
        self.metrics = phones.metrics
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transfers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # a transfer's outcome can arrive on the socket before the REFER's HTTP answer
        self._outcomes: dict[str, dict[str, Any]] = {}
        self._local: bool | None = None

    def add_routes(self, app: Any) -> None:
        app.router.add_post("/sip/webhook", self.webhook)
        app.router.add_post("/sip/webhook/{route}", self.webhook)
        log.info(
            "voicelive_sip (preview, api-version %s): webhook signatures are checked the "
            "Standard Webhooks way, inferred from Azure OpenAI's SIP webhooks",
            API_VERSION,
        )

    async def close(self) -> None:
        """Wait for the calls' tasks (the drain has ended them already)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ the webhook

    async def webhook(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = await read_body(request, MAX_WEBHOOK_BYTES)
        except TooLarge:
            return web.Response(status=413, text="too large")
        if not signature_ok(self.settings.webhook_secret, request.headers, body, time.time()):
            log.warning(
                "voicelive sip webhook refused: missing, bad or stale webhook-signature (from %s)",
                request.remote,
            )
            self.metrics.refused("sip", "forbidden")
            return web.Response(status=403, text="forbidden")
        try:
            event = loads_any(body, max_bytes=MAX_WEBHOOK_BYTES)
        except JsonError as exc:  # too deep or not JSON: said, never a crash
            return web.Response(status=exc.status, text=exc.message)
        call_id = incoming_call(event)
        if call_id is None:
            return web.json_response({"ignored": True})  # another event type: nothing to do
        route = self.phones.route(path=request.match_info.get("route"))
        if route is None:
            log.info("sip call %s refused: no route answers it", call_id)
            self.metrics.refused("sip", "refused")
            self._spawn(self._reject(call_id, 404, "not found"), f"vlrun-sip-reject-{call_id}")
            return web.json_response({"received": True})
        try:
            slot = self.phones.reserve("sip", call_id)
        except Refused as exc:
            if exc.reason == "duplicate":  # a delivery replayed: the call is answered once
                log.info("sip call %s: delivered again; answered already", call_id)
                return web.json_response({"received": True})
            log.info("sip call %s refused: %s", call_id, exc.message)
            self._spawn(self._reject(call_id, 486, "busy"), f"vlrun-sip-reject-{call_id}")
            return web.json_response({"received": True})
        self._spawn(self._answer(call_id, route, slot), f"vlrun-sip-{call_id}")
        return web.json_response({"received": True})

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception())

    # ------------------------------------------------------------------ one call

    async def _reject(self, call_id: str, code: int, reason: str) -> None:
        await self._api(f"/calls/{call_id}/reject", {"status_code": code, "reason": reason})

    async def _answer(self, call_id: str, route: Any, slot: Any) -> None:
        try:
            # The profile compiled for the api-version this edge speaks, not the one the
            # profile pins for its own connection.
            prepared = self.phones.prepared(route, API_VERSION)
            session = dict(prepared.payload.get("session", {}))
            # source: VLS CallAccept example (an agent configuration shaped like the session)
            config = {"model": prepared.target.model, **session}
            await self._api(f"/calls/{call_id}/accept", config)
            slot = self.phones.claim("sip", call_id)
        except Exception as exc:  # the call may have expired or gone: nothing to run
            log.warning("sip call %s could not be accepted: %s", call_id, exc)
            self.metrics.refused("sip", "failed")
            self.phones.release(slot)
            return
        player: Any = SilentPlayer()
        edge = CallEdge(provider="sip", source=CallSource(_FORMAT), player=player)
        edge.provider_call_id = call_id
        edge.opener = self._opener(call_id, edge)
        edge.hang_up = lambda: self._hang_up(call_id)
        edge.transfer = lambda target: self._transfer(call_id, target)
        log.info("call %s is voicelive sip %s", edge.call_id, call_id)
        await self.phones.converse(edge, route, slot=slot, api_version=API_VERSION)

    def _opener(self, call_id: str, edge: CallEdge) -> Any:
        @contextlib.asynccontextmanager
        async def open_attached(*_args: Any, **_kwargs: Any) -> AsyncIterator[AttachedSocket]:
            import aiohttp

            url = self._url(f"/calls?api-version={API_VERSION}&call_id={call_id}&audio=false")
            url = url.replace("https://", "wss://").replace("http://", "ws://")
            headers = {"Authorization": f"Bearer {await self._token()}"}
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(
                    url,
                    headers=headers,
                    max_msg_size=2**24,
                    heartbeat=self.phones.heartbeat_s,  # a silent Voice Live is noticed
                ) as ws,
            ):
                yield AttachedSocket(ws, lambda event: self._call_event(edge, event))

        return open_attached

    def _call_event(self, edge: CallEdge, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "realtime.call.disconnected":
            reason = event.get("terminal_reason")
            log.info("sip call %s disconnected (%s)", edge.call_id, reason)
            edge.end("completed" if reason == "TransferSucceeded" else "caller_hung_up")
        elif kind == "realtime.call.failed":
            edge.end("dropped")
        elif kind in ("realtime.call.transfer.succeeded", "realtime.call.transfer.failed"):
            transfer_id = str(event.get("transfer_id"))
            waiter = self._transfers.pop(transfer_id, None)
            if waiter is None:
                if len(self._outcomes) > 1000:  # never claimed: bounded all the same
                    self._outcomes.clear()
                self._outcomes[transfer_id] = event
            elif not waiter.done():
                waiter.set_result(event)

    async def _hang_up(self, call_id: str) -> None:
        await self._api(f"/calls/{call_id}/hangup", {"reason": "call_completed"})

    async def _transfer(self, call_id: str, target: str) -> None:
        """A blind transfer (REFER); done once Voice Live says the transfer succeeded."""
        uri = target if target.startswith(("sip:", "sips:")) else f"tel:{target}"
        answer = await self._api(f"/calls/{call_id}/refer", {"target_uri": uri})
        transfer_id = str(answer.get("transfer_id"))
        event = self._outcomes.pop(transfer_id, None)
        if event is None:
            waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._transfers[transfer_id] = waiter
            try:
                event = await asyncio.wait_for(waiter, TRANSFER_WAIT_S)
            finally:
                self._transfers.pop(transfer_id, None)
        if event.get("type") != "realtime.call.transfer.succeeded":
            detail = event.get("reason") or "no reason given"
            raise SipApiError(f"the transfer to {uri} failed ({event.get('sip_code')}: {detail})")

    # ------------------------------------------------------------------ the SIP API

    def _url(self, path: str) -> str:
        return str(self.phones.endpoint or "").rstrip("/") + PREFIX + path

    async def _api(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        url = self._url(path)
        headers = {"Authorization": f"Bearer {await self._token()}"}
        timeout = aiohttp.ClientTimeout(total=15)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, params={"api-version": API_VERSION}, json=body, headers=headers) as r,
        ):
            text = await r.text()
            status = r.status
        try:
            data = speedups.loads(text) if text.strip() else {}
        except ValueError:
            data = {}
        if status >= 400:
            code = data.get("code") if isinstance(data, dict) else None
            detail = data.get("detail") if isinstance(data, dict) else None
            what = path.rsplit("/", 1)[-1]
            raise SipApiError(f"{what}: {status} {code or ''}: {detail or text[:200]}")
        return data if isinstance(data, dict) else {}

    async def _token(self) -> str:
        """An Entra bearer token, the spec's only scheme (a local vlrun emulator needs none)."""
        from runner.live.connect import _is_local_emulator

        credential = self.phones.some_credential()
        if hasattr(credential, "get_token"):
            token = (await credential.get_token(SCOPE)).token
            register_secret(token)
            return str(token)
        if self._local is None:
            self._local = await _is_local_emulator(str(self.phones.endpoint or ""))
        if self._local:
            return EMULATOR_TOKEN
        raise AuthError(
            "Voice Live SIP (preview) accepts Microsoft Entra tokens only, not an API key",
            hint="unset AZURE_VOICELIVE_API_KEY so vlrun signs in with DefaultAzureCredential",
        )
