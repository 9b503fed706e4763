"""Pure compile: a validated Profile -> the exact ``session.update`` event, api-version aware.

Only what the profile sets is sent (the service's defaults stay the service's), in one fixed
key order so compiled payloads can be committed as golden files. Nothing here imports the
SDK: its default api-version and session fields are kept as data, checked by tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from runner.config.capabilities import capability_problems, family
from runner.config.load import voice_type
from runner.config.service import CREDENTIAL_QUERY, V1, features_header, to_v1
from runner.config.source import PathKey
from runner.config.types import Greeting, Profile
from runner.config.validate import KNOWN_API_VERSIONS, suggest
from runner.errors import Problem, ProfileError

#: First element of a compile-trace source that names a plugin's file:line, not a profile path.
PLUGIN_ORIGIN = "@plugin"

#: azure-ai-voicelive 1.3.1's default api-version (tests compare it with the SDK).
DEFAULT_API_VERSION = "2026-07-15"
LEGACY_API_VERSION = "2025-05-01-preview"

#: Fields of the SDK's RequestSession (tests compare this with the SDK model).
SDK_SESSION_KEYS = frozenset(
    {
        "animation",
        "avatar",
        "include",
        "input_audio_echo_cancellation",
        "input_audio_format",
        "input_audio_noise_reduction",
        "input_audio_sampling_rate",
        "input_audio_transcription",
        "instructions",
        "interim_response",
        "max_response_output_tokens",
        "metadata",
        "modalities",
        "model",
        "output_audio_format",
        "output_audio_timestamp_types",
        "parallel_tool_calls",
        "reasoning_effort",
        "temperature",
        "tool_choice",
        "tools",
        "turn_detection",
        "voice",
    }
)

#: First api-version that supports a feature (evidence: docs/profiles.md "API versions").
MIN_VERSION = {
    # source: REF 2026-06-01-preview "What's new" lists the voice type as added on top of
    # 2026-04-10; the SDKs first model it in the releases defaulting to that version.
    "azure-realtime-native": "2026-06-01-preview",
    "mcp": "2026-04-10",
    "client_echo_reference": "2026-06-01-preview",
    "parallel_tool_calls": "2026-06-01-preview",
    # source: azure-ai-voicelive 1.2.0 ("Web Search & File Search"), the release for GA
    # 2026-04-10, whose reference first lists the web/file search call items and events.
    "builtin_search": "2026-04-10",
    # source: REF 2026-06-01-preview "What's new" ("Hosted agent invocation events"); the SDK's
    # invoke_input came with 1.3.0b1, whose default version that is.
    "invoke_input": "2026-06-01-preview",
}

_VOICE_KEYS = (
    "name",
    "type",
    "endpoint_id",
    "model",
    "temperature",
    "rate",
    "pitch",
    "volume",
    "style",
    "locale",
    "prefer_locales",
    "custom_lexicon_url",
    "custom_text_normalization_url",
)
_TURN_KEYS = (
    "type",
    "threshold",
    "prefix_padding_ms",
    "silence_duration_ms",
    "speech_duration_ms",
    "remove_filler_words",
    "languages",
    "eagerness",
    "create_response",
    "interrupt_response",
    "auto_truncate",
    "end_of_utterance_detection",
)
_INTERIM_TYPES = {"static": "static_interim_response", "llm": "llm_interim_response"}


def _date(version: str) -> str:
    return version[:10]


def supports(api_version: str, feature: str) -> bool:
    # v1 is the rolling GA label: it has every feature a dated version gained (versioning.md
    # section 6: "v1 has no removals vs 2026-04-10"); what its shape cannot say is to_v1's job.
    return api_version == V1 or _date(api_version) >= _date(MIN_VERSION[feature])


def thaw(value: Any) -> Any:
    """Read-only profile data -> plain JSON-able data."""
    if isinstance(value, Mapping | MappingProxyType):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


class _Out:
    """The session being built, plus where each field came from (for `vlrun explain`)."""

    def __init__(self, profile: Profile) -> None:
        self.session: dict[str, Any] = {}
        self.trace: dict[PathKey, PathKey] = {}
        self.problems: list[Problem] = []
        self.loc = profile.locator()

    def set(self, key: str, value: Any, source: PathKey) -> None:
        self.session[key] = value
        self.trace[(key,)] = source

    def problem(
        self,
        path: PathKey,
        message: str,
        *,
        hint: str | None = None,
        severity: str = "error",
        at_key: bool = False,
    ) -> None:
        self.problems.append(
            self.loc.problem(path, message, hint=hint, severity=severity, at_key=at_key)
        )


def compile_session(
    profile: Profile,
    *,
    api_version: str | None = None,
    tool_schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``{"type": "session.update", "session": {...}}`` event; ProfileError when the target
    api-version cannot express the profile."""
    payload, problems, _ = compile_with_problems(
        profile, api_version=api_version, tool_schemas=tool_schemas
    )
    if any(p.severity == "error" for p in problems):
        raise ProfileError(problems)
    return payload


