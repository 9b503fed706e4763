"""The scripted model: what the emulator says and which tools it calls, turn by turn.

A script (YAML or an already-parsed dict) lists rules; the first rule that matches a user turn
decides the reply. With no script, or no matching rule, built-in behaviour keeps things
predictable: echo text turns, describe audio turns by duration, call a declared tool whose
name or description shares words with a text turn, then report the tool's output.
Every built-in reply starts with "[emulator]" so nobody mistakes it for a model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from runner.config.patterns import PatternError, compile_pattern
from runner.errors import Problem, ProfileError


class ScriptError(ProfileError):
    """A model script failed to load or validate; every problem carries file:line."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as it goes on the wire


@dataclass(frozen=True)
class Rule:
    line: int | None
    turn: int | None = None
    match: Any = None  # an RE2 pattern (runner.config.patterns), case-insensitive
    transcript: str | None = None
    say: str | None = None
    tools: tuple[ToolCall, ...] = ()
    then: str | None = None
    error: Mapping[str, Any] | None = None
    delay_ms: int = 0
    mcp: Mapping[str, Any] | None = None
    warning: Mapping[str, Any] | None = None  # a `warning` event at the response's start
    transcription_failed: Mapping[str, Any] | None = None  # for audio turn `turn`


@dataclass(frozen=True)
class Script:
    source: str
    rules: tuple[Rule, ...] = ()
    greeting: str | None = None
    fallback: str | None = None
    mcp_tools: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    mcp_latency_ms: float | None = None  # one MCP network step at speed 1


# --- loading ------------------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    text = (
        resources.files("runner.config.schema")
        .joinpath("model-script.schema.json")
        .read_text("utf-8")
    )
    return json.loads(text)  # type: ignore[no-any-return]


