"""Voice Live SIP (preview) through `vlrun emulate`: the emulator plays Voice Live, and its
caller API stands in for the phone (docs/telephony.md "Voice Live SIP (preview)").

``POST /_emulator/sip/calls`` rings: the emulator posts a signed ``realtime.call.incoming`` to
every registered webhook (the server's ``/sip/webhook``), which accepts and attaches. Then
``…/ID/say {text}`` speaks a text turn (its answer says which ``turn`` it was) and
``…/ID/hangup`` hangs up. No SIP media reaches the emulator, so a SIP caller says text and
hears no audio; the call's status says when the turn's reply has finished (``replied``
reaches the turn, nothing ``responding``) and what it said (``replies``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from runner.aio import Deadline
from runner.carrier.line import Line
from runner.carrier.ring import CallRefused, RingOptions, converse, unreachable
from runner.errors import EXIT_OK, UsageError, VlrunError

API_VERSION = "2026-07-31-preview"
PREFIX = "/voice-agent/realtime/sip"
CALLER = "/_emulator/sip/calls"
BEARER = {"Authorization": "Bearer local-emulator"}  # a local emulator checks no token
POLL_S = 0.05  # the emulator's caller API has no push: its call state is polled
# An older emulator's caller API does not say when a reply has finished (no ``turn`` in the
# answer to a say): the caller then pauses this long after each text turn, as a person would.
TURN_PAUSE_S = 4.0
FINAL = ("Disconnected", "Expired", "Failed")


class SipCall:
    """One call rung through the emulator's caller API."""

    line: Line | None = None  # no media: text turns

    def __init__(self, http: Any, base: str, call_id: str, turn_s: float = 60.0) -> None:
        self.http, self.base, self.call_id = http, base, call_id
        self.hung_up = False
        self.turn_s = turn_s
        self.pause_s = TURN_PAUSE_S
        self.replies: list[dict[str, Any]] = []  # each finished reply: turn, text, status

    async def status(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base}{CALLER}/{self.call_id}") as r:
            body: dict[str, Any] = await r.json(content_type=None)
            return body

    async def until(self, states: tuple[str, ...], deadline: Deadline) -> dict[str, Any]:
        """Poll the call's state until it is one of ``states`` (or final), within the deadline."""
        while True:
            status = await self.status()
            if status.get("state") in states or status.get("state") in FINAL:
                return status
            if deadline.expired():
                raise VlrunError(
                    f"the SIP call stayed {status.get('state')} past the deadline",
                    hint="is `vlrun serve --serve-file` running with voicelive_sip, and its "
                    "webhook registered (vlrun ring sip URL --create-webhook ...)?",
                )
            await asyncio.sleep(POLL_S)

    async def say_text(self, text: str) -> str:
        async with self.http.post(
            f"{self.base}{CALLER}/{self.call_id}/say", json={"text": text}
        ) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                why = body.get("detail", r.status) if isinstance(body, dict) else r.status
                raise VlrunError(f"the emulator did not take the turn: {why}")
        turn = body.get("turn") if isinstance(body, dict) else None
        if not isinstance(turn, int):  # an emulator that cannot say when the reply is done
            await asyncio.sleep(self.pause_s)  # the caller's pause, as a person's
            return "said (no SIP media reaches the emulator: the reply is in the server's log)"
        reply = await self.reply_to(turn, Deadline(self.turn_s))
        if reply is None:
            return "said (no reply finished before the deadline)"
        return f'said; the reply: "{reply["text"]}" (as text: no SIP media reaches the emulator)'

    async def reply_to(self, turn: int, deadline: Deadline) -> dict[str, Any] | None:
        """Wait (polling, within ``deadline``) until the reply to caller turn ``turn`` has
        finished: the status's ``replied`` has reached it and nothing is ``responding``.
        The finished reply (``turn``, ``text``, ``status``); None past the deadline or when
        the call ended first."""
        while True:
            status = await self.status()
            done = int(status.get("replied") or 0) >= turn and not status.get("responding")
            if done:
                self.replies = list(status.get("replies") or [])
                return next((r for r in reversed(self.replies) if r.get("turn") == turn), None)
            if status.get("state") in FINAL or deadline.expired():
                return None
            await asyncio.sleep(POLL_S)  # the caller API has no push: polled, within a deadline

    async def dtmf(self, digits: str) -> None:
        raise UsageError("a Voice Live SIP call through the emulator takes text turns only")

    async def hang_up(self) -> None:
        if self.hung_up:
            return
        self.hung_up = True
        async with self.http.post(f"{self.base}{CALLER}/{self.call_id}/hangup") as r:
            await r.read()


