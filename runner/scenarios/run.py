"""Running one scenario: the real LiveSession against the emulator (or Azure), driven turn by turn.

The parts under test are the real ones (profile, compile, plugins, session, SDK, emulator);
only the edges are scripted: a :class:`ScenarioSource` plays the user's audio, a
:class:`ScenarioPlayer` "plays" the assistant on a clock that runs ``speed`` times faster,
tool mocks answer instead of plugins, and :class:`Observer` (a Transcript) sees every event
both ways. After each turn the expectations are evaluated; each failure names the scenario
file:line of the expectation that failed.

Those edges live in ``scenario_edges.py``, the Observer in ``scenario_observer.py`` and the
result records in ``scenario_results.py``; this module drives the turns and checks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.config import patterns
from runner.config.source import PathKey
from runner.errors import VlrunError
from runner.live.audio import AudioFormat
from runner.scenarios.edges import (
    MockRegistry,
    ScenarioPlayer,
    ScenarioSource,
    spoken,
    squeeze_pauses,
)
from runner.scenarios.files import (
    DEFAULT_BARGE_IN,
    Scenario,
    dtmf_line,
    duplex_turn_problems,
    image_mime,
    model_script,
    profile_options,
)
from runner.scenarios.judged import EvalSettings
from runner.scenarios.observer import Observer, settled
from runner.scenarios.results import Failure, ScenarioResult, ToolCallSeen, TurnOutcome

#: silence after a GPT-Live caller's words: its end of turn is read on the caller's stream
DUPLEX_TAIL_MS = 1500
#: a GPT-Live talk-over: what the caller says over the reply by default (a backchannel), and
#: the silence the caller streams at a time until the reply has gone on for ``at_ms``
DEFAULT_TALK_OVER = "uh-huh"
TALK_OVER_STEP_MS = 100
BARGE_IN_EARLY_MS = 100  # playback may stop this much before the offset (timer granularity)
PLAYBACK_MARGIN = 0.8  # the virtual speaker's rate relative to the emulator's (ScenarioPlayer)

__all__ = [
    "Failure",
    "MockRegistry",
    "Observer",
    "RunSettings",
    "ScenarioPlayer",
    "ScenarioResult",
    "ScenarioSource",
    "ToolCallSeen",
    "TurnOutcome",
    "run_scenario",
    "run_scenario_async",
    "settled",
    "spoken",
    "squeeze_pauses",
]


# --- running ------------------------------------------------------------------------------------


#: (scenario, provider) -> the call as the caller heard it (runner.carrier.phone_line.PhoneRun)
PhoneLine = Callable[[Scenario, str], Awaitable[Any]]


@dataclass
class RunSettings:
    endpoint: str | None = None  # None: the emulator, scripted by the scenario's model block
    api_version: str | None = None
    trace_path: Path | None = None  # keep the event stream (JSONL, like `vlrun run --trace`)
    speed: float | None = None  # override the scenario's
    repeat: int = 0  # which run this is (``vlrun test --repeat``), 0-based
    evals: EvalSettings = field(default_factory=EvalSettings)  # caller tier, chat endpoints
    timeline: bool = False  # draw the run on a time axis (results.jsonl, the HTML report)
    via: str | None = None  # tier 4: over this phone edge, rung by ``phone_line``
    # Tier 4's caller: rings `vlrun serve`'s phone edge and plays the scenario's turns. The
    # command layer gives it (runner.carrier.phone_line.run_via_phone): a scenario sits below
    # serve in the wings and never imports it, so the piece that runs serve comes from above.
    phone_line: PhoneLine | None = None


def run_scenario(scenario: Scenario, settings: RunSettings | None = None) -> ScenarioResult:
    """Run one scenario to completion in a fresh event loop."""
    return asyncio.run(run_scenario_async(scenario, settings))


async def run_scenario_async(
    scenario: Scenario, settings: RunSettings | None = None
) -> ScenarioResult:
    settings = settings or RunSettings()
    result = ScenarioResult(scenario.path, scenario.name, repeat=settings.repeat)
    from runner.emulator import fidelity

    started = time.perf_counter()
    notes: dict[str, str] = {}
    try:
        # the emulator's assumptions during this scenario (runner/emulator/fidelity.py)
        with fidelity.listening(notes.setdefault):
            if settings.via is not None:
                await _run_phone(scenario, settings, result)
            else:
                await _run(scenario, settings, result)
    except VlrunError as exc:
        result.error = exc.render().removeprefix("error: ")
    finally:
        result.duration_s = time.perf_counter() - started
        for message in notes.values():
            sys.stderr.write(fidelity.line(message) + "\n")
    return result


def _load_profile(scenario: Scenario, result: ScenarioResult) -> Any:
    """The scenario's profile with its `vars:` and `set:`, noted on the result."""
    from runner.config.load import load_profile

    vars_, sets = profile_options(scenario)
    profile = load_profile(scenario.profile_path, vars=vars_, sets=sets)
    result.profile, result.loaded_profile = str(scenario.profile_path), profile
    return profile


def _tool_dirs(scenario: Scenario, profile_path: Path) -> list[Path]:
    here = profile_path.parent
    dirs = [here / "tools", here.parent / "tools"]
    dirs += [scenario.relative(d) for d in scenario.data.get("tools") or []]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def _formats(session: Mapping[str, Any]) -> tuple[AudioFormat, AudioFormat]:
    """The microphone's and the speaker's formats, from a compiled session in either shape
    (a v1 session keeps them under ``audio``, not in the dated fields)."""
    from runner.config.service import dated_audio

    audio = dated_audio(dict(session))
    out_format = str(audio.get("output_audio_format") or "pcm16")
    match = re.search(r"(\d+)hz$", out_format)
    return (
        AudioFormat(int(audio.get("input_audio_sampling_rate") or 24000)),
        AudioFormat(int(match.group(1)) if match else 24000),
    )


def _turn_detection(session: Mapping[str, Any]) -> Mapping[str, Any]:
    """The session's turn detection in either shape (v1: ``audio.input.turn_detection``)."""
    from runner.config.service import is_v1_session

    if is_v1_session(dict(session)):
        audio_in = (session.get("audio") or {}).get("input") or {}
        return audio_in.get("turn_detection") or {}
    return session.get("turn_detection") or {}


