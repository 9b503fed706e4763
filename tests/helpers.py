"""Helpers shared by the tests that drive the emulator through the official SDK."""

from __future__ import annotations

import asyncio

from azure.ai.voicelive.aio import VoiceLiveConnection
from azure.ai.voicelive.models import InputTextContentPart, ServerEvent, UserMessageItem


async def events_until(
    conn: VoiceLiveConnection, kind: str, timeout: float = 10
) -> list[ServerEvent]:
    """Every server event up to and including the first of type ``kind``."""
    out: list[ServerEvent] = []

    async def read() -> None:
        while True:
            event = await conn.recv()
            out.append(event)
            if event.type == kind:
                return

    await asyncio.wait_for(read(), timeout)
    return out


async def say_text(conn: VoiceLiveConnection, text: str) -> None:
    """A user text message, then response.create."""
    await conn.conversation.item.create(
        item=UserMessageItem(content=[InputTextContentPart(text=text)])
    )
    await conn.response.create()
