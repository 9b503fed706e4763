"""The phone side of `vlrun serve`: routes ready to answer, the calls in progress, the drain.

Every route's profile is loaded, compiled and its tools found once, at start-up, so a bad
profile stops the server before it takes a call, and a call costs no parsing. Each call is one
:class:`~runner.live.session.LiveSession` whose edges are the call's
(:class:`~runner.serve.calls.CallEdge`), with the session's audio formats set to what the
provider carries (μ-law 8 kHz for Twilio, PCM 16/24 kHz for ACS), so nothing is transcoded.

Nothing about a call lives outside this process but what the provider holds: a worker that
dies mid-call drops its calls, and the provider's own retry or fallback settings apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.flow import call_control_of
from runner.config.serve_file import Route, ServeFile
from runner.errors import ConfigError
from runner.live.transcript import Transcript
from runner.serve import calls_tools
from runner.serve.calls import CallEdge
from runner.serve.calls_log import CallConsole, call_id_var
from runner.serve.metrics import ServeMetrics
from runner.serve.routing import Router

log = logging.getLogger("vlrun.serve.telephony")

DEFAULT_MAX_CALLS = 50
DEFAULT_DRAIN_TIMEOUT_S = 30.0
GOODBYE = "Sorry, I have to end the call now. Goodbye."
_GOODBYE_PLAY_S = 15.0  # the goodbye is short; a stuck one must not hold the drain for ever


@dataclass
class Prepared:
    """One route, ready to answer: everything a call needs that does not change per call."""

    route: Route
    profile: Any
    payload: dict[str, Any]
    greeting: dict[str, Any] | None
    registry: Any
    target: Any
    settings: dict[str, Any]
    credential: Any = None


def _session_for(payload: dict[str, Any], provider: str, rate: int) -> dict[str, Any]:
    """The compiled session with the audio formats the provider's media stream carries."""
    update = dict(payload)
    session = dict(update.get("session", {}))
    session.pop("input_audio_sampling_rate", None)
    if provider == "sip":
        return update  # Voice Live carries the call's media itself: the profile's formats
    if provider == "twilio":
        session["input_audio_format"] = "g711_ulaw"
        session["output_audio_format"] = "g711_ulaw"
    else:
        session["input_audio_format"] = "pcm16"
        session["input_audio_sampling_rate"] = rate
        session["output_audio_format"] = "pcm16" if rate == 24000 else f"pcm16_{rate}hz"
    update["session"] = session
    return update


class CallTranscript(Transcript):
    """A call's transcript that also feeds the worker's metrics as the session reports."""

    def __init__(self, edge: str, metrics: ServeMetrics, **options: Any) -> None:
        super().__init__(**options)
        self.edge = edge
        self.metrics = metrics

    def assistant_delta(self, item_id: str, delta: str) -> None:
        # Nobody watches a call's console: the reply is kept as it streams (an interrupted
        # one is still logged) and its line is logged whole when it is done, not written a
        # word at a time (a tenth of a busy worker's CPU).
        if item_id in self._seen:
            return
        if self._streaming != item_id:
            self._end_stream()
            self._streaming, self._streamed_text = item_id, ""
        self._streamed_text += delta

    def assistant_done(self, item_id: str, text: str, *, interrupted: bool = False) -> None:
        if self._streaming == item_id:
            text = text or self._streamed_text
            self._streaming = None  # nothing of it was written: the whole line is
        super().assistant_done(item_id, text, interrupted=interrupted)

    def tool_result(self, call_id: str, name: str, ok: bool, text: str, duration_s: float) -> None:
        super().tool_result(call_id, name, ok, text, duration_s)
        self.metrics.tool_latency.labels(name).observe(duration_s)
        if not ok:
            self.metrics.tool_errors.labels(name).inc()

    def latency(self, ms: float, what: str = "end of speech -> first audio") -> None:
        super().latency(ms, what)
        if what.startswith("end of speech"):
            self.metrics.turn_latency.labels(self.edge).observe(ms / 1000)

    def event(self, kind: str, summary: str = "", payload: dict[str, Any] | None = None) -> None:
        super().event(kind, summary, payload)
        if kind == "barge-in":
            self.metrics.barge_ins.labels(self.edge).inc()


