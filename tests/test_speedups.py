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


def test_settle_heap_freezes_start_up_and_enlarges_the_young_generation() -> None:
    # in a child: freezing is for a whole server process, not for the test runner
    code = (
        "import gc; from runner import speedups\n"
        "junk = [[i] for i in range(1000)]\n"
        "before, young = gc.get_freeze_count(), gc.get_threshold()[0]\n"
        "speedups.settle_heap()\n"
        "print(before, gc.get_freeze_count(), young, gc.get_threshold()[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    before, after, default_young, young = map(int, out)
    assert before == 0
    assert after >= 1000  # what start-up built is out of the collector's view
    assert young == speedups.YOUNG_THRESHOLD > default_young
