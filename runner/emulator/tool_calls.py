"""Function and MCP calls inside an emulated response, and MCP tool listing."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from runner.emulator import protocol as P
from runner.emulator.conversation import Conversation, Response
from runner.emulator.model import ScriptedModel, ToolCall
from runner.emulator.outbox import Outbox, Tasks

MCP_FLOOR_S = 0.002  # the least an MCP step waits, even at speed 0


class ToolCalls:
    """Function-call and MCP output items, and the calls, results and approvals they leave.

    A part of :class:`~runner.emulator.connection.Connection`: the connection hands in the
    client's answers (:meth:`add_output`, :meth:`answer_approval`); the next response takes
    them (:meth:`take_outputs`, :meth:`next_approved`, :meth:`take_results`).
    """

    def __init__(
        self,
        outbox: Outbox,
        conversation: Conversation,
        model: ScriptedModel,
        tasks: Tasks,
        *,
        speed: float,
        mcp_latency_ms: float,
    ) -> None:
        self._outbox, self._conv, self._model, self._tasks = outbox, conversation, model, tasks
        self._speed, self._mcp_latency_ms = speed, mcp_latency_ms
        self._open_calls: dict[str, str] = {}  # call_id -> tool name
        self._outputs: list[dict[str, Any]] = []  # function outputs the next response answers
        self._mcp_listed: set[str] = set()
        self._mcp_approvals: dict[str, dict[str, Any]] = {}  # asked, not answered yet
        self._mcp_approved: list[dict[str, Any]] = []  # approved, not called yet
        self._mcp_results: list[dict[str, Any]] = []  # results the next response reports
        self._mcp_pending = 0  # MCP calls whose result has not arrived yet

    # --- what the connection and the responses see ------------------------------------------------

    @property
    def mcp_pending(self) -> int:
        """MCP calls whose result has not arrived yet."""
        return self._mcp_pending

    @property
    def has_outputs(self) -> bool:
        return bool(self._outputs)

    def add_output(self, call_id: str, output: str) -> bool:
        """A client's ``function_call_output``; False if no call with ``call_id`` was issued.

        source: docs/emulator.md#call-id-issued (issue 12/15), stricter reading: an output
        answers a call of this connection's conversation; one for a call_id never issued here
        (a late result from an earlier connection, a typo) is refused.
        """
        issued = call_id in self._open_calls or any(
            i.get("type") == "function_call" and i.get("call_id") == call_id
            for i in self._conv.items.values()
        )
        if not issued:
            return False
        name = self._open_calls.pop(call_id, "")
        self._outputs.append({"name": name, "call_id": call_id, "output": output})
        return True

    def take_outputs(self) -> list[dict[str, Any]]:
        outputs, self._outputs = self._outputs, []
        return outputs

    def answer_approval(self, approval_request_id: str, approve: bool) -> bool:
        """A client's ``mcp_approval_response``; False if no such request is open."""
        request = self._mcp_approvals.pop(approval_request_id, None)
        if request is None:
            return False
        if approve:
            self._mcp_approved.append({**request, "approval_request_id": approval_request_id})
        else:
            self._mcp_results.append({**request, "output": None, "error": "not approved"})
        return True

    def next_approved(self) -> dict[str, Any] | None:
        """The oldest approved MCP call not made yet (taken)."""
        return self._mcp_approved.pop(0) if self._mcp_approved else None

    def take_results(self) -> list[dict[str, Any]]:
        results, self._mcp_results = self._mcp_results, []
        return results

    # --- inside a response ----------------------------------------------------------------------

    async def _mcp_step(self, share: float = 1.0) -> None:
        """Part of one MCP network round trip: ``share`` of the latency, scaled by speed.

        source: docs/emulator.md#mcp-latency. Even at speed 0 each step waits a little, so the
        events of a call never leave in the same millisecond (the SDK's MCP sample reads them
        with nested waits and must see them one after another).
        """
        pace = self._speed if self._speed > 0 else math.inf
        await asyncio.sleep(max(self._mcp_latency_ms * share / 1000 / pace, MCP_FLOOR_S))

    def list_mcp_tools(self) -> None:
        """List each newly declared MCP server, in the background like a network call.

        The listing is chained like a response, so a response asked for meanwhile waits for it.
        """
        new = [
            t
            for t in self._conv.session.get("tools") or []
            if t.get("type") == "mcp" and t.get("server_label") not in self._mcp_listed
        ]
        if not new:
            return
        self._mcp_listed.update(t["server_label"] for t in new)
        self._tasks.chain(lambda previous: self._list_servers(new, previous))

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
                "tools": self._model.mcp_tool_list(tool),
            }
            await self._conv.add_item(item)
            await self._outbox.send({"type": "mcp_list_tools.in_progress", "item_id": item["id"]})
            await self._mcp_step()
            await self._outbox.send({"type": "mcp_list_tools.completed", "item_id": item["id"]})

    async def function_call(self, response: Response, call: ToolCall) -> None:
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
        await self._conv.output_item("added", response, index, dict(item))
        await self._conv.add_item(item)
        base = {
            "response_id": response.id,
            "item_id": item["id"],
            "output_index": index,
            "call_id": call_id,
        }
        args = call.arguments
        step = max(1, math.ceil(len(args) / 3))
        for i in range(0, len(args), step):
            await self._outbox.send(
                {
                    "type": "response.function_call_arguments.delta",
                    **base,
                    "delta": args[i : i + step],
                }
            )
        await self._outbox.send(
            {
                "type": "response.function_call_arguments.done",
                **base,
                "name": call.name,
                "arguments": args,
            }
        )
        item.update(arguments=args, status="completed")
        self._open_calls[call_id] = call.name
        response.output.append(dict(item))
        await self._conv.output_item("done", response, index, dict(item))

    async def builtin_search(self, response: Response, search: dict[str, Any]) -> str:
        """A built-in web or file search, run by the service inside the response; returns the
        sentence the reply says about it. Nothing is searched.

        source: docs/emulator.md#builtin-search (SDK 1.2.0: ResponseWebSearchCallItem,
        ResponseFileSearchCallItem and the response.{web,file}_search_call.in_progress,
        .searching, .completed events, each with response_id, item_id, output_index and
        sequence_number)
        """
        kind, query = search["type"], str(search.get("query") or "")
        self._outbox.note("builtin-search")
        tool: dict[str, Any] = next(
            (t for t in self._conv.session.get("tools") or [] if t.get("type") == kind), {}
        )
        index = len(response.output)
        item: dict[str, Any] = {
            "id": P.new_id("ws" if kind == "web_search" else "fs"),
            "object": "realtime.item",
            "type": f"{kind}_call",
            "status": "in_progress",
        }
        if kind == "file_search":
            item["queries"] = [query]
        await self._conv.output_item("added", response, index, dict(item))
        await self._conv.add_item(item)
        base = {"response_id": response.id, "item_id": item["id"], "output_index": index}
        for seq, step in enumerate(("in_progress", "searching", "completed")):
            if step != "in_progress":
                await self._mcp_step(0.5)  # a hosted search takes a network round trip
            await self._outbox.send(
                {"type": f"response.{kind}_call.{step}", **base, "sequence_number": seq}
            )
        item["status"] = "completed"
        stores = ", ".join(tool.get("vector_store_ids") or [])
        if kind == "web_search":
            item["action"] = {"type": "search", "query": query}
            said = f'[emulator] web search is emulated: no search was run for "{query}".'
        else:
            if "file_search_call.results" in (self._conv.session.get("include") or []):
                item["results"] = [
                    {
                        "file_id": "file_emulator",
                        "filename": "emulator.txt",
                        "score": 0.0,
                        "text": "[emulator] no file was searched",
                        "attributes": {},
                    }
                ]
            said = (
                f"[emulator] file search is emulated: no file in {stores or 'no store'} was "
                f'read for "{query}".'
            )
        self._conv.items[item["id"]] = item
        response.output.append(dict(item))
        await self._conv.output_item("done", response, index, dict(item))
        return said

    def _approval_needed(self, label: str, name: str) -> bool:
        tool = next(
            (
                t
                for t in self._conv.session.get("tools") or []
                if t.get("type") == "mcp" and t.get("server_label") == label
            ),
            None,
        )
        policy = (tool or {}).get("require_approval", "always")
        if isinstance(policy, dict):
            return name not in (policy.get("never") or [])
        return policy != "never"

    async def mcp(
        self, response: Response, call: dict[str, Any]
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
            await self._conv.output_item("added", response, index, item)
            await self._conv.add_item(item)
            self._mcp_approvals[item["id"]] = {k: v for k, v in call.items() if k != "approved"}
            response.output.append(item)
            await self._conv.output_item("done", response, index, item)
            return None
        self._outbox.note("mcp-order")
        item = {
            "id": P.new_id("item"),
            "object": "realtime.item",
            "type": "mcp_call",
            "server_label": label,
            "name": name,
            "arguments": "",
            "approval_request_id": call.get("approval_request_id"),
        }
        self._mcp_pending += 1
        await self._conv.output_item("added", response, index, dict(item))
        await self._conv.add_item(item)
        base = {"response_id": response.id, "item_id": item["id"], "output_index": index}
        step = max(1, math.ceil(len(args) / 2))
        for i in range(0, len(args), step):
            await self._mcp_step(0.25)
            await self._outbox.send(
                {"type": "response.mcp_call_arguments.delta", **base, "delta": args[i : i + step]}
            )
        await self._outbox.send(
            {"type": "response.mcp_call_arguments.done", **base, "arguments": args}
        )
        item["arguments"] = args
        response.output.append(dict(item))
        item["_response_id"] = response.id

        async def finish() -> None:
            try:
                await self._mcp_finish(item, index, call)
            finally:
                self._mcp_pending -= 1

        return finish

    async def _mcp_finish(self, item: dict[str, Any], index: int, call: dict[str, Any]) -> None:
        label, name = item["server_label"], item["name"]
        await self._mcp_step(0.25)
        await self._outbox.send(
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
        await self._outbox.send(
            {"type": f"response.mcp_call.{kind}", "item_id": item["id"], "output_index": index}
        )
        item.update(output=output, error=error)
        self._conv.items[item["id"]] = item
        self._mcp_results.append(
            {"server_label": label, "name": name, "output": output, "error": error}
        )
        await self._mcp_step(0.1)
        await self._outbox.send(
            {
                "type": "response.output_item.done",
                "response_id": item.get("_response_id"),
                "output_index": index,
                "item": {k: v for k, v in item.items() if not k.startswith("_")},
            }
        )
