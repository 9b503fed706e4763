"""Issue 28 item 2: a line typed at a terminal interrupts the reply under way, in-process with
the real SDK against the emulator (the terminal itself: tests/test_console_tmux.py)."""

from __future__ import annotations

import asyncio
import io

from azure.core.credentials import AzureKeyCredential

from runner.emulator import Faults, running_emulator
from runner.live.audio import AudioFormat, ClockPlayer
from runner.live.connect import Target
from runner.live.session import LiveSession
from runner.live.transcript import Transcript

KEY = "typed-barge-in-key-0123456789"
STORY = "Once upon a time " + "a robot counted ships by the sea and " * 6 + "then it slept."
SCRIPT = {"turns": [{"match": "story", "say": STORY}]}


class _Shown(Transcript):
    """Says when the first words of a reply are on screen."""

    def __init__(self) -> None:
        super().__init__(out=io.StringIO(), err=io.StringIO())
        self.first_words = asyncio.Event()

    def assistant_delta(self, item_id: str, delta: str) -> None:
        super().assistant_delta(item_id, delta)
        self.first_words.set()


def _session(endpoint: str, *, typed_barge_in: bool) -> LiveSession:
    return LiveSession(
        target=Target(endpoint, "test", KEY, "test", "gpt-realtime"),
        endpoint=endpoint,
        credential=AzureKeyCredential(KEY),
        session_update={"type": "session.update", "session": {"modalities": ["text", "audio"]}},
        transcript=_Shown(),
        player=ClockPlayer(AudioFormat(24000), realtime=True),
        lines=False,
        typed_barge_in=typed_barge_in,
    )


async def _story_then_line(typed_barge_in: bool) -> tuple[LiveSession, list[str]]:
    async with running_emulator(speed=4, scenario=SCRIPT, use_espeak=False) as emu:
        session = _session(emu.endpoint, typed_barge_in=typed_barge_in)
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 10)
        turn = session.turn
        session.feed_line("tell me a story")
        # the line comes while the story is being said (its first words are on screen)
        shown = session.transcript
        assert isinstance(shown, _Shown)
        await asyncio.wait_for(shown.first_words.wait(), 10)
        session.feed_line("hello")
        assert await turn.until(
            lambda: sum(1 for t in session.transcript.turns if t.role == "assistant") >= 2, 30
        )
        session.stop()
        await asyncio.wait_for(task, 10)
        return session, [e["type"] for e in emu.sessions[-1].received]


async def test_a_line_typed_during_a_reply_cuts_it() -> None:
    session, received = await _story_then_line(typed_barge_in=True)
    story, hello = [t for t in session.transcript.turns if t.role == "assistant"][:2]
    assert story.interrupted and "slept" not in story.text
    assert "You said: hello" in hello.text
    assert (
        received.index("response.cancel")
        < [i for i, kind in enumerate(received) if kind == "conversation.item.create"][1]
    )
    assert "conversation.item.truncate" in received


async def test_without_a_person_typing_the_line_waits_for_the_whole_reply() -> None:
    session, received = await _story_then_line(typed_barge_in=False)
    story = next(t for t in session.transcript.turns if t.role == "assistant")
    assert not story.interrupted and story.text == STORY
    assert "response.cancel" not in received


async def test_a_line_typed_ahead_of_a_reply_that_has_not_begun_waits_for_it() -> None:
    """A reply asked for and not begun is not cut (a paste or a quick typist's next line is
    the next turn): only what is being said is interrupted."""
    faults = Faults(delay_ms=300, delay_types=("response.created",))
    async with running_emulator(speed=0, faults=faults) as emu:
        session = _session(emu.endpoint, typed_barge_in=True)
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 10)
        turn = session.turn
        session.feed_line("first")
        assert await turn.until(lambda: turn.requested > 0 and turn.active is None, 10)
        session.feed_line("second")
        assert await turn.until(
            lambda: sum(1 for t in session.transcript.turns if t.role == "assistant") >= 2, 30
        )
        session.stop()
        await asyncio.wait_for(task, 10)
        received = [e["type"] for e in emu.sessions[-1].received]
    replies = [t for t in session.transcript.turns if t.role == "assistant"]
    assert [r.text for r in replies] == [
        "[emulator] You said: first",
        "[emulator] You said: second",
    ]
    assert not any(r.interrupted for r in replies)
    assert "response.cancel" not in received
