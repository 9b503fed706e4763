"""The user's side of a live session: microphone or WAV audio, and typed lines.

Audio goes out as ``input_audio_buffer.append``, one per chunk the source hands over. Typed
lines never wait for anything: each is at once an answer (to the open approval question), a
``q`` (end after the reply already asked for), or a turn queued in order; a separate task
sends queued turns when the turn state says the previous reply has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from runner.errors import VlrunError
from runner.live import shape
from runner.live.audio import Player, Source, level_dbfs
from runner.live.images import (
    ImageError,
    check_image,
    image_message,
    parse_image_command,
    read_image,
)
from runner.live.images import describe as describe_image
from runner.live.lines import TypedTurns
from runner.live.outbox import Outbox
from runner.live.settings import SessionSettings
from runner.live.state import Drop, Life, RawEvent, TaskGroup, TurnState, log
from runner.live.transcript import Transcript

#: One typed turn at most: a page of text is a few thousand characters; a megabyte pasted by
#: mistake would cost the service (and the emulator) far more than it is worth.
MAX_TYPED_CHARS = 32 * 1024

_QUIT_WORDS = frozenset({"q", "quit", "exit", "/q", "/quit"})
TOOL_GRACE_S = 0.3  # after q, how long tools that are all that is left may still finish
#: A push-to-talk turn shorter than this is a slip of the key, not a turn (the service refuses
#: commits of under 100 ms anyway).
MIN_TALK_MS = 200


class Inputs:
    """The user's side of one conversation: streams the source and takes typed lines.

    It reads and changes the turn state, sends through the outbox, and calls back into the
    session only for the barge-in (``barge_in``: the same path as the service's
    ``speech_started``); ``current_session`` is the session.update now in force (a flow
    node's replaces the profile's).
    """

    #: Push-to-talk: the console key that toggles talking ("enter": an empty line toggles).
    talk_key: str = "enter"
    #: Push-to-talk: say each toggle on the console (the terminal console has a status line).
    talk_notices: bool = True

    def __init__(
        self,
        settings: SessionSettings,
        *,
        life: Life,
        turn: TurnState,
        outbox: Outbox,
        tasks: TaskGroup,
        transcript: Transcript,
        player: Player,
        source: Source | None,
        current_session: Callable[[], Mapping[str, Any]],
        barge_in: Callable[[RawEvent], Awaitable[None]],
        interrupt: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.settings = settings
        self.life = life
        self.turn = turn
        self.outbox = outbox
        self.tasks = tasks
        self.transcript = transcript
        self.player = player
        self.source = source
        self.current_session = current_session
        self.barge_in = barge_in
        # a person at a terminal: a typed turn interrupts the reply in progress (None: queued)
        self.interrupt = interrupt
        self.typed = TypedTurns(on_first_drop=self._turns_dropped)
        #: Push-to-talk state: "off", "on" (mic audio is sent), "ending" (commit next chunk).
        self.talk_state = "off"
        self._talk_ms = 0.0  # audio appended in this push-to-talk turn
        self._talks = 0
        self._held: tuple[str, threading.Event] | None = None  # the stdin reader's, if full

    def stop(self) -> None:
        self.life.end()

    @property
    def manual_turns(self) -> bool:
        """Turn detection is off (``turn_detection: manual``): vlrun commits each turn."""
        session = self.current_session().get("session") or {}
        return shape.has(session, "turn_detection") and shape.turn_detection(session) is None

    @property
    def push_to_talk(self) -> bool:
        """Manual turns from a live microphone: the user says when a turn starts and ends."""
        return (
            self.manual_turns
            and self.source is not None
            and bool(getattr(self.source, "live", True))
        )

    def talk(self) -> None:
        """The talk key: start talking (interrupting a reply), or end the turn and send it."""
        if not self.push_to_talk or self.turn.closing:
            return
        if self.talk_state == "off":
            if not self.life.ready.is_set():
                self.transcript.notice("not connected yet; press again in a moment")
                return
            self.talk_state, self._talk_ms = "starting", 0.0
            self._talks += 1
            self.turn.speech_started()  # now, not when the task runs: the console shows it
            self.tasks.spawn(self._start_talking(), "vlrun-talk")
            if self.talk_notices:
                self.transcript.notice(f"talking… ({key_label(self.talk_key)} to send)")
        elif self.talk_state in ("starting", "on"):
            self.talk_state = "ending"  # the pump sends the last chunk, then commits
            self.turn.moved("talk key")

    async def _start_talking(self) -> None:
        # The same path as the service's speech_started: playback flushed, the reply
        # cancelled and its item truncated at what was heard, cancellable tools cancelled.
        await self.barge_in(RawEvent(item_id=f"talk_{self._talks}", audio_start_ms=0))

    async def commit_turn(self) -> None:
        """Manual turns from a non-live source (scenarios): the audio sent so far is a turn."""
        await self._commit_turn(self.turn.generation)

    async def _commit_turn(self, generation: int) -> None:
        """End of a manual turn: the audio so far is the user's turn; ask for the reply."""
        talk_ms = self._talk_ms if self.push_to_talk else getattr(self.source, "duration_ms", 0.0)
        self._talk_ms = 0.0
        if self.push_to_talk and talk_ms < MIN_TALK_MS:
            self.transcript.notice(f"under {MIN_TALK_MS / 1000:g} s of audio; nothing sent")
            self.turn.speaking = False
            self.turn.moved("talk too short")
            with contextlib.suppress(Drop):
                await self.outbox.send({"type": "input_audio_buffer.clear"}, generation)
            return
        self.life.heard_speech = True
        if not shape.transcription(self.current_session().get("session") or {}):
            # no transcript will come: keep the user's turn in the transcript all the same
            self.transcript.user(f"talk_{self._talks}", f"[speech {talk_ms / 1000:.1f} s]")
        self.turn.speech_stopped()  # the user's turn is over: a reply is owed
        self.life.user_turn_ended()
        try:
            await self.outbox.send({"type": "input_audio_buffer.commit"}, generation)
            await self.outbox.send({"type": "response.create"}, generation)
        except Drop:
            log.info("the connection dropped before the turn was committed")

    async def _push_to_talk_chunk(self, chunk: bytes, pending: bytearray) -> None:
        """One microphone chunk in push-to-talk: sent only while talking."""
        state = self.talk_state
        if state == "off":
            return
        generation = self.turn.generation
        if state == "starting":
            # nothing said before the key press belongs to this turn
            with contextlib.suppress(Drop):
                await self.outbox.send({"type": "input_audio_buffer.clear"}, generation)
            if self.talk_state == "starting":
                self.talk_state = "on"
        pending += chunk
        fmt = getattr(self.source, "fmt", self.player.fmt)
        if len(pending) >= fmt.bytes_for_ms(self.settings.send_ms) or self.talk_state == "ending":
            self._talk_ms += fmt.ms_for_bytes(len(pending))
            await self.outbox.append(bytes(pending))
            pending.clear()
        if self.talk_state == "ending":
            self.talk_state = "off"
            await self._commit_turn(generation)
            self.turn.moved("turn committed")

    async def input_pump(self) -> None:
        assert self.source is not None
        meter = self.transcript.meter_enabled or self.transcript.on_meter is not None
        live = getattr(self.source, "live", True)
        talk = self.push_to_talk
        # One append per chunk of at least send_ms: every event costs a JSON encode, a WebSocket
        # frame and a wake-up, and the service needs the audio, not the capture cadence.
        fmt = getattr(self.source, "fmt", self.player.fmt)
        batch = fmt.bytes_for_ms(self.settings.send_ms)
        pending = bytearray()
        if not live:
            await self.life.ready.wait()  # a file loses nothing: start once the session is ready
        try:
            async for chunk in self.source.frames():
                if self.life.stopping.is_set():
                    return
                if meter:
                    self.transcript.meter(level_dbfs(chunk))
                if not self.life.ready.is_set():
                    if live:
                        continue  # (re)connecting: live audio from now cannot be delivered
                    await self.life.ready.wait()
                if talk:
                    await self._push_to_talk_chunk(chunk, pending)
                    continue
                if not pending and len(chunk) >= batch:
                    await self.outbox.append(chunk)  # the usual case: one device chunk, one append
                    continue
                pending += chunk
                if len(pending) >= batch:
                    await self.outbox.append(bytes(pending))
                    pending.clear()
            if pending and self.life.ready.is_set() and not talk:
                await self.outbox.append(bytes(pending))  # the end of a file is audio too
            if self.manual_turns and not talk and self.life.ready.is_set():
                await self._commit_turn(self.turn.generation)  # --input: the file is the turn
        except VlrunError as exc:
            self.transcript.error(exc.message)
            self.life.exit_code = exc.exit_code
            self.stop()
            return
        self.life.input_done = True
        if self.settings.end_when_input_ends:
            await self._finish_after_reply()

    # ---------------------------------------------------------------- typed lines

    def feed_line(self, line: str | None) -> None:
        """Hand the session one console line (None: end of input), as the stdin reader does.

        Each line is classified at once and never waits for the turn: an answer to the open
        question, ``q``, the talk key, or a turn queued for :meth:`_turn_sender` (at most
        :data:`~runner.live.lines.MAX_QUEUED_TURNS`; past that the oldest gives way).
        """
        if self.typed.ended:
            return  # nothing is read after the end of input
        if line is None:
            self.typed.end()
            self._wake_sender()
            return
        text = line.strip()
        if self.turn.closing:
            return  # nothing after a q is sent
        if text.lower() in _QUIT_WORDS:
            self.turn.close()  # now: the lines after it are not turns
            while self.turn.answer("n"):  # q declines the questions still open
                pass
            self.tasks.spawn(self.quit(), "vlrun-quit")
            return
        if self.turn.answer(text):
            return
        if not text and self.push_to_talk and self.talk_key == "enter":
            self.talk()
            return
        if text and is_image_command(text) and not self._image_ok(text):
            return  # said on the console; nothing is queued
        if text:
            if self.interrupt is not None and self.reply_in_progress():
                self.tasks.spawn(self.interrupt(), "vlrun-typed-barge-in")
            self.typed.put(text)
            self._wake_sender()

    def reply_in_progress(self) -> bool:
        """A reply is under way: being said, played, or its tools running. (One asked for and
        not begun yet is not: a line typed ahead of it waits for it, as a script's would.)"""
        turn = self.turn
        active = turn.active
        return (
            (active is not None and not active.muted)
            or bool(turn.calls)
            or self.player.pending_ms() > 0
        )

    def _image_ok(self, line: str) -> bool:
        """``/image PATH [question]``: whether the image may be sent (else the error is shown).
        The file is read again when the turn goes out, so a queued turn holds no image."""
        parsed = parse_image_command(line)
        if parsed is None or not parsed[0]:
            self.transcript.error("/image needs a file: /image PATH [question]")
            return False
        try:
            read_image(Path(parsed[0]))
        except ImageError as exc:
            self.transcript.error(exc.message + (f" ({exc.hint})" if exc.hint else ""))
            return False
        return True

    def _turns_dropped(self, bound: int) -> None:
        self.transcript.warning(
            f"more than {bound} typed turns are waiting for replies; "
            "the oldest waiting ones are dropped"
        )

    def waiting_turns(self) -> tuple[str, ...]:
        """Typed turns not sent yet, oldest first."""
        return self.typed.waiting()

    def take_line(self, line: str | None, taken: threading.Event) -> None:
        """The stdin reader's way in (on the loop): a line is taken at once, or held while
        the queue is full and taken when a turn goes out; the reader waits on ``taken`` and
        reads no further meanwhile, so a long script loses no line to the bound."""
        if line is not None and self.typed.full() and not self.life.stopping.is_set():
            self._held = (line, taken)
            return
        self.feed_line(line)
        taken.set()

    def next_turn(self) -> str | None:
        """The oldest typed turn (None: the end of input); a line the reader holds moves in."""
        text = self.typed.pop()
        if self._held is not None and not self.typed.full():
            (line, taken), self._held = self._held, None
            self.feed_line(line)
            taken.set()
        return text

    def release_reader(self) -> None:
        """The session ends: the stdin reader stops waiting (its held line is not a turn)."""
        if self._held is not None:
            (_, taken), self._held = self._held, None
            taken.set()

    def _wake_sender(self) -> None:
        self.turn.moved("line typed")

    async def turn_sender(self) -> None:
        """Typed turns in order, each once the previous reply has ended."""
        while True:
            await self.turn.until(lambda: bool(self.typed) and self._sender_may_go())
            text = self.next_turn()
            if text is None:  # end of input: after the turns typed before it
                if self.source is None:
                    self.life.input_done = True
                    if self.settings.end_when_input_ends:
                        await self._finish_after_reply()
                return
            await self._send_turn(text)

    def _sender_may_go(self) -> bool:
        return self.typed.next_is_end() or self.turn.between_turns()

    async def quit(self) -> None:
        """q: the turns typed before it and the reply owed are part of the conversation, so
        they are heard (and logged) first; tools still running are not waited for."""
        if self.typed or self.turn.reply_owed():
            # Lines are turns in order: a reply already asked for is heard before the end.
            self.transcript.notice("ending after this reply (Ctrl+C ends now)")
            if self.source is not None:
                self.source.close()  # no new turns from the microphone meanwhile
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.finish_timeout_s
            tools_since: float | None = None
            heard = len(self.transcript.turns)
            while (self.typed or self.turn.reply_owed()) and loop.time() < deadline:
                if len(self.transcript.turns) != heard:  # progress: each reply gets the wait
                    heard = len(self.transcript.turns)
                    deadline = loop.time() + self.settings.finish_timeout_s
                if self._only_tools_left():
                    # only tools are left: they get a moment, not a wait
                    tools_since = loop.time() if tools_since is None else tools_since
                    if loop.time() - tools_since >= TOOL_GRACE_S:
                        break
                else:
                    tools_since = None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.turn.until(lambda: False), 0.05)
            left = len(self.typed)
            if left:
                self.transcript.warning(f"{left} typed turn(s) after a stalled reply were not sent")
            if not self.turn.calls:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.player.drain(), self.settings.finish_timeout_s)
        self.stop()

    def _only_tools_left(self) -> bool:
        """What is owed waits on tools still running, nothing else: their results are done
        being computed once their tasks end (then the outputs go out, a flow enters its next
        node, and that is part of the reply, waited for like one)."""
        turn = self.turn
        running = any(r.task is not None and not r.task.done() for r in turn.calls.values())
        return running and turn.active is None and not turn.requested

    async def send_text(self, text: str) -> None:
        """A typed user turn: a message item, then a response (after the previous reply ends)."""
        await self.turn.until(self.turn.between_turns)
        await self._send_turn(text)

    async def send_image(self, data: bytes, mime: str, text: str | None = None) -> None:
        """An image turn (and a question about it): checked now, sent after the reply before."""
        kind = check_image(data, mime)
        if text is not None and len(text) > MAX_TYPED_CHARS:
            raise ImageError(
                f"the text with the image is {len(text)} characters, over the "
                f"{MAX_TYPED_CHARS}-character limit of a typed turn"
            )
        await self.turn.until(self.turn.between_turns)
        await self._send_image_turn(data, kind, text)

    async def _send_image_turn(self, data: bytes, mime: str, text: str | None) -> None:
        generation = self.turn.generation
        self.turn.typed()  # before any await: no other turn can start meanwhile
        item_id = f"image_{len(self.transcript.turns)}_{int(time.time() * 1000)}"
        self.transcript.user(item_id, describe_image(data, mime, text))
        self.life.user_turn_ended("Enter -> first audio")
        try:
            await self.outbox.send(
                {"type": "conversation.item.create", "item": image_message(data, mime, text)},
                generation,
            )
            await self.outbox.send({"type": "response.create"}, generation)
        except Drop:
            log.info("the connection dropped before the image turn was sent")

    async def _send_command_image(self, line: str) -> None:
        """A queued ``/image`` line: the file is read now (it may have changed meanwhile)."""
        parsed = parse_image_command(line)
        try:
            if parsed is None or not parsed[0]:
                raise ImageError("/image needs a file: /image PATH [question]")
            data, mime = read_image(Path(parsed[0]))
        except ImageError as exc:
            self.transcript.error(exc.message + (f" ({exc.hint})" if exc.hint else ""))
            return
        await self._send_image_turn(data, mime, parsed[1])

    async def _send_turn(self, text: str) -> None:
        """Send one typed turn now (the caller has waited for a pause between turns)."""
        if is_image_command(text):
            await self._send_command_image(text)
            return
        if len(text) > MAX_TYPED_CHARS:
            self.transcript.warning(
                f"a typed turn of {len(text)} characters is over the {MAX_TYPED_CHARS}-character "
                "limit; not sent (put long material in the instructions or a tool)"
            )
            return
        from azure.ai.voicelive.models import InputTextContentPart, UserMessageItem

        generation = self.turn.generation
        self.turn.typed()  # before any await: no other turn can start meanwhile
        item_id = f"typed_{len(self.transcript.turns)}_{int(time.time() * 1000)}"
        self.transcript.user(item_id, text)
        self.life.user_turn_ended("Enter -> first audio")  # a typed turn has no end of speech
        try:
            item = UserMessageItem(content=[InputTextContentPart(text=text)])
            await self.outbox.send(
                {"type": "conversation.item.create", "item": item.as_dict()}, generation
            )
            await self.outbox.send({"type": "response.create"}, generation)
        except Drop:
            log.info("the connection dropped before the typed turn was sent")

    async def _finish_after_reply(self) -> None:
        """End of input: wait for the reply in progress, let it play out, then stop."""
        try:
            if self.source is not None:
                # A file sent with --fast can end before the service has even heard the
                # speech in it: the turn starts when it says so, not when sending stops.
                await asyncio.wait_for(
                    self.turn.until(lambda: self.life.heard_speech),
                    timeout=self.settings.finish_timeout_s,
                )
            await asyncio.wait_for(
                self.turn.until(self.turn.idle), timeout=self.settings.finish_timeout_s
            )
        except asyncio.TimeoutError:
            self.transcript.notice("input ended; no reply came, stopping")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.player.drain(), timeout=self.settings.finish_timeout_s)
        self.stop()


