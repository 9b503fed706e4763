"""Image turns in the browser console (issue 29 item 5): the page's typed turn can attach an
image; the server checks it (type by its bytes, a bounded size, a clear error otherwise) and
the conversation sends it with ``LiveSession.send_image``, after the reply in progress.

The real server in this loop and the embedded emulator, which says what image arrived."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.live.images import MAX_IMAGE_BYTES
from tests.browser import chromium
from tests.browser.harness import Page, Served, page, serving, write_profiles
from tests.test_emulator_images import png as grey_png

QUESTION = "what is in this picture?"


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG of ``width`` x ``height`` grey pixels."""
    return grey_png(width, height)


async def upload(
    served: Served,
    conversation: str,
    data: bytes,
    mime: str,
    text: str | None = QUESTION,
    *,
    origin: str | None = "own",
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename="picture", content_type=mime)
    if text is not None:
        form.add_field("text", text)
    headers = {"Origin": served.base if origin == "own" else origin} if origin else {}
    url = f"{served.base}/api/conversations/{conversation}/image"
    async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=headers) as r:
        body = await r.json(content_type=None) if r.content_type == "application/json" else None
        return r.status, body if body is not None else await r.text()


async def started(p: Page) -> str:
    await p.send({"type": "start", "profile": "weather"})
    session = (await p.wait(lambda: p.of("session")))[0]
    await p.wait(lambda: p.of("ready"))
    return str(session["conversation"])


async def test_an_image_turn_is_sent_and_answered(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as p:
        assert p.of("hello")[0]["max_image_bytes"] == MAX_IMAGE_BYTES
        conversation = await started(p)
        status, body = await upload(served, conversation, png(), "image/png")
        assert (status, body) == (202, {"queued": True, "mime": "image/png", "bytes": len(png())})
        user = await p.wait(lambda: next((e for e in p.of("user") if "[image" in e["text"]), None))
        assert user["text"] == f"[image png, {len(png())} bytes] {QUESTION}"
        answer = await p.wait(
            lambda: next((e for e in p.of("assistant") if "received" in e["text"]), None)
        )
        # the emulator says what arrived (the PNG's own size), and the question with it
        assert "an image (image/png" in answer["text"] and "3x2 pixels" in answer["text"]
        assert QUESTION in answer["text"]
        conv = served.host.conversations[conversation]
        assert conv.live is not None
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))
        # the image went out as an input_image part of a user message (a data: URL)
        trace = conv.trace_path.read_text(encoding="utf-8") if conv.trace_path else ""
        assert '"input_image"' in trace


@pytest.mark.parametrize(
    ("data", "mime", "status", "said"),
    [
        (b"%PDF-1.4 not an image", "application/pdf", 400, "not an image type the model reads"),
        (b"\xff\xd8\xff\xe0 a jpeg", "image/png", 400, "the bytes are image/jpeg, not image/png"),
        (b"", "image/png", 400, "the image is empty"),
        (png() + bytes(MAX_IMAGE_BYTES), "image/png", 413, "over the 8 MB an image may be"),
    ],
)
async def test_a_bad_image_gets_a_clear_error_and_the_conversation_goes_on(
    tmp_path: Path, data: bytes, mime: str, status: int, said: str
) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as p:
        conversation = await started(p)
        got, body = await upload(served, conversation, data, mime)
        assert got == status and said in body["error"], body
        assert body["hint"]  # and what to do about it
        # nothing was sent, and the conversation still takes turns
        await p.send({"type": "text", "text": "I typed this"})
        await p.wait(lambda: any("You typed that" in e["text"] for e in p.of("assistant")))
        assert not any("[image" in e["text"] for e in p.of("user"))


