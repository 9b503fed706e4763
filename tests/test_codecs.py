"""The phone edges' pure codecs against the providers' own example frames, and hostile input.

Every example in tests/data/provider_frames/ (sources in its SOURCES.md) parses to the event
its page describes; what we build round-trips to the documented shape; and no input, however
broken, large or deep, makes a codec raise anything but the one error the body parsers
declare (a JsonError carrying the HTTP status).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.serve import codec_acs as acs
from runner.serve import codec_json
from runner.serve import codec_twilio as twilio
from runner.serve.codec_json import JsonError, loads_any, loads_object, nesting_depth

FRAMES = Path(__file__).parent / "data" / "provider_frames"
DEEP = "[" * 100_000  # 100k levels: the standard library's parser dies at about 1,000
DEEP_FRAME = "[" * 60_000  # as deep as fits in one media frame (64 KB)
TWO_MB = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
HOSTILE_TEXT = "\r\n\x1b[31m\u202eevil\x00"  # CR, LF, ESC, a bidi override, NUL


def frame(provider: str, name: str) -> str:
    return (FRAMES / provider / name).read_text(encoding="utf-8")


def doc(provider: str, name: str) -> Any:
    return json.loads(frame(provider, name))


@pytest.fixture(params=["default", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each JSON test runs on the parser installed (orjson) and on the standard library's."""
    if request.param == "stdlib":
        monkeypatch.setattr(codec_json, "_parse", codec_json._stdlib_parse)
    return str(request.param)


def log_safe(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


# ------------------------------------------------------------------------------ codec_json


def test_the_hostile_inputs_are_real_hazards_for_the_standard_library() -> None:
    # What the ACS handlers did (json.loads on the body): a RecursionError, hence the 500.
    with pytest.raises(RecursionError):
        json.loads(DEEP)


@pytest.mark.parametrize(
    "deep",
    [DEEP, "{" + '"a":{' * 100_000, '{"a":' * 100_000, '[{"a":' * 50_000, DEEP.encode()],
    ids=["arrays", "objects-unquoted", "objects", "mixed", "bytes"],
)
def test_deep_nesting_is_too_deep_never_recursion_error(backend: str, deep: str | bytes) -> None:
    with pytest.raises(JsonError) as caught:
        loads_any(deep, max_bytes=10**7)
    assert caught.value.kind == "too_deep"
    assert caught.value.status == 400


def test_depth_limits_of_each_parser(backend: str) -> None:
    # provider frames nest at most 6 levels; 64 is fine everywhere, 1100 refused everywhere
    assert loads_any("[" * 64 + "]" * 64, max_bytes=10**6) == _nested(64)
    with pytest.raises(JsonError, match="nested too deeply"):
        loads_any("[" * 1100 + "]" * 1100, max_bytes=10**6)
    if backend == "stdlib":  # the guard in front of the recursive parser is exact
        limit = codec_json.MAX_DEPTH
        assert loads_any("[" * limit + "]" * limit, max_bytes=10**6) == _nested(limit)
        with pytest.raises(JsonError, match="nested too deeply"):
            loads_any("[" * (limit + 1) + "]" * (limit + 1), max_bytes=10**6)
        with pytest.raises(JsonError, match="nested too deeply"):
            loads_any("[" * 20 + "]" * 20, max_bytes=10**6, max_depth=10)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_brackets_inside_strings_do_not_count(backend: str) -> None:
    text = json.dumps({"a": "[" * 5000, "b": "{" * 5000, "c": ['\\"[[[[', '\\\\"']})
    assert loads_object(text, max_bytes=10**6)["a"] == "[" * 5000


def test_an_escaped_backslash_does_not_hide_the_brackets_after_a_string(backend: str) -> None:
    # "x\\" ends at its second quote: the 2000 brackets after it are structure, not text
    text = '["x\\\\",' + "[" * 2000 + "]" * 2000 + "]"
    with pytest.raises(JsonError, match="nested too deeply"):
        loads_any(text, max_bytes=10**6)
    # "x\"..." does not end there: these brackets are inside the string
    text = '["x\\",' + "[" * 2000 + '"]'
    assert loads_any(text, max_bytes=10**6) == ['x",' + "[" * 2000]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text('[]{}"\\k'), inner),
    max_leaves=60,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_nesting_depth_is_exact_for_any_json(value: Any) -> None:
    assert nesting_depth(json.dumps(value).encode()) == _depth(value)


