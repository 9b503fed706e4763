"""Twilio Media Streams frames: parse what Twilio sends, build what we send. A pure codec.

No I/O, no asyncio, no logging: :func:`parse` turns one WebSocket text frame into one small
event and never raises, whatever the bytes; :class:`StreamEncoder` builds a stream's outbound
frames from a JSON head and tail encoded once per stream, so a media frame costs one base64
encode and one concatenation.

Field by field from Twilio's "Media Streams - WebSocket Messages" page
(https://www.twilio.com/docs/voice/media-streams/websocket-messages); its example messages
are the test vectors in tests/data/provider_frames/twilio/.

In: ``connected`` (protocol, version), ``start`` (streamSid, accountSid, callSid, tracks,
customParameters, mediaFormat), ``media`` (track, chunk, timestamp, base64 payload of
``audio/x-mulaw`` 8 kHz mono; chunk and timestamp are strings of digits), ``dtmf`` (track,
digit), ``mark`` (the name we sent, echoed once the audio before it has played or was
cleared), ``stop`` (accountSid, callSid). ``sequenceNumber`` is a string too.
Out (bidirectional streams only): ``media`` (streamSid, payload: raw μ-law, no file header),
``mark`` (streamSid, name), ``clear`` (streamSid).
"""

from __future__ import annotations

import binascii
import json
from base64 import b64encode
from dataclasses import dataclass, field
from typing import Any, Final

from runner.serve.codec_json import JsonError, b64decode_strict, loads_object, safe_sample

MAX_FRAME_BYTES: Final = 64 * 1024  # a 20 ms media frame is ~300 bytes of JSON
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
MULAW: Final = "audio/x-mulaw"


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str = MULAW
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str = ""
    tracks: tuple[str, ...] = ()
    custom_parameters: dict[str, str] = field(default_factory=dict)
    media_format: MediaFormat = MediaFormat()


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 4x, 50 times a second
class Media:
    payload: bytes  # μ-law 8 kHz, as Twilio sent it
    track: str = "inbound"
    chunk: str = ""  # as Twilio sends them: strings of digits, "" when absent
    timestamp: str = ""  # ms since the stream started

    @property
    def inbound(self) -> bool:
        """The caller's side: the only track that is speech for the assistant."""
        return self.track == "inbound"

    @property
    def chunk_number(self) -> int | None:
        return _number(self.chunk)

    @property
    def timestamp_ms(self) -> int | None:
        return _number(self.timestamp)


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    track: str = "inbound_track"


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str = ""
    account_sid: str = ""


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that cannot be used. ``reason`` names the rule; ``sample`` is the frame's
    start made safe for a log line (printable ASCII, cut short)."""

    reason: str
    sample: str = ""


Event = Connected | Start | Media | Mark | Dtmf | Stop | Malformed


def parse(frame: str | bytes | bytearray | memoryview) -> Event:
    """One inbound text frame as an event. Never raises: bad input is :class:`Malformed`."""
    try:
        data = loads_object(frame, max_bytes=MAX_FRAME_BYTES)
    except JsonError as exc:
        return Malformed(f"frame {exc.message}", safe_sample(frame))
    event = data.get("event")
    if event == "media":  # 50 a second: first, inline
        media = data.get("media")
        if type(media) is dict:
            payload = media.get("payload")
            if type(payload) is str and payload:
                try:
                    # strict: characters outside the alphabet are an error, not skipped
                    audio = b64decode_strict(payload)
                except (binascii.Error, ValueError):
                    return Malformed("media whose payload is not base64", safe_sample(frame))
                if audio:
                    track = media.get("track", "inbound")
                    chunk = media.get("chunk", "")
                    stamp = media.get("timestamp", "")
                    return Media(
                        audio,
                        track if type(track) is str else "inbound",
                        chunk if type(chunk) is str else "",
                        stamp if type(stamp) is str else "",
                    )
            return Malformed("media without a base64 payload", safe_sample(frame))
        return Malformed("media without a media object", safe_sample(frame))
    if event == "mark":
        mark = data.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if isinstance(name, str):
            return Mark(name)
        return Malformed("mark without a name", safe_sample(frame))
    if event == "dtmf":
        dtmf = data.get("dtmf")
        dtmf = dtmf if isinstance(dtmf, dict) else {}
        digit = dtmf.get("digit")
        if isinstance(digit, str) and digit in DTMF_DIGITS:
            return Dtmf(digit, _text(dtmf.get("track"), "inbound_track"))
        return Malformed("dtmf without a digit", safe_sample(frame))
    if event == "start":
        return _start(data, frame)
    if event == "stop":
        stop = data.get("stop")
        stop = stop if isinstance(stop, dict) else {}
        return Stop(_text(stop.get("callSid")), _text(stop.get("accountSid")))
    if event == "connected":
        return Connected(_text(data.get("protocol")), _text(data.get("version")))
    if isinstance(event, str):
        return Malformed(f"unknown event {safe_sample(event, 32)!r}", safe_sample(frame))
    return Malformed("a frame without an event name", safe_sample(frame))


def _start(data: dict[str, Any], frame: Any) -> Event:
    info = data.get("start")
    if not isinstance(info, dict):
        return Malformed("start without a start object", safe_sample(frame))
    stream_sid = _text(info.get("streamSid")) or _text(data.get("streamSid"))
    call_sid = _text(info.get("callSid"))
    if not stream_sid or not call_sid:
        return Malformed("start without streamSid or callSid", safe_sample(frame))
    params = info.get("customParameters")
    if params is not None and not isinstance(params, dict):
        return Malformed("start whose customParameters is not an object", safe_sample(frame))
    fmt = info.get("mediaFormat")
    fmt = fmt if isinstance(fmt, dict) else {}
    tracks = info.get("tracks")
    return Start(
        stream_sid,
        call_sid,
        _text(info.get("accountSid")),
        tuple(t for t in tracks if isinstance(t, str)) if isinstance(tracks, list) else (),
        # Twilio's parameters are strings; anything else did not come from our TwiML
        {k: v for k, v in (params or {}).items() if isinstance(v, str)},
        MediaFormat(
            _text(fmt.get("encoding"), MULAW),
            _integer(fmt.get("sampleRate"), 8000),
            _integer(fmt.get("channels"), 1),
        ),
    )


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _integer(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _number(value: str) -> int | None:
    """Twilio's counters are strings of digits (``"chunk": "1"``)."""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