async def _run(scenario: Scenario, settings: RunSettings, result: ScenarioResult) -> None:
    from runner.config.compile import compile_session, greeting_event
    from runner.live.connect import endpoint_for, make_credential, resolve_target
    from runner.live.session import LiveSession, SessionSettings, profile_settings
    from runner.plugins import Registry

    profile = _load_profile(scenario, result)
    emulated = settings.endpoint is None
    speed = (settings.speed or scenario.speed) if emulated else 1.0
    target = resolve_target(
        profile,
        endpoint=settings.endpoint,
        emulator=emulated,
        api_version=settings.api_version,
    )
    registry = MockRegistry(Registry.discover(_tool_dirs(scenario, scenario.profile_path)), speed)
    payload = compile_session(
        profile,
        api_version=settings.api_version or target.api_version,
        tool_schemas=registry.schemas(),
    )
    from runner import flows

    payload, greeting, walk = flows.opening(
        profile, payload, greeting_event(profile), registry.schemas()
    )
    from runner.live.gpt_live import audio_fields, is_gpt_live_start

    session = payload.get("session", {})
    duplex = is_gpt_live_start(payload)  # GPT-Live: its own session, one format both ways
    in_fmt, out_fmt = _formats(audio_fields(session) if duplex else session)
    td = _turn_detection(session) if not duplex else {}
    tail_ms = int(td.get("silence_duration_ms") or 500) + 500 if not duplex else DUPLEX_TAIL_MS
    observer = Observer(trace_path=settings.trace_path)
    player = ScenarioPlayer(out_fmt, speed * PLAYBACK_MARGIN if emulated else speed)
    source = ScenarioSource(in_fmt, speed)
    options: dict[str, Any] = {"use_espeak": False} if emulated else {}
    if emulated:
        options["scenario"] = model_script(scenario)
        options["speed"] = speed
    credential = None
    try:
        async with endpoint_for(target, **options) as (endpoint, live_target):
            credential = make_credential(live_target)
            live: Any
            if duplex:
                from runner.live.gpt_live import GptLiveSession

                from_profile = profile_settings(profile)
                live = GptLiveSession(
                    payload,
                    target=live_target,
                    endpoint=endpoint,
                    credential=credential,
                    transcript=observer,
                    player=player,
                    source=source,
                    registry=registry,
                    greeting=greeting,
                    lines=False,
                    tool_timeouts=from_profile["tool_timeouts"],
                    profile_name=from_profile["profile_name"],
                    profile_vars=from_profile["profile_vars"],
                    handle_signals=False,
                )
                observer.tool_limits = from_profile["tool_timeouts"]
            else:
                live = LiveSession(
                    SessionSettings.of(
                        endpoint=endpoint,
                        session_update=payload,
                        lines=False,
                        greeting=greeting,
                        **profile_settings(profile),
                        api_version=settings.api_version or live_target.api_version,
                        max_reconnects=0,
                    ),
                    target=live_target,
                    credential=credential,
                    transcript=observer,
                    player=player,
                    source=source,
                    registry=registry,
                    flow=walk,
                )
                # tool time is not the turn's time
                observer.tool_limits = live.settings.tool_timeouts
            task = asyncio.create_task(live.run(), name="vlrun-scenario-session")
            try:
                kind = _DuplexDriver if duplex else _Driver
                driver = kind(scenario, live, observer, player, source, registry, speed, tail_ms)
                driver.evals, driver.run_number = settings.evals, settings.repeat
                with _chat(scenario, settings, endpoint if emulated else None, live_target) as chat:
                    driver.chat = chat
                    await _race(driver.run(result), task)
            finally:
                live.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                result.lines = list(observer.lines)  # also when a turn could not be played
            if settings.timeline:
                result.timeline = _timeline(observer, speed, out_fmt.rate, walk)
    finally:
        if credential is not None and hasattr(credential, "close"):
            with contextlib.suppress(Exception):
                await credential.close()
        observer.close()


async def _run_phone(scenario: Scenario, settings: RunSettings, result: ScenarioResult) -> None:
    """Tier 4: the scenario's turns over a phone line (an in-process `vlrun serve` edge and
    the simulated carrier, :mod:`runner.carrier.phone_line`), each turn's outcome checked as
    a turn against the emulator is; the flow's state is replayed from the record calls the
    call made, so `expect.flow` holds over the phone too."""

    if settings.phone_line is None:  # a programming error: the command layer gives it with via
        raise RuntimeError("RunSettings.via needs RunSettings.phone_line")

    profile = _load_profile(scenario, result)
    for i, written in enumerate(scenario.turns):
        expect = written.get("expect") or {}
        unmeasured: list[PathKey] = (
            [("expect", "silent_for_ms")] if "silent_for_ms" in expect else []
        )
        unmeasured += _duplex_only(written)  # the phone line does not talk over a reply
        for path in unmeasured:
            raise VlrunError(  # never a silent pass
                f"{scenario.where(('turns', i, *path))}: `{path[-1]}` is not measured over a "
                "phone line yet",
                hint="run this scenario without --via",
            )
    run = await settings.phone_line(scenario, str(settings.via))
    line = _PhoneLine(profile)
    checks = _Driver.checker(scenario, line)
    checks.evals, checks.run_number = settings.evals, settings.repeat
    if run.greeting:
        result.lines.append((-1, f"assistant: {run.greeting}"))
    caller = scenario.data.get("caller") or {}
    async with _judge_chat(scenario, settings) as chat:
        checks.chat = chat
        if chat is not None and run.greeting:
            checks.history.append(_exchange("assistant", run.greeting))
        for t in run.turns:
            o = t.outcome
            result.lines.append((t.index, f"you: {t.said}"))
            for call in o.tool_calls:
                result.lines.append((t.index, f"[tool] {call.name}({call.arguments})"))
                if call.output is not None:
                    result.lines.append((t.index, f"[tool] {call.name} -> {call.output}"))
                line.record(call.name, call.arguments)
            if o.reply:
                result.lines.append((t.index, f"assistant: {o.reply}"))
            turn: Mapping[str, Any] = (
                scenario.turns[t.index]
                if scenario.turns
                else {"user": t.said, "expect": caller.get("expect") or {}}
            )
            checks._evaluate(t.index, turn, o, result)
            result.turns.append(o)
            if chat is not None:
                checks.history.append(_exchange("caller", t.said))
                if o.reply:
                    checks.history.append(_exchange("assistant", o.reply))
                await checks._judge_turn(t.index, turn, o, result)
        if chat is not None:
            await checks._judge_conversation(result)


class _PhoneLine:
    """What the checks read of a live session, for a call made over a phone line: the flow
    walk, replayed from the record calls the call made (the same validation, the same path)."""

    def __init__(self, profile: Any) -> None:
        from runner.flows.walk import FlowWalk

        self.flow = FlowWalk(profile.flow, {}) if profile.flow is not None else None

    def record(self, name: str, arguments: str) -> None:
        if self.flow is not None and self.flow.owns(name):
            self.flow.record(name, arguments)


