"""A registry whose tools can be answered by mocks: scenario runs and `--mock-tools` demos."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from runner.plugins._types import ToolResult


class MockRegistry:
    """The plugin registry as the session sees it, with some tools answered by mocks."""

    def __init__(self, real: Any, speed: float = 1.0) -> None:
        self.real = real
        self.speed = speed
        self.mocks: dict[str, Mapping[str, Any]] = {}

    def schemas(self) -> dict[str, Any]:
        return dict(self.real.schemas()) if self.real is not None else {}

    def __contains__(self, name: object) -> bool:
        return name in self.mocks or (self.real is not None and name in self.real)

    async def dispatch_many(
        self,
        calls: list[tuple[str, str, str]],
        *,
        context: Any = None,
        timeout_s: float | Mapping[str, float] = 10.0,
    ) -> list[Any]:
        async def one(name: str, call_id: str, arguments: str) -> Any:
            mock = self.mocks.get(name)
            if mock is not None:
                return await self._mocked(name, call_id, mock)
            limit = timeout_s.get(name, 10.0) if isinstance(timeout_s, Mapping) else timeout_s
            if self.real is None:
                out = json.dumps({"error": {"type": "unknown_tool", "message": "no tools"}})
                return ToolResult(call_id, name, False, out, "no tools are loaded", 0.0)
            return await self.real.dispatch(
                name, call_id, arguments, context=context, timeout_s=float(limit)
            )

        return list(await asyncio.gather(*(one(*c) for c in calls)))

    async def _mocked(self, name: str, call_id: str, mock: Mapping[str, Any]) -> Any:
        delay = float(mock.get("delay_ms") or 0) / 1000 / self.speed
        if delay:
            await asyncio.sleep(delay)  # the mocked tool's running time
        if mock.get("error") is not None:
            message = str(mock["error"])
            out = json.dumps({"error": {"type": "tool_error", "message": message}})
            return ToolResult(call_id, name, False, out, message, delay, "tool_error")
        value = mock.get("output")
        out = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return ToolResult(call_id, name, True, out, None, delay)
