"""Voice Live SIP calls (api-version 2026-07-31-preview), as the emulator plays the service.

The service answers a SIP call itself and asks the application what to do: it posts
``realtime.call.incoming`` to the registered webhooks, the application accepts (with an
agent configuration) or rejects it over HTTPS, attaches a WebSocket to steer the
conversation, and may transfer (REFER) or hang up. The emulator keeps the same surface under
``/voice-agent/realtime/sip/``, with the spec's state machine and RFC 7807 problem bodies.

No SIP trunk reaches the emulator, so a *test-only* caller stands in for the phone
(``/_emulator/sip/...``): it rings (``POST /_emulator/sip/calls``), speaks text turns
(``.../say``) and hangs up (``.../hangup``). Each assumption is a ``fidelity:`` note.

Sources: Azure/azure-rest-api-specs ``specification/ai/data-plane/VoiceLiveSip`` (routes.tsp,
models.tsp, the 2026-07-31-preview examples) and ``VoiceLive.json``'s ``realtime.call.*`` events
(shared/reference/telephony-protocols.md §3, tags VLS and VLE); the webhook signature from
Azure OpenAI's SIP webhooks (tag OAI), which the spec's ``webhook.endpoint`` object mirrors.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from runner import speedups
from runner.emulator import protocol as P
from runner.emulator.outbox import HEARTBEAT_S

if TYPE_CHECKING:
    from runner.emulator.connection import Connection
    from runner.emulator.fidelity import Fidelity
    from runner.emulator.record import SessionRecord

    class Converse(Protocol):
        """``Emulator.converse``: one Voice Live session on a prepared socket."""

        def __call__(
            self,
            ws: web.WebSocketResponse,
            request: web.Request,
            *,
            model: str | None,
            agent: dict[str, Any] | None,
            api_version: str,
            opened: Callable[[Connection], Awaitable[None]] | None = None,
        ) -> Awaitable[None]: ...


API_VERSION = "2026-07-31-preview"
PREFIX = "/voice-agent/realtime/sip"
DECISION_TIMEOUT_S = 30.0  # unknown in the spec: fidelity note "sip-decision-timeout"
ROTATE_GRACE_S = 24 * 3600.0  # unknown in the spec: the old secret still signs meanwhile
MAX_BODY = 256 * 1024


@dataclass
class Webhook:
    id: str
    url: str
    name: str = ""
    event_types: list[str] = field(default_factory=lambda: ["*"])
    support_info: dict[str, Any] | None = None
    enabled: bool = True
    created_at: int = field(default_factory=lambda: int(time.time()))
    updated_at: int = field(default_factory=lambda: int(time.time()))
    # (secret, valid until): the newest first; a rotated one signs until its grace ends
    secrets: list[tuple[str, float]] = field(default_factory=list)

    def public(self, *, with_secret: bool = False) -> dict[str, Any]:
        current = self.secrets[0][0]
        body: dict[str, Any] = {
            "object": "webhook.endpoint",
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "event_types": self.event_types,
            "support_info": self.support_info,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "signing_secret_hint": current[:6] + "…" + current[-4:],
        }
        # source: docs/emulator.md#sip-secret-once (VLS models.tsp: on create and rotate only)
        if with_secret:
            body["signing_secret"] = current
        return body

    def signing_keys(self) -> list[str]:
        now = time.time()
        return [s for s, until in self.secrets if until > now]


@dataclass(eq=False)
class SipCall:
    call_id: str
    chain_id: str
    state: str = "WaitingForCustomer"
    terminal_reason: str | None = None
    transfer_outcome: str = "succeeded"
    config: dict[str, Any] | None = None
    session_id: str = ""
    ws: web.WebSocketResponse | None = None
    conn: Connection | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # realtime.call.* sent
    refer_targets: list[str] = field(default_factory=list)
    hangup_reasons: list[str] = field(default_factory=list)
    # What the caller's side can know of the replies (the test-only caller's status): the
    # session's record, how far it has been read, and what it said.
    record: SessionRecord | None = None
    said_at: list[int] = field(default_factory=list)  # len(record.sent) at each caller turn
    replies: list[dict[str, Any]] = field(default_factory=list)  # the last MAX_REPLIES spoken
    replied: int = 0  # the latest caller turn whose reply has finished
    _read: int = 0
    _open: dict[str, int] = field(default_factory=dict)  # response id -> caller turns before it

    def follow(self) -> None:
        """Read the session's new server events: which responses run, which have ended."""
        sent = self.record.sent if self.record is not None else []
        for event in sent[self._read :]:
            kind = event.get("type")
            response = event.get("response") or {}
            if kind == "response.created":
                self._open[str(response.get("id"))] = self._turns_before(self._read)
            elif kind == "response.done":
                turn = self._open.pop(str(response.get("id")), 0)
                text = spoken_text(response.get("output") or [])
                if text is None:  # a tool call, not words: the turn's reply is still to come
                    self._read += 1
                    continue
                self.replies.append({"turn": turn, "text": text, "status": response.get("status")})
                del self.replies[:-MAX_REPLIES]
                self.replied = max(self.replied, turn)
            self._read += 1

    def _turns_before(self, index: int) -> int:
        return sum(1 for at in self.said_at if at <= index)

    def status(self) -> dict[str, Any]:
        self.follow()
        return {
            "call_id": self.call_id,
            "state": self.state,
            "terminal_reason": self.terminal_reason,
            "refer_targets": self.refer_targets,
            "hangup_reasons": self.hangup_reasons,
            "attached": self.ws is not None and not self.ws.closed,
            # source: docs/telephony.md#the-emulators-sip-caller (vlrun's test-only caller)
            "turns": len(self.said_at),
            "responding": bool(self._open),
            "replied": self.replied,
            "replies": self.replies,
        }