def _exchange(role: str, text: str) -> Any:
    from runner.evals import Exchange

    return Exchange(role, text)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _judge_chat(scenario: Scenario, settings: RunSettings) -> Any:
    """The judge's chat endpoint for a phone run: the one given, else an emulator's of its
    own (the call's emulator is gone once the call ends)."""
    if not _judged(scenario):
        yield None
        return
    from runner.scenarios.judged import chat_endpoints

    if settings.evals.judge_endpoint is not None:
        with chat_endpoints(settings.evals, None, None) as chat:
            yield chat
        return
    from runner.emulator import running_emulator

    async with running_emulator(host="127.0.0.1", port=0, speed=0) as emu:
        with chat_endpoints(settings.evals, emu.endpoint, None) as chat:
            yield chat


def _timeline(observer: Observer, speed: float, rate: int, walk: Any) -> dict[str, Any] | None:
    """The run on a time axis (the browser console's drawing), for the HTML report."""
    try:
        from runner.scenarios.report_html import timeline_of
    except ImportError:  # a partial install: the report is optional
        return None
    start = walk.path[0] if walk is not None and walk.path else None
    return timeline_of(observer.events, speed=speed, rate=rate, start_node=start)


def _chat(
    scenario: Scenario, settings: RunSettings, emulator: str | None, target: Any
) -> contextlib.AbstractContextManager[Any]:
    """The caller's and the judge's chat endpoints, for a scenario that has either."""
    if not _judged(scenario):
        return contextlib.nullcontext(None)
    from runner.scenarios.judged import chat_endpoints

    return chat_endpoints(settings.evals, emulator, getattr(target, "api_key", None))


def _judged(scenario: Scenario) -> bool:
    """The scenario has a simulated caller or a rubric (so runner.evals is needed)."""
    if "caller" in scenario.data or scenario.data.get("judge"):
        return True
    return any("judge" in (turn.get("expect") or {}) for turn in scenario.turns)


async def _race(work: Awaitable[None], session: asyncio.Task[int]) -> None:
    """Drive the turns; if the session ends first (connection failed), surface why."""
    driver = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({driver, session}, return_when=asyncio.FIRST_COMPLETED)
    if driver in done:
        driver.result()
        return
    driver.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await driver
    session.result()  # raises the ConnectError that ended it
    raise VlrunError("the session ended before the scenario finished")


