"""A Voice Live connection that goes silent is noticed in seconds, and a handshake that never
completes leaves nothing open (issue 25, "Reconnects in lockstep": a silent drop was noticed
after about 45 s, then up to 30 s more for session.updated; a timed-out handshake leaked the
SDK's HTTP session).

Real SDK against the emulator; the stall is the emulator's ``delay_ms`` fault on an event the
emulator sends from its receive loop, so while it is held the emulator neither sends nor
answers pings, with its TCP connection open."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import warnings
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from runner.emulator import Faults, running_emulator
from runner.errors import ConnectError
from runner.live.connect import Target, open_connection
from tests.live_harness import KEY, Harness, build

WAIT_S = 15.0
STALL_MS = 4_000.0  # longer than the heartbeat or the configure wait needs; the emulator
# waits for a held handler when it stops, so not much longer


def _harness(endpoint: str, tmp: Path, *, heartbeat_s: float, **options: Any) -> Harness:
    h = build(endpoint, tmp, **options)
    h.session.target = dataclasses.replace(h.session.target, heartbeat_s=heartbeat_s)
    return h


async def test_a_service_that_goes_silent_mid_call_is_noticed_by_the_heartbeat(
    tmp_path: Path,
) -> None:
    """Mid-conversation the service stops sending and stops answering (its receive loop is
    held on the typed turn's conversation.item.created) but keeps TCP open. With a 1 s
    heartbeat the missed pong is a drop within about 1.5 s, and the session reconnects; with
    the SDK's 30 s heartbeat it took about 45 s (by then this stall is long over and nothing
    would have reconnected)."""
    faults = Faults(delay_ms=STALL_MS, delay_types=("conversation.item.created",), connections=(1,))
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False, faults=faults) as emu:
        h = _harness(emu.endpoint, tmp_path, heartbeat_s=1.0)
        session, turn = h.session, h.session.turn
        h.start()
        try:
            assert await turn.until(lambda: turn.connected, WAIT_S)
            await session.send_text("Tell me about Paris")
            noticed = await turn.until(
                lambda: session.metrics.reconnects >= 1 and turn.connected, WAIT_S
            )
            assert noticed, "the silent connection was not noticed"
            # the conversation goes on: a turn on the new connection is answered
            await session.send_text("And Rome?")
            await h.turn(lambda t: t.role == "assistant" and bool(t.text), WAIT_S)
        finally:
            await h.stop()
        connections = len(emu.sessions)
    assert connections >= 2  # (a loaded machine may miss a pong of the new one too)
    assert "No PONG received" in h.err, h.err


async def test_a_session_update_the_service_never_confirms_is_given_up_in_time(
    tmp_path: Path,
) -> None:
    """The first connection never confirms its session (session.updated held): after the
    configured wait (1 s here, 10 s by default, 30 s before) the session gives that
    connection up and configures a new one. The heartbeat is long here, so only the bounded
    wait can notice."""
    faults = Faults(delay_ms=STALL_MS, delay_types=("session.updated",), connections=(1,))
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False, faults=faults) as emu:
        h = _harness(emu.endpoint, tmp_path, heartbeat_s=60.0, configure_timeout_s=1.0)
        turn = h.session.turn
        h.start()
        try:
            assert await turn.until(lambda: turn.connected, WAIT_S), "never configured"
        finally:
            await h.stop()
        connections = len(emu.sessions)
    assert connections >= 2  # before, the one connection was configured once the stall ended
    assert h.session.metrics.reconnects >= 1
    assert "no session.updated within 1 s" in h.err, h.err


@contextlib.asynccontextmanager
async def _mute_server() -> Any:
    """A TCP server that accepts, reads the upgrade request and never answers it; yields its
    endpoint and a queue that gets one item per request read."""
    held: list[asyncio.StreamWriter] = []
    requests: asyncio.Queue[bytes] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            requests.put_nowait(await reader.readuntil(b"\r\n\r\n"))
            await reader.read()  # until the client goes

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def _unclosed_reports() -> Any:
    """Every "Unclosed client session / connector" the block leaves (warnings and the loop's
    exception handler), collected after a full garbage collection."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    found: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    found += [str(w.message) for w in caught if "Unclosed" in str(w.message)]
    found += [str(c.get("message")) for c in reported if "Unclosed" in str(c.get("message"))]


async def test_a_timed_out_handshake_leaves_no_http_session_open() -> None:
    """The SDK opens an aiohttp ClientSession for the handshake; when our timeout cut the
    handshake off, nothing closed it ("Unclosed client session" when it was collected)."""
    with _unclosed_reports() as unclosed:
        async with _mute_server() as (endpoint, requests):
            target = Target(endpoint, "test", KEY, "test", "gpt-realtime", connect_timeout_s=0.3)
            for _ in range(3):
                with pytest.raises(ConnectError, match="did not answer the handshake"):
                    async with open_connection(target, endpoint, AzureKeyCredential(KEY)):
                        pass
            assert requests.qsize() == 3  # each attempt did reach the server
    assert unclosed == []


async def test_a_handshake_its_owner_cancels_leaves_no_http_session_open() -> None:
    """A call that ends while its connection is still being opened (the caller hung up)."""
    with _unclosed_reports() as unclosed:
        async with _mute_server() as (endpoint, requests):
            target = Target(endpoint, "test", KEY, "test", "gpt-realtime", connect_timeout_s=30)

            async def connect_once() -> None:
                async with open_connection(target, endpoint, AzureKeyCredential(KEY)):
                    pass

            task = asyncio.create_task(connect_once())
            await asyncio.wait_for(requests.get(), WAIT_S)  # the upgrade request is out
            task.cancel()
            await asyncio.wait({task})
            assert task.cancelled()
            del task  # its CancelledError's traceback would keep the handshake's frames alive
    assert unclosed == []


async def test_the_heartbeat_reaches_the_socket(tmp_path: Path) -> None:
    """The target's heartbeat is the WebSocket's (the SDK would otherwise ping every 30 s)."""
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        target = Target(emu.endpoint, "test", KEY, "test", "gpt-realtime", heartbeat_s=1.5)
        async with open_connection(target, emu.endpoint, AzureKeyCredential(KEY)) as conn:
            ws = conn._connection  # noqa: SLF001 - the aiohttp socket inside the SDK's
            assert ws._heartbeat == 1.5  # noqa: SLF001
