"""Function and MCP calls inside an emulated response, and MCP tool listing."""

from __future__ import annotations

import json
import math
from typing import Any

from runner.emulator import protocol as P
from runner.emulator.host import Host
from runner.emulator.model import ToolCall
from runner.emulator.responses import _Response


class ToolCalls(Host):
    """Function-call and MCP output items; a part of :class:`Connection`."""

    async def _list_mcp_tools(self) -> None:
        # Open question 7: order of the item vs in_progress; the item comes first here.
        for tool in self.session.get("tools") or []:
            if tool.get("type") != "mcp" or tool.get("server_label") in self.mcp_listed:
                continue
            self.mcp_listed.add(tool["server_label"])
            item = {
                "id": P.new_id("item"),
                "object": "realtime.item",
                "type": "mcp_list_tools",
                "server_label": tool["server_label"],
                "tools": self.model.mcp_tool_list(tool),
            }
            await self._add_item(item)
            await self.send({"type": "mcp_list_tools.in_progress", "item_id": item["id"]})
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

    async def _mcp(self, response: _Response, call: dict[str, Any]) -> None:
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
            return
        item = {
            "id": P.new_id("item"),
            "object": "realtime.item",
            "type": "mcp_call",
            "server_label": label,
            "name": name,
            "arguments": "",
            "approval_request_id": call.get("approval_request_id"),
        }
        await self._output_item("added", response, index, dict(item))
        await self._add_item(item)
        base = {"response_id": response.id, "item_id": item["id"], "output_index": index}
        await self.send({"type": "response.mcp_call_arguments.delta", **base, "delta": args})
        await self.send({"type": "response.mcp_call_arguments.done", **base, "arguments": args})
        await self.send(
            {"type": "response.mcp_call.in_progress", "item_id": item["id"], "output_index": index}
        )
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
        item.update(arguments=args, output=output, error=error)
        response.output.append(dict(item))
        self.mcp_results.append(
            {"server_label": label, "name": name, "output": output, "error": error}
        )
        await self._output_item("done", response, index, dict(item))