class _Driver:
    """Plays the user's side turn by turn and evaluates each turn's expectations."""

    def __init__(
        self,
        scenario: Scenario,
        live: Any,
        observer: Observer,
        player: ScenarioPlayer,
        source: ScenarioSource,
        registry: MockRegistry,
        speed: float,
        tail_ms: int,
    ) -> None:
        self.s, self.live, self.obs = scenario, live, observer
        self.player, self.source, self.registry = player, source, registry
        self.speed, self.tail_ms = speed, tail_ms
        self.timeout = scenario.timeout_s
        self.evals = EvalSettings()
        self.run_number = 0
        self.chat: Any = None  # judged.Chat when the scenario has a caller or rubrics
        self.history: list[Any] = []  # runner.evals.Exchange lines, for callers and judges
        self.caller_mode = "caller" in scenario.data

    @classmethod
    def checker(cls, scenario: Scenario, live: Any) -> _Driver:
        """Only the checks (expectations, judge) of a driver, for turns played elsewhere
        (over a phone line): no session, microphone or speaker of its own."""
        self = cls.__new__(cls)
        self.s, self.live, self.timeout = scenario, live, scenario.timeout_s
        self.evals, self.run_number, self.chat = EvalSettings(), 0, None
        self.history, self.caller_mode = [], "caller" in scenario.data
        return self

    def base(self, i: int) -> PathKey:
        """Where turn ``i`` is written: its item of ``turns``, or the ``caller`` block."""
        return ("caller",) if self.caller_mode else ("turns", i)

    def fail(self, result: ScenarioResult, path: PathKey, message: str, turn: int | None) -> None:
        result.failures.append(Failure(str(self.s.path), self.s.line(path), message, turn))

    async def opening(self) -> None:
        """Until the session takes the first turn: confirmed, and its greeting said."""
        ok = await self.obs.wait(
            lambda: any(
                d == "in" and e.get("type") == "session.updated" for _, d, e in self.obs.events
            ),
            self.timeout,
        )
        if not ok:
            raise VlrunError("the service never confirmed the session (no session.updated)")
        # the session sends the greeting before it accepts input
        await asyncio.wait_for(self.live.ready.wait(), self.timeout)
        if self.live.greeting:
            await self.obs.wait(lambda: settled(self.obs.events), self.timeout)
            await self.player.drain()

    async def run(self, result: ScenarioResult) -> None:
        await self.opening()
        if self.chat is not None:
            self._heard(-1)  # the greeting, for the caller and the judge
        if self.caller_mode:
            await self._converse(result)
        else:
            for i, turn in enumerate(self.s.turns):
                outcome = await self.turn(i, turn, result)
                result.turns.append(outcome)
                if not outcome.settled:
                    break  # the conversation is out of step; later turns would only add noise
        if self.chat is not None:
            await self._judge_conversation(result)

    def _heard(self, index: int, said: str | None = None) -> None:
        """Add turn ``index`` to the history: what the caller said, what the assistant said."""
        from runner.evals import Exchange

        if said:
            self.history.append(Exchange("caller", said))
        for n, text in self.obs.lines:
            if n == index and text.startswith("assistant: "):
                reply = text.removeprefix("assistant: ").removesuffix(" [interrupted]")
                self.history.append(Exchange("assistant", reply))

    async def _converse(self, result: ScenarioResult) -> None:
        """A simulated caller's conversation: its turns until it hangs up, is done, or has
        taken ``max_turns``; each turn is checked against ``caller.expect``."""
        from runner.evals import EvalsError, caller_for

        spec = dict(self.s.data["caller"])
        expect = spec.pop("expect", None)
        spec.pop("offline", None)
        if self.chat is None or (self.evals.tier != "script" and self.chat.caller is None):
            self.fail(
                result,
                ("caller",),
                f"a {self.evals.tier} caller needs a chat endpoint (--caller-endpoint)",
                None,
            )
            return
        try:
            caller = caller_for(
                spec,
                tier=self.evals.tier,  # type: ignore[arg-type]
                endpoint=self.chat.caller if self.evals.tier != "script" else None,
                seed=self.evals.seed * 1000 + self.run_number,
            )
        except EvalsError as exc:
            self.fail(result, ("caller",), exc.message, None)
            return
        limit = int(spec.get("max_turns") or 10)
        for i in range(limit):
            try:
                step = await caller.next_turn(list(self.history))
            except EvalsError as exc:
                self.fail(result, ("caller",), f"the caller could not speak: {exc.message}", i)
                return
            if step is None:
                return
            turn: dict[str, Any] = {"say": step.text} if step.audio else {"user": step.text}
            if expect:
                turn["expect"] = expect
            outcome = await self.turn(i, turn, result, audio=step.audio)
            result.turns.append(outcome)
            if step.done or not outcome.settled:
                return

    async def _judge_conversation(self, result: ScenarioResult) -> None:
        rubrics: list[tuple[PathKey, Mapping[str, Any]]] = [
            (("judge", n), r) for n, r in enumerate(self.s.data.get("judge") or [])
        ]
        caller = self.s.data.get("caller") or {}
        if caller.get("success"):
            success = {"rubric": caller["success"], "offline": caller.get("offline")}
            rubrics.append((("caller", "success"), success))
        for path, rubric in rubrics:
            await self._judge(result, path, rubric, None, None)

    async def _judge(
        self,
        result: ScenarioResult,
        path: PathKey,
        rubric: Mapping[str, Any],
        turn: int | None,
        reply: str | None,
    ) -> None:
        """Ask the judge; its verdict (prompt, answer, reason) is kept, a failed one fails
        the scenario at the rubric's line."""
        from runner.evals import EvalsError, judge_for
        from runner.scenarios.judged import verdict_record

        text = str(rubric["rubric"])
        if self.chat is None or self.chat.judge is None:
            self.fail(result, path, f"no judge for {text!r}: give --judge-endpoint", turn)
            return
        try:
            verdict = await judge_for(self.chat.judge).judge(
                text,
                list(self.history),
                reply=reply,
                offline=rubric.get("offline") if self.chat.judge.offline_rules else None,
            )
        except EvalsError as exc:
            self.fail(result, path, f"judge: {exc.message}", turn)
            return
        where = self.s.where(path)
        result.verdicts.append(verdict_record(verdict, text, where, turn, self.run_number))
        if not verdict.passed:
            self.fail(result, path, f"judged: {text!r} does not hold: {verdict.reason}", turn)

    async def turn(
        self,
        i: int,
        turn: Mapping[str, Any],
        result: ScenarioResult,
        *,
        audio: bytes | None = None,
    ) -> TurnOutcome:
        for path in _duplex_only(turn):  # never a silent pass
            raise VlrunError(
                f"{self.s.where((*self.base(i), *path))}: `{path[-1]}` is for GPT-Live "
                "profiles (full duplex)",
                hint="on a Voice Live profile, talk over the reply with barge_in and expect "
                "interrupted",
            )
        self.obs.turn = i
        self.registry.mocks = {**(self.s.data.get("mocks") or {}), **(turn.get("mocks") or {})}
        outcome = TurnOutcome(i)
        outcome.settled = False
        mark = len(self.obs.events)
        items_before = len(self.player.items)
        interrupts_before = len(self.player.interrupts)
        fmt = self.source.fmt
        typed = _typed(turn)
        if "user" in turn:
            await self.live.send_text(str(turn["user"]))
        elif "dtmf" in turn:
            for key in str(turn["dtmf"]):
                self.live.feed_line(dtmf_line(key))  # as a phone edge hands a key over
        elif "image" in turn:
            await self._send_image(i, turn)
        else:
            if "wav" in turn:
                from runner.live.audio import read_wav

                pcm = read_wav(self.s.relative(turn["wav"]), fmt)
            elif audio is not None:  # a simulated caller's speech (tier audio), 24 kHz
                from runner.scenarios.judged import to_rate

                pcm = to_rate(audio, fmt.rate)
            else:
                pcm = await spoken(str(turn["say"]), fmt)
            await self.source.speak(pcm, self.tail_ms)
            if self.live.manual_turns:
                await self.live.commit_turn()  # no turn detection: each spoken turn is committed
        reply_mark = mark
        barge = turn.get("barge_in")
        if barge is not None:
            missed = await self.player.reach(
                items_before, float(barge["at_ms"]), lambda: settled(self.obs.since(mark))
            )
            if missed is not None:
                outcome.barge_in_missed = missed
            else:
                if "tool_cancelled" in (turn.get("expect") or {}):
                    # the barge-in is there to talk over a running tool (cancelled or not):
                    # it waits for the call, however the reply's audio and the call are spread
                    await self.obs.wait(
                        lambda: _has(
                            self.obs.since(mark), "in", "response.function_call_arguments.done"
                        ),
                        self.timeout,
                    )
                reply_mark = len(self.obs.events)
                pcm = await spoken(str(barge.get("say") or DEFAULT_BARGE_IN), fmt)
                await self.source.speak(pcm, self.tail_ms)
                await self.obs.wait(
                    lambda: _has(
                        self.obs.since(reply_mark), "in", "input_audio_buffer.speech_stopped"
                    ),
                    self.timeout,
                )
                reply_mark = next(
                    (
                        mark + k
                        for k, (_, d, e) in enumerate(self.obs.since(mark))
                        if k + mark >= reply_mark
                        and d == "in"
                        and e.get("type") == "input_audio_buffer.speech_stopped"
                    ),
                    reply_mark,
                )
        keys = len(str(turn["dtmf"])) if "dtmf" in turn else 0
        if keys > 1:
            # the keys go one turn at a time: the reply owed is the one to the last key
            await self.obs.wait(lambda: len(_typed_items(self.obs, mark)) >= keys, self.timeout)
            sent = _typed_items(self.obs, mark)
            reply_mark = sent[keys - 1] if len(sent) >= keys else reply_mark
        silent = (turn.get("expect") or {}).get("silent_for_ms")
        if silent is not None:
            outcome.answered_after_ms, quiet = await self._silence(
                mark, typed, float(silent), reply_mark
            )
            if quiet:
                outcome.settled = True  # no reply at all: the silence was the answer
        if silent is None or not outcome.settled:
            outcome.settled = await self.obs.wait(
                lambda: settled(self.obs.since(reply_mark)), self.timeout
            )
        await self.player.drain()
        if not typed:
            outcome.speech_heard = any(
                d == "in" and e.get("type") == "input_audio_buffer.speech_started"
                for _, d, e in self.obs.since(mark)
            )
        self._collect(outcome, mark, turn)
        stops = [
            ms
            for item, ms in self.player.interrupts[interrupts_before:]
            if item == outcome.truncated_item
        ]
        outcome.stopped_at_ms = stops[0] if stops else None
        self._evaluate(i, turn, outcome, result)
        if self.chat is not None:
            self._heard(i, _said(turn))
            await self._judge_turn(i, turn, outcome, result)
        return outcome

    async def _judge_turn(
        self, i: int, turn: Mapping[str, Any], o: TurnOutcome, result: ScenarioResult
    ) -> None:
        from runner.scenarios.judged import rubrics_of

        at: PathKey = (*self.base(i), "expect", "judge")
        for sub, rubric in rubrics_of((turn.get("expect") or {}).get("judge")):
            await self._judge(result, (*at, *sub), rubric, i, o.reply)

    async def _send_image(self, i: int, turn: Mapping[str, Any]) -> None:
        path = self.s.relative(str(turn["image"]))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise VlrunError(
                f"{self.s.where(('turns', i, 'image'))}: cannot read {path}: {exc.strerror or exc}"
            ) from None
        mime = image_mime(path.name) or "application/octet-stream"
        send_image = getattr(self.live, "send_image", None)
        if send_image is None:
            raise VlrunError(
                f"{self.s.where(('turns', i, 'image'))}: this vlrun's live session cannot send "
                "images (LiveSession.send_image)"
            )
        try:
            await send_image(data, mime, turn.get("text"))
        except VlrunError as exc:  # not an image, too large: the turn's line says which file
            raise VlrunError(
                f"{self.s.where(('turns', i, 'image'))}: {exc.message}", hint=exc.hint
            ) from None

    async def _silence(
        self, mark: int, typed: bool, window_ms: float, reply_mark: int
    ) -> tuple[float | None, bool]:
        """``silent_for_ms``: wait, event driven, until the assistant answers or the window
        (emulator clock, from the end of the turn) has passed. Returns when it answered (ms
        after the end of the turn, on the emulator's clock) or None, and whether the turn
        ended without any reply (no response was even started)."""
        start_kind, start_dir = (
            ("conversation.item.create", "out")
            if typed
            else ("input_audio_buffer.speech_stopped", "in")
        )

        def start() -> float | None:
            for t, d, e in self.obs.since(mark):
                if d == start_dir and e.get("type") == start_kind:
                    return t
            return None

        if not await self.obs.wait(lambda: start() is not None, self.timeout):
            return None, False
        began = start()
        assert began is not None

        def answer() -> float | None:
            for t, d, e in self.obs.since(reply_mark):
                if d == "in" and e.get("type") in ANSWER_EVENTS and t >= began:
                    return t
            return None

        # the window is measured from the end of the turn's event, not from now
        left = began + window_ms / 1000 / self.speed - time.perf_counter()
        if left > 0:
            await self.obs.wait(lambda: answer() is not None, left)
        answered = answer()
        if answered is not None:
            return (answered - began) * 1000 * self.speed, False
        started = _has(self.obs.since(reply_mark), "in", "response.created")
        return None, not started

    def _collect(self, outcome: TurnOutcome, mark: int, turn: Mapping[str, Any]) -> None:
        events = self.obs.since(mark)
        cancel_at: float | None = None
        for t, direction, ev in events:
            kind = ev.get("type")
            if direction == "in" and kind == "response.function_call_arguments.done":
                call_id = str(ev.get("call_id"))
                ok, out = self.obs.tool_outputs.get(call_id, (None, None))
                outcome.tool_calls.append(
                    ToolCallSeen(
                        str(ev.get("name")), call_id, str(ev.get("arguments") or ""), out, ok
                    )
                )
            elif direction == "in" and kind == "error":
                err = ev.get("error") or {}
                code = err.get("code") or err.get("type") or "error"
                if code == "response_cancel_not_active" and cancel_at is not None:
                    continue  # the session ignores this too: the reply had just ended
                outcome.errors.append(f"service error {code}: {err.get('message', '')}")
            elif direction == "in" and kind == "response.done":
                response = ev.get("response") or {}
                if response.get("status") == "failed":
                    details = response.get("status_details") or {}
                    err = details.get("error") or {}
                    outcome.errors.append(f"the response failed: {err.get('message') or details}")
            elif direction == "out" and kind == "conversation.item.create":
                item = ev.get("item") or {}
                if item.get("type") == "function_call_output" and _interrupted(item):
                    call_id = str(item.get("call_id"))
                    outcome.tools_cancelled.append(_call_names(self.obs).get(call_id, call_id))
            elif direction == "out" and kind == "response.cancel":
                outcome.cancelled = True
                cancel_at = t
            elif direction == "out" and kind == "conversation.item.truncate":
                outcome.truncated_at_ms = int(ev.get("audio_end_ms") or 0)
                outcome.truncated_item = str(ev.get("item_id"))
        outcome.reply = " ".join(
            text.removeprefix("assistant: ").removesuffix(" [interrupted]")
            for n, text in self.obs.lines
            if n == outcome.index and text.startswith("assistant: ")
        ).strip()
        outcome.first_audio_ms = self._first_audio(events, _typed(turn))
        outcome.tool_silence_ms = self._tool_silence(events)

    def _first_audio(
        self, events: list[tuple[float, str, dict[str, Any]]], typed: bool
    ) -> float | None:
        start = None
        for t, direction, ev in events:
            kind = ev.get("type")
            if start is None:
                if (
                    typed
                    and direction == "out"
                    and kind == "conversation.item.create"
                    or (
                        not typed
                        and direction == "in"
                        and kind == "input_audio_buffer.speech_stopped"
                    )
                ):
                    start = t
            elif direction == "in" and kind in ("response.audio.delta", "response.text.delta"):
                return (t - start) * 1000 * self.speed
        return None

    def _tool_silence(self, events: list[tuple[float, str, dict[str, Any]]]) -> float | None:
        longest: float | None = None
        call_at: float | None = None
        for t, direction, ev in events:
            kind = ev.get("type")
            if direction != "in":
                continue
            if kind == "response.function_call_arguments.done" and call_at is None:
                call_at = t
            elif kind == "response.audio.delta" and call_at is not None:
                gap = (t - call_at) * 1000 * self.speed
                longest = gap if longest is None else max(longest, gap)
                call_at = None
        if call_at is not None and events:  # no audio after the tool at all
            gap = (events[-1][0] - call_at) * 1000 * self.speed
            longest = gap if longest is None else max(longest, gap)
        return longest

    def _evaluate(
        self, i: int, turn: Mapping[str, Any], o: TurnOutcome, result: ScenarioResult
    ) -> None:
        base: PathKey = self.base(i)
        expect = turn.get("expect") or {}
        at: PathKey = (*base, "expect")
        if not o.settled and not o.speech_heard:
            what = f"in {turn['wav']}" if "wav" in turn else "in the spoken turn"
            self.fail(
                result,
                base,
                f"turn {i + 1}: no speech detected {what} (the service heard only silence)",
                i,
            )
        elif not o.settled:
            self.fail(result, base, f"turn {i + 1}: no complete reply within {self.timeout:g} s", i)
        if "tools" in expect:
            self._expect_tools(i, expect["tools"], o, result)
        reply = o.reply.lower()
        for key, must in (("reply_contains", True), ("reply_not_contains", False)):
            wanted = expect.get(key)
            if wanted is None:
                continue
            for n, text in enumerate([wanted] if isinstance(wanted, str) else wanted):
                path = (*at, key) if isinstance(wanted, str) else (*at, key, n)
                if (text.lower() in reply) != must:
                    verb = "does not contain" if must else "contains"
                    self.fail(result, path, f"the reply {verb} {text!r}: {_quote(o.reply)}", i)
        pattern = expect.get("reply_matches")
        if pattern is not None and not patterns.search(pattern, o.reply):
            self.fail(
                result,
                (*at, "reply_matches"),
                f"the reply does not match /{pattern}/: {_quote(o.reply)}",
                i,
            )
        if expect.get("no_errors", True) and o.errors:
            path = (*at, "no_errors") if "no_errors" in expect else base
            self.fail(result, path, f"unexpected error: {o.errors[0]}", i)
        self._expect_barge_in(i, turn, o, result)
        window = expect.get("silent_for_ms")
        answered = o.answered_after_ms
        if window is not None and answered is not None and answered < float(window):
            self.fail(
                result,
                (*at, "silent_for_ms"),
                f"the assistant answered {answered:.0f} ms after the turn; "
                f"it had to stay silent for {float(window):g} ms: {_quote(o.reply)}",
                i,
            )
        if "tool_cancelled" in expect:
            self._expect_cancelled(i, expect["tool_cancelled"], o, result)
        if "flow" in expect:
            self._expect_flow(i, expect["flow"], result)
        self._expect_duplex(i, turn, o, result)
        latency = expect.get("latency") or {}
        for key, value, what in (
            ("first_audio_ms", o.first_audio_ms, "end of speech -> first audio"),
            ("tool_silence_ms", o.tool_silence_ms, "longest silence while a tool ran"),
        ):
            budget = latency.get(key)
            if budget is None:
                continue
            if value is None:
                if key == "first_audio_ms":
                    self.fail(result, (*at, "latency", key), f"{what}: the reply had no audio", i)
                continue
            if value > float(budget):
                self.fail(
                    result,
                    (*at, "latency", key),
                    f"{what} took {value:.0f} ms, over the budget of {float(budget):g} ms",
                    i,
                )

    def _expect_duplex(
        self, i: int, turn: Mapping[str, Any], o: TurnOutcome, result: ScenarioResult
    ) -> None:
        """GPT-Live's full duplex (docs/gpt-live.md): the talk-over happened, the assistant
        yielded to it or not, and how many backchannels it made."""
        expect = turn.get("expect") or {}
        at: PathKey = (*self.base(i), "expect")
        talk = turn.get("talk_over")
        if talk is not None and o.talk_over_missed is not None:
            self.fail(
                result,
                (*self.base(i), "talk_over"),
                f"no talk-over at {int(talk['at_ms'])} ms: {o.talk_over_missed}",
                i,
            )
            return
        said = (
            f"the caller's talk-over at {int(talk['at_ms'])} ms "
            f"({str(talk.get('say') or DEFAULT_TALK_OVER)!r})"
            if talk is not None
            else "the caller"
        )
        wanted = expect.get("yielded")
        if wanted is False and o.yields:
            self.fail(result, (*at, "yielded"), f"the assistant yielded to {said}", i)
        elif wanted is True and not o.yields:
            self.fail(
                result,
                (*at, "yielded"),
                f"the assistant did not yield to {said}: its reply went on",
                i,
            )
        bounds = expect.get("backchannels")
        if bounds is None:
            return
        low, high = (
            (int(bounds), int(bounds))
            if isinstance(bounds, int)
            else (bounds.get("min"), bounds.get("max"))
        )
        n = len(o.backchannels)
        if (low is None or n >= low) and (high is None or n <= high):
            return
        if low == high:
            want = f"exactly {low}"
        elif high is None or (low is not None and n < low):
            want = f"at least {low}"
        else:
            want = f"at most {high}"
        made = f": {', '.join(repr(b) for b in o.backchannels)}" if o.backchannels else ""
        self.fail(
            result,
            (*at, "backchannels"),
            f"the assistant made {n} backchannel(s){made}; expected {want}",
            i,
        )

    def _expect_cancelled(
        self, i: int, wanted: bool | str, o: TurnOutcome, result: ScenarioResult
    ) -> None:
        at: PathKey = (*self.base(i), "expect", "tool_cancelled")
        running = ", ".join(c.name for c in o.tool_calls) or "no tool was called"
        if wanted is False:
            if o.tools_cancelled:
                self.fail(result, at, f"the barge-in cancelled {', '.join(o.tools_cancelled)}", i)
        elif wanted is True:
            if not o.tools_cancelled:
                self.fail(result, at, f"no running tool was cancelled ({running})", i)
        elif wanted not in o.tools_cancelled:
            what = ", ".join(o.tools_cancelled) or "none"
            self.fail(
                result,
                at,
                f"{wanted} was not cancelled (cancelled: {what}; called: {running})",
                i,
            )

    def _expect_flow(self, i: int, wanted: Mapping[str, Any], result: ScenarioResult) -> None:
        at: PathKey = (*self.base(i), "expect", "flow")
        walk = self.live.flow
        if walk is None:
            self.fail(result, at, "the profile has no flow", i)
            return
        if "node" in wanted and walk.node.name != wanted["node"]:
            self.fail(
                result,
                (*at, "node"),
                f"expected the flow in node {wanted['node']!r}; it is in {walk.node.name!r} "
                f"(path {' -> '.join(walk.path)})",
                i,
            )
        if "path" in wanted and walk.path != list(wanted["path"]):
            self.fail(
                result,
                (*at, "path"),
                f"expected the path {' -> '.join(wanted['path'])}; it was {' -> '.join(walk.path)}",
                i,
            )
        shown = walk.shown_values()
        for name, value in (wanted.get("values") or {}).items():
            if name not in walk.values:
                self.fail(result, (*at, "values", name), f"{name} was not collected", i)
            elif not _same(walk.values[name], value):
                self.fail(
                    result,
                    (*at, "values", name),
                    f"{name} is {shown[name]!r}, expected "
                    + ("(a secret value)" if name in walk.flow.secret_values else repr(value)),
                    i,
                )

    def _expect_tools(
        self, i: int, wanted: list[Mapping[str, Any]], o: TurnOutcome, result: ScenarioResult
    ) -> None:
        at: PathKey = (*self.base(i), "expect", "tools")
        seen = ", ".join(f"{c.name}({c.arguments})" for c in o.tool_calls) or "no tool calls"
        if not wanted:
            if o.tool_calls:
                self.fail(result, at, f"expected no tool calls, got {seen}", i)
            return
        pos = 0
        for j, want in enumerate(wanted):
            same = [
                k for k in range(pos, len(o.tool_calls)) if o.tool_calls[k].name == want["name"]
            ]
            if not same:
                self.fail(
                    result, (*at, j, "name"), f"expected a call to {want['name']}; got {seen}", i
                )
                return
            mismatch: tuple[PathKey, str] | None = None
            for k in same:
                mismatch = _args_mismatch(o.tool_calls[k], want, (*at, j))
                if mismatch is None:
                    pos = k + 1
                    break
            if mismatch is not None:
                self.fail(result, mismatch[0], mismatch[1], i)
                return

    def _expect_barge_in(
        self, i: int, turn: Mapping[str, Any], o: TurnOutcome, result: ScenarioResult
    ) -> None:
        barge = turn.get("barge_in")
        expect = turn.get("expect") or {}
        # a barge-in meant to cancel a tool may come after the reply has played out: then
        # there is nothing to cancel or truncate unless `interrupted: true` says so
        wanted = expect.get("interrupted", barge is not None and "tool_cancelled" not in expect)
        path: PathKey = (
            (*self.base(i), "expect", "interrupted")
            if "interrupted" in expect
            else (*self.base(i), "barge_in")
        )
        if barge is None or not wanted:
            if (
                "interrupted" in expect
                and not wanted
                and (o.cancelled or o.truncated_at_ms is not None)
            ):
                self.fail(result, path, "the reply was interrupted (cancel/truncate sent)", i)
            return
        at_ms = int(barge["at_ms"])
        if o.barge_in_missed is not None:
            self.fail(result, path, f"no barge-in at {at_ms} ms: {o.barge_in_missed}", i)
            return
        if not o.cancelled:
            self.fail(
                result, path, f"barge-in at {at_ms} ms: the runner sent no response.cancel", i
            )
        if o.truncated_at_ms is None:
            self.fail(
                result,
                path,
                f"barge-in at {at_ms} ms: the runner sent no conversation.item.truncate",
                i,
            )
        elif o.stopped_at_ms is None or abs(o.truncated_at_ms - o.stopped_at_ms) > 1:
            self.fail(
                result,
                path,
                f"barge-in at {at_ms} ms: the reply was truncated at {o.truncated_at_ms} ms "
                f"but playback stopped at {o.stopped_at_ms} ms",
                i,
            )
        elif o.stopped_at_ms < at_ms - BARGE_IN_EARLY_MS:
            self.fail(
                result,
                path,
                f"barge-in at {at_ms} ms: playback was stopped early, at {o.stopped_at_ms} ms",
                i,
            )


