"""Tier 4 (issue 30): a scenario's turns over a phone line, for `vlrun test --via PROVIDER`.

The same scenario file that runs against the emulator in text runs here through `vlrun serve`'s
own telephony edge, in this process: the emulator plays Voice Live (scripted by the scenario's
``model:``), the serve file's one route answers with the scenario's profile, and the simulated
carrier (:mod:`runner.carrier`, `vlrun ring`) rings it as the provider would and plays the
caller: each turn spoken (a typed ``user:`` or ``say:`` turn by espeak-ng, a ``wav:`` file) or
pressed (``dtmf:``) at real time, then the reply heard to its end. Voice Live SIP through the
emulator carries no media: its turns are said as text through the emulator's SIP caller.

It lives with the carrier, not with the scenarios: it runs serve's phone edge, and scenarios sit
below serve in the wings. `vlrun test --via` hands it to the scenario runner
(``RunSettings.phone_line``).

What comes back (:class:`PhoneRun`) is what the scenario runner evaluates expectations on: per
turn a :class:`~runner.scenarios.results.TurnOutcome` with the reply's words as the emulator
said them (the caller hears audio; the words are the emulator's record of what it spoke), the
tool calls with their arguments and outputs, errors, and the caller's timings (first audio
after the end of its words, reply audio heard).

Not over a phone line: ``image:`` turns and ``barge_in:`` (a usage error at the turn's line);
``mocks:`` (a route's tools are its plugins: the phone edge takes no mocks) and a scenario's
own ``tools:`` folders (the profile's own tool folders apply). ACS runs with a simulated Call
Automation endpoint made for the call (`vlrun ring acs --setup`'s keys and certificate, in a
temporary folder), trusted by this server only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.aio import Deadline
from runner.config.patterns import NEVER
from runner.errors import UsageError, VlrunError
from runner.live.connect import SERVICE_PACE
from runner.scenarios.files import Scenario, model_script
from runner.scenarios.results import ToolCallSeen, TurnOutcome

log = logging.getLogger("vlrun.carrier.phone_line")

__all__ = ["PROVIDERS", "PhoneOptions", "PhoneRun", "PhoneTurn", "phone_script", "run_via_phone"]

#: The providers a scenario can be run over (`vlrun test --via`).
PROVIDERS = ("twilio", "acs", "sip")
_TOKEN_ENV = "VLRUN_VIA_PHONE_TWILIO_TOKEN"  # noqa: S105 (the name of a variable, not a secret)
_SIP_ENV = "VLRUN_VIA_PHONE_SIP_SECRET"  # noqa: S105


@dataclass(frozen=True)
class PhoneOptions:
    """How the call is made and how long each wait may take."""

    turn_s: float = 60.0  # the longest one turn's reply may take
    first_audio_s: float = 15.0  # a reply that has not started by then is "no reply"
    quiet_ms: float = 800.0  # a reply has finished after this much silence at the ear
    greeting_s: float = 3.0  # how long to listen for a greeting before the first turn
    emulator_speed: float = SERVICE_PACE  # the emulator sends ahead, as Voice Live does
    record: Path | None = None  # keep what the caller heard (a WAV; twilio)
    out: Callable[[str], None] = field(default=lambda _line: None)  # the carrier's lines


@dataclass
class PhoneTurn:
    """One scenario turn over the line."""

    index: int  # the scenario turn's index (0-based)
    said: str  # what the caller said, played or pressed
    outcome: TurnOutcome  # the reply's words, tool calls, errors, first audio (caller's clock)
    heard_ms: float  # reply audio played to the caller (0 on SIP: no media)
    line: str  # the carrier's summary line for the turn


@dataclass
class PhoneRun:
    """A scenario's turns over one call."""

    provider: str
    turns: list[PhoneTurn] = field(default_factory=list)
    greeting: str = ""  # what the assistant said before the first turn
    lines: list[str] = field(default_factory=list)  # the carrier's lines, in order
    duration_s: float = 0.0

    @property
    def outcomes(self) -> list[TurnOutcome]:
        return [turn.outcome for turn in self.turns]


