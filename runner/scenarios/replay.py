"""Record and replay: a session's event stream, played back into the real runner and plugins.

A recording is the JSONL event trace ``vlrun run --trace FILE.jsonl`` (or ``vlrun test
--record DIR``) writes: one ``{"t", "dir": "in"|"out", "event"}`` per line, secrets masked,
audio replaced by its length. Replay serves the "in" events from a tiny WebSocket server on
127.0.0.1 in their recorded order, each only after the runner has sent every "out" event
recorded before it, so the conversation unfolds in the same order every time, whatever the
machine's speed. Typed user turns are typed again; tools run for real (the plugins are what
a replay re-tests) and their outputs are compared with the recorded ones.

``promote`` turns a recording into a scenario with proposed expectations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import Problem, ProfileError, VlrunError
from runner.live.audio import AudioFormat

REPLAY_PATH = "/voice-live/realtime"
OUT_WAIT_S = 10.0  # how long the runner may take to send what the recording says it sent
_AUDIO_PLACEHOLDER = re.compile(r"^<(\d+) chars audio>$")


class RecordingError(ProfileError):
    """A recording cannot be read; problems name FILE.jsonl:line."""


@dataclass(frozen=True)
class Entry:
    line: int
    t: float
    dir: str  # "in" (server -> runner) or "out" (runner -> server)
    event: Mapping[str, Any]

    @property
    def type(self) -> str:
        return str(self.event.get("type", ""))


def load_recording(path: Path) -> list[Entry]:
    """Read a JSONL recording; every malformed line is a problem at its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecordingError(
            [Problem(str(path), None, None, "error", f"cannot read: {exc.strerror}")]
        ) from None
    entries: list[Entry] = []
    problems: list[Problem] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except ValueError as exc:
            problems.append(Problem(str(path), n, None, "error", f"not JSON: {exc}"))
            continue
        event = rec.get("event") if isinstance(rec, dict) else None
        if isinstance(rec, dict) and rec.get("dir") == "note":
            continue  # vlrun's own summaries (word timings, animation counts), not wire events
        if not isinstance(event, dict) or rec.get("dir") not in ("in", "out"):
            problems.append(
                Problem(
                    str(path),
                    n,
                    None,
                    "error",
                    'expected {"t": ..., "dir": "in"|"out", "event": {...}}',
                    hint="record with `vlrun run PROFILE --trace FILE.jsonl`",
                )
            )
            continue
        entries.append(Entry(n, float(rec.get("t") or 0.0), str(rec["dir"]), event))
    if not problems and not any(e.dir == "out" and e.type == "session.update" for e in entries):
        problems.append(
            Problem(str(path), None, None, "error", "the recording has no session.update")
        )
    if problems:
        raise RecordingError(problems)
    return entries


def _user_text(event: Mapping[str, Any]) -> str | None:
    """The text of a typed user turn (a user message item the runner created)."""
    if event.get("type") != "conversation.item.create":
        return None
    item = event.get("item") or {}
    if item.get("type") != "message" or item.get("role") != "user":
        return None
    parts = [str(c.get("text") or "") for c in item.get("content") or [] if isinstance(c, dict)]
    return " ".join(p for p in parts if p) or None