class _DuplexDriver(_Driver):
    """The turns of a GPT-Live scenario (runner.live.gpt_live): full duplex, so a turn has no
    response to wait for. A turn is answered once every delegation it started has been
    answered (its backend's last response ended after the runner's last response.create),
    no tool is running, and the assistant has said something after that; the reply's end is
    the session's own (its quiet after the last fragment)."""

    async def opening(self) -> None:
        await asyncio.wait_for(self.live.ready.wait(), self.timeout)  # session.started
        if self.live.greeting:
            await self.obs.wait(lambda: any(n == -1 for n, _, _ in self.obs.said), self.timeout)
            await self.player.drain()

    async def turn(
        self,
        i: int,
        turn: Mapping[str, Any],
        result: ScenarioResult,
        *,
        audio: bytes | None = None,
    ) -> TurnOutcome:
        for problem in duplex_turn_problems(
            turn, typed_turns=self.live.delegation_type == "responses"
        ):
            path, message, hint = problem
            raise VlrunError(f"{self.s.where((*self.base(i), *path))}: {message}", hint=hint)
        self.obs.turn = i
        self.registry.mocks = {**(self.s.data.get("mocks") or {}), **(turn.get("mocks") or {})}
        outcome = TurnOutcome(i)
        mark, lines, said = len(self.obs.events), len(self.obs.lines), len(self.obs.said)
        notes = len(self.obs.notes)
        talk = turn.get("talk_over")
        after_talk: tuple[int, int] | None = None
        if "user" in turn:
            self.live.feed_line(str(turn["user"]))
        else:
            fmt = self.source.fmt
            if "wav" in turn:
                from runner.live.audio import read_wav

                pcm = read_wav(self.s.relative(turn["wav"]), fmt)
            elif audio is not None:
                from runner.scenarios.judged import to_rate

                pcm = to_rate(audio, fmt.rate)
            else:
                pcm = await spoken(str(turn["say"]), fmt)
            # with a talk-over the caller's stream goes on (silence) until it talks over the
            # reply: the reply is said at the pace of that stream (docs/gpt-live.md)
            await self.source.speak(pcm, 0 if talk is not None else self.tail_ms)
        if talk is not None:
            outcome.talk_over_missed = await self._talk_over(talk, mark, said)
            if outcome.talk_over_missed is None:
                after_talk = (len(self.obs.said), len(self.obs.notes))
        if after_talk is not None:
            # the reply went on (said once it ends), or it yielded and the interruption's answer
            # is owed: more replies said since the talk-over than replies that yielded
            said_at, notes_at = after_talk
            outcome.settled = await self.obs.wait(
                lambda: len(self.obs.said) - said_at > _count(self.obs.notes[notes_at:], "yield"),
                self.timeout,
            )
        else:
            outcome.settled = await self.obs.wait(lambda: self._answered(mark, said), self.timeout)
        await self.player.drain()
        for n, call_id, name, arguments in self.obs.calls:
            if n == i:
                ok, output = self.obs.tool_outputs.get(call_id, (None, None))
                outcome.tool_calls.append(ToolCallSeen(name, call_id, arguments, output, ok))
        outcome.reply = " ".join(text for n, _, text in self.obs.said if n == i).strip()
        outcome.errors = [
            text.removeprefix("error: ")
            for _, text in self.obs.lines[lines:]
            if text.startswith("error: ")
        ]
        for n, _, note in self.obs.notes[notes:]:
            if n != i:
                continue
            if note.get("type") == "backchannel":
                outcome.backchannels.append(str(note.get("text") or ""))
            elif note.get("type") == "yield":
                outcome.yields += 1
        if "silent_for_ms" in (turn.get("expect") or {}):
            outcome.answered_after_ms = _answered_after(self.obs.since(mark))
        self._evaluate(i, turn, outcome, result)
        if self.chat is not None:
            self._heard(i, _said(turn))
            await self._judge_turn(i, turn, outcome, result)
        return outcome

    async def _talk_over(self, spec: Mapping[str, Any], mark: int, said: int) -> str | None:
        """Stream silence until ``at_ms`` of the reply has been said, then the talk-over and
        its tail. Returns None, or why the caller could not talk over the reply."""
        from runner.aio import Deadline

        fmt = self.source.fmt
        at_ms = int(spec["at_ms"])
        burst = await spoken(str(spec.get("say") or DEFAULT_TALK_OVER), fmt)
        gap = bytes(fmt.bytes_for_ms(TALK_OVER_STEP_MS))
        deadline = Deadline(self.timeout)
        while True:
            into = self._reply_ms(mark)
            if into is not None and into >= at_ms:
                break
            if len(self.obs.said) > said:
                return f"the reply was over after {into or 0} ms"
            if deadline.expired():
                return f"no reply within {self.timeout:g} s"
            await self.source.speak(gap, 0)
        await self.source.speak(burst, self.tail_ms)
        return None

    def _reply_ms(self, mark: int) -> int | None:
        """How far (ms on the session's timeline) the assistant's first output after the
        caller's turn has been said: from its first fragment's start to the latest output
        audio's end."""
        began: int | None = None
        end = 0
        heard = False
        for _, d, e in self.obs.since(mark):
            kind = e.get("type")
            if (d, kind) in (("in", "session.input_transcript.delta"), ("out", "response.create")):
                heard = True
            elif heard and d == "in" and kind == "session.output_transcript.delta":
                if began is None:
                    began = int(e.get("start_ms") or 0)
                end = max(end, int(e.get("end_ms") or 0))
        if began is None:
            return None
        return max(end, self.obs.output_audio_end_ms or 0) - began

    def _answered(self, mark: int, said: int) -> bool:
        events = self.obs.since(mark)
        opened = {
            str((e.get("delegation") or {}).get("id"))
            for _, d, e in events
            if d == "in" and e.get("type") == "session.delegation.created"
        }
        ended: dict[str, int] = {}  # delegation -> index of its backend's last ended response
        asked = -1  # the runner's last response.create (after tool outputs)
        for k, (_, d, e) in enumerate(events):
            kind = e.get("type")
            if d == "in" and kind == "response.event":
                inner = str((e.get("event") or {}).get("type") or "")
                if inner in ("response.completed", "response.done", "response.failed"):
                    ended[str(e.get("delegation_id"))] = k
            elif d == "out" and kind == "response.create":
                asked = k
        if any(ended.get(did, -1) < asked or did not in ended for did in opened):
            return False
        if any(call_id not in self.obs.tool_outputs for _, call_id, _, _ in self.obs.calls):
            return False
        answered = mark + max(ended.values(), default=-1)
        return any(at > answered for _, at, _ in self.obs.said[said:])


