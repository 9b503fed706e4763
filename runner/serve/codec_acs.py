"""Azure Communication Services frames and webhook bodies: parse and build. A pure codec.

No I/O, no asyncio, no logging; nothing here raises on bad input except the two body
parsers, whose only exception is :class:`~runner.serve.codec_json.JsonError` (its ``status``
is the HTTP answer: 413 too large, 400 otherwise).

- Media socket (Call Automation audio streaming; https://learn.microsoft.com/azure/
  communication-services/how-tos/call-automation/audio-streaming-quickstart and the concept
  page .../concepts/call-automation/audio-streaming-concept): :func:`parse_media` turns one
  text frame into :class:`AudioMetadata`, :class:`AudioData`, :class:`DtmfData` or
  :class:`Malformed`. ACS writes ``kind``/``audioData`` (the docs' examples); Microsoft's
  samples and SDKs also use ``Kind``/``AudioData``: both casings are read, field by field.
  Out: :func:`audio_frame` and :func:`stop_audio_frame`, in the casing of the Python
  quickstart (``{"Kind": "AudioData", "AudioData": {"Data": ...}, "StopAudio": null}``).
- Event Grid webhook (https://learn.microsoft.com/azure/event-grid/webhook-event-delivery,
  https://learn.microsoft.com/azure/event-grid/communication-services-voice-video-events):
  :func:`parse_event_grid` gives :class:`SubscriptionValidation`, :class:`IncomingCall`,
  :class:`OtherEvent` or :class:`InvalidEvent` per element of the batch.
- Call Automation callbacks (CloudEvents; fields as the ``azure-communication-callautomation``
  SDK's generated models name them): :func:`parse_callbacks` gives :class:`CallConnected`,
  :class:`CallDisconnected`, :class:`MediaStreamingStarted` / ``Stopped`` / ``Failed``, or a
  plain :class:`CallEvent` for the rest, each with its ``callConnectionId``.
"""

from __future__ import annotations

import binascii
from base64 import b64encode
from dataclasses import dataclass, field
from typing import Any, Final

from runner.serve.codec_json import (
    JsonError,
    b64decode_strict,
    loads_any,
    loads_object,
    safe_sample,
)

MAX_FRAME_BYTES: Final = 64 * 1024  # 20 ms at 24 kHz is 960 bytes, ~1.4 KB of JSON
MAX_EVENT_BYTES: Final = 256 * 1024  # an IncomingCall is a few KB; Event Grid batches too
SUPPORTED_RATES: Final = (16000, 24000)
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
VALIDATION_EVENT: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
INCOMING_CALL: Final = "Microsoft.Communication.IncomingCall"
_PREFIX: Final = "Microsoft.Communication."

# ---------------------------------------------------------------------------------- media in


@dataclass(frozen=True, slots=True)
class AudioMetadata:
    sample_rate: int
    channels: int = 1
    encoding: str = "PCM"
    length: int | None = None  # bytes per frame (640 = 20 ms at 16 kHz)
    subscription_id: str = ""

    def unsupported(self) -> str | None:
        """Why vlrun cannot take this stream (PCM16 mono at 16 or 24 kHz), or None."""
        if self.encoding.lower() != "pcm":
            return f"encoding {safe_sample(self.encoding, 16)!r} (PCM expected)"
        if self.sample_rate not in SUPPORTED_RATES:
            return f"sample rate {self.sample_rate} Hz (16000 or 24000 expected)"
        if self.channels != 1:
            return f"{self.channels} channels (mono expected)"
        return None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 4x, 50 times a second
class AudioData:
    pcm: bytes  # PCM16 little-endian mono, at the metadata's rate
    silent: bool = False
    timestamp: str = ""
    participant: str = ""  # participantRawID (unmixed streams)