def test_too_large_is_413_and_measured_in_bytes(backend: str) -> None:
    with pytest.raises(JsonError) as caught:
        loads_any(TWO_MB, max_bytes=256 * 1024)
    assert (caught.value.kind, caught.value.status, caught.value.message) == (
        "too_large",
        413,
        "too large",
    )
    wide = json.dumps("é" * 20_000, ensure_ascii=False)  # 20k characters, 40k bytes
    with pytest.raises(JsonError, match="too large"):
        loads_any(wide, max_bytes=30_000)
    assert loads_any(wide, max_bytes=50_000) == "é" * 20_000


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ("{", "not_json"),
        ("", "not_json"),
        ("[NaN]", "not_json"),  # not JSON, although Python's parser takes it by default
        (b"\xff\xfe{}", "not_json"),
        ('{"a": 1} trailing', "not_json"),
        (12345, "not_json"),  # not text at all: an error, not a TypeError
        ("[1, 2]", "not_object"),
        ('"a string"', "not_object"),
        ("null", "not_object"),
    ],
)
def test_bad_input_gets_a_kind_and_400(backend: str, data: Any, kind: str) -> None:
    with pytest.raises(JsonError) as caught:
        loads_object(data, max_bytes=1024)
    assert caught.value.kind == kind
    assert caught.value.status == 400
    assert isinstance(caught.value, ValueError)  # handlers catching ValueError still do


def test_every_buffer_type_is_read(backend: str) -> None:
    raw = b'{"event": "mark", "mark": {"name": "x"}}'
    for data in (raw, raw.decode(), bytearray(raw), memoryview(raw)):
        assert loads_object(data, max_bytes=1024) == {"event": "mark", "mark": {"name": "x"}}


def test_errors_never_carry_the_input() -> None:
    with pytest.raises(JsonError) as caught:
        loads_object('{"token": "sk-SECRET' + HOSTILE_TEXT, max_bytes=1024)
    assert "SECRET" not in str(caught.value)
    assert log_safe(str(caught.value))


def test_safe_sample_neutralises_control_characters_and_is_short() -> None:
    sample = codec_json.safe_sample("abc" + HOSTILE_TEXT + "x" * 500)
    assert log_safe(sample)
    assert sample.startswith("abc\\r\\n\\x1b[31m\\u202eevil\\x00")
    assert len(sample) <= 64
    assert codec_json.safe_sample(b"\xff\xfe" + b"a" * 10) == "\\ufffd\\ufffd" + "a" * 10
    # a caller's number in a refused frame keeps its last four digits only
    sample = codec_json.safe_sample('{"participantRawID": "4:+15551234567"}')
    assert "5551234" not in sample and "+*******4567" in sample


# ---------------------------------------------------------------------------- codec_twilio

