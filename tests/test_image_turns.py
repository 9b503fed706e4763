"""Issue 29 item 5: image turns. ``LiveSession.send_image`` sends an ``input_image`` content part
(the SDK's RequestImageContentPart, ``image_url`` a data URL) with the question in the same user
message, through the real SDK to the emulator; the console's ``/image PATH [question]`` does the
same from a typed line; what cannot be sent is one clear error, before anything goes out."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from runner.emulator import running_emulator
from runner.live.audio import AudioFormat, ClockPlayer
from runner.live.connect import Target
from runner.live.images import MAX_IMAGE_BYTES, ImageError, parse_image_command
from runner.live.session import LiveSession
from runner.live.transcript import Transcript
from tests.test_emulator_images import png as grey_png

ROOT = Path(__file__).resolve().parents[1]
CASUAL = str(ROOT / "profiles" / "casual-chat.yaml")
KEY = "image-turn-key-0123456789"


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG of grey pixels (the emulator's image tests build it)."""
    return grey_png(width, height)


def _session(endpoint: str) -> LiveSession:
    return LiveSession(
        target=Target(endpoint, "test", KEY, "test", "gpt-realtime"),
        endpoint=endpoint,
        credential=AzureKeyCredential(KEY),
        session_update={"type": "session.update", "session": {"modalities": ["text", "audio"]}},
        transcript=Transcript(out=io.StringIO(), err=io.StringIO()),
        player=ClockPlayer(AudioFormat(24000), realtime=False),
        lines=False,
    )


def _image_items(record: Any) -> list[dict[str, Any]]:
    return [
        e["item"]
        for e in record.received
        if e["type"] == "conversation.item.create"
        and any(p.get("type") == "input_image" for p in e["item"].get("content", []))
    ]


async def test_send_image_sends_an_input_image_part_and_gets_a_reply() -> None:
    image = png()
    async with running_emulator(speed=0) as emu:
        session = _session(emu.endpoint)
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 10)
        await session.send_image(image, "image/png", "what colour is this?")
        turn = session.turn
        assert await turn.until(lambda: turn.responses_ended >= 1 and turn.idle(), 10)
        session.stop()
        assert await asyncio.wait_for(task, 10) == 0
        record = emu.sessions[-1]
    (item,) = _image_items(record)
    assert item["role"] == "user" and item["type"] == "message"
    text, picture = item["content"]
    assert text == {"type": "input_text", "text": "what colour is this?"}
    assert picture["image_url"] == "data:image/png;base64," + base64.b64encode(image).decode()
    kinds = [e["type"] for e in record.received]
    assert kinds.index("response.create") > kinds.index("conversation.item.create")
    turns = session.transcript.turns
    assert turns[0].role == "user"
    assert turns[0].text == f"[image png, {len(image)} bytes] what colour is this?"
    assert turns[1].role == "assistant" and turns[1].text


@pytest.mark.parametrize(
    ("data", "mime", "says"),
    [
        (png(), "image/bmp", "image/bmp is not an image type the model reads"),
        (png(), "", "no type is not an image type"),
        (b"", "image/png", "the image is empty"),
        (png(), "image/jpeg", "the bytes are image/png, not image/jpeg"),
        (b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES), "image/png", "over the 8 MB"),
    ],
)
async def test_what_cannot_be_sent_is_refused_before_anything_goes_out(
    data: bytes, mime: str, says: str
) -> None:
    async with running_emulator(speed=0) as emu:
        session = _session(emu.endpoint)
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 10)
        with pytest.raises(ImageError) as caught:
            await session.send_image(data, mime, "what is it?")
        session.stop()
        await asyncio.wait_for(task, 10)
        record = emu.sessions[-1]
    assert says in caught.value.message and caught.value.hint
    assert not _image_items(record)
    assert "response.create" not in [e["type"] for e in record.received]


def test_parse_image_command() -> None:
    assert parse_image_command("/image cat.png what is it?") == ("cat.png", "what is it?")
    assert parse_image_command("/IMAGE cat.png") == ("cat.png", None)
    assert parse_image_command('/image "my cat.png" and this?') == ("my cat.png", "and this?")
    assert parse_image_command("/image") == ("", None)
    assert parse_image_command("/images are nice") is None
    assert parse_image_command("hello") is None


def test_the_console_sends_an_image_from_a_typed_line(
    run_cli: Any, emulator_in_thread: Any, tmp_path: Path
) -> None:
    (tmp_path / "pic.png").write_bytes(png())
    (tmp_path / "notes.txt").write_text("not an image", encoding="utf-8")
    result = run_cli(
        [CASUAL, "--text", "--logs", "-"],
        input=(
            "/image missing.png what is it?\n"
            "/image notes.txt\n"
            "/image\n"
            "/image pic.png what colour is it?\n"
        ),
        env={
            "AZURE_VOICELIVE_ENDPOINT": emulator_in_thread.endpoint,
            "AZURE_VOICELIVE_API_KEY": KEY,
        },
    )
    assert result.returncode == 0, result.stderr
    assert "error: missing.png: no such file" in result.stderr
    assert "error: notes.txt: not a PNG, JPEG, GIF or WebP image" in result.stderr
    assert "error: /image needs a file: /image PATH [question]" in result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"you: [image png, {len(png())} bytes] what colour is it?"
    assert out[1].startswith("assistant: [emulator]")
    assert len(out) == 2  # the refused lines were not turns
    (item,) = _image_items(emulator_in_thread.sessions[-1])
    assert item["content"][-1]["image_url"].startswith("data:image/png;base64,iVBOR")
