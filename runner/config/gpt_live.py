"""GPT-Live profiles: what `vlrun check` refuses and the `session.start` a profile compiles to.

The wire is docs/gpt-live.md (interface B, owned by the emulator helper): GPT-Live has its own
endpoint (``/openai/v1/live``, no query parameters) and events; a profile whose
``connection.model`` is ``gpt-live-1`` or ``gpt-live-1-mini`` compiles to one
``session.start``, never to a Voice Live ``session.update``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from runner.config.locator import Locator
from runner.config.voices import GPT_LIVE_VOICES
from runner.errors import Problem

#: docs/gpt-live.md "Connection": the WebSocket path (FHOW, FREF); GPT-Live takes no query.
PATH = "/openai/v1/live"
MODELS = ("gpt-live-1", "gpt-live-1-mini")  # source: gpt-live.md "Supported models"
#: docs/gpt-live.md "Startup": PCM16 at 16 or 24 kHz, or G.711 at 8 kHz; one format both ways
PCM_RATES = (16000, 24000)
G711 = {"g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}


def is_gpt_live(model: Any) -> bool:
    return isinstance(model, str) and model.lower().startswith("gpt-live")


def translation_sentence(translation: Mapping[str, Any]) -> str:
    """docs/gpt-live.md "Greeting, translation": no session field exists, so one sentence ends
    the instructions (the emulator recognises exactly this sentence)."""
    source = translation.get("source") or "any language"
    return (
        f"Translate everything the caller says from {source} into {translation['target']}, "
        "and speak only the translation."
    )


def delegation_kind(doc: Mapping[str, Any]) -> str:
    """``responses`` (a named deployment) or ``client`` (a Foundry agent, or nobody)."""
    delegation = (doc.get("gpt_live") or {}).get("delegation") or {}
    return "responses" if delegation.get("deployment") else "client"


def accepts_typed_turns(doc: Mapping[str, Any]) -> bool:
    """Typed caller turns exist only under Responses delegation (docs/gpt-live.md: a typed turn
    is `response.item.create`, which client delegation refuses)."""
    return delegation_kind(doc) == "responses"


#: (profile path, why GPT-Live refuses it, the fix); docs/gpt-live.md "Refused"
REFUSED: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("turn_detection",),
        "GPT-Live decides by itself when to answer (no turn detection)",
        "drop turn_detection",
    ),
    (
        ("audio", "noise_reduction"),
        "GPT-Live applies no separate noise-reduction stage",
        "drop audio.noise_reduction",
    ),
    (
        ("audio", "echo_cancellation"),
        "a GPT-Live session has no echo cancellation setting",
        "drop audio.echo_cancellation",
    ),
    (
        ("audio", "word_timestamps"),
        "GPT-Live transcripts carry their own timings",
        "drop audio.word_timestamps",
    ),
    (
        ("transcription",),
        "GPT-Live always sends both transcripts; there is nothing to set",
        "drop transcription",
    ),
    (("modalities",), "GPT-Live's output is voice only", "drop modalities"),
    (("temperature",), "a GPT-Live session has no temperature", "drop temperature"),
    (
        ("max_response_tokens",),
        "a GPT-Live session has no reply token cap",
        "drop max_response_tokens",
    ),
    (("avatar",), "GPT-Live has no avatar", "drop avatar"),
    (("animation",), "GPT-Live has no animation output", "drop animation"),
    (
        ("interim_response",),
        "GPT-Live has no interim responses (it backchannels itself)",
        "drop interim_response",
    ),
    (
        ("mcp_servers",),
        "GPT-Live cannot delegate to MCP servers (function and web_search only)",
        "drop mcp_servers, or give the backend a function tool",
    ),
    (
        ("file_search",),
        "GPT-Live cannot delegate to file_search (function and web_search only)",
        "drop file_search",
    ),
    (("metadata",), "a GPT-Live session has no metadata", "drop metadata"),
    (
        ("flow",),
        "a GPT-Live session's instructions cannot change, so flows cannot run on it",
        "drop flow, or use a gpt-realtime model",
    ),
    (
        ("connection", "api_version"),
        f"GPT-Live connects to {PATH}, which takes no api-version",
        "drop connection.api_version",
    ),
    (("connection", "query"), "GPT-Live takes no query parameters", "drop connection.query"),
    (
        ("connection", "preview"),
        "GPT-Live takes no VoiceLive-Features header",
        "drop connection.preview",
    ),
    (
        ("connection", "byom"),
        "GPT-Live takes no BYOM profile; delegate to your deployment",
        "use gpt_live.delegation.deployment",
    ),
    (
        ("connection", "agent"),
        "a GPT-Live session binds no agent; it delegates to one",
        "use gpt_live.delegation.agent: {name, project}",
    ),
)
#: settings that go to the Responses backend, so they need a delegation deployment
BACKEND = ("tools", "web_search", "tool_choice", "parallel_tool_calls", "reasoning_effort")


def refusals(doc: Mapping[str, Any], loc: Locator) -> Iterator[Problem]:
    """Every setting a GPT-Live profile cannot have, at its file:line with the fix."""
    for path, why, fix in REFUSED:
        node: Any = doc
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            yield loc.problem(path, f"{'.'.join(path)}: {why}", hint=fix, at_key=True)
    greeting = doc.get("greeting")
    if (
        greeting is True
        or isinstance(greeting, str)
        or (isinstance(greeting, Mapping) and "instructions" in greeting)
    ):
        yield loc.problem(
            ("greeting",),
            "a GPT-Live greeting is fixed words, spoken as a commentary; it takes no instructions",
            hint="greeting: {text: ...}",
            at_key=True,
        )
    yield from _voice(doc, loc)
    yield from _formats(doc, loc)
    yield from _delegation(doc, loc)


def _voice(doc: Mapping[str, Any], loc: Locator) -> Iterator[Problem]:
    voice = doc.get("voice")
    name = voice.get("name") if isinstance(voice, Mapping) else voice
    if voice is None:
        return
    if isinstance(voice, Mapping):
        for key in voice:
            if key not in ("name", "type") or (key == "type" and voice[key] != "openai"):
                yield loc.problem(
                    ("voice", key),
                    f"a GPT-Live voice is a built-in name only; `{key}` does not apply",
                    at_key=True,
                )
    if isinstance(name, str) and name not in GPT_LIVE_VOICES:
        from runner.config.suggest import suggest

        yield loc.problem(
            ("voice",),
            f"{name!r} is not a GPT-Live voice (Azure voices are not available)",
            hint=suggest(name, GPT_LIVE_VOICES) or "e.g. marin (the default), cedar, juni",
        )


def _format(fmt: str, rate: int | None) -> tuple[str, int]:
    if fmt in G711:
        return G711[fmt], 8000
    if fmt.startswith("pcm16_"):
        return "audio/pcm", int("".join(ch for ch in fmt if ch.isdigit())[2:] or 24000)
    return "audio/pcm", rate or 24000


def audio_format(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The session's one ``audio.format``, or None for the default PCM16 at 24 kHz."""
    audio = doc.get("audio") or {}
    kind, rate = _format(str(audio.get("input_format", "pcm16")), audio.get("input_sampling_rate"))
    if (kind, rate) == ("audio/pcm", 24000):
        return None
    return {"type": kind, "rate": rate}


