"""The emulator's held sends (``Outbox.hold`` / ``flush``): the events that go out at one moment
(an audio chunk and its transcript delta) in one socket write, the same bytes on the wire.

An Outbox runs on a real aiohttp server socket on loopback; a real client reads the frames.
The transport the Outbox writes to is the request's own, seen through a counter of writes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect

from runner import speedups
from runner.emulator import protocol as P
from runner.emulator import running_emulator
from runner.emulator.conversation import Conversation
from runner.emulator.faults import Faults
from runner.emulator.fidelity import Fidelity
from runner.emulator.model import ScriptedModel
from runner.emulator.outbox import BACKLOG_BYTES, Outbox, Tasks
from runner.emulator.record import SessionRecord
from runner.emulator.responses import Responses
from runner.emulator.tool_calls import ToolCalls
from tests.helpers import serve_on_loopback

pytestmark = pytest.mark.timeout(60)
WAIT_S = 10.0


class CountingTransport:
    """The request's transport, its writes counted (and its backlog made to look full)."""

    def __init__(self, transport: Any, *, backlog: int | None = None) -> None:
        self._transport, self.backlog = transport, backlog
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        if self.backlog is not None:
            return self.backlog
        return int(self._transport.get_write_buffer_size())

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())


Body = Callable[[Outbox, CountingTransport], Awaitable[None]]


@asynccontextmanager
async def served(
    body: Body, *, faults: Faults | None = None, compress: int = 0
) -> AsyncIterator[tuple[list[str], CountingTransport]]:
    """Run ``body`` on a server socket's Outbox; the texts the client read, and the counter."""
    seen: dict[str, CountingTransport] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        counter = seen["t"] = CountingTransport(request.transport)
        record = SessionRecord(number=1, query={}, headers={})
        outbox = Outbox(
            ws,
            record,
            faults=faults,
            record_audio=False,
            fidelity=Fidelity(),
            abort=lambda: None,
            load=True,
            transport=counter,
        )
        await body(outbox, counter)
        await ws.close()
        return ws

    runner, port = await serve_on_loopback(handler)
    texts: list[str] = []
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}/", compress=compress) as ws,
        ):
            while True:
                msg = await asyncio.wait_for(ws.receive(), WAIT_S)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                texts.append(msg.data)
        yield texts, seen["t"]
    finally:
        await runner.cleanup()


EVENTS = [
    {"type": "response.audio_transcript.delta", "delta": "Hello"},
    {"type": "response.audio.delta", "delta": "A" * 70_000},  # a 64-bit length frame
    {"type": "response.audio.delta", "delta": "/+" * 300},  # a 16-bit length frame
    {"type": "response.output_audio_timestamp.delta", "text": "hi"},  # a 7-bit length frame
]


def sent(texts: list[str]) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(t).items() if k != "event_id"} for t in texts]


async def send_all(outbox: Outbox) -> None:
    for event in EVENTS:
        await outbox.send(dict(event))


async def test_held_events_go_out_in_one_write_whole_and_in_order() -> None:
    async def body(outbox: Outbox, counter: CountingTransport) -> None:
        assert outbox.hold()
        await send_all(outbox)
        assert counter.writes == 0  # held until the flush
        await outbox.flush()
        assert counter.writes == 1
        await outbox.send({"type": "after"})  # not held: aiohttp's own write
        assert counter.writes == 1

    async with served(body) as (texts, counter):
        assert sent(texts) == [*EVENTS, {"type": "after"}]
        # the text is what the Outbox serialises for any event (event_id last)
        assert texts[0] == speedups.dumps(
            {**EVENTS[0], "event_id": json.loads(texts[0])["event_id"]}
        )


async def test_nothing_is_held_where_faults_apply() -> None:
    """An injected delay or error counts events one by one: they are not held."""

    async def body(outbox: Outbox, counter: CountingTransport) -> None:
        assert not outbox.hold()
        await send_all(outbox)
        await outbox.flush()  # nothing held: nothing to do
        assert counter.writes == 0

    faults = Faults(error_after_events=2)
    async with served(body, faults=faults) as (texts, _):
        kinds = [e["type"] for e in sent(texts)]
        assert kinds == [EVENTS[0]["type"], EVENTS[1]["type"], "error", *kinds[3:]]
        assert kinds[3:] == [EVENTS[2]["type"], EVENTS[3]["type"]]