def is_image_command(text: str) -> bool:
    """A typed ``/image PATH [question]`` line (the console's way to send an image)."""
    low = text[:7].lower()
    return low == "/image" or low == "/image "


def key_label(key: str) -> str:
    """How a prompt_toolkit key name reads on screen: "enter" -> "Enter", "c-t" -> "Ctrl+T"."""
    if key.startswith("c-") and len(key) > 2:
        return "Ctrl+" + key[2:].upper() if len(key) == 3 else "Ctrl+" + key[2:].title()
    if key.startswith("s-") and len(key) > 2:
        return "Shift+" + key_label(key[2:])
    return key.upper() if len(key) <= 3 and key[:1] == "f" else key.title()


def start_line_reader(
    loop: asyncio.AbstractEventLoop, take: Callable[[str | None, threading.Event], None]
) -> None:
    """Read stdin (the caller has checked there is one) on a daemon thread (a blocking read
    cannot be cancelled) and hand the lines over.

    Each line is handed to ``take`` on the loop, and the thread waits until it is taken, so
    stdin is read as the conversation goes (a long script waits in the pipe, not in memory).
    """

    def hand_over(line: str | None) -> bool:
        taken = threading.Event()
        try:
            loop.call_soon_threadsafe(take, line, taken)
        except RuntimeError:
            return False  # the loop is gone: nothing more is taken
        taken.wait()
        return True

    def reader() -> None:
        stream = sys.stdin
        try:
            for line in stream:
                if not hand_over(line):
                    return
        except (OSError, ValueError):
            pass
        hand_over(None)

    threading.Thread(target=reader, name="vlrun-stdin", daemon=True).start()
