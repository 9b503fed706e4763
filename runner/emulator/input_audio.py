"""Input audio of one emulated session: appends, server VAD, commits and input transcription."""

from __future__ import annotations

import base64
import binascii
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from runner.config.capabilities import SMART_EOT
from runner.emulator import protocol as P
from runner.emulator.conversation import Conversation
from runner.emulator.fillers import heard
from runner.emulator.model import ScriptedModel
from runner.emulator.outbox import Outbox, Tasks
from runner.emulator.responses import Responses
from runner.emulator.speech import g711_decode
from runner.emulator.vad import EnergyVad, VadEvent

#: load mode: the window energies of G.711 appends already seen (exact base64 text -> samples,
#: energies), by format. A benchmark's callers send the same frames over and over (digital
#: silence, the same tone): a known append skips its base64 decode, G.711 decode and energy
#: sums. Bounded: cleared when full, as real, varied audio would fill it.
_KNOWN: dict[str, dict[str, tuple[int, tuple[float, ...]]]] = {"g711_ulaw": {}, "g711_alaw": {}}
_KNOWN_MAX = 4096

MIN_COMMIT_MS = 100  # OpenAI-beta: commits with less audio are input_audio_buffer_commit_empty
#: smart end-of-turn: how far (dB) the last 100 ms of speech must fall below the utterance's
#: level for a pause to end the turn, by threshold_level (a higher level wants more evidence)
SMART_EOT_DROP_DB = {"low": 3.0, "medium": 6.0, "default": 6.0, "high": 9.0}