def _duplex_only(turn: Mapping[str, Any]) -> list[PathKey]:
    """The keys of a turn that only a GPT-Live scenario takes."""
    expect = turn.get("expect") or {}
    out: list[PathKey] = [("talk_over",)] if "talk_over" in turn else []
    return out + [("expect", k) for k in ("yielded", "backchannels") if k in expect]


def _count(notes: list[tuple[int, int, dict[str, Any]]], kind: str) -> int:
    return sum(1 for _, _, note in notes if note.get("type") == kind)


def _answered_after(events: list[tuple[float, str, dict[str, Any]]]) -> float | None:
    """GPT-Live ``silent_for_ms``: ms on the session's clock from the end of the caller's
    speech (its turn's last input fragment) to the start of the assistant's first output after
    it; None when it never spoke after it."""
    end: int | None = None
    for _, d, e in events:
        if d != "in":
            continue
        kind = e.get("type")
        if kind == "session.input_transcript.delta":
            end = max(end or 0, int(e.get("end_ms") or 0))
        elif kind == "session.output_transcript.delta" and end is not None:
            start = int(e.get("start_ms") or 0)
            if start >= end:  # a backchannel during the caller's words is not an answer
                return float(start - end)
    return None


#: What counts as the assistant answering (``silent_for_ms``): its reply, heard or read.
ANSWER_EVENTS = frozenset(
    {"response.audio.delta", "response.text.delta", "response.audio_transcript.delta"}
)


