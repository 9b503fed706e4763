"""Image turns in the emulator (issue 29 item 5; docs/emulator.md#input-image): input_image parts
in conversation.item.create (SDK 1.3.0 RequestImageContentPart.image_url), checked and bounded,
and a reply that says what arrived (type, size, pixels), never what the picture shows. Through
the official SDK."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import pytest
from azure.ai.voicelive.aio import connect
from azure.ai.voicelive.models import (
    InputTextContentPart,
    RequestImageContentPart,
    UserMessageItem,
)
from azure.core.credentials import AzureKeyCredential

from runner.emulator import running_emulator
from runner.emulator.images import MAX_IMAGE_BYTES, read_image
from tests.helpers import events_until


def png(width: int, height: int) -> bytes:
    """A real PNG of grey pixels (signature, IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


async def reply_to(*parts: Any) -> tuple[list[Any], str]:
    async with (
        running_emulator(speed=0) as emu,
        connect(
            endpoint=emu.endpoint, credential=AzureKeyCredential("k"), model="gpt-realtime"
        ) as conn,
    ):
        await events_until(conn, "session.created")
        await conn.session.update(session={"turn_detection": None, "modalities": ["text"]})
        await events_until(conn, "session.updated")
        await conn.conversation.item.create(item=UserMessageItem(content=list(parts)))
        await conn.response.create()
        events = await events_until(conn, "response.done")
    said = " ".join(e.text for e in events if e.type == "response.text.done")
    return events, said


async def test_an_image_turn_is_answered_with_what_arrived_not_what_it_shows() -> None:
    # source: docs/emulator.md#input-image
    image = png(64, 48)
    _, said = await reply_to(
        InputTextContentPart(text="What is in this picture?"),
        RequestImageContentPart(image_url=data_url(image), detail="low"),
    )
    size = f"{len(image)} bytes"
    assert said == (
        f"[emulator] I received an image (image/png, {size}, 64x48 pixels) and cannot see it."
        " You said: What is in this picture?"
    )


async def test_an_image_alone_is_described_too() -> None:
    _, said = await reply_to(RequestImageContentPart(image_url=data_url(png(3, 2))))
    assert said.startswith("[emulator] I received an image (image/png, ")
    assert "3x2 pixels" in said and "audio" not in said


async def _item_error(part: dict[str, Any], role: str = "user") -> dict[str, Any]:
    from websockets.asyncio.client import connect as ws_connect

    async with running_emulator(speed=0) as emu:
        base = emu.endpoint.replace("http://", "ws://")
        url = f"{base}/voice-live/realtime?api-version=2026-07-15&model=gpt-realtime"
        async with ws_connect(url) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {}}))
            item = {"type": "message", "role": role, "content": [part]}
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            while True:
                event = json.loads(await ws.recv())
                if event["type"] in ("error", "conversation.item.created"):
                    return event


@pytest.mark.parametrize(
    ("part", "param", "words"),
    [
        ({"type": "input_image"}, "item.content[0].image_url", "Missing"),
        (
            {"type": "input_image", "image_url": "data:text/plain;base64,aGk="},
            "item.content[0].image_url",
            "not a supported image type",
        ),
        (
            {"type": "input_image", "image_url": data_url(b"GIF89a" + b"\x01\x00" * 4)},
            "item.content[0].image_url",
            "the data is image/gif, not image/png",
        ),
        (
            {"type": "input_image", "image_url": "data:image/png;base64,%%%"},
            "item.content[0].image_url",
            "not valid base64",
        ),
        (
            {"type": "input_image", "image_url": "ftp://x/y.png"},
            "item.content[0].image_url",
            "expected a data:image",
        ),
        (
            {"type": "input_image", "image_url": data_url(png(1, 1)), "detail": "max"},
            "item.content[0].detail",
            "Supported values",
        ),
        (
            {"type": "input_image", "url": data_url(png(1, 1))},  # the name before SDK 1.3.0
            "item.content[0].url",
            "Unknown parameter",
        ),
    ],
)
async def test_bad_image_parts_are_refused_and_nothing_is_added(
    part: dict[str, Any], param: str, words: str
) -> None:
    event = await _item_error(part)
    assert event["type"] == "error", event
    assert event["error"]["param"] == param
    assert words in event["error"]["message"]


async def test_images_are_user_content_only() -> None:
    part = {"type": "input_image", "image_url": data_url(png(1, 1))}
    event = await _item_error(part, role="assistant")
    assert event["type"] == "error" and event["error"]["param"] == "item.role"


def test_an_image_over_the_bound_is_refused_before_it_is_decoded() -> None:
    # bounded: the emulator refuses an image whose base64 says it is over MAX_IMAGE_BYTES
    huge = "data:image/png;base64," + "A" * (MAX_IMAGE_BYTES * 4 // 3 + 8)
    problem = read_image({"type": "input_image", "image_url": huge}, "item.content[0]")
    assert getattr(problem, "code", None) == "invalid_value"
    assert "over 20 MB" in getattr(problem, "message", "")


async def test_an_https_image_is_not_fetched_and_says_so() -> None:
    url = "https://example.invalid/menu.png"
    events, said = await reply_to(RequestImageContentPart(image_url=url))
    assert (
        said
        == f"[emulator] I received an image at a URL it did not fetch ({url}) and cannot see it."
    )