def _is_gpt_live(profile: Profile) -> bool:
    # the catalog's family, as the capability matrix decides (gpt_live.is_gpt_live's answer):
    # runner.config.gpt_live is imported only for a GPT-Live profile
    return family(profile.connection.model) == "gpt-live"


def effective_api_version(profile: Profile, api_version: str | None = None) -> str:
    return api_version or profile.connection.api_version or DEFAULT_API_VERSION


def compile_with_problems(
    profile: Profile,
    *,
    api_version: str | None = None,
    tool_schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[Problem], dict[PathKey, PathKey]]:
    """Compile and return (payload, problems, trace: session path -> profile path)."""
    version = effective_api_version(profile, api_version)
    out = _Out(profile)
    if _is_gpt_live(profile):
        if api_version:
            out.problem(
                ("connection", "model"),
                f"GPT-Live takes no api-version: --api-version {api_version} is not used",
                severity="warning",
            )
        return _gpt_live(out, profile, tool_schemas)
    if version not in KNOWN_API_VERSIONS:
        out.problem(
            ("connection", "api_version"),
            f"unknown api_version {version!r}",
            hint=suggest(version, KNOWN_API_VERSIONS)
            or f"known versions: {', '.join(KNOWN_API_VERSIONS)}",
        )
    s = profile.settings
    legacy = version == LEGACY_API_VERSION
    if "modalities" in s:
        out.set("modalities", thaw(s["modalities"]), ("modalities",))
    if profile.instructions is not None:
        out.set("instructions", profile.instructions, ("instructions",))
    if "voice" in s:
        _voice(out, s["voice"], version)
    audio = s.get("audio") or {}
    if "input_format" in audio:
        out.set("input_audio_format", audio["input_format"], ("audio", "input_format"))
    if "input_sampling_rate" in audio:
        out.set(
            "input_audio_sampling_rate",
            audio["input_sampling_rate"],
            ("audio", "input_sampling_rate"),
        )
    if "output_format" in audio:
        out.set("output_audio_format", audio["output_format"], ("audio", "output_format"))
    if "turn_detection" in s:
        _turn(out, s["turn_detection"], legacy)
    if "noise_reduction" in audio:
        nr = audio["noise_reduction"]
        out.set(
            "input_audio_noise_reduction",
            None if nr in ("off", False) else {"type": nr},
            ("audio", "noise_reduction"),
        )
    if "echo_cancellation" in audio:
        _echo(out, audio["echo_cancellation"], version)
    if "transcription" in s:
        tr = s["transcription"]
        if tr is True:
            out.problem(
                ("transcription",),
                "transcription: true needs a model",
                hint="e.g. transcription: {model: azure-speech}",
            )
        transcription = None if tr is False else thaw(tr)
        include = transcription.pop("include", None) if isinstance(transcription, dict) else None
        out.set("input_audio_transcription", transcription, ("transcription",))
        if include:
            # source: voice-live-protocol.md 2 (session `include`): the detail is asked for
            # session-wide, but it is about transcription, so profiles say it there.
            detail = [f"item.input_audio_transcription.{name}" for name in include]
            out.set("include", detail, ("transcription", "include"))
    if audio.get("word_timestamps"):
        out.set("output_audio_timestamp_types", ["word"], ("audio", "word_timestamps"))
    if "animation" in s:
        out.set("animation", thaw(s["animation"]), ("animation",))
    if "avatar" in s:
        out.set("avatar", thaw(s["avatar"]), ("avatar",))
    _tools(out, profile, version, tool_schemas)
    if "tool_choice" in s:
        choice = s["tool_choice"]
        value: Any = (
            choice
            if choice in ("auto", "none", "required")
            else {"type": "function", "name": choice}
        )
        out.set("tool_choice", value, ("tool_choice",))
    if "parallel_tool_calls" in s:
        if supports(version, "parallel_tool_calls"):
            out.set("parallel_tool_calls", s["parallel_tool_calls"], ("parallel_tool_calls",))
        else:
            out.problem(
                ("parallel_tool_calls",),
                f"parallel_tool_calls is not supported by api_version {version}; not sent",
                severity="warning",
            )
    for key, wire in (
        ("temperature", "temperature"),
        ("max_response_tokens", "max_response_output_tokens"),
        ("reasoning_effort", "reasoning_effort"),
    ):
        if key in s:
            out.set(wire, s[key], (key,))
    if "interim_response" in s:
        ir = thaw(s["interim_response"])
        ir["type"] = _INTERIM_TYPES[ir["type"]]
        out.set("interim_response", ir, ("interim_response",))
    if "metadata" in s:
        out.set("metadata", thaw(s["metadata"]), ("metadata",))
    _agent_version(out, profile, version)
    _preview(out, profile, version)
    out.problems += capability_problems(s, out.loc, version)
    if version == V1:
        _as_v1(out, profile)
    if "session" in s:
        _escape_hatch(out, s["session"])
    return {"type": "session.update", "session": out.session}, out.problems, out.trace


