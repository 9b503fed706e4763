"""The image upload's bounds (the browser console's image turns): a refused upload is refused
before its body is read, a chunked form is bounded as a whole, and the sender of a
conversation's image turns outlives one image that fails.

The real server in this loop and the embedded emulator; raw sockets where the point is what
the server does before a body has arrived."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from runner.live.images import MAX_IMAGE_BYTES
from runner.serve.host import Conversation, _image_turns
from tests.browser.harness import page, serving, write_profiles
from tests.test_serve_console_images import png, started, upload

WAIT_S = 10.0


async def _headers_only(base: str, path: str, length: int) -> tuple[int, dict[str, Any]]:
    """POST a multipart form declaring ``length`` bytes, send a few, and read the answer
    (the rest of the body is never sent)."""
    split = urlsplit(base)
    reader, writer = await asyncio.open_connection(split.hostname, split.port)
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {split.netloc}\r\nOrigin: {base}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
            '--b\r\nContent-Disposition: form-data; name="image"\r\n'
            "Content-Type: image/png\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), WAIT_S)
        raw = await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        writer.close()
    body = raw.split(b"\r\n\r\n", 1)[1]
    return int(status_line.split()[1]), json.loads(body)


async def test_an_upload_to_a_conversation_that_cannot_take_it_is_refused_before_its_body(
    tmp_path: Path,
) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as p:
        conversation = await started(p)
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))
        path = f"/api/conversations/{conversation}/image"
        # answered at once, not after the body (it never comes: the old code waited for it)
        status, body = await _headers_only(served.base, path, 1024 * 1024)
        assert status == 409 and "not running" in body["error"], body


async def test_a_chunked_form_is_bounded_as_a_whole(tmp_path: Path) -> None:
    """A chunked body declares no length; parts the route does not read still count."""
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as p:
        conversation = await started(p)
        limit = served.options.max_image_body_bytes
        junk = bytes(MAX_IMAGE_BYTES // 2)

        async def chunked() -> Any:
            yield b'--b\r\nContent-Disposition: form-data; name="image"\r\n'
            yield b"Content-Type: image/png\r\n\r\n" + png() + b"\r\n"
            for k in range(limit // len(junk) + 2):  # past the bound, a part at a time
                yield f'--b\r\nContent-Disposition: form-data; name="x{k}"\r\n\r\n'.encode()
                yield junk + b"\r\n"
            yield b"--b--\r\n"

        url = f"{served.base}/api/conversations/{conversation}/image"
        headers = {"Origin": served.base, "Content-Type": "multipart/form-data; boundary=b"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=chunked(), headers=headers) as r,
        ):
            status, body = r.status, await r.json(content_type=None)
        assert status == 413 and "over the upload's bound" in body["error"], body
        # nothing was queued; the conversation still takes an image
        status, body = await upload(served, conversation, png(), "image/png")
        assert status == 202, body
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))


async def test_one_upload_is_read_at_a_time_per_conversation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While one image is being read, a second upload to the same conversation is refused
    at once (the memory an upload holds is bounded per conversation); an upload cut off
    midway is no server error."""

    caplog.set_level(logging.ERROR)

    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as p:
        conversation = await started(p)
        split = urlsplit(served.base)
        reader, writer = await asyncio.open_connection(split.hostname, split.port)
        head = (
            f"POST /api/conversations/{conversation}/image HTTP/1.1\r\nHost: {split.netloc}\r\n"
            f"Origin: {served.base}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            "Content-Length: 100000\r\n\r\n"
            '--b\r\nContent-Disposition: form-data; name="image"\r\n'
            "Content-Type: image/png\r\n\r\n"
        )
        writer.write(head.encode() + png())
        await writer.drain()
        conv = served.host.conversations[conversation]
        # the server is reading it: wait on the conversation's own change condition
        assert await conv.upload_changes.until(lambda: conv.uploading, WAIT_S), "never read"
        status, body = await upload(served, conversation, png(), "image/png")
        assert status == 409 and "being uploaded already" in body["error"], body
        writer.close()  # the first upload is abandoned: the next one is taken
        await reader.read()
        assert await conv.upload_changes.until(lambda: not conv.uploading, WAIT_S), "never ended"
        status, body = await upload(served, conversation, png(), "image/png")
        assert status == 202, body
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))
    assert "Error handling request" not in caplog.text


class _Session:
    """A live session whose first image fails the way a broken socket would."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_image(self, data: bytes, mime: str, text: str | None = None) -> None:
        if not self.sent:
            self.sent.append("failed")
            raise ConnectionResetError("the socket went away")
        self.sent.append(mime)


class _Transcript:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        self.errors.append(message)


async def test_one_image_that_fails_does_not_stop_the_next_from_being_sent() -> None:
    conv = Conversation(id="c1", profile="p", kind="browser")
    conv.transcript = _Transcript()  # type: ignore[assignment]
    live = _Session()
    conv._images.put((png(), "image/png", None))
    conv._images.put((png(), "image/gif", None))
    conv._images.close()
    await asyncio.wait_for(_image_turns(conv, live), WAIT_S)  # type: ignore[arg-type]
    assert live.sent == ["failed", "image/gif"]
    assert conv.transcript.errors == ["the image turn (image/png) could not be sent"]  # type: ignore[attr-defined]
