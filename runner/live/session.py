"""The live loop: one conversation over the SDK, across reconnects and session roll-overs.

Per connection: send the compiled ``session.update``, wait for ``session.updated`` (warn about
fields the service dropped or rewrote), then run three things side by side:
- the receive loop, which dispatches each server event through a type -> handler table;
- the input pump, which streams microphone / WAV frames as ``input_audio_buffer.append``;
- the line reader (typed turns in text mode, ``q`` to quit, answers to approval questions).

A dropped connection reconnects with backoff (full jitter, :class:`runner.aio.ReconnectPolicy`,
so calls that lost the same service do not come back in lockstep) within a budget per
conversation, and re-sends the session; the transcript lives
outside the connection, so no completed turn is lost or printed twice. Before ``expires_at``
the session rolls over the same way, between turns. Each connection is a new *generation*:
whatever an earlier one still had in flight (a tool call, an approval) can no longer send.

The turn itself (who speaks, what is owed, which tools run) is one
:class:`~runner.live.state.TurnState`; every task belongs to one
:class:`~runner.live.state.TaskGroup`. docs/live-session.md has the table of transitions.

Edges (a phone call, the browser) use the public surface only: :meth:`LiveSession.say`,
:meth:`LiveSession.finish_reply`, :meth:`LiveSession.forbid_reconnect`, :meth:`stop`,
:attr:`ready`, :meth:`feed_line`, :attr:`metrics`, :attr:`end_reason` and ``tasks.spawn``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from runner.aio import Deadline, ReconnectBudget, ReconnectPolicy
from runner.errors import ConfigError, ConnectError
from runner.live import shape
from runner.live.audio import Player, Source
from runner.live.connect import Target, open_connection
from runner.live.drift import session_differences
from runner.live.flow_steps import FlowDriver
from runner.live.inputs import Inputs, start_line_reader
from runner.live.outbox import Outbox
from runner.live.router import EventRouter, Handler
from runner.live.settings import CONFIGURE_TIMEOUT_S, SessionSettings, profile_settings
from runner.live.state import (
    Configuration,
    Drop,
    Handoff,
    Life,
    Metrics,
    Response,
    Rollover,
    TaskGroup,
    TurnState,
    log,
)
from runner.live.tool_calls import ToolRunner
from runner.live.transcript import ConsoleFailed, Transcript, session_logging
from runner.redact import clean_line

__all__ = [
    "CALL_RECONNECTS",
    "CONFIGURE_TIMEOUT_S",
    "END_REASONS",
    "LiveSession",
    "SessionSettings",
    "profile_settings",
]
Opener = Callable[..., contextlib.AbstractAsyncContextManager[Any]]
#: Assistant items whose received audio is remembered (barge-in truncation needs the one
#: playing, which is among the last few): a long call must not keep one entry per reply.
_ITEMS_KEPT = 32
#: Reconnection for a phone call: a caller hears silence while it lasts, so a few quick tries
#: (at most 0.25 + 0.5 + 1 + 1 s of waiting per drop) and eight per call, then the call ends.
CALL_RECONNECTS = ReconnectPolicy(base_s=0.25, cap_s=1.0, attempts=4, budget=8)
#: Why a session ended (:attr:`LiveSession.end_reason`).
END_REASONS = (
    "stopped",  # stop(), q, end of input: on purpose
    "connect_failed",  # the first connection could not be had
    "dropped",  # the connection ended and this conversation may not reconnect
    "reconnect_failed",  # a drop, then every attempt of the policy failed
    "reconnect_budget",  # the conversation used its whole reconnection budget
    "error",  # anything else (a refused session, an internal error)
)


class LiveSession:
    """Runs one conversation; :meth:`run` returns the exit code.

    This module holds the connection's life and the server events about speech and replies;
    the user's input is in :mod:`runner.live.inputs`, tool calls in :mod:`runner.live.tool_calls`.
    """

    def __init__(
        self,
        settings: SessionSettings | None = None,
        *,
        target: Target,
        credential: Any,
        transcript: Transcript,
        player: Player,
        source: Source | None = None,
        registry: Any = None,
        flow: Any = None,
        opener: Opener | None = None,
        rng: random.Random | None = None,
        **legacy: Any,
    ) -> None:
        """One settings object and the collaborators.

        ``legacy`` is the older spelling, every setting a keyword argument
        (:meth:`SessionSettings.of`); callers outside runner/live still use it.
        """
        if settings is None:
            settings = SessionSettings.of(**legacy)
        elif legacy:
            raise TypeError(f"settings given twice: {', '.join(sorted(legacy))}")
        self.settings = settings
        # how a connection is opened: the SDK's connect() unless an edge brings its own (a
        # SIP call's attached socket), called as open_connection is
        self.opener = opener or open_connection
        self.endpoint = settings.endpoint
        self.credential = credential
        # the session.update a new connection is configured with (a flow node's or an
        # agent's replaces the profile's as the conversation goes on), and its target
        self.config = Configuration(settings.session_update, target)
        self.transcript = transcript
        self.player = player
        self.source = source
        self.greeting = dict(settings.greeting) if settings.greeting is not None else None
        self.reconnect_policy = settings.reconnect_policy
        self.rng = rng  # None: the process's own (seeded by tests)
        self.reconnect_budget: ReconnectBudget = self.reconnect_policy.budget_for()
        self.end_reason: str | None = None  # one of END_REASONS once run() has returned
        self._one_connection = False  # forbid_reconnect(): a drop ends the conversation
        self.replay_history = (
            settings.replay_history and not target.agent_kwargs and not target.agent_query
        )
        self.metrics = Metrics()
        self.session_id = ""
        # approval questions need a person at a terminal (tests and embedders say so)
        self.interactive = (
            bool(settings.lines and sys.stdin is not None and sys.stdin.isatty())
            if settings.interactive is None
            else settings.interactive
        )
        # the parts, each given what it uses (docs/live-session.md draws them)
        self.life = Life()
        self.turn = TurnState(on_question=self.transcript.banner)
        self.outbox = Outbox(self.turn, self.transcript, self.metrics, settings.response_extras)
        self.tasks = TaskGroup(self.report)
        self.inputs = Inputs(
            settings,
            life=self.life,
            turn=self.turn,
            outbox=self.outbox,
            tasks=self.tasks,
            transcript=self.transcript,
            player=self.player,
            source=self.source,
            current_session=lambda: self.config.session_update,
            barge_in=self._on_speech_started,
            interrupt=self._typed_over_reply if settings.typed_barge_in else None,
        )
        self.flow = flow  # a runner.flows.FlowWalk: the profile's conversation flow, if any
        self.flow_driver = FlowDriver(
            flow,
            config=self.config,
            turn=self.turn,
            outbox=self.outbox,
            transcript=self.transcript,
            tasks=self.tasks,
            quit=self.inputs.quit,
        )
        self.tools = ToolRunner(
            settings,
            turn=self.turn,
            outbox=self.outbox,
            transcript=self.transcript,
            tasks=self.tasks,
            report=self.report,
            registry=registry,
            flow=self.flow_driver,
            interactive=self.interactive,
            session_id=lambda: self.session_id,
        )
        self._recv_task: asyncio.Task[None] | None = None
        self._speech_ms: dict[str, float] = {}  # user audio item -> speech start (audio ms)
        # assistant item -> ms of audio received, for the last _ITEMS_KEPT items
        self._received_ms: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._terminating = False  # a SIGTERM came: the session is ending like `q`
        self._cancel_sent_at = 0.0
        self._expires_at: float | None = None
        self._configured_once = False
        self._connection_worked = False  # the current connection got as far as session.updated
        self._words: dict[str, list[dict[str, Any]]] = {}  # item -> word timestamps so far
        self._animation: dict[str, dict[str, Any]] = {}  # response -> viseme/blendshape counts
        interim = self.config.session_update.get("session", {}).get("interim_response")
        self._interim = interim if isinstance(interim, Mapping) else None
        handlers: dict[str, Handler] = {
            "session.created": self._on_session_created,
            "session.updated": self._on_session_updated,
            "error": self._on_error,
            "warning": self._on_warning,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "conversation.item.input_audio_transcription.completed": self._on_user_transcript,
            "conversation.item.input_audio_transcription.failed": self._on_transcription_failed,
            "conversation.item.created": self._on_item_created,
            "response.created": self._on_response_created,
            "response.output_item.added": self._on_output_item_added,
            "response.audio.delta": self._on_audio_delta,
            "response.audio_transcript.delta": self._on_text_delta,
            "response.text.delta": self._on_text_delta,
            "response.audio_transcript.done": self._on_text_done,
            "response.text.done": self._on_text_done,
            # the same events by their GA names (api-version v1 composes the OpenAI GA events:
            # VoiceLive/v1/events.tsp), handled alike whichever a service sends
            "conversation.item.added": self._on_item_created,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio_transcript.delta": self._on_text_delta,
            "response.output_text.delta": self._on_text_delta,
            "response.output_audio_transcript.done": self._on_text_done,
            "response.output_text.done": self._on_text_done,
            "response.output_item.done": self._on_output_item_done,
            "response.audio_timestamp.delta": self._on_word_timestamp,
            "response.audio_timestamp.done": self._on_word_timestamps_done,
            "response.animation_viseme.delta": self._on_viseme,
            "response.animation_blendshapes.delta": self._on_blendshapes,
            "response.function_call_arguments.done": self.tools.on_call_arguments_done,
            "response.mcp_call.completed": self.tools.on_mcp_call,
            "response.mcp_call.failed": self.tools.on_mcp_call,
            "response.done": self._on_response_done,
            "response.invocation.delta": self._on_invocation_delta,
        }
        self.router = EventRouter(
            handlers, transcript=self.transcript, report=self.report, mask=self._mask_event
        )

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        """Connect, converse until the user quits or the input ends; reconnect on drops.

        Returns the exit code (that of an error that ended the session, else 0); raises
        :class:`ConnectError` when no connection can be had.
        """
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            if self.settings.handle_signals:
                loop.add_signal_handler(signal.SIGINT, self.stop)
                loop.add_signal_handler(signal.SIGTERM, self._terminate)
        try:
            with session_logging(self.transcript):
                if self.settings.lines:
                    if sys.stdin is None:
                        self.inputs.feed_line(None)
                    else:
                        start_line_reader(loop, self.inputs.take_line)
                self.tasks.spawn(self.inputs.turn_sender(), "vlrun-turns")
                if self.source is not None:
                    self.tasks.spawn(self.inputs.input_pump(), "vlrun-input")
                try:
                    await self._connections()
                    if self.life.failure is not None:
                        raise self.life.failure
                    self.end_reason = self.end_reason or "stopped"
                except Exception:
                    self.end_reason = self.end_reason or "error"
                    raise
                finally:
                    await self._close()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                if self.settings.handle_signals:
                    loop.remove_signal_handler(signal.SIGINT)
                    loop.remove_signal_handler(signal.SIGTERM)
        return self.life.exit_code

    def stop(self) -> None:
        """End the conversation now (Ctrl+C, an edge hanging up)."""
        self.life.end()

    def report(self, what: str, exc: BaseException) -> None:
        """An internal failure: one line on the console, the traceback in the technical log.

        A console that cannot be written is not one: the session ends with that error.
        """
        if isinstance(exc, ConsoleFailed):
            log.warning("%s: %s; the session ends", what, exc.message)
            self.life.failure = self.life.failure or exc
            self.stop()
            return
        log.error("%s failed", what, exc_info=exc)
        self.transcript.error(f"internal error in {what}: {type(exc).__name__}: {exc}")

    @property
    def session_update(self) -> dict[str, Any]:
        """The session.update a new connection is configured with now."""
        return self.config.session_update

    @property
    def target(self) -> Target:
        """Where the next connection goes (a flow's hand-over changes it)."""
        return self.config.target

    @target.setter
    def target(self, target: Target) -> None:
        self.config.target = target

    @property
    def tool_threads(self) -> Any:
        """The daemon threads sync tools run on (runner.plugins.ToolThreads)."""
        return self.tools.threads

    def still_running(self) -> list[str]:
        """Names of the tools still running (their calls, or their threads)."""
        return self.tools.still_running()

    def _mask_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        """What of a server event the trace may show (a flow's secret values are masked)."""
        return payload if self.flow is None else self.flow.mask_event(payload)

    def _terminate(self) -> None:
        """SIGTERM ends like `q` (the owed reply is heard and logged); a second one, at once."""
        if self._terminating:
            self.stop()
            return
        self._terminating = True
        self.tasks.spawn(self.inputs.quit(), "vlrun-sigterm")

    # ---------------------------------------------------------------- the public surface

    @property
    def max_reconnects(self) -> int:
        """Attempts per drop (0: none; the older name of ``reconnect_policy.attempts``)."""
        return 0 if self._one_connection else self.reconnect_policy.attempts

    @max_reconnects.setter
    def max_reconnects(self, attempts: int) -> None:
        self.reconnect_policy = dataclasses.replace(self.reconnect_policy, attempts=attempts)
        self.reconnect_budget = self.reconnect_policy.budget_for()

    @property
    def backoff_s(self) -> float:
        """The first retry's ceiling (the older name of ``reconnect_policy.base_s``)."""
        return self.reconnect_policy.base_s

    def forbid_reconnect(self) -> None:
        """This conversation has one connection: when it drops, the conversation ends
        (:attr:`end_reason` ``"dropped"``), as for a SIP call's attached socket."""
        self._one_connection = True

    async def say(self, text: str, timeout: float | None = None) -> None:
        """Speak ``text`` as the assistant, verbatim, and return once the user has heard it.

        Waits until no reply is in progress (never talks over one), sends ``response.create``
        with ``pre_generated_assistant_message``, waits for that response to end (said, cut
        off by the user, or refused by the service with an error event, which the transcript
        shows) and for the player to drain. Raises :class:`~runner.live.state.Drop` when the
        connection drops or the session ends first, and ``TimeoutError`` past ``timeout``
        seconds.
        """
        deadline = Deadline(timeout)
        turn = self.turn
        if not await turn.until(
            lambda: turn.stopped or (turn.connected and turn.idle()), deadline.left()
        ):
            raise asyncio.TimeoutError
        if turn.stopped:
            raise Drop("the session is ending; nothing more is said")
        generation, ended = turn.generation, turn.responses_ended
        # No await between the check above and _send's response_requested(): nothing else
        # can start a reply in between.
        await self.outbox.send(
            {
                "type": "response.create",
                "response": {
                    "pre_generated_assistant_message": {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "text", "text": text}],
                    }
                },
            },
            generation,
        )
        if not await turn.until(
            lambda: (
                turn.generation != generation
                or turn.stopped
                or (turn.responses_ended > ended and turn.active is None and not turn.requested)
            ),
            deadline.left(),
        ):
            raise asyncio.TimeoutError
        if turn.generation != generation or turn.stopped:
            raise Drop("the connection ended before the message was said")
        await deadline.run(self.player.drain())

    async def finish_reply(self, timeout: float | None = None) -> None:
        """Wait until the reply in progress (if any) has been said and heard.

        Returns at once when nothing is owed; a drop or the end of the session ends the wait
        too (nothing more will be said). ``TimeoutError`` past ``timeout`` seconds.
        """
        deadline = Deadline(timeout)
        turn = self.turn
        if not await turn.until(
            lambda: turn.stopped or not turn.connected or turn.idle(), deadline.left()
        ):
            raise asyncio.TimeoutError
        await deadline.run(self.player.drain())

    # ---------------------------------------------------------------- the user's side

    def feed_line(self, line: str | None) -> None:
        """Hand the session one console line (None: end of input), as the stdin reader does."""
        self.inputs.feed_line(line)

    def waiting_turns(self) -> tuple[str, ...]:
        """Typed turns not sent yet, oldest first."""
        return self.inputs.typed.waiting()

    def talk(self) -> None:
        """The talk key: start talking (interrupting a reply), or end the turn and send it."""
        self.inputs.talk()

    async def send_text(self, text: str) -> None:
        """A typed user turn: a message item, then a response (after the previous reply)."""
        await self.inputs.send_text(text)

    async def send_image(self, data: bytes, mime: str, text: str | None = None) -> None:
        """An image turn: ``data`` (PNG, JPEG, GIF or WebP, at most
        :data:`~runner.live.images.MAX_IMAGE_BYTES`) as an ``input_image`` content part, with
        ``text`` (a question about it) in the same user message, then a reply is asked for,
        after the reply in progress. Raises :class:`~runner.live.images.ImageError` (a
        VlrunError) at once for an unsupported type, a type the bytes contradict, or an
        oversized image."""
        await self.inputs.send_image(data, mime, text)

    async def commit_turn(self) -> None:
        """Manual turns from a non-live source (scenarios): the audio sent so far is a turn."""
        await self.inputs.commit_turn()

    @property
    def manual_turns(self) -> bool:
        """Turn detection is off (``turn_detection: manual``): vlrun commits each turn."""
        return self.inputs.manual_turns

    @property
    def push_to_talk(self) -> bool:
        """Manual turns from a live microphone: the user says when a turn starts and ends."""
        return self.inputs.push_to_talk

    @property
    def talk_key(self) -> str:
        """Push-to-talk: the console key that toggles talking ("enter": an empty line)."""
        return self.inputs.talk_key

    @talk_key.setter
    def talk_key(self, key: str) -> None:
        self.inputs.talk_key = key

    @property
    def talk_notices(self) -> bool:
        """Push-to-talk: say each toggle on the console."""
        return self.inputs.talk_notices

    @talk_notices.setter
    def talk_notices(self, on: bool) -> None:
        self.inputs.talk_notices = on

    @property
    def talk_state(self) -> str:
        """Push-to-talk: "off", "starting", "on" (mic audio is sent), "ending"."""
        return self.inputs.talk_state

    def received_ms(self, item_id: str) -> float:
        """Milliseconds of audio received for an assistant item (0: not among those kept)."""
        return self._received_ms.get(item_id, 0.0)

    def kept(self) -> dict[str, int]:
        """How many per-item records the session holds now (a long call must not grow them)."""
        return {"received_items": len(self._received_ms), "speech_starts": len(self._speech_ms)}

    def _quit(self) -> Awaitable[None]:
        """End after the turns typed so far and the reply owed (q, a flow's end node)."""
        return self.inputs.quit()

    # ---------------------------------------------------------------- reconnecting

    async def _connections(self) -> None:
        attempt = 0
        budget = self.reconnect_budget = self.reconnect_policy.budget_for()
        while not self.life.stopping.is_set():
            try:
                await self._connection(first=not self._configured_once)
                return  # ended on purpose
            except Handoff:
                config = self.config
                assert config.handoff_target is not None
                config.target, config.handoff_target = config.handoff_target, None
                self.replay_history = False  # the agent gets a summary, not the turns
                self.config.switch.clear()
                agent = self.config.target.agent_kwargs.get("agent_name", "?")
                self.transcript.notice(f"flow: handing the conversation to agent {agent}")
                attempt = 0
            except Rollover:
                self.metrics.rollovers += 1
                self.transcript.notice("session time limit near: continuing in a new session")
                attempt = 0
            except (Drop, ConnectError) as exc:
                if self._connection_worked:
                    attempt = 0  # count failures in a row, not drops over a whole conversation
                if not self._configured_once and isinstance(exc, ConnectError):
                    self.end_reason = "connect_failed"
                    raise  # cannot connect at all: one clear line, non-zero exit
                if self.life.stopping.is_set():
                    return
                policy = self.reconnect_policy
                if self._one_connection or policy.attempts <= 0:
                    self.end_reason = "dropped"
                    raise ConnectError(
                        f"the connection to {self.endpoint} ended ({exc}); "
                        "this conversation does not reconnect"
                    ) from None
                attempt += 1
                if attempt > policy.attempts:
                    self.end_reason = "reconnect_failed"
                    raise ConnectError(
                        f"lost the connection to {self.endpoint} and could not reconnect "
                        f"after {policy.attempts} attempts ({exc})"
                    ) from None
                if not budget.spend():
                    self.end_reason = "reconnect_budget"
                    raise ConnectError(
                        f"lost the connection to {self.endpoint} again ({exc}); this "
                        f"conversation has used all {policy.budget} of its reconnections",
                        hint="the service keeps dropping: check its status and the network",
                    ) from None
                delay = policy.delay(attempt, self.rng)
                self.metrics.reconnect_delays.append(delay)
                self.transcript.notice(
                    f"connection lost ({exc}); reconnecting in {delay:.2g} s (attempt {attempt})"
                )
                self.metrics.reconnects += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.life.stopping.wait(), delay)

    async def _close(self) -> None:
        """The end: nothing more is sent; tools still running are abandoned, and said so."""
        self.life.end()
        self.turn.stop()
        self.inputs.release_reader()  # the stdin reader waiting for room gives up
        for name in self.tools.still_running():
            self.transcript.notice(f"{name} still running; not waiting")
        stuck = await self.tasks.close(timeout=0.5)
        for task in stuck:
            log.warning("task %s did not end when cancelled; not waiting", task.get_name())
        if self.source is not None:
            self.source.close()

    @property
    def ready(self) -> asyncio.Event:
        """Set while a configured connection accepts input (cleared during reconnects)."""
        return self.life.ready

    @property
    def tools_running(self) -> bool:
        """Whether tool calls of this session are still being run."""
        return self.tools.running

    async def _connection(self, *, first: bool) -> None:
        """One connection from connect to close; raises Drop / Rollover to go round again."""
        self._connection_worked = False
        # A new connection starts between turns: whatever was in flight is gone (fenced).
        self.turn.connecting()
        self._speech_ms.clear()
        async with self.opener(
            self.config.target,
            self.endpoint,
            self.credential,
            api_version=self.settings.api_version,
        ) as conn:
            self.outbox.conn = conn
            recv = asyncio.create_task(self.router.receive(conn), name="vlrun-recv")
            try:
                await self._configure(recv)
                self._configured_once = self._connection_worked = True
                if self.config.handoff_events:  # the agent's first events: summary, first turn
                    events, self.config.handoff_events = self.config.handoff_events, []
                    for event in events:
                        await self.outbox.send(event)
                elif not first:
                    await self._replay(conn)
                    self.transcript.notice("reconnected; the conversation continues")
                elif self.greeting:
                    await self.outbox.send(self.greeting)
                self.turn.ready()
                self.life.ready.set()
                await self._receive_until_done(recv)
            finally:
                self.life.ready.clear()
                self.outbox.conn = None
                if not self.life.stopping.is_set():
                    self.turn.disconnected()
                await _cancel_and_wait(recv)
                self._finish_interrupted_text()

    async def _configure(self, recv: asyncio.Task[None]) -> None:
        updated = self.config.expect_update()
        await self.outbox.send(self.config.session_update)
        await asyncio.wait(
            {recv, updated},
            timeout=self.settings.configure_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if updated.done():
            updated.result()  # a refused session raises its ConfigError here
            return
        if recv.done() and not recv.cancelled() and isinstance(recv.exception(), Drop):
            raise recv.exception()  # type: ignore[misc]
        raise Drop(
            "the service did not confirm the session "
            f"(no session.updated within {self.settings.configure_timeout_s:g} s)"
        )

    async def _receive_until_done(self, recv: asyncio.Task[None]) -> None:
        stop = asyncio.create_task(self.life.stopping.wait(), name="vlrun-stopwait")
        switch = asyncio.create_task(self.config.switch.wait(), name="vlrun-handoff")
        waiters: set[asyncio.Task[Any]] = {recv, stop, switch}
        roll = None
        if self._expires_at is not None:
            roll = asyncio.create_task(self._rollover_due(), name="vlrun-rollover")
            waiters.add(roll)
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel_and_wait(stop)
            await _cancel_and_wait(switch)
            if roll is not None:
                await _cancel_and_wait(roll)
        if stop in done or self.life.stopping.is_set():
            return
        if switch in done:
            raise Handoff()
        if roll is not None and roll in done:
            raise Rollover()
        exc = recv.exception() if recv.done() and not recv.cancelled() else None
        if exc is not None:
            raise exc
        raise Drop("the service closed the connection")

    async def _rollover_due(self) -> None:
        assert self._expires_at is not None
        remaining = self._expires_at - time.time()
        margin = min(self.settings.rollover_margin_s, max(0.0, remaining) * 0.1)
        await asyncio.sleep(max(0.0, remaining - margin))
        # Wait for a pause between turns (bounded by the margin itself).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._between_turns(), timeout=max(0.5, margin / 2))

    async def _between_turns(self) -> None:
        await self.turn.until(
            lambda: self.turn.active is None and not self.turn.speaking and not self.turn.calls
        )

    async def _replay(self, conn: Any) -> None:
        """Give a fresh session the conversation so far, as text items (not re-printed)."""
        if not self.replay_history:
            return
        from azure.ai.voicelive.models import (
            AssistantMessageItem,
            InputTextContentPart,
            OutputTextContentPart,
            UserMessageItem,
        )

        for turn in self.transcript.turns[-40:]:
            if not turn.text or turn.role not in ("user", "assistant"):
                continue
            item = (
                UserMessageItem(content=[InputTextContentPart(text=turn.text)])
                if turn.role == "user"
                else AssistantMessageItem(content=[OutputTextContentPart(text=turn.text)])
            )
            await self.outbox.send({"type": "conversation.item.create", "item": item.as_dict()})

    # ---------------------------------------------------------------- handlers: session

    def _on_session_created(self, event: Any) -> None:
        session = getattr(event, "session", None)
        self.session_id = getattr(session, "id", "") or self.session_id

    def _on_session_updated(self, event: Any) -> None:
        session = event.session
        self.session_id = getattr(session, "id", "") or self.session_id
        received = _as_dict(session)
        for line in session_differences(self.config.session_update.get("session", {}), received):
            self.transcript.warning(line)
        expires = getattr(session, "expires_at", None)
        if isinstance(expires, datetime):
            self._expires_at = expires.timestamp()
        elif isinstance(expires, (int, float)) and expires > 0:
            self._expires_at = float(expires)
        self.transcript.conv_note(f"session {self.session_id} configured")
        updated = self.config.updated
        if updated is not None and not updated.done():
            updated.set_result(session)

    def _on_error(self, event: Any) -> None:
        err = getattr(event, "error", None)
        code = getattr(err, "code", None) or getattr(err, "type", None) or "error"
        message = getattr(err, "message", "") or ""
        updated = self.config.updated
        if (
            updated is not None
            and not updated.done()
            and getattr(err, "type", None) == "invalid_request_error"
        ):
            # The session itself was refused: reconnecting would send the same settings again
            # and wait for ever, so the run ends here, naming the setting.
            where = getattr(err, "param", None)
            updated.set_exception(
                ConfigError(
                    f"the service refused the session: {clean_line(message)}"
                    + (f" ({where})" if where else ""),
                    hint="fix the profile setting; `vlrun check PROFILE` catches most of these",
                )
            )
            return
        if self.turn.requested and "response" in str(code):
            self.turn.response_refused()  # that response.create will not be created
        if code == "response_cancel_not_active" and time.monotonic() - self._cancel_sent_at < 5:
            log.info("server: %s (the service had already ended the response)", code)
            return
        self.transcript.error(f"service error {code}: {message}")

    def _on_warning(self, event: Any) -> None:
        warning = getattr(event, "warning", None)
        message = _message_of(warning)
        code = getattr(warning, "code", None)
        self.transcript.warning(f"service warning{f' {code}' if code else ''}: {message}")
        self.transcript.conv_note(f"service warning: {message}")

    # ---------------------------------------------------------------- handlers: user speech

    async def _on_speech_started(self, event: Any, arrived: float | None = None) -> None:
        t0 = arrived if arrived is not None else time.perf_counter()
        self.life.heard_speech = True
        self.turn.speech_started()
        self._speech_ms[str(event.item_id)] = float(getattr(event, "audio_start_ms", 0) or 0)
        await self._interrupt_reply(t0)

    async def _typed_over_reply(self) -> None:
        """A line typed at the terminal during a reply: the same cut as speech (playback
        stopped where it is, the response cancelled and its item truncated at what was heard,
        cancellable tools cancelled). The line itself is queued, and goes out once the cut
        reply has ended."""
        await self._interrupt_reply(time.perf_counter(), why="typed line")

    async def _interrupt_reply(self, t0: float, why: str = "barge-in") -> None:
        """Cut the reply in progress: silence first, then tell the service what was heard."""
        was_playing = self.player.pending_ms() > 0
        item_id, played_ms = self.player.interrupt()  # silence first, talk to the service after
        if was_playing:
            self.metrics.silence_latency.append(time.perf_counter() - t0)
            self.metrics.barge_in_arrivals.append(t0)
        active = self.turn.active
        interrupted = False
        if active is not None and not active.muted:
            active.muted = True
            interrupted = True
            self._cancel_sent_at = time.monotonic()
            await self.outbox.send({"type": "response.cancel"})
        still_generating = active is not None and item_id in active.items
        if item_id is not None and (
            still_generating or played_ms + 1 < self._received_ms.get(item_id, 0.0)
        ):
            # Tell the service what the user actually heard, so the model's memory matches.
            interrupted = True
            await self.outbox.send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": int(played_ms),
                }
            )
            log.info(
                "barge-in: truncated %s at %d ms of %.0f ms",
                item_id,
                played_ms,
                self._received_ms.get(item_id, 0.0),
            )
        if interrupted:
            self._finish_interrupted_text()
            self.transcript.event("barge-in", f"played {played_ms} ms")
            if why != "barge-in":
                log.info("%s: the reply was cut at %d ms played", why, played_ms)
        self.tools.interrupt()

    def _on_speech_stopped(self, event: Any) -> None:
        if not shape.transcription(self.config.session_update.get("session", {})):
            # No transcription configured: still keep the user's turn in the transcript.
            start = self._speech_ms.pop(str(event.item_id), None)
            end = float(getattr(event, "audio_end_ms", 0) or 0)
            length = f" {(end - start) / 1000:.1f} s" if start is not None and end > start else ""
            self.transcript.user(str(event.item_id), f"[speech{length}]")
        self._speech_ms.pop(str(event.item_id), None)  # only this turn's start was needed
        self.life.user_turn_ended()
        self.turn.speech_stopped()

    def _on_user_transcript(self, event: Any) -> None:
        text = (getattr(event, "transcript", "") or "").strip()
        self.transcript.user(str(event.item_id), text or "(inaudible)")

    def _on_transcription_failed(self, event: Any) -> None:
        err = getattr(event, "error", None)
        message = _message_of(err)
        self.transcript.warning(f"could not transcribe your speech: {message}")
        self.transcript.conv_note(f"user speech not transcribed ({event.item_id}): {message}")

    async def _on_item_created(self, event: Any) -> None:
        item = event.item
        if getattr(item, "id", None):
            self.flow_driver.item_created(str(item.id))
        if getattr(item, "type", None) == "mcp_approval_request":
            # A task, like tool calls: a person may take a while to answer, and meanwhile the
            # receive loop must go on (it has to see the asking response end).
            self.tools.start_approval(item)

    # ---------------------------------------------------------------- handlers: responses

    def _on_response_created(self, event: Any) -> None:
        self.turn.response_created(Response(str(event.response.id)))

    def _on_output_item_added(self, event: Any) -> None:
        resp = self.turn.responses.get(str(event.response_id))
        if resp is not None:
            if self._interim is not None:
                # something follows a message in the same response: that message was the interim
                for earlier, kind in resp.items.items():
                    if kind == "message":
                        self.transcript.interim(earlier)
            resp.items[str(event.item.id)] = str(getattr(event.item, "type", ""))

    def _on_audio_delta(self, event: Any, arrived: float | None = None) -> None:
        resp = self.turn.responses.get(str(event.response_id))
        if resp is not None and resp.muted:
            return
        pcm = event.delta or b""
        if isinstance(pcm, str):
            pcm = base64.b64decode(pcm)
        item_id = str(event.item_id)
        self.player.write(item_id, pcm)
        now = time.perf_counter()
        if arrived is not None:
            self.metrics.write_latency.append(now - arrived)
        received = self._received_ms
        if item_id in received:
            received[item_id] += self.player.fmt.ms_for_bytes(len(pcm))
        else:
            received[item_id] = self.player.fmt.ms_for_bytes(len(pcm))
            if len(received) > _ITEMS_KEPT:
                received.popitem(last=False)  # long since played (or cut off)
        if resp is not None and not resp.first_audio:
            resp.first_audio = True
            if self.life.eos_at is not None:
                latency = now - self.life.eos_at
                self.metrics.turn_latency.append(latency)
                self.transcript.latency(latency * 1000, self.life.eos_label)
                self.life.eos_at = None

    def _on_text_delta(self, event: Any) -> None:
        resp = self.turn.responses.get(str(event.response_id))
        if resp is not None and resp.muted:
            return
        self.transcript.assistant_delta(str(event.item_id), event.delta or "")

    def _on_text_done(self, event: Any) -> None:
        resp = self.turn.responses.get(str(event.response_id))
        text = getattr(event, "transcript", None) or getattr(event, "text", None) or ""
        if resp is not None and resp.muted:
            self.transcript.assistant_done(str(event.item_id), "", interrupted=True)
            return
        item_id = str(event.item_id)
        if self._is_interim(resp, item_id, text):
            self.transcript.interim(item_id)
        self.transcript.assistant_done(item_id, text)

    def _on_output_item_done(self, event: Any) -> None:
        item = event.item
        if getattr(item, "type", None) != "message" or getattr(item, "role", None) != "assistant":
            return
        resp = self.turn.responses.get(str(event.response_id))
        muted = resp is not None and resp.muted
        texts = [
            getattr(p, "transcript", None) or getattr(p, "text", None) or ""
            for p in (getattr(item, "content", None) or [])
        ]
        text = " ".join(t for t in texts if t)
        if not muted and self._is_interim(resp, str(item.id), text):
            self.transcript.interim(str(item.id))
        self.transcript.assistant_done(
            str(item.id),
            "" if muted else text,
            interrupted=muted or getattr(item, "status", "") == "incomplete",
        )

    def _is_interim(self, resp: Response | None, item_id: str, text: str) -> bool:
        """Whether a reply is an interim response (docs/runner.md, "Server events ...").

        The wire does not say so: with ``interim_response`` configured, a static text said
        verbatim is one, and so is a message said after a tool call of the same response.
        A message that a later item follows is marked afterwards (``_on_output_item_added``).
        """
        config = self._interim
        if config is None:
            return False
        texts = [str(t).strip() for t in config.get("texts") or ()]
        if text.strip() and text.strip() in texts:
            return True
        others = resp.items.items() if resp is not None else ()
        return any(k != item_id and kind in ("function_call", "mcp_call") for k, kind in others)

    # ---------------------------------------------------------------- handlers: speech marks

    def _on_word_timestamp(self, event: Any) -> None:
        self._words.setdefault(str(event.item_id), []).append(
            {
                "text": event.text,
                "offset_ms": event.audio_offset_ms,
                "duration_ms": event.audio_duration_ms,
            }
        )

    def _on_word_timestamps_done(self, event: Any) -> None:
        item_id = str(event.item_id)
        self.transcript.word_timestamps(item_id, self._words.pop(item_id, []))

    def _animation_counts(self, event: Any) -> dict[str, Any]:
        return self._animation.setdefault(
            str(event.response_id),
            {
                "visemes": 0,
                "viseme_ids": set(),
                "last_viseme_ms": 0,
                "blendshape_events": 0,
                "blendshape_frames": 0,
            },
        )

    def _on_viseme(self, event: Any) -> None:
        counts = self._animation_counts(event)
        counts["visemes"] += 1
        counts["viseme_ids"].add(event.viseme_id)
        counts["last_viseme_ms"] = max(counts["last_viseme_ms"], event.audio_offset_ms or 0)

    def _on_blendshapes(self, event: Any) -> None:
        counts = self._animation_counts(event)
        counts["blendshape_events"] += 1
        frames = event.frames
        # frames are lists of values, or (the SDK allows it) one encoded string
        counts["blendshape_frames"] += len(frames) if isinstance(frames, list) else 0

    def _on_response_done(self, event: Any) -> None:
        response = event.response
        status = _val(getattr(response, "status", ""))
        counts = self._animation.pop(str(response.id), None)
        if counts is not None:
            ids = sorted(counts.pop("viseme_ids"))
            self.transcript.trace_note(
                {"type": "animation", "response_id": str(response.id), **counts, "viseme_ids": ids}
            )
        resp = self.turn.response_done(str(response.id), status)
        details = getattr(response, "status_details", None)
        if status == "failed":
            err = getattr(details, "error", None)
            self.transcript.error(
                f"the response failed: {getattr(err, 'message', None) or err or 'no details'}"
            )
        if resp is not None and resp.calls and status != "cancelled":
            self.tools.start(resp.calls)

    def _on_invocation_delta(self, event: Any) -> None:
        """A hosted agent's non-speech event, passed through by the service as it is (SDK 1.3.0
        ``response.invocation.delta``): one status line and a conversation-log line; the trace
        has the whole event like any other."""
        delta = event.delta
        kind = str(delta.get("type") or "event") if isinstance(delta, Mapping) else "event"
        said = _invocation_summary(delta)
        self.transcript.notice(f"hosted agent: {kind}{f': {said}' if said else ''}")
        self.transcript.conv_note(f"hosted agent event {kind}: {said or '(no text)'}")

    def _finish_interrupted_text(self) -> None:
        """Record what the user saw of a reply that was cut off (barge-in or a drop)."""
        streaming = self.transcript.streaming
        if streaming is not None:
            self.transcript.assistant_done(streaming, "", interrupted=True)


