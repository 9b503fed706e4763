"""An aiohttp app served on a free loopback port for the length of a test's block."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def on_loopback(app: web.Application, shutdown_timeout: float = 1.0) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields the port, cleans up after."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
