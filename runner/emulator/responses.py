"""Responses of one emulated session: planning, pacing, spoken output, cancel and done events."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from typing import Any

from runner import speedups
from runner.emulator import protocol as P
from runner.emulator.conversation import Conversation, Response
from runner.emulator.marks import SpeechMarks
from runner.emulator.model import Plan, ScriptedModel, spoken
from runner.emulator.outbox import Outbox, Tasks
from runner.emulator.pace import PaceClock
from runner.emulator.speech import Speech, g711_encode, speak
from runner.emulator.tool_calls import ToolCalls

log = logging.getLogger(__name__)

AUDIO_CHUNK_MS = 100  # size of each response.audio.delta (the service's size is undocumented)
# fidelity: token rates are assumed (the service does not document them): 10 audio tokens per
# second of user audio, 20 per second of spoken reply, 4 characters per text token
INPUT_AUDIO_MS_PER_TOKEN = 100
OUTPUT_AUDIO_MS_PER_TOKEN = 50
CHARS_PER_TOKEN = 4
INTERIM_LLM_TEXT = "[emulator interim] One moment, please."


class Responses:
    """The ``response.*`` handlers and the response task.

    A part of :class:`~runner.emulator.connection.Connection`. Responses run one after
    another (chained in :class:`~runner.emulator.outbox.Tasks`); :attr:`active` is the one the
    client may still cancel.
    """

    def __init__(
        self,
        outbox: Outbox,
        conversation: Conversation,
        model: ScriptedModel,
        tools: ToolCalls,
        tasks: Tasks,
        *,
        speed: float,
        use_espeak: bool,
        clock: PaceClock | None = None,
    ) -> None:
        self._outbox, self._conv, self._model = outbox, conversation, model
        self._tools, self._tasks = tools, tasks
        self._speed, self._use_espeak = speed, use_espeak
        self._clock = clock if clock is not None else PaceClock()
        self._active: Response | None = None
        self._voice_locked = False
        self._interims = 0  # interim responses said on this connection (static texts take turns)

    @property
    def active(self) -> Response | None:
        """The response the client may still cancel (None between responses)."""
        return self._active

    @property
    def voice_locked(self) -> bool:
        """Audio has been spoken: the voice can no longer change."""
        return self._voice_locked

    async def on_create(self, event: dict[str, Any]) -> None:
        if self._active is not None and self._active.auto and not self._active.joined:
            # source: docs/emulator.md#mcp-approved: a client that asks for the answer after
            # approving (as vlrun does) gets it after the continuation, not an error
            self._active.joined = True
            self._outbox.note("mcp-continue")
        elif self._active is not None:
            await self._outbox.error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: "
                f"{self._active.id}. Wait until the response is finished before "
                "creating a new one.",
                client_event=event,
            )
            return
        params = event.get("response") or {}
        if not isinstance(params, dict):
            await self._outbox.error(
                "invalid_type",
                "Invalid type for 'response': expected an object.",
                param="response",
                client_event=event,
            )
            return
        await self.start(params)

    async def on_cancel(self, event: dict[str, Any]) -> None:
        active = self._active
        wanted = event.get("response_id")
        if active is None or (wanted and wanted != active.id):
            await self._outbox.error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                client_event=event,
            )
            return
        await self.cancel(active, "client_cancelled", truncate=False)

    async def cancel(self, response: Response, reason: str, *, truncate: bool) -> None:
        response.cancel_reason = reason
        response.wake.set()
        self._active = None  # a new response may start; it waits for this one's done events
        if truncate and response.audio_item and response.audio_started is not None:
            item = self._conv.items.get(response.audio_item)
            if item is not None:
                played = (self._clock.now() - response.audio_started) * 1000 * self._pace()
                await self._conv.truncate(item, int(min(played, response.audio_sent_ms)))

    def _pace(self) -> float:
        return self._speed if self._speed > 0 else math.inf

    async def start(self, params: dict[str, Any], *, auto: bool = False) -> None:
        conv = self._conv
        last = conv.pending_input[-1] if conv.pending_input else {}  # before _plan takes it
        # while an MCP call is out, what to say is decided once its result is in
        mcp_busy = self._tools.mcp_pending or (self._active is not None and self._active.auto)
        plan = None if mcp_busy else self._plan(params)
        asked_at_turn = conv.user_turns  # a deferred plan ignores user turns that came later
        response = Response(P.new_id("resp"), auto=auto)
        response.input_audio_ms = int(last.get("audio_ms") or 0)  # for usage
        response.input_chars = len(last.get("text") or "")
        self._active = response
        response.task = self._tasks.chain(
            lambda previous: self._respond(response, plan, params, previous, asked_at_turn)
        )

    def _plan(self, params: dict[str, Any], asked_at_turn: int | None = None) -> Plan:
        conv, model = self._conv, self._model
        pre = params.get("pre_generated_assistant_message")
        if isinstance(pre, dict):
            texts = [c.get("text", "") for c in pre.get("content") or [] if isinstance(c, dict)]
            return Plan(say=" ".join(texts))
        approved = self._tools.next_approved()
        if approved is not None:
            return Plan(mcp={**approved, "approved": True})
        done = self._tools.take_results()
        upto = conv.user_turns if asked_at_turn is None else asked_at_turn
        if done and not any(e["turn"] <= upto for e in conv.pending_input):
            # source: docs/emulator.md#mcp-result-once: a result answers the response asked
            # for after it and before any new user turn, never a later turn (it is dropped)
            said = "; ".join(
                f"{r['name']} on {r['server_label']} "
                + (
                    f"returned {spoken(r['output'])}"
                    if r.get("output") is not None
                    else f"failed: {r['error']}"
                )
                for r in done
            )
            return Plan(say=f"[emulator] {said}")
        if model.waiting_for_tools and self._tools.has_outputs:
            outputs = self._tools.take_outputs()
            conv.pending_input.clear()
            return model.plan_followup(outputs)
        self._tools.take_outputs()  # outputs nobody waits for are not answered later
        if conv.pending_input:
            last = conv.pending_input[-1]
            conv.pending_input.clear()
            return model.plan_turn(
                last["turn"], last["text"], last["audio_ms"], conv.session, last.get("images")
            )
        return model.plan_turn(0, None, None, conv.session)

    async def _wait(self, response: Response, seconds: float) -> bool:
        """Pace output; returns False as soon as the response is cancelled."""
        if response.cancel_reason:
            return False
        if seconds <= 0:
            await asyncio.sleep(0)
        else:
            await self._clock.wait(response.wake, seconds)
        return response.cancel_reason is None

    def _shape(self, params: dict[str, Any]) -> dict[str, Any]:
        """Response-level overrides of session settings."""
        s = self._conv.session
        return {
            "modalities": params.get("modalities") or s.get("modalities") or ["text", "audio"],
            "voice": params.get("voice") or s.get("voice"),
            "output_audio_format": params.get("output_audio_format")
            or s.get("output_audio_format", "pcm16"),
            "temperature": params.get("temperature", s.get("temperature")),
            "max_output_tokens": params.get(
                "max_output_tokens",
                params.get(
                    "max_response_output_tokens", s.get("max_response_output_tokens", "inf")
                ),
            ),
            "metadata": params.get("metadata"),
        }

    async def _respond(
        self,
        response: Response,
        plan: Plan | None,
        params: dict[str, Any],
        previous: asyncio.Task[None] | None,
        asked_at_turn: int | None = None,
    ) -> None:
        try:
            await self._respond_inner(response, plan, params, previous, asked_at_turn)
        except Exception as exc:  # noqa: BLE001 - keep the session usable after an emulator bug
            log.exception("emulator response failed")
            if self._active is response:
                self._active = None
            err = P.response_error("server_error", f"[emulator] {exc!r}", "server_error")
            await self._outbox.send(
                {
                    "type": "response.done",
                    "response": {
                        "id": response.id,
                        "object": "realtime.response",
                        "status": "failed",
                        "status_details": {"type": "failed", "error": err},
                        "output": response.output,
                        "usage": None,
                    },
                }
            )
            await self._outbox.close_after_failure()

    async def _respond_inner(
        self,
        response: Response,
        plan: Plan | None,
        params: dict[str, Any],
        previous: asyncio.Task[None] | None,
        asked_at_turn: int | None = None,
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        if plan is None:
            plan = self._plan(params, asked_at_turn)
        shape = self._shape(params)
        body: dict[str, Any] = {
            "id": response.id,
            "object": "realtime.response",
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "usage": None,
            "conversation_id": None,
            **shape,
        }
        async with self._outbox.held():  # the opening events: one write
            failed = await self._opened(body, params, plan)
        interim = self._interim_config(params)
        said: list[tuple[int, int]] = []
        if plan.delay_ms and failed is None:
            await self._think(response, plan.delay_ms, interim, shape, said)
        cut = False
        if failed is None and plan.say is not None and response.cancel_reason is None:
            text, cut = _capped(plan.say, shape["max_output_tokens"])
            said.append(await self._say(response, text, shape))
        for call in plan.calls if failed is None else ():
            if response.cancel_reason is not None:
                break
            async with self._outbox.held():  # its seven events: one write
                await self._tools.function_call(response, call)
        if failed is None and plan.search is not None and response.cancel_reason is None:
            # source: docs/emulator.md#builtin-search: the service runs it and answers in
            # the same response; the emulator says that nothing was searched
            answer = await self._tools.builtin_search(response, dict(plan.search))
            if response.cancel_reason is None:
                said.append(await self._say(response, answer, shape))
        busy = bool(plan.calls) or plan.mcp is not None
        # fidelity: where the service puts a tool-triggered interim is undocumented; here it
        # follows the calls in the same response, so it is heard while the tools run
        tool_wait = busy and failed is None and response.cancel_reason is None
        if interim and "tool" in interim["triggers"] and tool_wait:
            said.append(await self._say(response, self._interim_text(interim), shape))
        mcp_tail = None
        if failed is None and plan.mcp is not None and response.cancel_reason is None:
            mcp_tail = await self._tools.mcp(response, dict(plan.mcp))
        out_text = sum(chars for chars, _ in said)
        out_audio_ms = sum(ms for _, ms in said)
        if response.cancel_reason is not None:
            status = "cancelled"
            details: dict[str, Any] | None = {"type": "cancelled", "reason": response.cancel_reason}
        elif failed is not None:
            status, details = "failed", {"type": "failed", "error": failed}
        elif cut:
            status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        else:
            status, details = "completed", None
        if self._active is response:
            self._active = None
        body.update(
            status=status,
            status_details=details,
            output=response.output,
            usage=self._usage(response, out_text, out_audio_ms),
        )
        await self._outbox.send({"type": "response.done", "response": body})
        if failed is not None:
            await self._outbox.close_after_failure()
        if mcp_tail is not None:
            await mcp_tail()

    async def _opened(
        self, body: dict[str, Any], params: dict[str, Any], plan: Plan
    ) -> dict[str, Any] | None:
        """A response's opening events; the error that fails it at once, if any."""
        await self._outbox.send({"type": "response.created", "response": dict(body)})
        await self._outbox.send(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 60.0},
                    {"name": "tokens", "limit": 120000, "remaining": 119000, "reset_seconds": 60.0},
                ],
            }
        )
        invoke = params.get("invoke_input")
        if isinstance(invoke, dict):
            # source: docs/emulator.md#invoke-input: a hosted agent's non-speech SSE events come
            # through as response.invocation.delta; the stand-in says that no agent ran
            agent = self._conv.session.get("agent") or {}
            await self._outbox.send(
                {
                    "type": "response.invocation.delta",
                    "delta": {
                        "type": "emulator.invocation",
                        "agent": agent.get("name"),
                        "invoke_input_keys": sorted(str(k) for k in invoke),
                        "message": "[emulator] no hosted agent was invoked; the emulator "
                        "received invoke_input and answers with its own reply",
                    },
                }
            )
        if plan.warning is not None:  # docs/emulator.md#script-warning
            w = plan.warning
            detail = {"message": w["message"], "code": w.get("code"), "param": w.get("param")}
            await self._outbox.send({"type": "warning", "warning": detail})
        if plan.error is not None:
            err = P.response_error(
                plan.error.get("code", "server_error"),
                plan.error["message"],
                plan.error.get("type"),
            )
            if plan.say is None and not plan.calls and plan.mcp is None:
                return err  # source: docs/emulator.md#failed-response (no separate error)
            # a non-fatal error beside a reply: the error event of a live socket
            await self._outbox.send({"type": "error", "error": {**err, "event_id": None}})
        return None

    async def _think(
        self,
        response: Response,
        delay_ms: int,
        interim: dict[str, Any] | None,
        shape: dict[str, Any],
        said: list[tuple[int, int]],
    ) -> None:
        """The model's scripted latency; past the interim threshold, the interim is said."""
        triggers = interim["triggers"] if interim else ()
        threshold = interim["threshold"] if interim else 0
        # source: interim-response HOWTO (voice-live-protocol.md 2.6): said once the model's
        # latency passes the threshold; the reply follows when it is ready
        late = "latency" in triggers and delay_ms > threshold
        if interim and late and await self._wait(response, threshold / 1000 / self._pace()):
            said.append(await self._say(response, self._interim_text(interim), shape))
            delay_ms -= threshold + said[-1][1]
        if delay_ms > 0:
            await self._wait(response, delay_ms / 1000 / self._pace())

    def _usage(self, response: Response, out_chars: int, out_audio_ms: int) -> dict[str, Any]:
        """Token counts from sizes; the rates are the assumed ones named at the top."""
        instructions = self._conv.session.get("instructions") or ""
        in_text = max(1, (len(instructions) + response.input_chars) // CHARS_PER_TOKEN)
        in_audio = math.ceil(response.input_audio_ms / INPUT_AUDIO_MS_PER_TOKEN)
        out_text = math.ceil(out_chars / CHARS_PER_TOKEN)
        out_audio = math.ceil(out_audio_ms / OUTPUT_AUDIO_MS_PER_TOKEN)
        return P.usage(in_text, in_audio, out_text, out_audio)

    def _interim_config(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The interim-response setting in force, with its defaults filled in (or None)."""
        cfg = params.get("interim_response") or self._conv.session.get("interim_response")
        if not isinstance(cfg, dict):
            return None
        return {
            **cfg,
            "triggers": list(cfg.get("triggers") or ["latency"]),
            "threshold": int(cfg.get("latency_threshold_ms") or 2000),
        }

    def _interim_text(self, cfg: dict[str, Any]) -> str:
        """A static text in turn (the service picks at random), or the emulator's own phrase."""
        texts = [t for t in cfg.get("texts") or [] if isinstance(t, str) and t.strip()]
        self._interims += 1
        if cfg.get("type") == "static_interim_response" and texts:
            return texts[(self._interims - 1) % len(texts)]
        return INTERIM_LLM_TEXT

    async def _say(self, response: Response, text: str, shape: dict[str, Any]) -> tuple[int, int]:
        audio = "audio" in shape["modalities"]
        index = len(response.output)
        item: dict[str, Any] = {
            "id": P.new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        base = {"response_id": response.id, "item_id": item["id"], "output_index": index}
        empty = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        async with self._outbox.held():  # the item and its part: one write
            await self._conv.output_item("added", response, index, dict(item, content=[]))
            await self._conv.add_item(item)
            await self._outbox.send(
                {"type": "response.content_part.added", **base, "content_index": 0, "part": empty}
            )
        words = text.split(" ")
        said: list[str] = []
        audio_ms = 0
        if audio:
            fmt = shape["output_audio_format"]
            rate = P.OUTPUT_RATES.get(fmt, 24000)
            chunk = rate * 2 * AUDIO_CHUNK_MS // 1000
            if self._outbox.load:
                speech, encoded = await _encoded_reply(text, fmt, rate, chunk, self._use_espeak)
            else:
                speech, encoded = await speak(text, rate, use_espeak=self._use_espeak), None
            pcm = speech.pcm
            marks = SpeechMarks(self._conv.session, base, text, speech, rate)
            chunks = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)] or [b""]
            response.audio_item, item["_audio_ms"] = item["id"], 0
            first = {"type": "response.audio.delta", **base, "content_index": 0, "delta": ""}
            head = speedups.dumps(first)[:-2]  # up to the delta's opening quote
            start = self._clock.now()
            response.audio_started = start
            self._voice_locked = True
            for k, piece in enumerate(chunks):
                async with self._outbox.held():  # the chunk's events: one write
                    due = math.ceil((k + 1) * len(words) / len(chunks))
                    while len(said) < due:
                        delta = words[len(said)] if not said else " " + words[len(said)]
                        said.append(words[len(said)])
                        await self._outbox.send(
                            {
                                "type": "response.audio_transcript.delta",
                                **base,
                                "content_index": 0,
                                "delta": delta,
                            }
                        )
                    if encoded is not None:
                        b64 = encoded[k]
                    else:
                        wire = g711_encode(piece, fmt[5:]) if fmt.startswith("g711") else piece
                        b64 = base64.b64encode(wire).decode("ascii")
                    # the delta's JSON as Outbox.send writes it, its constant head built once
                    text = f'{head}{b64}","event_id":"{P.new_id("event")}"}}'
                    await self._outbox.send_text("response.audio.delta", text)
                    piece_ms = len(piece) * 1000 // (rate * 2)
                    audio_ms += piece_ms
                    response.audio_sent_ms = item["_audio_ms"] = audio_ms
                    for mark in marks.upto(audio_ms) if marks.active else ():
                        await self._outbox.send(mark)
                ahead = start + audio_ms / 1000 / self._pace() - self._clock.now()
                if not await self._wait(response, ahead):
                    break
        else:
            for word in words:
                said.append(word)
                await self._outbox.send(
                    {
                        "type": "response.text.delta",
                        **base,
                        "content_index": 0,
                        "delta": word if len(said) == 1 else " " + word,
                    }
                )
                if not await self._wait(response, 0.05 / self._pace()):
                    break
        spoken = " ".join(said)
        async with self._outbox.held():  # the closing events: one write
            await self._closed(response, item, base, spoken, marks if audio else None)
        return len(spoken), audio_ms

    async def _closed(
        self,
        response: Response,
        item: dict[str, Any],
        base: dict[str, Any],
        spoken: str,
        marks: SpeechMarks | None,
    ) -> None:
        """The closing events of a spoken (``marks`` given) or written part, and its item's."""
        index = base["output_index"]
        if marks is not None:
            if marks.active and response.cancel_reason is None:
                for mark in marks.upto(marks.end_ms + 1):  # the closing silence viseme
                    await self._outbox.send(mark)
            await self._outbox.send({"type": "response.audio.done", **base, "content_index": 0})
            await self._outbox.send(
                {
                    "type": "response.audio_transcript.done",
                    **base,
                    "content_index": 0,
                    "transcript": spoken,
                }
            )
            for mark in marks.done():
                await self._outbox.send(mark)
            part = {"type": "audio", "transcript": spoken}
        else:
            await self._outbox.send(
                {"type": "response.text.done", **base, "content_index": 0, "text": spoken}
            )
            part = {"type": "text", "text": spoken}
        await self._outbox.send(
            {"type": "response.content_part.done", **base, "content_index": 0, "part": part}
        )
        item["content"] = [part]
        item["status"] = "incomplete" if response.cancel_reason else "completed"
        public = {k: v for k, v in item.items() if not k.startswith("_")}
        response.output.append(public)
        await self._conv.output_item("done", response, index, public)


#: load mode: each reply's audio chunks as sent (base64 of the wire format), by (text, format,
#: rate, chunk, espeak); identical scripted replies were re-encoded for every call
_ENCODED: dict[tuple[str, str, int, int, bool], tuple[Speech, tuple[str, ...]]] = {}
_ENCODED_MAX = 256  # distinct replies kept (a benchmark's script has a handful)


async def _encoded_reply(
    text: str, fmt: str, rate: int, chunk: int, use_espeak: bool
) -> tuple[Speech, tuple[str, ...]]:
    key = (text, fmt, rate, chunk, use_espeak)
    hit = _ENCODED.get(key)
    if hit is not None:
        return hit
    speech = await speak(text, rate, use_espeak=use_espeak)
    pcm = speech.pcm
    pieces = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)] or [b""]
    law = fmt[5:] if fmt.startswith("g711") else None
    encoded = tuple(
        base64.b64encode(g711_encode(p, law) if law else p).decode("ascii") for p in pieces
    )
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.clear()
    _ENCODED[key] = (speech, encoded)
    return speech, encoded


def _capped(text: str, max_tokens: Any) -> tuple[str, bool]:
    """The reply as far as the token cap lets it go (and whether it was cut): a scripted echo
    of a 900 kB turn must not become hours of synthesised speech."""
    # source: docs/emulator.md#reply-token-cap ("inf" is the model's own cap, taken as the most)
    cap = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else P.MAX_OUTPUT_TOKENS
    limit = min(cap, P.MAX_OUTPUT_TOKENS) * CHARS_PER_TOKEN
    return (text, False) if len(text) <= limit else (text[:limit], True)