# -------------------------------------------------------------------- helpers


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel a helper task and wait until it has ended; our own cancellation propagates."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: its outcome was handled by whoever awaited it


def _invocation_summary(delta: Any, limit: int = 160) -> str:
    """One line of a hosted agent's event: its text, message or delta field, else its keys."""
    if not isinstance(delta, Mapping):
        return clean_line(str(delta))[:limit] if delta else ""
    for key in ("text", "message", "delta", "status", "name"):
        value = delta.get(key)
        if isinstance(value, str) and value.strip():
            text = clean_line(value.strip())
            return text if len(text) <= limit else text[: limit - 1] + "…"
    keys = sorted(str(k) for k in delta if k != "type")
    return f"fields {', '.join(keys)}" if keys else ""


def _message_of(detail: Any) -> str:
    """The message of a server event's error or warning, safe for one console line."""
    return clean_line(str(getattr(detail, "message", None) or detail or "no details"))


def _val(value: Any) -> str:
    """Wire string of an SDK enum or plain string (``str()`` of an enum is its class name)."""
    return str(getattr(value, "value", value) or "")


def _as_dict(model: Any) -> dict[str, Any]:
    if isinstance(model, Mapping):
        return dict(model)
    as_dict = getattr(model, "as_dict", None)
    if as_dict is None:
        return {}
    try:
        return dict(as_dict())
    except Exception:  # a model the SDK cannot serialise back; the trace is best-effort
        return {"type": str(getattr(model, "type", "?"))}
