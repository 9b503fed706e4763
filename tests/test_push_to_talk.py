"""Push-to-talk (``turn_detection: manual``): the user's key starts and ends each turn.

In the session: mic audio goes out only while talking; the end of talking commits the buffer
and asks for the reply; talking during a reply is a barge-in. With ``--input`` the file is
committed at its end. Through the real console and PyAudio: tests/test_console_tmux.py.
"""

from __future__ import annotations

import asyncio
import re
import wave
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import running_emulator
from runner.live.audio import ClockPlayer
from runner.live.inputs import key_label
from runner.live.state import Phase
from tests.live_harness import FMT, LiveMic, build, session_update, tone

MANUAL = session_update(vad=False)


def _types(record: Any) -> list[str]:
    return [str(e["type"]) for e in record.received]


class _Mic(LiveMic):
    """The harness microphone, saying when what it was told to say has all gone out."""

    def __init__(self) -> None:
        super().__init__()
        self._drained = asyncio.Event()

    def say(self, pcm: bytes) -> None:
        self._drained.clear()
        super().say(pcm)

    async def frames(self) -> Any:
        async for frame in super().frames():
            if not self.pending:
                self._drained.set()
            yield frame

    async def said(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self._drained.wait(), timeout)


class _Player(ClockPlayer):
    """A real-time clock player that says when the reply's audio starts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.playing = asyncio.Event()

    def write(self, item_id: str, pcm: bytes) -> None:
        super().write(item_id, pcm)
        self.playing.set()


async def _until(live: Any, predicate: Any, timeout: float = 10) -> None:
    """Wait on the session's turn state: every transition (the talk key too) wakes it."""
    await asyncio.wait_for(live.turn.until(predicate), timeout)


async def test_audio_is_sent_only_while_talking_then_committed(tmp_path: Path) -> None:
    async with running_emulator(speed=0) as emu:
        mic = _Mic()
        h = build(emu.endpoint, tmp_path, update=MANUAL, source=mic)
        live = h.session
        assert live.push_to_talk and live.manual_turns
        h.start()
        await asyncio.wait_for(live.ready.wait(), 10)
        mic.say(tone(400))  # said before the key: not the user's turn
        await mic.said()
        assert "input_audio_buffer.append" not in _types(emu.sessions[0])
        live.talk()
        assert live.talk_state == "starting" and live.turn.phase is Phase.USER_SPEAKING
        mic.say(tone(800))
        await mic.said()
        live.talk()
        await emu.wait_for(lambda e: e["type"] == "response.create")
        reply = await h.turn(lambda t: t.role == "assistant")
        assert reply.text
        await h.stop()
    kinds = _types(emu.sessions[0])
    talk = kinds[kinds.index("input_audio_buffer.clear") :]
    # clear, the talk's audio, then commit and response.create, in that order
    assert set(talk[1 : talk.index("input_audio_buffer.commit")]) == {"input_audio_buffer.append"}
    commit = talk.index("input_audio_buffer.commit")
    assert talk[commit + 1] == "response.create"
    assert "input_audio_buffer.append" not in talk[commit:]
    assert kinds.count("input_audio_buffer.append") == commit - 1  # none before the key
    appended = [e for e in emu.sessions[0].received if e["type"] == "input_audio_buffer.append"]
    # about 800 ms of talk (plus up to a chunk on either side), none of the 400 ms before
    ms = sum(len(e["audio"]) * 3 / 4 for e in appended) / FMT.bytes_for_ms(1)
    assert 700 <= ms <= 1100, ms
    users = [t.text for t in h.transcript.turns if t.role == "user"]
    assert len(users) == 1 and re.fullmatch(r"\[speech (0\.[7-9]|1\.[01]) s\]", users[0]), users
    assert live.turn.phase is Phase.CLOSING


async def test_a_slip_of_the_key_sends_no_turn(tmp_path: Path) -> None:
    async with running_emulator(speed=0) as emu:
        mic = _Mic()
        h = build(emu.endpoint, tmp_path, update=MANUAL, source=mic)
        live = h.session
        h.start()
        await asyncio.wait_for(live.ready.wait(), 10)
        live.talk()
        live.talk()  # at once: under MIN_TALK_MS
        await emu.wait_for(lambda e: e["type"] == "input_audio_buffer.clear")
        await _until(live, lambda: live.talk_state == "off")
        assert "nothing sent" in h.err
        assert live.talk_state == "off" and live.turn.between_turns()
        await h.stop()
    kinds = _types(emu.sessions[0])
    assert "input_audio_buffer.commit" not in kinds and "response.create" not in kinds


