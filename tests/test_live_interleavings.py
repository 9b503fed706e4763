"""Seeded random schedules: the real LiveSession against the real emulator, under any order.

A schedule mixes typed turns, speech and barge-ins, tool calls (fast, slow, hanging, raising,
bad JSON, a registry that fails), MCP approvals (yes, no, late, never), dropped connections
(the emulator's ``drop_after_events`` fault, or a cut TCP link at a random moment) and ``q``
or Ctrl+C. After every schedule these hold:

- it ended within its time budget (no deadlock), and ``q`` / Ctrl+C ended it within 1.5 s;
- every reply the client received complete is in the transcript exactly once, nothing is
  recorded twice, and no reply is invented;
- no ``function_call_output`` went out for a call_id the connection it went on did not issue
  (the emulator refuses those with an error naming ``item.call_id``: there is none);
- every task exception was reported (console line) and none went unretrieved.

``VLRUN_SCHEDULES`` sets how many schedules run (default 300); a failure names its seed, and
``VLRUN_SCHEDULE_SEED=N`` replays that one schedule alone.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from runner.emulator import Faults, running_emulator
from runner.live.audio import ClockPlayer
from runner.live.connect import Target
from runner.live.session import LiveSession
from runner.live.transcript import Transcript
from runner.plugins import Registry, ToolContext, tool
from tests.live_harness import FMT, KEY, issued_calls, outputs, tone

SCHEDULES = int(os.environ.get("VLRUN_SCHEDULES", "300"))
ONLY_SEED = os.environ.get("VLRUN_SCHEDULE_SEED")
PER_TEST = 25
BUDGET_S = 8.0  # a whole schedule, from start to the end of run()
EXIT_S = 1.5  # from q / Ctrl+C to the end of run()
RELEASE = threading.Event()  # hung tools wait on it; set when the module ends

pytestmark = pytest.mark.timeout(300)


# ---------------------------------------------------------------------------------- tools


@tool
def fast_tool(city: str) -> str:
    """Fast tool lookup of a city."""
    return f"{city}: 7 degrees"


@tool
async def slow_tool(city: str, context: ToolContext) -> str:
    """Slow tool lookup of a city."""
    await asyncio.sleep(random.uniform(0.02, 0.25))
    return f"{city}: slow"


@tool
def hang_tool(city: str) -> str:
    """Hang tool lookup of a city."""
    RELEASE.wait(60)
    return "released"


@tool
def boom_tool(city: str) -> str:
    """Boom tool lookup of a city."""
    raise ValueError(f"boom for {city}")


@tool
def explode_tool(city: str) -> str:
    """Explode tool lookup of a city."""
    return "never reached"


class Tools(Registry):
    """The test's tools; calls to explode_tool fail in the registry itself (a bug)."""

    async def dispatch(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "explode_tool":
            raise RuntimeError("the registry exploded")
        return await super().dispatch(name, *args, **kwargs)


REGISTRY = Tools()
for _func in (fast_tool, slow_tool, hang_tool, boom_tool, explode_tool):
    REGISTRY.add(_func)

SCRIPT = {
    "description": "interleavings",
    "turns": [
        {
            "match": "broken args",
            "tools": [{"name": "fast_tool", "arguments": '{"city": '}],
            "then": "The tool said: {output.error.message}",
        }
    ],
}
UPDATE = {
    "type": "session.update",
    "session": {
        "modalities": ["text", "audio"],
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 60,
            "silence_duration_ms": 120,
        },
        "tools": [
            *(spec.definition() for spec in REGISTRY),
            {
                "type": "mcp",
                "server_label": "docs",
                "server_url": "https://mcp.example.com/mcp",
                "allowed_tools": ["search_docs"],
                "require_approval": "always",
            },
        ],
    },
}
TURNS = {
    "echo": "hello there {n}",
    "fast": "fast tool for Oslo {n}",
    "slow": "slow tool for Rome {n}",
    "hang": "hang tool for Lima {n}",
    "boom": "boom tool for Kyiv {n}",
    "explode": "explode tool for Oslo {n}",
    "badjson": "broken args please {n}",
    "mcp": "search the docs please {n}",
}


# ---------------------------------------------------------------------------------- parts


