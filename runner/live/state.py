"""What the parts of a live session share: the turn state, the session's tasks, its life.

:class:`~runner.live.session.LiveSession` composes its parts (docs/live-session.md draws
them), each given in its constructor what it uses. None of them keeps turn facts of its own:
they all read and change one :class:`TurnState`, whose phase is one of :class:`Phase` (the
table of transitions is in docs/live-session.md). Console input, tool tasks and approvals
talk to the state, never to each other, so none can block another. :class:`Life` says
whether the conversation is usable or ending; :class:`Configuration` what a new connection
is configured with.

Every task the session starts belongs to its :class:`TaskGroup`: an exception is reported on
the console and in the technical log, and cancellation always propagates.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.aio import Changes
from runner.errors import VlrunError

log = logging.getLogger("vlrun.live.session")

#: How many of each timing a session keeps: the newest (a benchmark reads far fewer; a call
#: that lasts hours must not keep one float per audio delta for its whole length).
SAMPLES_KEPT = 4096
DELTA_SAMPLES_KEPT = 512  # of a per-delta timing (DeltaSamples): at most 32 KB a call


class Samples(list):  # type: ignore[type-arg]
    """A list of the newest timings: past ``2 * keep`` it drops the oldest ``keep``.

    Still a list (benchmarks copy it, tests compare it), trimmed in one slice now and then
    so an append stays O(1) amortised.
    """

    keep = SAMPLES_KEPT

    def append(self, value: float) -> None:
        super().append(value)
        if len(self) > 2 * self.keep:
            del self[: len(self) - self.keep]


class DeltaSamples(Samples):
    """Samples of a per-delta timing (10-50 a second of reply, not a few a turn): fewer kept.
    At 4,096 a long call held a quarter of a megabyte of them (a float and its slot are 32
    bytes), more than the rest of the call; a benchmark's percentiles need far fewer."""

    keep = DELTA_SAMPLES_KEPT


@dataclass
class Metrics:
    """Timings the benchmark reads (seconds, perf_counter based), the newest of each kept."""

    write_latency: Samples = field(default_factory=DeltaSamples)  # audio delta -> write done
    silence_latency: Samples = field(
        default_factory=Samples
    )  # speech_started received -> playback silenced
    turn_latency: Samples = field(default_factory=Samples)  # end of speech -> first audio written
    barge_in_arrivals: Samples = field(default_factory=Samples)  # speech_started while playing
    reconnect_delays: Samples = field(default_factory=Samples)  # backoff drawn before each retry
    reconnects: int = 0
    rollovers: int = 0
    sent_events: dict[str, int] = field(default_factory=dict)


@dataclass
class Response:
    id: str
    items: dict[str, str] = field(default_factory=dict)  # item id -> item type
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (name, call_id, arguments)
    muted: bool = False  # barge-in: drop the rest of its audio and text
    first_audio: bool = False


@dataclass(eq=False)
class ToolRun:
    """One function call being run: which connection asked for it, and its task."""

    name: str
    call_id: str
    arguments: str
    generation: int  # the connection that issued the call_id
    cancellable: bool = True  # tools[].cancel_on_barge_in
    task: asyncio.Task[Any] | None = None
    interrupted: bool = False  # cancelled by a barge-in (the model is told so)


class Drop(Exception):
    """The connection ended without us asking (network, server fault)."""


class Rollover(Exception):
    """The session is near its time limit: open a fresh one."""


class Handoff(Exception):
    """A flow node hands the conversation to a Foundry agent: reconnect bound to it."""


class Fenced(Drop):
    """A send for an earlier connection: dropped, never sent on the current one."""


class Phase(enum.Enum):
    """Where the conversation is. Derived from the turn facts after every transition."""

    LISTENING = "listening"
    USER_SPEAKING = "user speaking"
    AWAITING_RESPONSE = "awaiting response"
    RESPONDING = "responding"
    RUNNING_TOOLS = "running tools"
    AWAITING_APPROVAL = "awaiting approval"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"


