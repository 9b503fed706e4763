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

from runner.aio import cancel_and_wait
from runner.config.flow import call_control_of
from runner.config.serve_file import Route, ServeFile
from runner.errors import ConfigError, VlrunError
from runner.live.transcript import Transcript
from runner.redact import mask_phone
from runner.serve import calls_tools
from runner.serve.calls import CallEdge
from runner.serve.calls_log import CallConsole, call_id_var
from runner.serve.media_clock import MediaClock
from runner.serve.metrics import ServeMetrics
from runner.serve.routing import Router
from runner.serve.supervisor import Slot, Supervisor

log = logging.getLogger("vlrun.serve.telephony")

DEFAULT_MAX_CALLS = 50
DEFAULT_DRAIN_TIMEOUT_S = 30.0
GOODBYE = "Sorry, I have to end the call now. Goodbye."
_GOODBYE_PLAY_S = 15.0  # the goodbye is short; a stuck one must not hold the drain for ever
_HANG_UP_S = 10.0  # the provider's hang-up request; past it the socket is closed all the same
DEFAULT_MEDIA_TIMEOUT_S = 5.0  # providers stream media (silence too) all call long
#: How a session that could not keep Voice Live ends (see LiveSession.end_reason).
_SERVICE_LOST = ("reconnect_budget", "reconnect_failed", "dropped")
CALL_CONNECT_TIMEOUT_S = 3.0  # a Voice Live handshake takes well under a second when up
DEFAULT_HEARTBEAT_S = 5.0  # WebSocket pings on the phone sockets: a dead peer in about 7.5 s


@dataclass
class PreparedRoute:
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
    """The compiled session with the audio formats the provider's media stream carries, in
    the payload's own shape (dated fields, v1's ``audio``, or GPT-Live's ``audio.format``)."""
    from runner.live.sessions import with_formats

    if provider == "sip":
        return payload  # Voice Live carries the call's media itself: the profile's formats
    if provider == "twilio":
        return with_formats(payload, "g711_ulaw", None, "g711_ulaw")
    return with_formats(payload, "pcm16", rate, "pcm16" if rate == 24000 else f"pcm16_{rate}hz")


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
        from runner.live.transcript import log as transcript_log

        # A call has no Enter key: its typed turns are the keys the caller pressed.
        if what.startswith("Enter"):
            what = "key press" + what[len("Enter") :]
        # Once: the base class would also print it on the call's console, whose lines join
        # the same worker log as this one.
        transcript_log.info("turn latency %.0f ms (%s)", ms, what)
        if what.startswith("end of speech"):
            self.metrics.turn_latency.labels(self.edge).observe(ms / 1000)

    def event(self, kind: str, summary: str = "", payload: dict[str, Any] | None = None) -> None:
        super().event(kind, summary, payload)
        if kind == "barge-in":
            self.metrics.barge_ins.labels(self.edge).inc()


@dataclass(eq=False)
class ActiveCall:
    edge: CallEdge
    prepared: PreparedRoute
    slot: Slot
    session: Any = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    hanging_up: asyncio.Task[None] | None = None


