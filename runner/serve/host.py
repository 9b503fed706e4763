"""The multi-conversation host: many LiveSessions in one process, one per edge.

The contract transports build on (the browser console here, phone edges elsewhere):

- An :class:`Edge` is what a transport hands the host for one conversation: a ``source`` of
  PCM16 frames at the session's input rate (``None``: typed turns only), a ``player`` that
  plays the reply and knows how much of it was heard, and a ``kind`` ("browser", "acs",
  "twilio", ...). The host calls the edge back: :meth:`Edge.transcript` builds the
  conversation's :class:`~runner.live.transcript.Transcript` (subclass it to see every turn
  and event, as :class:`runner.scenarios.observer.Observer` does), :meth:`Edge.attached`
  hands over the :class:`Conversation` (typed turns, push-to-talk, hang-up), and
  :meth:`Edge.closing` says the server is ending the call.
- :class:`Host` reloads the profile (and its tools) for every conversation, so an edit
  affects the next one; a profile that fails ``vlrun check`` raises :class:`ProfileInvalid`
  with every problem instead of starting. :meth:`Host.converse` runs one conversation to its
  end; :meth:`Host.drain` stops accepting and ends what is left; :class:`Refused` says "at
  capacity" or "draining" before anything starts.

Nothing is shared between conversations except the read-only profiles, the plugin modules and
(with no endpoint configured) the one embedded emulator, which plays the part of the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import secrets
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import Problem, ProfileError, UsageError, VlrunError
from runner.live.audio import Player, Source
from runner.live.session import LiveSession
from runner.live.transcript import Transcript, session_logging

log = logging.getLogger("vlrun.serve")

_SCENARIO = re.compile(r"^(scenario|turns)\s*:", re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Finished conversations whose transcript and trace can still be downloaded.
KEEP_RECORDS = 64


class Refused(VlrunError):
    """The host will not start a conversation now: ``reason`` is "capacity" or "draining".

    Raised by :meth:`Host.converse` before anything is opened; edges answer with a busy
    signal (HTTP 503, a SIP 486/503, a page message)."""

    exit_code = 3

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, hint="try again later" if reason == "capacity" else None)
        self.reason = reason


class ProfileInvalid(VlrunError):
    """The profile fails ``vlrun check`` (or is unknown): ``problems`` says where and why."""

    def __init__(self, name: str, problems: Sequence[Problem]) -> None:
        self.name = name
        self.problems = list(problems)
        first = next((p for p in self.problems if p.severity == "error"), None)
        super().__init__(
            f"profile {name}: {first.message if first else 'invalid'}",
            hint=f"run `vlrun check {problems[0].file if problems else name}`",
        )


class Edge:
    """One conversation's transport, as the host sees it (subclass per transport).

    ``source`` yields PCM16 at the compiled session's input rate (or ``None``: no audio in);
    ``player`` follows :class:`runner.live.audio.Player` (``write``, ``interrupt`` returning
    ``(item_id, played_ms)``, ``played_ms``, ``pending_ms``, ``drain``, ``close``). The host
    closes neither: the edge owns them. The formats the edge must speak are known only once
    the profile is compiled, so the host asks for them through :meth:`open_audio`.
    """

    kind: str = "edge"

    def __init__(self, kind: str | None = None) -> None:
        if kind is not None:
            self.kind = kind
        self.source: Source | None = None
        self.player: Player | None = None

    def open_audio(self, session: Mapping[str, Any]) -> tuple[Source | None, Player]:
        """Source and player for this compiled ``session``: PCM16 at the rates
        :func:`runner.live.audio.wire_formats` gives (the host encodes G.711 itself).
        Default: what was set on ``self.source``/``self.player`` before
        :meth:`Host.converse` was called."""
        if self.player is None:
            raise UsageError(f"the {self.kind} edge has no player")
        return self.source, self.player

    def transcript(self, **options: Any) -> Transcript:
        """The conversation's Transcript (logs, trace, console lines). Override to observe
        every turn and event; pass ``options`` (logs_dir, trace_path, name...) through."""
        return Transcript(**options)

    def attached(self, conversation: Conversation) -> None:
        """The session is built (not yet connected): keep ``conversation`` to type, talk or
        hang up. Called once, before the session runs."""

    def closing(self, reason: str) -> None:
        """The server ends this conversation (drain timeout, shutdown): say goodbye."""

    def ended(self, conversation: Conversation, code: int) -> None:
        """The conversation is over (its logs and trace are complete)."""


@dataclass
class ProfileEntry:
    """A profile the host can start, found in the paths it was given (re-read each time)."""

    name: str
    path: Path


@dataclass
class Prepared:
    """One profile loaded, checked and compiled for one conversation."""

    entry: ProfileEntry
    profile: Any
    payload: dict[str, Any]
    greeting: dict[str, Any] | None
    flow: Any  # a runner.flows.FlowWalk (this conversation's own), or None
    registry: Any
    warnings: list[Problem]
    explain: list[tuple[str, str, str]]  # (field, JSON value, origin), secrets masked
    target: Any


@dataclass
class Conversation:
    """A running (or finished) conversation: its handle for the edge and the host."""

    id: str
    profile: str
    kind: str
    started: float = field(default_factory=time.time)
    live: LiveSession | None = None
    transcript: Transcript | None = None
    trace_path: Path | None = None
    conversation_path: Path | None = None
    explain: list[tuple[str, str, str]] = field(default_factory=list)
    code: int | None = None
    _edge: Edge | None = field(default=None, repr=False)

    def type_text(self, text: str) -> None:
        """A typed user turn (queued in order; sent once the reply in progress has ended)."""
        if self.live is not None:
            self.live.feed_line(text)

    def talk(self) -> None:
        """Push-to-talk toggle: start talking (interrupting the reply), or send the turn."""
        if self.live is not None:
            self.live.talk()

    def end(self) -> None:
        """End like `q`: the reply owed is heard first."""
        if self.live is not None:
            self.live.feed_line("q")

    def hang_up(self) -> None:
        """End now (the browser left, the caller hung up)."""
        if self.live is not None:
            self.live.stop()

    @property
    def running(self) -> bool:
        return self.code is None


class _HostedSession(LiveSession):
    """A LiveSession that leaves the process's signals to the host (many run at once)."""

    async def run(self) -> int:
        with session_logging(self.transcript):
            self.tasks.spawn(self._line_pump(), "vlrun-lines")
            self.tasks.spawn(self._turn_sender(), "vlrun-turns")
            if self.source is not None:
                self.tasks.spawn(self._input_pump(), "vlrun-input")
            try:
                await self._connections()
            finally:
                await self._close()
        return self._exit_code


