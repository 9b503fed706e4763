"""Image content parts (``input_image``) the emulator receives: checked, measured, never seen.

source: docs/emulator.md#input-image. SDK 1.3.0 ``RequestImageContentPart`` (``image_url``, which
1.3.0 renamed from ``url``; ``detail`` auto/low/high). The emulator reads an image's type, byte
size and pixel size from its header, so a reply can say what arrived; it never looks at the
picture. Pure data work, like protocol.py.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Any

#: the image types vision models read (OpenAI's image inputs: PNG, JPEG, WebP, non-animated GIF)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: the emulator's bound on one image (decoded). fidelity: the service documents no limit; a
#: bound keeps one event from holding the emulator's memory (vlrun itself sends at most 8 MB)
MAX_IMAGE_BYTES = 20 * 1024 * 1024
DETAILS = ("auto", "low", "high")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)(?:;[\w=.+-]+)*;base64,(.*)", re.S)


@dataclass(frozen=True)
class Image:
    """What the emulator can say about a received image."""

    mime: str
    size: int  # bytes, decoded; 0 for an image given by URL
    width: int | None = None
    height: int | None = None
    url: str | None = None  # an https URL the emulator did not fetch

    def describe(self) -> str:
        if self.url is not None:
            return f"an image at a URL it did not fetch ({self.url[:60]})"
        dims = f", {self.width}x{self.height} pixels" if self.width and self.height else ""
        return f"an image ({self.mime}, {_kb(self.size)}{dims})"


@dataclass(frozen=True)
class ImageProblem:
    code: str
    message: str
    param: str


def read_image(part: dict[str, Any], param: str) -> Image | ImageProblem:
    """One ``input_image`` part: the image it carries, or what is wrong with it."""
    unknown = set(part) - {"type", "image_url", "detail"}
    if unknown:
        key = sorted(unknown)[0]
        return ImageProblem(
            "unknown_parameter", f"Unknown parameter: '{param}.{key}'.", f"{param}.{key}"
        )
    detail = part.get("detail")
    if detail is not None and detail not in DETAILS:
        return ImageProblem(
            "invalid_value",
            f"Invalid value: {detail!r}. Supported values are: 'auto', 'low', 'high'.",
            f"{param}.detail",
        )
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        return ImageProblem(
            "missing_required_parameter",
            f"Missing required parameter: '{param}.image_url'.",
            f"{param}.image_url",
        )
    if url.startswith("https://"):
        return Image(mime="", size=0, url=url)
    found = _DATA_URL.fullmatch(url)
    where = f"{param}.image_url"
    if found is None:
        return ImageProblem(
            "invalid_value",
            f"Invalid '{where}': expected a data:image/...;base64, URL or an https URL.",
            where,
        )
    mime = found.group(1).lower()
    if mime not in IMAGE_TYPES:
        return ImageProblem(
            "invalid_value",
            f"Invalid '{where}': {mime} is not a supported image type (PNG, JPEG, GIF, WebP).",
            where,
        )
    encoded = found.group(2)
    if len(encoded) * 3 // 4 > MAX_IMAGE_BYTES:
        return ImageProblem(
            "invalid_value",
            f"Invalid '{where}': the image is over {MAX_IMAGE_BYTES // 1048576} MB.",
            where,
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return ImageProblem("invalid_value", f"Invalid '{where}': not valid base64.", where)
    if not data:
        return ImageProblem("invalid_value", f"Invalid '{where}': the image is empty.", where)
    said = _sniff(data)
    if said != mime:
        return ImageProblem(
            "invalid_value",
            f"Invalid '{where}': the data is {said or 'not an image'}, not {mime}.",
            where,
        )
    width, height = _pixels(data, mime)
    return Image(mime=mime, size=len(data), width=width, height=height)


def _kb(size: int) -> str:
    return f"{size} bytes" if size < 1024 else f"{size / 1024:.1f} kB"


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _pixels(data: bytes, mime: str) -> tuple[int | None, int | None]:
    """Width and height from the header (None, None when it cannot be read)."""
    try:
        if mime == "image/png" and len(data) >= 24:
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if mime == "image/gif" and len(data) >= 10:
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if mime == "image/jpeg":
            return _jpeg_pixels(data)
    except struct.error:
        pass
    return None, None


def _jpeg_pixels(data: bytes) -> tuple[int | None, int | None]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None, None
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):  # start of frame: height, then width
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None, None