class RawEvent(dict):  # type: ignore[type-arg]
    """An event read like an SDK model, a missing field being None: a server event's JSON
    object, or one vlrun makes itself (push-to-talk's speech start). Nested objects read the
    same way (``event.response.status_details.error``), in lists too."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        value = self.get(name)
        if type(value) is dict:
            return RawEvent(value)
        if type(value) is list:
            return [RawEvent(v) if type(v) is dict else v for v in value]
        return value


@dataclass(eq=False)
class Question:
    text: str
    answer: asyncio.Future[str]


class TurnState:
    """The one owner of the turn: every server event and console action is a method here.

    Each method changes the facts, recomputes :attr:`phase` and wakes whoever waits on the
    state (:meth:`until`). Nothing here awaits, so a transition is atomic on the event loop.
    """

    def __init__(self, on_question: Callable[[str], None] | None = None) -> None:
        self.generation = 0  # connection number; a reconnect fences the earlier ones
        self.connected = False  # a configured connection accepts events
        self.closing = False  # q: finish the reply owed, then stop
        self.stopped = False
        self.speaking = False  # the service hears the user
        self.owed = False  # the user's turn waits for its answer
        self.requested = 0  # response.create sent, response.created not seen yet
        self.active: Response | None = None
        self.responses: dict[str, Response] = {}
        self.calls: dict[str, ToolRun] = {}  # running calls of the current connection
        self.approvals: set[str] = set()  # MCP approval requests being decided
        self.questions: collections.deque[Question] = collections.deque()
        self.phase = Phase.RECONNECTING
        self.history: list[tuple[str, Phase]] = []  # (transition, phase after), for tests
        self.responses_ended = 0  # response.done (or a refused response.create) so far
        self._on_question = on_question
        self._changes = Changes()

    # ------------------------------------------------------------------ reading

    def between_turns(self) -> bool:
        """Nothing is owed or in flight: a new typed turn may go out."""
        return (
            self.connected
            and not self.owed
            and self.active is None
            and not self.requested
            and not self.calls
            and not self.approvals
        )

    def reply_owed(self) -> bool:
        """A reply was asked for and has not finished (its response or its tools still run)."""
        return bool(
            self.owed or self.active is not None or self.requested or self.calls or self.approvals
        )

    def idle(self) -> bool:
        return not (self.speaking or self.reply_owed())

    def _derive(self) -> Phase:
        if self.closing or self.stopped:
            return Phase.CLOSING
        if not self.connected:
            return Phase.RECONNECTING
        if self.approvals:
            return Phase.AWAITING_APPROVAL
        if self.calls:
            return Phase.RUNNING_TOOLS
        if self.speaking:
            return Phase.USER_SPEAKING
        if self.active is not None:
            return Phase.RESPONDING
        if self.owed or self.requested:
            return Phase.AWAITING_RESPONSE
        return Phase.LISTENING

    def moved(self, transition: str) -> None:
        """Recompute the phase and wake the waiters (a console action is a transition too)."""
        before, self.phase = self.phase, self._derive()
        self.history.append((transition, self.phase))
        if len(self.history) > 500:
            del self.history[:250]
        if before is not self.phase:
            log.debug("turn: %s -> %s (%s)", before.value, self.phase.value, transition)
        self._changes.notify()

    async def until(self, predicate: Callable[[], object], timeout: float | None = None) -> bool:
        """Wait for a condition on the turn state; every transition wakes the waiters.

        True once ``predicate()`` holds; False if ``timeout`` seconds passed first.
        """
        return await self._changes.until(predicate, timeout)

    # ------------------------------------------------------------------ the connection

    def connecting(self) -> int:
        """A new connection: whatever was in flight on the old one is gone (fenced)."""
        self.generation += 1
        self.connected = False
        self.responses.clear()
        self.active = None
        self.requested = 0
        self.speaking = self.owed = False
        self.calls.clear()  # their tasks may still finish: their outputs are dropped
        self.approvals.clear()
        self.moved("connecting")
        return self.generation

    def ready(self) -> None:
        self.connected = True
        self.moved("session.updated")

    def disconnected(self) -> None:
        self.connected = False
        self.moved("connection lost")

    def close(self) -> None:
        """q: stop taking turns; the session ends once the reply owed is done."""
        self.closing = True
        self.moved("q")

    def stop(self) -> None:
        self.stopped = True
        self.moved("stop")

    # ------------------------------------------------------------------ the user

    def speech_started(self) -> None:
        self.speaking = True
        self.moved("input_audio_buffer.speech_started")

    def speech_stopped(self) -> None:
        self.speaking = False
        self.owed = True
        self.moved("input_audio_buffer.speech_stopped")

    def typed(self) -> None:
        self.owed = True
        self.moved("typed turn")

    # ------------------------------------------------------------------ responses

    def response_requested(self) -> None:
        self.requested += 1
        self.moved("response.create")

    def response_refused(self) -> None:
        if self.requested:
            self.requested -= 1
        self.responses_ended += 1
        self.moved("error (response)")

    def response_created(self, response: Response) -> None:
        self.requested = max(0, self.requested - 1)
        self.responses[response.id] = response
        self.active = response
        self.moved("response.created")

    def response_done(self, rid: str, status: str) -> Response | None:
        """The response ended; returns it (its calls are for the caller to start)."""
        resp = self.responses.pop(rid, None)
        if self.active is not None and self.active.id == rid:
            self.active = None
        calls = resp is not None and resp.calls and status != "cancelled"
        if not calls and (
            status in ("completed", "failed", "incomplete") or (resp is not None and resp.muted)
        ):
            self.owed = False
        self.responses_ended += 1
        self.moved("response.done")
        return resp

    # ------------------------------------------------------------------ tools, approvals

    def tools_started(self, runs: list[ToolRun]) -> None:
        for run in runs:
            if run.generation == self.generation:
                self.calls[run.call_id] = run
        self.moved("tools started")

    def tools_finished(self, runs: list[ToolRun]) -> None:
        for run in runs:
            if self.calls.get(run.call_id) is run:
                del self.calls[run.call_id]
        self.moved("tools finished")

    def approval_pending(self, request_id: str) -> None:
        self.approvals.add(request_id)
        self.moved("mcp_approval_request")

    def approval_decided(self, request_id: str) -> None:
        self.approvals.discard(request_id)
        self.moved("approval answered")

    def ask(self, text: str) -> asyncio.Future[str]:
        """Put a question to the person; shown when every earlier one has been answered."""
        question = Question(text, asyncio.get_running_loop().create_future())
        self.questions.append(question)
        if len(self.questions) == 1 and self._on_question is not None:
            self._on_question(text)
        self.moved("question asked")
        return question.answer

    def answer(self, text: str) -> bool:
        """A typed line: the answer to the oldest open question, if there is one."""
        while self.questions and self.questions[0].answer.done():
            self.questions.popleft()  # its asker went away (cancelled)
        if not self.questions:
            return False
        self.questions.popleft().answer.set_result(text)
        while self.questions and self.questions[0].answer.done():
            self.questions.popleft()
        if self.questions and self._on_question is not None:
            self._on_question(self.questions[0].text)
        self.moved("question answered")
        return True


class TaskGroup:
    """Every task of one session: exceptions are reported, never lost; close cancels all.

    Unlike ``asyncio.TaskGroup`` one failing task does not cancel the others (a failed tool
    must not end the conversation), and it works on Python 3.10.
    """

    def __init__(self, report: Callable[[str, BaseException], None]) -> None:
        self._report = report
        self._tasks: dict[asyncio.Task[Any], Callable[[BaseException], None] | None] = {}
        self.failures: list[tuple[str, BaseException]] = []  # the newest (each was reported)

    def spawn(
        self,
        work: Coroutine[Any, Any, Any],
        name: str,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks[task] = on_error
        task.add_done_callback(self._done)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def _done(self, task: asyncio.Task[Any]) -> None:
        on_error = self._tasks.pop(task, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self.failures.append((task.get_name(), exc))
        if len(self.failures) > 200:  # a long call keeps the newest, not every failure
            del self.failures[:100]
        self._report(task.get_name(), exc)
        if on_error is not None:
            try:
                on_error(exc)
            except Exception as again:  # the recovery itself failed: say so, go on
                self._report(f"{task.get_name()} (recovery)", again)

    async def close(self, timeout: float = 1.0) -> list[asyncio.Task[Any]]:
        """Cancel every task and wait (bounded) for them; returns those that did not end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return list(pending)


