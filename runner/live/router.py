"""The receive loop of a live session: server frames in, one handler per event type.

Frames are parsed here the way the SDK's ``recv()`` does, so one frame vlrun cannot read is
logged and skipped instead of ending the turn; each event is traced (masked by the flow, if
one has secrets), shown (``--verbose``) and handed to its handler, in order. A handler's
failure is reported and the conversation goes on; a :class:`Drop` or a
:class:`~runner.errors.VlrunError` ends this connection's loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from runner import speedups
from runner.errors import VlrunError
from runner.live.state import Drop, RawEvent, log
from runner.live.transcript import Transcript
from runner.redact import clean_line

Handler = Callable[..., Awaitable[None] | None]
#: The two timed paths get the arrival time (benchmarks measure from it).
TIMED = frozenset(
    {"response.audio.delta", "response.output_audio.delta", "input_audio_buffer.speech_started"}
)
# Counted, not traced one by one: a reply has dozens of each (one summary per response instead)
_COUNTED = frozenset({"response.animation_viseme.delta", "response.animation_blendshapes.delta"})


class EventRouter:
    """The type -> handler table and the loop that feeds it."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        transcript: Transcript,
        report: Callable[[str, BaseException], None],
        mask: Callable[[dict[str, Any]], dict[str, Any]] = lambda payload: payload,
    ) -> None:
        self.handlers = dict(handlers)
        self.transcript = transcript
        self.report = report
        self.mask = mask  # what of an event the trace may show (a flow hides its secrets)

    async def receive(self, conn: Any) -> None:
        """Read frames until the connection ends (raises Drop) or a handler raises an error
        that ends the session; each event goes to its handler, in order."""
        from azure.ai.voicelive.aio import ConnectionClosed

        while True:
            try:
                # Raw frames, parsed here the way the SDK's recv() does, so that one frame it
                # cannot read is logged (with its text) and skipped instead of ending the turn.
                raw = await conn.recv_bytes()
            except ConnectionClosed as exc:
                # a missed heartbeat says so in its reason ("No PONG received ...")
                why = f": {clean_line(exc.reason)[:120]}" if exc.reason else ""
                raise Drop(f"closed with code {exc.code}{why}") from None
            if not raw:
                raise Drop("empty frame (connection closed)")
            try:
                payload = speedups.loads(raw)
                if not isinstance(payload, dict):
                    raise ValueError(f"a JSON {type(payload).__name__}, not an event object")
                kind = payload.get("type")
                if not isinstance(kind, str):
                    raise ValueError("an event without a type")
                # Handlers read the JSON object as the SDK's models read (same attribute
                # names, nested objects too): building the models costs more than the work
                # itself, a fifth of a phone worker's CPU.
                event: Any = RawEvent(payload)
            except Exception as exc:  # a malformed frame is the service's bug, not a reason to stop
                text = raw[:300].decode("utf-8", "replace")
                log.warning("skipped a server frame vlrun could not read (%s): %s", exc, text)
                continue
            arrived = time.perf_counter()
            if self.transcript.tracing and kind not in _COUNTED:
                self.transcript.trace("in", self.mask(payload))
            handler = self.handlers.get(kind)
            self.transcript.event(kind, payload=payload)
            if handler is None:
                continue
            try:
                # The two timed paths get the arrival time (benchmarks measure from it).
                result = handler(event, arrived) if kind in TIMED else handler(event)
                if result is not None:
                    await result
            except (VlrunError, Drop):
                raise
            except Exception as exc:  # one bad event must not end the conversation
                self.report(f"the handler for {kind}", exc)
