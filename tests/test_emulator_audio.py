"""Audio turns: the emulator's VAD on real speech (espeak-ng), manual commits, G.711, barge-in."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.ai.voicelive.models import ServerEvent
from azure.core.credentials import AzureKeyCredential

from runner.emulator import running_emulator
from runner.emulator.speech import g711_encode

DATA = Path(__file__).parent / "data" / "emulator"
RATE = 24000
pytestmark = pytest.mark.espeak


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """'What is the weather in Paris' spoken by espeak-ng, as 24 kHz int16 samples."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path_factory.mktemp("speech") / "paris.wav"
    subprocess.run([espeak, "-w", str(wav), "What is the weather in Paris?"], check=True)
    import wave

    with wave.open(str(wav)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    samples = np.frombuffer(frames, dtype=np.int16)
    return np.asarray(soxr.resample(samples, rate, RATE), dtype=np.int16)


def silence(ms: int, rate: int = RATE) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def voiced_span_ms(samples: np.ndarray, rate: int = RATE) -> tuple[int, int]:
    """First and last 10 ms window louder than -45 dBFS, in ms (the VAD's default threshold)."""
    win = rate // 100
    frames = samples[: samples.size // win * win].astype(np.float64).reshape(-1, win)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 32768 * 10 ** (-45 / 20))
    return int(loud[0]) * 10, int(loud[-1] + 1) * 10


def sdk(endpoint: str) -> Any:
    return connect(endpoint=endpoint, credential=AzureKeyCredential("k"), model="gpt-realtime")


async def until(conn: VoiceLiveConnection, kind: str, timeout: float = 10) -> list[ServerEvent]:
    out: list[ServerEvent] = []

    async def read() -> None:
        while True:
            out.append(await conn.recv())
            if out[-1].type == kind:
                return

    await asyncio.wait_for(read(), timeout)
    return out


async def stream(
    conn: VoiceLiveConnection,
    samples: np.ndarray,
    chunk_ms: int = 20,
    rate: int = RATE,
    encode: Any = None,
) -> None:
    """Send audio in 20 ms appends as fast as the socket takes them (VAD runs on audio time)."""
    step = rate * chunk_ms // 1000
    for i in range(0, samples.size, step):
        data = samples[i : i + step].tobytes()
        await conn.input_audio_buffer.append(
            audio=base64.b64encode(encode(data) if encode else data).decode()
        )


async def configure(conn: VoiceLiveConnection, **session: Any) -> None:
    await until(conn, "session.created")
    await conn.session.update(session=session)
    await until(conn, "session.updated")


async def test_vad_turn_from_real_speech_with_script_transcript(speech: np.ndarray) -> None:
    audio = np.concatenate([silence(1000), speech, silence(1500)])
    on, off = voiced_span_ms(audio)
    td = {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
    }
    async with (
        running_emulator(speed=0, scenario=DATA / "weather.yaml") as emu,
        sdk(emu.endpoint) as conn,
    ):
        await configure(
            # azure-speech would need an azure semantic VAD on a realtime model (reported)
            conn,
            turn_detection=td,
            input_audio_transcription={"model": "whisper-1"},
        )
        await stream(conn, audio)
        events = await until(conn, "response.done")
        kinds = [e.type for e in events]
        first = [
            k
            for k in kinds
            if k
            in (
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
                "input_audio_buffer.committed",
                "conversation.item.created",
                "response.created",
            )
        ]
        assert first[:5] == [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.created",
            "response.created",
        ]
        started = next(e for e in events if e.type == "input_audio_buffer.speech_started")
        stopped = next(e for e in events if e.type == "input_audio_buffer.speech_stopped")
        assert abs(started.audio_start_ms - (on - 300)) <= 30  # reaches back by prefix_padding_ms
        # stops after silence_duration_ms of quiet; espeak has short pauses, so allow one word gap
        assert off + 500 - 30 <= stopped.audio_end_ms <= off + 500 + 30
        assert started.item_id == stopped.item_id
        user = next(e for e in events if e.type == "conversation.item.created")
        assert user.item.role == "user" and user.item.content[0].type == "input_audio"
        transcript = next(
            e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
        )
        assert (
            transcript.transcript == "What is the weather in Paris?"
            and transcript.item_id == started.item_id
        )
        said = next(e for e in events if e.type == "response.audio_transcript.done").transcript
        assert said == "Let me check Paris."


async def test_vad_threshold_and_silence_duration_are_honoured(speech: np.ndarray) -> None:
    quiet = (speech.astype(np.float32) * 0.05).astype(np.int16)  # about -46 dBFS
    async with running_emulator(speed=0) as emu, sdk(emu.endpoint) as conn:
        td = {"type": "server_vad", "threshold": 0.9, "create_response": False}
        await configure(conn, turn_detection=td)
        await stream(conn, np.concatenate([silence(500), quiet, silence(800)]))
        await conn.session.update(
            session={"turn_detection": {**td, "threshold": 0.1, "silence_duration_ms": 2000}}
        )
        events = await until(conn, "session.updated")
        assert "input_audio_buffer.speech_started" not in [e.type for e in events]
        await stream(conn, np.concatenate([silence(500), quiet, silence(1000)]))
        await conn.session.update(session={})
        events = await until(conn, "session.updated")
        kinds = [e.type for e in events]
        assert "input_audio_buffer.speech_started" in kinds  # the low threshold hears it
        assert "input_audio_buffer.speech_stopped" not in kinds  # 1000 ms < 2000 ms of silence
        await stream(conn, silence(1200))
        events = await until(conn, "conversation.item.created")
        assert [e.type for e in events][0] == "input_audio_buffer.speech_stopped"
        await conn.session.update(session={})
        events = await until(conn, "session.updated")
        assert "response.created" not in [e.type for e in events]  # create_response false


async def test_manual_turns_commit_clear_and_empty_commit(speech: np.ndarray) -> None:
    async with running_emulator(speed=0) as emu, sdk(emu.endpoint) as conn:
        await configure(conn, turn_detection=None)
        await conn.input_audio_buffer.commit()
        assert (await until(conn, "error"))[-1].error.code == "input_audio_buffer_commit_empty"
        await stream(conn, speech)
        await conn.input_audio_buffer.clear()
        await until(conn, "input_audio_buffer.cleared")
        await conn.input_audio_buffer.commit()
        assert (await until(conn, "error"))[-1].error.code == "input_audio_buffer_commit_empty"
        await stream(conn, speech)
        await conn.input_audio_buffer.commit()
        events = await until(conn, "conversation.item.created")
        assert [e.type for e in events] == [
            "input_audio_buffer.committed",
            "conversation.item.created",
        ]
        await conn.response.create()
        events = await until(conn, "response.done")
        said = next(e for e in events if e.type == "response.audio_transcript.done").transcript
        assert said == f"[emulator] I heard {speech.size / RATE:.1f} seconds of audio."
        assert not any(e.type.startswith("input_audio_buffer.speech") for e in events)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
async def test_g711_input_is_decoded_for_the_vad(speech: np.ndarray, law: str) -> None:
    narrow = np.asarray(
        soxr.resample(np.concatenate([silence(500), speech, silence(900)]), RATE, 8000),
        dtype=np.int16,
    )
    async with running_emulator(speed=0) as emu, sdk(emu.endpoint) as conn:
        await configure(
            conn,
            input_audio_format=f"g711_{law}",
            turn_detection={"type": "server_vad", "create_response": False},
        )
        assert emu.sessions[0].sent[-1]["session"]["input_audio_sampling_rate"] == 8000
        await stream(conn, narrow, rate=8000, encode=lambda b: g711_encode(b, law))
        events = await until(conn, "input_audio_buffer.committed")
        started = next(e for e in events if e.type == "input_audio_buffer.speech_started")
        on, _ = voiced_span_ms(narrow, 8000)
        assert abs(started.audio_start_ms - max(0, on - 400)) <= 40


@pytest.mark.parametrize("auto_truncate", [False, True])
async def test_barge_in_cancels_the_response(speech: np.ndarray, auto_truncate: bool) -> None:
    long_reply = {
        "turns": [
            {
                "turn": 1,
                "say": "This reply is long enough that the user will "
                "interrupt it before it finishes, which is the point of this test.",
            }
        ]
    }
    td = {"type": "server_vad", "interrupt_response": True, "auto_truncate": auto_truncate}
    async with running_emulator(speed=1, scenario=long_reply) as emu, sdk(emu.endpoint) as conn:
        await configure(conn, turn_detection=td)
        await stream(conn, np.concatenate([speech, silence(700)]))
        await until(conn, "response.audio.delta")
        await stream(conn, np.concatenate([silence(200), speech]))
        events = await until(conn, "response.done")
        done = events[-1].response
        assert done.status == "cancelled" and done.status_details.reason == "turn_detected"
        kinds = [e.type for e in events]
        assert kinds.index("input_audio_buffer.speech_started") < kinds.index("response.done")
        assert ("conversation.item.truncated" in kinds) is auto_truncate
        if auto_truncate:
            truncated = next(e for e in events if e.type == "conversation.item.truncated")
            assert truncated.item_id == done.output[0].id and truncated.audio_end_ms >= 0