class InputAudio:
    """The ``input_audio_buffer.*`` handlers: server VAD, commits and input transcription.

    A part of :class:`~runner.emulator.connection.Connection`. A committed turn becomes a user
    item and a pending input of the conversation; speech that starts interrupts the active
    response, and a turn that ends starts the next one (through :class:`Responses`).
    """

    def __init__(
        self,
        outbox: Outbox,
        conversation: Conversation,
        model: ScriptedModel,
        responses: Responses,
        tasks: Tasks,
        stats: dict[str, float],
    ) -> None:
        self._outbox, self._conv, self._model = outbox, conversation, model
        self._responses, self._tasks = responses, tasks
        self._stats = stats  # the record's counters: server-side lag, for benchmarks
        self._vad: EnergyVad | None = None
        self._vad_key: tuple[Any, ...] | None = None
        self._manual_ms = 0.0  # uncommitted audio in manual mode
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._first_audio_at: float | None = None
        self._audio_ms_in = 0.0
        # A turn semantic end-of-utterance detection holds open at a pause: (item, start, stop ms)
        self._held: tuple[str, int, int] | None = None
        self._eou_pauses = 0  # pauses held in the current turn

    def configure_vad(self) -> None:
        td = self._conv.session.get("turn_detection")
        rate = self._conv.input_rate()
        if td is None:
            self._vad, self._vad_key = None, None
            return
        key = (
            rate,
            td.get("threshold", 0.5),
            td.get("prefix_padding_ms", 300),
            td.get("silence_duration_ms", 500),
            td.get("speech_duration_ms", 80),
        )
        if key == self._vad_key and self._vad is not None:
            return
        position = self._vad.position_ms if self._vad else int(self._audio_ms_in)
        self._vad = EnergyVad(
            rate,
            threshold=key[1],
            prefix_padding_ms=key[2],
            silence_duration_ms=key[3],
            speech_duration_ms=key[4],
        )
        self._vad.windows_seen = position // 10  # keep the session audio clock running
        self._vad_key = key

    async def on_append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            await self._outbox.error(
                "missing_required_parameter",
                "Missing required parameter: 'audio'.",
                param="audio",
                client_event=event,
            )
            return
        fmt = self._conv.session.get("input_audio_format", "pcm16")
        vad = self._vad
        known = _KNOWN.get(fmt) if self._outbox.load and vad is not None and vad.aligned else None
        if known is not None and vad is not None:
            seen = known.get(audio)
            if seen is not None:
                await self._heard(vad, seen, event.get("event_id"))
                return
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            await self._outbox.error(
                "invalid_value",
                "Invalid 'audio': the value is not valid base64.",
                param="audio",
                client_event=event,
            )
            return
        if fmt == "g711_ulaw":
            samples = g711_decode(data, "ulaw")
        elif fmt == "g711_alaw":
            samples = g711_decode(data, "alaw")
        else:
            samples = np.frombuffer(data[: len(data) // 2 * 2], dtype=np.int16)
            ec = self._conv.session.get("input_audio_echo_cancellation") or {}
            if ec.get("channels") == 2:
                samples = samples[::2]  # channel 0 is the microphone, 1 the speaker reference
        if known is not None and vad is not None and samples.size % vad.window == 0 and data:
            if len(known) >= _KNOWN_MAX:
                known.clear()
            seen = known[audio] = (samples.size, vad.powers(samples))
            await self._heard(vad, seen, event.get("event_id"))
            return
        ms = samples.size * 1000 / self._conv.input_rate()
        self._track_lag(ms, event.get("event_id"))
        if self._vad is None:
            self._manual_ms += ms
            return
        await self._turns(self._vad.feed(samples))

    async def _heard(
        self, vad: EnergyVad, seen: tuple[int, tuple[float, ...]], event_id: Any
    ) -> None:
        """A load-mode append whose window energies are known: the VAD takes them as such."""
        samples, powers = seen
        self._track_lag(samples * 1000 / self._conv.input_rate(), event_id)
        await self._turns(vad.feed_powers(powers))

    async def _turns(self, heard: list[VadEvent]) -> None:
        """What the VAD heard in an append: speech started or stopped, a held turn's end."""
        if not heard and self._held is None:
            return  # most appends: nothing to say
        async with self._outbox.held():  # a turn's events (stopped, committed, item): one write
            for vad_event in heard:
                if vad_event.kind == "started":
                    await self._speech_started(vad_event.ms)
                else:
                    await self._speech_stopped(vad_event.ms)
            await self._end_held_turn()

    async def _end_held_turn(self) -> None:
        held = self._held
        if (
            held is not None
            and self._vad is not None
            and self._vad.position_ms - held[2] >= self._eou_timeout_ms()
        ):
            self._held = None  # the user did not go on: the turn ends where the speech did
            await self._end_turn(*held)

    def _track_lag(self, ms: float, event_id: Any) -> None:
        """Server-side lag for benchmarks, two ways.

        ``max_lag_ms``: how far processing trails the audio clock since the first frame.
        Probes: a client may name an append ``lagprobe-<time.monotonic_ns()>`` (the monotonic
        clock is machine-wide on Linux); the time from sending to processing it is recorded.
        """
        now = time.monotonic()
        stats = self._stats
        if isinstance(event_id, str) and event_id.startswith("lagprobe-"):
            with contextlib.suppress(ValueError):
                probe = (time.monotonic_ns() - int(event_id[9:])) / 1e6
                stats["probes"] += 1
                stats["max_probe_lag_ms"] = max(stats["max_probe_lag_ms"], probe)
                stats["probes_over_50ms"] += probe > 50
                stats["probes_over_100ms"] += probe > 100
        if self._first_audio_at is None:
            self._first_audio_at = now
        lag = (now - self._first_audio_at) * 1000 - self._audio_ms_in
        self._audio_ms_in += ms
        stats["frames"] += 1
        if lag > stats["max_lag_ms"]:
            stats["max_lag_ms"] = lag

    def _eou_timeout_ms(self) -> int:
        eou = (self._conv.session.get("turn_detection") or {}).get(
            "end_of_utterance_detection"
        ) or {}
        if "timeout_ms" in eou:
            return int(eou["timeout_ms"])
        return int(float(eou.get("timeout", 1.0)) * 1000)  # 2025-05-01-preview: seconds

    def _holds_at_pause(self) -> bool:
        """Semantic end-of-utterance: a pause the script marks mid-sentence does not end it.

        A scripted ``transcript`` marks such a pause with ``...``; each one holds the turn open
        (for at most the detector's ``timeout_ms`` of silence). docs/emulator.md, "Emulated
        features".
        """
        td = self._conv.session.get("turn_detection") or {}
        eou = td.get("end_of_utterance_detection")
        if not isinstance(eou, dict):
            return False
        if eou.get("model") == SMART_EOT:
            # source: docs/emulator.md#smart-eot: audio-based, so the rule reads the audio: a
            # pause ends the turn only after speech whose last 100 ms fell by the level's dB
            # (a statement trails off; a speaker who stops mid-thought does not)
            drop = self._vad.tail_drop_db if self._vad is not None else None
            need = SMART_EOT_DROP_DB.get(str(eou.get("threshold_level", "default")), 6.0)
            return drop is None or drop < need
        said = self._model.audio_transcript(self._conv.user_turns + 1) or ""
        return said.count("...") > self._eou_pauses

    async def _speech_started(self, start_ms: int) -> None:
        if self._held is not None:
            # the same utterance goes on after a held pause: no new item, no new event
            self._speech_item, self._speech_start_ms, _ = self._held
            self._held = None
            return
        self._speech_item, self._speech_start_ms = P.new_id("item"), start_ms
        await self._outbox.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": start_ms,
                "item_id": self._speech_item,
            }
        )
        td = self._conv.session.get("turn_detection") or {}
        active = self._responses.active
        if active is not None and td.get("interrupt_response", True):
            await self._responses.cancel(
                active, "turn_detected", truncate=bool(td.get("auto_truncate"))
            )

    async def _speech_stopped(self, end_ms: int) -> None:
        item_id = self._speech_item or P.new_id("item")
        self._speech_item = None
        if self._holds_at_pause():
            self._eou_pauses += 1
            self._held = (item_id, self._speech_start_ms, end_ms)
            return
        await self._end_turn(item_id, self._speech_start_ms, end_ms)

    async def _end_turn(self, item_id: str, start_ms: int, end_ms: int) -> None:
        self._eou_pauses = 0
        await self._outbox.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": end_ms,
                "item_id": item_id,
            }
        )
        await self._commit_audio(item_id, end_ms - start_ms)
        td = self._conv.session.get("turn_detection") or {}
        # with interrupt_response false a reply may still be running: it is not doubled up
        if td.get("create_response", True) and self._responses.active is None:
            await self._responses.start({})

    async def on_commit(self, event: dict[str, Any]) -> None:
        if self._vad is not None and self._vad.in_speech:
            ms = self._vad.position_ms - self._speech_start_ms
            self._vad.reset_speech()
            item_id = self._speech_item or P.new_id("item")
            self._speech_item = None
        else:
            ms, item_id = int(self._manual_ms), P.new_id("item")
        if ms < MIN_COMMIT_MS:
            await self._outbox.error(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at "
                f"least {MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                client_event=event,
            )
            return
        self._manual_ms = 0.0
        await self._commit_audio(item_id, int(ms))

    async def _commit_audio(self, item_id: str, ms: float) -> None:
        turn = self._conv.new_user_turn()
        transcript = self._model.audio_transcript(turn)
        if transcript is not None:
            transcript = heard(transcript, self._conv.session.get("turn_detection"))
        await self._outbox.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": self._conv.last_item_id,
                "item_id": item_id,
            }
        )
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._conv.add_item(item)
        self._conv.pending_input.append({"turn": turn, "text": transcript, "audio_ms": int(ms)})
        failure = self._model.transcription_failure(turn)
        if self._conv.session.get("input_audio_transcription") and failure is not None:
            # a scripted transcription failure (docs/emulator.md#script-transcription-failed)
            self._tasks.spawn(self._transcription_failed(item_id, failure))
        elif self._conv.session.get("input_audio_transcription"):
            text = (
                transcript if transcript is not None else f"[emulator: {ms / 1000:.1f} s of speech]"
            )
            item["content"][0]["transcript"] = text
            self._tasks.spawn(self._transcribe(item_id, text))

    async def _transcription_failed(self, item_id: str, failure: Mapping[str, Any]) -> None:
        await self._outbox.send(
            {
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": item_id,
                "content_index": 0,
                "error": {
                    "type": failure.get("type", "transcription_error"),
                    "code": failure.get("code", "audio_unintelligible"),
                    "message": failure["message"],
                    "param": None,
                },
            }
        )

    async def _transcribe(self, item_id: str, text: str) -> None:
        async with self._outbox.held():  # the deltas and the transcript: one write
            await self._transcribed(item_id, text)

    async def _transcribed(self, item_id: str, text: str) -> None:
        words = text.split(" ")
        for i, word in enumerate(words):
            await self._outbox.send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": word if i == 0 else " " + word,
                }
            )
        await self._outbox.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
            }
        )

    async def on_clear(self, event: dict[str, Any]) -> None:
        self._manual_ms = 0.0
        self._held = None
        if self._vad is not None:
            self._vad.reset_speech()
        self._speech_item = None
        await self._outbox.send({"type": "input_audio_buffer.cleared"})
