"""The browser edge: the console page, its WebSocket and one conversation per socket.

One WebSocket carries a conversation: binary messages are PCM16 mono audio (microphone frames
from the page at the session's input rate; reply audio to the page at the output rate), text
messages are JSON events. docs/serve.md lists every message. The page is static files
shipped in the package (plain ES modules); nothing secret is ever sent to it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from runner.config.service import dated_audio
from runner.errors import EXIT_OK, VlrunError
from runner.live.audio import AudioFormat, wire_formats
from runner.live.gpt_live import GptLiveSession
from runner.live.images import MAX_IMAGE_BYTES, ImageError
from runner.live.sessions import takes_images
from runner.live.transcript import Transcript
from runner.redact import clean_line, redact_obj
from runner.serve.host import (
    MAX_IMAGE_TEXT,
    Conversation,
    Edge,
    Host,
    ProfileInvalid,
    Refused,
    describe_problems,
)
from runner.serve.web import (
    HOST_KEY,
    IMAGE_UPLOAD,
    OPTIONS_KEY,
    ServeOptions,
    body_limit,
    console_route,
    origin_ok,
    refuse,
)

log = logging.getLogger("vlrun.serve")

STATIC = Path(__file__).parent / "static"
#: The conversation picture's drawing, shared with `vlrun test`'s HTML report: one file, served
#: to the page as its own static files are.
SHARED_STATIC = Path(__file__).parents[1] / "scenarios" / "static"
_SHARED_NAMES = ("timeline.js", "timeline.css")

#: Microphone frames the page may send: 10-200 ms (it sends 20-100 ms).
MIN_FRAME_MS, MAX_FRAME_MS = 10, 200
#: Frames waiting for the session (a stalled connection drops the oldest, like a live mic).
SOURCE_QUEUE = 50
#: Push-to-talk presses held while the session connects.
MAX_HELD_TALKS = 8
#: How long a held press waits for the session to take in the frames before it.
HELD_TAKEN_S = 2.0
#: Messages waiting for a slow page before the conversation gives up on it.
OUT_QUEUE = 4000
_CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
#: "flow: now in NODE", the live session's notice when a flow enters a node.
_FLOW_NODE = re.compile(r"^flow: now in (\S+)$")
_TIMELINE_IN = {
    "input_audio_buffer.speech_started": "speech_started",
    "input_audio_buffer.speech_stopped": "speech_stopped",
    "response.created": "response_created",
    "response.done": "response_done",
    "session.delegation.created": "delegation",  # GPT-Live hands work to its backend
}
#: The service confirmed the session: Voice Live's session.updated, GPT-Live's session.started.
_READY_EVENTS = frozenset({"session.updated", "session.started"})
#: GptLiveSession's notice for a backchannel (the page gets a backchannel message instead).
_BACKCHANNEL_NOTICE = "backchannel: "
_TIMELINE_OUT = {
    "conversation.item.truncate": "truncate",
    "response.cancel": "cancel",
    "input_audio_buffer.commit": "commit",
}


def install(app: web.Application, host: Host, options: ServeOptions) -> None:
    """The page, its static files, the WebSocket, the profile list and the downloads."""
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/favicon.ico", _favicon)
    app.router.add_get("/api/profiles", _profiles)
    app.router.add_get("/api/conversations/{id}/transcript.txt", _download_transcript)
    app.router.add_get("/api/conversations/{id}/trace.jsonl", _download_trace)
    app.router.add_post("/api/conversations/{id}/image", _upload_image)
    app.router.add_get("/ws", _websocket)


# ------------------------------------------------------------------------ HTTP


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@console_route
async def _index(request: web.Request) -> web.StreamResponse:
    return _file(STATIC / "index.html")


@console_route(token=False)
async def _static(request: web.Request) -> web.StreamResponse:
    # Static code is not secret (the page loads it without the token), but it is served
    # under the same Host rule as the rest.
    name = request.match_info["name"]
    if name in _SHARED:
        return _file(_SHARED[name])
    if "/" in name or name.startswith(".") or name not in _STATIC_NAMES:
        raise web.HTTPNotFound()
    return _file(STATIC / name)


@console_route(token=False)
async def _favicon(request: web.Request) -> web.StreamResponse:
    # Browsers ask for /favicon.ico whatever the page links; the page's own icon answers
    # (an SVG: every browser the console supports shows one) instead of a logged 404.
    return _file(STATIC / "favicon.svg")


#: The shipped files (read once: no stat per request, and nothing else is ever served).
_STATIC_NAMES = frozenset(p.name for p in STATIC.iterdir() if p.is_file())
_SHARED = {name: SHARED_STATIC / name for name in _SHARED_NAMES if name not in _STATIC_NAMES}


def _file(path: Path) -> web.FileResponse:
    # Sent from the file by aiohttp (opened and read off the loop), never read whole here.
    kind = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    headers = {**_SECURITY_HEADERS, "Content-Type": f"{kind}; charset=utf-8"}
    return web.FileResponse(path, headers=headers)


@console_route
async def _profiles(request: web.Request) -> web.Response:
    return web.json_response(profile_list(request.app[HOST_KEY]))


def profile_list(host: Host) -> dict[str, Any]:
    """What the picker shows: names and where they live (relative), each profile's mocks
    file (its name, never its folder: the page says tool calls are answered by it), and the
    target."""
    mocks = host.options.mock_tools
    profiles = []
    for entry in host.profiles():
        own = host.mocks_for(entry)
        profiles.append(
            {"name": entry.name, "file": entry.path.name, "mocks": own.name if own else None}
        )
    return {
        "profiles": profiles,
        **host.status(),
        "mock_tools": None if mocks is None else mocks.name + _folder_mark(mocks),
        "max_image_bytes": MAX_IMAGE_BYTES,  # an image turn's bound (the page checks first)
    }


@console_route
async def _download_transcript(request: web.Request) -> web.StreamResponse:
    return await _download(request, "transcript")


@console_route
async def _download_trace(request: web.Request) -> web.StreamResponse:
    return await _download(request, "trace")


async def _download(request: web.Request, what: str) -> web.StreamResponse:
    """A conversation's log or trace, streamed from its file (a long conversation's trace
    is many megabytes: it is never read whole, and never on the loop)."""
    conv_id = request.match_info["id"]
    conv = request.app[HOST_KEY].conversations.get(conv_id)
    if conv is None:
        raise web.HTTPNotFound(text="no such conversation\n")
    suffix = "txt" if what == "transcript" else "jsonl"
    headers = {
        "Content-Type": "text/plain; charset=utf-8"
        if what == "transcript"
        else "application/x-ndjson; charset=utf-8",
        "Content-Disposition": f'attachment; filename="vlrun-{conv_id}-{what}.{suffix}"',
        "Cache-Control": "no-store",
    }
    path = conv.conversation_path if what == "transcript" else conv.trace_path
    if path is None:
        if what == "trace":
            raise web.HTTPNotFound(text="no trace yet\n")
        # Not written to a file yet: the turns so far, as the log would show them.
        turns = conv.transcript.turns if conv.transcript is not None else []
        text = "".join(f"{t.role}: {t.text}\n" for t in turns)
        return web.Response(text=text, headers=headers)
    if conv.transcript is not None:  # its lines written so far, not up to the last batch
        await conv.transcript.written()
    # A file not there (yet) is a 404 from FileResponse itself.
    return web.FileResponse(path, headers=headers)


@console_route
async def _upload_image(request: web.Request) -> web.StreamResponse:
    """An image turn for a running conversation: ``multipart/form-data`` with the file as
    ``image`` (its Content-Type: PNG, JPEG, GIF or WebP) and an optional question as
    ``text``. 202 once queued (it is sent after the reply in progress); otherwise a JSON
    ``error`` and ``hint`` that the page shows."""
    options: ServeOptions = request.app[OPTIONS_KEY]
    if not origin_ok(request, options):  # a page of another site cannot post into a call
        return refuse(request, 403, "an image upload from another origin (or none)")
    conv = request.app[HOST_KEY].conversations.get(request.match_info["id"])
    if conv is None:
        return _image_refused(404, "no such conversation", "press Start first")
    if conv.uploading:  # one image read at a time per conversation bounds the memory
        return _image_refused(
            409, "an image is being uploaded already", "send the next one once it is queued"
        )
    try:
        conv.check_image_room()  # before the body: a refused upload is not read
        with conv.reading_upload():
            data, mime, text = await _image_form(request, body_limit(request))
        kind = conv.send_image(data, mime, text)
    except ImageError as exc:
        return _image_refused(413 if isinstance(exc, _TooBig) else 400, exc.message, exc.hint)
    except VlrunError as exc:
        return _image_refused(409, exc.message, exc.hint)
    log.info("conversation %s: an image turn queued (%s, %d bytes)", conv.id, kind, len(data))
    return web.json_response({"queued": True, "mime": kind, "bytes": len(data)}, status=202)


setattr(_upload_image, IMAGE_UPLOAD, True)  # its body may be an image's size: read bounded here


class _TooBig(ImageError):
    """A part of the upload over its bound (413)."""


def _image_refused(status: int, message: str, hint: str | None) -> web.Response:
    return web.json_response({"error": clean_line(message), "hint": hint}, status=status)


async def _image_form(request: web.Request, limit: int) -> tuple[bytes, str, str | None]:
    """The form's image (bytes, declared type) and question, each read within its bound."""
    if request.content_type != "multipart/form-data":
        raise ImageError(
            f"an image turn is a multipart/form-data upload, not {request.content_type}",
            hint="send the file as the form field `image` (and a question as `text`)",
        )
    try:
        reader = await request.multipart()
        data: bytes | None = None
        mime, text = "", None
        left = limit  # the whole form's bound: a chunked body declares no length to refuse
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ImageError("a nested form is not an image turn")
            if part.name == "image" and data is None:
                mime = part.headers.get("Content-Type", "")
                data = await _read_part(part, min(MAX_IMAGE_BYTES, left), "the image")
                left -= len(data)
            elif part.name == "text" and text is None:
                raw = await _read_part(part, min(4 * MAX_IMAGE_TEXT, left), "the question")
                left -= len(raw)
                text = raw.decode("utf-8", errors="replace").strip() or None
            else:
                left -= len(await _read_part(part, left, "the form"))  # read past it, bounded
    except (ValueError, AssertionError) as exc:  # aiohttp's word for a malformed form
        raise ImageError(f"a malformed image upload ({clean_line(str(exc))[:200]})") from None
    except ConnectionError:  # the page went away mid-upload: an answer nobody reads, no trace
        raise ImageError("the upload was cut off before its end") from None
    if data is None:
        raise ImageError("the upload has no image", hint="send the file as the form field `image`")
    return data, mime, text