@dataclass(frozen=True, slots=True)
class DtmfData:
    digit: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that cannot be used: ``reason`` names the rule, ``sample`` is the frame's start
    made safe for a log line."""

    reason: str
    sample: str = ""


MediaEvent = AudioMetadata | AudioData | DtmfData | Malformed


def _get(obj: dict[str, Any], name: str) -> Any:
    """``obj[name]`` in either casing Microsoft writes (``audioData`` / ``AudioData``)."""
    value = obj.get(name)
    if value is None:
        value = obj.get(name[0].upper() + name[1:])
    return value


def parse_media(frame: str | bytes | bytearray | memoryview) -> MediaEvent:
    """One inbound media-socket text frame as an event. Never raises."""
    try:
        data = loads_object(frame, max_bytes=MAX_FRAME_BYTES)
    except JsonError as exc:
        return Malformed(f"frame {exc.message}", safe_sample(frame))
    kind = data.get("kind")
    if kind is None:
        kind = data.get("Kind")
    if kind == "AudioData":  # 50 a second: first, with the fewest calls
        audio = data.get("audioData")
        if audio is None:
            audio = data.get("AudioData")
        if type(audio) is not dict:
            return Malformed("AudioData without PCM16 data", safe_sample(frame))
        payload = audio.get("data")
        if payload is None:
            payload = audio.get("Data")
        if type(payload) is not str or not payload:
            return Malformed("AudioData without PCM16 data", safe_sample(frame))
        try:
            pcm = b64decode_strict(payload)
        except (binascii.Error, ValueError):
            return Malformed("AudioData whose data is not base64", safe_sample(frame))
        if not pcm or len(pcm) % 2:
            return Malformed("AudioData without PCM16 data", safe_sample(frame))
        get = audio.get  # inline, both casings: no call per field 50 times a second
        silent = get("silent")
        if silent is None:
            silent = get("Silent")
        stamp = get("timestamp")
        if stamp is None:
            stamp = get("Timestamp")
        who = get("participantRawID")
        if who is None:
            who = get("ParticipantRawID")
        return AudioData(
            pcm,
            silent is True,
            stamp if type(stamp) is str else "",
            who if type(who) is str else "",
        )
    if kind == "DtmfData":
        dtmf = _get(data, "dtmfData")
        digit = _get(dtmf, "data") if isinstance(dtmf, dict) else None
        if isinstance(digit, str) and digit in DTMF_DIGITS:
            return DtmfData(digit)
        return Malformed("DtmfData without a digit", safe_sample(frame))
    if kind == "AudioMetadata":
        return _metadata(data, frame)
    if isinstance(kind, str):
        return Malformed(f"unknown frame kind {safe_sample(kind, 32)!r}", safe_sample(frame))
    return Malformed("a frame without a kind", safe_sample(frame))


def _metadata(data: dict[str, Any], frame: Any) -> MediaEvent:
    meta = _get(data, "audioMetadata")
    if not isinstance(meta, dict):
        return Malformed("AudioMetadata without audioMetadata", safe_sample(frame))
    rate = _count(_get(meta, "sampleRate"))
    channels = _get(meta, "channels")
    # the docs send a number; the JS SDK's type is a name ("mono")
    count = 1 if channels is None or _text(channels).lower() == "mono" else _count(channels)
    encoding = _get(meta, "encoding")
    length = _get(meta, "length")
    if not rate or not count or not isinstance(encoding, str | None):
        return Malformed("AudioMetadata with a bad rate, channels or encoding", safe_sample(frame))
    return AudioMetadata(
        rate,
        count,
        encoding or "PCM",
        _count(length) if length is not None else None,
        _text(_get(meta, "subscriptionId")),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    """A positive whole number (or a string of digits); 0 when it is not one."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if value > 0 else 0
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    return 0


# --------------------------------------------------------------------------------- media out

_AUDIO_HEAD: Final = '{"Kind":"AudioData","AudioData":{"Data":"'
_AUDIO_TAIL: Final = '"},"StopAudio":null}'
_AUDIO_HEAD_BYTES: Final = _AUDIO_HEAD.encode()
_AUDIO_TAIL_BYTES: Final = _AUDIO_TAIL.encode()
_STOP_AUDIO: Final = '{"Kind":"StopAudio","AudioData":null,"StopAudio":{}}'


def audio_frame(pcm: bytes | bytearray | memoryview) -> str:
    """An ``AudioData`` frame: ACS plays ``pcm`` (PCM16 mono at the stream's rate)."""
    return _AUDIO_HEAD + b64encode(pcm).decode("ascii") + _AUDIO_TAIL