class FastMic:
    """A microphone that sends what it is told to say faster than real time, else nothing."""

    live = True
    fmt = FMT

    def __init__(self) -> None:
        self.pending = bytearray()
        self.wake = asyncio.Event()
        self.closed = False

    def say(self, pcm: bytes) -> None:
        self.pending += pcm
        self.wake.set()

    async def frames(self) -> AsyncIterator[bytes]:
        step = FMT.frame_bytes
        while not self.closed:
            if not self.pending:
                self.wake.clear()
                await self.wake.wait()
                continue
            frame, self.pending[:step] = bytes(self.pending[:step]), b""
            yield frame + bytes(step - len(frame))
            await asyncio.sleep(0.002)  # the device's clock (a fast mic), not a wait for anything

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class Recorded(Transcript):
    """A transcript that keeps the event trace in memory (what the client really read)."""

    def __init__(self) -> None:
        super().__init__(out=io.StringIO(), err=io.StringIO(), meter=False)
        self.events: list[tuple[str, dict[str, Any]]] = []

    @property
    def tracing(self) -> bool:
        return True

    def trace(self, direction: str, event: dict[str, Any]) -> None:
        if event.get("type") not in ("response.audio.delta", "input_audio_buffer.append"):
            self.events.append((direction, event))


@dataclass
class Schedule:
    seed: int
    steps: list[tuple[str, Any]] = field(default_factory=list)
    fault_after: int | None = None  # the first connection drops after this many events
    end: str = "q"

    def describe(self) -> str:
        fault = f", drop_after_events={self.fault_after}" if self.fault_after else ""
        return f"seed {self.seed}{fault}: {self.steps} then {self.end}"


def make_schedule(seed: int) -> Schedule:
    rng = random.Random(seed)
    s = Schedule(seed)
    if rng.random() < 0.2:
        s.fault_after = rng.randint(3, 40)
    kinds = list(TURNS)
    for n in range(rng.randint(2, 6)):
        roll = rng.random()
        if roll < 0.5:
            s.steps.append(("type", TURNS[rng.choice(kinds)].format(n=n)))
        elif roll < 0.62:
            s.steps.append(("answer", rng.choice(["y", "n", "yes", "no"])))
        elif roll < 0.77:
            s.steps.append(("speak", rng.choice([250, 400])))
        elif roll < 0.85:
            s.steps.append(("cut", None))
        else:
            s.steps.append(("wait", round(rng.uniform(0.01, 0.15), 3)))
        s.steps.append(("pause", round(rng.uniform(0.0, 0.04), 3)))
    s.end = rng.choice(["q", "q", "q", "stop", "settle"])
    return s


# ---------------------------------------------------------------------------------- running


@dataclass
class Result:
    code: int | None
    took_to_exit: float
    transcript: Recorded
    session: LiveSession
    records: list[Any]
    exceptions: list[dict[str, Any]]


async def run_schedule(emu: Any, schedule: Schedule) -> Result:
    first = len(emu.sessions) + 1
    emu.faults = (
        Faults(drop_after_events=schedule.fault_after, connections=(first,))
        if schedule.fault_after
        else None
    )
    loop = asyncio.get_running_loop()
    exceptions: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: exceptions.append(context))
    transcript = Recorded()
    mic = FastMic()
    session = LiveSession(
        target=Target(emu.endpoint, "test", KEY, "test", "gpt-realtime"),
        endpoint=emu.endpoint,
        credential=AzureKeyCredential(KEY),
        session_update=UPDATE,
        transcript=transcript,
        player=ClockPlayer(FMT, realtime=False),
        source=mic,
        lines=False,
        interactive=True,
        registry=REGISTRY,
        tool_timeouts={"hang_tool": 0.3, "slow_tool": 2.0},
        mcp_policies={"docs": "ask"},
        api_version="2026-04-10",
        backoff_s=0.01,
        max_reconnects=20,
        finish_timeout_s=1.0,
        replay_history=True,
    )
    task = asyncio.create_task(session.run())
    ended_at = None
    try:
        await asyncio.wait_for(session.ready.wait(), 3)
        for kind, arg in schedule.steps:
            if task.done():
                break
            if kind in ("type", "answer"):
                session.feed_line(arg)
            elif kind == "speak":
                mic.say(tone(arg) + bytes(FMT.bytes_for_ms(200)))
            elif kind == "cut":
                await emu.cut_all(None)  # cut the TCP link, as a fault does
            elif kind in ("wait", "pause"):
                await asyncio.sleep(arg)
        if schedule.end == "settle":  # a schedule step: q after a pause, whatever state it is in
            await asyncio.sleep(0.1)
        ended_at = time.perf_counter()
        if schedule.end == "stop":
            session.stop()
        else:
            session.feed_line("q")
        code = await asyncio.wait_for(asyncio.shield(task), BUDGET_S)
    except (asyncio.TimeoutError, TimeoutError):
        session.stop()
        code = None
        await asyncio.wait({task}, timeout=2)
    finally:
        loop.set_exception_handler(previous)
    took = time.perf_counter() - ended_at if ended_at is not None else float("inf")
    return Result(code, took, transcript, session, emu.sessions[first - 1 :], exceptions)