async def call(emulator: str, options: RingOptions) -> int:
    """Ring through the emulator, say the text turns, hang up."""
    for turn in options.turns:
        if turn.kind != "say":
            raise UsageError(
                f"vlrun ring sip: {turn.describe()} cannot be said on an emulated SIP call",
                hint="the emulator carries no SIP media: use --say TEXT turns",
            )
    async with ring(emulator, options) as sip:
        await converse(sip, options)
    return EXIT_OK


@contextlib.asynccontextmanager
async def ring(emulator: str, options: RingOptions) -> AsyncIterator[SipCall]:
    """Ring through the emulator's caller API until the server has answered and attached
    (the call ``Connected``); hangs up on the way out."""
    import aiohttp

    base = emulator.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=options.connect_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.post(base + CALLER, json={}) as r:
                if r.status == 404:
                    raise VlrunError(
                        f"{base} has no SIP caller API",
                        hint="the URL is a `vlrun emulate` endpoint (SIP needs no serve URL)",
                    )
                rung = await r.json(content_type=None)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise unreachable(base, exc) from None
        statuses = list(rung.get("webhook_statuses") or [])
        if not statuses:
            raise CallRefused(
                "nobody answered: the emulator has no SIP webhook registered",
                hint="vlrun ring sip URL --create-webhook http://HOST:PORT/sip/webhook",
            )
        if 0 in statuses:
            raise unreachable("the webhook", ConnectionRefusedError("no answer from the server"))
        if 200 not in statuses:
            raise CallRefused(f"the call was refused: the webhook answered {statuses}")
        sip = SipCall(http, base, str(rung["call_id"]), options.turn_s)
        try:
            state = await sip.until(("Connected",), Deadline(options.turn_s))
            if state.get("state") != "Connected":
                reason = state.get("terminal_reason") or state.get("state")
                raise CallRefused(f"the call was refused: {reason} (busy, or no route answers)")
            options.out(f"connected: SIP call {sip.call_id}")
            yield sip
        finally:
            if not sip.hung_up:
                await asyncio.shield(sip.hang_up())


async def webhook(
    emulator: str, url: str, timeout_s: float, hook_id: str | None = None
) -> dict[str, Any]:
    """Register ``url`` as a SIP webhook with the emulator's SIP API (or point webhook
    ``hook_id`` at it); the webhook (``id``, and ``signing_secret`` when made)."""
    import aiohttp

    path = PREFIX + "/webhooks" + (f"/{hook_id}" if hook_id else "")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        try:
            async with http.post(
                emulator.rstrip("/") + path,
                json={"url": url, "name": "vlrun ring"},
                params={"api-version": API_VERSION},
                headers=BEARER,
            ) as r:
                hook = await r.json(content_type=None)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise unreachable(emulator, exc) from None
    if not isinstance(hook, dict) or not hook.get("id"):
        raise VlrunError(f"the emulator did not take the webhook: {hook}")
    return hook


async def create_webhook(emulator: str, url: str, env_file: Path, options: RingOptions) -> None:
    """Register ``url`` with the emulator's SIP API and write its signing secret to a file."""
    hook = await webhook(emulator, url, options.connect_timeout_s)
    secret = hook.get("signing_secret")
    if not secret:
        raise VlrunError(f"the emulator did not create the webhook: {hook}")
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"export VOICELIVE_SIP_WEBHOOK_SECRET={secret}\n")
    options.out(f"webhook {hook.get('id')} -> {url}; its signing secret is in {env_file}")