class Life:
    """Where the conversation as a whole is: usable, ending, and what the user's side has
    done that the receive loop measures from. The session and its input side share it."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()  # set while a configured connection is usable
        self.stopping = asyncio.Event()  # set: the conversation ends now
        self.heard_speech = False  # the service has detected speech at least once
        self.input_done = False  # the source (or stdin) has ended
        self.eos_at: float | None = None  # end of the user's last turn (perf_counter)
        self.eos_label = "end of speech -> first audio"  # or, for typed turns, "Enter -> ..."
        self.exit_code = 0  # that of an error that ended the session, else 0
        self.failure: VlrunError | None = None  # what ends the session once it has stopped

    def end(self) -> None:
        """End the conversation (Ctrl+C, ``q``, end of input, a console that cannot be written)."""
        self.stopping.set()

    def user_turn_ended(self, label: str = "end of speech -> first audio") -> None:
        """The user's turn is over: the reply's latency is measured from now."""
        self.eos_at = time.perf_counter()
        self.eos_label = label


class Configuration:
    """What a new connection is configured with, and the wait for the service to confirm it.

    A flow's next node or a hand-over to an agent replaces the ``session.update`` (and the
    target) as the conversation goes on; the receive loop resolves :attr:`updated`.
    """

    def __init__(self, session_update: Mapping[str, Any], target: Any) -> None:
        self.session_update: dict[str, Any] = dict(session_update)
        self.target = target
        self.handoff_target: Any = None  # where a hand-over goes next (None: none pending)
        self.handoff_events: list[dict[str, Any]] = []  # the agent's first events
        self.switch = asyncio.Event()  # set: the connection loop reconnects to handoff_target
        self.updated: asyncio.Future[Any] | None = None  # waits for session.updated

    def expect_update(self) -> asyncio.Future[Any]:
        """A session.update is about to go out: the next session.updated (or refusal) ends
        the returned future."""
        self.updated = asyncio.get_running_loop().create_future()
        return self.updated
