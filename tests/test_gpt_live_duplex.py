"""GPT-Live's full duplex, the runner's half (docs/gpt-live.md "Full duplex"): backchannels are
told from replies on the transcripts' own timeline, a backchannel is never a barge-in (the
player is not cut, nothing is cancelled), and a reply the model stopped while the caller spoke is
a yield. Unit level: the rules, and the session's handling of the events they come from."""

from __future__ import annotations

import io
from typing import Any

from runner.live.audio import AudioFormat, ClockPlayer
from runner.live.connect import Target
from runner.live.duplex import Duplex
from runner.live.gpt_live import GptLiveSession, audio_fields, live_url, session_format
from runner.live.transcript import Transcript


class Seen:
    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def caller_said(self, utterance_id: str, text: str) -> None:
        self.log.append(("caller", text))

    def reply_delta(self, utterance_id: str, delta: str) -> None:
        self.log.append(("delta", utterance_id, delta))

    def reply_done(self, utterance_id: str, text: str, *, yielded: bool) -> None:
        self.log.append(("reply", text, yielded))

    def backchannel(self, utterance_id: str, text: str) -> None:
        self.log.append(("backchannel", text))


def test_a_short_output_during_the_callers_speech_is_a_backchannel() -> None:
    seen = Seen()
    d = Duplex(seen)
    d.caller_fragment("I would like ", 0, 900)
    d.assistant_fragment("mm-hmm", 1000, 1400)  # while the caller speaks: may be one
    d.caller_fragment("a table for two ", 1000, 2200)
    d.caller_fragment("tonight", 2200, 2900)
    d.assistant_fragment("Sure, a table for two tonight.", 3500, 5200)  # after 600 ms silence
    d.flush()
    assert seen.log == [
        ("backchannel", "mm-hmm"),
        ("caller", "I would like a table for two tonight"),
        ("delta", "assistant_3", "Sure, a table for two tonight."),
        ("reply", "Sure, a table for two tonight.", False),
    ]
    assert (d.backchannels, d.replies, d.yields) == (1, 1, 0)


def test_output_during_speech_that_runs_long_is_a_reply_shown_from_its_start() -> None:
    seen = Seen()
    d = Duplex(seen)
    d.caller_fragment("so what do you", 0, 800)
    d.assistant_fragment("Right, ", 900, 1100)
    assert seen.log == []  # not shown yet: it may be a backchannel
    d.assistant_fragment("so here is the whole answer", 1100, 2400)  # > 3 words, > 1 s
    assert seen.log == [("delta", "assistant_2", "Right, so here is the whole answer")]


def test_a_reply_the_model_stops_while_the_caller_speaks_yielded() -> None:
    seen = Seen()
    d = Duplex(seen)
    d.assistant_fragment("Let me tell you about ", 0, 1500)
    d.caller_fragment("wait, ", 1200, 1800)  # the caller starts during the reply
    d.caller_fragment("I meant Friday", 1800, 3000)  # and goes on after the output stopped
    d.flush()
    assert ("reply", "Let me tell you about", True) in seen.log
    assert d.yields == 1


def test_a_caller_backchannel_during_a_reply_is_not_a_yield() -> None:
    seen = Seen()
    d = Duplex(seen)
    d.assistant_fragment("The forecast says ", 0, 1000)
    d.caller_fragment("uh-huh", 1000, 1300)  # short, the reply goes on past it
    d.assistant_fragment("sun all day.", 1000, 2500)
    d.flush()
    assert ("reply", "The forecast says sun all day.", False) in seen.log
    assert d.yields == 0 and d.replies == 1


def _session() -> tuple[GptLiveSession, ClockPlayer]:
    player = ClockPlayer(AudioFormat(24000), realtime=True)
    session = GptLiveSession(
        {"type": "session.start", "session": {"model": "gpt-live-1"}},
        target=Target("http://127.0.0.1:9", "test", "k", "test", "gpt-live-1"),
        endpoint="http://127.0.0.1:9",
        credential=None,
        transcript=Transcript(out=io.StringIO(), err=io.StringIO()),
        player=player,
        lines=False,
    )
    return session, player


async def test_a_backchannel_leaves_the_reply_playing_and_sends_nothing() -> None:
    """The event path: a backchannel over a playing reply neither cuts the player nor sends
    anything (there is no cancel on GPT-Live; the model decides when to yield)."""
    import base64

    session, player = _session()
    sent: list[Any] = []
    session._send = lambda event: sent.append(event)  # type: ignore[assignment,method-assign,misc,return-value]
    session._on_output_transcript({"delta": "Here is a long answer", "start_ms": 0, "end_ms": 900})
    session._on_audio({"delta": base64.b64encode(bytes(48000)).decode(), "end_ms": 1000})
    session._on_input_transcript({"delta": "yeah", "start_ms": 950, "end_ms": 1200})
    session._on_output_transcript({"delta": "mm-hmm", "start_ms": 1250, "end_ms": 1500})
    assert player.pending_ms() > 0  # still playing: nothing was cut
    assert sent == []
    session._cancel_quiet()


def test_wire_helpers() -> None:
    assert live_url("https://res.openai.azure.com/") == "wss://res.openai.azure.com/openai/v1/live"
    assert live_url("http://127.0.0.1:5000") == "ws://127.0.0.1:5000/openai/v1/live"
    assert session_format({}) == ("pcm16", 24000)
    assert session_format({"audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}) == (
        "g711_ulaw",
        8000,
    )
    assert audio_fields(
        {"audio": {"format": {"type": "audio/pcm", "rate": 16000}, "output": {"voice": "marin"}}}
    ) == {
        "input_audio_format": "pcm16",
        "input_audio_sampling_rate": 16000,
        "output_audio_format": "pcm16_16000hz",
        "voice": "marin",
    }


def test_an_utterance_goes_on_while_its_audio_does() -> None:
    """Slow speech: a word every 600 ms of the timeline, the audio contiguous between them; one
    reply, its first word not preceded by a space."""
    seen = Seen()
    d = Duplex(seen)
    for k, word in enumerate(["[emulator", " backend", " said", " this"]):
        d.assistant_fragment(word, k * 600, k * 600 + 100)
        for chunk in range(6):
            d.assistant_audio(k * 600 + chunk * 100, k * 600 + chunk * 100 + 100)
    d.flush()
    assert [e for e in seen.log if e[0] == "reply"] == [
        ("reply", "[emulator backend said this", False)
    ]
    d2 = Duplex(Seen())
    d2.assistant_fragment(" Hello", 0, 100)
    assert d2.sink.log == [("delta", "assistant_1", "Hello")]  # type: ignore[attr-defined]