SID = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("connected.json", twilio.Connected("Call", "1.0.0")),
        (
            "start.json",
            twilio.Start(
                SID,
                "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                ("inbound",),
                {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
                twilio.MediaFormat("audio/x-mulaw", 8000, 1),
            ),
        ),
        (
            "media_inbound.json",
            twilio.Media(base64.b64decode("no+JhoaJjpzS"), "inbound", "2", "5"),
        ),
        (
            "media_outbound_track.json",
            twilio.Media(base64.b64decode("no+JhoaJjpzS"), "outbound", "1", "5"),
        ),
        ("mark.json", twilio.Mark("my label")),
        ("dtmf.json", twilio.Dtmf("1", "inbound_track")),
        (
            "stop.json",
            twilio.Stop("CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ),
    ],
)
def test_twilio_documented_frames_parse(backend: str, name: str, expected: twilio.Event) -> None:
    # source: https://www.twilio.com/docs/voice/media-streams/websocket-messages
    text = frame("twilio", name)
    assert twilio.parse(text) == expected
    assert twilio.parse(text.encode()) == expected  # a socket read with decode_text=False


def test_twilio_only_the_inbound_track_is_the_callers_speech() -> None:
    inbound = twilio.parse(frame("twilio", "media_inbound.json"))
    outbound = twilio.parse(frame("twilio", "media_outbound_track.json"))
    assert isinstance(inbound, twilio.Media) and inbound.inbound
    assert isinstance(outbound, twilio.Media) and not outbound.inbound
    assert (inbound.chunk_number, inbound.timestamp_ms) == (2, 5)


def test_twilio_outbound_frames_round_trip_to_the_documented_shape() -> None:
    # source: https://www.twilio.com/docs/voice/media-streams/websocket-messages ("Send ...")
    encoder = twilio.StreamEncoder(SID)
    audio = bytes(range(256))[:160]  # 20 ms of μ-law
    expected = doc("twilio", "send_media.json")
    expected["media"]["payload"] = base64.b64encode(audio).decode()
    assert json.loads(encoder.media(audio)) == expected
    assert json.loads(encoder.mark("my label")) == doc("twilio", "send_mark.json")
    assert json.loads(encoder.clear()) == doc("twilio", "send_clear.json")
    assert encoder.media_bytes(audio) == encoder.media(audio).encode()
    assert twilio.media_frame(SID, audio) == encoder.media(audio)
    assert twilio.mark_frame(SID, "my label") == encoder.mark("my label")
    assert twilio.clear_frame(SID) == encoder.clear()


def test_twilio_media_from_a_memoryview_slice_has_the_slice_only() -> None:
    buffer = memoryview(bytes(range(256)) * 4)
    encoder = twilio.StreamEncoder(SID)
    sent = json.loads(encoder.media(buffer[160:640]))  # 60 ms: 480 bytes, 640 characters
    assert base64.b64decode(sent["media"]["payload"]) == bytes(buffer[160:640])
    assert len(sent["media"]["payload"]) == 640
    assert encoder.media_bytes(buffer[160:640]) == encoder.media(buffer[160:640]).encode()


def test_twilio_values_cannot_break_out_of_their_strings() -> None:
    sid = 'MZ"},"event":"clear' + HOSTILE_TEXT
    encoder = twilio.StreamEncoder(sid)
    media = json.loads(encoder.media(b"\xff"))
    assert (media["event"], media["streamSid"]) == ("media", sid)
    mark = json.loads(encoder.mark('a"}}' + HOSTILE_TEXT))
    assert mark["mark"]["name"] == 'a"}}' + HOSTILE_TEXT
    assert json.loads(encoder.clear()) == {"event": "clear", "streamSid": sid}


def _twilio_media(payload: Any, **media: Any) -> str:
    return json.dumps({"event": "media", "media": {"payload": payload, **media}})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("not json", "frame not JSON"),
        ("[1, 2]", "frame not a JSON object"),
        (DEEP_FRAME, "frame nested too deeply"),
        (DEEP, "frame too large"),
        (TWO_MB, "frame too large"),
        (b"\xff\xfe\x00", "frame not JSON"),
        ('{"event": 7}', "a frame without an event name"),
        ('{"event": "hangup"}', "unknown event 'hangup'"),
        ('{"event": "media"}', "media without a media object"),
        ('{"event": "media", "media": [1]}', "media without a media object"),
        (_twilio_media(None), "media without a base64 payload"),
        (_twilio_media(12345), "media without a base64 payload"),
        (_twilio_media(""), "media without a base64 payload"),
        (_twilio_media("!!!!"), "media whose payload is not base64"),
        (_twilio_media("AAA"), "media whose payload is not base64"),  # bad padding
        (_twilio_media("AA AA"), "media whose payload is not base64"),
        (_twilio_media("AAAA\n"), "media whose payload is not base64"),
        (_twilio_media("==AA"), "media whose payload is not base64"),
        (_twilio_media("ÀÀÀÀ"), "media whose payload is not base64"),
        ('{"event": "mark"}', "mark without a name"),
        ('{"event": "mark", "mark": {"name": 5}}', "mark without a name"),
        ('{"event": "dtmf", "dtmf": {"digit": "X"}}', "dtmf without a digit"),
        ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "dtmf without a digit"),
        ('{"event": "dtmf", "dtmf": "1"}', "dtmf without a digit"),
        ('{"event": "start"}', "start without a start object"),
        ('{"event": "start", "start": {"streamSid": "MZ1"}}', "start without streamSid or callSid"),
        (
            '{"event": "start", "start": {"streamSid": "MZ1", "callSid": 5}}',
            "start without streamSid or callSid",
        ),
        (
            '{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1",'
            ' "customParameters": ["route", "x"]}}',
            "start whose customParameters is not an object",
        ),
    ],
)
def test_twilio_hostile_frames_are_malformed_never_exceptions(
    backend: str, data: Any, reason: str
) -> None:
    event = twilio.parse(data)
    assert isinstance(event, twilio.Malformed)
    assert event.reason == reason
    assert log_safe(event.reason) and log_safe(event.sample)
    assert len(event.sample) <= 64