def _gpt_live(
    out: _Out, profile: Profile, tool_schemas: Mapping[str, Mapping[str, Any]] | None
) -> tuple[dict[str, Any], list[Problem], dict[PathKey, PathKey]]:
    """A GPT-Live profile -> its one ``session.start`` (docs/gpt-live.md); the settings it
    refuses are the capability matrix's (runner/config/gpt_live.py)."""
    from runner.config import gpt_live

    s = profile.settings
    _tools(out, profile, DEFAULT_API_VERSION, tool_schemas)
    tools = [t for t in out.session.pop("tools", []) if t["type"] in ("function", "web_search")]
    tool_trace = {k: v for k, v in out.trace.items() if k[0] == "tools"}
    session = gpt_live.start_session(s, profile.instructions, tools)
    out.trace = {("model",): ("connection", "model")}
    if "instructions" in session:
        out.trace[("instructions",)] = ("instructions",)
        if "translation" in (s.get("gpt_live") or {}):
            out.trace.setdefault(("instructions",), ("gpt_live", "translation"))
    if "audio" in session:
        if "format" in session["audio"]:
            out.trace[("audio", "format")] = ("audio",)
        if "output" in session["audio"]:
            out.trace[("audio", "output", "voice")] = ("voice",)
    out.trace[("delegation",)] = ("gpt_live", "delegation")
    for path, source in tool_trace.items():
        out.trace[("delegation", "responses") + tuple(path)] = source
    out.session = session
    out.problems += capability_problems(s, out.loc, DEFAULT_API_VERSION)
    if "session" in s:
        _escape_hatch(out, s["session"])
    return {"type": "session.start", "session": out.session}, out.problems, out.trace


def _preview(out: _Out, profile: Profile, version: str) -> None:
    """Preview features ride on v1 as a header; dated versions carry them in the version."""
    conn = profile.connection
    if conn.preview and version != V1:
        out.problem(
            ("connection", "preview"),
            f"preview features are switched on with the {features_header(conn.preview)!r} "
            f"header, which only api_version v1 takes (target: {version})",
            hint="set connection.api_version: v1, or drop connection.preview and pick a "
            "dated -preview api_version",
        )
    if version == V1:
        for name in conn.query:
            if name.lower() in CREDENTIAL_QUERY:
                # source: VoiceLive/v1/readme.md: "Credential-bearing query parameters are
                # not supported"; the key or token goes in a header.
                out.problem(
                    ("connection", "query", name),
                    f"api_version v1 takes credentials in headers only, not the {name!r} "
                    "query parameter",
                    hint="remove it: the runner sends the key or token as a header",
                    at_key=True,
                )


