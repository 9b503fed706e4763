"""runner.speedups: the servers' event loop, JSON parser and heap settling."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from runner import speedups


def test_loads_reads_json_and_refuses_what_json_does_not_allow() -> None:
    assert speedups.loads(b'{"event":"media","media":{"payload":"/w=="}}')["event"] == "media"
    assert speedups.loads('{"a":[1,2.5,null,true]}') == {"a": [1, 2.5, None, True]}
    for bad in ("{", "[1,]", '{"a":NaN}', ""):
        with pytest.raises(ValueError):
            speedups.loads(bad)


def test_dumps_is_compact_json_text() -> None:
    text = speedups.dumps({"type": "response.audio.delta", "delta": "AAAA", "n": [1, None]})
    assert isinstance(text, str)
    assert " " not in text
    assert speedups.loads(text) == {"type": "response.audio.delta", "delta": "AAAA", "n": [1, None]}


def test_run_uses_uvloop_where_installed_and_the_standard_loop_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("uvloop")

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.delenv("VLRUN_LOOP", raising=False)
    assert speedups.loop_name() == "uvloop"
    assert speedups.run(loop_module()).startswith("uvloop")
    monkeypatch.setenv("VLRUN_LOOP", "asyncio")
    assert speedups.loop_name() == "asyncio"
    assert speedups.run(loop_module()).startswith("asyncio")


def child(code: str) -> list[str]:
    """Run ``code`` in a child: freezing and thresholds are a whole server process's, not for
    the test runner; returns what it printed, split."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()


def test_settle_heap_freezes_start_up_and_sets_the_generations() -> None:
    code = (
        "import gc; from runner import speedups\n"
        "junk = [[i] for i in range(1000)]\n"
        "before, young = gc.get_freeze_count(), gc.get_threshold()[0]\n"
        "speedups.settle_heap()\n"
        "print(before, gc.get_freeze_count(), young, *gc.get_threshold())\n"
    )
    before, after, default_young, young, middle, old = map(int, child(code))
    assert before == 0
    assert after >= 1000  # what start-up built is out of the collector's view
    assert young == speedups.YOUNG_THRESHOLD > default_young
    assert middle == speedups.MIDDLE_THRESHOLD


def test_a_settled_heap_never_collects_fully_by_itself_however_much_it_grows() -> None:
    # Surviving allocations for 300 young and 150 middle collections (the young generation
    # made small here, so that takes 30,000 objects, not millions): CPython's own rule would
    # have run full collections, each a walk of every call's objects, long before.
    code = (
        "import gc; from runner import speedups\n"
        "speedups.settle_heap()\n"
        "_, middle, old = gc.get_threshold(); gc.set_threshold(100, middle, old)\n"
        "seen = []\n"
        "pauses = speedups.GcPauses(lambda generation, s: seen.append(generation))\n"
        "pauses.start()\n"
        "kept = [[i] for i in range(300 * 100)]\n"
        "pauses.stop()\n"
        "print(seen.count(0), seen.count(1), seen.count(2))\n"
    )
    young, middle, full = map(int, child(code))
    assert young >= 100 and middle >= 50  # the collector did run, young and middle
    assert full == 0


def test_a_settled_heap_collects_fully_on_its_timer_until_its_block_ends() -> None:
    code = (
        "import asyncio, gc; from runner import speedups\n"
        "async def main():\n"
        "    loop, done, fulls = asyncio.get_running_loop(), asyncio.Event(), []\n"
        "    def observe(generation, seconds):\n"
        "        if generation == 2:\n"
        "            fulls.append(seconds)\n"
        "            if len(fulls) == 3:\n"
        "                loop.call_soon_threadsafe(done.set)\n"
        "    pauses = speedups.GcPauses(observe); pauses.start()\n"
        "    async with speedups.settled_heap(full_every_s=0.02):\n"
        "        await asyncio.wait_for(done.wait(), 30)\n"
        "        inside = {t.get_name() for t in asyncio.all_tasks()}\n"
        "    after = {t.get_name() for t in asyncio.all_tasks()}\n"
        "    print('vlrun-full-collection' in inside, 'vlrun-full-collection' in after)\n"
        "asyncio.run(main())\n"
    )
    # settle_heap's own collection, then two from the timer; the timer's task ends with the block
    assert child(code) == ["True", "False"]