def test_twilio_malformed_samples_are_safe_for_a_log_line() -> None:
    event = twilio.parse(json.dumps({"event": "ev" + HOSTILE_TEXT}))
    assert isinstance(event, twilio.Malformed)
    assert log_safe(event.reason) and log_safe(event.sample)
    assert "\\u202e" in event.reason  # named, escaped


def test_twilio_lenient_where_the_field_is_only_information() -> None:
    event = twilio.parse(_twilio_media("AAAA", chunk="x1", timestamp=True, track=None))
    assert event == twilio.Media(b"\x00\x00\x00", "inbound", "x1", "")
    assert (event.chunk_number, event.timestamp_ms) == (None, None)
    start = twilio.parse(
        json.dumps(
            {
                "event": "start",
                "streamSid": "MZtop",
                "start": {
                    "callSid": "CA1",
                    "customParameters": {"route": "sales", "token": 5},
                    "tracks": ["inbound", 3],
                    "mediaFormat": {"sampleRate": "8000"},
                },
            }
        )
    )
    # the top-level streamSid is used when start has none; a non-string parameter is dropped
    assert start == twilio.Start(
        "MZtop", "CA1", "", ("inbound",), {"route": "sales"}, twilio.MediaFormat()
    )


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_twilio_parse_never_raises_on_any_bytes(data: bytes | str) -> None:
    assert isinstance(twilio.parse(data), twilio.Event)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(p.name for p in (FRAMES / "twilio").glob("*.json"))), st.data())
def test_twilio_parse_never_raises_on_mutated_documented_frames(name: str, data: Any) -> None:
    text = frame("twilio", name)
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 8))
    junk = data.draw(st.text(max_size=8))
    assert isinstance(twilio.parse(text[:at] + junk + text[at + cut :]), twilio.Event)


# ------------------------------------------------------------------------------- codec_acs

PCM = base64.b64decode("5ADwAOMA6AD0AA==")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "audio_metadata.json",
            acs.AudioMetadata(16000, 1, "PCM", 640, "89e8cb59-b991-48b0-b154-1db84f16a077"),
        ),
        (
            "audio_metadata_pascal.json",
            acs.AudioMetadata(24000, 1, "PCM", 960, "89e8cb59-b991-48b0-b154-1db84f16a077"),
        ),
        (
            "audio_data.json",
            acs.AudioData(PCM, False, "2024-11-15T19:16:12.925Z", "8:acs:3d20e1de-0f28-41c5…"),
        ),
        (
            "audio_data_pascal.json",
            acs.AudioData(PCM, True, "2024-11-15T19:16:12.925Z", "8:acs:3d20e1de-0f28-41c5…"),
        ),
        ("dtmf_data.json", acs.DtmfData("3")),
    ],
)
def test_acs_documented_media_frames_parse(
    backend: str, name: str, expected: acs.MediaEvent
) -> None:
    # source: learn.microsoft.com/azure/communication-services/how-tos/call-automation/
    # audio-streaming-quickstart (the Pascal-case files are the same frames, recased)
    text = frame("acs", name)
    assert acs.parse_media(text) == expected
    assert acs.parse_media(text.encode()) == expected


