"""Issue 28 item 2: text mode shows a reply as it arrives, a script's lines still queue behind a
reply (only a person at a terminal interrupts one: tests/test_console_tmux.py), and
`vlrun run --emulator-speed` chooses the embedded emulator's pace."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from runner.emulator import emulator_thread, running_emulator
from runner.live.audio import AudioFormat, ClockPlayer
from runner.live.connect import SERVICE_PACE, Target
from runner.live.session import LiveSession
from runner.live.transcript import Transcript

ROOT = Path(__file__).resolve().parents[1]
CASUAL = str(ROOT / "profiles" / "casual-chat.yaml")
KEY = "text-pace-key-0123456789"
STORY = (
    "Once upon a time a small robot lived in a lighthouse by the sea and counted the ships "
    "that passed every night until the winter storm came."
)
SCRIPT = {"turns": [{"match": "story", "say": STORY}]}


class _Screen(io.StringIO):
    """stdout as the user sees it, each write logged in one list with the events."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        super().__init__()
        self.log = log

    def write(self, text: str) -> int:
        self.log.append(("screen", text))
        return super().write(text)


class _Ordered(Transcript):
    """A transcript that logs each server event as the receive loop hands it over (before
    its handler runs), in the same list as the screen's writes."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        super().__init__(out=_Screen(log), err=io.StringIO())
        self.log = log

    def event(self, kind: str, summary: str = "", payload: dict[str, Any] | None = None) -> None:
        self.log.append(("event", kind))
        super().event(kind, summary, payload)


async def test_a_reply_is_on_screen_before_its_response_is_done() -> None:
    """Order of events, not time: the reply's first words are written to the console while
    its response is still going (before response.done reaches the session)."""
    log: list[tuple[str, str]] = []
    transcript = _Ordered(log)
    async with running_emulator(speed=SERVICE_PACE, scenario=SCRIPT, use_espeak=False) as emu:
        session = LiveSession(
            target=Target(emu.endpoint, "test", KEY, "test", "gpt-realtime"),
            endpoint=emu.endpoint,
            credential=AzureKeyCredential(KEY),
            session_update={"type": "session.update", "session": {"modalities": ["text", "audio"]}},
            transcript=transcript,
            player=ClockPlayer(AudioFormat(24000), realtime=False),
            lines=False,
        )
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 10)
        await session.send_text("tell me a story")
        turn = session.turn
        assert await turn.until(lambda: turn.responses_ended >= 1 and turn.idle(), 30)
        session.stop()
        assert await asyncio.wait_for(task, 10) == 0
    first_words = next(
        i for i, (kind, text) in enumerate(log) if kind == "screen" and "Once" in text
    )
    # before the response ends, and before its text is even complete
    assert first_words < log.index(("event", "response.done"))
    done = log.index(("event", "response.audio_transcript.done"))
    assert first_words < done
    # and it grows word by word on screen before the response ends, not in one piece
    shown = [t for kind, t in log[first_words:done] if kind == "screen"]
    assert len(shown) >= 5 and "storm" not in shown[0]
    assert transcript.turns[-1].text == STORY


def test_piped_lines_queue_behind_a_reply(run_cli: Any, tmp_path: Path) -> None:
    """A script piped in is not a person typing: its second line waits for the first reply
    to end, which is said whole (the terminal's typed barge-in is not for scripts)."""
    script = tmp_path / "model.yaml"
    script.write_text(f"turns:\n  - match: story\n    say: {STORY}\n", encoding="utf-8")
    with emulator_thread(speed=SERVICE_PACE, scenario=script, use_espeak=False) as emu:
        result = run_cli(
            [CASUAL, "--text", "--logs", "-"],
            input="tell me a story\nhello\n",
            env={"AZURE_VOICELIVE_ENDPOINT": emu.endpoint, "AZURE_VOICELIVE_API_KEY": KEY},
        )
        received = [e["type"] for e in emu.sessions[-1].received]
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "you: tell me a story",
        f"assistant: {STORY}",
        "you: hello",
        "assistant: [emulator] You said: hello",
    ]
    assert "response.cancel" not in received


@pytest.mark.parametrize(
    ("args", "note"),
    [
        ([], "the emulator sends replies at 4x real time (the default; --emulator-speed X)"),
        (["--emulator-speed", "1"], "the emulator sends replies in real time (--emulator-speed)"),
        (["--emulator-speed", "0"], "the emulator sends replies as fast as it can"),
    ],
)
def test_emulator_speed_is_the_users_choice(run_cli: Any, args: list[str], note: str) -> None:
    result = run_cli([CASUAL, "--text", "--emulator", "--logs", "-", *args], input="hello\n")
    assert result.returncode == 0, result.stderr
    assert f"-- {note}" in result.stderr
    assert result.stdout.splitlines()[-1] == "assistant: [emulator] You said: hello"


def test_emulator_speed_defaults() -> None:
    from runner.live.console import RunOptions, emulator_speed

    profile = Path(CASUAL)
    assert emulator_speed(RunOptions(profile, text=True)) == SERVICE_PACE
    assert emulator_speed(RunOptions(profile)) == 1.0  # audio: heard as it comes
    assert emulator_speed(RunOptions(profile, input_wav=Path("q.wav"))) == 1.0
    assert emulator_speed(RunOptions(profile, text=True, emulator_speed=2.5)) == 2.5


def test_emulator_speed_against_a_real_endpoint_is_said_to_do_nothing(
    run_cli: Any, emulator_in_thread: Any
) -> None:
    result = run_cli(
        [CASUAL, "--text", "--endpoint", emulator_in_thread.endpoint, "--emulator-speed", "2"],
        input="hello\n",
        env={"AZURE_VOICELIVE_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    assert "warning: --emulator-speed sets the pace of the embedded emulator only" in result.stderr


def test_a_negative_emulator_speed_is_a_usage_error(run_cli: Any) -> None:
    result = run_cli([CASUAL, "--text", "--emulator-speed", "-1"])
    assert result.returncode == 2
    assert "--emulator-speed" in result.stderr and "Traceback" not in result.stderr