def _as_v1(out: _Out, profile: Profile) -> None:
    """Reshape the dated session into v1's GA shape; name each field v1 cannot say."""
    session, unsaid = to_v1(out.session)
    old_trace, out.trace = out.trace, {}
    for path, why, severity in unsaid:
        source = _profile_path(old_trace, path, profile)
        out.problem(
            source,
            f"{'.'.join(str(p) for p in source)} cannot be expressed on api_version v1: {why}",
            hint="drop it, or target a dated api_version (e.g. 2026-07-15)",
            severity=severity,
        )
    out.session = session
    # Trace v1 fields to the profile fields they came from (for `vlrun explain`).
    moved = {
        "modalities": ("output_modalities",),
        "max_response_output_tokens": ("max_output_tokens",),
        "voice": ("audio", "output"),
        "input_audio_format": ("audio", "input", "format"),
        "input_audio_sampling_rate": ("audio", "input", "format"),
        "output_audio_format": ("audio", "output", "format"),
        "turn_detection": ("audio", "input", "turn_detection"),
        "input_audio_noise_reduction": ("audio", "input", "noise_reduction"),
        "input_audio_echo_cancellation": ("audio", "input", "echo_cancellation"),
        "input_audio_transcription": ("audio", "input", "transcription"),
        "output_audio_timestamp_types": ("audio", "output", "output_audio_timestamp_types"),
    }
    for path, source in old_trace.items():
        new = moved.get(str(path[0]), (path[0],)) + tuple(path[1:])
        if new[0] in session:
            out.trace.setdefault(new, source)


def _profile_path(trace: Mapping[PathKey, PathKey], path: PathKey, profile: Profile) -> PathKey:
    """The profile field behind a dated-session path: its traced source, deepened by the
    sub-keys the profile itself spells the same way (so the error points at that line)."""
    for cut in range(len(path), 0, -1):
        if path[:cut] in trace:
            source, rest = trace[path[:cut]], path[cut:]
            break
    else:
        return (str(path[0]),)
    node: Any = profile.settings
    for part in source:
        node = node.get(part) if isinstance(node, Mapping) else None
    for part in rest:
        if not isinstance(node, Mapping) or part not in node:
            break
        node = node[part]
        source = (*source, part)
    return source


def _voice(out: _Out, voice: Any, version: str) -> None:
    vtype = voice_type(voice)
    if isinstance(voice, str):
        value: Any = voice if vtype == "openai" else {"name": voice, "type": vtype}
    else:
        data = thaw(voice)
        data["type"] = vtype
        value = {k: data[k] for k in _VOICE_KEYS if k in data}
    if vtype == "azure-realtime-native" and not supports(version, "azure-realtime-native"):
        out.problem(
            ("voice",),
            f"azure-realtime-native voices need api_version "
            f"{MIN_VERSION['azure-realtime-native']} or later (target: {version})",
        )
    out.set("voice", value, ("voice",))


def _turn(out: _Out, td: Any, legacy: bool) -> None:
    if isinstance(td, str):
        td = {"type": td}
    if td.get("type") == "manual":
        out.set("turn_detection", None, ("turn_detection",))
        return
    data = thaw(td)
    value = {k: data[k] for k in _TURN_KEYS if k in data}
    out.set("turn_detection", value, ("turn_detection",))
    eou = value.get("end_of_utterance_detection")
    if not isinstance(eou, dict):
        return
    base: PathKey = ("turn_detection", "end_of_utterance_detection")
    wire: dict[str, Any] = {"model": eou["model"]}
    if legacy:
        if "threshold_level" in eou:
            out.problem(
                (*base, "threshold_level"),
                f"threshold_level is not supported by api_version {LEGACY_API_VERSION}",
                hint="use threshold (0-1) for this version, or a newer api_version",
            )
        if "threshold" in eou:
            wire["threshold"] = eou["threshold"]
        if "timeout" in eou:
            wire["timeout"] = eou["timeout"]
        elif "timeout_ms" in eou:
            wire["timeout"] = _seconds(eou["timeout_ms"])
            out.trace[("turn_detection", "end_of_utterance_detection", "timeout")] = (
                *base,
                "timeout_ms",
            )
    else:
        if "threshold" in eou:
            out.problem(
                (*base, "threshold"),
                f"threshold (0-1) only exists in api_version {LEGACY_API_VERSION}; not sent",
                severity="warning",
                hint="use threshold_level: low|medium|high|default",
            )
        if "threshold_level" in eou:
            wire["threshold_level"] = eou["threshold_level"]
        if "timeout_ms" in eou:
            wire["timeout_ms"] = eou["timeout_ms"]
        elif "timeout" in eou:
            wire["timeout_ms"] = round(eou["timeout"] * 1000)
            out.trace[("turn_detection", "end_of_utterance_detection", "timeout_ms")] = (
                *base,
                "timeout",
            )
    value["end_of_utterance_detection"] = wire