def _line_of(node: yaml.Node | None, path: list[Any]) -> int | None:
    """1-based line of the YAML node at a JSON path (deepest node that exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def load_script(source: str | Path | Mapping[str, Any], *, origin: str | None = None) -> Script:
    """Load and check a model script from a YAML/JSON file or an already-parsed mapping.

    ``origin`` names the file a mapping came from (a scenario embedding it under ``model:``),
    so problems still point somewhere useful. Raises :class:`ScriptError`.
    """
    node: yaml.Node | None = None
    data: Any
    if isinstance(source, Mapping):
        name, data = origin or "<model script>", dict(source)
    else:
        path = Path(source)
        name = str(path)
        from runner.config import source as bounded

        try:
            # Bounded like a profile: regular files only, size-capped, aliases counted
            # after expansion (a script arrives from scenario files in other people's PRs).
            text = bounded.read_text(path, display=name)
            node = yaml.compose(text, Loader=yaml.SafeLoader)  # linear: positions only
            data = bounded.load(text, name).data if node is not None else None
        except ProfileError as exc:
            raise ScriptError(exc.all_problems) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ScriptError(
                [
                    Problem(
                        name,
                        mark.line + 1 if mark else None,
                        mark.column + 1 if mark else None,
                        "error",
                        f"not valid YAML: {getattr(exc, 'problem', exc)}",
                    )
                ]
            ) from None
        if data is None:
            data = {}
    import jsonschema

    problems: list[Problem] = []
    validator = jsonschema.Draft202012Validator(_schema())
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path_parts = list(err.absolute_path)
        json_path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path_parts)
        problems.append(
            Problem(
                name,
                _line_of(node, path_parts),
                None,
                "error",
                err.message,
                json_path,
                hint="see docs/emulator.md, 'Script format'",
            )
        )
    if problems:
        raise ScriptError(problems)
    rules = []
    for i, raw in enumerate(data.get("turns") or []):
        line = _line_of(node, ["turns", i]) if node is not None else None
        pattern = None
        if raw.get("match") is not None:
            try:
                pattern = compile_pattern(raw["match"])  # RE2: linear time, no ReDoS
            except PatternError as exc:
                problems.append(
                    Problem(
                        name,
                        _line_of(node, ["turns", i, "match"]),
                        None,
                        "error",
                        f"bad regular expression {raw['match']!r}: {exc}",
                        f"$.turns[{i}].match",
                    )
                )
                continue
        calls = tuple(
            ToolCall(
                c["name"],
                c["arguments"]
                if isinstance(c.get("arguments"), str)
                else json.dumps(c.get("arguments") or {}),
            )
            for c in raw.get("tools") or []
        )
        rules.append(
            Rule(
                line=line,
                turn=raw.get("turn"),
                match=pattern,
                transcript=raw.get("transcript"),
                say=raw.get("say"),
                tools=calls,
                then=raw.get("then"),
                error=raw.get("error"),
                delay_ms=int(raw.get("delay_ms") or 0),
                mcp=raw.get("mcp"),
                warning=_event_detail(raw.get("warning"), code="emulator_warning"),
                transcription_failed=_event_detail(raw.get("transcription_failed")),
            )
        )
    if problems:
        raise ScriptError(problems)
    return Script(
        source=name,
        rules=tuple(rules),
        greeting=data.get("greeting"),
        fallback=data.get("fallback"),
        mcp_tools=data.get("mcp_tools") or {},
        mcp_latency_ms=data.get("mcp_latency_ms"),
    )


# --- templates ----------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*(?:\.\w+)*)\}")


def render(template: str, context: Mapping[str, Any]) -> str:
    """Replace ``{name}`` / ``{name.field.0}`` from ``context``; nothing else is evaluated.

    Strings that hold JSON (tool outputs) are looked into as JSON. Unknown names stay as
    written, so a typo shows up in the reply instead of vanishing.
    """

    def one(m: re.Match[str]) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        value: Any = context
        for part in m.group(1).split("."):
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    return m.group(0)
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return m.group(0)
        return value if isinstance(value, str) else json.dumps(value)

    return _PLACEHOLDER.sub(one, template)


# --- decisions ----------------------------------------------------------------------------------


@dataclass
class Plan:
    """What one response does, in order: optional error, delay, speech, then tool calls."""

    say: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    error: Mapping[str, Any] | None = None
    delay_ms: int = 0
    mcp: Mapping[str, Any] | None = None
    warning: Mapping[str, Any] | None = None
    #: a built-in search the service runs itself: {"type": web_search|file_search, "query"}
    search: Mapping[str, Any] | None = None


@dataclass
class _Pending:
    rule: Rule | None
    queue: list[ToolCall]
    outputs: list[dict[str, Any]]
    text: str


_STOP = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "do",
        "does",
        "for",
        "from",
        "get",
        "give",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "please",
        "set",
        "show",
        "tell",
        "that",
        "the",
        "this",
        "to",
        "tool",
        "use",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "current",
        "info",
        "data",
        "value",
        "function",
        "lookup",
        "look",
        "find",
        "fetch",
        "make",
        "about",
        "some",
        "any",
        "there",
        "their",
        "them",
        "then",
        "than",
        "into",
        "out",
        "up",
    )
)


def _words(text: str) -> set[str]:
    out = set()
    for w in re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower()):
        if w not in _STOP and len(w) > 1:
            out.add(w[:-1] if w.endswith("s") and len(w) > 3 else w)
    return out


_PAIR = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]{0,63})\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s,;]+)")


def named_values(text: str) -> dict[str, str]:
    """``name=value`` pairs written in a turn (quotes allowed around a value with spaces)."""
    return {m.group(1): m.group(2).strip("\"'") for m in _PAIR.finditer(text)}


def match_tool(text: str, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The declared function tool sharing most words with ``text`` (name words count double);
    ``name=value`` pairs naming a tool's parameters count three times each."""
    said = _words(text)
    pairs = named_values(text)
    best, best_score = None, 0
    for tool in tools:
        if tool.get("type") != "function" or not tool.get("name"):
            continue
        props = (tool.get("parameters") or {}).get("properties") or {}
        score = 3 * len(pairs.keys() & set(props))
        score += 2 * len(said & _words(tool["name"].replace("_", " ").replace("-", " ")))
        score += len(said & {w for w in _words(tool.get("description") or "") if len(w) > 3})
        if score > best_score:
            best, best_score = tool, score
    return best