async def test_talking_during_a_reply_interrupts_it(tmp_path: Path) -> None:
    # speed 1: the reply streams in real time, so it is still playing when the user talks
    async with running_emulator(speed=1) as emu:
        mic = _Mic()
        player = _Player(FMT, realtime=True)
        h = build(emu.endpoint, tmp_path, update=MANUAL, source=mic, player=player)
        live = h.session
        h.start()
        await asyncio.wait_for(live.ready.wait(), 10)
        live.feed_line("tell me a long story please")
        await asyncio.wait_for(player.playing.wait(), 10)
        assert player.pending_ms() > 0 and live.turn.active is not None
        live.talk()
        await emu.wait_for(lambda e: e["type"] == "response.cancel")
        truncate = await emu.wait_for(lambda e: e["type"] == "conversation.item.truncate")
        assert player.pending_ms() == 0  # playback flushed at once
        reply = await h.turn(lambda t: t.role == "assistant")
        assert reply.interrupted
        assert 0 <= truncate["audio_end_ms"] < 5000
        await h.stop()


def test_key_labels() -> None:
    assert key_label("enter") == "Enter"
    assert key_label("c-t") == "Ctrl+T"
    assert key_label("f2") == "F2"
    assert key_label("c-space") == "Ctrl+Space"


def test_a_wav_is_committed_at_its_end(
    run_cli: Any, profiles_dir: Path, tmp_path: Path, speech_wav: Path
) -> None:
    """`--input FILE.wav` with manual turns: the whole file, one commit, one reply."""
    trace = tmp_path / "t.jsonl"
    out = tmp_path / "reply.wav"
    proc = run_cli(
        [
            "run",
            str(profiles_dir / "casual-chat.yaml"),
            "--emulator",
            "--set",
            "turn_detection.type=manual",
            "--input",
            str(speech_wav),
            "--fast",
            "--output",
            str(out),
            "--logs",
            "-",
            "--trace",
            str(trace),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    sent = [
        line.split('"type": "')[1].split('"')[0]
        for line in trace.read_text().splitlines()
        if '"dir": "out"' in line
    ]
    assert sent.count("input_audio_buffer.commit") == 1
    commit = sent.index("input_audio_buffer.commit")
    assert sent[commit + 1] == "response.create"
    assert "input_audio_buffer.append" not in sent[commit:]
    assert "assistant: " in proc.stdout
    with wave.open(str(out)) as wav:
        assert wav.getnframes() > 0


@pytest.mark.parametrize("line", ["", "   "])
async def test_an_empty_line_toggles_talking(tmp_path: Path, line: str) -> None:
    """The plain console (pipes, tests): a blank line is the Enter of push-to-talk."""
    async with running_emulator(speed=0) as emu:
        mic = _Mic()
        h = build(emu.endpoint, tmp_path, update=MANUAL, source=mic)
        live = h.session
        h.start()
        await asyncio.wait_for(live.ready.wait(), 10)
        live.feed_line(line)
        await _until(live, lambda: live.talk_state != "off")
        assert "talking… (Enter to send)" in h.err
        mic.say(tone(600))
        await mic.said()
        live.feed_line(line)
        await emu.wait_for(lambda e: e["type"] == "input_audio_buffer.commit")
        await h.stop()


async def test_scenario_spoken_turns_are_committed(tmp_path: Path) -> None:
    """`vlrun test` with manual turns: each spoken turn is committed, then answered."""
    from runner.scenarios.files import load_scenario
    from runner.scenarios.run import RunSettings, run_scenario_async

    (tmp_path / "ptt.yaml").write_text(
        "name: ptt\ninstructions: Be brief.\nturn_detection: {type: manual}\n", encoding="utf-8"
    )
    path = tmp_path / "manual.yaml"
    path.write_text(
        "scenario: push-to-talk turns\nprofile: ptt.yaml\n"
        "model:\n  turns:\n    - match: hello\n      say: Hi there, manual friend.\n"
        "turns:\n"
        "  - say: hello there\n    expect: {reply_contains: manual friend}\n"
        "  - user: hello again\n    expect: {reply_contains: manual friend}\n",
        encoding="utf-8",
    )
    trace = tmp_path / "trace.jsonl"
    result = await run_scenario_async(load_scenario(path), RunSettings(trace_path=trace))
    assert result.passed, (result.error, result.failures, result.lines)
    sent = [
        line.split('"type": "')[1].split('"')[0]
        for line in trace.read_text().splitlines()
        if '"dir": "out"' in line
    ]
    assert sent.count("input_audio_buffer.commit") == 1  # the spoken turn; the typed one has none
    assert sent[sent.index("input_audio_buffer.commit") + 1] == "response.create"


@pytest.mark.audio
def test_push_to_talk_through_pyaudio(
    pulse_audio: None, tmp_path: Path, speech_wav: Path, cli_env: Any, wav_stats: Any
) -> None:
    """The real console in tmux, PyAudio over the null sinks: Enter, speech into the virtual
    mic, Enter; the reply comes out of the virtual speaker and the emulator saw the turn
    committed, then asked for."""
    import shutil
    import subprocess

    from runner.emulator import emulator_thread
    from runner.live.audio import level_dbfs
    from tests.tmux_pane import Pane, need_tmux

    need_tmux()
    if shutil.which("paplay") is None or shutil.which("parec") is None:
        pytest.skip("paplay/parec missing (apt-get install pulseaudio-utils)")
    (tmp_path / "ptt.yaml").write_text(
        "name: ptt\ninstructions: Be brief.\nvoice: alloy\nturn_detection: {type: manual}\n",
        encoding="utf-8",
    )
    env = cli_env(sound=True)
    heard = tmp_path / "speaker.raw"
    with emulator_thread(speed=1) as emu:
        pane = Pane(
            ["run", "ptt.yaml", "--endpoint", emu.endpoint, "--output", "reply.wav", "--logs", "-"],
            cwd=tmp_path,
            env=env,
        )
        with heard.open("wb") as sink:
            speaker = subprocess.Popen(
                [
                    "parec",
                    "--raw",
                    "--device=vspk.monitor",
                    "--rate=24000",
                    "--channels=1",
                    "--format=s16le",
                ],
                stdout=sink,
                env=env,
            )
        try:
            pane.wait("the console", lambda: "press Enter to talk" in pane.status())
            pane.key("Enter")
            pane.wait("talking", lambda: "talking… (Enter to send)" in pane.status())
            played = subprocess.run(
                ["paplay", "--device=vmic", str(speech_wav)], env=env, timeout=30
            )
            assert played.returncode == 0
            pane.key("Enter")
            pane.wait_text("assistant: [emulator] I heard")
            pane.wait(
                "the reply's end",
                lambda: (
                    pane.status().startswith("mic ")
                    and "press Enter to talk" in pane.status()
                    and "responding" not in pane.status()
                ),
            )
            pane.type("q")
            pane.key("Enter")
            assert pane.exit_code() == 0
            history = pane.history()
        finally:
            speaker.terminate()
            speaker.wait(10)
            pane.close()
    received = emu.sessions[0].received
    kinds = [str(e["type"]) for e in received]
    start = kinds.index("input_audio_buffer.clear")
    commit = kinds.index("input_audio_buffer.commit")
    assert kinds[commit + 1] == "response.create"
    assert kinds.count("input_audio_buffer.commit") == 1
    # audio went out only between the two Enters: after the clear, before the commit
    assert kinds[start:commit].count("input_audio_buffer.append") == kinds.count(
        "input_audio_buffer.append"
    )
    appends = [e for e in received[start:commit] if e["type"] == "input_audio_buffer.append"]
    talk_s = sum(len(e["audio"]) * 3 / 4 for e in appends) / 48000
    speech_s, _ = wav_stats(speech_wav)
    assert speech_s * 0.8 <= talk_s <= speech_s + 3, (talk_s, speech_s)
    assert re.search(r"^you: \[speech \d+\.\d s\]$", history, re.M)
    # the reply was played: loud for a good part of a second on the virtual speaker
    pcm = heard.read_bytes()
    loud = sum(4800 for i in range(0, len(pcm) - 4800, 4800) if level_dbfs(pcm[i : i + 4800]) > -45)
    assert loud >= 24000, f"{loud / 48000:.2f} s of loud audio from the speaker"
    duration, rms = wav_stats(tmp_path / "reply.wav")
    assert duration > 1.0 and rms > -40