def _seconds(ms: int) -> int | float:
    sec = ms / 1000
    return int(sec) if sec.is_integer() else sec


def _echo(out: _Out, ec: Any, version: str) -> None:
    path: PathKey = ("audio", "echo_cancellation")
    if ec is False or ec == "off":
        out.set("input_audio_echo_cancellation", None, path)
        return
    value: dict[str, Any] = {"type": "server_echo_cancellation"}
    if ec == "client":
        value.update(reference_source="client", channels=2)
    elif isinstance(ec, Mapping):
        for key in ("reference_source", "channels"):
            if key in ec:
                value[key] = ec[key]
    if value.get("reference_source") == "client" and not supports(version, "client_echo_reference"):
        out.problem(
            path,
            f"a client echo reference needs api_version "
            f"{MIN_VERSION['client_echo_reference']} or later (target: {version})",
        )
    out.set("input_audio_echo_cancellation", value, path)


def _tools(
    out: _Out, profile: Profile, version: str, schemas: Mapping[str, Mapping[str, Any]] | None
) -> None:
    tools: list[dict[str, Any]] = []
    for i, binding in enumerate(profile.tools):
        plugin = (schemas or {}).get(binding.name)
        entry: dict[str, Any] = {"type": "function", "name": binding.name}
        description = binding.description or (plugin or {}).get("description")
        if description:
            entry["description"] = description
        params = (plugin or {}).get("parameters") if plugin else binding.parameters
        if params is not None:
            entry["parameters"] = thaw(params)
        elif schemas is not None:
            out.problem(
                ("tools", i),
                f"tool {binding.name!r} has no plugin and no declared parameters",
                hint=suggest(binding.name, schemas)
                or "add a plugin in tools/ or declare `parameters:`",
            )
        out.trace[("tools", len(tools))] = ("tools", i)
        if plugin and plugin.get("source"):  # values the plugin gave are credited to its file
            where = (PLUGIN_ORIGIN, str(plugin["source"]))
            if not binding.description and "description" in entry:
                out.trace[("tools", len(tools), "description")] = where
            if "parameters" in entry:
                out.trace[("tools", len(tools), "parameters")] = where
        tools.append(entry)
    mcp = profile.mcp_servers
    if mcp and not supports(version, "mcp"):
        out.problem(
            ("mcp_servers",),
            f"MCP servers need api_version {MIN_VERSION['mcp']} or later (target: {version})",
        )
    for i, server in enumerate(mcp):
        entry = {"type": "mcp", "server_label": server.label, "server_url": server.url}
        if server.allowed_tools is not None:
            entry["allowed_tools"] = list(server.allowed_tools)
        if server.authorization is not None:
            entry["authorization"] = server.authorization
        if server.headers:
            entry["headers"] = dict(server.headers)
        if server.approval is not None:
            # `ask` is the runner's policy: the service asks for approval, the runner asks you.
            entry["require_approval"] = (
                "always" if server.approval == "ask" else thaw(server.approval)
            )
        out.trace[("tools", len(tools))] = ("mcp_servers", i)
        tools.append(entry)
    _builtin_search(out, profile, version, tools)
    if tools:
        out.session["tools"] = tools


