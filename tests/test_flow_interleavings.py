"""Seeded random schedules for a flow: typed values (valid and not), speech that barges in,
cut connections, in any order, on the real LiveSession against the real emulator.

After every schedule, once the session has settled:
- the walk is a walk of the graph (start first, every step an edge);
- the service holds the node the flow is in: the last session.update the emulator received
  offers that node's record tool and no other node's (a barge-in during a transition never
  leaves the flow in one node and the service in another);
- every transition was sent as exactly one output naming it, on a connection that issued it
  (when no connection was cut);
- the session ended when told (no deadlock), with no task exception lost.

``VLRUN_FLOW_SCHEDULES`` sets how many run (default 60); a failure names its seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.credentials import AzureKeyCredential

from runner import flows
from runner.config.compile import compile_session
from runner.config.load import load_profile
from runner.emulator import running_emulator
from runner.live.audio import ClockPlayer
from runner.live.connect import Target
from runner.live.session import LiveSession
from tests.live_harness import FMT, KEY, tone
from tests.test_live_interleavings import FastMic, Recorded

SCHEDULES = int(os.environ.get("VLRUN_FLOW_SCHEDULES", "60"))
PROFILE = """\
name: walk
instructions: Test flow.
modalities: [text, audio]
turn_detection: {type: server_vad, threshold: 0.5, prefix_padding_ms: 100, silence_duration_ms: 200}
flow:
  start: ask
  nodes:
    ask:
      instructions: Ask the size.
      collect: {size: {type: integer, minimum: 1, maximum: 9}}
      transitions:
        - {to: big, when: size > 5}
        - {to: confirm}
    big:
      instructions: A big party.
      transitions: [{to: ask}]
    confirm:
      instructions: Confirm {{ size }}.
      collect: {confirmed: {type: boolean}}
      transitions:
        - {to: done, when: confirmed}
        - {to: ask}
    done: {end: true, goodbye: {text: "Done with {{ size }}."}}
"""


@dataclass
class Schedule:
    seed: int
    steps: list[tuple[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        return f"seed {self.seed}: {self.steps}"


def make_schedule(seed: int) -> Schedule:
    rng = random.Random(seed)
    s = Schedule(seed)
    for _ in range(rng.randint(3, 9)):
        roll = rng.random()
        if roll < 0.35:
            s.steps.append(("type", f"size={rng.choice([0, 2, 4, 6, 8, 12, 'x'])}"))
        elif roll < 0.55:
            s.steps.append(("type", f"confirmed={rng.choice(['true', 'false', 'maybe'])}"))
        elif roll < 0.65:
            s.steps.append(("type", "record big please"))
        elif roll < 0.85:
            s.steps.append(("speak", rng.choice([250, 400])))
        elif roll < 0.92:
            s.steps.append(("cut", None))
        else:
            s.steps.append(("pause", round(rng.uniform(0.0, 0.05), 3)))
        s.steps.append(("pause", round(rng.uniform(0.0, 0.03), 3)))
    return s


def _session(emu: Any, tmp: Path) -> tuple[LiveSession, Recorded, FastMic]:
    (tmp / "walk.yaml").write_text(PROFILE)
    profile = load_profile(tmp / "walk.yaml")
    payload, greeting, walk = flows.opening(profile, compile_session(profile), None)
    transcript = Recorded()
    mic = FastMic()
    session = LiveSession(
        target=Target(emu.endpoint, "test", KEY, "test", "gpt-realtime"),
        endpoint=emu.endpoint,
        credential=AzureKeyCredential(KEY),
        session_update=payload,
        transcript=transcript,
        player=ClockPlayer(FMT, realtime=False),
        source=mic,
        lines=False,
        backoff_s=0.01,
        max_reconnects=20,
        finish_timeout_s=1.0,
        flow=walk,
    )
    return session, transcript, mic


async def run_schedule(emu: Any, schedule: Schedule, tmp: Path) -> None:
    where = schedule.describe()
    first = len(emu.sessions)
    session, transcript, mic = _session(emu, tmp)
    loop = asyncio.get_running_loop()
    lost: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: lost.append(context))
    task = asyncio.create_task(session.run())
    cut = False
    try:
        await asyncio.wait_for(session.ready.wait(), 3)
        for kind, arg in schedule.steps:
            if task.done():
                break
            if kind == "type":
                session.feed_line(arg)
            elif kind == "speak":
                mic.say(tone(arg) + bytes(FMT.bytes_for_ms(600)))  # then silence: VAD ends it
            elif kind == "cut":
                cut = True
                await emu.cut_all(None)  # cut the TCP link, as a fault does
            else:
                await asyncio.sleep(arg)  # a schedule step, not a wait for a condition
        # settle: every typed turn sent, nothing running, between turns (or the flow ended)
        settled = asyncio.create_task(
            session.turn.until(
                lambda: (
                    not session.waiting_turns()
                    and session.turn.idle()
                    and not session.tools_running
                    and session.ready.is_set()
                )
            )
        )
        await asyncio.wait({settled, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        settled.cancel()
        walk = session.flow
        if not task.done():
            _check_consistent(walk, emu.sessions[first:], where)
            session.feed_line("q")
        code = await asyncio.wait_for(task, 20)
    finally:
        loop.set_exception_handler(previous)
    assert code == 0, f"{where}: code {code}\n{transcript.err.getvalue()}"  # type: ignore[attr-defined]
    _check_walk(walk, where)
    records = emu.sessions[first:]
    if not cut:
        outs = [
            json.loads(e["item"]["output"])
            for r in records
            for e in r.received
            if e["type"] == "conversation.item.create"
            and e["item"].get("type") == "function_call_output"
        ]
        steps = [o["next_step"] for o in outs if "next_step" in o]
        assert steps == walk.path[1:], f"{where}: outputs {steps} vs path {walk.path}"
    assert not [c for c in lost if "exception" in c], f"{where}: lost {lost}"


def _check_walk(walk: Any, where: str) -> None:
    flow = walk.flow
    assert walk.path[0] == flow.start
    for a, b in zip(walk.path, walk.path[1:], strict=False):
        assert b in [t.to for t in flow.nodes[a].transitions], f"{where}: {a} -> {b} is no edge"
    assert walk.node.name == walk.path[-1]


def _check_consistent(walk: Any, records: list[Any], where: str) -> None:
    updates = [e["session"] for r in records for e in r.received if e["type"] == "session.update"]
    offered = {t["name"] for t in updates[-1].get("tools") or []}
    wanted = walk.node.record_tool  # None in an end node: no record tool at all
    assert wanted is None or wanted in offered, (
        f"{where}: the service has {offered}, the flow is in {walk.node.name}"
    )
    others = {n.record_tool for n in walk.flow.nodes.values()} - {wanted, None}
    assert not offered & others, f"{where}: the service still offers {offered & others}"


async def test_random_flow_schedules_keep_the_node_consistent(tmp_path: Path) -> None:
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        for seed in range(SCHEDULES):
            random.seed(seed)
            await run_schedule(emu, make_schedule(seed), tmp_path)
