"""A conversation flow in a live session: record calls, and entering the next node.

The order of one transition, which the tests hold on the wire:
1. the model calls ``record_<node>``; :meth:`FlowWalk.record` validates, stores and commits
   the transition at once (no await in between, so a barge-in cannot split it);
2. the call's output is sent (with the other outputs of that response);
3. the next node's whole ``session.update`` is sent and ``session.updated`` awaited;
4. the context is reset or summarised if the node says so;
5. the turn goes on: the node's greeting, or a plain ``response.create`` (none after a
   barge-in: the user's new turn asks for the reply), so the model never speaks with the old
   node's instructions after a transition.

An end node says its goodbye and the session ends after that reply, like ``q``.
A refused node update is reported and the conversation goes on in the node the service has.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from runner.aio import cancel_and_wait
from runner.errors import ConfigError
from runner.live.outbox import Outbox
from runner.live.state import Configuration, Fenced, TaskGroup, ToolRun, TurnState, log
from runner.live.transcript import Transcript

UPDATE_TIMEOUT_S = 10.0


class FlowDriver:
    """Runs a conversation flow in a live session; ``walk`` is a :class:`runner.flows.FlowWalk`
    or None (no flow: every method is then a no-op the tool runner does not reach)."""

    def __init__(
        self,
        walk: Any,
        *,
        config: Configuration,
        turn: TurnState,
        outbox: Outbox,
        transcript: Transcript,
        tasks: TaskGroup,
        quit: Callable[[], Awaitable[None]],
    ) -> None:
        self.walk = walk
        self.config = config
        self.turn = turn
        self.outbox = outbox
        self.transcript = transcript
        self.tasks = tasks
        self.quit = quit  # ends after the reply owed, like q
        self.items: list[str] = []  # conversation item ids, for a node's context reset

    def item_created(self, item_id: str) -> None:
        if self.walk is not None:
            self.items.append(item_id)

    def result(self, run: ToolRun) -> Any:
        """Answer a generated record call (synchronously: the transition commits here)."""
        from runner.plugins import ToolResult

        recorded = self.walk.record(run.name, run.arguments)
        if recorded.entered is not None:
            # A reconnect from now on configures the node the conversation is in.
            self.config.session_update = self.walk.payload()
            self.transcript.conv_note(f"flow: {self.walk.describe()}")
            self.transcript.notice(f"flow: now in {recorded.entered.name}")
        elif not recorded.ok:
            self.transcript.conv_note(f"flow: {run.name} refused: {recorded.error}")
        kind = None if recorded.ok else "invalid_arguments"
        return ToolResult(
            run.call_id, run.name, recorded.ok, recorded.output, recorded.error, 0.0, kind
        )

    async def enter_pending_node(self, generation: int, interrupted: bool) -> bool:
        """Steps 3-5 above, when a record call moved the flow; True when it did."""
        walk = self.walk
        node = walk.pending if walk is not None else None
        if node is None:
            return False
        walk.pending = None
        if node.agent is not None:
            self._hand_off(node)
            return True
        try:
            await self._update_session(self.config.session_update, generation)
            for event in walk.context_events(node, list(self.items)):
                await self.outbox.send(event, generation)
            if node.context != "keep":
                self.items.clear()
            if interrupted:
                return True
            greeting = walk.greeting_event(node)
            await self._continue_with(greeting or {"type": "response.create"}, generation)
        except ConfigError as exc:
            self.transcript.error(f"flow: the service refused the session of {node.name}: {exc}")
            return True
        if node.end:
            self.tasks.spawn(self._end_of_flow(), "vlrun-flow-end")
        return True

    def _hand_off(self, node: Any) -> None:
        """Close this connection and open one bound to the node's agent (the connection
        loop does it between turns, like a roll-over); the agent's session starts with the
        conversation so far and the node's greeting."""
        name, project = node.agent
        self.config.handoff_target = dataclasses.replace(
            self.config.target,
            agent_kwargs={"agent_name": name, "project_name": project},
            agent_query={},
        )
        self.config.session_update = self.walk.handoff_payload(node)
        self.config.handoff_events = self.walk.handoff_events(node)
        self.transcript.conv_note(f"flow: handing over to agent {name} (project {project})")
        self.config.switch.set()

    async def _update_session(self, payload: dict[str, Any], generation: int) -> None:
        """Send a whole session.update mid-conversation and wait for session.updated.

        A drop meanwhile ends the wait at once (Fenced): the next connection is configured
        with this node's session anyway, since ``session_update`` already holds it.
        """
        updated = self.config.expect_update()
        await self.outbox.send(payload, generation)
        gone: asyncio.Future[Any] = asyncio.ensure_future(
            self.turn.until(lambda: self.turn.generation != generation or not self.turn.connected)
        )
        try:
            done, _ = await asyncio.wait(
                {updated, gone}, timeout=UPDATE_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            await cancel_and_wait(gone)  # our own cancellation still propagates
        if updated.done():
            updated.result()  # a refusal raises its ConfigError
        elif gone in done:
            raise Fenced(f"session.update of connection {generation}: the connection changed")
        else:
            log.warning("no session.updated within %.0f s of a flow transition", UPDATE_TIMEOUT_S)
            self.transcript.warning("flow: the service did not confirm the new step's session")

    async def _continue_with(self, event: dict[str, Any], generation: int) -> None:
        await self.turn.until(lambda: self.turn.active is None and not self.turn.requested)
        await self.outbox.send(event, generation)

    async def _end_of_flow(self) -> None:
        self.transcript.conv_note(f"flow ended: {self.walk.describe()}")
        await self.quit()