async def _read_part(part: BodyPartReader, bound: int, what: str) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > bound:
            if what == "the image" and bound == MAX_IMAGE_BYTES:
                raise _TooBig(
                    f"the image is over the {bound / 1048576:.0f} MB an image may be",
                    hint="scale it down (e.g. `convert in.png -resize 1600x1600 out.jpg`)",
                )
            raise _TooBig(
                f"{what} is over the upload's bound",
                hint="send one image (the form field `image`) and a question (`text`) only",
            )
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------ the edge


class PageSource:
    """Microphone frames from the page (a bounded queue: a stall drops the oldest)."""

    live = True

    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(SOURCE_QUEUE)
        self._taken = asyncio.Event()  # the reader has taken in every frame fed so far
        self.dropped = 0

    def feed(self, pcm: bytes) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(pcm)
        self._taken.clear()

    async def frames(self) -> AsyncIterator[bytes]:
        while True:
            if self._queue.empty():
                self._taken.set()  # asking for more: what came before has been dealt with
            data = await self._queue.get()
            if data is None:
                return
            yield data

    async def taken(self, timeout: float) -> bool:
        """Wait until the reader has dealt with every frame fed so far (False: not in time)."""
        try:
            await asyncio.wait_for(self._taken.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def close(self) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
        self._queue.put_nowait(None)


class PagePlayer:
    """Plays the reply in the page; the played position is what the page reports.

    The page's playback worklet reports its position (``played``) every few frames; between
    reports the position advances with the clock, and never beyond what was sent. On barge-in
    :meth:`interrupt` tells the page to flush its jitter buffer at once and returns the
    position the page last reported plus the time since, so the truncate matches what the
    person heard; the page's own count at the flush comes back as ``flushed`` and is traced.
    """

    def __init__(self, fmt: AudioFormat, page: PageLink) -> None:
        self.fmt = fmt
        self.page = page
        self.clock = _clock()  # replaced by the transcript's, so both say the same t_ms
        self._item: str | None = None
        self._sent_ms = 0.0
        self._first_write: float | None = None
        self._report: tuple[float, float] | None = None  # (page ms, monotonic when received)
        self.flushes = 0

    def write(self, item_id: str, pcm: bytes) -> None:
        if item_id != self._item:
            self._item, self._sent_ms, self._report = item_id, 0.0, None
            self._first_write = time.monotonic()
            self.page.send({"type": "audio_item", "item": item_id, "t_ms": self.clock()})
        self._sent_ms += self.fmt.ms_for_bytes(len(pcm))
        self.page.send_bytes(pcm)

    def reported(self, item_id: str, ms: float) -> None:
        """The page's playback position for ``item_id``."""
        if item_id == self._item and ms >= 0:
            self._report = (min(float(ms), self._sent_ms), time.monotonic())

    def played_ms(self) -> int:
        if self._item is None:
            return 0
        now = time.monotonic()
        if self._report is not None:
            ms, at = self._report
            estimate = ms + (now - at) * 1000
        else:
            # Nothing reported yet: the page has at most played since the first chunk came.
            estimate = (now - (self._first_write or now)) * 1000 - PAGE_BUFFER_MS
        return int(max(0.0, min(self._sent_ms, estimate)))

    def pending_ms(self) -> float:
        if self._item is None:
            return 0.0
        return max(0.0, self._sent_ms - self.played_ms())

    def interrupt(self) -> tuple[str | None, int]:
        played = self.played_ms()
        item = self._item
        log.debug(
            "page flush of %s at %d ms (page reported %s, %.0f ms sent)",
            item,
            played,
            self._report,
            self._sent_ms,
        )
        if item is not None:
            self.flushes += 1
            self.page.send({"type": "flush", "item": item, "played_ms": played})
        self._item, self._sent_ms, self._report = None, 0.0, None
        return item, played

    async def drain(self) -> None:
        remaining = self.pending_ms()
        if remaining > 0:
            await asyncio.sleep(remaining / 1000)  # the known play-out time, not a poll

    def close(self) -> None:
        self._item = None


#: The page starts playing once this much is buffered (its jitter buffer).
PAGE_BUFFER_MS = 60


class PageLink:
    """The outgoing side of one socket: a bounded queue and the one task that writes it."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue(OUT_QUEUE)
        self.overflowed = False

    def send(self, message: Mapping[str, Any]) -> None:
        self._put(json.dumps(message, default=str))

    def send_bytes(self, data: bytes) -> None:
        self._put(data)

    def _put(self, item: str | bytes) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True  # the page stopped reading: the conversation ends
            log.warning("a page is not reading its socket; ending its conversation")

    def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def pump(self) -> None:
        """Write queued messages until closed; the socket's own errors end it quietly."""
        while True:
            item = await self._queue.get()
            if item is None or self.ws.closed:
                return
            try:
                if isinstance(item, bytes):
                    await self.ws.send_bytes(item)
                else:
                    await self.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return


class PageTranscript(Transcript):
    """A Transcript that also tells the page every turn, tool call and timeline event."""

    def __init__(self, page: PageLink, player_ref: list[PagePlayer], **options: Any) -> None:
        options.setdefault("out", _Null())
        options.setdefault("err", _Null())
        super().__init__(**options)
        self.page = page
        self._players = player_ref
        self._t0 = time.monotonic()
        self._mocked: frozenset[str] = frozenset()  # tools answered from a mocks file

    def _ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000)

    def mocked(self, names: frozenset[str]) -> None:
        """The tools this conversation answers from mocks (their results say so)."""
        self._mocked = names

    @property
    def tracing(self) -> bool:
        return True  # the timeline needs the events even when nobody keeps a trace

    def trace(self, direction: str, event: dict[str, Any]) -> None:
        super().trace(direction, event)
        kind = str(event.get("type", ""))
        # Voice Live confirms its session with session.updated, GPT-Live with session.started
        if kind in _READY_EVENTS and direction == "in":
            self.page.send({"type": "ready"})
        name = (_TIMELINE_IN if direction == "in" else _TIMELINE_OUT).get(kind)
        if name is None:
            return
        entry: dict[str, Any] = {"type": "timeline", "event": name, "t_ms": self._ms()}
        for key in ("item_id", "audio_end_ms", "audio_start_ms"):
            if key in event:
                entry[key] = event[key]
        self.page.send(entry)

    def user(self, item_id: str, text: str) -> None:
        if item_id not in self._seen:
            self.page.send({"type": "user", "item": item_id, "text": text, "t_ms": self._ms()})
        super().user(item_id, text)

    def assistant_delta(self, item_id: str, delta: str) -> None:
        if item_id not in self._seen:
            self.page.send(
                {"type": "assistant_delta", "item": item_id, "delta": delta, "t_ms": self._ms()}
            )
        super().assistant_delta(item_id, delta)

    def assistant_done(self, item_id: str, text: str, *, interrupted: bool = False) -> None:
        before = len(self.turns)
        super().assistant_done(item_id, text, interrupted=interrupted)
        if len(self.turns) > before:
            turn = self.turns[-1]
            self.page.send(
                {
                    "type": "assistant",
                    "item": item_id,
                    "text": turn.text,
                    "interrupted": turn.interrupted,
                    "t_ms": self._ms(),
                }
            )

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self.page.send(
            {
                "type": "tool_call",
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
                "t_ms": self._ms(),
            }
        )
        super().tool_call(call_id, name, arguments)

    def tool_result(self, call_id: str, name: str, ok: bool, text: str, duration_s: float) -> None:
        self.page.send(
            {
                "type": "tool_result",
                "call_id": call_id,
                "name": name,
                "ok": ok,
                "text": text[:2000],
                "duration_ms": round(duration_s * 1000, 1),
                "mocked": name in self._mocked,
                "t_ms": self._ms(),
            }
        )
        super().tool_result(call_id, name, ok, text, duration_s)

    def latency(self, ms: float, what: str = "end of speech -> first audio") -> None:
        self.page.send(
            {
                "type": "timeline",
                "event": "first_audio",
                "t_ms": self._ms(),
                "latency_ms": ms,
                "what": what,
            }
        )
        super().latency(ms, what)

    def event(self, kind: str, summary: str = "", payload: dict[str, Any] | None = None) -> None:
        if kind == "barge-in":
            self.page.send(
                {"type": "timeline", "event": "barge_in", "t_ms": self._ms(), "detail": summary}
            )
        super().event(kind, summary, payload)

    def trace_note(self, record: dict[str, Any]) -> None:
        # GPT-Live's full duplex (docs/gpt-live.md): a backchannel is shown as one, never as
        # a reply or a barge-in (nothing is flushed), and a reply the model stopped for the
        # caller is marked as yielded
        kind = record.get("type")
        if kind == "backchannel":
            self.page.send(
                {
                    "type": "backchannel",
                    "item": str(record.get("item_id") or ""),
                    "text": clean_line(str(record.get("text") or "")),
                    "t_ms": self._ms(),
                }
            )
        elif kind == "yield":
            self.page.send(
                {
                    "type": "timeline",
                    "event": "yield",
                    "item_id": str(record.get("item_id") or ""),
                    "t_ms": self._ms(),
                }
            )
        super().trace_note(record)

    def notice(self, text: str) -> None:
        if text.startswith(_BACKCHANNEL_NOTICE):
            super().notice(text)  # the page has it as a backchannel message (trace_note)
            return
        node = _FLOW_NODE.match(text)
        if node is not None:
            self.page.send(
                {"type": "timeline", "event": "node", "t_ms": self._ms(), "node": node[1]}
            )
        self.page.send({"type": "notice", "text": clean_line(text)})
        super().notice(text)

    def warning(self, text: str) -> None:
        self.page.send({"type": "warning", "text": clean_line(text)})
        super().warning(text)

    def error(self, text: str) -> None:
        self.page.send({"type": "error", "text": clean_line(text)})
        super().error(text)

    def banner(self, text: str) -> None:
        self.page.send({"type": "notice", "text": clean_line(text)})
        super().banner(text)


