"""From a real call to a regression test: a conversation's trace becomes a scenario file.

`vlrun serve` keeps each browser conversation's trace (``LOGS/<id>.trace.jsonl``; ``vlrun run
--trace`` and ``vlrun test --record`` write the same format) and each conversation's log
(``LOGS/*_conversation.log``, all a phone call keeps). Read back, either gives:

- the caller's turns: typed lines as they were sent (a phone's DTMF keys are the typed
  ``[DTMF] K`` lines the edge sent), spoken ones by their transcript (typed in the scenario,
  so it runs without a speech engine);
- a ``model:`` script replaying what the model did in each turn (its tool calls with their
  arguments, its words before and after them), so the scenario runs offline on the emulator;
- each turn's tool outputs as that turn's ``mocks:`` (the scenario needs no network, and a
  tool answers as it did on the call);
- expectations: the tool calls and their arguments, the flow node after each step and the
  values collected there, the whole path at the end, and the first words of each reply.

Secrets are masked twice: the trace is written masked (registered secrets, credential shapes,
flow values marked ``secret``), and every string here goes through :func:`runner.redact.redact`
and :func:`runner.redact.mask_phone_numbers` (a caller's number, said or passed to a tool).
A secret flow value is replayed as a placeholder of its type and never expected.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.config.flow_model import RECORD_PREFIX, Flow
from runner.errors import OutputError, Problem, ProfileError
from runner.redact import clean_line, mask_phone_numbers, redact
from runner.scenarios.replay import Entry, load_recording

MASK = "***"
REPLY_WORDS = 6  # the words of a reply a scenario expects (enough to tell replies apart)
_DIGITS = re.compile(r"(?<![A-Za-z0-9])\d(?:[ .-]?\d){2,}")  # not an id such as E1234
_PROFILE_NOTE = re.compile(r"; profile \S+ \((?P<path>[^)]+)\);")


@dataclass
class _Call:
    name: str
    call_id: str
    arguments: str
    output: str | None = None


@dataclass
class _Turn:
    said: str
    spoken: bool  # an audio turn (its transcript), not a typed line
    calls: list[_Call] = field(default_factory=list)
    before: list[str] = field(default_factory=list)  # words before the first tool call
    after: list[str] = field(default_factory=list)  # words after it (or all, without tools)


def read_turns(entries: Sequence[Entry]) -> list[_Turn]:
    """The caller's turns in order, each with the model's calls and words that answered it."""
    turns: list[_Turn] = []
    spoken: dict[str, _Turn] = {}
    calls: dict[str, _Call] = {}
    for e in entries:
        ev = e.event
        if e.dir == "out" and e.type == "conversation.item.create":
            item = ev.get("item") or {}
            if item.get("type") == "message" and item.get("role") == "user":
                text = " ".join(
                    str(c.get("text") or "")
                    for c in item.get("content") or []
                    if isinstance(c, Mapping)
                ).strip()
                turns.append(_Turn(text, spoken=False))
            elif item.get("type") == "function_call_output":
                call = calls.get(str(item.get("call_id")))
                if call is not None and call.output is None:
                    call.output = str(item.get("output"))
            continue
        if e.dir != "in":
            continue
        if e.type == "input_audio_buffer.speech_stopped":
            turn = _Turn("", spoken=True)
            spoken[str(ev.get("item_id"))] = turn
            turns.append(turn)
        elif e.type == "conversation.item.input_audio_transcription.completed":
            heard = spoken.get(str(ev.get("item_id")))
            if heard is not None:
                heard.said = str(ev.get("transcript") or "").strip()
        elif not turns:
            continue  # the greeting: the profile says it again
        elif e.type == "response.function_call_arguments.done":
            call = _Call(
                str(ev.get("name") or ""), str(ev.get("call_id")), str(ev.get("arguments") or "")
            )
            calls[call.call_id] = call
            turn = turns[-1]
            if not turn.calls:
                turn.before, turn.after = turn.after, []
            turn.calls.append(call)
        elif e.type in ("response.audio_transcript.done", "response.text.done"):
            said = str(ev.get("transcript") or ev.get("text") or "").strip()
            if said:
                turns[-1].after.append(said)
    return turns


_LOG_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (?P<text>.*)$")
_LOG_CALL = re.compile(r"^tool call (?P<name>\S+?)\((?P<args>.*)\) \[(?P<id>[^\]]*)\]$")
_LOG_RESULT = re.compile(r"^tool result (?P<name>\S+) (?P<ok>ok|error) \([\d.]+ s\): (?P<text>.*)$")
_MARKS = re.compile(r"( \[interim\]| \[interrupted\])+$")


def read_log_turns(lines: Sequence[str]) -> list[_Turn]:
    """The same turns from a conversation log (``*_conversation.log``): what `vlrun serve`
    keeps of a phone call. Its lines are ``[HH:MM:SS] user: ...``, ``assistant: ...``,
    ``tool call NAME(ARGS) [ID]`` and ``tool result NAME ok|error (S s): TEXT``."""
    turns: list[_Turn] = []
    for raw in lines:
        m = _LOG_LINE.match(raw.rstrip("\n"))
        if m is None:
            continue
        text = m.group("text")
        if text.startswith("user: "):
            turns.append(_Turn(text[6:].strip(), spoken=False))
        elif not turns:
            continue  # the greeting, and the notes before the first turn
        elif text.startswith("assistant: "):
            said = _MARKS.sub("", text[11:]).strip()
            if said and " [interim]" not in text:
                turns[-1].after.append(said)
        elif (call := _LOG_CALL.match(text)) is not None:
            turn = turns[-1]
            if not turn.calls:
                turn.before, turn.after = turn.after, []
            turn.calls.append(_Call(call.group("name"), call.group("id"), call.group("args")))
        elif (result := _LOG_RESULT.match(text)) is not None:
            pending = [
                c for c in turns[-1].calls if c.name == result.group("name") and c.output is None
            ]
            if pending:
                out = result.group("text")
                ok = result.group("ok") == "ok"
                pending[0].output = out if ok else json.dumps({"error": {"message": out}})
    return turns


def scenario_doc(
    heard: Sequence[_Turn],
    *,
    name: str,
    profile_ref: str,
    flow: Flow | None = None,
    source: str = "the trace",
) -> dict[str, Any]:
    """The scenario (as data) that replays the conversation's turns (:func:`read_turns`,
    :func:`read_log_turns`) and expects what happened."""
    rules: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    node = flow.start if flow is not None else None
    path = [node] if node is not None else []
    left_out = 0
    given: set[str] = set()  # secret words the caller gave: masked wherever they appear
    for n, t in enumerate(heard, start=1):
        if flow is not None and node is not None and flow.nodes[node].final:
            # the session ends with an end node's reply: a turn typed after it cannot be
            # replayed (a call may record one that raced the hang-up)
            left_out = len(heard) - n + 1
            break
        said = t.said or "(not transcribed)"
        hidden = _secrets_given(t, flow)
        if hidden:
            said = _hide_secret_words(said, hidden, given)
        turn: dict[str, Any] = {"user": said}
        expect: dict[str, Any] = {}
        rule: dict[str, Any] = {"turn": n}
        tools: list[dict[str, Any]] = []
        wanted: list[dict[str, Any]] = []
        mocks: dict[str, Any] = {}
        values: dict[str, Any] = {}
        for call in t.calls:
            args = _json(call.arguments)
            tools.append({"name": call.name, "arguments": _replayed(call.name, args, flow)})
            shown = _expected_args(call.name, args, flow)
            wanted.append({"name": call.name, "args": shown} if shown else {"name": call.name})
            answer = _json(call.output) if call.output is not None else None
            if call.name.startswith(RECORD_PREFIX):
                if isinstance(answer, Mapping) and answer.get("ok") is True:
                    values.update(shown)
                    step = answer.get("next_step")
                    if isinstance(step, str) and (flow is None or step in flow.nodes):
                        node = step
                        path.append(step)
            elif call.output is not None and call.name not in mocks:
                mocks[call.name] = _mock(answer if answer is not None else call.output)
        reply = " ".join(t.after)
        if tools:
            rule["tools"] = tools
            if reply:
                rule["then"] = reply
            if t.before:
                rule["say"] = " ".join(t.before)
        elif reply:
            rule["say"] = reply
        if len(rule) > 1:
            rules.append(rule)
        if mocks:
            turn["mocks"] = mocks
        if t.calls:
            expect["tools"] = wanted
        if reply:
            expect["reply_contains"] = " ".join(reply.split()[:REPLY_WORDS])
        if flow is not None and any(c.name.startswith(RECORD_PREFIX) for c in t.calls):
            expect["flow"] = {"node": node, **({"values": values} if values else {})}
        if expect:
            turn["expect"] = expect
        turns.append(turn)
    if not turns:
        raise ProfileError(
            [
                Problem(
                    source,
                    None,
                    None,
                    "error",
                    "the trace has no caller turn (nothing typed, no speech detected)",
                    hint="record a conversation in which the caller says something",
                )
            ]
        )
    if flow is not None and len(path) > 1:
        last = turns[-1].setdefault("expect", {})
        last["flow"] = {**last.get("flow", {}), "path": list(path)}
    doc: dict[str, Any] = {
        "scenario": name,
        "profile": profile_ref,
        "model": {"turns": rules} if rules else {},
        "turns": turns,
    }
    if not rules:
        del doc["model"]
    if left_out:
        note = (
            f"{left_out} caller turn(s) after the flow ended (at {node}) were left out: the "
            "session ends with an end node's reply."
        )
        doc = {"scenario": name, "description": note, **doc}
    masked: dict[str, Any] = _masked(doc, sorted(given, key=len, reverse=True))
    return masked


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _secret(name: str, flow: Flow | None) -> set[str]:
    node = flow.node_of_tool(name) if flow is not None else None
    return {v.name for v in node.collect if v.secret} if node is not None else set()


def _secrets_given(turn: _Turn, flow: Flow | None) -> set[str]:
    """The secret values a record call of this turn carried (masked in the trace)."""
    names: set[str] = set()
    for call in turn.calls:
        args = _json(call.arguments)
        if isinstance(args, Mapping):
            names |= {k for k in _secret(call.name, flow) if k in args}
    return names


def _hide_secret_words(said: str, names: set[str], found: set[str] | None = None) -> str:
    """The caller's words in a turn that gave a secret value: the trace masks the value in
    the record call, not in what the caller typed or said, so ``pin=2468`` and every run of
    three or more digits are masked here (and added to ``found``: the model may say them
    back, and is masked with them)."""
    seen = found if found is not None else set()
    for name in sorted(names):
        pattern = rf"\b({re.escape(name)})\s*([=:])\s*(\S+)"
        # a value of 3 characters or more: a shorter one would mask half the document
        seen.update(m.group(3) for m in re.finditer(pattern, said) if len(m.group(3)) >= 3)
        said = re.sub(pattern, rf"\1\2{MASK}", said)
    seen.update(m.group(0) for m in _DIGITS.finditer(said))
    return _DIGITS.sub(MASK, said)


def _replayed(name: str, args: Any, flow: Flow | None) -> Any:
    """The arguments the model script sends: as on the call, a masked secret replaced by a
    placeholder of its type (so the flow accepts it and moves on as it did)."""
    if not isinstance(args, Mapping):
        return args if isinstance(args, str) else "{}"
    secret = _secret(name, flow)
    node = flow.node_of_tool(name) if flow is not None else None
    samples = {v.name: v.sample() for v in node.collect} if node is not None else {}
    return {k: (samples.get(k, v) if k in secret and v == MASK else v) for k, v in args.items()}


def _expected_args(name: str, args: Any, flow: Flow | None) -> dict[str, Any]:
    """The arguments a scenario expects: all but secrets and masked values."""
    if not isinstance(args, Mapping):
        return {}
    secret = _secret(name, flow)
    return {k: v for k, v in args.items() if k not in secret and v != MASK}


def _mock(answer: Any) -> dict[str, Any]:
    if isinstance(answer, Mapping) and set(answer) == {"error"}:
        error = answer["error"]
        message = error.get("message") if isinstance(error, Mapping) else error
        return {"error": str(message or "the tool failed")}
    return {"output": answer}


def _masked(obj: Any, given: Sequence[str] = ()) -> Any:
    """Every string masked: secrets, phone numbers, and the secret words the caller gave
    (``given``, longest first: the model's replies and the tools' answers may repeat them)."""
    if isinstance(obj, Mapping):
        return {k: _masked(v, given) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_masked(v, given) for v in obj]
    if isinstance(obj, str):
        for word in given:
            obj = obj.replace(word, MASK)
        return mask_phone_numbers(redact(obj))
    return obj


def scenario_text(doc: Mapping[str, Any], source: str) -> str:
    """The scenario as YAML, with a header that says where it came from and what to edit."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors for people to edit
            return True

    header = (
        "# yaml-language-server: $schema=https://github.com/vlrun/vlrun/runner/schema/"
        "scenario.schema.json\n"
        f"# Made by `vlrun scenario` from {clean_line(source)}.\n"
        "# The caller's turns as they were typed or transcribed; the model block replays what\n"
        "# the model did; each turn's mocks answer the tools as they answered on the call.\n"
        "# Secrets and phone numbers are masked. Keep the expectations that matter, loosen the\n"
        "# rest, then: vlrun test FILE\n"
    )
    body = yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def profile_of_trace(trace: Path) -> Path | None:
    """The profile a `vlrun serve` conversation ran, from its conversation log beside the
    trace (``<id>.trace.jsonl`` and ``*_<id>_*_conversation.log``), when it names one that
    exists."""
    conv = trace.name.removesuffix(".trace.jsonl")
    if conv == trace.name:
        return None
    for log in sorted(trace.parent.glob(f"*_{conv}_*_conversation.log")):
        try:
            with log.open(encoding="utf-8", errors="replace") as f:
                head = f.read(4096)
        except OSError:
            continue
        m = _PROFILE_NOTE.search(head)
        if m:
            path = Path(m.group("path"))
            return path if path.is_file() else None
    return None


