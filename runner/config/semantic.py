"""The semantic pass over a profile: what the schema says badly (combinations, per-voice-type
requirements, references between fields)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.config.locator import Locator
from runner.config.service import AZURE_SEMANTIC_VADS, realtime_model
from runner.config.source import PathKey
from runner.config.suggest import suggest
from runner.config.voices import NATIVE_VOICES as REALTIME_NATIVE_VOICES
from runner.config.voices import OPENAI_VOICES
from runner.errors import Problem

KNOWN_API_VERSIONS = (
    "2025-05-01-preview",
    "2025-10-01",
    "2026-01-01-preview",
    "2026-04-10",
    "2026-06-01-preview",
    "2026-07-15",
    "2026-07-31-preview",
    # source: azure-rest-api-specs VoiceLive/docs/versioning.md: the evergreen GA label
    "v1",
)
TOOL_CHOICE_WORDS = ("auto", "none", "required")


_VOICE_NEEDS = {
    "azure-custom": ("name", "endpoint_id"),
    "azure-personal": ("name", "model"),
    "avatar-voice-sync": ("model",),
    "azure-standard": ("name",),
    "openai": ("name",),
    "azure-realtime-native": ("name",),
}


def semantic_problems(doc: Mapping[str, Any], loc: Locator) -> list[Problem]:
    """Checks across fields; assumes ``doc`` already passed the schema."""
    out: list[Problem] = []
    conn = doc.get("connection") or {}
    agent = conn.get("agent")
    if isinstance(agent, Mapping):
        out += _agent(agent, conn, doc, loc)
    voice = doc.get("voice")
    if isinstance(voice, Mapping):
        out += _voice(voice, loc)
    td = doc.get("turn_detection")
    if isinstance(td, Mapping):
        out += _turn(td, loc)
    modalities = doc.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities and "text" not in modalities:
        out.append(
            loc.problem(
                ("modalities",),
                "audio output needs `text` in modalities too",
                hint="use [text, audio]",
            )
        )
    audio = doc.get("audio") or {}
    out += _audio(audio, loc)
    out += _service_combinations(doc, loc)
    tools = doc.get("tools") or []
    names = _unique(tools, "name", ("tools",), loc, out, what="tool")
    _unique(doc.get("mcp_servers") or [], "label", ("mcp_servers",), loc, out, what="MCP server")
    choice = doc.get("tool_choice")
    if isinstance(choice, str) and choice not in TOOL_CHOICE_WORDS and choice not in names:
        out.append(
            loc.problem(
                ("tool_choice",),
                f"tool_choice {choice!r} is neither auto, none, "
                "required nor a tool of this profile",
                hint=suggest(choice, [*TOOL_CHOICE_WORDS, *names]),
            )
        )
    interim = doc.get("interim_response")
    if isinstance(interim, Mapping):
        if interim.get("type") == "static" and not interim.get("texts"):
            out.append(
                loc.problem(("interim_response",), "a static interim response needs `texts`")
            )
        if interim.get("type") == "llm" and interim.get("texts"):
            out.append(
                loc.problem(
                    ("interim_response", "texts"),
                    "`texts` only applies to type static",
                    severity="warning",
                )
            )
    version = conn.get("api_version")
    if isinstance(version, str) and version not in KNOWN_API_VERSIONS:
        out.append(
            loc.problem(
                ("connection", "api_version"),
                f"unknown api_version {version!r}",
                hint=suggest(version, KNOWN_API_VERSIONS)
                or f"known versions: {', '.join(KNOWN_API_VERSIONS)}",
            )
        )
    return out


def _agent(
    agent: Mapping[str, Any], conn: Mapping[str, Any], doc: Mapping[str, Any], loc: Locator
) -> list[Problem]:
    out = []
    base = ("connection", "agent")
    current = "name" in agent
    legacy = "id" in agent
    if current and legacy:
        out.append(
            loc.problem(
                base,
                "an agent binding has either `name` (current Foundry agents) or "
                "`id` (classic agents), not both",
            )
        )
    elif not current and not legacy:
        out.append(
            loc.problem(
                base,
                "an agent binding needs `name` and `project` (current) or `id` "
                "and `project`/`connection_string` (classic)",
            )
        )
    elif current:
        if "project" not in agent:
            out.append(loc.problem(base, "agent `name` needs `project` too"))
        if "connection_string" in agent:
            out.append(
                loc.problem(
                    (*base, "connection_string"),
                    "`connection_string` belongs to classic agents (`id`)",
                )
            )
    else:
        if ("project" in agent) == ("connection_string" in agent):
            out.append(
                loc.problem(
                    base,
                    "a classic agent (`id`) needs exactly one of `project` or `connection_string`",
                )
            )
        for key in ("version", "conversation_id"):
            if key in agent:
                out.append(loc.problem((*base, key), f"`{key}` belongs to current agents (`name`)"))
    if doc.get("instructions") is not None:
        out.append(
            loc.problem(
                ("instructions",),
                "instructions cannot be set when an agent is bound (the agent has its own)",
                hint="remove `instructions` or the agent",
            )
        )
    return out


def _voice(voice: Mapping[str, Any], loc: Locator) -> list[Problem]:
    out = []
    vtype = voice.get("type") or (
        "openai" if voice.get("name") in OPENAI_VOICES else "azure-standard"
    )
    for key in _VOICE_NEEDS.get(vtype, ()):
        if not voice.get(key):
            out.append(
                loc.problem(("voice",), f"a voice of type {vtype} needs `{key}`", at_key=True)
            )
    name = voice.get("name")
    if vtype == "openai" and isinstance(name, str) and name not in OPENAI_VOICES:
        out.append(
            loc.problem(
                ("voice", "name"),
                f"{name!r} is not an OpenAI voice",
                hint=suggest(name, OPENAI_VOICES) or f"OpenAI voices: {', '.join(OPENAI_VOICES)}",
            )
        )
    if (
        vtype == "azure-realtime-native"
        and isinstance(name, str)
        and name not in REALTIME_NATIVE_VOICES
    ):
        out.append(
            loc.problem(
                ("voice", "name"),
                f"{name!r} is not an azure-realtime-native voice",
                hint=suggest(name, REALTIME_NATIVE_VOICES),
            )
        )
    if vtype == "openai":
        for key in voice:
            if key not in ("type", "name"):
                out.append(
                    loc.problem(
                        ("voice", key),
                        f"`{key}` applies to Azure voices, not OpenAI voices",
                        at_key=True,
                    )
                )
    if vtype != "azure-custom" and "endpoint_id" in voice:
        out.append(
            loc.problem(
                ("voice", "endpoint_id"),
                "`endpoint_id` only applies to azure-custom voices",
                at_key=True,
            )
        )
    return out


def _turn(td: Mapping[str, Any], loc: Locator) -> list[Problem]:
    out = []
    ttype = td.get("type")
    base = ("turn_detection",)
    if ttype == "manual":
        extra = [k for k in td if k != "type"]
        for key in extra:
            out.append(
                loc.problem(
                    (*base, key),
                    "manual turns have no detector settings",
                    at_key=True,
                    severity="warning",
                )
            )
        return out
    if ttype == "semantic_vad":
        allowed = {"type", "eagerness", "create_response", "interrupt_response"}
        for key in td:
            if key not in allowed:
                out.append(
                    loc.problem(
                        (*base, key), f"`{key}` does not apply to semantic_vad", at_key=True
                    )
                )
        return out
    if "eagerness" in td:
        out.append(
            loc.problem(
                (*base, "eagerness"), "`eagerness` only applies to semantic_vad", at_key=True
            )
        )
    if ttype not in AZURE_SEMANTIC_VADS and "remove_filler_words" in td:
        out.append(
            loc.problem(
                (*base, "remove_filler_words"),
                "`remove_filler_words` needs an azure_semantic_vad* detector",
                at_key=True,
            )
        )
    if ttype in ("server_vad", "azure_semantic_vad_en") and "languages" in td:
        out.append(
            loc.problem((*base, "languages"), f"`languages` does not apply to {ttype}", at_key=True)
        )
    if td.get("auto_truncate") and td.get("interrupt_response") is False:
        out.append(
            loc.problem(
                (*base, "auto_truncate"),
                "auto_truncate needs interrupt_response",
                severity="warning",
            )
        )
    eou = td.get("end_of_utterance_detection")
    if isinstance(eou, Mapping):
        p = (*base, "end_of_utterance_detection")
        if "threshold" in eou and "threshold_level" in eou:
            out.append(
                loc.problem(
                    p,
                    "give `threshold_level` (current) or `threshold` "
                    "(2025-05-01-preview), not both",
                )
            )
        if "timeout" in eou and "timeout_ms" in eou:
            out.append(loc.problem(p, "give `timeout_ms` or `timeout` (seconds), not both"))
    return out


def _audio(audio: Mapping[str, Any], loc: Locator) -> list[Problem]:
    out = []
    fmt = audio.get("input_format")
    rate = audio.get("input_sampling_rate")
    if isinstance(fmt, str) and fmt.startswith("g711") and rate not in (None, 8000):
        out.append(loc.problem(("audio", "input_sampling_rate"), f"{fmt} audio is always 8000 Hz"))
    ec = audio.get("echo_cancellation")
    if isinstance(ec, Mapping):
        src = ec.get("reference_source", "server")
        ch = ec.get("channels", 2 if src == "client" else 1)
        if src == "server" and ch != 1:
            out.append(
                loc.problem(
                    ("audio", "echo_cancellation", "channels"),
                    "server echo cancellation uses 1 channel",
                    hint="set reference_source: client for a stereo reference",
                )
            )
        if src == "client" and ch != 2:
            out.append(
                loc.problem(
                    ("audio", "echo_cancellation", "channels"),
                    "a client reference needs 2 channels (mic + speaker)",
                )
            )
    if (
        ec == "client" or (isinstance(ec, Mapping) and ec.get("reference_source") == "client")
    ) and fmt not in (None, "pcm16"):
        out.append(
            loc.problem(("audio", "input_format"), "a client echo reference needs pcm16 input")
        )
    return out


def _service_combinations(doc: Mapping[str, Any], loc: Locator) -> list[Problem]:
    """Pairs of settings the service refuses together (the emulator refuses them too; see
    docs/emulator.md#azure-speech-vad and #ec-text-only)."""
    out: list[Problem] = []
    conn = doc.get("connection") or {}
    td = doc.get("turn_detection")
    td_type = td.get("type") if isinstance(td, Mapping) else td
    transcription = doc.get("transcription")
    model = conn.get("model")
    speech_to_speech = model is None or realtime_model(model)  # None: the default, gpt-realtime
    if (
        isinstance(transcription, Mapping)
        and transcription.get("model") == "azure-speech"
        and isinstance(td_type, str)
        and td_type not in (*AZURE_SEMANTIC_VADS, "manual")
        and speech_to_speech
        and not conn.get("agent")
    ):
        on = f"model {model}" if model else "the default model (gpt-realtime)"
        out.append(
            loc.problem(
                ("turn_detection",),
                f"azure-speech transcription needs azure_semantic_vad or "
                f"azure_semantic_vad_multilingual turn detection on {on}, not {td_type}",
                hint="change turn_detection, or transcribe with whisper-1 or gpt-4o-transcribe",
                severity="error" if model else "warning",
            )
        )
    ec = (doc.get("audio") or {}).get("echo_cancellation")
    modalities = doc.get("modalities")
    text_only = isinstance(modalities, list) and "audio" not in modalities
    if ec not in (None, False, "off") and text_only:
        out.append(
            loc.problem(
                ("audio", "echo_cancellation"),
                "echo cancellation needs audio output: modalities has no `audio`",
                hint="remove echo_cancellation, or add audio to modalities",
            )
        )
    return out


def _unique(
    items: list[Any], key: str, base: PathKey, loc: Locator, out: list[Problem], *, what: str
) -> list[str]:
    names: list[str] = []
    for i, item in enumerate(items):
        name = (
            item if isinstance(item, str) else item.get(key) if isinstance(item, Mapping) else None
        )
        if not isinstance(name, str):
            continue
        if name in names:
            out.append(loc.problem((*base, i), f"{what} {name!r} is listed twice"))
        names.append(name)
    return names