class _Null:
    """A text stream that keeps nothing (the page is the console)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class BrowserEdge(Edge):
    """One page's conversation: PCM frames in, reply audio and events out."""

    kind = "browser"

    def __init__(self, page: PageLink, host: Host) -> None:
        super().__init__()
        self.page = page
        self.host = host
        self._players: list[PagePlayer] = []
        self.page_source: PageSource | None = None
        self.page_player: PagePlayer | None = None
        self.conversation: Conversation | None = None
        self.in_fmt: AudioFormat | None = None
        self.declared_rate: int | None = None
        self.attached_event = asyncio.Event()
        self.stopped = False  # the page stopped it before it was up (it was cancelled)
        self.ended_sent = False
        self._clock: Callable[[], int] | None = None  # the transcript's t_ms (the player's too)

    def open_audio(self, session: Mapping[str, Any]) -> tuple[Any, Any]:
        # the session in either shape: v1 keeps its formats under ``audio``
        in_fmt, out_fmt, _, _ = wire_formats(dated_audio(dict(session)))
        self.in_fmt = in_fmt
        self.page_source = PageSource(in_fmt)
        self.page_player = PagePlayer(out_fmt, self.page)
        if self._clock is not None:
            self.page_player.clock = self._clock
        self._players.append(self.page_player)
        return self.page_source, self.page_player

    def transcript(self, **options: Any) -> Transcript:
        transcript = PageTranscript(self.page, self._players, **options)
        self._clock = transcript._ms
        for player in self._players:
            player.clock = transcript._ms
        return transcript

    def attached(self, conversation: Conversation) -> None:
        self.conversation = conversation
        live = conversation.live
        if live is not None:
            live.talk_notices = False  # the page shows the talk state (no console key)
        assert self.in_fmt is not None and self.page_player is not None
        mocks = _mocks(conversation, self.host)
        if mocks is not None and isinstance(conversation.transcript, PageTranscript):
            conversation.transcript.mocked(frozenset(mocks["tools"]))
        flow = getattr(live, "flow", None)
        node = getattr(getattr(flow, "node", None), "name", None)
        duplex = isinstance(live, GptLiveSession)
        self.page.send(
            {
                "type": "session",
                "conversation": conversation.id,
                "profile": conversation.profile,
                "input_rate": self.in_fmt.rate,
                "output_rate": self.page_player.fmt.rate,
                "push_to_talk": bool(getattr(live, "manual_turns", False)),
                # GPT-Live: full duplex (backchannels, yields); typed turns only under
                # Responses delegation; no image turns
                "duplex": duplex,
                "typed_turns": not duplex or getattr(live, "delegation_type", "") == "responses",
                "images": live is not None and takes_images(live),
                "explain": [list(row) for row in redact_obj(conversation.explain)],
                "emulator": self.host.embedded,
                "target": self.host.target_line,
                "mocks": mocks,
                "node": node if isinstance(node, str) else None,
            }
        )
        self.attached_event.set()

    def closing(self, reason: str) -> None:
        self.page.send({"type": "notice", "text": reason})

    def ended(self, conversation: Conversation, code: int) -> None:
        if self.stopped:
            code = EXIT_OK  # ended as the page asked (cancelled while it connected)
        self.ended_sent = True
        self.page.send({"type": "ended", "conversation": conversation.id, "code": code})
        if self.page_source is not None:
            self.page_source.close()


