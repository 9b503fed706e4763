"""Tool calls in a live session: function calls to the plugin registry, MCP approvals.

Both run as tasks of the session's task group beside the receive loop (a slow tool or a person
thinking must not stop events), and both end by asking the service to go on with
``response.create``. They talk only to the turn state:

- each function call runs as its own task, so a barge-in can cancel the calls marked
  ``cancel_on_barge_in`` (the model is told the call was interrupted);
- every output belongs to the connection that issued its call_id: after a reconnect it is
  dropped with a log line, never sent on the new connection;
- an approval question is put to the turn state, which shows it and hands it the next typed
  line; the line reader never waits for it;
- whatever fails (the registry, a policy, a send) is reported, and the model still gets an
  answer for every call, so the turn goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from runner.live.flow_steps import FlowDriver
from runner.live.outbox import Outbox
from runner.live.settings import SessionSettings
from runner.live.state import Drop, Fenced, TaskGroup, ToolRun, TurnState, log
from runner.live.transcript import Transcript

INTERRUPTED = "The call was interrupted: the user started speaking, so it was cancelled."


class ToolRunner:
    """Runs the calls a response asked for, and answers MCP approval requests."""

    def __init__(
        self,
        settings: SessionSettings,
        *,
        turn: TurnState,
        outbox: Outbox,
        transcript: Transcript,
        tasks: TaskGroup,
        report: Callable[[str, BaseException], None],
        registry: Any,
        flow: FlowDriver,
        interactive: bool,
        session_id: Callable[[], str],
    ) -> None:
        from runner.plugins import ToolThreads

        self.settings = settings
        self.turn = turn
        self.outbox = outbox
        self.transcript = transcript
        self.tasks = tasks
        self.report = report
        self.registry = registry
        self.flow = flow
        self.interactive = interactive  # approval questions need a person at a terminal
        self.session_id = session_id
        self.profile_vars = dict(settings.profile_vars)
        # sync tools run on the session's own daemon threads: a hung one never holds the exit
        self.threads = ToolThreads(prefix="vlrun-tool")
        self.runs: set[ToolRun] = set()  # every call not finished yet, whatever its connection

    @property
    def running(self) -> bool:
        """Tool calls or approvals of this session are still being run."""
        return bool(self.runs or self.turn.approvals)

    def on_call_arguments_done(self, event: Any) -> None:
        resp = self.turn.responses.get(str(event.response_id))
        call = (str(event.name or ""), str(event.call_id), str(event.arguments or "{}"))
        shown = (
            self.flow.walk.mask_arguments(call[0], call[2])
            if self.flow.walk is not None
            else call[2]
        )
        self.transcript.tool_call(call[1], call[0], shown)
        if resp is not None:
            resp.calls.append(call)

    def on_mcp_call(self, event: Any) -> None:
        kind = getattr(event.type, "value", event.type)
        self.transcript.notice(f"MCP call {event.item_id}: {kind.rsplit('.', 1)[-1]}")

    def _cancellable(self, name: str) -> bool:
        policy = self.settings.cancel_on_barge_in
        if isinstance(policy, Mapping):
            return bool(policy.get(name, True))
        return bool(policy)

    # ---------------------------------------------------------------- function calls

    def start(self, calls: list[tuple[str, str, str]]) -> None:
        """The response that asked for ``calls`` has ended: run them, beside everything else."""
        generation = self.turn.generation
        runs = [ToolRun(n, c, a, generation, self._cancellable(n)) for n, c, a in calls]
        self.turn.tools_started(runs)
        self.runs.update(runs)
        for run in runs:
            run.task = self.tasks.spawn(self._call(run), f"vlrun-tool-{run.name}")

        def recover(exc: BaseException) -> None:
            self.runs.difference_update(runs)
            self.turn.tools_finished(runs)

        self.tasks.spawn(self._answer_calls(runs), "vlrun-tools", on_error=recover)

    async def _call(self, run: ToolRun) -> Any:
        """One call through the registry; a failure of the registry itself becomes an error
        result the model can act on (and is reported: it is a bug)."""
        try:
            if self.flow.walk is not None and self.flow.walk.owns(run.name):
                return self.flow.result(run)
            if self.registry is None:
                return _error_result(run, "unknown_tool", "no tools are loaded")
            from runner.plugins import Registry, ToolContext

            context = ToolContext(
                session_id=self.session_id(),
                profile_name=self.settings.profile_name,
                vars=self.profile_vars,
                logger=logging.getLogger("vlrun.tools"),
                say_handler=self._tool_says,
                values=(
                    MappingProxyType(dict(self.flow.walk.values))
                    if self.flow.walk is not None
                    else {}
                ),
            )
            from runner.plugins import DEFAULT_TIMEOUT_S

            timeout = self.settings.tool_timeouts
            limit = (
                float(timeout.get(run.name, DEFAULT_TIMEOUT_S))
                if isinstance(timeout, Mapping)
                else float(timeout)
            )
            if isinstance(self.registry, Registry):
                return await self.registry.dispatch(
                    run.name,
                    run.call_id,
                    run.arguments,
                    context=context,
                    timeout_s=limit,
                    threads=self.threads,
                )
            # anything else that looks like a registry (scenario mocks) runs one call at a time
            (result,) = await self.registry.dispatch_many(
                [(run.name, run.call_id, run.arguments)], context=context, timeout_s=limit
            )
            return result
        except Exception as exc:
            self.report(f"tool {run.name}", exc)
            return _error_result(run, "internal_error", f"vlrun could not run the tool ({exc})")

    async def _answer_calls(self, runs: list[ToolRun]) -> None:
        """Wait for every call of one response, send the outputs, ask the service to go on."""
        from azure.ai.voicelive.models import FunctionCallOutputItem

        tasks = [r.task for r in runs if r.task is not None]
        try:
            if tasks:
                await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        try:
            results = []
            for run in runs:
                assert run.task is not None
                if run.task.cancelled():
                    if not run.interrupted:
                        continue  # the session is ending
                    result = _error_result(run, "interrupted", INTERRUPTED)
                else:
                    result = run.task.result()  # _call never raises
                results.append(result)
                shown = result.output if result.ok else (result.error or result.output)
                self.transcript.tool_result(
                    result.call_id, result.name, result.ok, shown, result.duration_s
                )
            generation = runs[0].generation if runs else self.turn.generation
            if generation != self.turn.generation:
                self._fenced(runs)
                return
            interrupted = any(r.interrupted for r in runs)
            try:
                for result in results:
                    item = FunctionCallOutputItem(call_id=result.call_id, output=result.output)
                    await self.outbox.send(
                        {"type": "conversation.item.create", "item": item.as_dict()}, generation
                    )
                if await self.flow.enter_pending_node(generation, interrupted):
                    pass  # the next node's session is in place and its turn has gone on
                elif not interrupted:  # after a barge-in the user's new turn asks for the reply
                    await self._continue_turn(generation)
            except Fenced:
                self._fenced(runs)
            except Drop:
                self.transcript.warning("the connection dropped before the tool results were sent")
        finally:
            self.runs.difference_update(runs)
            self.turn.tools_finished(runs)

    def _fenced(self, runs: list[ToolRun]) -> None:
        for run in runs:
            log.warning(
                "dropped the output of %s (call %s): it was asked for on connection %d, "
                "the session is on connection %d now",
                run.name,
                run.call_id,
                run.generation,
                self.turn.generation,
            )

    def interrupt(self) -> None:
        """Barge-in: cancel the running calls that may be cancelled."""
        for run in list(self.turn.calls.values()):
            if run.cancellable and run.task is not None and not run.task.done():
                run.interrupted = True
                run.task.cancel()
                log.info("barge-in: cancelled %s (call %s)", run.name, run.call_id)

    async def _continue_turn(self, generation: int) -> None:
        """Ask the service to go on with the answers sent, once the asking response has ended."""
        await self.turn.until(lambda: self.turn.active is None and not self.turn.requested)
        await self.outbox.send({"type": "response.create"}, generation)

    async def _tool_says(self, context: Any, text: str) -> None:
        self.transcript.notice(f"{context.tool_name}: {text}")

    def still_running(self) -> list[str]:
        """Names of the tools still running (their calls, or their threads)."""
        names = {r.name for r in self.runs if r.task is not None and not r.task.done()}
        names.update(self.threads.running())
        return sorted(names)

    # ---------------------------------------------------------------- MCP approvals

    def start_approval(self, item: Any) -> None:
        request_id = str(getattr(item, "id", "") or "")
        generation = self.turn.generation
        self.turn.approval_pending(request_id)
        self.tasks.spawn(
            self._answer_approval(item, request_id, generation),
            "vlrun-approval",
            on_error=lambda exc: self.turn.approval_decided(request_id),
        )

    async def _answer_approval(self, item: Any, request_id: str, generation: int) -> None:
        from azure.ai.voicelive.models import MCPApprovalResponseRequestItem

        from runner.live import mcp

        try:
            label, name = str(item.server_label), str(item.name)
            try:
                decision = mcp.decide(self.settings.mcp_policies.get(label), label, name)
            except Exception as exc:  # a failure never approves
                self.report(f"the MCP approval policy for {label}.{name}", exc)
                decision = "deny"
            if decision == "ask":
                if not self.interactive:
                    decision = "deny"
                    self.transcript.notice(f"MCP {label}.{name}: approval needs a person; denied")
                else:
                    answer = await self.turn.ask(
                        f"approve MCP call {label}.{name}({item.arguments})? [y/N]"
                    )
                    decision = "approve" if answer.lower() in ("y", "yes") else "deny"
            self.transcript.conv_note(f"MCP {label}.{name}: {decision}")
            reply = MCPApprovalResponseRequestItem(
                approval_request_id=request_id, approve=decision == "approve"
            )
            try:
                await self.outbox.send(
                    {"type": "conversation.item.create", "item": reply.as_dict()}, generation
                )
                # As with function-call outputs: the call runs if approved, the model explains.
                await self._continue_turn(generation)
            except Fenced:
                log.warning(
                    "dropped the answer to approval %s: asked on connection %d, now on %d",
                    request_id,
                    generation,
                    self.turn.generation,
                )
            except Drop:
                self.transcript.warning("the connection dropped before the approval was sent")
        finally:
            self.turn.approval_decided(request_id)


def _error_result(run: ToolRun, kind: str, message: str) -> Any:
    from runner.plugins import ToolResult

    output = json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)
    return ToolResult(run.call_id, run.name, False, output, message, 0.0, kind)
