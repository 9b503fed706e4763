"""Every accepted feature produces its events: the official SDK against the emulator.

Word timestamps, visemes and blendshapes, interim responses, usage, filler words, semantic
end-of-utterance, transcription failures and warnings (docs/emulator.md, "Emulated features").
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.ai.voicelive.models import (
    ServerEvent,
    ServerEventConversationItemInputAudioTranscriptionFailed,
    ServerEventResponseAnimationBlendshapeDelta,
    ServerEventResponseAnimationVisemeDelta,
    ServerEventResponseAudioTimestampDelta,
    ServerEventWarning,
)
from azure.core.credentials import AzureKeyCredential

from runner.emulator import running_emulator
from runner.emulator.animation import BLENDSHAPES, FPS
from runner.emulator.responses import INTERIM_LLM_TEXT
from runner.emulator.speech import ESPEAK, synthetic
from tests.helpers import WEATHER_TOOL, events_until, say_text

RATE = 24000
AVA = {"type": "azure-standard", "name": "en-US-AvaNeural"}
WORDS = {"voice": AVA, "output_audio_timestamp_types": ["word"]}


def sdk(endpoint: str) -> Any:
    return connect(endpoint=endpoint, credential=AzureKeyCredential("k"), model="gpt-realtime")


async def configure(conn: VoiceLiveConnection, **session: Any) -> None:
    await events_until(conn, "session.created")
    await conn.session.update(session={"turn_detection": None, **session})
    await events_until(conn, "session.updated")


async def reply(endpoint: str, text: str, **session: Any) -> list[ServerEvent]:
    """One typed turn and every event up to its response.done."""
    async with sdk(endpoint) as conn:
        await configure(conn, **session)
        await say_text(conn, text)
        return await events_until(conn, "response.done")


def audio_ms(events: list[ServerEvent]) -> int:
    return (
        sum(len(e.delta) for e in events if e.type == "response.audio.delta") * 1000 // (2 * RATE)
    )


def of(events: list[ServerEvent], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


async def stream(conn: VoiceLiveConnection, samples: np.ndarray) -> None:
    """20 ms appends as fast as the socket takes them (the VAD runs on audio time)."""
    step = RATE // 50
    for i in range(0, samples.size, step):
        await conn.input_audio_buffer.append(
            audio=base64.b64encode(samples[i : i + step].tobytes()).decode()
        )


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def spoken(text: str) -> np.ndarray:
    return np.frombuffer(synthetic(text, RATE), dtype=np.int16)


# -- word timestamps ---------------------------------------------------------------------------


def test_word_timestamps_cover_the_spoken_words_in_order(emulator_in_thread: Any) -> None:
    events = asyncio.run(reply(emulator_in_thread.endpoint, "hello there", **WORDS))
    stamps = of(events, "response.audio_timestamp.delta")
    assert all(isinstance(s, ServerEventResponseAudioTimestampDelta) for s in stamps)
    transcript = of(events, "response.audio_transcript.done")[0].transcript
    assert transcript == "[emulator] You said: hello there"
    assert [s.text for s in stamps] == ["emulator", "You", "said", "hello", "there"]
    assert {s.timestamp_type for s in stamps} == {"word"}
    total = audio_ms(events)
    ends = 0
    for s in stamps:
        assert s.audio_offset_ms >= ends  # in order, no overlap
        assert s.audio_duration_ms > 0
        ends = s.audio_offset_ms + s.audio_duration_ms
    assert total - 400 < ends <= total  # the last word ends near the end of the audio
    kinds = [e.type for e in events]
    done = kinds.index("response.audio_timestamp.done")
    assert kinds.index("response.audio_transcript.done") < done
    assert done < kinds.index("response.content_part.done")
    assert of(events, "response.audio_timestamp.done")[0].item_id == stamps[0].item_id


def test_no_timestamps_or_animation_unless_asked(emulator_in_thread: Any) -> None:
    events = asyncio.run(reply(emulator_in_thread.endpoint, "hello"))
    assert not [e for e in events if "timestamp" in e.type or "animation" in e.type]
    # word timestamps are for Azure voices: an OpenAI voice gets none, even when asked
    events = asyncio.run(
        reply(emulator_in_thread.endpoint, "hello", output_audio_timestamp_types=["word"])
    )
    assert not [e for e in events if "timestamp" in e.type]


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")
async def test_espeak_word_timings_follow_its_clause_pause() -> None:
    """'Yes, of course' pauses at the comma: the words after it start after the pause."""
    script = {"turns": [{"match": "go", "say": "Yes, of course we can meet tomorrow."}]}
    async with running_emulator(speed=0, scenario=script) as emu:
        events = await reply(emu.endpoint, "go", **WORDS)
    stamps = of(events, "response.audio_timestamp.delta")
    assert [s.text for s in stamps] == ["Yes", "of", "course", "we", "can", "meet", "tomorrow"]
    gap = stamps[1].audio_offset_ms - (stamps[0].audio_offset_ms + stamps[0].audio_duration_ms)
    assert gap >= 100  # espeak-ng's clause pause is not given to any word
    # a longer word (more phonemes) gets more time than a short one
    assert stamps[6].audio_duration_ms > stamps[1].audio_duration_ms


async def test_without_espeak_the_bursts_are_the_words() -> None:
    async with running_emulator(speed=0, use_espeak=False) as emu:
        events = await reply(emu.endpoint, "one two", **WORDS)
    stamps = of(events, "response.audio_timestamp.delta")
    # the synthetic voice: 66 ms per character (at least 2), 60 ms between words; the first
    # word is "[emulator]", ten characters
    first = [(s.text, s.audio_offset_ms, s.audio_duration_ms) for s in stamps[:2]]
    assert first[0][0] == "emulator" and first[0][1] <= 10
    assert abs(first[0][2] - 660) <= 30
    assert first[1][0] == "You" and abs(first[1][1] - 720) <= 30
    assert abs(first[1][2] - 0.066 * 3 * 1000) <= 30


# -- visemes and blendshapes ---------------------------------------------------------------------


def test_visemes_when_animation_asks_for_viseme_ids(emulator_in_thread: Any) -> None:
    events = asyncio.run(
        reply(
            emulator_in_thread.endpoint,
            "maybe",
            modalities=["text", "audio", "animation"],
            animation={"outputs": ["viseme_id"]},
        )
    )
    visemes = of(events, "response.animation_viseme.delta")
    assert all(isinstance(v, ServerEventResponseAnimationVisemeDelta) for v in visemes)
    ids = [v.viseme_id for v in visemes]
    offsets = [v.audio_offset_ms for v in visemes]
    assert ids[0] == 0 and offsets[0] == 0 and ids[-1] == 0  # silence first and last
    assert set(ids) <= set(range(22))
    assert 21 in ids  # the m of "emulator" and "maybe" closes the lips
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert all(a != b for a, b in zip(ids, ids[1:], strict=False))  # no repeats
    assert offsets[-1] <= audio_ms(events)
    assert len(visemes) >= 10
    assert len(of(events, "response.animation_viseme.done")) == 1
    assert not of(events, "response.animation_blendshapes.delta")  # not asked for


def test_blendshapes_by_default_one_frame_per_sixtieth_of_a_second(emulator_in_thread: Any) -> None:
    events = asyncio.run(
        reply(emulator_in_thread.endpoint, "hello", modalities=["text", "audio", "animation"])
    )
    deltas = of(events, "response.animation_blendshapes.delta")
    assert deltas and all(
        isinstance(d, ServerEventResponseAnimationBlendshapeDelta) for d in deltas
    )
    expected = 0
    for d in deltas:
        assert d.frame_index == expected  # frames follow on without gaps
        expected += len(d.frames)
        assert all(len(frame) == BLENDSHAPES for frame in d.frames)
    assert abs(expected - audio_ms(events) * FPS / 1000) <= 1
    jaw = [frame[17] for d in deltas for frame in d.frames]
    assert max(jaw) > 0.3 and jaw[0] == 0.0  # the jaw opens while speaking, not before
    assert not of(events, "response.animation_viseme.delta")
    done = of(events, "response.animation_blendshapes.done")
    assert len(done) == 1 and done[0].item_id == deltas[0].item_id


# -- interim responses ---------------------------------------------------------------------------


def test_tool_trigger_speaks_an_interim_after_the_call(emulator_in_thread: Any) -> None:
    events = asyncio.run(
        reply(
            emulator_in_thread.endpoint,
            "What is the weather in Paris?",
            tools=[WEATHER_TOOL],
            interim_response={
                "type": "static_interim_response",
                "triggers": ["tool"],
                "texts": ["Let me check that for you."],
            },
        )
    )
    output = of(events, "response.done")[0].response.output
    assert [o.type for o in output] == ["function_call", "message"]
    assert output[1].content[0].transcript == "Let me check that for you."
    assert audio_ms(events) > 500  # spoken, not only written


async def test_latency_trigger_speaks_before_a_slow_reply() -> None:
    script = {"turns": [{"match": "slow", "say": "Here it is.", "delay_ms": 3000}]}
    interim = {
        "type": "llm_interim_response",
        "triggers": ["latency"],
        "latency_threshold_ms": 1000,
    }
    async with running_emulator(speed=0, scenario=script) as emu:
        slow = await reply(emu.endpoint, "slow please", interim_response=interim)
        quick = await reply(
            emu.endpoint, "slow please", interim_response={**interim, "latency_threshold_ms": 5000}
        )
    said = [o.content[0].transcript for o in of(slow, "response.done")[0].response.output]
    assert said == [INTERIM_LLM_TEXT, "Here it is."]
    assert INTERIM_LLM_TEXT.startswith("[emulator")  # clearly not a model's words
    assert len(of(quick, "response.done")[0].response.output) == 1  # under the threshold


# -- usage ---------------------------------------------------------------------------------------


async def test_usage_counts_audio_tokens_from_durations() -> None:
    async with running_emulator(speed=0) as emu, sdk(emu.endpoint) as conn:
        await configure(conn, turn_detection={"type": "server_vad", "silence_duration_ms": 500})
        await stream(conn, np.concatenate([silence(300), spoken("what is the time"), silence(900)]))
        events = await events_until(conn, "response.done")
    heard = of(events, "input_audio_buffer.speech_stopped")[0]
    started = of(events, "input_audio_buffer.speech_started")[0]
    usage = of(events, "response.done")[0].response.usage
    user_ms = heard.audio_end_ms - started.audio_start_ms
    assert usage.input_token_details.audio_tokens == math.ceil(user_ms / 100)
    assert usage.output_token_details.audio_tokens == math.ceil(audio_ms(events) / 50)
    assert usage.output_tokens == (
        usage.output_token_details.text_tokens + usage.output_token_details.audio_tokens
    )
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


# -- filler words, end of utterance, failures and warnings ---------------------------------------

FILLER_SCRIPT = {"turns": [{"turn": 1, "transcript": "((um)) what is the weather ((uh)) in Paris"}]}
SEMANTIC = {"type": "azure_semantic_vad", "silence_duration_ms": 500}


@pytest.fixture
async def scripted() -> AsyncIterator[Any]:
    script = {
        "turns": [
            *FILLER_SCRIPT["turns"],
            {"turn": 2, "transcript": "I would like ... a table for two"},
            {"turn": 3, "transcription_failed": "audio too noisy"},
            {"match": "careful", "warning": "the emulator warns you", "say": "Noted."},
        ]
    }
    async with running_emulator(speed=0, scenario=script) as emu:
        yield emu


async def transcripts(endpoint: str, audio: np.ndarray, **session: Any) -> list[ServerEvent]:
    async with sdk(endpoint) as conn:
        await configure(conn, input_audio_transcription={"model": "azure-speech"}, **session)
        await stream(conn, audio)
        return await events_until(conn, "conversation.item.input_audio_transcription.completed")


async def test_remove_filler_words_drops_the_marked_segments(scripted: Any) -> None:
    audio = np.concatenate([spoken("um what is the weather uh in Paris"), silence(900)])
    removed = await transcripts(
        scripted.endpoint, audio, turn_detection={**SEMANTIC, "remove_filler_words": True}
    )
    kept = await transcripts(scripted.endpoint, audio, turn_detection=SEMANTIC)
    done = "conversation.item.input_audio_transcription.completed"
    assert of(removed, done)[0].transcript == "what is the weather in Paris"
    assert of(kept, done)[0].transcript == "um what is the weather uh in Paris"


async def test_semantic_end_of_utterance_holds_a_marked_pause(scripted: Any) -> None:
    # turn 1 is spent first, so the paused sentence is turn 2 on both connections
    first = np.concatenate([spoken("hello"), silence(900)])
    paused = np.concatenate(
        [spoken("I would like"), silence(800), spoken("a table for two"), silence(900)]
    )
    eou = {"model": "semantic_detection_v1", "timeout_ms": 2000}
    results = {}
    for name, td in (("eou", {**SEMANTIC, "end_of_utterance_detection": eou}), ("vad", SEMANTIC)):
        async with sdk(scripted.endpoint) as conn:
            await configure(conn, turn_detection=td)
            await stream(conn, first)
            await events_until(conn, "response.done")
            await stream(conn, paused)
            results[name] = await events_until(conn, "response.done")
            await stream(conn, silence(100))
    eou_events, vad_events = results["eou"], results["vad"]

    def turn_ms(events: list[ServerEvent]) -> int:
        started = of(events, "input_audio_buffer.speech_started")[0]
        stopped = of(events, "input_audio_buffer.speech_stopped")[0]
        return int(stopped.audio_end_ms - started.audio_start_ms)

    assert len(of(eou_events, "input_audio_buffer.speech_started")) == 1
    assert len(of(eou_events, "input_audio_buffer.committed")) == 1
    assert len(of(vad_events, "input_audio_buffer.speech_started")) == 2
    # held through the 800 ms pause and "a table for two" (about 1 s of speech); without
    # end-of-utterance detection the pause ends the turn after "I would like"
    assert turn_ms(eou_events) - turn_ms(vad_events) >= 1500


async def test_transcription_failure_and_warning_on_demand(scripted: Any) -> None:
    async with sdk(scripted.endpoint) as conn:
        await configure(
            conn,
            input_audio_transcription={"model": "whisper-1"},
            turn_detection={"type": "server_vad", "silence_duration_ms": 500},
        )
        for _ in range(3):  # turns 1 and 2 transcribe; 3 fails
            await stream(conn, np.concatenate([spoken("some words"), silence(900)]))
            events = await events_until(conn, "response.done")
        failed = [
            e for e in events if e.type == "conversation.item.input_audio_transcription.failed"
        ]
        if not failed:
            failed = [
                e
                for e in await events_until(
                    conn, "conversation.item.input_audio_transcription.failed"
                )
                if e.type == "conversation.item.input_audio_transcription.failed"
            ]
        assert isinstance(failed[0], ServerEventConversationItemInputAudioTranscriptionFailed)
        assert failed[0].error.message == "audio too noisy"
        assert failed[0].item_id == of(events, "input_audio_buffer.committed")[0].item_id
        await conn.session.update(session={"turn_detection": None})
        await events_until(conn, "session.updated")
        await say_text(conn, "be careful")
        events = await events_until(conn, "response.done")
    [warning] = of(events, "warning")
    assert isinstance(warning, ServerEventWarning)
    assert warning.warning.message == "the emulator warns you"
    kinds = [e.type for e in events]
    assert kinds.index("warning") < kinds.index("response.done")