@dataclass(eq=False)
class ActiveCall:
    edge: CallEdge
    prepared: Prepared
    session: Any = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    hanging_up: bool = False


class Phones:
    """Answers calls for the edges: routing, capacity, one session per call, drain."""

    def __init__(
        self,
        serve: ServeFile,
        *,
        endpoint: str | None,
        metrics: ServeMetrics | None = None,
        logs_dir: Path | None = None,
        max_calls: int | None = None,
        drain_timeout_s: float | None = None,
        capacity: Callable[[], bool] | None = None,
        embedded_target: Any = None,
    ) -> None:
        self.serve = serve
        self.endpoint = endpoint
        self.metrics = metrics or ServeMetrics()
        self.logs_dir = logs_dir
        self.max_calls = max_calls or serve.max_calls or DEFAULT_MAX_CALLS
        self.drain_timeout_s = (
            drain_timeout_s
            if drain_timeout_s is not None
            else serve.drain_timeout_s
            if serve.drain_timeout_s is not None
            else DEFAULT_DRAIN_TIMEOUT_S
        )
        self.router = Router(serve.routes)
        self.calls: dict[str, ActiveCall] = {}
        self.draining = False
        # The host's own gate (browser sessions count against the same worker), if any.
        self._capacity = capacity
        # The host's embedded emulator (no endpoint configured): its target, with its key.
        self.embedded_target = embedded_target
        self._prepared: dict[tuple[Path, tuple[str, ...]], Prepared] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._changed = asyncio.Event()

    def _moved(self) -> None:
        """A call came, went or got its session: wake whoever waits on :meth:`until`."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, predicate: Callable[[], object]) -> None:
        """Wait until a condition on the calls holds (tests, the drain)."""
        while not predicate():
            await self._changed.wait()

    async def idle(self) -> None:
        """Wait until no call is in progress."""
        await self._idle.wait()

    # ------------------------------------------------------------------ start-up

    async def prepare(self) -> None:
        """Load, compile and find the tools of every route's profile (ProfileError if bad)."""
        from runner.config.compile import compile_session, greeting_event
        from runner.config.load import load_profile
        from runner.live.connect import endpoint_for, make_credential, resolve_target
        from runner.live.session import profile_settings
        from runner.plugins import Registry, tool_dirs

        for route in self.serve.routes:
            key = (route.profile, route.call_control)
            if key in self._prepared:
                continue
            profile = load_profile(route.profile)
            target = resolve_target(profile, endpoint=self.endpoint)
            if self.embedded_target is not None:
                target = dataclasses.replace(
                    self.embedded_target,
                    endpoint=self.endpoint,
                    model=target.model,
                    api_version=target.api_version,
                )
            if target.embedded:
                raise ConfigError(
                    "vlrun serve needs a Voice Live endpoint",
                    hint="pass --endpoint (a `vlrun emulate` URL offline) or set "
                    "AZURE_VOICELIVE_ENDPOINT",
                )
            async with endpoint_for(target) as (_, target):
                pass  # a local `vlrun emulate` needs no key (what `vlrun PROFILE` does too)
            registry = Registry.discover(list(tool_dirs(profile.source, ())))
            payload = compile_session(
                profile, api_version=target.api_version, tool_schemas=registry.schemas()
            )
            if route.call_control:
                payload = _with_call_control(payload, registry, route.call_control)
            for name in call_control_of(getattr(profile, "flow", None)):
                if name not in registry:  # a node's own: in that node's session only
                    registry.add(calls_tools.TOOLS[name], source="vlrun serve (call control)")
            self._prepared[key] = Prepared(
                route=route,
                profile=profile,
                payload=payload,
                greeting=greeting_event(profile),
                registry=registry,
                target=target,
                settings=profile_settings(profile),
                credential=make_credential(target),  # one per worker: Entra tokens are cached
            )

    async def close(self) -> None:
        """Close the Entra credentials (an API key needs nothing)."""
        for prepared in self._prepared.values():
            closer = getattr(prepared.credential, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    def some_credential(self) -> Any:
        """A prepared route's credential (the SIP API's requests are the worker's, not a
        route's)."""
        return next(iter(self._prepared.values())).credential if self._prepared else None

    def prepared(self, route: Route) -> Prepared:
        found = self._prepared[(route.profile, route.call_control)]
        return dataclasses.replace(found, route=route)

    # ------------------------------------------------------------------ admission

    def has_room(self) -> bool:
        """Not draining and below max_calls (the host's readiness asks this too)."""
        return not self.draining and len(self.calls) < self.max_calls

    def accepting(self) -> bool:
        """Whether a new call would be answered now (and the host, if any, is ready)."""
        if not self.has_room():
            return False
        return self._capacity() if self._capacity is not None else True

    def route(self, *, path: str | None = None, called: str | None = None) -> Route | None:
        return self.router.route(path=path, called=called)

    # ------------------------------------------------------------------ one call

    async def converse(self, edge: CallEdge, route: Route, *, rate: int = 8000) -> str:
        """Run the call's conversation until either side ends it; returns the outcome."""
        from runner.live.session import LiveSession

        call_id_var.set(edge.call_id)
        prepared = self.prepared(route)
        call = ActiveCall(edge, prepared)
        self.calls[edge.call_id] = call
        self._idle.clear()
        self._moved()
        self.metrics.call_started(edge.provider)
        edge.player.sink = self.metrics.player_sink(edge.provider)
        log.info(
            "call %s answered (%s, profile %s)", edge.call_id, edge.provider, prepared.profile.name
        )
        console = CallConsole(edge.call_id)
        transcript = None
        outcome = "failed"
        try:
            transcript = CallTranscript(
                edge.provider,
                self.metrics,
                logs_dir=self.logs_dir,
                name=f"{edge.provider}-{edge.call_id}",
                out=console,
                err=console,
            )
            transcript.conv_note(
                f"{edge.provider} call {edge.call_id} from {edge.caller or '?'} "
                f"to {edge.called or '?'}; profile {prepared.profile.name}"
            )
            target = prepared.target
            from runner import flows

            # A flow's node updates are built on this base, so they keep the phone's formats.
            payload, greeting, walk = flows.opening(
                prepared.profile,
                _session_for(prepared.payload, edge.provider, rate),
                prepared.greeting,
                prepared.registry.schemas(),
            )
            session = LiveSession(
                target=target,
                endpoint=str(target.endpoint),
                credential=prepared.credential,
                session_update=payload,
                transcript=transcript,
                player=edge.player,
                source=edge.source,
                lines=False,
                interactive=False,
                greeting=greeting,
                flow=walk,
                registry=prepared.registry,
                **prepared.settings,
                api_version=target.api_version,
                handle_signals=False,  # SIGTERM is the worker's: it drains every call
                opener=edge.opener,
            )
            if edge.opener is not None:
                session.max_reconnects = 0  # one attached socket: when it drops, the call is over
            call.session = session
            self._moved()
            edge.dtmf_listeners.append(lambda digit: _dtmf_to_session(session, digit))
            if prepared.route.call_control or call_control_of(walk.flow if walk else None):
                self._control(call)
            outcome = await self._run(call, session)
        except Exception as exc:  # one call's failure is reported and contained
            log.error("call %s failed: %s", edge.call_id, exc, exc_info=exc)
            outcome = "failed"
        finally:
            edge.end(outcome)
            outcome = edge.outcome
            self.metrics.call_ended(edge.provider, outcome)
            edge.player.flush()
            if call.session is not None:
                self.metrics.reconnects.labels(edge.provider).inc(call.session.metrics.reconnects)
            if transcript is not None:
                transcript.conv_note(f"call {edge.call_id} ended: {outcome}")
                transcript.close()
            calls_tools.unregister(edge.call_id)
            del self.calls[edge.call_id]
            if not self.calls:
                self._idle.set()
            self._moved()
            log.info("call %s ended: %s", edge.call_id, outcome)
        return outcome

    async def _run(self, call: ActiveCall, session: Any) -> str:
        edge = call.edge
        run = asyncio.create_task(session.run(), name=f"vlrun-call-{edge.call_id}")
        ended = asyncio.create_task(edge.ended.wait(), name=f"vlrun-call-ended-{edge.call_id}")
        try:
            await asyncio.wait({run, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                session.stop()  # the caller hung up, or the edge ended the call
            code = await run
        finally:
            ended.cancel()
            await asyncio.wait({ended})
            if not run.done():
                run.cancel()
                await asyncio.wait({run})
        if edge.outcome:
            return edge.outcome
        return "completed" if code == 0 else "failed"

    def _control(self, call: ActiveCall) -> None:
        """The call-control tools' view of this call (its route opted in)."""
        edge = call.edge

        def request_hang_up(goodbye: str) -> None:
            # After the tool's result: the model's reply (if any) and the goodbye come first.
            call.session.tasks.spawn(
                self.hang_up(call, goodbye=goodbye, outcome="completed", say=bool(goodbye)),
                f"vlrun-hang-up-{edge.call_id}",
            )

        calls_tools.register(
            edge.call_id, calls_tools.Control(request_hang_up, edge.transfer, edge.send_dtmf)
        )

    async def hang_up(
        self, call: ActiveCall, *, goodbye: str | None, outcome: str, say: bool = True
    ) -> None:
        """Say the goodbye (if the session still can), let it play, then end the call."""
        if call.hanging_up:
            return
        call.hanging_up = True
        session = call.session
        text = goodbye or call.prepared.route.goodbye or GOODBYE
        if session is not None and session.ready.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    _say(session, text) if say else _quiet(session), _GOODBYE_PLAY_S
                )
        edge = call.edge
        if not edge.outcome:
            edge.outcome = outcome
        if edge.hang_up is not None:
            try:
                await edge.hang_up()
            except Exception as exc:  # the provider may already have ended it
                log.warning("call %s: hang-up failed: %s", edge.call_id, exc)
        edge.end(outcome)

    # ------------------------------------------------------------------ drain

    async def drain(self, timeout: float | None = None) -> None:
        """Stop taking calls; let active calls finish up to the timeout, then goodbye + hang up."""
        self.draining = True
        limit = self.drain_timeout_s if timeout is None else timeout
        log.info("draining: %d active call(s), up to %.0f s", len(self.calls), limit)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), limit)
        left = list(self.calls.values())
        if left:
            log.info("drain timeout: ending %d call(s) with the goodbye", len(left))
            await asyncio.gather(
                *(self.hang_up(c, goodbye=None, outcome="drained") for c in left),
                return_exceptions=True,
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), _GOODBYE_PLAY_S)


