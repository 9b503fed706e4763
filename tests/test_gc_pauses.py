"""The collector's pauses, timed: every collection stops the event loop and each call on it.

The real collector runs here (``gc.collect``); nothing is faked.
"""

from __future__ import annotations

import gc

import pytest

from runner.serve.supervisor import Supervisor
from runner.speedups import GcPauses


def test_each_collection_is_observed_with_its_generation_until_stopped() -> None:
    seen: list[tuple[int, float]] = []
    pauses = GcPauses(lambda generation, seconds: seen.append((generation, seconds)))
    pauses.start()
    pauses.start()  # twice is once: one observation per collection
    try:
        gc.collect(1)
        gc.collect(2)
    finally:
        pauses.stop()
    # young collections may come in between (allocations trigger them): ours are there
    generations = [g for g, _ in seen]
    assert 1 in generations and 2 in generations
    assert all(seconds >= 0 for _, seconds in seen)
    assert pauses.worst_s == max(s for _, s in seen) > 0
    count = len(seen)
    gc.collect()
    assert len(seen) == count  # stopped: its callback is gone
    assert pauses._callback not in gc.callbacks


def test_a_failing_observer_never_reaches_the_collector() -> None:
    calls: list[int] = []

    def observe(generation: int, seconds: float) -> None:
        calls.append(generation)
        raise RuntimeError("a metrics sink's bug")

    pauses = GcPauses(observe)
    pauses.start()
    try:
        gc.collect()  # an exception from a gc callback would be printed as unraisable
        gc.collect()
    finally:
        pauses.stop()
    assert calls.count(2) >= 2  # observed both times: the first failure stopped nothing


async def test_the_supervisor_counts_pauses_in_the_metrics_while_it_runs() -> None:
    pytest.importorskip("prometheus_client")
    from runner.serve.metrics import ServeMetrics

    metrics = ServeMetrics()
    supervisor = Supervisor(1, metrics=metrics)

    def full_pauses() -> float:
        value = metrics.registry.get_sample_value(
            "vlrun_gc_pause_seconds_count", {"generation": "2"}
        )
        return float(value or 0.0)

    assert full_pauses() == 0  # the series exists from the start
    async with supervisor.running():
        gc.collect()
        during = full_pauses()
    gc.collect()
    assert during >= 1
    assert full_pauses() == during  # stopped with the server


def test_the_benchmark_reads_the_windows_longest_pause_from_the_served_metrics() -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from bench.bench_calls import bucket_at, buckets
    from runner.serve.metrics import ServeMetrics

    metrics = ServeMetrics()

    def window() -> dict[float, float]:
        text = generate_latest(metrics.registry).decode()
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        return buckets(samples, "vlrun_gc_pause_seconds")

    metrics.gc_pause(2, 0.4)  # before the window: not the window's
    start = window()
    assert bucket_at(start, window(), 1.0) is None  # no collection in the window
    metrics.gc_pause(0, 0.003)
    metrics.gc_pause(1, 0.07)  # summed over generations
    metrics.gc_pause(0, 0.004)
    end = window()
    assert bucket_at(start, end, 1.0) == 0.1
    assert end[float("inf")] - start[float("inf")] == 3
