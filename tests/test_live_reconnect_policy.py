"""Reconnection of a live session: full jitter, a budget per conversation, and no reconnecting
for a conversation that has one connection (issue 25, "Reconnects in lockstep").

Real SDK against the emulator; the emulator's drop faults end the connections."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.aio import ReconnectPolicy
from runner.emulator import Faults, running_emulator
from runner.errors import ConnectError
from runner.live.session import CALL_RECONNECTS
from tests.live_harness import KEY, Harness, build

WAIT_S = 20.0


async def _reconnected(h: Harness, times: int) -> None:
    """Wait until the session has reconnected ``times`` times and is ready again."""
    session = h.session
    turn = session.turn
    assert await turn.until(
        lambda: session.metrics.reconnects >= times and turn.connected, WAIT_S
    ), f"{session.metrics.reconnects} reconnect(s), connected={turn.connected}"


async def _lose_the_service_together(emu: Any, harnesses: list[Harness]) -> None:
    """Every session connected, then the service closes all their sockets at once."""
    for h in harnesses:
        h.start()
    for h in harnesses:
        turn = h.session.turn
        assert await turn.until(lambda turn=turn: turn.connected, WAIT_S)
    await emu.cut_all(1011)  # the service side closes every connection
    for h in harnesses:
        await _reconnected(h, 1)


async def test_sessions_that_lose_the_service_together_do_not_retry_together(
    tmp_path: Path,
) -> None:
    """Six sessions lose their connections at the same moment: each draws its own delay
    (full jitter below the first ceiling), so they do not come back in lockstep. Before,
    every one waited exactly ``backoff_s``."""
    n = 6
    policy = ReconnectPolicy(base_s=0.2, cap_s=1.0, attempts=3)
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        harnesses = [
            build(emu.endpoint, tmp_path / f"s{i}", reconnect_policy=policy, rng=random.Random(i))
            for i in range(n)
        ]
        try:
            await _lose_the_service_together(emu, harnesses)
        finally:
            for h in harnesses:
                await h.stop()
    delays = [d for h in harnesses for d in h.session.metrics.reconnect_delays]
    assert len(delays) == n, delays
    assert all(0.0 <= d <= policy.ceiling(1) for d in delays), delays
    assert len(set(delays)) == n, f"sessions drew the same delay: {delays}"
    # seeded: the same seed draws the same delay (the policy is what decides, not luck)
    assert delays[0] == policy.delay(1, random.Random(0))
    assert all(h.session.end_reason == "stopped" for h in harnesses)


async def test_the_default_policy_has_jitter_too(tmp_path: Path) -> None:
    """Built the older way (``backoff_s``, ``max_reconnects``), a session still jitters."""
    n = 4
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False) as emu:
        harnesses = [build(emu.endpoint, tmp_path / f"s{i}", backoff_s=0.1) for i in range(n)]
        try:
            await _lose_the_service_together(emu, harnesses)
        finally:
            for h in harnesses:
                await h.stop()
    delays = [d for h in harnesses for d in h.session.metrics.reconnect_delays]
    assert len(delays) == n and all(0.0 <= d <= 0.1 for d in delays), delays
    assert len(set(delays)) > 1, f"every session waited the same: {delays}"


async def test_a_conversation_that_keeps_losing_its_connection_ends_at_its_budget(
    tmp_path: Path,
) -> None:
    """Every connection works, then drops: the attempts per drop never run out (each
    reconnect succeeded), so before, the session reconnected for ever. The budget per
    conversation ends it, with a reason an edge can act on."""
    policy = ReconnectPolicy(base_s=0.01, cap_s=0.01, attempts=3, budget=3)
    faults = Faults(drop_after_events=2, close_code=1011)  # session.created, .updated, drop
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False, faults=faults) as emu:
        h = build(emu.endpoint, tmp_path, reconnect_policy=policy)
        with pytest.raises(ConnectError, match="used all 3 of its reconnections"):
            await asyncio.wait_for(h.session.run(), WAIT_S)
        connections = len(emu.sessions)
    assert h.session.end_reason == "reconnect_budget"
    assert h.session.metrics.reconnects == 3
    assert h.session.reconnect_budget.left == 0
    assert connections == 4  # the first and three reconnections, no more


async def test_attempts_per_drop_still_end_a_session_that_cannot_reconnect(
    tmp_path: Path,
) -> None:
    """Connections that never get configured: the attempts per drop end it, before the
    (larger) budget, and end_reason says which."""
    policy = ReconnectPolicy(base_s=0.01, cap_s=0.01, attempts=2, budget=10)
    faults = Faults(drop_after_events=1, close_code=1011)  # dropped after session.created
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False, faults=faults) as emu:
        h = build(emu.endpoint, tmp_path, reconnect_policy=policy)
        with pytest.raises(ConnectError, match="could not reconnect after 2 attempts"):
            await asyncio.wait_for(h.session.run(), WAIT_S)
        connections = len(emu.sessions)
    assert h.session.end_reason == "reconnect_failed"
    assert h.session.metrics.reconnects == 2
    assert connections == 3


@pytest.mark.parametrize("how", ["forbid_reconnect", "max_reconnects = 0"])
async def test_a_conversation_with_one_connection_ends_when_it_drops(
    tmp_path: Path, how: str
) -> None:
    """forbid_reconnect() (and the older ``max_reconnects = 0``) end the conversation at the
    first drop, with end_reason "dropped", and never open a second connection."""
    faults = Faults(drop_after_events=2, close_code=1011)
    async with running_emulator(speed=0, api_key=KEY, use_espeak=False, faults=faults) as emu:
        h = build(emu.endpoint, tmp_path)
        if how == "forbid_reconnect":
            h.session.forbid_reconnect()
        else:
            h.session.max_reconnects = 0
        assert h.session.max_reconnects == 0
        with pytest.raises(ConnectError, match="does not reconnect"):
            await asyncio.wait_for(h.session.run(), WAIT_S)
        connections = len(emu.sessions)
    assert h.session.end_reason == "dropped"
    assert h.session.metrics.reconnects == 0
    assert connections == 1


async def test_a_killed_service_ends_a_call_within_its_policy(tmp_path: Path) -> None:
    """The emulator process is killed mid-call (SIGKILL: no close frame). With the phone
    policy the session gives up after four quick attempts: at most 2.75 s of waiting, where
    the old fixed backoff waited 0.25 + 0.5 + ... + 8 = 15.75 s before the call ended."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "emulate", "--speed", "0", "--no-espeak",
        "--api-key", KEY,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        endpoint = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        h = build(endpoint, tmp_path, reconnect_policy=CALL_RECONNECTS)
        h.start()
        assert await h.session.turn.until(lambda: h.session.turn.connected, WAIT_S)
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), WAIT_S)
        with pytest.raises(ConnectError, match="could not reconnect after 4 attempts"):
            await asyncio.wait_for(h.task, WAIT_S)  # type: ignore[arg-type]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    delays = list(h.session.metrics.reconnect_delays)
    assert h.session.end_reason == "reconnect_failed"
    assert len(delays) == CALL_RECONNECTS.attempts
    ceilings = [CALL_RECONNECTS.ceiling(a) for a in range(1, CALL_RECONNECTS.attempts + 1)]
    assert all(d <= c for d, c in zip(delays, ceilings, strict=True)), (delays, ceilings)
    assert sum(ceilings) <= 2.75
