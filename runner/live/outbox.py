"""The one way out of a live session: every event it sends goes through an :class:`Outbox`.

It holds the current connection, fences events of an earlier one (a tool output or an
approval answer asked for before a reconnect is dropped, never sent on the new one), counts
what is sent, traces it, and tells the turn state a ``response.create`` is in flight. The
microphone's appends take a lean path of their own (:meth:`Outbox.append`).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping
from typing import Any

from runner.live.state import Drop, Fenced, Metrics, TurnState, log
from runner.live.transcript import Transcript

_APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
_SOCKET_ERRORS = (ConnectionError, RuntimeError)  # a closing socket (aiohttp raises either)


class Outbox:
    """Sends on the current connection (``conn``, set by the session while one is open)."""

    def __init__(
        self,
        turn: TurnState,
        transcript: Transcript,
        metrics: Metrics,
        response_extras: Mapping[str, Any] | None = None,
    ) -> None:
        self.turn = turn
        self.transcript = transcript
        self.metrics = metrics
        # what every response.create carries (a hosted agent's invoke_input), whoever sends
        # it: a typed turn, a spoken turn's commit, tool results, a greeting, a flow's node
        self.response_extras = dict(response_extras or {})
        self.conn: Any = None  # the SDK connection while one is open

    async def send(self, event: Mapping[str, Any] | Any, generation: int | None = None) -> None:
        """Send a dict or SDK model; a failed send means the connection dropped.

        With ``generation``, the event belongs to that connection: if the session has
        reconnected since, it is dropped (:class:`Fenced`), never sent on the new one.
        """
        from azure.ai.voicelive.aio import ConnectionError as SdkConnectionError

        data = event if isinstance(event, Mapping) else event.as_dict()
        kind = str(data.get("type", "?"))
        if kind == "response.create" and self.response_extras:
            response = {**self.response_extras, **dict(data.get("response") or {})}
            event = data = {**data, "response": response}
        if generation is not None and generation != self.turn.generation:
            raise Fenced(f"{kind} of connection {generation} (now {self.turn.generation})")
        conn = self.conn
        if conn is None:
            raise Drop("not connected")
        self.metrics.sent_events[kind] = self.metrics.sent_events.get(kind, 0) + 1
        if kind == "response.create":
            self.turn.response_requested()  # in flight until response.created (or an error)
        if self.transcript.tracing:
            self.transcript.trace("out", dict(data))
        log.debug("send %s", kind)
        try:
            await conn.send(event)
        except SdkConnectionError as exc:
            raise Drop(f"send failed: {exc}") from None

    async def append(self, pcm: bytes) -> None:
        """Microphone audio, ten times a second: the lean path (no tracing, no debug log).

        The JSON is built by hand (base64 needs no escaping) and written to the SDK
        connection's own WebSocket: ``conn.send`` would re-scan the 6 KB string with
        ``json.dumps``, which is most of the client's CPU per append. Any other connection
        object goes through ``conn.send``.
        """
        from azure.ai.voicelive.aio import ConnectionError as SdkConnectionError

        conn = self.conn
        if conn is None:
            return
        sent = self.metrics.sent_events
        sent["input_audio_buffer.append"] = sent.get("input_audio_buffer.append", 0) + 1
        audio = base64.b64encode(pcm).decode("ascii")
        ws = raw_socket(conn)
        with contextlib.suppress(SdkConnectionError, *_SOCKET_ERRORS):  # receive sees the drop
            if ws is not None:
                await ws.send_str(_APPEND_HEAD + audio + '"}')
            else:
                await conn.send({"type": "input_audio_buffer.append", "audio": audio})


def raw_socket(conn: Any) -> Any:
    """The aiohttp WebSocket inside an SDK connection, or None if this SDK keeps it elsewhere."""
    from aiohttp import ClientWebSocketResponse

    ws = getattr(conn, "_connection", None)
    return ws if isinstance(ws, ClientWebSocketResponse) else None