@dataclass
class HostOptions:
    """How the host finds profiles, reaches the service and writes records."""

    paths: Sequence[Path] = ()
    endpoint: str | None = None
    emulator: bool = False
    api_version: str | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    sets: Sequence[str] = ()
    tools: Sequence[Path] = ()
    mock_tools: Path | None = None
    logs: Path | None = None  # None: a private temporary folder, removed at exit
    max_conversations: int = 16
    verbosity: int = 0  # conversations print nothing on the server's console by default
    emulator_options: Mapping[str, Any] = field(default_factory=dict)


class Host:
    """Runs conversations: ``async with host.running(): await host.converse(name, edge)``.

    Attributes: ``active`` (conversations running now), ``draining``, ``embedded`` (the
    emulator stands in for the service), ``conversations`` (running and recent, by id).
    """

    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.max_conversations = options.max_conversations
        self.draining = False
        self.conversations: OrderedDict[str, Conversation] = OrderedDict()
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        self._emulator_endpoint: str | None = None
        self._emulator_target: Any = None
        self._records: Path | None = None
        self._tool_mtimes: dict[str, float] = {}
        self.embedded = False
        self.target_line = ""
        # Other edges' own room (phone calls have their max): all must say yes to be ready.
        self.gates: list[Callable[[], bool]] = []
        self.drainers: list[Callable[[float], Awaitable[None]]] = []

    # ------------------------------------------------------------------ life

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Host]:
        """Start the shared parts (the embedded emulator when no endpoint is configured)."""
        from runner.live.connect import endpoint_for, load_dotenv_file, resolve_target

        load_dotenv_file()
        target = resolve_target(
            None,
            endpoint=self.options.endpoint,
            emulator=self.options.emulator,
            api_version=self.options.api_version,
        )
        with contextlib.ExitStack() as stack:
            if self.options.logs is None:
                self._records = Path(stack.enter_context(tempfile.TemporaryDirectory("-vlrun")))
            else:
                self._records = self.options.logs
                self._records.mkdir(parents=True, exist_ok=True)
            if not target.embedded:
                async with endpoint_for(target) as (_, shown):
                    self.target_line = shown.describe()  # a keyless local emulator says so
                try:
                    yield self
                finally:
                    await self.drain(5.0)
                return
            async with endpoint_for(target, **self.options.emulator_options) as (endpoint, live):
                self.embedded = True
                self._emulator_endpoint, self._emulator_target = endpoint, live
                self.target_line = live.describe()
                try:
                    yield self
                finally:
                    await self.drain(5.0)

    @property
    def active(self) -> int:
        """Conversations running now."""
        return sum(1 for c in self.conversations.values() if c.running)

    def ready(self) -> bool:
        """Whether a new conversation would be accepted (readiness probes say 503 if not)."""
        ready = not self.draining and self.active < self.max_conversations
        return ready and all(gate() for gate in self.gates)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (event driven) until no conversation runs; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.active:
            left = deadline - loop.time()
            if left <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
        return True

    def _poke(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def drain(self, timeout_s: float) -> None:
        """Stop accepting; let running conversations finish for up to ``timeout_s``; then
        tell each edge it is closing and end the conversation. Returns when all have ended.
        Other edges' drains (``drainers``, e.g. phone calls) run alongside, before the server
        stops reading its sockets."""
        self.draining = True
        others = [asyncio.ensure_future(drainer(timeout_s)) for drainer in self.drainers]
        try:
            await self._drain_own(timeout_s)
        finally:
            if others:
                await asyncio.gather(*others, return_exceptions=True)

    async def _drain_own(self, timeout_s: float) -> None:
        self._poke()
        if await self.wait_idle(timeout_s):
            return
        for conv in list(self.conversations.values()):
            if conv.running:
                log.info("drain: ending conversation %s (%s)", conv.id, conv.kind)
                if conv._edge is not None:
                    with contextlib.suppress(Exception):
                        conv._edge.closing("the server is shutting down")
                conv.hang_up()
        await self.wait_idle(10.0)

    # ------------------------------------------------------------------ profiles

    def profiles(self) -> list[ProfileEntry]:
        """The profiles in the host's paths, re-read now (new files appear, removed go)."""
        found: dict[str, ProfileEntry] = {}
        for path in self.options.paths:
            files = _yaml_files(path) if path.is_dir() else [path]
            for file in files:
                if not file.is_file() or _is_scenario(file):
                    continue
                name = file.stem
                if _NAME.match(name) and name not in found:
                    found[name] = ProfileEntry(name, file)
        return sorted(found.values(), key=lambda e: e.name)

    def find(self, name: str) -> ProfileEntry:
        """The profile called ``name`` (its file stem); ProfileInvalid when there is none."""
        for entry in self.profiles():
            if entry.name == name:
                return entry
        raise ProfileInvalid(
            name,
            [Problem(name, None, None, "error", f"no profile called {name!r}", hint=None)],
        )

    def prepare(self, name: str) -> Prepared:
        """Load, check and compile ``name`` now, with its tools re-imported if edited."""
        from runner.config.compile import greeting_event
        from runner.config.explain import compiled, explain_rows
        from runner.live.connect import resolve_target

        entry = self.find(name)
        registries: list[Any] = []

        def bindings(profile: Any, problems: list[Problem]) -> dict[str, Any] | None:
            registry = self._registry(profile, problems)
            registries.append(registry)
            return registry.schemas() if registry is not None and profile.tools else None

        try:
            profile, payload, warnings, trace, _ = compiled(
                entry.path,
                vars=self.options.vars,
                sets=self.options.sets,
                api_version=self.options.api_version,
                bindings=bindings,
            )
        except ProfileError as exc:
            raise ProfileInvalid(name, exc.all_problems) from None
        if not registries:  # a profile without tools: the compile did not ask
            registries.append(self._registry(profile, []))
        target = resolve_target(
            profile,
            endpoint=self.options.endpoint,
            emulator=self.options.emulator,
            api_version=self.options.api_version,
        )
        from runner import flows

        registry = registries[-1]
        # A profile with a flow opens on its start node (its own session and greeting).
        payload, greeting, walk = flows.opening(
            profile,
            payload,
            greeting_event(profile),
            registry.schemas() if registry is not None else None,
        )
        return Prepared(
            entry=entry,
            profile=profile,
            payload=payload,
            greeting=greeting,
            flow=walk,
            registry=registry,
            warnings=list(warnings),
            explain=explain_rows(profile, payload, trace, self.options.api_version),
            target=target,
        )

    def _registry(self, profile: Any, problems: list[Problem]) -> Any:
        """A fresh registry of the profile's tool folders (edited files imported again)."""
        from runner.plugins import MockRegistry, Registry, schema_drift, tool_dirs

        dirs = tool_dirs(profile.source, self.options.tools)
        self._forget_edited_tools(dirs)
        loc = profile.locator()
        try:
            registry: Any = Registry.discover(list(dirs))
        except VlrunError as exc:
            problems.append(
                loc.problem(
                    ("tools",),
                    f"tool plugins failed to load: {exc.message}",
                    hint=exc.hint,
                    at_key=True,
                )
            )
            return None
        schemas = registry.schemas()
        for i, binding in enumerate(getattr(profile, "tools", ())):
            actual = schemas.get(binding.name)
            if actual is None or binding.parameters is None:
                continue
            for sub, message in schema_drift(binding.parameters, actual["parameters"]):
                problems.append(
                    loc.problem(
                        ("tools", i, "parameters"),
                        f"declared parameters differ from the plugin at {sub or '(root)'}: "
                        f"{message}",
                    )
                )
        if self.options.mock_tools is not None:
            from runner.config.mocks import load_mocks

            mocked = MockRegistry(registry)
            mocked.mocks = dict(load_mocks(self.options.mock_tools))
            return mocked
        return registry

    def _forget_edited_tools(self, dirs: Sequence[Path]) -> None:
        """Plugins are imported once per file; a file edited since is imported afresh."""
        files = {str(p.resolve()) for d in dirs for p in Path(d).glob("*.py")}
        for path in files:
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                continue
            before = self._tool_mtimes.get(path)
            self._tool_mtimes[path] = mtime
            if before is None or before == mtime:
                continue
            for mod_name, module in list(sys.modules.items()):
                file = getattr(module, "__file__", None) or ""
                ours = mod_name.startswith("vlrun_tools_") and bool(file)
                if ours and str(Path(file).resolve()) == path:
                    del sys.modules[mod_name]

    # ------------------------------------------------------------------ conversations

    def new_id(self) -> str:
        """A conversation id: unguessable, as it names its downloads."""
        return f"c{next(self._ids)}-{secrets.token_hex(6)}"

    def _admit(self, conversation_id: str | None, profile: str, kind: str) -> Conversation:
        if self.draining:
            raise Refused("draining", "the server is shutting down; no new conversations")
        if self.active >= self.max_conversations:
            raise Refused("capacity", f"all {self.max_conversations} conversation slots are in use")
        conv = Conversation(conversation_id or self.new_id(), profile, kind)
        if conv.id in self.conversations:
            raise UsageError(f"conversation {conv.id} exists already")
        self.conversations[conv.id] = conv
        while len(self.conversations) > KEEP_RECORDS:
            oldest = next((k for k, c in self.conversations.items() if not c.running), None)
            if oldest is None:
                break
            del self.conversations[oldest]
        self._poke()
        return conv

    async def converse(
        self, profile_name: str, edge: Edge, conversation_id: str | None = None
    ) -> int:
        """Run one conversation on ``edge`` to its end; returns its exit code.

        Raises :class:`Refused` (at capacity, draining) or :class:`ProfileInvalid` before
        anything starts; a fault during the conversation is reported in its transcript and
        logs and ends only this conversation (its exit code says so)."""
        conv = self._admit(conversation_id, profile_name, edge.kind)
        try:
            prepared = self.prepare(profile_name)
            conv.explain = prepared.explain
            return await self._run(conv, prepared, edge)
        except VlrunError as exc:
            conv.code = exc.exit_code
            raise
        finally:
            if conv.code is None:
                conv.code = 70
            self._poke()
            with contextlib.suppress(Exception):
                edge.ended(conv, conv.code)

    async def _run(self, conv: Conversation, prepared: Prepared, edge: Edge) -> int:
        import dataclasses

        from runner.live.connect import endpoint_for

        target = prepared.target
        if target.embedded:
            if self._emulator_target is None:
                raise UsageError(
                    "this profile needs the embedded emulator, but the server was started "
                    "with an endpoint",
                    hint="start `vlrun serve` without --endpoint, or give the profile one",
                )
            target = dataclasses.replace(
                self._emulator_target, model=target.model, api_version=target.api_version
            )
            return await self._run_on(conv, prepared, edge, target, self._emulator_endpoint or "")
        # As the console does: a keyless local `vlrun emulate` needs no Azure sign-in.
        async with endpoint_for(target) as (endpoint, live_target):
            return await self._run_on(conv, prepared, edge, live_target, endpoint)

    async def _run_on(
        self, conv: Conversation, prepared: Prepared, edge: Edge, target: Any, endpoint: str
    ) -> int:
        from runner.live.connect import make_credential
        from runner.live.session import profile_settings

        assert self._records is not None
        conv.trace_path = self._records / f"{conv.id}.trace.jsonl"
        transcript = edge.transcript(
            verbosity=self.options.verbosity,
            logs_dir=self._records,
            trace_path=conv.trace_path,
            name=f"{conv.id}_{prepared.entry.name}",
            meter=False,
        )
        conv.transcript = transcript
        conv.conversation_path = transcript.conversation_path
        credential = None
        try:
            for warning in prepared.warnings:
                transcript.warning(warning.render())
            transcript.conv_note(
                f"conversation {conv.id} ({conv.kind}); profile {prepared.entry.name} "
                f"({prepared.entry.path}); {target.describe()}"
            )
            source, player = _wire_edges(edge, prepared.payload.get("session", {}))
            credential = make_credential(target)
            live = _HostedSession(
                target=target,
                endpoint=endpoint,
                credential=credential,
                session_update=prepared.payload,
                transcript=transcript,
                player=player,
                source=source,
                lines=False,
                interactive=False,
                greeting=prepared.greeting,
                registry=prepared.registry,
                **profile_settings(prepared.profile),
                api_version=self.options.api_version or target.api_version,
                flow=prepared.flow,
            )
            conv.live = live
            conv._edge = edge
            edge.attached(conv)
            log.info("conversation %s started: %s on %s", conv.id, prepared.entry.name, conv.kind)
            try:
                code = await live.run()
            except VlrunError as exc:
                transcript.error(exc.message)
                code = exc.exit_code
            conv.code = code
            log.info("conversation %s ended (exit %d)", conv.id, code)
            return code
        except VlrunError as exc:
            conv.code = exc.exit_code
            transcript.error(exc.message)
            raise
        except Exception as exc:  # a bug: contained to this conversation, and said so
            log.exception("conversation %s failed", conv.id)
            transcript.error(f"vlrun failed in this conversation ({type(exc).__name__}: {exc})")
            conv.code = 70
            return 70
        finally:
            if credential is not None and hasattr(credential, "close"):
                with contextlib.suppress(Exception):
                    await credential.close()
            with contextlib.suppress(OSError):
                transcript.close()

    # ------------------------------------------------------------------ records

    def transcript_text(self, conversation_id: str) -> str | None:
        """The conversation log of a running or recent conversation (None: unknown id)."""
        conv = self.conversations.get(conversation_id)
        if conv is None:
            return None
        if conv.conversation_path is not None and conv.conversation_path.is_file():
            return conv.conversation_path.read_text(encoding="utf-8", errors="replace")
        turns = conv.transcript.turns if conv.transcript is not None else []
        return "".join(f"{t.role}: {t.text}\n" for t in turns)

    def trace_text(self, conversation_id: str) -> str | None:
        """The JSONL trace (already redacted as written) of a running or recent conversation."""
        conv = self.conversations.get(conversation_id)
        if conv is None or conv.trace_path is None or not conv.trace_path.is_file():
            return None
        return conv.trace_path.read_text(encoding="utf-8", errors="replace")

    def status(self) -> dict[str, Any]:
        """For probes and the page: counts and the target, nothing secret."""
        return {
            "active": self.active,
            "max": self.max_conversations,
            "draining": self.draining,
            "embedded": self.embedded,
            "target": self.target_line,
        }


def _wire_edges(edge: Edge, session: Mapping[str, Any]) -> tuple[Any, Any]:
    """The edge speaks PCM16; a G.711 session is encoded here, as the console does."""
    from runner.live.audio import G711Player, G711Source, wire_formats

    source, player = edge.open_audio(session)
    _, _, in_law, out_law = wire_formats(dict(session))
    if in_law and source is not None:
        source = G711Source(source, in_law)
    if out_law:
        player = G711Player(player, out_law)
    return source, player


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _is_scenario(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return True
    return bool(_SCENARIO.search(head)) or "mocks:" in head.split("\n", 1)[0]


def describe_problems(problems: Sequence[Problem]) -> list[dict[str, Any]]:
    """Problems as the page (and JSON clients) show them: file:line, message, hint."""
    return [
        {
            "location": p.location,
            "file": p.file,
            "line": p.line,
            "severity": p.severity,
            "message": p.message,
            "path": p.json_path,
            "hint": p.hint,
        }
        for p in problems
    ]