def _builtin_search(out: _Out, profile: Profile, version: str, tools: list[dict[str, Any]]) -> None:
    """The service's own web and file search tools. The Voice Live reference documents their
    call items and events (web_search_call, file_search_call) but not the tool definition, so
    vlrun sends the OpenAI Responses definition the item names come from. v1's contract has
    function and mcp tools only (v1/models.tsp SessionToolType): to_v1 names them there."""
    s = profile.settings
    wanted: list[tuple[str, dict[str, Any]]] = []
    if s.get("web_search"):
        wanted.append(("web_search", {"type": "web_search"}))
    fs = s.get("file_search")
    if isinstance(fs, Mapping):
        entry: dict[str, Any] = {"type": "file_search", **thaw(fs)}
        wanted.append(("file_search", entry))
    for key, entry in wanted:
        if not supports(version, "builtin_search"):
            out.problem(
                (key,),
                f"built-in {key} needs api_version {MIN_VERSION['builtin_search']} or later "
                f"(target: {version})",
            )
        out.trace[("tools", len(tools))] = (key,)
        tools.append(entry)


def _agent_version(out: _Out, profile: Profile, version: str) -> None:
    agent = profile.agent
    if agent is None:
        return
    if agent.invoke_input is not None and not supports(version, "invoke_input"):
        out.problem(
            ("connection", "agent", "invoke_input"),
            f"invoke_input needs api_version {MIN_VERSION['invoke_input']} or later "
            f"(target: {version})",
            at_key=True,
        )
    legacy = version == LEGACY_API_VERSION
    if agent.legacy and not legacy:
        out.problem(
            ("connection", "agent", "id"),
            f"classic agents (`id`) belong to api_version "
            f"{LEGACY_API_VERSION}; target is {version}",
            severity="warning",
            hint="use `name` + `project` for current Foundry agents",
        )
    if not agent.legacy and legacy:
        out.problem(
            ("connection", "agent", "name"),
            f"agent `name` binding is not available in api_version {LEGACY_API_VERSION}",
            severity="warning",
            hint="use `id` + `project` there, or a newer api_version",
        )


def _escape_hatch(out: _Out, raw: Any) -> None:
    for key, value in raw.items():
        if key not in SDK_SESSION_KEYS:
            out.problem(
                ("session", key),
                f"session field {key!r} is not known to the SDK; sent as is",
                hint=suggest(key, SDK_SESSION_KEYS),
                severity="warning",
                at_key=True,
            )
        current = out.session.get(key)
        new = thaw(value)
        out.session[key] = (
            _deep_merge(current, new)
            if isinstance(current, dict) and isinstance(new, dict)
            else new
        )
        out.trace[(key,)] = ("session", key)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for k, v in over.items():
        result[k] = (
            _deep_merge(result[k], v)
            if isinstance(result.get(k), dict) and isinstance(v, dict)
            else v
        )
    return result


def greeting_event(profile: Profile) -> dict[str, Any] | None:
    """The ``response.create`` event that makes the assistant speak first, or None; on
    GPT-Live, the ``session.commentary.append`` that says the fixed greeting (docs/gpt-live.md,
    "Greeting, translation and other context")."""
    if profile.greeting is None:
        return None
    if _is_gpt_live(profile):
        from runner.config import gpt_live

        return gpt_live.greeting_event(profile.greeting.text)
    event = response_for(profile.greeting)
    extras = response_extras(profile)
    if extras:
        event.setdefault("response", {}).update(extras)
    return event


def response_extras(profile: Profile) -> dict[str, Any]:
    """Fields every ``response.create`` the runner sends carries for this profile: a hosted
    agent's ``invoke_input`` (how-to-voice-live-hosted-agent-integration.md, Invocations
    protocol; azure-ai-voicelive 1.3.0 ResponseCreateParams.invoke_input)."""
    agent = profile.agent
    if agent is None or agent.invoke_input is None:
        return {}
    return {"invoke_input": thaw(agent.invoke_input)}


def response_for(greeting: Greeting) -> dict[str, Any]:
    """The ``response.create`` that speaks ``greeting`` (fixed words, or instructions)."""
    event: dict[str, Any] = {"type": "response.create"}
    if greeting.text is not None:
        # Fixed first words: the service speaks this message as written and keeps it in the
        # conversation (source: voice-live-protocol.md 3.4, SDK ResponseCreateParams).
        event["response"] = {
            "pre_generated_assistant_message": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": greeting.text}],
            }
        }
        return event
    if greeting.instructions:
        # additional_instructions add to the session's instructions for this one response,
        # so the greeting keeps the profile's persona.
        event["additional_instructions"] = greeting.instructions
    return event