def _formats(doc: Mapping[str, Any], loc: Locator) -> Iterator[Problem]:
    audio = doc.get("audio") or {}
    if not any(k in audio for k in ("input_format", "input_sampling_rate", "output_format")):
        return
    heard = _format(str(audio.get("input_format", "pcm16")), audio.get("input_sampling_rate"))
    said = _format(str(audio.get("output_format", "pcm16")), None)
    if "output_format" in audio and said != heard:
        yield loc.problem(
            ("audio", "output_format"),
            "a GPT-Live session has one audio format both ways; input and output differ",
            hint="give output_format the input's format and rate",
        )
    if heard[0] == "audio/pcm" and heard[1] not in PCM_RATES:
        yield loc.problem(
            ("audio", "input_sampling_rate"),
            f"GPT-Live takes PCM16 at 16000 or 24000 Hz, not {heard[1]}",
        )


def _delegation(doc: Mapping[str, Any], loc: Locator) -> Iterator[Problem]:
    delegation = (doc.get("gpt_live") or {}).get("delegation")
    base = ("gpt_live", "delegation")
    if isinstance(delegation, Mapping):
        if "deployment" in delegation and "agent" in delegation:
            yield loc.problem(
                base, "delegate to a deployment or to an agent, not both", at_key=True
            )
        if "instructions" in delegation and "deployment" not in delegation:
            yield loc.problem(
                (*base, "instructions"),
                "backend instructions go with a delegation deployment",
                at_key=True,
            )
    if delegation_kind(doc) == "responses":
        return
    for key in BACKEND:
        if doc.get(key) not in (None, False, []):
            yield loc.problem(
                (key,),
                f"{key} goes to GPT-Live's backend, and client delegation has none",
                hint="set gpt_live.delegation.deployment (a Responses deployment)",
                at_key=True,
            )


