"""The multi-conversation host: many live sessions in one process, one per edge (a
``LiveSession``, or a ``GptLiveSession`` for a GPT-Live profile: runner/live/sessions.py).

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
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.aio import Changes, Channel, cancel_and_wait
from runner.errors import Problem, ProfileError, UsageError, VlrunError
from runner.live.audio import Player, Source
from runner.live.gpt_live import GptLiveSession
from runner.live.session import LiveSession
from runner.live.transcript import Transcript
from runner.serve.supervisor import Refused, Slot, Supervisor

__all__ = ["Conversation", "Edge", "Host", "HostOptions", "ProfileInvalid", "Refused"]

log = logging.getLogger("vlrun.serve")

_SCENARIO = re.compile(r"^(scenario|turns)\s*:", re.MULTILINE)
_SLOT_KINDS = ("browser", "twilio", "acs", "sip")
MAX_IMAGE_TEXT = 32 * 1024  # a question with an image: as long as a typed turn may be
_SOURCE_SUFFIXES = frozenset((".yaml", ".yml", ".j2", ".jinja", ".md", ".txt", ".json", ".py"))
_CACHE_MAX_FILES = 500  # a profile folder this big is stat'ed in full each time: compile instead
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Finished conversations whose transcript and trace can still be downloaded.
KEEP_RECORDS = 64
#: Image turns waiting to be sent (each after the reply before it); past it one is refused.
IMAGE_QUEUE = 2


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


#: A profile's own mocks file, found beside it or in its tool folders: ``NAME.mocks.yaml``.
MOCKS_SUFFIX = ".mocks.yaml"


@dataclass
class PreparedProfile:
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
    mocks: Path | None = None  # the `mocks:` file answering its tool calls, if any


@dataclass
class Conversation:
    """A running (or finished) conversation: its handle for the edge and the host."""

    id: str
    profile: str
    kind: str
    started: float = field(default_factory=time.time)
    live: LiveSession | GptLiveSession | None = None  # runner.live.sessions chooses
    transcript: Transcript | None = None
    trace_path: Path | None = None
    conversation_path: Path | None = None
    explain: list[tuple[str, str, str]] = field(default_factory=list)
    registry: Any = None  # the tools this conversation calls (a MockRegistry under --mock-tools)
    mocks: Path | None = None  # the `mocks:` file answering its tool calls (None: the plugins)
    code: int | None = None
    _edge: Edge | None = field(default=None, repr=False)
    # image turns (data, type, question) for the session, sent in order by the host
    _images: Channel[tuple[bytes, str, str | None]] = field(
        default_factory=lambda: Channel(IMAGE_QUEUE, "refuse"), repr=False
    )
    # an image upload being read now (one at a time bounds the memory), and when that changes
    uploading: bool = False
    upload_changes: Changes = field(default_factory=Changes, repr=False)

    @contextlib.contextmanager
    def reading_upload(self) -> Iterator[None]:
        """While an image upload's body is read: a second one is refused (409)."""
        self.uploading = True
        self.upload_changes.notify()
        try:
            yield
        finally:
            self.uploading = False
            self.upload_changes.notify()

    def type_text(self, text: str) -> None:
        """A typed user turn (queued in order; sent once the reply in progress has ended)."""
        if self.live is not None:
            self.live.feed_line(text)

    def send_image(self, data: bytes, mime: str, text: str | None = None) -> str:
        """An image turn (and a question about it), sent after the reply in progress, in
        order. Checked now: raises :class:`~runner.live.images.ImageError` for a type the
        model does not read, bytes of another type, or an image over the bound, and
        :class:`UsageError` when the conversation is over or image turns are already
        waiting. Returns the image's type as its bytes say."""
        from runner.live.images import ImageError, check_image

        kind = check_image(data, mime)
        if text is not None and len(text) > MAX_IMAGE_TEXT:
            raise ImageError(
                f"the question with the image is {len(text)} characters, over {MAX_IMAGE_TEXT}"
            )
        self.check_image_room()
        if not self._images.put((data, kind, text or None)):
            raise self._images_waiting()
        return kind

    def check_image_room(self) -> None:
        """Raise :class:`UsageError` unless an image turn can be queued now: checked before
        an upload is read too, so a refused one costs no more than its headers."""
        from runner.live.images import ImageError
        from runner.live.sessions import takes_images

        if self.live is None or not self.running or self._images.closed:
            raise UsageError("the conversation is not running", hint="press Start first")
        if not takes_images(self.live):
            raise ImageError(
                "GPT-Live takes no image turns (its WebSocket has no image event)",
                hint="use a gpt-realtime profile for image turns",
            )
        if len(self._images) >= self._images.bound:
            raise self._images_waiting()

    def _images_waiting(self) -> UsageError:
        return UsageError(
            f"{IMAGE_QUEUE} image turns are waiting already",
            hint="send the next one once the assistant has answered",
        )

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
    #: A `mocks:` file for every profile, or a folder of ``PROFILE.mocks.yaml`` files.
    mock_tools: Path | None = None
    #: Offline (the embedded emulator), a profile's own ``NAME.mocks.yaml`` (beside it or in
    #: its tool folders) answers its tool calls, as `--mock-tools` would.
    offline_mocks: bool = True
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
        self.conversations: OrderedDict[str, Conversation] = OrderedDict()
        self._ids = itertools.count(1)
        self._emulator_endpoint: str | None = None
        self._emulator_target: Any = None
        #: The embedded emulator while it runs (its ``speed`` is the pace replies are sent at).
        self.emulator: Any = None
        self._records: Path | None = None
        self._tool_mtimes: dict[str, float] = {}
        self.embedded = False
        self.target_line = ""
        # Every conversation of the worker, browser and phone alike, holds a slot here.
        self.supervisor = Supervisor(
            options.max_conversations, kind_limits={"browser": options.max_conversations}
        )
        # Profiles compiled off the loop, kept while their files are unchanged.
        self._compiled: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self._compile_lock = threading.Lock()
        self._credentials: dict[tuple[str, str, str], Any] = {}

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
                    async with self.supervisor.running():
                        try:
                            yield self
                        finally:
                            await self.drain(5.0)
                finally:
                    await self._close_credentials()
                return
            async with _embedded_emulator(target, self.options.emulator_options) as (emu, live):
                self.embedded = True
                self.emulator = emu
                self._emulator_endpoint, self._emulator_target = emu.endpoint, live
                self.target_line = live.describe()
                try:
                    async with self.supervisor.running():
                        try:
                            yield self
                        finally:
                            await self.drain(5.0)
                finally:
                    await self._close_credentials()

    @property
    def active(self) -> int:
        """Conversations running now (browser pages; phone calls are the supervisor's too)."""
        return sum(1 for c in self.conversations.values() if c.running)

    @property
    def draining(self) -> bool:
        return self.supervisor.draining

    def ready(self) -> bool:
        """Whether a new conversation would be accepted (readiness probes say 503 if not)."""
        return self.supervisor.has_room()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (event driven) until no conversation runs; False on timeout."""
        return await self.supervisor.changes.until(lambda: not self.active, timeout)

    def _poke(self) -> None:
        self.supervisor.changes.notify()

    async def drain(self, timeout_s: float) -> None:
        """Stop accepting; let running conversations (pages and calls) finish for up to
        ``timeout_s``; then each is ended its edge's way. Returns when all have ended."""
        await self.supervisor.drain(timeout_s)

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

    def mocks_for(self, entry: ProfileEntry) -> Path | None:
        """The `mocks:` file answering ``entry``'s tool calls: ``--mock-tools FILE``; in a
        ``--mock-tools`` folder, ``NAME.mocks.yaml``; offline, the profile's own
        ``NAME.mocks.yaml`` beside it or in its tool folders. None: the plugins answer."""
        given = self.options.mock_tools
        own = entry.name + MOCKS_SUFFIX
        if given is not None:
            if not given.is_dir():
                return given  # a file for every profile (a missing one is said when loaded)
            found = given / own
            return found if found.is_file() else None
        if not (self.embedded and self.options.offline_mocks):
            return None
        from runner.plugins import tool_dirs

        for folder in (entry.path.parent, *tool_dirs(entry.path, self.options.tools)):
            if (folder / own).is_file():
                return folder / own
        return None

    def prepare(self, name: str) -> PreparedProfile:
        """Load, check and compile ``name`` (reused while its files are unchanged; tools
        re-imported if edited), opened for one conversation. Blocking: call it off the loop."""
        from runner import flows
        from runner.config.compile import greeting_event

        entry = self.find(name)
        profile, payload, warnings, registry, explain, target, mocks = self._compile(entry)
        # A profile with a flow opens on its start node (its own session and greeting); each
        # conversation walks its own.
        payload, greeting, walk = flows.opening(
            profile,
            payload,
            greeting_event(profile),
            registry.schemas() if registry is not None else None,
        )
        return PreparedProfile(
            entry=entry,
            profile=profile,
            payload=payload,
            greeting=greeting,
            flow=walk,
            registry=registry,
            warnings=list(warnings),
            explain=explain,
            target=target,
            mocks=mocks,
        )

    def _compile(self, entry: ProfileEntry) -> tuple[Any, ...]:
        """The profile's compiled parts, from the cache while no file it may read changed."""
        from runner.config.explain import compiled, explain_rows
        from runner.live.connect import resolve_target

        with self._compile_lock:  # two Starts at once compile once, and tools import once
            mocks = self.mocks_for(entry)
            key = self._files_key(entry.path, mocks)
            cached = self._compiled.get(entry.name)
            if key is not None and cached is not None and cached[0] == key:
                return tuple(cached[1])
            registries: list[Any] = []

            def bindings(profile: Any, problems: list[Problem]) -> dict[str, Any] | None:
                registry = self._registry(profile, problems, mocks)
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
                if not registries:  # a profile without tools: the compile did not ask
                    registries.append(self._registry(profile, [], mocks))
            except ProfileError as exc:
                raise ProfileInvalid(entry.name, exc.all_problems) from None
            target = resolve_target(
                profile,
                endpoint=self.options.endpoint,
                emulator=self.options.emulator,
                api_version=self.options.api_version,
            )
            explain = explain_rows(profile, payload, trace, self.options.api_version)
            parts = (profile, payload, warnings, registries[-1], explain, target, mocks)
            if key is not None:
                self._compiled[entry.name] = (key, parts)
            return parts

    def _files_key(self, path: Path, mocks: Path | None) -> tuple[Any, ...] | None:
        """What the profile may read (its folder's profiles and templates, its tools' code)
        with their sizes and mtimes; None when too many files to say (no caching then)."""
        from runner.plugins import tool_dirs

        folders = [path.parent, *(Path(d) for d in tool_dirs(path, self.options.tools))]
        seen: list[tuple[str, int, int]] = []
        for folder in folders:
            try:
                files = [p for p in folder.rglob("*") if p.suffix in _SOURCE_SUFFIXES]
            except OSError:
                return None
            if len(seen) + len(files) > _CACHE_MAX_FILES:
                return None
            for file in files:
                try:
                    st = file.stat()
                except OSError:
                    continue
                seen.append((str(file), st.st_mtime_ns, st.st_size))
        seen.append((f"mocks: {mocks}", 0, 0))  # which file answers (one may appear later)
        if mocks is not None:
            with contextlib.suppress(OSError):
                st = mocks.stat()
                seen.append((str(mocks), st.st_mtime_ns, st.st_size))
        return tuple(sorted(seen))

    def _registry(self, profile: Any, problems: list[Problem], mocks: Path | None) -> Any:
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
        if mocks is not None:
            from runner.config.mocks import load_mocks

            mocked = MockRegistry(registry)
            mocked.mocks = dict(load_mocks(mocks))  # a mistake: ProfileError, file:line
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

    def _admit(
        self, conversation_id: str | None, profile: str, kind: str
    ) -> tuple[Conversation, Slot]:
        conv = Conversation(conversation_id or self.new_id(), profile, kind)
        if conv.id in self.conversations:
            raise UsageError(f"conversation {conv.id} exists already")
        slot = self.supervisor.admit(kind if kind in _SLOT_KINDS else "browser", conv.id)
        self.conversations[conv.id] = conv
        while len(self.conversations) > KEEP_RECORDS:
            oldest = next((k for k, c in self.conversations.items() if not c.running), None)
            if oldest is None:
                break
            del self.conversations[oldest]
        self._poke()
        return conv, slot

    async def converse(
        self, profile_name: str, edge: Edge, conversation_id: str | None = None
    ) -> int:
        """Run one conversation on ``edge`` to its end; returns its exit code.

        Raises :class:`Refused` (at capacity, draining) or :class:`ProfileInvalid` before
        anything starts; a fault during the conversation is reported in its transcript and
        logs and ends only this conversation (its exit code says so)."""
        conv, slot = self._admit(conversation_id, profile_name, edge.kind)
        slot.ender = lambda reason: self._end(conv, reason)
        try:
            # Loading, checking and compiling a profile (and importing its tools) is file I/O
            # and CPU: off the loop, so other conversations' audio does not wait for it.
            prepared = await asyncio.to_thread(self.prepare, profile_name)
            conv.explain = prepared.explain
            return await self._run(conv, prepared, edge)
        except VlrunError as exc:
            conv.code = exc.exit_code
            raise
        except asyncio.CancelledError:
            # the edge stopped it before it was up (a page's stop while connecting): on purpose
            if conv.code is None:
                conv.code = 0
            raise
        finally:
            if conv.code is None:
                conv.code = 70
            self.supervisor.release(slot, "completed" if conv.code == 0 else "failed")
            self._poke()
            with contextlib.suppress(Exception):
                edge.ended(conv, conv.code)

    async def _end(self, conv: Conversation, reason: str) -> None:
        """The supervisor ends a conversation (drain deadline, max length): the edge says so,
        then the session stops."""
        log.info("ending conversation %s (%s): %s", conv.id, conv.kind, reason)
        if conv._edge is not None:
            with contextlib.suppress(Exception):
                conv._edge.closing("the server is shutting down")
        conv.hang_up()

    async def _run(self, conv: Conversation, prepared: PreparedProfile, edge: Edge) -> int:
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
        self, conv: Conversation, prepared: PreparedProfile, edge: Edge, target: Any, endpoint: str
    ) -> int:
        from runner.live.session import SessionSettings, profile_settings
        from runner.live.sessions import audio_session, open_session

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
        try:
            for warning in prepared.warnings:
                transcript.warning(warning.render())
            transcript.conv_note(
                f"conversation {conv.id} ({conv.kind}); profile {prepared.entry.name} "
                f"({prepared.entry.path}); {target.describe()}"
            )
            # GPT-Live's one audio.format both ways, or the Voice Live session's formats
            source, player = _wire_edges(edge, audio_session(prepared.payload))
            credential = self._credential(target)
            settings = SessionSettings(
                endpoint=endpoint,
                session_update=prepared.payload,
                lines=False,
                interactive=False,
                greeting=prepared.greeting,
                **profile_settings(prepared.profile),
                api_version=self.options.api_version or target.api_version,
                handle_signals=False,  # many run at once: the process's signals are the host's
            )
            # a LiveSession, or a GptLiveSession for a GPT-Live session.start
            live = open_session(
                settings,
                target=target,
                credential=credential,
                transcript=transcript,
                player=player,
                source=source,
                registry=prepared.registry,
                flow=prepared.flow,
                profile=prepared.profile,
            )
            conv.live = live
            conv.registry = prepared.registry
            conv.mocks = prepared.mocks
            conv._edge = edge
            edge.attached(conv)
            log.info("conversation %s started: %s on %s", conv.id, prepared.entry.name, conv.kind)
            images = asyncio.create_task(_image_turns(conv, live), name="vlrun-image-turns")
            try:
                code = await live.run()
            except VlrunError as exc:
                transcript.error(exc.message)
                code = exc.exit_code
            finally:
                conv._images.close()
                await cancel_and_wait(images, timeout=2.0)
                if images.done() and not images.cancelled() and images.exception() is not None:
                    log.warning(
                        "conversation %s: image turns failed: %r", conv.id, images.exception()
                    )
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
            with contextlib.suppress(OSError):
                await transcript.aclose()  # the writer thread's last lines, off the loop

    def _credential(self, target: Any) -> Any:
        """One credential per endpoint and auth kind for the server's life: Entra tokens are
        cached by the credential, so a new one per conversation would sign in every time."""
        from runner.live.connect import make_credential

        key = (str(target.endpoint), str(target.key_source), str(target.api_key))
        if key not in self._credentials:
            self._credentials[key] = make_credential(target)
        return self._credentials[key]

    async def _close_credentials(self) -> None:
        for credential in self._credentials.values():
            closer = getattr(credential, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        self._credentials.clear()

    def status(self) -> dict[str, Any]:
        """For probes and the page: counts and the target, nothing secret."""
        return {
            "active": self.active,
            "max": self.max_conversations,
            "draining": self.draining,
            "embedded": self.embedded,
            "target": self.target_line,
            # how many times faster than real time the embedded emulator sends a reply
            "emulator_speed": self.emulator.speed if self.emulator is not None else None,
        }


@contextlib.asynccontextmanager
async def _embedded_emulator(
    target: Any, options: Mapping[str, Any]
) -> AsyncIterator[tuple[Any, Any]]:
    """The embedded emulator (runner.emulator's, as ``endpoint_for`` runs it) and the target
    that reaches it, kept as an object: the server reports its pace."""
    import dataclasses

    from runner.emulator import embedded_emulator

    async with embedded_emulator(**options) as emu:
        yield emu, dataclasses.replace(target, api_key=emu.api_key, key_source="embedded emulator")


async def _image_turns(conv: Conversation, live: LiveSession | GptLiveSession) -> None:
    """Send the conversation's image turns in order, each once the reply before it has ended
    (owned by the conversation's run, cancelled when it ends)."""
    async for data, mime, text in conv._images:
        try:
            await live.send_image(data, mime, text)
        except VlrunError as exc:  # checked when queued; the live layer's own word wins
            if conv.transcript is not None:
                conv.transcript.error(exc.message + (f" ({exc.hint})" if exc.hint else ""))
        except Exception as exc:  # noqa: BLE001 - the next image is still taken and tried
            # (a sender that died here would leave later uploads accepted and never sent)
            log.warning(
                "conversation %s: an image turn was not sent (%s)", conv.id, type(exc).__name__
            )
            if conv.transcript is not None:
                conv.transcript.error(f"the image turn ({mime}) could not be sent")


def _wire_edges(edge: Edge, session: Mapping[str, Any]) -> tuple[Any, Any]:
    """The edge speaks PCM16; a G.711 session is encoded here, as the console does."""
    from runner.config.service import dated_audio
    from runner.live.audio import G711Player, G711Source, wire_formats

    source, player = edge.open_audio(session)
    # the session in either shape: v1 keeps its formats under ``audio``
    _, _, in_law, out_law = wire_formats(dated_audio(dict(session)))
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
