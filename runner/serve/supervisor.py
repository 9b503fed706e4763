"""The call supervisor: one place that admits, watches and ends every conversation of a worker.

Browser pages and phone calls alike go through it:

- **Admission by reservation.** A call's first request (a voice webhook, an IncomingCall event,
  a SIP delivery, a page's Start) *reserves* a slot under the call's own id. The reservation
  counts against ``max_calls`` at once, so a burst of webhooks cannot all be answered; it
  expires after ``reservation_ttl_s`` if no media socket claims it. The media socket *claims*
  the reservation; a call id holds one claim, ever (a replayed or duplicate socket is refused,
  and a call id that has ended is remembered, bounded, so it cannot come back).
- **Liveness.** Each claimed slot may carry a probe (the edge's "when did media last arrive")
  and an ender. One sweep per worker, once a second, ends the calls whose probe says they are
  dead and those past ``max_call_s``: one wake-up a second, whatever the number of calls.
- **Drain.** One drain with one deadline: no new reservations, running conversations get until
  the deadline, then each is ended its edge's way (goodbye, hang-up), with a bounded wait.
- **Metrics.** Slots reserved, claimed and expired, the event loop's lag and the garbage
  collector's pauses (each stops the loop, and every call on it).

The supervisor does no I/O of its own: edges call it, and it calls the enders they gave it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from runner.aio import Changes, Deadline, LagMonitor, cancel_and_wait
from runner.errors import VlrunError
from runner.speedups import GcPauses

log = logging.getLogger("vlrun.serve.supervisor")

RESERVATION_TTL_S = 30.0  # webhook -> media socket takes a second or two at every provider
SWEEP_S = 1.0
REMEMBER = 4096  # ended call ids remembered (a replay comes within minutes, not days)
END_GRACE_S = 20.0  # after the drain deadline: goodbyes and hang-ups get this long


class Refused(VlrunError):
    """No slot: ``reason`` is "capacity", "draining" or "duplicate" (nothing was started).

    Edges answer it their provider's way (TwiML ``<Reject reason="busy">``, ``reject_call``,
    SIP 486, HTTP 503/409, a page message)."""

    exit_code = 3

    def __init__(self, reason: str, message: str) -> None:
        hint = "try again later" if reason == "capacity" else None
        super().__init__(message, hint=hint)
        self.reason = reason


Ender = Callable[[str], Awaitable[None]]
Probe = Callable[[float], "str | None"]


@dataclass(eq=False)
class Slot:
    """One conversation's place on the worker, from its first request to its end."""

    key: str  # "<edge>:<the call's own id>"
    kind: str  # browser | twilio | acs | sip
    reserved_at: float
    expires_at: float | None  # None once claimed
    claimed_at: float | None = None
    ended: bool = False
    #: How the supervisor ends this conversation (drain, dead media, max length): set by the
    #: edge once the conversation runs; it says goodbye and hangs up the edge's way.
    ender: Ender | None = None
    #: ``probe(now)`` returns why the call is dead ("dropped") or None; cheap, called once a
    #: second.
    probe: Probe | None = None
    _ending: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def claimed(self) -> bool:
        return self.claimed_at is not None


