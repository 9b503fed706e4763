"""Per-frame cost of the phone edges' codecs, beside the code path they replace.

Parse: one inbound 20 ms media frame (Twilio μ-law, ACS PCM16 at 16 kHz) from text to audio
bytes. Build: one outbound media frame from audio bytes to the text sent. "today" is the
handlers' inline path as of 4a2cac0 (runner/serve/twilio.py TwilioEdge._read and
TwilioTransport.send_audio, runner/serve/acs.py AcsEdge._read and AcsTransport.send_audio),
copied here so the comparison survives the handlers' switch to the codecs. Ratios are
codec / today (below 1 is faster), each the best of interleaved runs; absolute times depend
on the machine, ratios less so.

    python bench/bench_codecs.py [--n 20000] [--repeat 7] [--json PATH]

Not run by the tests: a benchmark, reported as ratios.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner import speedups  # noqa: E402
from runner.serve import codec_acs, codec_json, codec_twilio  # noqa: E402

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
MULAW_20MS = bytes(range(256))[:160]
MULAW_60MS = (bytes(range(256)) * 2)[:480]
PCM16_20MS = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 20 ms at 16 kHz


def _twilio_frame(audio: bytes, chunk: int) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 2),
            "media": {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str(chunk * 20),
                "payload": base64.b64encode(audio).decode(),
            },
            "streamSid": SID,
        },
        separators=(",", ":"),
    )


def _acs_frame(pcm: bytes) -> str:
    return json.dumps(
        {
            "kind": "AudioData",
            "audioData": {
                "timestamp": "2024-11-15T19:16:12.925Z",
                "participantRawID": "8:acs:3d20e1de-0f28-41c5",
                "data": base64.b64encode(pcm).decode(),
                "silent": False,
            },
        },
        separators=(",", ":"),
    )


# ------------------------------------------------------------ today's inline path (4a2cac0)


def _json(text: Any) -> dict[str, Any] | None:
    try:
        data = speedups.loads(text)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def today_twilio_parse(text: str) -> bytes:
    data = _json(text)
    if data is None:
        return b""
    if data.get("event") == "media":
        media = data.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if isinstance(media, dict) and media.get("track", "inbound") != "inbound":
            return b""
        try:
            return base64.b64decode(payload, validate=True) if payload else b""
        except (binascii.Error, TypeError, ValueError):
            return b""
    return b""


TODAY_HEAD = '{"event":"media","streamSid":' + json.dumps(SID) + ',"media":{"payload":"'


def today_twilio_build(frame: bytes) -> str:
    return TODAY_HEAD + base64.b64encode(frame).decode("ascii") + '"}}'


def today_acs_parse(text: str) -> bytes:
    data = _json(text)
    kind = data.get("kind") or data.get("Kind") if data is not None else None
    if kind == "AudioData":
        audio_data = data.get("audioData") if data is not None else None
        payload = audio_data.get("data") if isinstance(audio_data, dict) else None
        try:
            audio = base64.b64decode(payload, validate=True) if payload else b""
        except (binascii.Error, TypeError, ValueError):
            audio = b""
        return audio if audio and not len(audio) % 2 else b""
    return b""


def today_acs_build(frame: bytes) -> str:
    data = base64.b64encode(frame).decode("ascii")
    return '{"Kind":"AudioData","AudioData":{"Data":"' + data + '"},"StopAudio":null}'


# ----------------------------------------------------------------------------- the codecs


def codec_twilio_parse(text: str) -> bytes:
    event = codec_twilio.parse(text)
    return event.payload if isinstance(event, codec_twilio.Media) and event.inbound else b""


def codec_acs_parse(text: str) -> bytes:
    event = codec_acs.parse_media(text)
    return event.pcm if isinstance(event, codec_acs.AudioData) else b""


ENCODER = codec_twilio.StreamEncoder(SID)


def per_call_ns(
    old: Callable[[Any], Any],
    old_arg: Any,
    new: Callable[[Any], Any],
    new_arg: Any,
    n: int,
    repeat: int,
) -> tuple[float, float]:
    """CPU nanoseconds per call of each (thread time: another process on the machine does
    not count), the best of ``repeat`` runs of ``n`` calls, the two
    interleaved so that both see the same load (the machine is shared)."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, (fn, arg) in enumerate(((old, old_arg), (new, new_arg))):
            start = time.thread_time_ns()
            for _ in range(n):
                fn(arg)
            best[i] = min(best[i], (time.thread_time_ns() - start) / n)
    return best[0], best[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=9, help="runs per case (the best)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    twilio_text = _twilio_frame(MULAW_20MS, 41)
    acs_text = _acs_frame(PCM16_20MS)
    # same output, or the comparison means nothing
    assert today_twilio_parse(twilio_text) == codec_twilio_parse(twilio_text) == MULAW_20MS
    assert today_acs_parse(acs_text) == codec_acs_parse(acs_text) == PCM16_20MS
    assert today_twilio_build(MULAW_20MS) == ENCODER.media(MULAW_20MS)
    assert today_acs_build(PCM16_20MS) == codec_acs.audio_frame(PCM16_20MS)

    view_60 = memoryview(MULAW_60MS * 3)[480:960]
    cases: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any], Any]] = [
        ("twilio parse media 20 ms", today_twilio_parse, codec_twilio_parse, twilio_text),
        (
            "twilio parse media 20 ms (bytes in)",
            today_twilio_parse,
            codec_twilio_parse,
            twilio_text.encode(),
        ),
        ("twilio build media 20 ms", today_twilio_build, ENCODER.media, MULAW_20MS),
        ("twilio build media 20 ms as bytes", today_twilio_build, ENCODER.media_bytes, MULAW_20MS),
        ("twilio build media 60 ms (memoryview)", today_twilio_build, ENCODER.media, view_60),
        ("acs parse AudioData 20 ms 16 kHz", today_acs_parse, codec_acs_parse, acs_text),
        ("acs build AudioData 20 ms 16 kHz", today_acs_build, codec_acs.audio_frame, PCM16_20MS),
    ]
    rows = []
    print(f"python {platform.python_version()}, JSON backend {codec_json.BACKEND}, n={args.n}")
    print(f"{'case':40} {'today µs':>9} {'codec µs':>9} {'codec/today':>12}")
    for name, old, new, arg in cases:
        # 60 ms through today's path is three 20 ms frames: compared per 60 ms of audio
        three = "60 ms" in name
        old_ns, new_ns = per_call_ns(
            old, MULAW_20MS if three else arg, new, arg, args.n, args.repeat
        )
        old_ns *= 3 if three else 1
        ratio = new_ns / old_ns
        rows.append({"case": name, "today_ns": old_ns, "codec_ns": new_ns, "ratio": ratio})
        print(f"{name:40} {old_ns / 1e3:9.2f} {new_ns / 1e3:9.2f} {ratio:12.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"backend": codec_json.BACKEND, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