def _is_log(path: Path) -> bool:
    """A conversation log rather than a JSONL trace: its first line is not JSON."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
    except OSError:
        return False
    return bool(_LOG_LINE.match(first))


def _profile_in_log(lines: Sequence[str]) -> Path | None:
    for line in lines[:20]:
        m = _PROFILE_NOTE.search(line)
        if m:
            path = Path(m.group("path"))
            return path if path.is_file() else None
    return None


def _profile_name(lines: Sequence[str]) -> str | None:
    for line in lines[:20]:
        m = re.search(r"; profile (\S+)", line)
        if m:
            return m.group(1)
    return None


def scenario_from_trace(
    trace: Path,
    *,
    profile: Path | None = None,
    output: Path | None = None,
    name: str | None = None,
) -> str:
    """`vlrun scenario TRACE`: the scenario text; written to ``output`` when given."""
    if _is_log(trace):
        lines = trace.read_text(encoding="utf-8", errors="replace").splitlines()
        heard = read_log_turns(lines)
        found, named = profile or _profile_in_log(lines), _profile_name(lines)
    else:
        heard = read_turns(load_recording(trace))
        found, named = profile or profile_of_trace(trace), None
    if found is None:
        which = f" (it ran the profile {named!r})" if named else ""
        why = (
            "the log names no file"
            if _is_log(trace)
            else "no conversation log of serve's beside the trace names one"
        )
        raise ProfileError(
            [
                Problem(
                    str(trace),
                    None,
                    None,
                    "error",
                    f"cannot tell which profile file this conversation ran{which}: {why}",
                    hint="pass --profile PROFILE.yaml",
                )
            ]
        )
    from runner.config.load import load_profile

    loaded = load_profile(found)
    where = (output or Path("scenario.yaml")).resolve().parent
    ref = os.path.relpath(found.resolve(), where)
    doc = scenario_doc(
        heard,
        name=name or f"from the call {trace.name.removesuffix('.jsonl')}",
        profile_ref=ref,
        flow=loaded.flow,
        source=str(trace),
    )
    text = scenario_text(doc, trace.name)
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(
                f"cannot write {output}: {exc.strerror or exc}", hint="choose another -o"
            ) from None
    return text