class Phones:
    """Answers calls for the edges: routing, one session per call, liveness and drain.

    Admission, the liveness sweep and the drain are the :class:`Supervisor`'s (shared with the
    browser console when both run in one worker); this class turns a claimed slot into a
    conversation and ends it the phone's way (goodbye, then the provider's hang-up).
    """

    def __init__(
        self,
        serve: ServeFile,
        *,
        endpoint: str | None,
        metrics: ServeMetrics | None = None,
        logs_dir: Path | None = None,
        max_calls: int | None = None,
        drain_timeout_s: float | None = None,
        embedded_target: Any = None,
        supervisor: Supervisor | None = None,
        media_timeout_s: float | None = None,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        sweep_s: float | None = None,
    ) -> None:
        self.serve = serve
        self.endpoint = endpoint
        self.logs_dir = logs_dir
        self.max_calls = max_calls or serve.max_calls or DEFAULT_MAX_CALLS
        self.drain_timeout_s = (
            drain_timeout_s
            if drain_timeout_s is not None
            else serve.drain_timeout_s
            if serve.drain_timeout_s is not None
            else DEFAULT_DRAIN_TIMEOUT_S
        )
        self.media_timeout_s = (
            media_timeout_s
            if media_timeout_s is not None
            else serve.media_timeout_s or DEFAULT_MEDIA_TIMEOUT_S
        )
        self.heartbeat_s = heartbeat_s
        #: Whether this Phones runs its supervisor's sweep itself (no host shares it).
        self.owns_supervisor = supervisor is None
        if supervisor is None:
            supervisor = Supervisor(self.max_calls, metrics=metrics or ServeMetrics())
        if sweep_s is not None:
            supervisor.sweep_s = sweep_s
        if supervisor.metrics is None:
            supervisor.metrics = metrics or ServeMetrics()
        self.supervisor = supervisor
        self.metrics: ServeMetrics = supervisor.metrics
        if serve.max_call_s:
            supervisor.max_call_s = serve.max_call_s
        self.router = Router(serve.routes)
        self.calls: dict[str, ActiveCall] = {}
        # Every call's outbound frames on one timer (its task runs while a call plays)
        self.clock = MediaClock()
        self._logs_failed = False  # said once: the logs folder refuses writes
        # The host's embedded emulator (no endpoint configured): its target, with its key.
        self.embedded_target = embedded_target
        self._prepared: dict[tuple[Path, tuple[str, ...], str | None], PreparedRoute] = {}

    @property
    def draining(self) -> bool:
        return self.supervisor.draining

    async def until(self, predicate: Callable[[], object], timeout: float | None = None) -> bool:
        """Wait until a condition on the calls holds (tests, the drain)."""
        return await self.supervisor.changes.until(predicate, timeout)

    async def idle(self) -> None:
        """Wait until no call is in progress."""
        await self.supervisor.changes.until(lambda: not self.calls)

    # ------------------------------------------------------------------ start-up

    async def prepare(self, api_versions: tuple[str, ...] = ()) -> None:
        """Load, compile and find the tools of every route's profile (ProfileError if bad),
        for the profile's own api-version and for each of ``api_versions`` (an edge that
        connects with a version of its own, as Voice Live SIP does)."""
        from runner.config.serve_file import version_problems
        from runner.errors import ProfileError
        from runner.live.connect import endpoint_for

        # What `vlrun check serve.yaml` says, said at start-up: a route an edge cannot express
        # in its api-version stops the worker before its first call, not on every call.
        problems = version_problems(self.serve)
        if any(p.severity == "error" for p in problems):
            raise ProfileError(problems)
        for route in self.serve.routes:
            if (route.profile, route.call_control, None) not in self._prepared:
                target = self._target_of(route)
                async with endpoint_for(target) as (_, target):
                    pass  # a local `vlrun emulate` needs no key (what `vlrun PROFILE` does too)
                # A caller hears silence while a connection is attempted: a short handshake
                # deadline, so a dead service costs seconds per attempt, not tens.
                target = dataclasses.replace(target, connect_timeout_s=CALL_CONNECT_TIMEOUT_S)
                self._prepare(route, None, target)
            for version in api_versions:
                self._prepare(route, version)

    def _target_of(self, route: Route) -> Any:
        from runner.config.load import load_profile
        from runner.live.connect import resolve_target

        target = resolve_target(load_profile(route.profile), endpoint=self.endpoint)
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
        return target

    def _prepare(self, route: Route, api_version: str | None, target: Any = None) -> PreparedRoute:
        """The route compiled for ``api_version`` (None: the profile's own), on the base
        preparation's profile, tools, target and credential (prepared at start-up)."""
        from runner.config.compile import compile_session, greeting_event
        from runner.config.load import load_profile
        from runner.config.serve_file import extra_tool_dirs
        from runner.live.connect import make_credential
        from runner.live.session import profile_settings
        from runner.plugins import Registry, tool_dirs

        key = (route.profile, route.call_control, api_version)
        if key in self._prepared:
            return self._prepared[key]
        base = self._prepared.get((route.profile, route.call_control, None))
        if base is None and target is None:
            raise RuntimeError(f"route {route_name(route)} was not prepared at start-up")
        if base is not None:
            profile, registry = base.profile, base.registry
            target = dataclasses.replace(base.target, api_version=api_version)
        else:
            profile = load_profile(route.profile)
            registry = Registry.discover(
                list(tool_dirs(profile.source, extra_tool_dirs(self.serve)))
            )
        payload = compile_session(
            profile, api_version=target.api_version, tool_schemas=registry.schemas()
        )
        if route.call_control:
            payload = _with_call_control(payload, registry, route.call_control)
        for name in call_control_of(getattr(profile, "flow", None)):
            if name not in registry:  # a node's own: in that node's session only
                registry.add(calls_tools.TOOLS[name], source="vlrun serve (call control)")
        prepared = PreparedRoute(
            route=route,
            profile=profile,
            payload=payload,
            greeting=greeting_event(profile),
            registry=registry,
            target=target,
            settings=profile_settings(profile),
            # one per worker: Entra tokens are cached
            credential=base.credential if base is not None else make_credential(target),
        )
        self._prepared[key] = prepared
        return prepared

    async def close(self) -> None:
        """Stop the media clock; close the Entra credentials (an API key needs nothing)."""
        await self.clock.close()
        seen: set[int] = set()
        for prepared in self._prepared.values():
            if id(prepared.credential) in seen:
                continue
            seen.add(id(prepared.credential))
            closer = getattr(prepared.credential, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    def some_credential(self) -> Any:
        """A prepared route's credential (the SIP API's requests are the worker's, not a
        route's)."""
        return next(iter(self._prepared.values())).credential if self._prepared else None

    def prepared(self, route: Route, api_version: str | None = None) -> PreparedRoute:
        """The route compiled for ``api_version`` (None: the profile's own)."""
        found = self._prepared.get((route.profile, route.call_control, api_version))
        if found is None:
            found = self._prepare(route, api_version)
        return dataclasses.replace(found, route=route)

    # ------------------------------------------------------------------ admission

    def has_room(self) -> bool:
        """Not draining and a slot free (the host's readiness asks the same supervisor)."""
        return self.supervisor.has_room()

    def reserve(self, provider: str, call_id: str) -> Slot:
        """A call's first request holds a slot (Refused: busy, draining or a duplicate)."""
        return self.supervisor.reserve(provider, call_id)

    def claim(self, provider: str, call_id: str, *, unreserved_ok: bool = False) -> Slot:
        """The call's media socket takes its slot, once (Refused otherwise)."""
        return self.supervisor.claim(provider, call_id, unreserved_ok=unreserved_ok)

    def release(self, slot: Slot) -> None:
        """Give up a reservation that will not become a call (the provider refused it)."""
        self.supervisor.release(slot)

    def route(self, *, path: str | None = None, called: str | None = None) -> Route | None:
        return self.router.route(path=path, called=called)

    def route_named(self, name: str) -> Route | None:
        """The route a media URL or stream parameter names (see :func:`route_name`)."""
        for route in self.router.routes:
            if route_name(route) == name:
                return route
        return None

    # ------------------------------------------------------------------ one call

    async def converse(
        self,
        edge: CallEdge,
        route: Route,
        *,
        slot: Slot,
        rate: int = 8000,
        api_version: str | None = None,
    ) -> str:
        """Run the call's conversation on its claimed ``slot`` until either side ends it;
        returns the outcome. The slot is released when it returns, whatever happened."""
        from runner.live.session import CALL_RECONNECTS, SessionSettings
        from runner.live.sessions import open_session

        call_id_var.set(edge.call_id)
        outcome = "failed"
        transcript = None
        call: ActiveCall | None = None
        try:
            prepared = self.prepared(route, api_version)
            call = ActiveCall(edge, prepared, slot)
            self.calls[edge.call_id] = call
            slot.ender = lambda reason: self._end_for(call, reason)  # type: ignore[arg-type]
            slot.probe = self._probe(edge)
            self.supervisor.changes.notify()
            edge.player.sink = self.metrics.player_sink(edge.provider)
            log.info(
                "call %s answered (%s, profile %s)",
                edge.call_id,
                edge.provider,
                prepared.profile.name,
            )
            console = CallConsole(edge.call_id)
            reveal = self.serve.log_phone_numbers
            transcript = self._transcript(edge, console)
            transcript.conv_note(
                f"{edge.provider} call {edge.call_id} from {_number(edge.caller, reveal)} "
                f"to {_number(edge.called, reveal)}; profile {prepared.profile.name}"
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
            settings = SessionSettings(
                endpoint=str(target.endpoint),
                session_update=payload,
                lines=False,
                interactive=False,
                greeting=greeting,
                **prepared.settings,
                api_version=target.api_version,
                handle_signals=False,  # SIGTERM is the worker's: it drains every call
                # A caller hears silence while Voice Live is away: a few quick, jittered tries
                # (so a worker's calls do not come back in lockstep), then the call ends.
                reconnect_policy=CALL_RECONNECTS,
            )
            session = open_session(
                settings,
                profile=prepared.profile,
                target=target,
                credential=prepared.credential,
                transcript=transcript,
                player=edge.player,
                source=edge.source,
                flow=walk,
                registry=prepared.registry,
                opener=edge.opener,
            )
            if edge.opener is not None:
                session.forbid_reconnect()  # one attached socket: when it drops, the call ends
            call.session = session
            self.supervisor.changes.notify()
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
            edge.player.flush()
            if call is not None and call.session is not None:
                self.metrics.reconnects.labels(edge.provider).inc(call.session.metrics.reconnects)
            if transcript is not None:
                transcript.conv_note(f"call {edge.call_id} ended: {outcome}")
                with contextlib.suppress(Exception):  # the call is over whatever the disk says
                    await transcript.aclose()  # the writer thread's last lines, off the loop
            calls_tools.unregister(edge.call_id)
            self.calls.pop(edge.call_id, None)
            self.supervisor.release(slot, outcome)
            log.info("call %s ended: %s", edge.call_id, outcome)
        return outcome

    def _transcript(self, edge: CallEdge, console: CallConsole) -> CallTranscript:
        """The call's transcript, with its log files when the logs folder takes them; a call
        goes on without files (said once in the worker's log) when it does not."""
        options: dict[str, Any] = {
            "name": f"{edge.provider}-{edge.call_id}",
            "out": console,
            "err": console,
        }
        try:
            return CallTranscript(edge.provider, self.metrics, logs_dir=self.logs_dir, **options)
        except OSError as exc:  # a full or read-only logs folder must not refuse the call
            if not self._logs_failed:
                log.error("call logs cannot be written (%s); calls go on without them", exc)
                self._logs_failed = True
            return CallTranscript(edge.provider, self.metrics, logs_dir=None, **options)

    def _probe(self, edge: CallEdge) -> Callable[[float], str | None]:
        """The sweep's question about this call: has media stopped coming?"""
        limit = self.media_timeout_s
        if edge.opener is not None:
            return lambda _now: None  # Voice Live carries a SIP call's media; its socket is watched

        def probe(now: float) -> str | None:
            return "dropped" if now - edge.source.last_fed > limit else None

        return probe

    async def _run(self, call: ActiveCall, session: Any) -> str:
        edge = call.edge
        run = asyncio.create_task(session.run(), name=f"vlrun-call-{edge.call_id}")
        ended = asyncio.create_task(edge.ended.wait(), name=f"vlrun-call-ended-{edge.call_id}")
        try:
            await asyncio.wait({run, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                session.stop()  # the caller hung up, or the edge ended the call
            try:
                code = await run
            except VlrunError as exc:
                if edge.outcome or session.end_reason not in _SERVICE_LOST:
                    raise
                # Voice Live is gone and its retries are spent: one line, and the provider
                # ends the call (no caller is left listening to silence).
                log.warning("call %s: %s", edge.call_id, exc.message)
                await self.hang_up(call, goodbye=None, outcome="service_lost", say=False)
                code = 1
        finally:
            await cancel_and_wait([ended, run], timeout=_GOODBYE_PLAY_S)
            if call.hanging_up is not None:
                await cancel_and_wait(call.hanging_up, timeout=_GOODBYE_PLAY_S)
        if edge.outcome:
            return edge.outcome
        return "completed" if code == 0 else "failed"

    def _control(self, call: ActiveCall) -> None:
        """The call-control tools' view of this call (its route opted in)."""
        edge = call.edge

        def request_hang_up(goodbye: str) -> None:
            # After the tool's result: the model's reply (if any) and the goodbye come first.
            self.hang_up(call, goodbye=goodbye, outcome="completed", say=bool(goodbye))

        calls_tools.register(
            edge.call_id, calls_tools.Control(request_hang_up, edge.transfer, edge.send_dtmf)
        )

    async def _end_for(self, call: ActiveCall, reason: str) -> None:
        """How the supervisor ends a call: a caller gone hears nothing; others the goodbye."""
        task = self.hang_up(call, goodbye=None, outcome=reason, say=reason != "dropped")
        await asyncio.shield(task)

    def hang_up(
        self, call: ActiveCall, *, goodbye: str | None, outcome: str, say: bool = True
    ) -> asyncio.Task[None]:
        """Say the goodbye (if the session still can), let it play, then end the call.

        One hang-up per call: asking again while one runs gets the same task; the call's
        conversation owns it (awaited before the call's slot is released)."""
        if call.hanging_up is None or (call.hanging_up.done() and not call.edge.ended.is_set()):
            call.hanging_up = asyncio.get_running_loop().create_task(
                self._hang_up(call, goodbye=goodbye, outcome=outcome, say=say),
                name=f"vlrun-hang-up-{call.edge.call_id}",
            )
        return call.hanging_up

    async def _hang_up(
        self, call: ActiveCall, *, goodbye: str | None, outcome: str, say: bool
    ) -> None:
        session = call.session
        edge = call.edge
        text = goodbye or call.prepared.route.goodbye or GOODBYE
        try:
            if session is not None and session.ready.is_set():
                if say:
                    await session.say(text, timeout=_GOODBYE_PLAY_S)
                else:
                    await session.finish_reply(timeout=_GOODBYE_PLAY_S)
        except Exception as exc:  # a Voice Live drop mid-goodbye: the call ends all the same
            log.warning("call %s: goodbye not heard (%s); hanging up", edge.call_id, exc)
        finally:
            if not edge.outcome:
                edge.outcome = outcome
            if edge.hang_up is not None:
                try:
                    await asyncio.wait_for(edge.hang_up(), _HANG_UP_S)
                except Exception as exc:  # the provider may already have ended it
                    log.warning("call %s: hang-up failed: %s", edge.call_id, exc)
            edge.end(outcome)

    # ------------------------------------------------------------------ drain

    async def drain(self, timeout: float | None = None) -> None:
        """Stop taking calls; let active calls finish up to the timeout, then goodbye + hang up."""
        await self.supervisor.drain(self.drain_timeout_s if timeout is None else timeout)


def route_name(route: Route) -> str:
    """The name a route goes by in media URLs and stream parameters."""
    return route.path or route.number or ("default" if route.default else "")


def _number(value: str, reveal: bool = False) -> str:
    """A caller's or callee's number as logs show it: its last four digits, unless the serve
    file asks for whole numbers (caller data stays out of logs by default)."""
    return mask_phone(value, reveal=reveal) if value else "?"


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