def _said(turn: Mapping[str, Any]) -> str:
    """What the caller said in a turn, as the judge and a simulated caller read it."""
    if "dtmf" in turn:
        return " ".join(dtmf_line(k) for k in str(turn["dtmf"]))
    for key in ("user", "say", "transcript", "text"):
        if turn.get(key):
            return str(turn[key])
    return "(an image)" if "image" in turn else "(speech)"


def _typed(turn: Mapping[str, Any]) -> bool:
    """The turn is a message item (typed text, keys, a picture), not microphone audio."""
    return any(k in turn for k in ("user", "dtmf", "image"))


def _typed_items(observer: Observer, mark: int) -> list[int]:
    """Indexes (into the observer's events) of the user message items sent since ``mark``."""
    return [
        mark + k
        for k, (_, d, e) in enumerate(observer.since(mark))
        if d == "out"
        and e.get("type") == "conversation.item.create"
        and (e.get("item") or {}).get("role") == "user"
    ]


def _call_names(observer: Observer) -> dict[str, str]:
    return {
        str(e.get("call_id")): str(e.get("name"))
        for _, d, e in observer.events
        if d == "in" and e.get("type") == "response.function_call_arguments.done"
    }


def _interrupted(item: Mapping[str, Any]) -> bool:
    """A tool output saying a barge-in cancelled the call (runner.live.tool_calls)."""
    try:
        output = json.loads(str(item.get("output") or ""))
    except ValueError:
        return False
    error = output.get("error") if isinstance(output, dict) else None
    return isinstance(error, dict) and error.get("type") == "interrupted"