#: the words that make a turn call a declared built-in search (docs/emulator.md#builtin-search)
SEARCH_WORDS = {
    "file_search": {"file", "document", "doc", "pdf", "manual", "policy"},
    "web_search": {"web", "online", "internet", "news", "search", "latest"},
}
SEARCH_TOOLS = tuple(SEARCH_WORDS)


def match_search(text: str, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A declared built-in search the turn asks for: file_search when it names a file or a
    document, else web_search when it says web, online, internet, news, search or latest."""
    said = _words(text)
    declared = {t.get("type") for t in tools}
    for kind in SEARCH_TOOLS:  # file words first: "search the manual" is a file search
        if kind in declared and said & SEARCH_WORDS[kind]:
            return {"type": kind, "query": text.strip()}
    return None


def guess_arguments(text: str, tool: Mapping[str, Any]) -> dict[str, Any]:
    """Schema-valid arguments for simple parameters, taken naively from the sentence."""
    params = tool.get("parameters") or {}
    props: Mapping[str, Any] = params.get("properties") or {}
    wanted = list(params.get("required") or [])
    if not wanted:
        wanted = [
            n for n, p in props.items() if isinstance(p, Mapping) and p.get("type") == "string"
        ][:1]
    phrase = re.search(
        r"\b(?:in|for|at|about|of|to|called|named)\s+([^?.!,;]+)", text, re.IGNORECASE
    )
    rest = phrase.group(1).strip() if phrase else text.strip().rstrip("?.!")
    number = re.search(r"-?\d+(?:\.\d+)?", text)
    args: dict[str, Any] = {}
    pairs = named_values(text)
    for name, raw in pairs.items():  # `party_size=4`: said exactly, typed by the schema
        named = props.get(name)
        if isinstance(named, Mapping):
            args[name] = _typed(raw, str(named.get("type", "string")))
    if pairs.keys() & set(props):
        return args  # the turn named its values: nothing is guessed (a missing one stays out)
    for name in wanted:
        found = props.get(name)
        spec: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        kind = spec.get("type", "string")
        if "enum" in spec and spec["enum"]:
            args[name] = next(
                (v for v in spec["enum"] if str(v).lower() in text.lower()), spec["enum"][0]
            )
        elif kind == "string":
            args[name] = rest or text
        elif kind in ("integer", "number"):
            args[name] = _number_within(number.group(0) if number else None, spec, kind)
        elif kind == "boolean":
            args[name] = False
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = rest
    return args


def _typed(raw: str, kind: str) -> Any:
    """A written value as the schema's type (left a string when it does not read as one, so
    the client's validation sees what was said)."""
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            value = float(raw)
            return value if math.isfinite(value) else raw
    except ValueError:
        return raw
    if kind == "boolean" and raw.lower() in ("true", "false", "yes", "no"):
        return raw.lower() in ("true", "yes")
    return raw


def _number_within(raw: str | None, spec: Mapping[str, Any], kind: str) -> int | float:
    """A number from the sentence, clamped into the schema's minimum/maximum."""
    try:
        value = float(raw) if raw is not None else 0.0
    except ValueError:
        value = 0.0
    if not math.isfinite(value):
        value = 0.0
    lo, hi = spec.get("minimum"), spec.get("maximum")
    if isinstance(lo, int | float):
        value = max(value, lo)
    if isinstance(hi, int | float):
        value = min(value, hi)
    if kind == "integer":
        whole = math.ceil(value) if isinstance(lo, int | float) and value == lo else round(value)
        return int(min(whole, hi)) if isinstance(hi, int | float) else int(whole)
    return value


class ScriptedModel:
    """Per-connection decision maker; holds the progress of a turn that is waiting on tools."""

    def __init__(self, script: Script | None) -> None:
        self.script = script
        self._pending: _Pending | None = None

    @property
    def waiting_for_tools(self) -> bool:
        return self._pending is not None

    def transcription_failure(self, turn: int) -> Mapping[str, Any] | None:
        """The scripted ``transcription_failed`` of audio turn ``turn``, if any."""
        for rule in self.script.rules if self.script else ():
            if rule.turn == turn and rule.transcription_failed is not None:
                return rule.transcription_failed
        return None

    def audio_transcript(self, turn: int) -> str | None:
        """What the user 'said' in audio turn ``turn``, from the script's ``transcript``."""
        for rule in self.script.rules if self.script else ():
            if rule.turn == turn and rule.transcript is not None:
                return rule.transcript
        return None

    def _find(self, turn: int, text: str) -> Rule | None:
        for rule in self.script.rules if self.script else ():
            if rule.turn is not None and rule.turn != turn:
                continue
            if rule.match is not None and not rule.match.search(text):
                continue
            return rule
        return None

    def plan_turn(
        self,
        turn: int,
        text: str | None,
        audio_ms: int | None,
        session: Mapping[str, Any],
        images: list[str] | None = None,
    ) -> Plan:
        """Reply to user turn ``turn`` (0 = a response requested with no new user input);
        ``images`` describe the turn's images (what arrived, never what they show)."""
        self._pending = None
        said = text or ""
        rule = self._find(turn, said)
        seen = "; ".join(images or [])
        context = {"text": said, "turn": turn, "image": seen}
        if rule is not None:
            plan = Plan(
                error=rule.error, delay_ms=rule.delay_ms, mcp=rule.mcp, warning=rule.warning
            )
            plan.say = render(rule.say, context) if rule.say is not None else None
            declared = {t.get("type") for t in session.get("tools") or [] if isinstance(t, dict)}
            calls = []
            for call in rule.tools:
                if call.name in SEARCH_TOOLS and call.name in declared:
                    # a scripted built-in search: the service runs it, not the client
                    query = _query(call.arguments) or said
                    plan.search = {"type": call.name, "query": query}
                else:
                    calls.append(call)
            if calls:
                plan.calls = self._start_calls(rule, calls, said, session)
            return plan
        if turn == 0 and text is None:
            greeting = self.script.greeting if self.script else None
            return Plan(
                say=greeting
                or "[emulator] Hello from the local Voice Live emulator. "
                "Replies are scripted, not generated by a model."
            )
        if images:
            # source: docs/emulator.md#input-image: it says what it received, never what the
            # picture shows (nothing here can see)
            heard = f" You said: {said}" if said else ""
            return Plan(say=f"[emulator] I received {seen} and cannot see it.{heard}")
        if text is None:
            seconds = (audio_ms or 0) / 1000
            return Plan(say=f"[emulator] I heard {seconds:.1f} seconds of audio.")
        tools = [t for t in session.get("tools") or [] if isinstance(t, dict)]
        choice = session.get("tool_choice", "auto")
        tool = None
        if choice != "none":
            if isinstance(choice, Mapping):
                tool = next((t for t in tools if t.get("name") == choice.get("name")), None)
            else:
                tool = match_tool(said, tools)
                if tool is None and choice == "required":
                    tool = next((t for t in tools if t.get("type") == "function"), None)
        if tool is not None:
            call = ToolCall(tool["name"], json.dumps(guess_arguments(said, tool)))
            return Plan(calls=self._start_calls(None, [call], said, session))
        mcp = self._match_mcp(said, tools)
        if mcp is not None:
            return Plan(mcp=mcp)
        search = match_search(said, tools) if choice != "none" else None
        if search is not None:
            return Plan(search=search)
        fallback = self.script.fallback if self.script else None
        return Plan(say=render(fallback, context) if fallback else f"[emulator] You said: {said}")

    def _start_calls(
        self, rule: Rule | None, calls: list[ToolCall], text: str, session: Mapping[str, Any]
    ) -> list[ToolCall]:
        parallel = session.get("parallel_tool_calls", True) is not False
        now, later = (calls, []) if parallel else (calls[:1], calls[1:])
        self._pending = _Pending(rule, later, [], text)
        return now

    def plan_followup(self, outputs: list[dict[str, Any]]) -> Plan:
        """Continue a turn after the client returned tool outputs (name, call_id, output)."""
        pending = self._pending
        assert pending is not None
        pending.outputs.extend(outputs)
        if pending.queue:  # sequential calls when parallel_tool_calls is false
            return Plan(calls=[pending.queue.pop(0)])
        self._pending = None
        outs = pending.outputs
        context = {
            "text": pending.text,
            "output": outs[-1]["output"] if outs else "",
            "outputs": [o["output"] for o in outs],
            "tool": outs[-1]["name"] if outs else "",
        }
        if pending.rule is not None and pending.rule.then is not None:
            return Plan(say=render(pending.rule.then, context))
        said = "; ".join(f"{o['name']} returned {spoken(o['output'])}" for o in outs)
        return Plan(say=f"[emulator] {said}")

    def _match_mcp(self, text: str, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
        said = _words(text)
        for tool in tools:
            if tool.get("type") != "mcp":
                continue
            label = tool.get("server_label", "")
            listed = self.mcp_tool_list(tool)
            hit = next((t for t in listed if said & _words(t["name"].replace("_", " "))), None)
            if hit is None and said & _words(label.replace("_", " ").replace("-", " ")):
                hit = listed[0] if listed else None
            if hit is not None:
                args = guess_arguments(text, {"parameters": hit.get("input_schema") or {}})
                return {"server_label": label, "name": hit["name"], "arguments": args}
        return None

    def mcp_tool_list(self, tool: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Tools an MCP server 'offers': from the script, else one echo tool per allowed name."""
        label = tool.get("server_label", "")
        scripted = self.script.mcp_tools.get(label) if self.script else None
        if scripted:
            return [dict(t) for t in scripted]
        names = tool.get("allowed_tools") or [f"{label}_echo"]
        return [
            {
                "name": n,
                "description": f"[emulator] stand-in for {label}/{n}",
                "input_schema": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}},
                    "required": ["query"],
                },
            }
            for n in names
        ]


def _query(arguments: str) -> str | None:
    """The ``query`` a scripted search names in its arguments (a JSON text), if any."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    query = value.get("query") if isinstance(value, Mapping) else None
    return str(query) if query else None


def spoken(output: Any) -> str:
    """A tool result as a voice would say it: plain words, never braces or JSON escapes.

    A result is usually a JSON text (``{"unit": "\\u00b0C"}``); an object becomes
    ``key value, key value`` (``wind_kmh`` -> ``wind kmh``), a list its items, anything that is
    not JSON stays as it is.
    """
    value = output
    if isinstance(output, str):
        try:
            value = json.loads(output)
        except ValueError:
            return output
    return _words_of(value)


def _words_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(
            f"{str(k).replace('_', ' ')} {_words_of(v)}".strip() for k, v in value.items()
        )
    if isinstance(value, list):
        return ", ".join(_words_of(v) for v in value)
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _event_detail(value: Any, **defaults: str) -> Mapping[str, Any] | None:
    """A script's `warning:` / `transcription_failed:`: a message, or {message, code, ...}."""
    if value is None:
        return None
    if isinstance(value, str):
        return {**defaults, "message": value}
    return dict(value)
