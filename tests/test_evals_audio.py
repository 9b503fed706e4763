"""Tier 3, offline: a simulated caller's turns spoken by espeak-ng with seeded noise, heard by the
emulator's VAD as one user turn each (issue 30; docs/evals.md#tiers)."""

from __future__ import annotations

import base64
import shutil
from typing import Any

import numpy as np
import pytest
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.core.credentials import AzureKeyCredential

from runner.emulator import running_emulator
from runner.evals import ChatEndpoint, EvalsError, Exchange, caller_for
from runner.evals.voice import RATE, add_noise, speak
from tests.test_emulator_audio import until

SCRIPT = ["hi, a table for two please", "seven pm"]
SPEC: dict[str, Any] = {"goal": "book a table for two at 7pm", "script": SCRIPT, "snr_db": 20}
REPLIES = ["For what time?", "Booked for seven."]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def espeak(test: Any) -> Any:
    return pytest.mark.espeak(needs_espeak(test))


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def test_noise_is_seeded_by_run_and_turn_at_the_asked_ratio() -> None:
    t = np.arange(RATE) / RATE
    tone = (8000 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()
    a, again = add_noise(tone, 20, seed=7, turn=1), add_noise(tone, 20, seed=7, turn=1)
    assert a == again  # the same run's same turn: the same samples
    assert a != add_noise(tone, 20, seed=8, turn=1) != add_noise(tone, 20, seed=7, turn=2)
    noise = np.frombuffer(a, "<i2").astype(np.float64) - np.frombuffer(tone, "<i2")
    snr = 20 * np.log10(rms(tone) / float(np.sqrt(np.mean(noise**2))))
    assert abs(snr - 20) < 0.5
    assert add_noise(tone, None, seed=7, turn=1) == tone
    silent = bytes(960)
    assert add_noise(silent, 20, seed=7, turn=1) == silent  # no level, no noise to scale


async def test_an_azure_voice_without_its_settings_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AZURE_SPEECH_KEY", "AZURE_SPEECH_REGION", "AZURE_SPEECH_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(EvalsError, match="AZURE_SPEECH_KEY and AZURE_SPEECH_REGION") as caught:
        await speak("hello", "azure:en-US-AvaNeural")
    assert caught.value.hint is not None and "voice: espeak" in caught.value.hint


@espeak
async def test_audio_caller_speaks_its_script_reproducibly() -> None:
    runs = []
    for seed in (7, 7, 8):
        caller = caller_for(SPEC, tier="audio", endpoint=None, seed=seed)
        turn = await caller.next_turn([])
        assert turn is not None and turn.text == SCRIPT[0] and turn.audio
        runs.append(turn.audio)
    assert runs[0] == runs[1] and runs[0] != runs[2]
    clean = await speak(SCRIPT[0])
    quiet = caller_for({**SPEC, "snr_db": None}, tier="audio", endpoint=None, seed=7)
    turn = await quiet.next_turn([])
    assert turn is not None and turn.audio == clean
    assert len(runs[0]) == len(clean) and len(clean) > RATE  # over a second of 24 kHz PCM16


async def send(conn: VoiceLiveConnection, pcm: bytes, chunk_ms: int = 20) -> None:
    step = RATE * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())


@espeak
async def test_tier_three_offline_loop_the_emulator_hears_each_spoken_turn() -> None:
    """The caller's lines come from the emulator's chat endpoint, are spoken with noise, and
    reach the same emulator's Voice Live session as audio: its VAD finds exactly one turn per
    line, and the reply goes back into the caller's history."""
    script = {
        "turns": [
            {"turn": n + 1, "transcript": line, "say": reply}
            for n, (line, reply) in enumerate(zip(SCRIPT, REPLIES, strict=True))
        ]
    }
    quiet = bytes(2 * RATE // 1000 * 1200)  # 1.2 s: past the VAD's 500 ms of silence
    async with (
        running_emulator(speed=0, scenario=script) as emu,
        connect(
            endpoint=emu.endpoint, credential=AzureKeyCredential("k"), model="gpt-realtime"
        ) as conn,
    ):
        caller = caller_for(
            SPEC, tier="audio", endpoint=ChatEndpoint.emulator(emu.endpoint), seed=3
        )
        await until(conn, "session.created", 20)
        await conn.session.update(
            session={
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                "input_audio_transcription": {"model": "whisper-1"},
            }
        )
        await until(conn, "session.updated", 20)
        history: list[Exchange] = []
        while (turn := await caller.next_turn(history)) is not None:
            assert turn.audio is not None
            await send(conn, quiet[: len(quiet) // 4] + turn.audio + quiet)
            events = await until(conn, "response.done", 20)
            kinds = [e.type for e in events]
            assert kinds.count("input_audio_buffer.speech_started") == 1, kinds
            heard = next(
                e
                for e in events
                if e.type == "conversation.item.input_audio_transcription.completed"
            )
            said = next(e for e in events if e.type == "response.audio_transcript.done")
            assert heard.transcript == turn.text
            history += [
                Exchange("caller", heard.transcript),
                Exchange("assistant", said.transcript),
            ]
        asked = [r["messages"][-1]["content"] for r in emu.chat.requests]
    assert [x.text for x in history] == [SCRIPT[0], REPLIES[0], SCRIPT[1], REPLIES[1]]
    assert asked[1] == REPLIES[0]  # the caller's second turn answered what it heard