def test_acs_metadata_says_what_vlrun_cannot_take() -> None:
    meta = acs.parse_media(frame("acs", "audio_metadata.json"))
    assert isinstance(meta, acs.AudioMetadata) and meta.unsupported() is None
    assert acs.AudioMetadata(8000).unsupported() == (
        "sample rate 8000 Hz (16000 or 24000 expected)"
    )
    assert acs.AudioMetadata(16000, 2).unsupported() == "2 channels (mono expected)"
    assert acs.AudioMetadata(16000, 1, "opus").unsupported() == "encoding 'opus' (PCM expected)"
    mono = acs.parse_media(
        '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": "24000", "channels": "mono"}}'
    )
    assert mono == acs.AudioMetadata(24000, 1, "PCM", None, "")


def test_acs_outbound_frames_round_trip_in_todays_casing() -> None:
    # source: the audio-streaming quickstart's Python send_data / stop_audio
    expected = doc("acs", "send_audio_data.json")
    assert json.loads(acs.audio_frame(PCM)) == expected
    assert json.loads(acs.stop_audio_frame()) == doc("acs", "send_stop_audio.json")
    # byte for byte what AcsTransport sends today
    data = base64.b64encode(PCM).decode()
    assert acs.audio_frame(PCM) == (
        '{"Kind":"AudioData","AudioData":{"Data":"' + data + '"},"StopAudio":null}'
    )
    assert acs.stop_audio_frame() == '{"Kind":"StopAudio","AudioData":null,"StopAudio":{}}'
    assert acs.audio_frame_bytes(memoryview(PCM)) == acs.audio_frame(PCM).encode()


def _acs_audio(data: Any) -> str:
    return json.dumps({"kind": "AudioData", "audioData": {"data": data}})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("not json", "frame not JSON"),
        (DEEP_FRAME, "frame nested too deeply"),
        ('{"kind": "AudioData", "audioData": ' * 1_500, "frame nested too deeply"),
        (TWO_MB, "frame too large"),
        ("[]", "frame not a JSON object"),
        ("{}", "a frame without a kind"),
        ('{"kind": 3}', "a frame without a kind"),
        ('{"kind": "StopAudio"}', "unknown frame kind 'StopAudio'"),
        (_acs_audio(None), "AudioData without PCM16 data"),
        (_acs_audio(""), "AudioData without PCM16 data"),
        (_acs_audio(640), "AudioData without PCM16 data"),
        (_acs_audio("AA=="), "AudioData without PCM16 data"),  # 1 byte: odd-length PCM16
        (_acs_audio("AAAA"), "AudioData without PCM16 data"),  # 3 bytes: odd-length PCM16
        (_acs_audio("%%%%"), "AudioData whose data is not base64"),
        (_acs_audio("AA=A"), "AudioData whose data is not base64"),
        ('{"kind": "AudioData", "audioData": [1]}', "AudioData without PCM16 data"),
        ('{"kind": "DtmfData", "dtmfData": {"data": "#5"}}', "DtmfData without a digit"),
        ('{"kind": "DtmfData", "dtmfData": {"data": 5}}', "DtmfData without a digit"),
        ('{"kind": "AudioMetadata"}', "AudioMetadata without audioMetadata"),
        (
            '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": "fast"}}',
            "AudioMetadata with a bad rate, channels or encoding",
        ),
        (
            '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": -16000}}',
            "AudioMetadata with a bad rate, channels or encoding",
        ),
        (
            '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": true}}',
            "AudioMetadata with a bad rate, channels or encoding",
        ),
        (
            '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 16000, "channels": []}}',
            "AudioMetadata with a bad rate, channels or encoding",
        ),
        (
            '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 16000, "encoding": 1}}',
            "AudioMetadata with a bad rate, channels or encoding",
        ),
    ],
)
def test_acs_hostile_media_frames_are_malformed_never_exceptions(
    backend: str, data: Any, reason: str
) -> None:
    event = acs.parse_media(data)
    assert isinstance(event, acs.Malformed)
    assert event.reason == reason
    assert log_safe(event.reason) and log_safe(event.sample)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_acs_parse_media_never_raises_on_any_bytes(data: bytes | str) -> None:
    assert isinstance(acs.parse_media(data), acs.MediaEvent)


