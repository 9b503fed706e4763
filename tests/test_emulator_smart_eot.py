"""Smart end-of-turn detection in the emulator (issue 29 item 3; docs/emulator.md#smart-eot):
accepted where the service takes it (previews from 2026-06-01-preview), refused elsewhere, and
emulated by a stated audio rule: a pause ends the turn only after speech that trailed off.

The expected levels are worked out from the signal with plain per-window power, not with the
detector's own arithmetic."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from runner.emulator import running_emulator
from runner.emulator.vad import EnergyVad

RATE = 24000
WIN = RATE // 100  # one 10 ms window


def quiet(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def tone(ms: int, dbfs: float) -> np.ndarray:
    t = np.arange(RATE * ms // 1000) / RATE
    amp = 10 ** (dbfs / 20) * 32768 * math.sqrt(2)
    return np.round(np.sin(2 * np.pi * 440 * t) * amp).astype(np.int16)


def window_powers(signal: np.ndarray) -> np.ndarray:
    n = signal.size // WIN
    frames = signal[: n * WIN].astype(np.float64).reshape(n, WIN)
    return (frames**2).sum(axis=1)


def expected_drop(speech: np.ndarray) -> float:
    """dB between the mean power of the voiced windows and that of the last ten of them."""
    p = window_powers(speech)
    voiced = p[p > (10 ** (-45 / 20) * 32768) ** 2 * WIN]
    return 10 * math.log10(voiced.mean() / voiced[-10:].mean())


def smart(level: str = "default", timeout_ms: int = 1500) -> dict[str, Any]:
    return {
        "model": "smart_end_of_turn_detection",
        "threshold_level": level,
        "timeout_ms": timeout_ms,
    }


# --- the detector's measure -----------------------------------------------------------------------


def test_the_vad_measures_how_far_the_speech_trailed_off() -> None:
    steady = tone(600, -20)
    falling = np.concatenate((tone(250, -20), tone(150, -32)))
    for speech, low, high in ((steady, -0.5, 0.5), (falling, 6.0, 12.0)):
        vad = EnergyVad(RATE, silence_duration_ms=500)
        kinds = [e.kind for e in vad.feed(np.concatenate((speech, quiet(600))))]
        assert kinds == ["started", "stopped"]
        assert vad.tail_drop_db is not None
        assert vad.tail_drop_db == pytest.approx(expected_drop(speech), abs=0.2)
        assert low <= vad.tail_drop_db <= high


# --- on the wire ----------------------------------------------------------------------------------


def url(endpoint: str, version: str) -> str:
    return (
        endpoint.replace("http://", "ws://")
        + f"/voice-live/realtime?api-version={version}&model=gpt-realtime"
    )


async def next_of(ws: ClientConnection, *types: str, timeout: float = 5) -> dict[str, Any]:
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event["type"] in types:
            return event


def session(eou: dict[str, Any] | None) -> dict[str, Any]:
    td: dict[str, Any] = {"type": "server_vad", "silence_duration_ms": 500}
    td["create_response"] = False
    if eou is not None:
        td["end_of_utterance_detection"] = eou
    return {"turn_detection": td}


async def update_result(version: str, sess: dict[str, Any]) -> dict[str, Any]:
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, version)) as ws:
        await next_of(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": sess}))
        return await next_of(ws, "session.updated", "error")


@pytest.mark.parametrize("version", ["2026-06-01-preview", "2026-07-31-preview"])
async def test_previews_from_2026_06_01_take_smart_end_of_turn(version: str) -> None:
    # source: docs/emulator.md#smart-eot (REF 2026-06-01-preview "What's new")
    done = await update_result(version, session(smart("high", 800)))
    assert done["type"] == "session.updated", done
    eou = done["session"]["turn_detection"]["end_of_utterance_detection"]
    assert eou == smart("high", 800)


@pytest.mark.parametrize("version", ["2026-04-10", "2026-07-15", "2025-05-01-preview"])
async def test_ga_and_older_versions_refuse_smart_end_of_turn(version: str) -> None:
    # source: docs/emulator.md#smart-eot (REF 2026-07-15: smart turn detection remains preview)
    refused = await update_result(version, session(smart()))
    assert refused["type"] == "error"
    assert refused["error"]["param"] == "session.turn_detection.end_of_utterance_detection.model"
    assert "preview" in refused["error"]["message"]


async def test_v1_refuses_smart_end_of_turn() -> None:
    # source: docs/emulator.md#smart-eot (no VoiceLive-Features key for it is documented)
    v1 = {
        "type": "realtime",
        "audio": {
            "input": {
                "turn_detection": {"type": "server_vad", "end_of_utterance_detection": smart()}
            }
        },
    }
    refused = await update_result("v1", v1)
    assert refused["type"] == "error"
    assert refused["error"]["param"] == "session.turn_detection.end_of_utterance_detection.model"


async def test_smart_end_of_turn_settings_are_checked() -> None:
    bad = await update_result("2026-06-01-preview", session({**smart(), "threshold_level": "x"}))
    assert bad["type"] == "error"
    assert bad["error"]["param"].endswith("end_of_utterance_detection.threshold_level")


async def turns(eou: dict[str, Any] | None, *parts: np.ndarray) -> list[dict[str, Any]]:
    """Stream the parts; return the VAD and commit events that came before a marker error
    sent after the last part (events are answered in order, so none is missed)."""
    version = "2026-06-01-preview"
    async with running_emulator(speed=0) as emu, connect(url(emu.endpoint, version)) as ws:
        await next_of(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": session(eou)}))
        assert (await next_of(ws, "session.updated", "error"))["type"] == "session.updated"
        audio = np.concatenate(parts)
        for i in range(0, audio.size, WIN * 10):  # 100 ms appends
            chunk = base64.b64encode(audio[i : i + WIN * 10].tobytes()).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        marker = {"type": "conversation.item.retrieve", "item_id": "none", "event_id": "m"}
        await ws.send(json.dumps(marker))
        seen: list[dict[str, Any]] = []
        while True:
            event = await next_of(
                ws,
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
                "input_audio_buffer.committed",
                "error",
            )
            if event["type"] == "error":
                assert event["error"].get("event_id") == "m", event
                return seen
            seen.append(event)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].rsplit(".", 1)[1] for e in events]


async def test_a_pause_after_speech_that_did_not_trail_off_is_held() -> None:
    # source: docs/emulator.md#smart-eot: a steady 600 ms, a 700 ms pause (longer than the
    # 500 ms of silence server_vad waits for), then speech that falls by 12 dB and stops
    parts = (tone(600, -20), quiet(700), tone(250, -20), tone(150, -32), quiet(700))
    held = await turns(smart(), *parts)
    assert kinds(held) == ["speech_started", "speech_stopped", "committed"]
    # one turn, from the first speech to the second pause's end (prefix padding 300 ms)
    assert held[1]["audio_end_ms"] == 600 + 700 + 400 + 500
    # without smart end-of-turn the same audio is two turns
    plain = await turns(None, *parts)
    assert kinds(plain).count("committed") == 2
    # a text-based detector without a scripted mid-sentence pause does not hold it either
    semantic = {"model": "semantic_detection_v1", "threshold_level": "default"}
    assert kinds(await turns(semantic, *parts)).count("committed") == 2


async def test_the_threshold_level_sets_how_much_trailing_off_ends_a_turn() -> None:
    # a 5 dB fall: enough at low (3 dB), not at the default (6 dB) within the timeout
    parts = (tone(300, -20), tone(150, -26), quiet(700))
    assert kinds(await turns(smart("low"), *parts)) == [
        "speech_started",
        "speech_stopped",
        "committed",
    ]
    assert kinds(await turns(smart("default"), *parts)) == ["speech_started"]


async def test_a_held_turn_ends_after_timeout_ms_of_silence() -> None:
    # source: docs/emulator.md#smart-eot: steady speech, then silence: held until timeout_ms
    before = await turns(smart(timeout_ms=1500), tone(600, -20), quiet(1400))
    assert kinds(before) == ["speech_started"]
    after = await turns(smart(timeout_ms=1500), tone(600, -20), quiet(2100))
    assert kinds(after) == ["speech_started", "speech_stopped", "committed"]
    assert after[1]["audio_end_ms"] == 600 + 500  # where the speech (and its silence) ended
