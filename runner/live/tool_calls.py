"""Tool calls in a live session: function calls to the plugin registry, MCP approvals.

Both run as tasks beside the receive loop (a slow tool or a person thinking must not stop
events), and both end by asking the service to go on with ``response.create``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from runner.live.state import Drop, SessionCore


class ToolSide(SessionCore):
    """Runs the calls a response asked for (mixed into LiveSession)."""

    def _on_call_arguments_done(self, event: Any) -> None:
        resp = self._responses.get(str(event.response_id))
        call = (str(event.name or ""), str(event.call_id), str(event.arguments or "{}"))
        self.transcript.tool_call(call[1], call[0], call[2])
        if resp is not None:
            resp.calls.append(call)

    def _on_mcp_call(self, event: Any) -> None:
        kind = getattr(event.type, "value", event.type)
        self.transcript.notice(f"MCP call {event.item_id}: {kind.rsplit('.', 1)[-1]}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run tool work beside the receive loop; turns wait until it is done."""
        task = asyncio.create_task(work, name=name)
        self._tool_tasks.add(task)
        task.add_done_callback(self._tool_done)

    def _tool_done(self, task: asyncio.Task[None]) -> None:
        self._tool_tasks.discard(task)
        self._poke_idle()

    async def _run_tools(self, calls: list[tuple[str, str, str]]) -> None:
        from azure.ai.voicelive.models import FunctionCallOutputItem

        if self.registry is None:
            results = [_no_registry_result(c) for c in calls]
        else:
            from runner.plugins import ToolContext

            context = ToolContext(
                session_id=self.session_id,
                profile_name=self.profile_name,
                vars=self.profile_vars,
                logger=logging.getLogger("runner.tools"),
                say_handler=self._tool_says,
            )
            results = await self.registry.dispatch_many(
                calls, context=context, timeout_s=self.tool_timeouts
            )
        for r in results:
            self.transcript.tool_result(
                r.call_id, r.name, r.ok, r.output if r.ok else (r.error or r.output), r.duration_s
            )
        try:
            for r in results:
                item = FunctionCallOutputItem(call_id=r.call_id, output=r.output)
                await self._send({"type": "conversation.item.create", "item": item.as_dict()})
            await self._continue_turn()
        except Drop:
            self.transcript.warning("the connection dropped before the tool results were sent")

    async def _continue_turn(self) -> None:
        """Ask the service to go on with the answers sent, once the asking response has ended."""
        await self._wait_until(lambda: self._active is None and not self._requested)
        await self._send({"type": "response.create"})

    async def _tool_says(self, context: Any, text: str) -> None:
        self.transcript.notice(f"{context.tool_name}: {text}")

    async def _answer_approval(self, item: Any) -> None:
        from azure.ai.voicelive.models import MCPApprovalResponseRequestItem

        from runner.live.mcp import decide

        label, name = str(item.server_label), str(item.name)
        decision = decide(self.mcp_policies.get(label), label, name)
        if decision == "ask":
            if not (self.read_lines and sys.stdin.isatty()):
                decision = "deny"
                self.transcript.notice(f"MCP {label}.{name}: approval needs a person; denied")
            else:
                async with self._asking:  # one question on the console at a time
                    self._question = asyncio.get_running_loop().create_future()
                    self.transcript.banner(
                        f"approve MCP call {label}.{name}({item.arguments})? [y/N]"
                    )
                    answer = await self._question
                    self._question = None
                decision = "approve" if answer.lower() in ("y", "yes") else "deny"
        self.transcript.conv_note(f"MCP {label}.{name}: {decision}")
        reply = MCPApprovalResponseRequestItem(
            approval_request_id=str(item.id), approve=decision == "approve"
        )
        try:
            await self._send({"type": "conversation.item.create", "item": reply.as_dict()})
            # As with function-call outputs: the call runs if approved, the model explains if not.
            await self._continue_turn()
        except Drop:
            self.transcript.warning("the connection dropped before the approval was sent")


def _no_registry_result(call: tuple[str, str, str]) -> Any:
    from runner.plugins import ToolResult

    name, call_id, _ = call
    output = '{"error": {"type": "unknown_tool", "message": "no tools are loaded"}}'
    return ToolResult(call_id, name, False, output, "no tools are loaded", 0.0)
