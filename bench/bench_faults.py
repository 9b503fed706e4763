"""What the faults of a phone call cost a worker, measured with the shipped defaults.

    python bench/bench_faults.py

- a caller that vanishes without closing (its media stops, its socket stays open): seconds
  from its last media frame until its slot is free and its Voice Live session closed
  (media watchdog 5 s, sweep once a second);
- a burst of webhooks past capacity: the time to answer each busy, and how long the burst's
  reservations hold slots (those whose sockets never come expire after 30 s);
- Voice Live gone for good mid-call: seconds until the call is hung up (the phone reconnect
  policy: 4 quick jittered attempts with a 3 s handshake deadline each).
The worker, the emulator and the callers share this process (loopback only).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def vanished(tmp: Path) -> float:
    from tests.telephony_helpers import phone_server, quiet_emulator, write_serve
    from tests.test_telephony_twilio import answered, call

    serve = write_serve(tmp)
    async with quiet_emulator() as emu, phone_server(serve, emu.endpoint) as (base, phones):
        caller = await call(base)
        await answered(phones)
        caller.tasks[0].cancel()  # the microphone: no more media, the socket stays open
        gone = time.monotonic()
        await asyncio.wait_for(phones.idle(), 30)
        freed = time.monotonic() - gone
        await caller.close()
        assert all(r.closed for r in emu.sessions)
    return freed


async def burst(tmp: Path, n: int = 50) -> tuple[float, int]:
    from tests.telephony_helpers import phone_server, quiet_emulator, write_serve
    from tests.test_telephony_twilio import webhook

    serve = write_serve(tmp, max_calls=5)
    async with quiet_emulator() as emu, phone_server(serve, emu.endpoint) as (base, phones):
        times, busy = [], 0
        for _ in range(n):
            start = time.perf_counter()
            _, xml, _ = await webhook(base)
            times.append(time.perf_counter() - start)
            busy += '<Reject reason="busy"' in xml
        assert phones.supervisor.reserved() == 5  # five reservations hold until they expire
    return statistics.median(times), busy


async def service_lost(tmp: Path) -> float:
    from tests.relay import relay
    from tests.telephony_helpers import phone_server, quiet_emulator, write_serve
    from tests.test_telephony_twilio import answered, call

    serve = write_serve(tmp)
    async with (
        quiet_emulator() as emu,
        relay(emu.endpoint, cut_when=lambda frame: '"[DTMF] 9"' in frame) as endpoint,
        phone_server(serve, endpoint) as (base, phones),
    ):
        caller = await call(base)
        active = await answered(phones)
        await caller.dtmf("9")
        cut = time.monotonic()
        await asyncio.wait_for(caller.closed.wait(), 60)
        ended = time.monotonic() - cut
        await caller.close()
        assert active.edge.outcome == "service_lost"
    return ended


async def main() -> dict[str, object]:
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(6):
            (root / str(i)).mkdir()
        runs = [await vanished(root / str(i)) for i in range(3)]
        result["vanished_caller_slot_freed_s"] = [round(r, 2) for r in runs]
        median, busy = await burst(root / "3")
        result["burst_busy_answer_median_ms"] = round(median * 1000, 1)
        result["burst_busy_of_50"] = busy
        lost = [await service_lost(root / str(i)) for i in (4, 5)]
        result["voice_live_lost_call_ended_s"] = [round(r, 2) for r in lost]
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