def _expand_audio(event: Mapping[str, Any]) -> dict[str, Any]:
    """Audio the trace replaced by its length becomes that much silence again."""
    out = dict(event)
    value = out.get("delta")
    if isinstance(value, str) and out.get("type", "").endswith("audio.delta"):
        m = _AUDIO_PLACEHOLDER.match(value)
        if m:
            chars = int(m.group(1))
            out["delta"] = base64.b64encode(bytes(chars * 3 // 4)).decode("ascii")
    return out


# --- the replay server ----------------------------------------------------------------------------


@dataclass
class Divergence:
    line: int
    message: str


class ReplayServer:
    """Serves one recording to one connection, gated on the runner's own events."""

    def __init__(self, entries: Sequence[Entry], on_user_text: Any) -> None:
        """``on_user_text(text, sent)`` types a turn once the runner has handled ``sent``
        server events (so the turn comes at the same point of the conversation)."""
        self.entries = list(entries)
        self.on_user_text = on_user_text
        self.divergences: list[Divergence] = []
        self.received: list[dict[str, Any]] = []
        self.finished = asyncio.Event()
        self.endpoint = ""
        self._runner: Any = None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def start(self) -> str:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self.endpoint

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=32 * 1024 * 1024)
        await ws.prepare(request)
        reader = asyncio.create_task(self._read(ws, WSMsgType))
        try:
            await self._play(ws)
        finally:
            self.finished.set()
            # keep the socket open until the runner hangs up, as the service would
            with contextlib.suppress(Exception):
                await reader
        return ws

    async def _read(self, ws: Any, kinds: Any) -> None:
        async for msg in ws:
            if msg.type != kinds.TEXT:
                break
            with contextlib.suppress(ValueError):
                event = json.loads(msg.data)
                if event.get("type") != "input_audio_buffer.append":
                    self.received.append(event)
                    self._inbox.put_nowait(event)

    async def _play(self, ws: Any) -> None:
        sent = 0
        for entry in self.entries:
            if entry.dir == "in":
                if ws.closed:
                    return
                await ws.send_str(json.dumps(_expand_audio(entry.event)))
                sent += 1
                continue
            text = _user_text(entry.event)
            if text is not None:
                await self.on_user_text(text, sent)
            try:
                got = await asyncio.wait_for(self._inbox.get(), OUT_WAIT_S)
            except asyncio.TimeoutError:
                self.divergences.append(
                    Divergence(entry.line, f"the runner did not send {entry.type}")
                )
                continue
            self._compare(entry, got)

    def _compare(self, entry: Entry, got: Mapping[str, Any]) -> None:
        if got.get("type") != entry.type:
            self.divergences.append(
                Divergence(entry.line, f"the runner sent {got.get('type')}, recorded {entry.type}")
            )
            return
        want_item, got_item = entry.event.get("item") or {}, got.get("item") or {}
        if want_item.get("type") == "function_call_output":
            if str(got_item.get("output")) != str(want_item.get("output")):
                self.divergences.append(
                    Divergence(
                        entry.line,
                        f"tool output for {want_item.get('call_id')} differs: "
                        f"recorded {want_item.get('output')!r}, replay {got_item.get('output')!r}",
                    )
                )
        elif entry.type == "conversation.item.truncate" and got.get(
            "audio_end_ms"
        ) != entry.event.get("audio_end_ms"):
            self.divergences.append(
                Divergence(
                    entry.line,
                    f"truncated at {got.get('audio_end_ms')} ms, "
                    f"recorded {entry.event.get('audio_end_ms')} ms",
                )
            )


class ReplayPlayer:
    """Plays instantly, except that a barge-in stops where the recording says it did."""

    def __init__(self, fmt: AudioFormat, truncations: Mapping[str, int]) -> None:
        self.fmt = fmt
        self.truncations = dict(truncations)
        self._item: str | None = None
        self._ms: dict[str, float] = {}

    def write(self, item_id: str, pcm: bytes) -> None:
        self._item = item_id
        self._ms[item_id] = self._ms.get(item_id, 0.0) + self.fmt.ms_for_bytes(len(pcm))

    def played_ms(self) -> int:
        return int(self._ms.get(self._item or "", 0.0))

    def pending_ms(self) -> float:
        return 0.0

    def interrupt(self) -> tuple[str | None, int]:
        item, self._item = self._item, None
        if item is None:
            return None, 0
        return item, int(self.truncations.get(item, self._ms.get(item, 0.0)))

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        pass


# --- replaying ----------------------------------------------------------------------------------


@dataclass
class ReplayOutcome:
    recording: Path
    divergences: list[Divergence] = field(default_factory=list)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)
    tool_outputs: list[tuple[str, str]] = field(default_factory=list)  # (name, output)
    transcript: list[tuple[str, str]] = field(default_factory=list)  # (role, text)
    lines: list[tuple[int, str]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.divergences

    def report_lines(self, *, verbose: bool = False) -> list[str]:
        out = [
            f"{'PASS' if self.ok else 'FAIL'}  replay of {self.recording} "
            f"({len(self.tool_calls)} tool call(s), {self.duration_s:.1f} s)"
        ]
        for d in self.divergences:
            out.append(f"      {self.recording}:{d.line}: {d.message}")
        if verbose or not self.ok:
            out.append("      transcript:")
            out += [f"        {text}" for _, text in self.lines]
        return out

    def as_result(self) -> Any:
        """The outcome in `vlrun test`'s result shape (for --junit)."""
        from runner.scenarios.run import Failure, ScenarioResult

        result = ScenarioResult(self.recording, f"replay of {self.recording.name}")
        result.failures = [
            Failure(str(self.recording), d.line, d.message) for d in self.divergences
        ]
        result.lines = list(self.lines)
        result.duration_s = self.duration_s
        return result


def replay_file(
    path: Path, *, profile: Path | None = None, tools: Sequence[Path] = ()
) -> ReplayOutcome:
    """Replay a recording into the runner and the plugins (``tools`` folders, else those of
    ``profile``, else ./tools); see :func:`replay`."""
    from runner.plugins import Registry

    entries = load_recording(path)
    dirs = list(tools)
    timeouts: Mapping[str, float] | float = 10.0
    name = path.stem
    if profile is not None:
        from runner.config.load import load_profile

        loaded = load_profile(profile)
        name = str(loaded.name)
        here = profile.absolute().parent
        dirs += [here / "tools", here.parent / "tools"]
        default = float(getattr(loaded, "tool_timeout_s", 10.0) or 10.0)
        timeouts = {b.name: float(b.timeout_s or default) for b in loaded.tools} or default
    registry = Registry.discover([d for d in dirs or [Path("tools")] if d.exists()])
    return asyncio.run(replay(entries, path, registry=registry, timeouts=timeouts, name=name))


async def replay(
    entries: Sequence[Entry],
    source: Path,
    *,
    registry: Any,
    timeouts: Mapping[str, float] | float = 10.0,
    name: str = "replay",
) -> ReplayOutcome:
    """Run a LiveSession against the recording; report where the runner diverged from it."""
    import time

    from runner.live.connect import Target
    from runner.live.session import LiveSession
    from runner.scenarios.run import Observer

    started = time.perf_counter()
    update = next(e.event for e in entries if e.dir == "out" and e.type == "session.update")
    session = update.get("session") or {}
    from runner.config.service import dated_audio

    # a v1 session keeps its formats under `audio`, not in the dated fields
    out_format = dated_audio(dict(session)).get("output_audio_format")
    rate = re.search(r"(\d+)hz$", str(out_format or ""))
    truncations = {
        str(e.event.get("item_id")): int(e.event.get("audio_end_ms") or 0)
        for e in entries
        if e.dir == "out" and e.type == "conversation.item.truncate"
    }
    player = ReplayPlayer(AudioFormat(int(rate.group(1)) if rate else 24000), truncations)
    observer = Observer()
    greeting = next(
        (
            dict(e.event)
            for k, e in enumerate(entries)
            if e.dir == "out" and e.type == "response.create" and _first_response(entries, k)
        ),
        None,
    )
    live: LiveSession | None = None

    async def type_turn(text: str, sent: int) -> None:
        assert live is not None
        await observer.wait(lambda: _count_in(observer) >= sent, OUT_WAIT_S)
        observer.turn += 1
        await live.send_text(text)

    server = ReplayServer(entries, type_turn)
    endpoint = await server.start()
    target = Target(endpoint, "--replay", api_key="replay-key", key_source="replay", model="replay")
    from azure.core.credentials import AzureKeyCredential

    try:
        live = LiveSession(
            target=target,
            endpoint=endpoint,
            credential=AzureKeyCredential("replay-key"),
            session_update=update,
            transcript=observer,
            player=player,
            source=None,
            lines=False,
            greeting=greeting,
            registry=registry,
            tool_timeouts=timeouts,
            profile_name=name,
            max_reconnects=0,
            replay_history=False,
        )
        task = asyncio.create_task(live.run(), name="vlrun-replay-session")
        waiter = asyncio.create_task(server.finished.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise VlrunError("the session ended before the recording was replayed")
        last_in = sum(1 for e in entries if e.dir == "in")
        await observer.wait(
            lambda: sum(1 for _, d, _e in observer.events if d == "in") >= last_in, OUT_WAIT_S
        )
        await observer.wait(lambda: not live.tools_running, OUT_WAIT_S)
        live.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await server.stop()
        observer.close()
    outcome = ReplayOutcome(source, list(server.divergences))
    for _, direction, ev in observer.events:
        if direction == "in" and ev.get("type") == "response.function_call_arguments.done":
            outcome.tool_calls.append((str(ev.get("name")), str(ev.get("arguments"))))
    for t in observer.turns:
        if t.role == "tool":
            name_, _, output = t.text.partition(" -> ")
            outcome.tool_outputs.append((name_, output))
        else:
            outcome.transcript.append((t.role, t.text))
    outcome.lines = list(observer.lines)
    outcome.duration_s = time.perf_counter() - started
    return outcome


def _count_in(observer: Any) -> int:
    return sum(1 for _, d, _e in observer.events if d == "in")


def _first_response(entries: Sequence[Entry], k: int) -> bool:
    """The response.create at ``k`` is a greeting: no user turn or tool output came before it."""
    return not any(
        e.dir == "out" and e.type in ("conversation.item.create", "input_audio_buffer.commit")
        for e in entries[:k]
    ) and not any(e.dir == "in" and e.type == "input_audio_buffer.committed" for e in entries[:k])


# --- promote ------------------------------------------------------------------------------------


@dataclass
class _Turn:
    user: str | None = None  # typed text
    spoken: str | None = None  # transcript of an audio turn ("" if not transcribed)
    reply: list[str] = field(default_factory=list)
    before_tools: list[str] = field(default_factory=list)
    tools: list[tuple[str, Any]] = field(default_factory=list)
    start: float | None = None
    first_audio: float | None = None


def _turns(entries: Sequence[Entry]) -> list[_Turn]:
    turns: list[_Turn] = []
    audio: dict[str, _Turn] = {}
    for e in entries:
        ev = e.event
        text = _user_text(ev) if e.dir == "out" else None
        if text is not None:
            turns.append(_Turn(user=text, start=e.t))
        elif e.dir == "in" and e.type == "input_audio_buffer.speech_stopped":
            turn = _Turn(spoken="", start=e.t)
            audio[str(ev.get("item_id"))] = turn
            turns.append(turn)
        elif e.dir == "in" and e.type == "conversation.item.input_audio_transcription.completed":
            heard = audio.get(str(ev.get("item_id")))
            if heard is not None:
                heard.spoken = str(ev.get("transcript") or "").strip()
        elif not turns:
            continue
        elif e.dir == "in" and e.type == "response.function_call_arguments.done":
            try:
                args = json.loads(ev.get("arguments") or "{}")
            except ValueError:
                args = ev.get("arguments")
            turns[-1].tools.append((str(ev.get("name")), args))
            if not turns[-1].before_tools:
                turns[-1].before_tools, turns[-1].reply = turns[-1].reply, []
        elif e.dir == "in" and e.type in ("response.audio_transcript.done", "response.text.done"):
            said = str(ev.get("transcript") or ev.get("text") or "").strip()
            if said:
                turns[-1].reply.append(said)
        elif (
            e.dir == "in"
            and e.type in ("response.audio.delta", "response.text.delta")
            and turns[-1].first_audio is None
        ):
            turns[-1].first_audio = e.t
    return turns


def promote(entries: Sequence[Entry], *, name: str, profile: str) -> str:
    """A scenario YAML reproducing the recording, with expectations proposed for editing."""
    import yaml

    rules: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for n, t in enumerate(_turns(entries), start=1):
        said = t.user if t.user is not None else (t.spoken or "")
        reply = " ".join(t.reply)
        rule: dict[str, Any] = {"turn": n}
        if t.tools:
            rule["tools"] = [{"name": nm, "arguments": a} for nm, a in t.tools]
            if reply:
                rule["then"] = reply
            if t.before_tools:
                rule["say"] = " ".join(t.before_tools)
        elif reply:
            rule["say"] = reply
        rules.append(rule)
        turn: dict[str, Any] = {"user": said} if t.user is not None else {"say": said or "EDIT ME"}
        expect: dict[str, Any] = {
            "tools": [
                {"name": nm, "args": a} if isinstance(a, dict) and a else {"name": nm}
                for nm, a in t.tools
            ]
        }
        if reply:
            expect["reply_contains"] = " ".join(reply.split()[:6])
        if t.first_audio is not None and t.start is not None:
            measured = (t.first_audio - t.start) * 1000
            expect["latency"] = {"first_audio_ms": int(max(1000, measured * 2) // 100 * 100 + 100)}
        turn["expect"] = expect
        turns.append(turn)
    doc = {
        "scenario": name,
        "profile": profile,
        "model": {"turns": rules},
        "turns": turns,
    }
    header = (
        "# yaml-language-server: $schema=https://github.com/vlrun/vlrun/runner/schema/"
        "scenario.schema.json\n"
        "# Proposed by `vlrun test --promote` from a recorded session. The model block replays\n"
        "# what the model said; the expectations are proposals: keep what matters, loosen the\n"
        "# rest (reply_contains, latency budgets), then run `vlrun test` on this file.\n"
    )

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors for people to edit
            return True

    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def promote_to_file(path: Path, *, profile: Path | None, output: Path | None) -> str:
    """`vlrun test --promote`: build the scenario text; write it to ``output`` if given."""
    entries = load_recording(path)
    where = (output or Path("scenario.yaml")).resolve().parent
    if profile is not None:
        import os

        profile_ref = os.path.relpath(profile.resolve(), where)
    else:
        profile_ref = "EDIT-ME: path/to/profile.yaml"
    text = promote(entries, name=f"promoted from {path.name}", profile=profile_ref)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    return text