def audio_frame_bytes(pcm: bytes | bytearray | memoryview) -> bytes:
    """The same frame as UTF-8 bytes, for a socket that sends a text frame from bytes."""
    return _AUDIO_HEAD_BYTES + b64encode(pcm) + _AUDIO_TAIL_BYTES


def stop_audio_frame() -> str:
    """A ``StopAudio`` frame: ACS drops the audio it has queued (a barge-in)."""
    return _STOP_AUDIO


# -------------------------------------------------------------------------------- Event Grid


@dataclass(frozen=True, slots=True)
class Identifier:
    """A CommunicationIdentifier: ``kind`` (lower case), ``raw_id``, and the E.164 number of
    a phone."""

    kind: str = ""
    raw_id: str = ""
    phone_number: str = ""

    @property
    def id(self) -> str:
        """The phone number for a phone, the raw id for anyone else."""
        return self.phone_number or self.raw_id


@dataclass(frozen=True, slots=True)
class SubscriptionValidation:
    code: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class IncomingCall:
    context: str  # incomingCallContext: what answer_call / reject_call take
    caller: Identifier = Identifier()
    called: Identifier = Identifier()
    caller_display_name: str = ""
    server_call_id: str = ""
    correlation_id: str = ""
    sip_headers: dict[str, str] = field(default_factory=dict)
    voip_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OtherEvent:
    event_type: str


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """An element of the batch that cannot be used; ``reason`` names the rule."""

    reason: str
    event_type: str = ""


GridEvent = SubscriptionValidation | IncomingCall | OtherEvent | InvalidEvent


def _events(body: str | bytes | bytearray | memoryview, max_bytes: int) -> list[Any]:
    value = loads_any(body, max_bytes=max_bytes)
    if isinstance(value, dict):
        return [value]  # one event, not in an array
    if isinstance(value, list):
        return value
    raise JsonError("not_object", "not an event or an array of events")


def parse_event_grid(
    body: str | bytes | bytearray | memoryview, *, max_bytes: int = MAX_EVENT_BYTES
) -> list[GridEvent]:
    """An Event Grid delivery's events, in order (Event Grid or CloudEvents schema).

    Raises :class:`JsonError` only for a body that is not a JSON event batch at all."""
    out: list[GridEvent] = []
    for event in _events(body, max_bytes):
        if not isinstance(event, dict):
            out.append(InvalidEvent("an event that is not an object"))
            continue
        kind = _text(event.get("eventType")) or _text(event.get("type"))
        data = event.get("data")
        if not isinstance(data, dict):
            out.append(InvalidEvent("an event without a data object", _safe_type(kind)))
        elif kind == VALIDATION_EVENT:
            code = data.get("validationCode")
            if isinstance(code, str) and code:
                out.append(SubscriptionValidation(code, _text(data.get("validationUrl"))))
            else:
                out.append(InvalidEvent("a validation event without a code", kind))
        elif kind == INCOMING_CALL:
            out.append(_incoming_call(data))
        elif kind:
            out.append(OtherEvent(_safe_type(kind)))
        else:
            out.append(InvalidEvent("an event without a type"))
    return out


def _incoming_call(data: dict[str, Any]) -> GridEvent:
    context = data.get("incomingCallContext")
    if not isinstance(context, str) or not context:
        return InvalidEvent("an IncomingCall without incomingCallContext", INCOMING_CALL)
    custom = data.get("customContext")
    custom = custom if isinstance(custom, dict) else {}
    return IncomingCall(
        context,
        identifier(data.get("from")),
        identifier(data.get("to")),
        _text(data.get("callerDisplayName")),
        _text(data.get("serverCallId")),
        _text(data.get("correlationId")),
        _strings(custom.get("sipHeaders")),
        _strings(custom.get("voipHeaders")),
    )