class Supervisor:
    """Slots for every conversation of one worker (see the module's docstring)."""

    def __init__(
        self,
        max_calls: int,
        *,
        reservation_ttl_s: float = RESERVATION_TTL_S,
        max_call_s: float | None = None,
        metrics: Any = None,
        kind_limits: dict[str, int] | None = None,
        remember: int = REMEMBER,
        clock: Callable[[], float] = time.monotonic,
        sweep_s: float = SWEEP_S,
    ) -> None:
        self.max_calls = max_calls
        self.reservation_ttl_s = reservation_ttl_s
        self.max_call_s = max_call_s
        self.metrics = metrics
        self.kind_limits = dict(kind_limits or {})
        self.clock = clock
        self.sweep_s = sweep_s
        self.draining = False
        self.changes = Changes()
        self._slots: dict[str, Slot] = {}
        self._gone: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._remember = remember
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reserved_total = 0
        self.claimed_total = 0
        self.expired_total = 0
        self.lag: LagMonitor | None = None
        self.gc_pauses: GcPauses | None = None

    # ------------------------------------------------------------------ counts

    def __len__(self) -> int:
        self._sweep_reservations()
        return len(self._slots)

    def active(self, kind: str | None = None) -> int:
        """Conversations running (claimed slots), of one kind or all."""
        return sum(
            1 for s in self._slots.values() if s.claimed and (kind is None or s.kind == kind)
        )

    def reserved(self) -> int:
        """Reservations not yet claimed (they count against capacity)."""
        self._sweep_reservations()
        return sum(1 for s in self._slots.values() if not s.claimed)

    def has_room(self, kind: str | None = None) -> bool:
        """Not draining, and one more slot fits (of this kind too, if it has its own limit)."""
        if self.draining:
            return False
        self._sweep_reservations()
        if len(self._slots) >= self.max_calls:
            return False
        limit = self.kind_limits.get(kind or "")
        if limit is not None:
            return sum(1 for s in self._slots.values() if s.kind == kind) < limit
        return True

    def slot(self, key: str) -> Slot | None:
        return self._slots.get(key)

    # ------------------------------------------------------------------ admission

    def reserve(self, kind: str, call_id: str) -> Slot:
        """Hold a slot for the call ``call_id`` until its media socket claims it.

        Asking again for a reservation still unclaimed returns it (a provider retrying its
        webhook is the same call); a call id that has a claimed slot or has ended is a
        duplicate. Raises :class:`Refused`."""
        key = f"{kind}:{call_id}"
        found = self._slots.get(key)
        if found is not None and not found.claimed:
            return found
        if found is not None or key in self._gone:
            self._refused(kind, "duplicate")
            raise Refused("duplicate", f"call {call_id} has (or had) its session already")
        if self.draining:
            self._refused(kind, "draining")
            raise Refused("draining", "the server is shutting down; no new calls")
        if not self.has_room(kind):
            self._refused(kind, "capacity")
            raise Refused("capacity", f"all {self._limit_of(kind)} call slots are in use")
        now = self.clock()
        slot = Slot(key, kind, now, now + self.reservation_ttl_s)
        self._slots[key] = slot
        self.reserved_total += 1
        self._count("reserved", kind)
        self.changes.notify()
        return slot

    def claim(self, kind: str, call_id: str, *, unreserved_ok: bool = False) -> Slot:
        """The call's media socket takes its reserved slot (once). Raises :class:`Refused`.

        ``unreserved_ok``: the socket proved (a signed token) that *a* worker answered the
        call's first request, maybe another one behind the load balancer; it is admitted
        here if there is room and this worker never saw the call id (the other worker's
        reservation expires unclaimed)."""
        self._sweep_reservations()
        key = f"{kind}:{call_id}"
        slot = self._slots.get(key)
        if slot is None and unreserved_ok and key not in self._gone:
            slot = self.reserve(kind, call_id)
        if slot is None:
            why = "ended already" if key in self._gone else "no reservation (or it expired)"
            self._refused(kind, "duplicate")
            raise Refused("duplicate", f"call {call_id}: {why}")
        if slot.claimed:
            self._refused(kind, "duplicate")
            raise Refused("duplicate", f"call {call_id} has its session already")
        slot.claimed_at = self.clock()
        slot.expires_at = None
        self.claimed_total += 1
        self._count("claimed", kind)
        if self.metrics is not None:
            self.metrics.call_started(kind)
        self.changes.notify()
        return slot

    def admit(self, kind: str, call_id: str) -> Slot:
        """Reserve and claim at once (a page's Start: its socket is already open)."""
        self.reserve(kind, call_id)
        return self.claim(kind, call_id)

    def release(self, slot: Slot, outcome: str | None = None) -> None:
        """The conversation is over (or its reservation is given up): free the slot."""
        if slot.ended:
            return
        slot.ended = True
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        self._forget_later(slot.key)
        if slot.claimed and self.metrics is not None:
            self.metrics.call_ended(slot.kind, outcome or "failed")
        self.changes.notify()

    def _forget_later(self, key: str) -> None:
        self._gone[key] = None
        self._gone.move_to_end(key)
        while len(self._gone) > self._remember:
            self._gone.popitem(last=False)

    def _sweep_reservations(self) -> None:
        now = self.clock()
        expired = [
            s for s in self._slots.values() if s.expires_at is not None and now >= s.expires_at
        ]
        for slot in expired:
            log.info("reservation %s expired: no media socket came", slot.key)
            del self._slots[slot.key]
            self._forget_later(slot.key)
            self.expired_total += 1
            self._count("expired", slot.kind)
        if expired:
            self.changes.notify()

    def _limit_of(self, kind: str) -> int:
        return min(self.max_calls, self.kind_limits.get(kind, self.max_calls))

    def _count(self, what: str, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.slot(what, kind)

    def _refused(self, kind: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refused(kind, "duplicate" if reason == "duplicate" else "refused")

    # ------------------------------------------------------------------ ending

    def end(self, slot: Slot, reason: str) -> asyncio.Task[None] | None:
        """End a running conversation its edge's way. Asks while an ending runs share it; one
        that finished without ending the call (its goodbye failed) may be asked again."""
        if slot.ended or slot.ender is None:
            return None
        if slot._ending is None or slot._ending.done():
            slot._ending = asyncio.get_running_loop().create_task(
                self._end(slot, reason), name=f"vlrun-end-{slot.key}"
            )
            self._tasks.add(slot._ending)
            slot._ending.add_done_callback(self._tasks.discard)
        return slot._ending

    async def _end(self, slot: Slot, reason: str) -> None:
        assert slot.ender is not None
        try:
            await slot.ender(reason)
        except Exception:  # one call's ending failing must not stop the others'
            log.exception("ending %s (%s) failed", slot.key, reason)

    async def endings(self) -> None:
        """Wait for the endings asked so far (tests; the drain waits on the slots instead)."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def until_idle(self, timeout: float | None) -> bool:
        """Wait until no slot is held (reserved or claimed); False on timeout."""
        return await self.changes.until(lambda: not len(self), timeout)

    async def drain(self, timeout_s: float) -> None:
        """Stop admitting; let running conversations finish until the deadline, then end
        them (goodbye, hang-up), and wait (bounded) until they are gone."""
        self.draining = True
        self.changes.notify()
        deadline = Deadline(timeout_s)
        log.info("draining: %d conversation(s), up to %.0f s", len(self), timeout_s)
        if await self.until_idle(deadline.left()):
            return
        left = [s for s in list(self._slots.values()) if s.claimed]
        log.info("drain deadline: ending %d conversation(s)", len(left))
        for slot in left:
            self.end(slot, "drained")
        for slot in list(self._slots.values()):
            if not slot.claimed:
                self.release(slot)  # a reservation no socket will claim now
        await self.until_idle(END_GRACE_S)

    # ------------------------------------------------------------------ the sweep

    def sweep(self) -> list[tuple[Slot, str]]:
        """Find dead and over-long calls and end them; returns what was ended and why."""
        now = self.clock()
        self._sweep_reservations()
        found: list[tuple[Slot, str]] = []
        for slot in list(self._slots.values()):
            ending = slot._ending is not None and not slot._ending.done()
            if not slot.claimed or slot.ended or ending:
                continue
            reason = None
            if slot.probe is not None:
                try:
                    reason = slot.probe(now)
                except Exception:  # a probe's bug: log it, treat the call as alive
                    log.exception("liveness probe of %s failed", slot.key)
            if reason is None and self.max_call_s is not None:
                assert slot.claimed_at is not None
                if now - slot.claimed_at > self.max_call_s:
                    reason = "max_length"
            if reason is not None:
                log.warning("%s: %s; ending it", slot.key, reason)
                found.append((slot, reason))
                self.end(slot, reason)
        return found

    async def watch(self) -> None:
        """The worker's one liveness loop (its owner starts it and cancels it)."""
        while True:
            await asyncio.sleep(self.sweep_s)
            self.sweep()

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        """Run the sweep, the loop-lag monitor and the collector's pause timer for as long as
        the server runs."""
        self.lag = LagMonitor(self._observe_lag)
        self.gc_pauses = GcPauses(self._observe_gc)
        self.gc_pauses.start()
        tasks = [
            asyncio.get_running_loop().create_task(self.watch(), name="vlrun-sweep"),
            asyncio.get_running_loop().create_task(self.lag.run(), name="vlrun-loop-lag"),
        ]
        try:
            yield self
        finally:
            self.gc_pauses.stop()
            await cancel_and_wait(tasks, timeout=5)
            await cancel_and_wait(list(self._tasks), timeout=5)

    def _observe_lag(self, seconds: float) -> None:
        # looked up each time: the phone edges' metrics may join after the sweep started
        if self.metrics is not None:
            self.metrics.loop_lag(seconds)

    def _observe_gc(self, generation: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.gc_pause(generation, seconds)

    def status(self) -> dict[str, Any]:
        """Counts for probes and tests (nothing about callers)."""
        return {
            "active": self.active(),
            "reserved": self.reserved(),
            "max": self.max_calls,
            "draining": self.draining,
            "reserved_total": self.reserved_total,
            "claimed_total": self.claimed_total,
            "expired_total": self.expired_total,
        }