# --- the turns -------------------------------------------------------------------------------


def _caller_turns(scenario: Scenario, provider: str) -> list[tuple[int, Any]]:
    """The scenario's turns as the carrier's (index, Turn), checked for a phone line."""
    from runner.carrier.voice import Turn, check_turn

    turns: list[tuple[int, Any]] = []
    script = (scenario.data.get("caller") or {}).get("script") or []
    if not scenario.turns and script:  # a simulated caller's script (tier 1's words)
        return [(i, Turn("say", str(line))) for i, line in enumerate(script)]
    for i, turn in enumerate(scenario.turns):
        where = scenario.where(("turns", i))
        for key in ("image", "barge_in"):
            if key in turn:
                raise UsageError(
                    f"{where}: {'an image turn' if key == 'image' else 'a barge-in'} cannot be "
                    "played over a phone line",
                    hint="run this scenario without --via, or leave the turn out",
                )
        if "user" in turn or "say" in turn:
            made = Turn("say", str(turn.get("user", turn.get("say"))))
        elif "wav" in turn:
            made = Turn("wav", str(scenario.relative(str(turn["wav"]))))
        elif "dtmf" in turn:
            made = Turn("dtmf", str(turn["dtmf"]))
        else:
            raise UsageError(f"{where}: a turn says nothing the caller could do")
        if provider == "sip" and made.kind != "say":
            raise UsageError(
                f"{where}: a {made.kind} turn cannot be played on an emulated SIP call",
                hint="the emulator carries no SIP media: only typed or said text turns",
            )
        try:
            turns.append((i, check_turn(made)))
        except UsageError as exc:
            raise UsageError(f"{where}: {exc.message}", hint=exc.hint) from None
    return turns


def phone_script(scenario: Scenario) -> dict[str, Any]:
    """The emulator's script for the call: the scenario's, where a typed ``user:`` turn, which
    the caller speaks on the phone, is heard as its words too (as ``say:`` turns are)."""
    script = model_script(scenario)
    rules = list(script.get("turns") or [])
    number = 0
    for turn in scenario.turns:
        number += len(str(turn["dtmf"])) if "dtmf" in turn else 1
        if "user" in turn:
            rules.append({"turn": number, "transcript": str(turn["user"]), "match": NEVER})
    if rules:
        script["turns"] = rules
    return script


# --- what the emulator said ------------------------------------------------------------------


def _outcomes(record: Any, marks: Sequence[tuple[int, int, bool]]) -> tuple[str, list[TurnOutcome]]:
    """What the assistant said before the first turn, and each turn's outcome, from the
    emulator's record of the call's session. ``marks`` are (turn index, how many events the
    emulator had sent when the caller began the turn, whether it was spoken: then
    ``speech_heard`` says whether the service heard speech in it). A response belongs to the turn in
    which it was created (a greeting that ends after the caller spoke is still the
    greeting's); tool outputs are matched to their calls by call id."""
    from runner.emulator.sip import spoken_text

    outcomes = [TurnOutcome(index, speech_heard=not spoken) for index, _, spoken in marks]
    greeting: list[str] = []
    if record is None:
        return "", outcomes
    starts = [at for _, at, _ in marks]

    def turn_of(at: int) -> int:  # -1: before the first turn
        return sum(1 for start in starts if start <= at) - 1

    outputs = {
        str((e.get("item") or {}).get("call_id")): str((e.get("item") or {}).get("output", ""))
        for e in record.received
        if e.get("type") == "conversation.item.create"
        and (e.get("item") or {}).get("type") == "function_call_output"
    }
    created: dict[str, int] = {}
    words: dict[int, list[str]] = {}
    for at, event in enumerate(record.sent):
        kind = event.get("type")
        response = event.get("response") or {}
        owner = turn_of(at)
        if kind == "response.created":
            created[str(response.get("id"))] = at
        elif kind == "error" and owner >= 0:
            outcomes[owner].errors.append(str((event.get("error") or {}).get("message", event)))
        elif kind == "input_audio_buffer.speech_started" and owner >= 0:
            outcomes[owner].speech_heard = True
        elif kind == "response.done":
            owner = turn_of(created.get(str(response.get("id")), at))
            output = response.get("output") or []
            said = spoken_text(output)
            if said:
                (greeting if owner < 0 else words.setdefault(owner, [])).append(said)
            for item in output if owner >= 0 else []:
                if isinstance(item, Mapping) and item.get("type") == "function_call":
                    call_id = str(item.get("call_id", ""))
                    outcomes[owner].tool_calls.append(
                        ToolCallSeen(
                            str(item.get("name", "")),
                            call_id,
                            str(item.get("arguments", "")),
                            outputs.get(call_id),
                        )
                    )
    for owner, parts in words.items():
        outcomes[owner].reply = " ".join(parts)
    return " ".join(greeting), outcomes


