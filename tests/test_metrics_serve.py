"""/metrics: Prometheus text exposition of a worker's calls, read back with prometheus-client's
own parser, so the names the HPA and dashboards use are the names served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.telephony_helpers import phone_server, quiet_emulator, write_serve

pytest.importorskip("prometheus_client")


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    """This module's emulator: the synthetic voice (see telephony_helpers.quiet_emulator)."""
    async with quiet_emulator() as emu:
        yield emu


async def scrape(base: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


async def test_metrics_names_and_counts(tmp_path: Path, emulator: Any) -> None:
    async with phone_server(write_serve(tmp_path), emulator.endpoint) as (base, phones):
        before = await scrape(base)
        phones.metrics.refused("twilio", "forbidden")
        phones.metrics.call_started("acs")
        phones.metrics.dropout("acs", "underrun", 3)
        phones.metrics.tool_latency.labels("get_weather").observe(0.2)
        after = await scrape(base)
    # every edge's active-calls series exists from the start, so an HPA reads 0, not nothing
    assert before["vlrun_active_calls{edge=twilio}"] == 0
    assert before["vlrun_active_calls{edge=acs}"] == 0
    assert after["vlrun_active_calls{edge=acs}"] == 1
    assert after["vlrun_calls_total{edge=twilio,outcome=forbidden}"] == 1
    assert after["vlrun_edge_dropouts_total{edge=acs,kind=underrun}"] == 3
    assert after["vlrun_tool_latency_seconds_count{tool=get_weather}"] == 1
    assert after["vlrun_tool_latency_seconds_bucket{le=0.25,tool=get_weather}"] == 1
    assert phones.metrics.total_active() == 1
