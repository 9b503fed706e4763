"""The emulator's benchmark load mode (``vlrun emulate --load``): the same call, the same bytes.

Load mode keeps no event history, reuses a reply's encoded audio and keeps the VAD's window
energies of G.711 appends it has seen (a benchmark's callers send the same frames again and
again), so a known append is neither base64- nor G.711-decoded. What a client receives must
not change: a scripted μ-law call (speech, the VAD's end of turn, a scripted reply) is run
against a normal emulator and a load-mode one over real loopback sockets, and every event and
audio byte is compared.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from runner.emulator import running_emulator
from runner.emulator.input_audio import _KNOWN
from runner.emulator.speech import g711_encode
from runner.emulator.vad import EnergyVad

pytestmark = pytest.mark.timeout(60)

SCRIPT = {
    "turns": [
        {"turn": 1, "transcript": "Hello there.", "say": "Good day. How can I help you today?"},
        {"turn": 2, "transcript": "Thanks.", "say": "Good day. How can I help you today?"},
    ]
}
FRAME = 160  # 20 ms of μ-law at 8 kHz
IDS = {"event_id", "item_id", "response_id", "id", "previous_item_id", "call_id", "expires_at"}


def ulaw_turn(speech_ms: int, quiet_before_ms: int = 200, quiet_after_ms: int = 400) -> bytes:
    """Digital silence, a tone the VAD hears as speech, then enough quiet to end the turn."""
    n = 8000 * speech_ms // 1000
    tone = (8000 * np.sin(2 * math.pi * 330 * np.arange(n) / 8000)).astype("<i2").tobytes()
    pcm = bytes(16 * quiet_before_ms) + tone + bytes(16 * quiet_after_ms)
    return g711_encode(pcm, "ulaw")


def normalised(value: Any) -> Any:
    """An event with its generated ids and times replaced, so two runs compare equal."""
    if isinstance(value, dict):
        return {k: "<id>" if k in IDS else normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


async def one_call(endpoint: str) -> tuple[list[dict[str, Any]], bytes]:
    """Two spoken turns; every server event up to the second reply's response.done, and the
    reply audio as the client decoded it."""
    address = (
        endpoint.replace("http://", "ws://")
        + "/voice-live/realtime?api-version=2025-10-01&model=gpt-realtime"
    )
    events: list[dict[str, Any]] = []
    audio = bytearray()
    async with connect(address) as ws:
        session = {
            "modalities": ["text", "audio"],
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
        }
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        for speech_ms in (600, 400):
            wire = ulaw_turn(speech_ms)
            for i in range(0, len(wire), FRAME):
                chunk = base64.b64encode(wire[i : i + FRAME]).decode("ascii")
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                events.append(event)
                if event["type"] == "response.audio.delta":
                    audio += base64.b64decode(event["delta"])
                if event["type"] == "response.done":
                    break
    return [normalised(e) for e in events], bytes(audio)


async def run(load: bool) -> tuple[list[dict[str, Any]], bytes, int, int]:
    async with running_emulator(
        scenario=SCRIPT, speed=0, use_espeak=False, record_audio=False, load=load
    ) as emu:
        _KNOWN["g711_ulaw"].clear()
        events, audio = await one_call(emu.endpoint)
        # load mode: the cached reply, and every append's energies known from the first call
        assert bool(_KNOWN["g711_ulaw"]) == load
        again, audio_again = await one_call(emu.endpoint)
        assert (again, audio_again) == (events, audio)
        record = emu.sessions[0]
        return events, audio, len(record.received), len(record.sent)


async def test_load_mode_sends_the_same_events_and_audio_and_keeps_no_history() -> None:
    normal_events, normal_audio, normal_received, normal_sent = await run(load=False)
    load_events, load_audio, load_received, load_sent = await run(load=True)
    kinds = [e["type"] for e in normal_events]
    # the call did what it is meant to: the VAD heard both turns and the replies were spoken
    assert kinds.count("input_audio_buffer.speech_started") == 2
    assert kinds.count("input_audio_buffer.speech_stopped") == 2
    assert kinds.count("response.done") == 2
    assert len(normal_audio) > 8000  # more than a second of μ-law
    assert load_events == normal_events
    assert load_audio == normal_audio
    # normal mode keeps its history for wait_for; load mode keeps none
    assert normal_received > 0 and normal_sent > 0
    assert (load_received, load_sent) == (0, 0)


def test_known_energies_drive_the_vad_as_the_samples_do() -> None:
    """Load mode feeds the VAD the window energies it keeps for appends it has seen
    (``EnergyVad.feed_powers``); every event, the session's audio clock and the end-of-turn
    level come out as from the samples themselves, at every threshold."""
    rng = np.random.default_rng(5)
    quiet = rng.normal(0, 3, 8000).astype(np.int16)  # a faint hiss, under every threshold
    loud = (8000 * np.sin(2 * math.pi * 330 * np.arange(8000) / 8000)).astype(np.int16)
    fading = (loud * np.linspace(1, 0.02, 8000)).astype(np.int16)
    audio = np.concatenate([quiet, loud, quiet[:3000], loud[:2400], fading, quiet, quiet])
    for threshold in (0.0, 0.3, 0.5, 0.9):
        by_samples, by_powers = (
            EnergyVad(8000, threshold=threshold),
            EnergyVad(8000, threshold=threshold),
        )
        heard: tuple[list[Any], list[Any]] = ([], [])
        for i in range(0, audio.size, 800):  # 100 ms appends, as vlrun sends them
            chunk = audio[i : i + 800]
            heard[0].extend(by_samples.feed(chunk))
            assert by_powers.aligned
            heard[1].extend(by_powers.feed_powers(by_powers.powers(chunk)))
        assert heard[0] == heard[1]
        assert by_powers.windows_seen == by_samples.windows_seen == audio.size // 80
        assert by_powers.tail_drop_db == by_samples.tail_drop_db
        kinds = [e.kind for e in heard[0]]
        assert kinds[:2] == ["started", "stopped"] and kinds.count("stopped") <= 3, kinds
