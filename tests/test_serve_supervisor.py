"""The call supervisor on its own: reservations, claims, expiry, the sweep, the drain.

A fake clock drives expiry and call length, so nothing here waits on time; the interleaving
test runs many reserve/claim/release orders from seeded random schedules.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from runner.serve.supervisor import Refused, Supervisor

pytest.importorskip("prometheus_client")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def metrics() -> object:
    from runner.serve.metrics import ServeMetrics

    return ServeMetrics()


def sample(m: object, name: str, **labels: str) -> float:
    return float(m.registry.get_sample_value(name, labels) or 0.0)  # type: ignore[attr-defined]


def test_a_reservation_counts_against_capacity_before_any_media_socket() -> None:
    sup = Supervisor(1)
    sup.reserve("twilio", "CA1")
    assert not sup.has_room()
    with pytest.raises(Refused) as refused:
        sup.reserve("twilio", "CA2")
    assert refused.value.reason == "capacity"
    sup.claim("twilio", "CA1")
    assert sup.active() == 1 and sup.reserved() == 0


def test_a_webhook_retried_is_the_same_reservation_not_a_second_slot() -> None:
    sup = Supervisor(2)
    first = sup.reserve("twilio", "CA1")
    assert sup.reserve("twilio", "CA1") is first
    assert len(sup) == 1


def test_one_call_id_holds_one_session_ever() -> None:
    sup = Supervisor(5)
    sup.reserve("acs", "c1")
    slot = sup.claim("acs", "c1")
    for attempt in (lambda: sup.claim("acs", "c1"), lambda: sup.reserve("acs", "c1")):
        with pytest.raises(Refused) as refused:
            attempt()
        assert refused.value.reason == "duplicate"
    sup.release(slot, "completed")
    # ended: a replayed webhook or socket cannot bring it back
    for attempt in (lambda: sup.claim("acs", "c1"), lambda: sup.reserve("acs", "c1")):
        with pytest.raises(Refused):
            attempt()
    assert sup.has_room() and len(sup) == 0


def test_a_claim_without_a_reservation_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        Supervisor(5).claim("twilio", "CA9")
    assert refused.value.reason == "duplicate"


def test_an_unclaimed_reservation_expires_and_frees_its_slot() -> None:
    clock, m = Clock(), metrics()
    sup = Supervisor(1, reservation_ttl_s=30, clock=clock, metrics=m)
    sup.reserve("twilio", "CA1")
    clock.now += 29
    assert not sup.has_room()
    clock.now += 2
    assert sup.has_room()
    assert sup.expired_total == 1
    assert sample(m, "vlrun_slots_total", edge="twilio", what="expired") == 1
    with pytest.raises(Refused):
        sup.claim("twilio", "CA1")  # too late: the caller was told nothing, the slot is gone


def test_kind_limits_keep_pages_below_their_own_max() -> None:
    sup = Supervisor(10, kind_limits={"browser": 1})
    sup.admit("browser", "p1")
    assert not sup.has_room("browser")
    with pytest.raises(Refused):
        sup.admit("browser", "p2")
    assert sup.has_room("twilio")
    sup.reserve("twilio", "CA1")


def test_draining_refuses_and_metrics_count_every_step() -> None:
    m = metrics()
    sup = Supervisor(3, metrics=m)
    slot = sup.admit("twilio", "CA1")
    sup.draining = True
    with pytest.raises(Refused) as refused:
        sup.reserve("twilio", "CA2")
    assert refused.value.reason == "draining"
    assert sample(m, "vlrun_active_calls", edge="twilio") == 1
    sup.release(slot, "completed")
    sup.release(slot, "completed")  # twice is once
    assert sample(m, "vlrun_active_calls", edge="twilio") == 0
    assert sample(m, "vlrun_calls_total", edge="twilio", outcome="completed") == 1
    assert sample(m, "vlrun_calls_total", edge="twilio", outcome="refused") == 1
    assert sample(m, "vlrun_slots_total", edge="twilio", what="claimed") == 1


async def test_the_sweep_ends_dead_and_over_long_calls_once() -> None:
    clock = Clock()
    sup = Supervisor(5, clock=clock, max_call_s=60)
    ended: list[tuple[str, str]] = []

    def make(name: str, dead: bool) -> None:
        slot = sup.admit("twilio", name)

        async def ender(reason: str) -> None:
            ended.append((name, reason))
            sup.release(slot, reason)

        slot.ender = ender
        slot.probe = lambda _now: "dropped" if dead else None

    make("alive", dead=False)
    make("gone", dead=True)
    found = sup.sweep()
    assert [(s.key, r) for s, r in found] == [("twilio:gone", "dropped")]
    await sup.endings()
    assert ended == [("gone", "dropped")]
    clock.now += 61
    sup.sweep()
    await sup.endings()
    assert ended[-1] == ("alive", "max_length")
    assert len(sup) == 0


async def test_an_ending_that_failed_can_be_asked_again() -> None:
    sup = Supervisor(5)
    slot = sup.admit("acs", "c1")
    calls: list[str] = []

    async def ender(reason: str) -> None:
        calls.append(reason)
        if len(calls) == 1:
            raise ConnectionError("Voice Live dropped during the goodbye")
        sup.release(slot, reason)

    slot.ender = ender
    first = sup.end(slot, "drained")
    assert first is not None and sup.end(slot, "drained") is first  # one at a time
    await first
    second = sup.end(slot, "drained")
    assert second is not None and second is not first
    await second
    assert calls == ["drained", "drained"] and slot.ended


async def test_drain_ends_what_is_left_at_the_deadline_and_drops_reservations() -> None:
    sup = Supervisor(5)
    running = sup.admit("sip", "s1")
    sup.reserve("twilio", "CA1")  # a webhook whose socket never came

    async def ender(reason: str) -> None:
        assert reason == "drained"
        sup.release(running, reason)

    running.ender = ender
    await asyncio.wait_for(sup.drain(0.01), 5)
    assert len(sup) == 0 and sup.draining


@pytest.mark.parametrize("seed", range(25))
async def test_random_schedules_never_exceed_capacity_nor_leak_slots(seed: int) -> None:
    """Webhooks, sockets (some replayed), hang-ups and expiries in random orders."""
    rng = random.Random(seed)
    clock = Clock()
    sup = Supervisor(4, reservation_ttl_s=5, clock=clock)
    slots: dict[str, object] = {}
    claimed: set[str] = set()
    for _ in range(400):
        call = f"CA{rng.randrange(30)}"
        action = rng.random()
        try:
            if action < 0.35:
                sup.reserve("twilio", call)
            elif action < 0.7:
                slots[call] = sup.claim("twilio", call)
                assert call not in claimed, "a call id claimed twice"
                claimed.add(call)
            elif action < 0.9 and slots:
                name = rng.choice(sorted(slots))
                sup.release(slots.pop(name), "completed")  # type: ignore[arg-type]
            else:
                clock.now += rng.uniform(0, 3)
        except Refused:
            pass
        assert len(sup) <= 4
        assert sup.active() == len(slots)
        if rng.random() < 0.1:
            await asyncio.sleep(0)  # let other tasks in between steps
    for slot in slots.values():
        sup.release(slot, "completed")  # type: ignore[arg-type]
    clock.now += 10
    assert len(sup) == 0


def test_a_socket_whose_webhook_went_to_another_worker_is_admitted_once() -> None:
    """Behind a load balancer the webhook and the media socket may reach different workers:
    a signed socket is admitted without a local reservation, once, and only with room."""
    sup = Supervisor(1)
    slot = sup.claim("twilio", "CA1", unreserved_ok=True)
    assert slot.claimed and sup.active() == 1
    with pytest.raises(Refused) as refused:
        sup.claim("twilio", "CA1", unreserved_ok=True)
    assert refused.value.reason == "duplicate"
    with pytest.raises(Refused) as refused:
        sup.claim("twilio", "CA2", unreserved_ok=True)
    assert refused.value.reason == "capacity"
    sup.release(slot, "completed")
    with pytest.raises(Refused):
        sup.claim("twilio", "CA1", unreserved_ok=True)  # ended: never again on this worker