# --- the server and the call -----------------------------------------------------------------


def _serve_file(folder: Path, profile: Path, provider: str, acs_port: int = 0) -> Path:
    """A serve file with one route (the scenario's profile) for ``provider``."""
    from runner.carrier.acs import RESOURCE_ID

    section = {
        "twilio": "twilio:\n  auth_token: ${env:" + _TOKEN_ENV + "}\n",
        "sip": "voicelive_sip:\n  preview: true\n  webhook_secret: ${env:" + _SIP_ENV + "}\n",
        "acs": "acs:\n  connection_string: ${env:ACS_CONNECTION_STRING}\n"
        f"  resource_id: {RESOURCE_ID}\n"
        f"  jwks_url: https://127.0.0.1:{acs_port}/calling/keys\n"
        "  event_grid_secret: ${env:ACS_EVENT_GRID_SECRET}\n",
    }[provider]
    path = folder / "serve.yaml"
    path.write_text(
        f"serve: 1\nmax_calls: 2\ndrain_timeout_s: 5\nroutes:\n"
        f"  - {{default: true, profile: {_quoted(str(profile))}}}\n{section}",
        encoding="utf-8",
    )
    return path


def _quoted(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a YAML string


@contextlib.asynccontextmanager
async def _phone_server(
    serve_path: Path,
    endpoint: str,
    env: Mapping[str, str],
    sip: bool,
    acs_options: dict[str, Any] | None = None,
) -> AsyncIterator[str]:
    """`vlrun serve`'s phone edge for the serve file, on loopback in this loop: its base URL."""
    from aiohttp import web

    from runner.config.serve_file import load_serve_file
    from runner.serve.telephony import Phones
    from runner.serve.telephony_routes import add_phone_routes

    serve = load_serve_file(serve_path, env=env)
    phones = Phones(serve, endpoint=endpoint, logs_dir=None)
    if sip:
        from runner.serve.sip import API_VERSION

        await phones.prepare(api_versions=(API_VERSION,))
    else:
        await phones.prepare()
    app = web.Application()
    add_phone_routes(app, phones, metrics_route=False, acs_options=acs_options)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield f"http://127.0.0.1:{port}"
        await phones.until(lambda: not phones.calls, 10.0)  # the call's session has ended
    finally:
        try:
            await phones.drain(timeout=2)
        except Exception:  # the server still closes; what failed is said, not hidden
            log.exception("vlrun test --via: draining the phone server failed")
        await runner.cleanup()
        await phones.close()


async def run_via_phone(
    scenario: Scenario, provider: str, options: PhoneOptions | None = None
) -> PhoneRun:
    """Run ``scenario``'s turns over a ``provider`` phone line (``twilio``, ``acs`` or
    ``sip``) through an in-process `vlrun serve` and the emulator; what each turn got back.

    Raises :class:`~runner.errors.UsageError` (at the turn's file:line) for a turn a phone
    cannot carry, and a :class:`~runner.errors.VlrunError` when the call could not be made."""
    from runner.emulator import running_emulator
    from runner.redact import register_secret

    options = options or PhoneOptions()
    if provider not in PROVIDERS:
        raise UsageError(
            f"--via {provider}: not a phone line this can ring",
            hint=f"use one of {', '.join(PROVIDERS)}",
        )
    turns = _caller_turns(scenario, provider)
    run = PhoneRun(provider)
    started = time.perf_counter()
    secret = secrets.token_urlsafe(24)
    register_secret(secret)
    async with running_emulator(
        scenario=phone_script(scenario), speed=options.emulator_speed, use_espeak=False
    ) as emu:
        with tempfile.TemporaryDirectory(prefix="vlrun-via-") as folder:
            here, profile = Path(folder), scenario.profile_path
            if provider == "twilio":
                env = {_TOKEN_ENV: secret}
                serve_path = _serve_file(here, profile, provider)
                async with _phone_server(serve_path, emu.endpoint, env, sip=False) as base:
                    await _twilio(emu, base + "/twilio/voice", secret, turns, run, options)
            elif provider == "acs":
                await _acs(emu, here, profile, turns, run, options)
            else:
                await _sip(emu, _serve_file(here, profile, provider), turns, run, options)
    run.duration_s = time.perf_counter() - started
    return run


def _ring_options(options: PhoneOptions, run: PhoneRun) -> Any:
    from runner.carrier.ring import RingOptions

    def out(line: str) -> None:
        run.lines.append(line)
        options.out(line)

    return RingOptions(
        record=options.record,
        connect_timeout_s=min(options.turn_s, 10.0),
        first_audio_s=options.first_audio_s,
        greeting_s=options.greeting_s,
        quiet_ms=options.quiet_ms,
        turn_s=options.turn_s,
        out=out,
    )


async def _session_record(emu: Any, deadline: Deadline) -> Any:
    """The call's Voice Live session as the emulator records it (once the server has
    configured it)."""
    await emu.wait_for(lambda e: e.get("type") == "session.update", timeout=deadline.left())
    return emu.sessions[-1]


@dataclass
class _Said:
    """One turn as the caller made it: where the emulator's record stood, what it heard."""

    index: int
    at: int  # events the emulator had sent when the caller began the turn
    value: str
    spoken: bool = False  # the caller's speech (not keys, not a text turn)
    line: str = ""
    heard_ms: float = 0.0
    first_ms: float | None = None


def _finish(run: PhoneRun, record: Any, said: Sequence[_Said]) -> None:
    """The turns' outcomes from the emulator's record, once the call is over."""
    greeting, outcomes = _outcomes(record, [(t.index, t.at, t.spoken) for t in said])
    run.greeting = greeting
    for turn, outcome in zip(said, outcomes, strict=True):
        outcome.first_audio_ms = turn.first_ms
        run.turns.append(PhoneTurn(turn.index, turn.value, outcome, turn.heard_ms, turn.line))


async def _twilio(
    emu: Any,
    url: str,
    token: str,
    turns: Sequence[tuple[int, Any]],
    run: PhoneRun,
    options: PhoneOptions,
) -> None:
    from runner.carrier import twilio

    ring = _ring_options(options, run)
    async with twilio.ring(url, token, ring) as call:
        await _media_call(emu, call, turns, run, options, ring)


async def _acs(
    emu: Any,
    folder: Path,
    profile: Path,
    turns: Sequence[tuple[int, Any]],
    run: PhoneRun,
    options: PhoneOptions,
) -> None:
    """ACS: a simulated Call Automation endpoint (its own keys and certificate, made here)
    that the server answers through, trusted by this server only, then the media stream."""
    import ssl

    from runner.carrier import acs

    acs_dir = folder / "acs"
    acs.setup(acs_dir, 0, out=lambda _line: None)  # its port: chosen as it starts, read back
    ca = str(acs_dir / "ca.pem")
    trust = {  # what env.sh's SSL_CERT_FILE does for a `vlrun serve` process
        "client_options": {"connection_verify": ca},
        "http_options": {"ssl": ssl.create_default_context(cafile=ca)},
    }
    ring = _ring_options(options, run)
    async with acs.running(acs.Folder(acs_dir)) as fake:
        env = acs.settings(acs_dir, fake.port)
        serve_path = _serve_file(folder, profile, "acs", fake.port)
        server = _phone_server(serve_path, emu.endpoint, env, sip=False, acs_options=trust)
        async with server as base:
            secret = env.get("ACS_EVENT_GRID_SECRET", "")
            incoming = base + "/acs/incoming"
            async with acs.ring(incoming, acs_dir, ring, secret, fake=fake) as call:
                await _media_call(emu, call, turns, run, options, ring)


async def _media_call(
    emu: Any,
    call: Any,
    turns: Sequence[tuple[int, Any]],
    run: PhoneRun,
    options: PhoneOptions,
    ring: Any,
) -> None:
    """The turns of an answered call that carries audio (Twilio, ACS): each said or pressed
    at real time, its reply heard to its end."""
    from runner.aio import cancel_and_wait
    from runner.carrier.ring import take_turn
    from runner.carrier.voice import write_wav

    said: list[_Said] = []
    record = None
    line = call.line
    assert line is not None
    clock = asyncio.create_task(line.run(), name="vlrun-via-phone-clock")
    try:
        record = await _session_record(emu, Deadline(options.turn_s))
        greeting = await line.listen(options.greeting_s, options.quiet_ms, options.turn_s)
        if greeting.first_ms is not None:
            ring.out(greeting.line(0, "greeting"))
        for number, (index, turn) in enumerate(turns, 1):
            if line.closed.is_set():
                ring.out(f"turn {number} ({turn.describe()}): not said: the server hung up")
                break
            made = _Said(index, len(record.sent), turn.value, turn.kind != "dtmf")
            heard = await take_turn(call, line, turn, ring)
            made.line, made.heard_ms = heard.line(number, turn.describe()), heard.heard_ms
            made.first_ms = heard.first_ms
            ring.out(made.line)
            said.append(made)
            if heard.ended:
                break
        await call.hang_up()
        ring.out("hung up")
    finally:
        line.hung_up()
        await cancel_and_wait(clock, timeout=2)
        if options.record is not None:
            write_wav(options.record, bytes(line.record), line.rate)
    _finish(run, record, said)


async def _sip(
    emu: Any,
    serve_path: Path,
    turns: Sequence[tuple[int, Any]],
    run: PhoneRun,
    options: PhoneOptions,
) -> None:
    """Voice Live SIP: the emulator rings the server's webhook, the server attaches; the
    caller's turns are text through the emulator's caller API, each waited for until its
    reply has finished (the call's status says so)."""
    from runner.carrier import sip

    ring = _ring_options(options, run)
    hook = await sip.webhook(emu.endpoint, "https://example.invalid/", ring.connect_timeout_s)
    secret = str(hook.get("signing_secret") or "")
    if not secret:
        # its keys only: a webhook's values may hold a secret
        keys = ", ".join(sorted(str(k) for k in hook)) if isinstance(hook, Mapping) else "none"
        raise VlrunError(
            f"the emulator did not create the SIP webhook (its answer had no signing_secret; "
            f"keys: {keys or 'none'})"
        )
    said: list[_Said] = []
    async with _phone_server(serve_path, emu.endpoint, {_SIP_ENV: secret}, sip=True) as base:
        await sip.webhook(emu.endpoint, base + "/sip/webhook", ring.connect_timeout_s, hook["id"])
        async with sip.ring(emu.endpoint, ring) as call:
            record = emu.sip.calls[call.call_id].record  # set as the call was attached
            if record is None:
                raise VlrunError("the SIP call connected without a Voice Live session")
            for number, (index, turn) in enumerate(turns, 1):
                made = _Said(index, len(record.sent), turn.value)
                made.line = f"turn {number} ({turn.describe()}): {await call.say_text(turn.value)}"
                ring.out(made.line)
                said.append(made)
            await call.hang_up()
            ring.out("hung up")
    _finish(run, record, said)
