"""Function and MCP calls inside an emulated response, and MCP tool listing."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from runner.emulator import protocol as P
from runner.emulator.host import Host
from runner.emulator.model import ToolCall
from runner.emulator.responses import _Response

MCP_FLOOR_S = 0.002  # the least an MCP step waits, even at speed 0


class ToolCalls(Host):
    """Function-call and MCP output items; a part of :class:`Connection`."""

    async def _mcp_step(self, share: float = 1.0) -> None:
        """Part of one MCP network round trip: ``share`` of the latency, scaled by speed.

        source: docs/emulator.md#mcp-latency. Even at speed 0 each step waits a little, so the
        events of a call never leave in the same millisecond (the SDK's MCP sample reads them
        with nested waits and must see them one after another).
        """
        pace = self.speed if self.speed > 0 else math.inf
        await asyncio.sleep(max(self.mcp_latency_ms * share / 1000 / pace, MCP_FLOOR_S))

    def _list_mcp_tools(self) -> None:
        """List each newly declared MCP server, in the background like a network call.

        The listing is chained like a response, so a response asked for meanwhile waits for it.
        """
        new = [
            t
            for t in self.session.get("tools") or []
            if t.get("type") == "mcp" and t.get("server_label") not in self.mcp_listed
        ]
        if not new:
            return
        self.mcp_listed.update(t["server_label"] for t in new)
        previous = self.last_task
        self.last_task = self._spawn(self._list_servers(new, previous))

    async def _list_servers(
        self, tools: list[dict[str, Any]], previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        for tool in tools:
            # Open question 7: order of the item vs in_progress; the item comes first here.
            item = {
                "id": P.new_id("item"),
                "object": "realtime.item",
                "type": "mcp_list_tools",
                "server_label": tool["server_label"],
                "tools": self.model.mcp_tool_list(tool),
            }
            await self._add_item(item)
            await self.send({"type": "mcp_list_tools.in_progress", "item_id": item["id"]})
            await self._mcp_step()
            await self.send({"type": "mcp_list_tools.completed", "item_id": item["id"]})

    async def _function_call(self, response: _Response, call: ToolCall) -> None:
        index = len(response.output)
        call_id = P.new_id("call")
        item: dict[str, Any] = {
            "id": P.new_id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
            "status": "in_progress",
        }
        await self._output_item("added", response, index, dict(item))
        await self._add_item(item)
        base = {
            "response_id": response.id,
            "item_id": item["id"],
            "output_index": index,
            "call_id": call_id,
        }
        args = call.arguments
        step = max(1, math.ceil(len(args) / 3))
        for i in range(0, len(args), step):
            await self.send(
                {
                    "type": "response.function_call_arguments.delta",
                    **base,
                    "delta": args[i : i + step],
                }
            )
        await self.send(
            {
                "type": "response.function_call_arguments.done",
                **base,
                "name": call.name,
                "arguments": args,
            }
        )
        item.update(arguments=args, status="completed")
        self.open_calls[call_id] = call.name
        response.output.append(dict(item))
        await self._output_item("done", response, index, dict(item))

    def _approval_needed(self, label: str, name: str) -> bool:
        tool = next(
            (
                t
                for t in self.session.get("tools") or []
                if t.get("type") == "mcp" and t.get("server_label") == label
            ),
            None,
        )
        policy = (tool or {}).get("require_approval", "always")
        if isinstance(policy, dict):
            return name not in (policy.get("never") or [])
        return policy != "never"

    async def _mcp(
        self, response: _Response, call: dict[str, Any]
    ) -> Callable[[], Awaitable[None]] | None:
        """The MCP part of a response; returns what runs after its ``response.done``.

        source: docs/emulator.md#mcp-order. The call's arguments stream inside the response; the
        call itself (in_progress, completed or failed, output_item.done with the output) runs
        after ``response.done``, over the configured latency. That is the order the SDK's MCP
        sample needs to see ``mcp_call.completed`` and ask for the spoken answer.
        """
        index = len(response.output)
        label, name = call["server_label"], call["name"]
        args = json.dumps(call.get("arguments") or {})
        if not call.get("approved") and self._approval_needed(label, name):
            item = {
                "id": P.new_id("item"),
                "object": "realtime.item",
                "type": "mcp_approval_request",
                "server_label": label,
                "name": name,
                "arguments": args,
            }
            await self._output_item("added", response, index, item)
            await self._add_item(item)
            self.mcp_approvals[item["id"]] = {k: v for k, v in call.items() if k != "approved"}
            response.output.append(item)
            await self._output_item("done", response, index, item)
            return None
        self._fidelity("mcp-order")
        item = {
            "id": P.new_id("item"),
            "object": "realtime.item",
            "type": "mcp_call",
            "server_label": label,
            "name": name,
            "arguments": "",
            "approval_request_id": call.get("approval_request_id"),
        }
        self.mcp_pending += 1
        await self._output_item("added", response, index, dict(item))
        await self._add_item(item)
        base = {"response_id": response.id, "item_id": item["id"], "output_index": index}
        step = max(1, math.ceil(len(args) / 2))
        for i in range(0, len(args), step):
            await self._mcp_step(0.25)
            await self.send(
                {"type": "response.mcp_call_arguments.delta", **base, "delta": args[i : i + step]}
            )
        await self.send({"type": "response.mcp_call_arguments.done", **base, "arguments": args})
        item["arguments"] = args
        response.output.append(dict(item))
        item["_response_id"] = response.id

        async def finish() -> None:
            try:
                await self._mcp_finish(item, index, call)
            finally:
                self.mcp_pending -= 1

        return finish

    async def _mcp_finish(self, item: dict[str, Any], index: int, call: dict[str, Any]) -> None:
        label, name = item["server_label"], item["name"]
        await self._mcp_step(0.25)
        await self.send(
            {"type": "response.mcp_call.in_progress", "item_id": item["id"], "output_index": index}
        )
        await self._mcp_step()
        error = call.get("error")
        output = (
            None
            if error
            else call.get("output")
            or json.dumps(
                {
                    "emulator": True,
                    "note": f"[emulator] {label}/{name} was not called; no MCP server is "
                    "contacted by the emulator",
                    "arguments": call.get("arguments") or {},
                }
            )
        )
        kind = "failed" if error else "completed"
        await self.send(
            {"type": f"response.mcp_call.{kind}", "item_id": item["id"], "output_index": index}
        )
        item.update(output=output, error=error)
        self.items[item["id"]] = item
        self.mcp_results.append(
            {"server_label": label, "name": name, "output": output, "error": error}
        )
        await self._mcp_step(0.1)
        await self.send(
            {
                "type": "response.output_item.done",
                "response_id": item.get("_response_id"),
                "output_index": index,
                "item": {k: v for k, v in item.items() if not k.startswith("_")},
            }
        )