async def test_image_uploads_are_refused_outside_a_running_conversation(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    async with serving(tmp_path) as served, page(served) as p:
        status, body = await upload(served, "c1-nosuchconv", png(), "image/png")
        assert status == 404 and "no such conversation" in body["error"]
        conversation = await started(p)
        # another site's page cannot post into the conversation
        status, _ = await upload(
            served, conversation, png(), "image/png", origin="http://evil.test"
        )
        assert status == 403
        status, _ = await upload(served, conversation, png(), "image/png", origin=None)
        assert status == 403
        # a body declared over the bound is refused before it is read
        url = f"{served.base}/api/conversations/{conversation}/image"
        limit = served.options.max_image_body_bytes
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                data=b"x" * (limit + 1),
                headers={"Origin": served.base, "Content-Type": "multipart/form-data; boundary=b"},
            ) as r,
        ):
            assert r.status == 413
        # not a form: said so
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=png(), headers={"Origin": served.base}) as r,
        ):
            assert r.status == 400 and "multipart/form-data" in (await r.json())["error"]
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))
        status, body = await upload(served, conversation, png(), "image/png")
        assert status == 409 and "not running" in body["error"]


@pytest.mark.skipif(not chromium.available(), reason="needs chromium")
async def test_the_page_attaches_an_image_to_its_typed_turn(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    picture = list(png())
    async with serving(tmp_path) as served, chromium.chromium(tmp_path / "chrome") as b:
        await b.open(served.url, 1280, 800)
        await b.wait("document.querySelector('#profile option[value=weather]')")
        await b.eval(
            "(() => { const s = document.getElementById('profile'); s.value = 'weather';"
            " document.getElementById('start').click(); })()"
        )
        await b.wait("!document.getElementById('downloads').hidden", 30)
        attach = (
            "((bytes, name, type) => { const dt = new DataTransfer();"
            " dt.items.add(new File([new Uint8Array(bytes)], name, { type }));"
            " const input = document.getElementById('image'); input.files = dt.files;"
            " input.dispatchEvent(new Event('change')); })"
        )
        # too big for the bound: the page says so and keeps nothing attached
        await b.eval(
            f"(() => {{ const big = new Uint8Array({MAX_IMAGE_BYTES + 1});"
            " const dt = new DataTransfer(); dt.items.add(new File([big], 'huge.png',"
            " { type: 'image/png' })); const input = document.getElementById('image');"
            " input.files = dt.files; input.dispatchEvent(new Event('change')); })()"
        )
        # any of the messages: a notice from the session may come after the page's own
        assert "over the 8.0 MB" in await b.wait(
            "[...document.querySelectorAll('#messages li')].map((li) => li.textContent)"
            ".find((t) => t.includes('over the 8.0 MB'))"
        )
        assert await b.eval("document.getElementById('image').files.length") == 0
        await b.eval(f"({attach})({picture}, 'dot.png', 'image/png')")
        assert "dot.png" in await b.eval("document.getElementById('image-chosen').textContent")
        await b.eval(
            f"document.getElementById('text').value = '{QUESTION}';"
            "document.getElementById('send').click()"
        )
        said = await b.wait(
            "[...document.querySelectorAll('#transcript [data-role=assistant]')]"
            ".map((li) => li.textContent)"
            f".find((t) => t.includes('received an image') && t.includes('{QUESTION}'))",
            30,
        )
        assert "3x2 pixels" in said and QUESTION in said
        you = await b.eval(
            "[...document.querySelectorAll('#transcript [data-role=you]')]"
            ".map((li) => li.textContent).join('|')"
        )
        assert f"[image png, {len(png())} bytes] {QUESTION}" in you
        assert await b.eval("document.getElementById('image-chosen').hidden")
        # a file of another type: the server's error is shown as the page's error
        await b.eval(f"({attach})({list(b'not a picture')}, 'notes.txt', 'text/plain')")
        await b.eval("document.getElementById('send').click()")
        await b.wait(
            "[...document.querySelectorAll('#messages li')]"
            ".some((li) => li.textContent.includes('not an image type the model reads'))",
            20,
        )