def test_event_grid_validation_event() -> None:
    # source: https://learn.microsoft.com/azure/event-grid/webhook-event-delivery
    (event,) = acs.parse_event_grid(frame("acs", "event_grid_validation.json").encode())
    assert isinstance(event, acs.SubscriptionValidation)
    assert event.code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert event.url.startswith("https://rp-eastus2.eventgrid.azure.net:553/")


def test_event_grid_incoming_call_between_acs_users() -> None:
    # source: https://learn.microsoft.com/azure/event-grid/communication-services-voice-video-events
    body = frame("acs", "event_grid_incoming_call.json")
    (event,) = acs.parse_event_grid(body)
    data = json.loads(body)[0]["data"]
    assert event == acs.IncomingCall(
        context=data["incomingCallContext"],
        caller=acs.Identifier("communicationuser", data["from"]["rawId"], ""),
        called=acs.Identifier("communicationuser", data["to"]["rawId"], ""),
        caller_display_name="John Doe",
        server_call_id=data["serverCallId"],
        correlation_id="d732db64-4803-462d-be9c-518943ea2b7a",
    )
    assert event.caller.id == data["from"]["rawId"]


def test_event_grid_incoming_pstn_call_reads_the_phone_numbers() -> None:
    # Microsoft's own PSTN example writes "kind": "PhoneNumber": today's handler compares it
    # case-sensitively with "phoneNumber" and routes on the raw id "4:+18331234567" instead
    # of the number.
    (event,) = acs.parse_event_grid(frame("acs", "event_grid_incoming_call_pstn.json"))
    assert isinstance(event, acs.IncomingCall)
    assert (event.caller.id, event.called.id) == ("+16041234567", "+18331234567")
    assert event.caller.kind == "phonenumber"
    lower = acs.identifier(
        {"kind": "phoneNumber", "rawId": "4:+1555", "phoneNumber": {"value": "+1555"}}
    )
    assert lower.id == "+1555"
    # another kind never takes a phone number from a stray field
    user = acs.identifier({"kind": "communicationUser", "rawId": "8:acs:x", "phoneNumber": {}})
    assert user.id == "8:acs:x"


def test_event_grid_batches_keep_going_past_bad_elements() -> None:
    incoming = doc("acs", "event_grid_incoming_call_pstn.json")[0]
    cloud = {"type": acs.INCOMING_CALL, "data": incoming["data"]}  # CloudEvents schema
    body = json.dumps(
        [
            5,
            {"eventType": acs.INCOMING_CALL, "data": {"from": {}}},
            {"eventType": acs.INCOMING_CALL, "data": "x"},
            {"eventType": acs.VALIDATION_EVENT, "data": {"validationCode": 7}},
            {"data": {}},
            {"eventType": "Microsoft.Communication.CallEnded", "data": {}},
            cloud,
        ]
    )
    events = acs.parse_event_grid(body)
    assert events[:6] == [
        acs.InvalidEvent("an event that is not an object"),
        acs.InvalidEvent("an IncomingCall without incomingCallContext", acs.INCOMING_CALL),
        acs.InvalidEvent("an event without a data object", acs.INCOMING_CALL),
        acs.InvalidEvent("a validation event without a code", acs.VALIDATION_EVENT),
        acs.InvalidEvent("an event without a type"),
        acs.OtherEvent("Microsoft.Communication.CallEnded"),
    ]
    assert isinstance(events[6], acs.IncomingCall) and events[6].caller.id == "+16041234567"
    # one event, not in an array, is a batch of one
    assert (
        acs.parse_event_grid(json.dumps(incoming))[0]
        == acs.parse_event_grid(json.dumps([incoming]))[0]
    )


