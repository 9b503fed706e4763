"""One simulated call, from ring to hang-up: the turns, the summary lines, the exit code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runner.aio import Deadline, cancel_and_wait
from runner.carrier.line import Heard, Line
from runner.carrier.voice import Turn, speech, split_tail, write_wav
from runner.errors import EXIT_INVALID, EXIT_OK, ConnectError, VlrunError

SPEAK_PAUSE_MS = 600  # silence after a caller's words: the server's VAD ends the turn on it


class CallRefused(VlrunError):
    """The call was refused or busy (exit 1), with the reason the server gave."""

    exit_code = EXIT_INVALID


class Unreachable(ConnectError):
    """The server (or the emulator) cannot be reached: exit 3."""


@dataclass
class RingOptions:
    turns: list[Turn] = field(default_factory=list)
    record: Path | None = None
    caller: str = "+15550199999"
    called: str = "+15550100000"
    connect_timeout_s: float = 10.0
    first_audio_s: float = 15.0  # a reply that has not started by then is "no reply"
    greeting_s: float = 3.0  # how long to listen for a greeting before the first turn
    quiet_ms: float = 800.0  # a reply has finished after this much silence
    turn_s: float = 60.0  # the longest a reply may take
    out: Callable[[str], None] = print


class Call(Protocol):
    """A provider's side of one answered call."""

    line: Line | None

    async def dtmf(self, digits: str) -> None: ...
    async def say_text(self, text: str) -> str: ...
    async def hang_up(self) -> None: ...


def unreachable(url: str, exc: BaseException) -> Unreachable:
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return Unreachable(
        f"cannot reach {url}: {reason}",
        hint="is `vlrun serve --serve-file` running there? (check the host and --port)",
    )


async def converse(call: Call, options: RingOptions) -> int:
    """Speak the turns in order, each after the previous reply, then hang up."""
    out = options.out
    line = call.line
    clock: asyncio.Task[Any] | None = None
    try:
        if line is not None:
            clock = asyncio.create_task(line.run(), name="vlrun-ring-clock")
            greeting = await line.listen(options.greeting_s, options.quiet_ms, options.turn_s)
            if greeting.first_ms is not None:
                out(greeting.line(0, "greeting"))
        for number, turn in enumerate(options.turns, 1):
            if line is not None and line.closed.is_set():
                out(f"turn {number} ({turn.describe()}): not said: the server hung up")
                break
            heard = await take_turn(call, line, turn, options)
            out(heard.line(number, turn.describe()))
            if heard.ended:
                break
        if line is None or not line.closed.is_set():
            await call.hang_up()
            out("hung up")
        else:
            out("the server hung up")
    finally:
        if clock is not None:
            if line is not None:
                line.hung_up()
            await cancel_and_wait(clock, timeout=2)
        if line is not None and options.record is not None:
            write_wav(options.record, bytes(line.record), line.rate)
            out(f"recorded {len(line.record) / line.rate / 2:.1f} s to {options.record}")
    return EXIT_OK


async def take_turn(call: Call, line: Line | None, turn: Turn, options: RingOptions) -> Heard:
    """One caller turn on an answered call: say it (or press the keys), then hear the reply
    to its end (a text turn on a call without media: what became of it)."""
    deadline = Deadline(options.turn_s)
    if line is None:  # no media (Voice Live SIP through the emulator): a text turn
        said = await call.say_text(turn.value)
        return Heard(0.0, None, said=said)
    if turn.kind == "dtmf":
        line.expect_reply()
        for key in turn.value:
            await call.dtmf(key)
    else:
        words, quiet = split_tail(await speech(turn, line.rate))
        if not await line.say(words, deadline):
            return Heard(0.0, None, ended=True)
        line.expect_reply()
        # the caller's trailing silence belongs to the wait for the reply, not to the words
        line.mouth += quiet + bytes(line.rate * 2 * SPEAK_PAUSE_MS // 1000)
    since = time.monotonic()
    return await line.reply(
        since, options.first_audio_s, options.quiet_ms, deadline.left() or options.turn_s
    )
