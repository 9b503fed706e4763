"""The emulator's HTTP side: handshake checks (path, auth, model/agent) and the aiohttp app.

Refusals happen before the WebSocket upgrade with an HTTP status and a JSON body, as the
service does; the SDK then raises ``azure.ai.voicelive.aio.ConnectionError`` naming the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from runner.aio import cancel_and_wait
from runner.config.service import FEATURES_HEADER, V1, V1_PREVIEW_VALUE
from runner.emulator import protocol as P
from runner.emulator.chat import ChatDesk
from runner.emulator.connection import Connection
from runner.emulator.faults import Faults
from runner.emulator.fidelity import Fidelity
from runner.emulator.gpt_live import LiveDesk, voice_live_refusal
from runner.emulator.model import Script, load_script
from runner.emulator.outbox import HEARTBEAT_S
from runner.emulator.pace import PaceClock
from runner.emulator.record import SessionRecord
from runner.emulator.sip import DECISION_TIMEOUT_S, SipDesk

PATH_SUFFIX = "/voice-live/realtime"
MAX_CLIENT_FRAME = 32 * 1024 * 1024  # appends may carry 15 MiB of audio, base64-encoded
AUTH_FAILED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
# How long stop() lets a connection's handler finish after its socket is closed, before it is
# cancelled (aiohttp waits 60 s by default; a delay fault holds a handler that long and more).
SHUTDOWN_TIMEOUT_S = 1.0

ScenarioArg = str | Path | Mapping[str, Any] | Script | None


class Emulator:
    """A local Voice Live endpoint. Start it with :func:`running_emulator` (or :meth:`start`)."""

    def __init__(
        self,
        *,
        scenario: ScenarioArg = None,
        speed: float = 1.0,
        api_key: str | None = None,
        faults: Faults | None = None,
        session_limit_s: float = 3600.0,
        use_espeak: bool = True,
        record_audio: bool = True,
        mcp_latency_ms: float | None = None,
        sip_decision_timeout_s: float = DECISION_TIMEOUT_S,
        clock: PaceClock | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        load: bool = False,
    ) -> None:
        # a benchmark mode for Voice Live sockets: no client-event history (``wait_for`` finds
        # nothing), replies' encoded audio reused, quiet μ-law input skipped by a byte table;
        # what a client receives is the same (tests/test_emulator_load_mode.py)
        self.load = load
        self.mcp_latency_ms = mcp_latency_ms
        self.heartbeat_s = heartbeat_s  # Voice Live and GPT-Live sockets are pinged this often
        # one clock paces every connection's replies (one timer for all: runner/emulator/pace.py);
        # a test gives its own
        self.clock = clock if clock is not None else PaceClock()
        self.fidelity = Fidelity()  # the assumptions this run made, each reported once
        self.script = (
            scenario if isinstance(scenario, Script) or scenario is None else load_script(scenario)
        )
        self.speed, self.api_key, self.faults = speed, api_key, faults
        self.session_limit_s, self.use_espeak, self.record_audio = (
            session_limit_s,
            use_espeak,
            record_audio,
        )
        self.sessions: list[SessionRecord] = []
        self.endpoint = ""
        self._runner: web.AppRunner | None = None
        self._changed: asyncio.Event | None = None
        self._consumed: set[int] = set()
        # the open sockets, each with the request it upgraded (its transport can be cut)
        self._live: dict[web.WebSocketResponse, web.Request] = {}
        self._running: set[asyncio.Task[None]] = set()  # each connection's conversation
        self.sip = SipDesk(
            self.converse,
            self.fidelity,
            decision_timeout_s=sip_decision_timeout_s,
            heartbeat_s=heartbeat_s,
        )
        # OpenAI-compatible chat completions for simulated callers and judges (docs/evals.md)
        self.chat = ChatDesk(self.fidelity, api_key)
        # GPT-Live on its own endpoint, beside Voice Live on the same port (docs/gpt-live.md)
        self.live = LiveDesk(
            self.sessions,
            self._notify,
            self.fidelity,
            script=self.script,
            speed=self.speed,
            api_key=api_key,
            session_limit_s=session_limit_s,
            use_espeak=use_espeak,
            record_audio=record_audio,
            heartbeat_s=heartbeat_s,
        )

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/_emulator/stats", self._stats)
        self.sip.add_routes(app)  # Voice Live SIP (preview): before the catch-all
        self.chat.add_routes(app)
        self.live.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses
        bound = addresses[0][1] if addresses else port
        shown = f"[{host}]" if ":" in host else host
        self.endpoint = f"http://{shown}:{bound}"
        self._changed = asyncio.Event()
        return self.endpoint

    async def stop(self) -> None:
        """Close every connection (1001), then end the conversations: one that does not end by
        itself within ``SHUTDOWN_TIMEOUT_S`` (a delay fault holds its handler) is cancelled."""
        await self.sip.close()
        await self.live.close()
        await self.cut_all(1001, b"emulator stopping")
        running = set(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=SHUTDOWN_TIMEOUT_S)
            await cancel_and_wait(late, SHUTDOWN_TIMEOUT_S)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def cut_all(self, code: int | None, message: bytes = b"") -> int:
        """The service side ends every open connection: a close frame with ``code``, or with
        ``None`` a cut TCP link (no close frame, as the dropped-link fault does). Returns how
        many connections it ended."""
        live = list(self._live.items())
        for ws, request in live:
            if code is None:
                _abort(request)
            else:
                await ws.close(code=code, message=message)
        return len(live)

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first client event (any session, arrival order) matching ``predicate``.

        Events received before the call count too, so there is no race with the client; an
        event returned once is not returned again. Raises ``TimeoutError``.
        """
        assert self._changed is not None, "emulator not started"

        def find() -> dict[str, Any] | None:
            for record in self.sessions:
                for event in record.received:
                    if id(event) not in self._consumed and predicate(event):
                        self._consumed.add(id(event))
                        return event
            return None

        changed = self._changed
        try:
            async with (
                asyncio.timeout(timeout) if hasattr(asyncio, "timeout") else _timeout(timeout)
            ):
                while (hit := find()) is None:
                    changed.clear()  # no await between find() and clear(): nothing is missed
                    await changed.wait()
        except (asyncio.TimeoutError, TimeoutError):
            raise TimeoutError(f"no matching client event within {timeout} s") from None
        return hit

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # --- HTTP -------------------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "sessions": [
                    {"number": r.number, "id": r.id, "closed": r.closed, **r.stats}
                    for r in self.sessions
                ]
            }
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not request.path.rstrip("/").endswith(PATH_SUFFIX):
            if request.path == "/":
                return web.json_response(
                    {
                        "service": "vlrun Voice Live emulator",
                        "endpoint": self.endpoint,
                        "path": PATH_SUFFIX,
                    }
                )
            return _error(404, "404", "Resource not found")
        number = len(self.sessions) + 1
        faults = self.faults if self.faults and self.faults.applies_to(number) else None
        q = request.query
        api_version = q.get("api-version") or P.DEFAULT_API_VERSION
        if not self._authorised(request, api_version) or (
            faults is not None and faults.refuse_auth
        ):
            return _error(401, "401", AUTH_FAILED)
        bad_features = _features_problem(request.headers, api_version)
        if bad_features:
            return _error(400, "BadRequest", bad_features)
        agent = _agent(q)
        model = q.get("model")
        if not model and agent is None:
            return _error(
                400,
                "BadRequest",
                "Missing required query parameter 'model' (or an agent: "
                "'agent-name' with 'agent-project-name').",
            )
        if agent is not None and "error" in agent:
            return _error(400, "BadRequest", agent["error"])
        refusal = voice_live_refusal(model)
        if refusal is not None:
            self.fidelity.note("gl-path")
            return _error(400, "BadRequest", refusal)
        ws = web.WebSocketResponse(
            max_msg_size=MAX_CLIENT_FRAME, autoping=True, heartbeat=self.heartbeat_s
        )
        if not ws.can_prepare(request).ok:
            return _error(
                426, "UpgradeRequired", "This endpoint only accepts WebSocket connections."
            )
        await ws.prepare(request)
        await self.converse(
            ws,
            request,
            model=model,
            agent=agent,
            api_version=api_version,
        )
        return ws

    async def converse(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        *,
        model: str | None,
        agent: dict[str, Any] | None,
        api_version: str,
        opened: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> None:
        """One Voice Live session on a prepared socket (the realtime path, a SIP attach)."""
        record = SessionRecord(
            number=len(self.sessions) + 1,
            query=dict(request.query),
            headers=_safe_headers(request.headers),
        )
        self.sessions.append(record)
        self._live[ws] = request
        conn = Connection(
            ws,
            record,
            api_version=api_version,
            model=model,
            agent=agent,
            script=self.script,
            speed=self.speed,
            faults=self.faults,
            session_limit_s=self.session_limit_s,
            use_espeak=self.use_espeak,
            record_audio=self.record_audio,
            on_client_event=self._notify,
            abort=lambda: _abort(request),
            fidelity=self.fidelity,
            mcp_latency_ms=self.mcp_latency_ms,
            clock=self.clock,
            load=self.load,
            transport=request.transport,
        )
        try:
            if opened is not None:
                await opened(conn)
            # its own task, so stop() can end it; awaited here, so it ends with the handler
            running = asyncio.get_running_loop().create_task(conn.run())
            self._running.add(running)
            running.add_done_callback(self._running.discard)
            await running
        finally:
            self._live.pop(ws, None)
            self._notify()

    def _authorised(self, request: web.Request, api_version: str) -> bool:
        if self.api_key is None:
            return True
        # source: docs/emulator.md#v1-auth-headers (VoiceLive/v1/readme.md: "Authentication is
        # header-only"; credential query parameters are not supported)
        query: Mapping[str, str] = {} if api_version == V1 else request.query
        given = request.headers.get("api-key") or query.get("api-key")
        bearer = request.headers.get("Authorization") or query.get("Authorization") or ""
        if bearer.lower().startswith("bearer "):
            given = given or bearer[7:].strip()
        return given == self.api_key


def _features_problem(headers: Mapping[str, str], api_version: str) -> str | None:
    """What is wrong with a ``VoiceLive-Features`` header on v1 (None: nothing)."""
    # source: docs/emulator.md#v1-features-header (versioning.md section 4: comma-separated
    # `<Key>=V1Preview` on api-version v1; order is irrelevant). Dated versions ignore it.
    value = headers.get(FEATURES_HEADER)
    if value is None or api_version != V1:
        return None
    for part in value.split(","):
        key, eq, level = part.strip().partition("=")
        if not (key.isalnum() and key[:1].isalpha() and eq and level == V1_PREVIEW_VALUE):
            return (
                f"Invalid {FEATURES_HEADER} entry {part.strip()!r}: expected "
                f"<Feature>={V1_PREVIEW_VALUE}, comma-separated."
            )
    return None


def _abort(request: web.Request) -> None:
    """Cut the TCP link under a request's socket, without a close frame."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as tests see them, with credentials masked."""
    from runner.redact import MASK

    return {
        k: (MASK if k.lower() in ("api-key", "authorization") else v) for k, v in headers.items()
    }


def _agent(q: Mapping[str, str]) -> dict[str, Any] | None:
    """Agent binding from query parameters: current (name + project) or classic (id + project)."""
    name, project = q.get("agent-name"), q.get("agent-project-name")
    legacy_id, conn_str = q.get("agent-id"), q.get("agent-connection-string")
    if name or (project and not legacy_id):
        if not (name and project):
            return {"error": "'agent-name' and 'agent-project-name' must be given together."}
        return {
            "type": "agent",
            "name": name,
            "agent_id": None,
            "thread_id": P.new_id("thread"),
            "description": f"[emulator] stand-in for agent '{name}' in project '{project}'",
        }
    if legacy_id:
        if not (project or conn_str):
            return {"error": "'agent-id' needs 'agent-project-name' or 'agent-connection-string'."}
        return {
            "type": "agent",
            "name": legacy_id,
            "agent_id": legacy_id,
            "thread_id": P.new_id("thread"),
            "description": f"[emulator] stand-in for classic agent '{legacy_id}'",
        }
    return None


@contextlib.asynccontextmanager
async def _timeout(seconds: float) -> AsyncIterator[None]:
    """``asyncio.timeout`` for Python 3.10."""
    task = asyncio.current_task()
    assert task is not None
    handle = asyncio.get_running_loop().call_later(seconds, task.cancel)
    try:
        yield
    except asyncio.CancelledError:
        raise asyncio.TimeoutError() from None
    finally:
        handle.cancel()


@contextlib.asynccontextmanager
async def running_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    scenario: ScenarioArg = None,
    speed: float = 1.0,
    api_key: str | None = None,
    faults: Faults | None = None,
    **options: Any,
) -> AsyncIterator[Emulator]:
    """Run an emulator in this event loop for the duration of the block.

    Extra keyword options go to :class:`Emulator` (``session_limit_s``, ``use_espeak``,
    ``record_audio``).
    """
    emu = Emulator(scenario=scenario, speed=speed, api_key=api_key, faults=faults, **options)
    await emu.start(host, port)
    try:
        yield emu
    finally:
        await emu.stop()