async def _say(session: Any, text: str) -> None:
    """Speak a fixed message as the assistant and wait until the caller has heard it."""
    turn = session.turn
    await turn.until(turn.idle)  # never talk over a reply in progress
    await session._send(  # noqa: SLF001 - the session's own send path
        {
            "type": "response.create",
            "response": {
                "pre_generated_assistant_message": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": text}],
                }
            },
        }
    )
    heard = len(session.transcript.turns)
    await turn.until(lambda: len(session.transcript.turns) > heard and turn.idle())
    await session.player.drain()


async def _quiet(session: Any) -> None:
    """Wait until the reply in progress (if any) has been said and heard."""
    await session.turn.until(session.turn.idle)
    await session.player.drain()


def _with_call_control(
    payload: dict[str, Any], registry: Any, names: tuple[str, ...]
) -> dict[str, Any]:
    """The compiled session plus the call-control tools, which join the route's registry."""
    session = dict(payload.get("session", {}))
    tools = list(session.get("tools") or [])
    for name in names:
        if name not in registry:
            registry.add(calls_tools.TOOLS[name], source="vlrun serve (call control)")
        tools.append(registry.get(name).definition())
    session["tools"] = tools
    return {**payload, "session": session}


def _dtmf_to_session(session: Any, digit: str) -> None:
    """A key the caller pressed reaches the model (and a flow) as a user turn it can act on."""
    session.transcript.conv_note(f"DTMF {digit}")
    if session.ready.is_set():
        session.feed_line(f"[DTMF] {digit}")
