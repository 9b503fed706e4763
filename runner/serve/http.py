"""What the phone edges' HTTP handlers share: reading a request body whole, within a bound."""

from __future__ import annotations

from typing import Any


class TooLarge(Exception):
    """The body is longer than the handler's bound (answer 413)."""


async def read_body(request: Any, limit: int) -> bytes:
    """The whole body, or TooLarge past ``limit`` bytes.

    ``StreamReader.read(n)`` returns what has arrived so far, not n bytes: a body sent in
    several chunks would be cut short and parsed as something else. This reads to the end.
    """
    if (request.content_length or 0) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
