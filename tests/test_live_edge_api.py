"""The public surface a phone or browser edge uses on a live session (issue 25, "A public API
on the live session for edges"): say, finish_reply, forbid_reconnect; nothing an edge needs is
private any more.

Real SDK against the emulator; the player is the clock player in real time, so "heard" means
the audio's play-out time has passed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import Faults, running_emulator
from runner.errors import ConnectError
from runner.live.audio import ClockPlayer
from runner.live.state import Drop
from tests.live_harness import FMT, KEY, Harness, build

WAIT_S = 15.0
GOODBYE = "Thank you for calling, goodbye."


def _said(record: Any) -> list[str]:
    """The texts a client asked the emulator to say verbatim on one connection."""
    out = []
    for event in record.received:
        pre = (event.get("response") or {}).get("pre_generated_assistant_message")
        if event["type"] == "response.create" and pre:
            out += [part["text"] for part in pre["content"]]
    return out


def _assistant(h: Harness) -> list[str]:
    return [t.text for t in h.transcript.turns if t.role == "assistant" and t.text]


async def _ready(h: Harness) -> None:
    turn = h.session.turn
    h.start()
    assert await turn.until(lambda: turn.connected, WAIT_S), "never configured"


async def test_say_speaks_the_text_verbatim_and_returns_once_it_was_heard(
    tmp_path: Path,
) -> None:
    player = ClockPlayer(FMT, realtime=True)
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        h = build(emu.endpoint, tmp_path, player=player)
        try:
            await _ready(h)
            await h.session.say(GOODBYE, timeout=WAIT_S)
            # heard: the play-out time of every byte received has passed
            assert player.pending_ms() == 0
            assert h.session.turn.idle()
        finally:
            await h.stop()
        said = _said(emu.sessions[0])
    assert said == [GOODBYE]
    assert GOODBYE in _assistant(h)


async def test_say_waits_for_the_reply_in_progress(tmp_path: Path) -> None:
    """A goodbye asked for while a reply is being generated comes after it: the service is
    never asked for a second response while one is active."""
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        h = build(emu.endpoint, tmp_path, player=ClockPlayer(FMT, realtime=True))
        try:
            await _ready(h)
            await h.session.send_text("Tell me about Paris")
            assert h.session.turn.reply_owed()
            await h.session.say(GOODBYE, timeout=WAIT_S)
        finally:
            await h.stop()
    replies = _assistant(h)
    assert len(replies) == 2 and replies[1] == GOODBYE, replies
    assert "already_has_active_response" not in h.err, h.err
    assert "service error" not in h.err, h.err


async def test_finish_reply_returns_once_the_reply_in_progress_was_heard(tmp_path: Path) -> None:
    player = ClockPlayer(FMT, realtime=True)
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        h = build(emu.endpoint, tmp_path, player=player)
        try:
            await _ready(h)
            await h.session.finish_reply(timeout=WAIT_S)  # nothing owed: at once
            assert _assistant(h) == []
            await h.session.send_text("Tell me about Paris")
            await h.session.finish_reply(timeout=WAIT_S)
            assert len(_assistant(h)) == 1
            assert h.session.turn.idle() and player.pending_ms() == 0
        finally:
            await h.stop()


async def test_say_on_an_ended_session_raises_drop(tmp_path: Path) -> None:
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        h = build(emu.endpoint, tmp_path)
        await _ready(h)
        await h.stop()
        with pytest.raises(Drop):
            await h.session.say(GOODBYE, timeout=WAIT_S)
        assert h.session.end_reason == "stopped"
        assert _said(emu.sessions[0]) == []


async def test_say_when_the_connection_drops_before_the_message_was_said_raises_drop(
    tmp_path: Path,
) -> None:
    """The connection drops while the goodbye is pending (the service holds its
    response.created, then closes the socket): say raises Drop, so an edge hangs up anyway;
    with forbid_reconnect the conversation ends there."""
    faults = Faults(delay_ms=3000, delay_types=("response.created",))
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False, faults=faults) as emu:
        h = build(emu.endpoint, tmp_path)
        h.session.forbid_reconnect()
        await _ready(h)
        say = asyncio.create_task(h.session.say(GOODBYE, timeout=WAIT_S))
        await emu.wait_for(lambda e: e["type"] == "response.create", WAIT_S)
        await emu.cut_all(1011)  # the service side closes the connection
        with pytest.raises(Drop):
            await asyncio.wait_for(say, WAIT_S)
        with pytest.raises(ConnectError, match="does not reconnect"):
            await asyncio.wait_for(h.task, WAIT_S)  # type: ignore[arg-type]
        connections = len(emu.sessions)
    assert h.session.end_reason == "dropped"
    assert connections == 1


async def test_say_past_its_timeout_raises_timeout_error(tmp_path: Path) -> None:
    """The service holds the goodbye's response.created: say gives up at its deadline."""
    faults = Faults(delay_ms=3000, delay_types=("response.created",))
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False, faults=faults) as emu:
        h = build(emu.endpoint, tmp_path)
        try:
            await _ready(h)
            with pytest.raises(asyncio.TimeoutError):
                await h.session.say(GOODBYE, timeout=0.3)
        finally:
            await h.stop()