@contextlib.asynccontextmanager
async def embedded_emulator(**options: Any) -> AsyncIterator[Emulator]:
    """The emulator a vlrun command runs in-process for its offline default: on loopback,
    with a random key (registered as a secret, so never shown) that nothing else on the
    machine knows. Its ``api_key`` is the key a client connects with."""
    import secrets

    from runner.redact import register_secret

    key = secrets.token_urlsafe(24)
    register_secret(key)
    async with running_emulator(host="127.0.0.1", port=0, api_key=key, **options) as emu:
        yield emu


@contextlib.contextmanager
def emulator_thread(**kwargs: Any) -> Iterator[Emulator]:
    """For synchronous callers: the emulator on its own event loop in a daemon thread."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def main() -> None:
        async def serve() -> None:
            stop = asyncio.Event()
            holder["stop"], holder["loop"] = stop, asyncio.get_running_loop()
            try:
                async with running_emulator(**kwargs) as emu:
                    holder["emu"] = emu
                    ready.set()
                    await stop.wait()
            except BaseException as exc:  # surfaced to the caller below
                holder["error"] = exc
                ready.set()

        asyncio.run(serve())

    thread = threading.Thread(target=main, name="vlrun-emulator", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in holder:
        raise holder["error"]
    try:
        yield holder["emu"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


def uptime_banner(emu: Emulator) -> str:
    return (
        f"vlrun Voice Live EMULATOR (not Azure) listening on {emu.endpoint}\n"
        f"  WebSocket path: {PATH_SUFFIX} (GPT-Live: /openai/v1/live); speed x{emu.speed:g}; "
        f"{'api key required' if emu.api_key else 'any key accepted'}; "
        f"script: {emu.script.source if emu.script else 'built-in'}; "
        f"{'load mode (benchmarks: no event history); ' if emu.load else ''}"
        f"started {time.strftime('%H:%M:%S')}"
    )
