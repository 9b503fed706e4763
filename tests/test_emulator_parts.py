"""The emulator's connection as composed parts (issue 26), and the service-side controls the
live-session tests use: ``Emulator.cut_all`` and a ``stop()`` that a held connection does not
hold up. Real sockets on loopback; the structure is read from the source."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from runner.emulator import Faults, running_emulator

EMULATOR = Path(__file__).resolve().parents[1] / "runner" / "emulator"
WAIT_S = 10.0


def url(endpoint: str) -> str:
    return endpoint.replace("http://", "ws://") + "/voice-live/realtime?model=gpt-realtime"


async def closed_by_server(ws: Any) -> ConnectionClosed:
    """Read until the server ends the connection; the closing exception."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    except ConnectionClosed as exc:
        return exc


async def configured(ws: Any) -> None:
    """session.created, a session.update, and its session.updated: the session is running."""
    assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "session.created"
    await ws.send(json.dumps({"type": "session.update", "session": {}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "session.updated"


async def test_stop_cancels_a_connection_a_delay_fault_holds() -> None:
    """stop() closes the socket and cancels the handler stuck in a delay fault (before: aiohttp
    waited its 60 s default for the handler, so this stop ran past its deadline)."""
    faults = Faults(delay_ms=600_000, delay_types=("session.updated",))
    async with (
        running_emulator(speed=0, faults=faults, use_espeak=False) as emu,
        connect(url(emu.endpoint)) as ws,
    ):
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "session.created"
        await ws.send(json.dumps({"type": "session.update", "session": {}}))
        # the reader loop is now inside the handler, which holds session.updated 600 s
        await emu.wait_for(lambda e: e["type"] == "session.update", WAIT_S)
        await asyncio.wait_for(emu.stop(), WAIT_S)
        closed = await closed_by_server(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    record = emu.sessions[0]
    assert record.closed
    assert "session.updated" not in record.sent_types()


async def test_cut_all_with_a_code_closes_every_live_socket_with_it() -> None:
    async with (
        running_emulator(speed=0, use_espeak=False) as emu,
        connect(url(emu.endpoint)) as one,
        connect(url(emu.endpoint)) as two,
    ):
        await configured(one)
        await configured(two)
        assert await emu.cut_all(4002) == 2
        for ws in (one, two):
            closed = await closed_by_server(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 4002
    assert all(r.closed for r in emu.sessions)


async def test_cut_all_without_a_code_cuts_the_link_with_no_close_frame() -> None:
    async with (
        running_emulator(speed=0, use_espeak=False) as emu,
        connect(url(emu.endpoint)) as ws,
    ):
        await configured(ws)
        assert await emu.cut_all(None) == 1
        closed = await closed_by_server(ws)
    assert closed.rcvd is None  # the TCP link went: the client got no close frame
    assert emu.sessions[0].closed


# --- structure, read from the source --------------------------------------------------------------


def _classes() -> dict[str, tuple[Path, ast.ClassDef]]:
    found: dict[str, tuple[Path, ast.ClassDef]] = {}
    for path in sorted(EMULATOR.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                found[node.name] = (path, node)
    return found


def test_no_emulator_class_inherits_from_more_than_one_project_class() -> None:
    classes = _classes()
    multiple = {
        f"{path.name}:{node.name}": [ast.unparse(b) for b in node.bases]
        for name, (path, node) in classes.items()
        if sum(ast.unparse(b) in classes for b in node.bases) > 1
    }
    assert multiple == {}
    # the parts stand alone: none derives from another class of the emulator
    for part in ("Connection", "InputAudio", "Responses", "ToolCalls", "Outbox", "Conversation"):
        assert classes[part][1].bases == [], part


def test_no_part_reaches_into_another_objects_private_attributes() -> None:
    """``x._name`` only on ``self`` (or the class itself): what a part needs is published."""
    reaches: list[str] = []
    for path in sorted(EMULATOR.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert "noqa: SLF001" not in source, path.name
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                reaches.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert reaches == []


def test_the_emulator_defines_no_host_class() -> None:
    """The emulator's old ``Host`` shared a name with runner/serve/host.py's."""
    assert "Host" not in _classes()
