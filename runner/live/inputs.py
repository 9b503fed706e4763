"""The user's side of a live session: microphone or WAV audio, and typed lines.

Audio goes out as ``input_audio_buffer.append``, one per chunk the source hands over; typed
lines are turns in order (``q`` ends after the reply already asked for).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sys
import threading
import time
from typing import Any

from runner.errors import VlrunError
from runner.live.audio import level_dbfs
from runner.live.state import Drop, SessionCore

_APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
_SOCKET_ERRORS = (ConnectionError, RuntimeError)  # a closing socket (aiohttp raises either)
_QUIT_WORDS = frozenset({"q", "quit", "exit", "/q", "/quit"})


class InputSide(SessionCore):
    """Streams the source and reads typed lines (mixed into LiveSession)."""

    async def _input_pump(self) -> None:
        assert self.source is not None
        meter = self.transcript.meter_enabled
        live = getattr(self.source, "live", True)
        # One append per chunk of at least send_ms: every event costs a JSON encode, a WebSocket
        # frame and a wake-up, and the service needs the audio, not the capture cadence.
        fmt = getattr(self.source, "fmt", self.player.fmt)
        batch = fmt.bytes_for_ms(self.send_ms)
        pending = bytearray()
        if not live:
            await self._ready.wait()  # a file loses nothing: start once the session is ready
        try:
            async for chunk in self.source.frames():
                if self._stop.is_set():
                    return
                if meter:
                    self.transcript.meter(level_dbfs(chunk))
                if not self._ready.is_set():
                    if live:
                        continue  # (re)connecting: live audio from now cannot be delivered
                    await self._ready.wait()
                if not pending and len(chunk) >= batch:
                    await self._append(chunk)  # the usual case: one device chunk, one append
                    continue
                pending += chunk
                if len(pending) >= batch:
                    await self._append(bytes(pending))
                    pending.clear()
            if pending and self._ready.is_set():
                await self._append(bytes(pending))  # the end of a file is audio too
        except VlrunError as exc:
            self.transcript.error(exc.message)
            self.stop()
            return
        self._input_done = True
        if self.end_when_input_ends:
            await self._finish_after_reply()

    async def _append(self, pcm: bytes) -> None:
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
        ws = _raw_socket(conn)
        with contextlib.suppress(SdkConnectionError, *_SOCKET_ERRORS):  # receive sees the drop
            if ws is not None:
                await ws.send_str(_APPEND_HEAD + audio + '"}')
            else:
                await conn.send({"type": "input_audio_buffer.append", "audio": audio})

    async def _line_pump(self) -> None:
        while True:
            line = await self._line_queue.get()
            if line is None:  # end of stdin
                if self.source is None:
                    self._input_done = True
                    if self.end_when_input_ends:
                        await self._finish_after_reply()
                return
            text = line.strip()
            if self._question is not None and not self._question.done():
                self._question.set_result(text)
                continue
            if text.lower() in _QUIT_WORDS:
                if self._reply_owed():
                    # Lines are turns in order: a reply already asked for is part of the
                    # conversation, so it is heard (and logged) before the session ends.
                    self.transcript.notice("ending after this reply (Ctrl+C ends now)")
                    if self.source is not None:
                        self.source.close()  # no new turns from the microphone meanwhile
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            self._wait_until(lambda: not self._reply_owed()),
                            self.finish_timeout_s,
                        )
                        await asyncio.wait_for(self.player.drain(), self.finish_timeout_s)
                self.stop()
                return
            if text:
                await self._ready.wait()
                await self.send_text(text)

    async def send_text(self, text: str) -> None:
        """A typed user turn: a message item, then a response (after the previous reply ends)."""
        from azure.ai.voicelive.models import InputTextContentPart, UserMessageItem

        await self._wait_until(
            lambda: (
                not self._awaiting_reply
                and self._active is None
                and not self._requested
                and not self._tool_tasks
            )
        )
        await self._ready.wait()
        item_id = f"typed_{len(self.transcript.turns)}_{int(time.time() * 1000)}"
        self.transcript.user(item_id, text)
        self._eos_at = time.perf_counter()
        self._awaiting_reply = True
        with contextlib.suppress(Drop):
            item = UserMessageItem(content=[InputTextContentPart(text=text)])
            await self._send({"type": "conversation.item.create", "item": item.as_dict()})
            await self._send({"type": "response.create"})

    async def _finish_after_reply(self) -> None:
        """End of input: wait for the reply in progress, let it play out, then stop."""
        try:
            if self.source is not None:
                # A file sent with --fast can end before the service has even heard the
                # speech in it: the turn starts when it says so, not when sending stops.
                await asyncio.wait_for(
                    self._wait_until(lambda: self._heard_speech), timeout=self.finish_timeout_s
                )
            await asyncio.wait_for(self._idle(), timeout=self.finish_timeout_s)
        except asyncio.TimeoutError:
            self.transcript.notice("input ended; no reply came, stopping")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.player.drain(), timeout=self.finish_timeout_s)
        self.stop()


def _raw_socket(conn: Any) -> Any:
    """The aiohttp WebSocket inside an SDK connection, or None if this SDK keeps it elsewhere."""
    from aiohttp import ClientWebSocketResponse

    ws = getattr(conn, "_connection", None)
    return ws if isinstance(ws, ClientWebSocketResponse) else None


def start_line_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin on a daemon thread (a blocking read cannot be cancelled) and hand lines over."""

    def reader() -> None:
        stream = sys.stdin
        try:
            for line in stream:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)

    if sys.stdin is None:
        queue.put_nowait(None)
        return
    threading.Thread(target=reader, name="vlrun-stdin", daemon=True).start()