# ---------------------------------------------------------------------------------- outbound


class StreamEncoder:
    """The outbound frames of one stream. The JSON around a payload is encoded once, here:
    the stream id is escaped by ``json.dumps``, so no value can break out of its string."""

    __slots__ = ("_clear", "_head", "_head_bytes", "_mark_head", "stream_sid")

    _TAIL: Final = '"}}'
    _TAIL_BYTES: Final = b'"}}'

    def __init__(self, stream_sid: str) -> None:
        self.stream_sid = stream_sid
        sid = json.dumps(stream_sid)
        self._head = '{"event":"media","streamSid":' + sid + ',"media":{"payload":"'
        self._head_bytes = self._head.encode("ascii")  # json.dumps escapes to ASCII
        self._mark_head = '{"event":"mark","streamSid":' + sid + ',"mark":{"name":'
        self._clear = '{"event":"clear","streamSid":' + sid + "}"

    def media(self, audio: bytes | bytearray | memoryview) -> str:
        """A ``media`` frame carrying ``audio`` (μ-law 8 kHz; a memoryview slice is fine)."""
        return self._head + b64encode(audio).decode("ascii") + self._TAIL

    def media_bytes(self, audio: bytes | bytearray | memoryview) -> bytes:
        """The same frame as UTF-8 bytes, for a socket that sends a text frame from bytes."""
        return self._head_bytes + b64encode(audio) + self._TAIL_BYTES

    def mark(self, name: str) -> str:
        """A ``mark`` frame: Twilio echoes it once the audio sent before it has played."""
        return self._mark_head + json.dumps(name) + "}}"

    def clear(self) -> str:
        """A ``clear`` frame: Twilio drops the audio it holds and echoes pending marks."""
        return self._clear


def media_frame(stream_sid: str, audio: bytes | bytearray | memoryview) -> str:
    """One ``media`` frame (a :class:`StreamEncoder` saves rebuilding the head per frame)."""
    return StreamEncoder(stream_sid).media(audio)


def mark_frame(stream_sid: str, name: str) -> str:
    return StreamEncoder(stream_sid).mark(name)


def clear_frame(stream_sid: str) -> str:
    return StreamEncoder(stream_sid).clear()
