"""Image turns (issue 29 item 5): an image, and optionally a question about it, as one user turn.

The service takes images as ``input_image`` content parts of a user message, the image inline as
a ``data:`` URL (the SDK's ``RequestImageContentPart(image_url=...)``, 1.3.0 renamed ``url`` to
``image_url``). What goes out is checked here first: a type the models read (PNG, JPEG, GIF,
WebP, told by the file's own bytes, not its name) and a bounded size, each refusal one
:class:`ImageError` that names the file and the fix.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from runner.errors import VlrunError

#: The image types vision models read (OpenAI's image inputs: PNG, JPEG, WEBP, non-animated GIF).
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: vlrun's bound on one image, before base64: a photo from a phone is 2-5 MB; the service
#: documents no limit of its own, and one event carries the whole image (a third more as base64).
MAX_IMAGE_BYTES = 8 * 1024 * 1024
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class ImageError(VlrunError):
    """An image that cannot be sent: missing, unreadable, of a type not taken, or too big."""


def sniff(data: bytes) -> str | None:
    """The image type the bytes themselves say (None: none of :data:`IMAGE_TYPES`)."""
    for magic, mime in _SIGNATURES:
        if data.startswith(magic):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image(data: bytes, mime: str, where: str = "the image") -> str:
    """The image's type, after checking it may be sent; raises :class:`ImageError`."""
    kind = mime.split(";", 1)[0].strip().lower()
    if kind == "image/jpg":
        kind = "image/jpeg"
    if kind not in IMAGE_TYPES:
        raise ImageError(
            f"{where}: {mime or 'no type'} is not an image type the model reads",
            hint="send a PNG, JPEG, GIF or WebP image",
        )
    if not data:
        raise ImageError(f"{where}: the image is empty", hint="send a PNG, JPEG, GIF or WebP file")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(
            f"{where}: {len(data) / 1048576:.1f} MB is over the {MAX_IMAGE_BYTES // 1048576} MB "
            "an image may be",
            hint="scale it down (e.g. `convert in.png -resize 1600x1600 out.jpg`)",
        )
    said = sniff(data)
    if said is not None and said != kind:
        raise ImageError(
            f"{where}: the bytes are {said}, not {kind}",
            hint=f"send it as {said}, or convert the file",
        )
    return kind


def read_image(path: Path) -> tuple[bytes, str]:
    """An image file's bytes and type (told by its bytes); raises :class:`ImageError`."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageError(f"{path}: not a file", hint="name an image file")
        if size > MAX_IMAGE_BYTES:
            raise ImageError(
                f"{path}: {size / 1048576:.1f} MB is over the {MAX_IMAGE_BYTES // 1048576} MB "
                "an image may be",
                hint="scale it down (e.g. `convert in.png -resize 1600x1600 out.jpg`)",
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(
            f"{path}: no such file", hint="check the path (relative to where vlrun runs)"
        ) from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    mime = sniff(data)
    if mime is None:
        raise ImageError(
            f"{path}: not a PNG, JPEG, GIF or WebP image",
            hint="convert it, e.g. `convert in.bmp out.png`",
        )
    return data, check_image(data, mime, str(path))


def image_message(data: bytes, mime: str, text: str | None) -> dict[str, Any]:
    """The ``conversation.item.create`` item: a user message with the image (and the text)."""
    from azure.ai.voicelive.models import (
        InputTextContentPart,
        RequestImageContentPart,
        UserMessageItem,
    )

    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    parts: list[Any] = []
    if text:
        parts.append(InputTextContentPart(text=text))
    parts.append(RequestImageContentPart(image_url=url))
    return dict(UserMessageItem(content=parts).as_dict())


def describe(data: bytes, mime: str, text: str | None) -> str:
    """What the transcript shows of an image turn (never the bytes)."""
    size = f"{len(data) / 1024:.0f} KB" if len(data) >= 1024 else f"{len(data)} bytes"
    shown = f"[image {mime.split('/', 1)[-1]}, {size}]"
    return f"{shown} {text}" if text else shown


def parse_image_command(line: str) -> tuple[str, str | None] | None:
    """``/image PATH [question]`` -> (path, question); a quoted path may hold spaces.
    None when the line is not an image command."""
    head, _, rest = line.strip().partition(" ")
    if head.lower() != "/image":
        return None
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = rest.find(quote, 1)
        if end > 0:
            path, question = rest[1:end], rest[end + 1 :].strip()
            return path, question or None
    path, _, question = rest.partition(" ")
    return path, question.strip() or None