async def test_nothing_is_held_for_a_client_that_negotiated_compression() -> None:
    """aiohttp compresses each message for such a client: the wire keeps its compressed form."""

    async def body(outbox: Outbox, counter: CountingTransport) -> None:
        assert outbox.ws.compress
        assert not outbox.hold()
        await send_all(outbox)
        assert counter.writes == 0

    async with served(body, compress=15) as (texts, _):
        assert sent(texts) == EVENTS


async def test_a_client_behind_gets_events_through_aiohttps_flow_control() -> None:
    """Nothing is held for a client whose socket has a backlog; events held while it built up
    go out one by one through aiohttp's send, which waits for the client."""

    async def body(outbox: Outbox, counter: CountingTransport) -> None:
        counter.backlog = BACKLOG_BYTES
        assert not outbox.hold()
        await send_all(outbox)
        counter.backlog = None
        assert outbox.hold()
        await send_all(outbox)
        counter.backlog = BACKLOG_BYTES  # behind by the time of the flush
        await outbox.flush()
        assert counter.writes == 0

    async with served(body) as (texts, _):
        assert sent(texts) == EVENTS + EVENTS


async def test_a_flush_after_the_socket_closed_writes_nothing() -> None:
    async def body(outbox: Outbox, counter: CountingTransport) -> None:
        assert outbox.hold()
        await send_all(outbox)
        await outbox.ws.close()
        await outbox.flush()
        assert counter.writes == 0

    async with served(body) as (texts, _):
        assert texts == []


async def test_a_replys_audio_deltas_are_the_bytes_send_would_write() -> None:
    """The audio deltas' JSON is built from a head made once per reply: each must be the text
    ``Outbox.send`` writes for the same event (the same fields, in the same order)."""
    script = {"turns": [{"match": "tell", "say": "The river runs past the old mill."}]}
    async with running_emulator(scenario=script, speed=0, use_espeak=False) as emu:
        url = emu.endpoint.replace("http://", "ws://") + "/voice-live/realtime?model=gpt-realtime"
        texts: list[str] = []
        async with connect(url) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {}}))
            item = {"type": "message", "role": "user"}
            item["content"] = [{"type": "input_text", "text": "tell me"}]
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            await ws.send(json.dumps({"type": "response.create"}))
            while '"type":"response.done"' not in (
                text := str(await asyncio.wait_for(ws.recv(), WAIT_S))
            ):
                texts.append(text)
        recorded = [e for e in emu.sessions[0].sent if e["type"] == "response.audio.delta"]
    deltas = [t for t in texts if json.loads(t)["type"] == "response.audio.delta"]
    assert len(deltas) > 5
    assert [json.loads(t) for t in deltas] == recorded  # the record keeps what went out
    for text in deltas:
        event = json.loads(text)
        assert list(event) == [
            "type",
            "response_id",
            "item_id",
            "output_index",
            "content_index",
            "delta",
            "event_id",
        ]
        assert text == speedups.dumps(event)


async def test_a_spoken_reply_goes_out_in_one_write_per_moment() -> None:
    """A reply's events that go out together are written together: its opening events, its
    item and part, each audio chunk with its transcript delta, and its closing events; then
    response.done, alone (the status is worked out after the part closes), by aiohttp's own
    send."""
    reply = "The river runs past the old mill."
    got: dict[str, int] = {}

    async def body(outbox: Outbox, counter: CountingTransport) -> None:
        session = P.default_session("gpt-realtime", P.DEFAULT_API_VERSION, "sess_x", 0, None)
        conv, tasks, model = Conversation(outbox, session), Tasks(), ScriptedModel(None)
        tools = ToolCalls(outbox, conv, model, tasks, speed=0, mcp_latency_ms=0)
        responses = Responses(outbox, conv, model, tools, tasks, speed=0, use_espeak=False)
        said = {"content": [{"type": "text", "text": reply}]}
        await responses.start({"pre_generated_assistant_message": said})
        assert responses.active is not None and responses.active.task is not None
        await asyncio.wait_for(responses.active.task, WAIT_S)
        got["writes"] = counter.writes
        await tasks.close()

    async with served(body) as (texts, _):
        kinds = [e["type"] for e in sent(texts)]
    chunks = kinds.count("response.audio.delta")
    assert chunks > 5 and kinds[0] == "response.created" and kinds[-1] == "response.done"
    assert got["writes"] == 3 + chunks