def identifier(value: Any) -> Identifier:
    """A CommunicationIdentifierModel (``{"kind": "phoneNumber", "rawId": "4:+1…",
    "phoneNumber": {"value": "+1…"}}``). Microsoft's examples write the kind as
    ``phoneNumber`` and as ``PhoneNumber``: it is compared without case."""
    if not isinstance(value, dict):
        return Identifier()
    kind = _text(value.get("kind")).lower()
    phone = value.get("phoneNumber")
    number = _text(phone.get("value")) if isinstance(phone, dict) else ""
    if kind not in ("", "phonenumber"):
        number = ""
    return Identifier(kind or ("phonenumber" if number else ""), _text(value.get("rawId")), number)


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _safe_type(kind: str) -> str:
    return safe_sample(kind, 96)


# --------------------------------------------------------------------------------- callbacks


@dataclass(frozen=True, slots=True)
class ResultInformation:
    code: int | None = None
    sub_code: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A Call Automation callback. ``type`` is the short name (``CallConnected``)."""

    type: str
    call_connection_id: str = ""
    server_call_id: str = ""
    correlation_id: str = ""
    operation_context: str = ""
    result: ResultInformation | None = None


@dataclass(frozen=True, slots=True)
class CallConnected(CallEvent):
    pass


@dataclass(frozen=True, slots=True)
class CallDisconnected(CallEvent):
    pass


@dataclass(frozen=True, slots=True)
class MediaStreamingEvent(CallEvent):
    """MediaStreamingStarted / Stopped / Failed, with the update's status and details."""

    status: str = ""
    status_details: str = ""


@dataclass(frozen=True, slots=True)
class MediaStreamingStarted(MediaStreamingEvent):
    pass


@dataclass(frozen=True, slots=True)
class MediaStreamingStopped(MediaStreamingEvent):
    pass


@dataclass(frozen=True, slots=True)
class MediaStreamingFailed(MediaStreamingEvent):
    pass


_CALL_EVENTS: Final[dict[str, type[CallEvent]]] = {
    "CallConnected": CallConnected,
    "CallDisconnected": CallDisconnected,
}
_STREAMING_EVENTS: Final[dict[str, type[MediaStreamingEvent]]] = {
    "MediaStreamingStarted": MediaStreamingStarted,
    "MediaStreamingStopped": MediaStreamingStopped,
    "MediaStreamingFailed": MediaStreamingFailed,
}


def parse_callbacks(
    body: str | bytes | bytearray | memoryview, *, max_bytes: int = MAX_EVENT_BYTES
) -> list[CallEvent | InvalidEvent]:
    """A callback request's CloudEvents, in order. Raises :class:`JsonError` only for a
    body that is not a JSON event batch at all."""
    out: list[CallEvent | InvalidEvent] = []
    for event in _events(body, max_bytes):
        if not isinstance(event, dict):
            out.append(InvalidEvent("an event that is not an object"))
            continue
        full = _text(event.get("type"))
        data = event.get("data")
        if not full:
            out.append(InvalidEvent("an event without a type"))
            continue
        if not isinstance(data, dict):
            out.append(InvalidEvent("an event without a data object", _safe_type(full)))
            continue
        short = _safe_type(full.removeprefix(_PREFIX))
        common = (
            short,
            _text(data.get("callConnectionId")),
            _text(data.get("serverCallId")),
            _text(data.get("correlationId")),
            _text(data.get("operationContext")),
            _result(data.get("resultInformation")),
        )
        if short in _CALL_EVENTS:
            out.append(_CALL_EVENTS[short](*common))
        elif short in _STREAMING_EVENTS:
            update = data.get("mediaStreamingUpdate")
            update = update if isinstance(update, dict) else {}
            out.append(
                _STREAMING_EVENTS[short](
                    *common,
                    status=_text(update.get("mediaStreamingStatus")),
                    status_details=_text(update.get("mediaStreamingStatusDetails")),
                )
            )
        else:
            out.append(CallEvent(*common))
    return out


def _result(value: Any) -> ResultInformation | None:
    if not isinstance(value, dict):
        return None
    code, sub = value.get("code"), value.get("subCode")
    return ResultInformation(
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        sub if isinstance(sub, int) and not isinstance(sub, bool) else None,
        _text(value.get("message")),
    )
