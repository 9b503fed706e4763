"""Prometheus metrics of one `vlrun serve` worker, served at ``/metrics``.

One registry per server (not prometheus-client's global one), so two servers in one process,
as in tests, count apart. Label values come from a closed set (the edge names, the outcomes
below) or from the profiles' own tool names, so the number of series stays bounded whatever
callers send. The HPA in deploy/ scales on ``vlrun_active_calls``.
"""

from __future__ import annotations

from typing import Any

from runner.errors import VlrunError

INSTALL_HINT = "install the serve extra: pip install 'vlrun[serve]'"
EDGES = ("twilio", "acs", "browser", "sip")
#: How a call ended, as counted in vlrun_calls_total{outcome}.
OUTCOMES = (
    "completed",  # the assistant or the caller ended it normally
    "caller_hung_up",  # the provider said the call is over
    "refused",  # at capacity or draining: refused the provider's way
    "forbidden",  # bad or missing signature / token: 403, nothing started
    "dropped",  # the media socket died or went silent without the provider ending the call
    "duplicate",  # a replayed or second socket for a call that has (or had) its session
    "max_length",  # longer than the serve file's max_call_s: goodbye, then hang-up
    "service_lost",  # Voice Live could not be reached again within the reconnect budget
    "malformed",  # too many malformed media frames: ended with a clean hang-up
    "drained",  # still going at the drain timeout: goodbye, then hang-up
    "failed",  # the conversation could not start or ended on an error
)
SLOT_EVENTS = ("reserved", "claimed", "expired")
DROPOUTS = (
    "socket_closed",
    "malformed_frame",
    "underrun",
    "audio_late",
    "stale_mark",
    "overflow",  # assistant audio past the player's bound (the caller's side stopped taking it)
)
# Turn latency (end of speech -> first audio) spans tens of ms (emulator) to seconds (cloud).
_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise VlrunError("prometheus-client is not installed", hint=INSTALL_HINT) from None
    return prometheus_client


class ServeMetrics:
    """The worker's counters, gauges and histograms, and their text exposition."""

    def __init__(self) -> None:
        prom = _prometheus()
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.active_calls = prom.Gauge(
            "vlrun_active_calls", "Calls in progress on this worker", ["edge"], registry=r
        )
        self.calls = prom.Counter(
            "vlrun_calls", "Calls by how they ended", ["edge", "outcome"], registry=r
        )
        self.turn_latency = prom.Histogram(
            "vlrun_turn_latency_seconds",
            "End of the caller's speech to the first assistant audio",
            ["edge"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_ins = prom.Counter(
            "vlrun_barge_ins", "Caller speech that interrupted the assistant", ["edge"], registry=r
        )
        self.tool_latency = prom.Histogram(
            "vlrun_tool_latency_seconds",
            "Tool call duration",
            ["tool"],
            buckets=_TOOL_BUCKETS,
            registry=r,
        )
        self.tool_errors = prom.Counter(
            "vlrun_tool_errors", "Tool calls that returned an error", ["tool"], registry=r
        )
        self.reconnects = prom.Counter(
            "vlrun_reconnects", "Voice Live connections re-opened mid-call", ["edge"], registry=r
        )
        self.dropouts = prom.Counter(
            "vlrun_edge_dropouts",
            "Faults the phone edges detected (socket closed mid-call, malformed frames, "
            "outbound underruns, the service's audio arriving after the caller's buffer ran "
            "dry, stale marks)",
            ["edge", "kind"],
            registry=r,
        )
        self.frame_delay = prom.Histogram(
            "vlrun_outbound_frame_delay_seconds",
            "How much later than the media clock was due to send it an assistant audio frame "
            "left for the caller (its tick, or at once for a caller about to run dry)",
            ["edge"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
            registry=r,
        )
        self.slots = prom.Counter(
            "vlrun_slots",
            "Call slots reserved (a call's first request), claimed (its media socket came) and "
            "expired (no media socket came in time)",
            ["edge", "what"],
            registry=r,
        )
        self.loop_lag_seconds = prom.Histogram(
            "vlrun_event_loop_lag_seconds",
            "How late the event loop ran a timer (blocking work on the loop shows here first)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.gc_pause_seconds = prom.Histogram(
            "vlrun_gc_pause_seconds",
            "How long each garbage collection stopped the event loop (and every call on it), "
            "by generation (2: a full collection)",
            ["generation"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        for generation in ("0", "1", "2"):
            self.gc_pause_seconds.labels(generation)
        for edge in EDGES:
            self.active_calls.labels(edge)  # every series exists from the start (HPA reads 0)
            for what in SLOT_EVENTS:
                self.slots.labels(edge, what)

    def call_started(self, edge: str) -> None:
        self.active_calls.labels(edge).inc()

    def call_ended(self, edge: str, outcome: str) -> None:
        self.active_calls.labels(edge).dec()
        self.calls.labels(edge, outcome if outcome in OUTCOMES else "failed").inc()

    def refused(self, edge: str, outcome: str = "refused") -> None:
        """A call that never started (capacity, drain, a forged request)."""
        self.calls.labels(edge, outcome).inc()

    def slot(self, what: str, edge: str) -> None:
        """A slot was reserved, claimed or expired (the supervisor's admission)."""
        self.slots.labels(edge if edge in EDGES else "browser", what).inc()

    def loop_lag(self, seconds: float) -> None:
        self.loop_lag_seconds.observe(seconds)

    def gc_pause(self, generation: int, seconds: float) -> None:
        self.gc_pause_seconds.labels(str(generation)).observe(seconds)

    def dropout(self, edge: str, kind: str, n: int = 1) -> None:
        if n > 0:
            self.dropouts.labels(edge, kind if kind in DROPOUTS else "socket_closed").inc(n)

    def player_sink(self, edge: str) -> EdgeSink:
        """What one call's player reports to as it plays (frame delays, underruns)."""
        return EdgeSink(self, edge)

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        prom = _prometheus()
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST

    def total_active(self) -> int:
        get = self.registry.get_sample_value
        return int(sum(get("vlrun_active_calls", {"edge": e}) or 0 for e in EDGES))


class EdgeSink:
    """A call player's reports, into the worker's metrics under the call's edge."""

    def __init__(self, metrics: ServeMetrics, edge: str) -> None:
        self.metrics, self.edge = metrics, edge
        self._delays = metrics.frame_delay.labels(edge)

    def frame_delays(self, delays: list[float]) -> None:
        observe = self._delays.observe
        for delay in delays:
            observe(delay)

    def dropout(self, kind: str) -> None:
        self.metrics.dropout(self.edge, kind)


def add_route(app: Any, metrics: ServeMetrics) -> None:
    """Serve ``GET /metrics`` on an aiohttp application."""
    from aiohttp import web

    async def handle(_request: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        # aiohttp wants the charset apart from the media type
        media, _, params = content_type.partition(";")
        charset = params.split("charset=")[-1].strip() if "charset=" in params else None
        return web.Response(body=body, content_type=media.strip(), charset=charset)

    app.router.add_get("/metrics", handle)