@pytest.mark.parametrize("parser", [acs.parse_event_grid, acs.parse_callbacks])
@pytest.mark.parametrize(
    ("body", "kind", "status"),
    [
        (TWO_MB, "too_large", 413),  # was 400 "not JSON"
        (DEEP.encode(), "too_deep", 400),  # was a RecursionError: a 500 with a traceback
        ('[{"data": ' * 20_000, "too_deep", 400),
        (b"\x00\x01", "not_json", 400),
        (b'"IncomingCall"', "not_object", 400),
    ],
)
def test_webhook_bodies_refused_with_a_status(
    backend: str, parser: Any, body: bytes | str, kind: str, status: int
) -> None:
    with pytest.raises(JsonError) as caught:
        parser(body)
    assert (caught.value.kind, caught.value.status) == (kind, status)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "callback_call_connected.json",
            acs.CallConnected(
                "CallConnected",
                "441f1200-fd54-422e-9566-a867d187dca7",
                "e42f9a50-c36d-493a-9cc0-2fc1cdc7b708",
                "7a659f41-bd0f-4bae-8ac0-6af79283e1bc",
                "3f1c0a9e2b7d4c55",
            ),
        ),
        (
            "callback_call_disconnected.json",
            acs.CallDisconnected(
                "CallDisconnected",
                "441f1200-fd54-422e-9566-a867d187dca7",
                "e42f9a50-c36d-493a-9cc0-2fc1cdc7b708",
                "7a659f41-bd0f-4bae-8ac0-6af79283e1bc",
                "",
                acs.ResultInformation(200, 7000, "The conversation has ended."),
            ),
        ),
        (
            "callback_media_streaming_failed.json",
            acs.MediaStreamingFailed(
                "MediaStreamingFailed",
                "441f1200-fd54-422e-9566-a867d187dca7",
                "e42f9a50-c36d-493a-9cc0-2fc1cdc7b708",
                "7a659f41-bd0f-4bae-8ac0-6af79283e1bc",
                "",
                acs.ResultInformation(
                    500,
                    8580,
                    "Action failed, encountered failure while establishing websocket connection.",
                ),
                status="mediaStreamingFailed",
                status_details="streamConnectionInterrupted",
            ),
        ),
    ],
)
def test_callbacks_parse_to_typed_events(name: str, expected: acs.CallEvent) -> None:
    # shape: CloudEvents 1.0 + the azure-communication-callautomation SDK's model fields
    assert acs.parse_callbacks(frame("acs", name)) == [expected]


def test_callbacks_other_types_and_bad_elements() -> None:
    body = json.dumps(
        [
            {"type": "Microsoft.Communication.PlayCompleted", "data": {"callConnectionId": "c1"}},
            {"type": "Microsoft.Communication.MediaStreamingStarted", "data": {}},
            {"type": "Microsoft.Communication.CallConnected", "data": None},
            {"data": {"callConnectionId": "c1"}},
            [],
            {
                "type": "Microsoft.Communication.CallDisconnected",
                "data": {"callConnectionId": 5, "resultInformation": {"code": "500"}},
            },
        ]
    )
    assert acs.parse_callbacks(body) == [
        acs.CallEvent("PlayCompleted", "c1"),
        acs.MediaStreamingStarted("MediaStreamingStarted"),
        acs.InvalidEvent("an event without a data object", "Microsoft.Communication.CallConnected"),
        acs.InvalidEvent("an event without a type"),
        acs.InvalidEvent("an event that is not an object"),
        acs.CallDisconnected("CallDisconnected", result=acs.ResultInformation()),
    ]


def test_event_types_from_the_wire_are_safe_for_a_log_line() -> None:
    (event,) = acs.parse_callbacks(json.dumps([{"type": "X" + HOSTILE_TEXT, "data": {}}]))
    assert log_safe(event.type)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(p.name for p in (FRAMES / "acs").glob("*.json"))), st.data())
def test_acs_parsers_raise_only_json_errors_on_mutated_documented_frames(
    name: str, data: Any
) -> None:
    text = frame("acs", name)
    at = data.draw(st.integers(0, len(text)))
    mutated = text[:at] + data.draw(st.text(max_size=8)) + text[at + data.draw(st.integers(0, 8)) :]
    assert isinstance(acs.parse_media(mutated), acs.MediaEvent)
    for parser in (acs.parse_event_grid, acs.parse_callbacks):
        try:
            events = parser(mutated)
        except JsonError:
            continue
        assert isinstance(events, list)


def test_the_codecs_stay_pure() -> None:
    # no I/O, no asyncio, no logging: importing them pulls in none of these
    for module in (twilio, acs, codec_json):
        source = Path(module.__file__ or "").read_text()
        for banned in ("import asyncio", "import logging", "aiohttp", "open(", "print("):
            assert banned not in source, (module.__name__, banned)