def _folder_mark(path: Path) -> str:
    return "/" if path.is_dir() else ""


def _mocks(conversation: Conversation, host: Host) -> dict[str, Any] | None:
    """Which tools this conversation answers from its mocks file (None: no mocks)."""
    path = conversation.mocks
    mocks = getattr(conversation.registry, "mocks", None)
    if path is None or not isinstance(mocks, Mapping) or not mocks:
        return None  # nothing is answered from mocks
    return {"file": path.name, "tools": sorted(str(tool) for tool in mocks)}


def _clock() -> Callable[[], int]:
    t0 = time.monotonic()
    return lambda: int((time.monotonic() - t0) * 1000)


# ------------------------------------------------------------------------ the socket


@console_route(websocket=True)
async def _websocket(request: web.Request) -> web.StreamResponse:
    options = request.app[OPTIONS_KEY]
    host = request.app[HOST_KEY]
    # The hard limit closes the socket; below it, an oversized message is refused and the
    # conversation goes on.
    ws = web.WebSocketResponse(
        max_msg_size=4 * options.max_frame_bytes, heartbeat=options.heartbeat_s, compress=False
    )
    await ws.prepare(request)
    page = PageLink(ws)
    session = _PageSession(ws, page, host, request.remote or "?", options)
    writer = asyncio.create_task(page.pump(), name="vlrun-serve-writer")
    page.send({"type": "hello", **profile_list(host)})
    try:
        await session.read()
    finally:
        await session.end()
        page.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(writer), 2.0)
        if not writer.done():
            writer.cancel()
        await asyncio.wait({writer})
        if not writer.cancelled() and writer.exception() is not None:
            log.warning("the page writer failed: %s", writer.exception())
        await ws.close()
    return ws