def check(result: Result, schedule: Schedule) -> None:
    where = schedule.describe()
    t = result.transcript
    err = t.err.getvalue()  # type: ignore[attr-defined]
    assert result.code == 0, f"{where}: did not end in time (code {result.code})\n{err}"
    # q waits for the reply owed (at most finish_timeout_s), tools only a moment
    assert result.took_to_exit < EXIT_S + 1.0, f"{where}: took {result.took_to_exit:.2f} s"
    if schedule.end == "stop":
        assert result.took_to_exit < EXIT_S, f"{where}: stop took {result.took_to_exit:.2f} s"
    # every reply the client read complete is there exactly once; nothing is invented
    turns = t.turns
    ids = [x.item_id for x in turns]
    assert len(ids) == len(set(ids)), f"{where}: a turn was recorded twice: {ids}"
    assistant = {x.item_id for x in turns if x.role == "assistant"}
    received = {
        str(e.get("item_id"))
        for d, e in t.events
        if d == "in" and e.get("type") in ("response.text.done", "response.audio_transcript.done")
    }
    missing = received - assistant
    assert not missing, f"{where}: replies received but not in the transcript: {missing}"
    sent_by_emulator = {
        str(e.get("item_id") or e.get("item", {}).get("id"))
        for r in result.records
        for e in r.sent
        if e.get("type", "").startswith("response.")
    }
    invented = assistant - sent_by_emulator
    assert not invented, f"{where}: replies the emulator never sent: {invented}"
    typed = [
        x.text
        for x in turns
        if x.role == "user" and x.item_id.startswith("typed_") and x.text[-1:].isdigit()
    ]
    assert len(typed) == len(set(typed)), f"{where}: a typed turn went out twice: {typed}"
    # outputs only for calls the connection they went on issued
    for record in result.records:
        stray = {o["call_id"] for o in outputs(record)} - issued_calls(record)
        assert not stray, f"{where}: outputs for calls connection {record.number} never issued"
        refused = [
            e
            for e in record.sent
            if e["type"] == "error" and e["error"].get("param") == "item.call_id"
        ]
        assert not refused, f"{where}: {refused}"
    # every task exception reported, none unretrieved
    for name, exc in result.session.tasks.failures:
        assert f"internal error in {name}" in err, f"{where}: {name} failed unreported: {exc!r}"
    asked_explode = any(x.role == "tool" and x.text.startswith("explode_tool") for x in turns)
    if asked_explode:
        assert "internal error in tool explode_tool" in err, f"{where}: the registry bug was lost"
    lost = [c for c in result.exceptions if "exception" in c or "never retrieved" in str(c)]
    assert not lost, f"{where}: unhandled in the loop: {lost}"


# ---------------------------------------------------------------------------------- tests


def _seeds() -> list[list[int]]:
    if ONLY_SEED is not None:
        return [[int(ONLY_SEED)]]
    seeds = list(range(SCHEDULES))
    return [seeds[i : i + PER_TEST] for i in range(0, len(seeds), PER_TEST)]


@pytest.fixture(scope="module", autouse=True)
def _release_hung_tools() -> Any:
    yield
    RELEASE.set()


@pytest.mark.parametrize("seeds", _seeds(), ids=lambda s: f"seeds{s[0]}-{s[-1]}")
async def test_random_schedules_keep_every_invariant(seeds: list[int]) -> None:
    async with running_emulator(speed=0, scenario=SCRIPT, api_key=KEY, use_espeak=False) as emu:
        for seed in seeds:
            random.seed(seed)  # the slow tool's durations too
            schedule = make_schedule(seed)
            result = await run_schedule(emu, schedule)
            check(result, schedule)