#: Finished replies a call's status keeps (the latest).
MAX_REPLIES = 50


def spoken_text(output: list[Any]) -> str | None:
    """What a response said (its message parts' words), or None when it said nothing (a
    response that only calls tools)."""
    words = None
    for item in output:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if isinstance(part, dict):
                text = part.get("transcript") if "transcript" in part else part.get("text")
                words = (words + " " if words else "") + str(text or "")
    return None if words is None else words.strip()


def sign(secret: str, msg_id: str, stamp: int, body: bytes) -> str:
    """A Standard Webhooks ``v1,<base64 HMAC-SHA256>`` signature with a ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class SipDesk:
    """The SIP surface of one emulator: webhooks, calls and their attached sockets."""

    def __init__(
        self,
        converse: Converse,
        fidelity: Fidelity,
        *,
        decision_timeout_s: float = DECISION_TIMEOUT_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._converse = converse  # the emulator's: runs a session on an attached socket
        self.heartbeat_s = heartbeat_s  # an attached socket is pinged as the others are
        self._fidelity = fidelity
        self.decision_timeout_s = decision_timeout_s
        self.webhooks: dict[str, Webhook] = {}
        self.calls: dict[str, SipCall] = {}
        self.deliveries: list[dict[str, Any]] = []  # what each webhook POST answered
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()

    def moved(self) -> None:
        """A call changed (state, events): wake whoever waits in :meth:`until`."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait until a condition on the calls holds (tests)."""

        async def wait() -> None:
            while not predicate():
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post(PREFIX + "/webhooks", self._guard(self._create_webhook))
        r.add_get(PREFIX + "/webhooks", self._guard(self._list_webhooks))
        r.add_get(PREFIX + "/webhooks/{id}", self._guard(self._get_webhook))
        r.add_post(PREFIX + "/webhooks/{id}", self._guard(self._update_webhook))
        r.add_delete(PREFIX + "/webhooks/{id}", self._guard(self._delete_webhook))
        r.add_post(PREFIX + "/webhooks/{id}/rotate_secret", self._guard(self._rotate))
        r.add_post(PREFIX + "/calls/{call_id}/accept", self._guard(self._accept))
        r.add_post(PREFIX + "/calls/{call_id}/reject", self._guard(self._reject))
        r.add_post(PREFIX + "/calls/{call_id}/refer", self._guard(self._refer))
        r.add_post(PREFIX + "/calls/{call_id}/hangup", self._guard(self._hangup))
        r.add_get(PREFIX + "/calls", self._guard(self._attach))
        # the emulator's own caller (no SIP trunk reaches it)
        r.add_post("/_emulator/sip/calls", self._ring)
        r.add_get("/_emulator/sip/calls/{call_id}", self._status)
        r.add_post("/_emulator/sip/calls/{call_id}/say", self._say)
        r.add_post("/_emulator/sip/calls/{call_id}/hangup", self._caller_hangup)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ checks

    def _guard(
        self, handler: Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]
    ) -> Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            # source: docs/emulator.md#sip-api-version (VLS main.tsp)
            if request.query.get("api-version") != API_VERSION:
                return problem(
                    request,
                    400,
                    "invalid_request",
                    f"api-version={API_VERSION} is required on Voice Live SIP operations.",
                )
            # source: docs/emulator.md#sip-entra-only (VLS main.tsp declares only Entra OAuth2; an
            # api-key is refused, the stricter reading). A local emulator cannot check tokens.
            if request.headers.get("api-key") is not None:
                return problem(
                    request,
                    401,
                    "unauthorized",
                    "Voice Live SIP accepts Microsoft Entra tokens only (Authorization: "
                    "Bearer ...), not an api-key.",
                )
            if not request.headers.get("Authorization", "").lower().startswith("bearer "):
                return problem(request, 401, "unauthorized", "A bearer token is required.")
            return await handler(request)

        return guarded

    async def _json_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return problem(request, 413, "invalid_request", "The request body is too large.")
        if not raw.strip():
            return {}
        try:
            body = speedups.loads(raw)
        except ValueError:
            return problem(request, 400, "invalid_request", "The body is not valid JSON.")
        if not isinstance(body, dict):
            return problem(request, 400, "invalid_request", "The body must be a JSON object.")
        return body

    async def _call_and_body(
        self, request: web.Request
    ) -> tuple[SipCall, dict[str, Any]] | web.Response:
        """The call a request names and its JSON body, or the problem answer for either."""
        call = self._call(request)
        if isinstance(call, web.Response):
            return call
        body = await self._json_body(request)
        return body if isinstance(body, web.Response) else (call, body)

    def _call(self, request: web.Request) -> SipCall | web.Response:
        call_id = request.match_info.get("call_id") or request.query.get("call_id") or ""
        # source: docs/emulator.md#sip-states (VLS routes.tsp: call_id is 1-256 characters)
        if not 1 <= len(call_id) <= 256:
            return problem(request, 400, "invalid_request", "call_id must be 1-256 characters.")
        call = self.calls.get(call_id)
        if call is None:
            return problem(request, 404, "call_not_found", f"No call {call_id!r}.")
        return call

    # ------------------------------------------------------------------ webhooks

    async def _create_webhook(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        url = body.get("url")
        errors = _webhook_errors(body, require_url=True)
        if errors:
            return problem(request, 400, "invalid_request", "Invalid webhook.", errors=errors)
        hook = Webhook(
            id="wh_" + secrets.token_hex(12),
            url=str(url),
            name=str(body.get("name") or ""),
            event_types=list(body.get("event_types") or ["*"]),
            support_info=body.get("support_info"),
            secrets=[(_new_secret(), float("inf"))],
        )
        self.webhooks[hook.id] = hook
        return web.json_response(hook.public(with_secret=True))

    async def _list_webhooks(self, request: web.Request) -> web.StreamResponse:
        data = [h.public() for h in self.webhooks.values()]
        return web.json_response({"object": "list", "data": data})

    def _hook(self, request: web.Request) -> Webhook | web.Response:
        hook = self.webhooks.get(request.match_info["id"])
        if hook is None:
            return problem(request, 404, "webhook_not_found", "No such webhook.")
        return hook

    async def _get_webhook(self, request: web.Request) -> web.StreamResponse:
        hook = self._hook(request)
        return hook if isinstance(hook, web.Response) else web.json_response(hook.public())

    async def _update_webhook(self, request: web.Request) -> web.StreamResponse:
        hook = self._hook(request)
        if isinstance(hook, web.Response):
            return hook
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        errors = _webhook_errors(body, require_url=False)
        if errors:
            return problem(request, 400, "invalid_request", "Invalid webhook.", errors=errors)
        # source: docs/emulator.md#sip-secret-once (VLS routes.tsp: a partial update keeps the rest)
        for key in ("url", "name", "event_types", "support_info", "enabled"):
            if key in body:
                setattr(hook, key, body[key])
        hook.updated_at = int(time.time())
        return web.json_response(hook.public())

    async def _delete_webhook(self, request: web.Request) -> web.StreamResponse:
        hook = self._hook(request)
        if isinstance(hook, web.Response):
            return hook
        del self.webhooks[hook.id]
        return web.Response(status=204)

    async def _rotate(self, request: web.Request) -> web.StreamResponse:
        hook = self._hook(request)
        if isinstance(hook, web.Response):
            return hook
        # source: docs/emulator.md#sip-rotate-grace (VLS readme: the previous secret stays valid
        # for a grace period whose length is not documented)
        old = [(s, min(until, time.time() + ROTATE_GRACE_S)) for s, until in hook.secrets[:1]]
        hook.secrets = [(_new_secret(), float("inf")), *old]
        hook.updated_at = int(time.time())
        return web.json_response(hook.public(with_secret=True))

    async def _deliver(self, event: dict[str, Any]) -> list[int]:
        """POST an event to every enabled webhook that subscribes to it; their statuses."""
        import aiohttp

        # source: docs/emulator.md#sip-webhook-signature (inferred from OAI)
        self._fidelity.note("sip-webhook-signature")
        body = speedups.dumps(event).encode()
        statuses: list[int] = []
        for hook in list(self.webhooks.values()):
            if not hook.enabled or not (
                "*" in hook.event_types or event["type"] in hook.event_types
            ):
                continue
            msg_id, stamp = "msg_" + secrets.token_hex(12), int(time.time())
            signatures = " ".join(sign(k, msg_id, stamp, body) for k in hook.signing_keys())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signatures,
            }
            try:
                timeout = aiohttp.ClientTimeout(total=10)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as http,
                    http.post(hook.url, data=body, headers=headers) as response,
                ):
                    statuses.append(response.status)
            except (aiohttp.ClientError, asyncio.TimeoutError):  # noqa: UP041
                statuses.append(0)
            self.deliveries.append(
                {"webhook": hook.id, "type": event["type"], "status": statuses[-1]}
            )
        return statuses

    # ------------------------------------------------------------------ calls

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        found = await self._call_and_body(request)
        if isinstance(found, web.Response):
            return found
        call, body = found
        if call.state != "WaitingForCustomer":
            return _state_problem(request, call, "accept")
        # source: docs/emulator.md#sip-states (VLS CallAccept example: an agent configuration)
        call.config = body
        call.state = "Accepted"
        call.session_id = P.new_id("sess")
        self.moved()
        return web.json_response(
            {"call_id": call.call_id, "state": call.state, "voice_live_session_id": call.session_id}
        )

    async def _reject(self, request: web.Request) -> web.StreamResponse:
        found = await self._call_and_body(request)
        if isinstance(found, web.Response):
            return found
        call, body = found
        if call.state != "WaitingForCustomer":
            return _state_problem(request, call, "reject")
        code = body.get("status_code", 486)  # source: docs/emulator.md#sip-states (default 486)
        if not isinstance(code, int) or not 400 <= code <= 699:
            return problem(
                request, 400, "invalid_request", "status_code must be a SIP code 400-699.",
                errors={"status_code": ["must be an integer from 400 to 699"]},
            )  # fmt: skip
        call.state, call.terminal_reason = "Disconnected", "Rejected"
        self.moved()
        return web.json_response(
            {"call_id": call.call_id, "state": call.state, "terminal_reason": "Rejected"}
        )

    async def _refer(self, request: web.Request) -> web.StreamResponse:
        found = await self._call_and_body(request)
        if isinstance(found, web.Response):
            return found
        call, body = found
        target = body.get("target_uri")
        if not isinstance(target, str) or not target.startswith(("sip:", "sips:", "tel:")):
            return problem(
                request, 400, "invalid_request", "target_uri must be a sip:, sips: or tel: URI.",
                errors={"target_uri": ["must be a sip:, sips: or tel: URI"]},
            )  # fmt: skip
        if call.state != "Connected":
            return _state_problem(request, call, "refer")
        call.refer_targets.append(target)
        call.state = "Transferring"
        self.moved()
        transfer_id = "tr_" + secrets.token_hex(10)
        self._spawn(self._finish_transfer(call, transfer_id))
        # source: docs/emulator.md#sip-refer (VLS CallRefer: 202, then realtime.call.transfer.*)
        return web.json_response(
            {"call_id": call.call_id, "transfer_id": transfer_id, "state": "Transferring"},
            status=202,
        )

    async def _finish_transfer(self, call: SipCall, transfer_id: str) -> None:
        ok = call.transfer_outcome == "succeeded"
        event: dict[str, Any] = {
            "type": f"realtime.call.transfer.{'succeeded' if ok else 'failed'}",
            "call_id": call.call_id,
            "transfer_id": transfer_id,
            "state": "succeeded" if ok else "failed",
        }
        if not ok:
            event.update(sip_code=486, reason="Busy Here")
        await self._send(call, event)
        if ok:  # source: docs/emulator.md#sip-refer (success ends the call: TransferSucceeded)
            await self._end(call, "TransferSucceeded")
        else:
            call.state = "Connected"

    async def _hangup(self, request: web.Request) -> web.StreamResponse:
        found = await self._call_and_body(request)
        if isinstance(found, web.Response):
            return found
        call, body = found
        if call.state not in ("Accepted", "Connected", "Transferring"):
            return _state_problem(request, call, "hangup")
        call.hangup_reasons.append(str(body.get("reason") or ""))
        self.moved()
        call.state = "Terminating"
        self.moved()
        # source: docs/emulator.md#sip-states (VLS CallHangup: 204, then .disconnected)
        self._spawn(self._end(call, "CustomerHangup"))
        return web.Response(status=204)

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request)
        if isinstance(call, web.Response):
            return call
        if call.state not in ("Accepted", "Connected") or (call.ws is not None):
            return _state_problem(request, call, "attach")
        # pinged: an attacher that vanished without a close ends its call then, not at the
        # session limit
        ws = web.WebSocketResponse(
            max_msg_size=32 * 1024 * 1024, autoping=True, heartbeat=self.heartbeat_s
        )
        if not ws.can_prepare(request).ok:
            return problem(request, 426, "invalid_request", "Attach needs a WebSocket upgrade.")
        await ws.prepare(request)
        call.ws = ws
        model = str((call.config or {}).get("model") or "gpt-realtime")

        async def opened(conn: Connection) -> None:
            call.conn = conn
            call.record = conn.outbox.record  # read by the caller's status (replies)
            call.state = "Connected"
            await self._send(call, self._event(call, "realtime.call.connected"))

        try:
            await self._converse(
                ws, request, model=model, agent=None, api_version=API_VERSION, opened=opened
            )
        finally:
            call.conn = None
            if call.terminal_reason is None:
                call.state, call.terminal_reason = "Disconnected", "SipProxyTerminate"
            self.moved()
        return ws

    # ------------------------------------------------------------------ the emulated caller

    async def _ring(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        call = SipCall(
            call_id="rtc_" + secrets.token_hex(12),
            chain_id="chain_" + secrets.token_hex(8),
            transfer_outcome="failed" if body.get("transfer") == "fail" else "succeeded",
        )
        self.calls[call.call_id] = call
        self._spawn(self._decision_timer(call))
        statuses = await self._deliver(self._event(call, "realtime.call.incoming"))
        return web.json_response({"call_id": call.call_id, "webhook_statuses": statuses})

    async def _decision_timer(self, call: SipCall) -> None:
        await asyncio.sleep(self.decision_timeout_s)
        if call.state == "WaitingForCustomer":
            self._fidelity.note("sip-decision-timeout")
            # source: docs/emulator.md#sip-decision-timeout (VLS models.tsp)
            call.state, call.terminal_reason = "Expired", "DecisionTimeout"
            self.moved()

    async def _status(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request)
        return call if isinstance(call, web.Response) else web.json_response(call.status())

    async def _say(self, request: web.Request) -> web.StreamResponse:
        found = await self._call_and_body(request)
        if isinstance(found, web.Response):
            return found
        call, body = found
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return problem(request, 400, "invalid_request", "say needs a non-empty text.")
        if call.conn is None or call.state != "Connected":
            return _state_problem(request, call, "say")
        self._fidelity.note("sip-media")  # source: docs/emulator.md#sip-caller
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        call.follow()  # what was sent before this turn answers earlier ones
        call.said_at.append(len(call.record.sent) if call.record is not None else 0)
        turn = len(call.said_at)
        await call.conn.inject({"type": "conversation.item.create", "item": item})
        await call.conn.inject({"type": "response.create"})
        # the caller waits until the status's ``replied`` reaches ``turn`` (docs/telephony.md)
        return web.json_response({"call_id": call.call_id, "said": text, "turn": turn})

    async def _caller_hangup(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request)
        if isinstance(call, web.Response):
            return call
        await self._end(call, "CustomerHangup")
        return web.json_response(call.status())

    # ------------------------------------------------------------------ events

    def _event(self, call: SipCall, kind: str, **extra: Any) -> dict[str, Any]:
        # source: docs/emulator.md#sip-states (VLE realtime.call.*: call_id, chain_id, state)
        event = {
            "type": kind,
            "event_id": P.new_id("event"),
            "call_id": call.call_id,
            "chain_id": call.chain_id,
            "state": call.state,
        }
        event.update(extra)
        return event

    async def _send(self, call: SipCall, event: dict[str, Any]) -> None:
        call.events.append(event)
        self.moved()
        if call.conn is not None:
            await call.conn.send(event)

    async def _end(self, call: SipCall, reason: str) -> None:
        if call.state in ("Disconnected", "Expired", "Failed"):
            return
        call.state, call.terminal_reason = "Disconnected", reason
        self.moved()
        await self._send(
            call, self._event(call, "realtime.call.disconnected", terminal_reason=reason)
        )
        if call.ws is not None and not call.ws.closed:
            await call.ws.close(code=1000, message=b"call ended")


def problem(
    request: web.Request, status: int, code: str, detail: str, **extra: Any
) -> web.Response:
    """An RFC 7807 problem body as the SIP API returns it."""
    # source: docs/emulator.md#sip-problem-json (VLS main.tsp errors)
    body: dict[str, Any] = {
        "type": f"https://aka.ms/voicelive/sip/errors/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "detail": detail,
        "instance": request.path,
        "code": code,
        "retryable": False,
        "trace_id": secrets.token_hex(16),
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return web.json_response(body, status=status, content_type="application/json")


def _state_problem(request: web.Request, call: SipCall, action: str) -> web.Response:
    return problem(
        request,
        409,
        "invalid_state",
        f"Cannot {action} a call in state {call.state}.",
        call_id=call.call_id,
        state=call.state,
    )


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _webhook_errors(body: dict[str, Any], *, require_url: bool) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    url = body.get("url")
    if url is not None or require_url:
        parts = urlsplit(url) if isinstance(url, str) else None
        loopback = parts is not None and (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")
        # source: docs/emulator.md#sip-webhook-https (VLS models.tsp: an HTTPS endpoint); plain
        # http only to loopback, so a local vlrun serve can receive deliveries
        if parts is None or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
            errors["url"] = ["must be an https:// URL (http:// only on loopback here)"]
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 128):
        errors["name"] = ["must be a string of at most 128 characters"]
    kinds = body.get("event_types")
    if kinds is not None and (
        not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds)
    ):
        errors["event_types"] = ["must be a list of event type names"]
    if "enabled" in body and not isinstance(body["enabled"], bool):
        errors["enabled"] = ["must be true or false"]
    return errors