class _PageSession:
    """Reads one socket: starts a conversation on request, routes everything the page says.

    The read loop never waits for the conversation: Start spawns it, a push-to-talk press
    while the session connects is applied by a helper once it is up, and a ``stop`` before
    the session is up ends the conversation at once (it is cancelled: nothing is owed yet).
    Frames that come before the conversation has its audio open are dropped and counted.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        page: PageLink,
        host: Host,
        peer: str,
        options: ServeOptions,
    ) -> None:
        self.limit = options.max_frame_bytes
        self.options = options
        self.ws = ws
        self.page = page
        self.host = host
        self.peer = peer
        self.edge: BrowserEdge | None = None
        self.task: asyncio.Task[int] | None = None
        self.early_frames = 0  # frames after Start, before the session's audio was open
        # push-to-talk presses (None) waiting for the session, and the frames after them
        self._held: collections.deque[bytes | None] = collections.deque()
        self._talker: asyncio.Task[None] | None = None

    def bad(self, why: str) -> None:
        """Bad input from the page: an error to it and a log line; the conversation goes on."""
        log.warning("page %s: %s", self.peer, why)
        self.page.send({"type": "error", "text": why})

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT) and len(msg.data) > self.limit:
                self.bad(f"a message of {len(msg.data)} bytes is over the {self.limit}-byte limit")
            elif msg.type == WSMsgType.BINARY:
                self.audio(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await self.command(msg.data)
            elif msg.type == WSMsgType.ERROR:
                log.warning("page %s: socket error %s", self.peer, self.ws.exception())
                return
            if self.page.overflowed:
                return

    def audio(self, data: bytes) -> None:
        edge = self.edge
        if edge is None or self.task is None or self.task.done():
            self.bad("audio before a conversation started; frames dropped")
            return
        if edge.page_source is None or edge.in_fmt is None:
            self.early_frames += 1  # the session is being built: its rate is not known yet
            return
        fmt = edge.in_fmt
        if edge.declared_rate is not None and edge.declared_rate != fmt.rate:
            return  # said once when declared
        if len(data) % 2:
            self.bad(f"an audio frame of {len(data)} bytes is not whole 16-bit samples; dropped")
            return
        ms = fmt.ms_for_bytes(len(data))
        if not MIN_FRAME_MS <= ms <= MAX_FRAME_MS:
            self.bad(
                f"an audio frame of {ms:.0f} ms is outside {MIN_FRAME_MS}-{MAX_FRAME_MS} ms; "
                "dropped"
            )
            return
        if self._held:
            self._hold(data)  # behind a talk press that waits for the session
        else:
            edge.page_source.feed(data)  # bounded: a session still connecting drops the oldest

    async def command(self, text: str) -> None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            self.bad("a message that is not JSON (or nested too deeply); ignored")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.bad("a message without a type; ignored")
            return
        kind = message["type"]
        handler = getattr(self, f"on_{kind}", None) if kind in _COMMANDS else None
        if handler is None:
            self.bad(f"unknown message type {clean_line(kind)[:40]!r}; ignored")
            return
        try:
            await handler(message)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            self.bad(f"a malformed {kind} message ({clean_line(str(exc))[:200]}); ignored")

    async def on_start(self, message: dict[str, Any]) -> None:
        if self.task is not None and not self.task.done():
            self.bad("a conversation is already running on this page; stop it first")
            return
        name = str(message["profile"])
        rate = int(message["rate"]) if "rate" in message else None
        # The host loads and checks the profile as it admits the conversation: a profile
        # that fails comes back as ProfileInvalid (the page gets its problems), and this
        # loop goes on reading meanwhile.
        self.edge = BrowserEdge(self.page, self.host)
        self.edge.declared_rate = rate
        self.early_frames = 0
        self.task = asyncio.create_task(self._converse(name, self.edge), name="vlrun-serve-conv")

    async def _converse(self, name: str, edge: BrowserEdge) -> int:
        try:
            code = await self.host.converse(name, edge)
        except Refused as exc:
            self.page.send({"type": "refused", "reason": exc.reason, "text": exc.message})
            return exc.exit_code
        except ProfileInvalid as exc:
            self.page.send(
                {"type": "problems", "profile": name, "problems": describe_problems(exc.problems)}
            )
            return exc.exit_code
        except VlrunError as exc:
            self.page.send({"type": "error", "text": exc.message, "hint": exc.hint})
            return exc.exit_code
        finally:
            if self.early_frames:
                log.info(
                    "page %s: %d frame(s) came before the session's audio was open; dropped",
                    self.peer,
                    self.early_frames,
                )
        return code

    async def on_format(self, message: dict[str, Any]) -> None:
        rate = int(message["rate"])
        edge = self.edge
        if edge is None:
            self.bad("format before a conversation started; ignored")
            return
        edge.declared_rate = rate
        if edge.in_fmt is not None and rate != edge.in_fmt.rate:
            self.bad(
                f"audio at {rate} Hz; this session takes {edge.in_fmt.rate} Hz mono PCM16 "
                "(frames dropped until the page sends that)"
            )

    async def on_text(self, message: dict[str, Any]) -> None:
        conv = self._conversation()
        text = str(message["text"])
        if conv is not None and text.strip():
            conv.type_text(text.replace("\n", " "))

    async def on_talk(self, message: dict[str, Any]) -> None:
        conv = self._conversation()
        if conv is None or conv.live is None:
            return
        if conv.live.ready.is_set() and not self._held:
            conv.talk()
            return
        # Pressed while still connecting: the press counts once the session is up, with the
        # frames after it kept in order behind it (bounded). A helper waits for the session,
        # so this loop goes on reading, and a stop meanwhile ends the conversation at once.
        if sum(1 for item in self._held if item is None) >= MAX_HELD_TALKS:
            self.bad("too many talk presses before the session was up; ignored")
            return
        self._held.append(None)
        if self._talker is None or self._talker.done():
            if self._talker is not None:
                _reap(self._talker)
            self._talker = asyncio.create_task(self._talk_when_ready(conv), name="vlrun-talk")

    def _hold(self, frame: bytes) -> None:
        """A frame after a press that waits for the session: kept in order (the oldest frame
        gives way past the bound, as a live microphone's would)."""
        if sum(1 for item in self._held if item is not None) >= SOURCE_QUEUE:
            for i, item in enumerate(self._held):
                if item is not None:
                    del self._held[i]
                    self.early_frames += 1
                    break
        self._held.append(frame)

    async def _talk_when_ready(self, conv: Conversation) -> None:
        assert conv.live is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(conv.live.ready.wait(), self.options.connect_wait_s)
        # What the page said, in the order it said it: a press acts once the session has
        # taken in the frames before it. Frames and presses that come meanwhile queue behind
        # (``_held`` is not empty until the end). Unconnected still, a press says so and its
        # frames are dropped, as they would be live.
        edge = self.edge
        fed = False
        while self._held and conv.running:
            item = self._held.popleft()
            source = edge.page_source if edge is not None else None
            if item is None:
                if fed and source is not None:
                    await source.taken(HELD_TAKEN_S)
                fed = False
                conv.talk()
            elif source is not None:
                source.feed(item)
                fed = True
        self._held.clear()

    async def on_played(self, message: dict[str, Any]) -> None:
        if self.edge is not None and self.edge.page_player is not None:
            self.edge.page_player.reported(str(message["item"]), _ms(message))

    async def on_flushed(self, message: dict[str, Any]) -> None:
        conv = self._conversation()
        if conv is not None and conv.transcript is not None:
            conv.transcript.trace_note(
                {
                    "type": "page_flushed",
                    "item_id": str(message["item"]),
                    "played_ms": _ms(message),
                }
            )

    async def on_stop(self, message: dict[str, Any]) -> None:
        task, edge = self.task, self.edge
        if task is None or task.done() or edge is None:
            self.bad("no conversation is running; press Start first")
            return
        conv = edge.conversation
        live = conv.live if conv is not None else None
        if conv is not None and live is not None and live.ready.is_set():
            conv.end() if message.get("graceful") else conv.hang_up()
            return
        # Not up yet (being built, connecting, or reconnecting): nothing is owed, so the
        # conversation ends now instead of after a connect that may take many seconds.
        edge.stopped = True
        if conv is not None:
            conv.hang_up()  # should it come up meanwhile, it ends at once
        await self._cancel()

    def _conversation(self) -> Conversation | None:
        edge = self.edge
        if edge is None or edge.conversation is None or not edge.conversation.running:
            self.bad("no conversation is running; press Start first")
            return None
        return edge.conversation

    async def _cancel(self) -> None:
        """End the conversation task now (it is ours), and tell the page it ended."""
        await self._stop_talker()
        task, edge = self.task, self.edge
        if task is None:
            return
        if not await self._ended(task, cancel=True):
            return
        if edge is not None and not edge.ended_sent:
            # cancelled before the host admitted it: the page still hears that it is over
            edge.ended_sent = True
            self.page.send({"type": "ended", "conversation": None, "code": EXIT_OK})

    async def end(self) -> None:
        """The socket is gone: hang up and wait for the conversation to free its session."""
        await self._stop_talker()
        task, edge = self.task, self.edge
        if task is None:
            return
        conv = edge.conversation if edge is not None else None
        if conv is not None and conv.live is not None and conv.live.ready.is_set():
            conv.hang_up()  # up: it ends itself, closing its session properly
            if await self._ended(task, cancel=False):
                return
        await self._ended(task, cancel=True)  # not up (or not ending): nothing owed, end it

    async def _ended(self, task: asyncio.Task[int], *, cancel: bool) -> bool:
        """Wait (bounded) for the conversation task, cancelling it first if asked; whether
        it has ended. Its failure, if any, is logged here (its owner has seen it)."""
        if not task.done():
            if cancel:
                task.cancel()
            await asyncio.wait({task}, timeout=self.options.end_timeout_s)
        if not task.done():
            if cancel:
                log.warning("page %s: its conversation did not end when cancelled", self.peer)
            return False
        if not task.cancelled() and task.exception() is not None:
            log.warning("conversation task failed: %s", task.exception())
        return True

    async def _stop_talker(self) -> None:
        talker, self._talker = self._talker, None
        if talker is None:
            return
        if not talker.done():
            talker.cancel()
            await asyncio.wait({talker}, timeout=self.options.end_timeout_s)
        _reap(talker)


def _reap(task: asyncio.Task[Any]) -> None:
    """A helper task that has ended: its failure is logged (it is a bug), not left unseen."""
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning("%s failed: %r", task.get_name(), task.exception())


def _ms(message: Mapping[str, Any]) -> float:
    """A playback position: a finite number of milliseconds (NaN would make the trace's
    JSON invalid, infinity every estimate)."""
    ms = float(message["ms"])
    if not math.isfinite(ms) or ms < 0:
        raise ValueError(f"ms must be a finite number of milliseconds, not {ms}")
    return ms


_COMMANDS = frozenset({"start", "format", "text", "talk", "played", "flushed", "stop"})