def _has(events: list[tuple[float, str, dict[str, Any]]], direction: str, kind: str) -> bool:
    return any(d == direction and e.get("type") == kind for _, d, e in events)


def _args_mismatch(
    call: ToolCallSeen, want: Mapping[str, Any], at: PathKey
) -> tuple[PathKey, str] | None:
    args = call.args
    for key, value in (want.get("args") or {}).items():
        if key not in args:
            return (*at, "args", key), f"{call.name} was called without {key!r}: {call.arguments}"
        if not _same(args[key], value):
            return (
                (*at, "args", key),
                f"{call.name} was called with {key}={args[key]!r}, expected {value!r}",
            )
    for key, pattern in (want.get("args_match") or {}).items():
        got = args.get(key)
        text = got if isinstance(got, str) else json.dumps(got)
        if key not in args or not patterns.search(pattern, text):
            return (
                (*at, "args_match", key),
                f"{call.name} was called with {key}={got!r}, which does not match /{pattern}/",
            )
    return None


def _same(got: Any, want: Any) -> bool:
    """Equality where a mapping in the expectation is a subset of the argument."""
    if isinstance(want, Mapping) and isinstance(got, Mapping):
        return all(k in got and _same(got[k], v) for k, v in want.items())
    if (
        isinstance(want, (int, float))
        and isinstance(got, (int, float))
        and not isinstance(want, bool)
    ):
        return float(got) == float(want)
    return bool(got == want)


def _quote(text: str, limit: int = 160) -> str:
    text = text or "(no reply)"
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