def greeting_event(text: str | None) -> dict[str, Any] | None:
    """The greeting as a session-wide commentary (docs/gpt-live.md: "information the model
    should say aloud, which it may paraphrase"); `vlrun check` allows only fixed text."""
    if not text:
        return None
    return {"type": "session.commentary.append", "delegation_id": None, "content": text}


def delegation_agent(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, project) of the Foundry agent that answers client delegations, if any."""
    agent = ((doc.get("gpt_live") or {}).get("delegation") or {}).get("agent")
    if isinstance(agent, Mapping) and agent.get("name") and agent.get("project"):
        return str(agent["name"]), str(agent["project"])
    return None


def start_session(
    doc: Mapping[str, Any], instructions: str | None, tools: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``session`` of ``session.start`` (docs/gpt-live.md "Startup"), in its order."""
    conn = doc.get("connection") or {}
    session: dict[str, Any] = {"model": conn.get("model")}
    settings = doc.get("gpt_live") or {}
    text = instructions or ""
    if isinstance(settings.get("translation"), Mapping):
        sentence = translation_sentence(settings["translation"])
        text = f"{text.rstrip()}\n\n{sentence}" if text.strip() else sentence
    if text:
        session["instructions"] = text
    audio: dict[str, Any] = {}
    fmt = audio_format(doc)
    if fmt is not None:
        audio["format"] = fmt
    voice = doc.get("voice")
    name = voice.get("name") if isinstance(voice, Mapping) else voice
    if isinstance(name, str):
        audio["output"] = {"voice": name}
    if audio:
        session["audio"] = audio
    delegation = settings.get("delegation") or {}
    if delegation.get("deployment"):
        backend: dict[str, Any] = {"model": delegation["deployment"]}
        if delegation.get("instructions"):
            backend["instructions"] = delegation["instructions"]
        if tools:
            backend["tools"] = tools
        choice = doc.get("tool_choice")
        if isinstance(choice, str):
            backend["tool_choice"] = (
                choice
                if choice in ("auto", "none", "required")
                else {"type": "function", "name": choice}
            )
        if "parallel_tool_calls" in doc:
            backend["parallel_tool_calls"] = doc["parallel_tool_calls"]
        if "reasoning_effort" in doc:
            backend["reasoning"] = {"effort": doc["reasoning_effort"]}
        session["delegation"] = {"type": "responses", "responses": backend}
    else:
        session["delegation"] = {"type": "client"}
    return session
