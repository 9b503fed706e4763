"""Facts about the service that `vlrun check` and the emulator both apply, kept in one place so
the offline check and the offline service cannot disagree (docs/emulator.md#azure-speech-vad)."""

from __future__ import annotations

from typing import Any

#: The Azure semantic VADs: the only turn detection azure-speech transcription accepts on a
#: realtime model (the reported error names AzureSemanticVAD and AzureMultilingualSemanticVAD;
#: the _en variant is an AzureSemanticVAD).
AZURE_SEMANTIC_VADS = (
    "azure_semantic_vad",
    "azure_semantic_vad_en",
    "azure_semantic_vad_multilingual",
)


def realtime_model(model: str | None) -> bool:
    """A speech-to-speech model (gpt-realtime, gpt-4o-realtime-preview, …), not a cascaded one."""
    return bool(model) and "realtime" in str(model)


# --- api-version v1 (the evergreen GA label) -------------------------------------------------
# source: azure-rest-api-specs specification/ai/data-plane/VoiceLive/docs/versioning.md
# ("Status: Adopted"): `api-version=v1` selects the rolling GA contract; preview behaviour is
# switched on per feature with `VoiceLive-Features: <Key>=V1Preview, ...`.
V1 = "v1"
FEATURES_HEADER = "VoiceLive-Features"
V1_PREVIEW_VALUE = "V1Preview"
#: source: VoiceLive/v1/readme.md: auth is header-only; credential query parameters are refused.
CREDENTIAL_QUERY = ("api-key", "authorization", "access_token", "token", "key")

# source: how-to-bring-your-own-model.md, "Choose BYOM integration mode": the `profile` query
# parameter takes one of these two modes, and `model` then names the caller's own deployment.
BYOM_QUERY = "profile"
BYOM_MODES = ("byom-azure-openai-realtime", "byom-azure-openai-chat-completion")


def features_header(names: tuple[str, ...] | list[str]) -> str:
    """The ``VoiceLive-Features`` value for these preview features (order kept, as written)."""
    return ", ".join(f"{name}={V1_PREVIEW_VALUE}" for name in names)


# source: VoiceLive/v1/models.tsp (SessionAudioOutput): Voice Live's own voice fields sit
# beside the OpenAI GA `voice` in `audio.output`. dated voice-object key -> v1 key.
V1_VOICE_KEYS = {
    "name": "voice",
    "type": "voice_type",
    "temperature": "voice_temperature",
    "endpoint_id": "custom_voice_endpoint_id",
    "model": "personal_voice_model",
    "custom_lexicon_url": "custom_lexicon_url",
    "custom_text_normalization_url": "custom_text_normalization_url",
    "prefer_locales": "prefer_locales",
    "locale": "locale",
    "style": "style",
    "pitch": "pitch",
    "volume": "volume",
}
# source: OpenAI realtime GA formats (audio/pcm with a rate, audio/pcmu, audio/pcma), as the
# v1 SessionUpdate.json example writes them.
V1_G711 = {"g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
# source (both shapes below): the v1 example gives the GA shape; where it is silent, the
# Azure extensions sit where openapi3/v1/VoiceLive.json (the emitted v1 contract) puts them,
# since versioning.md section 6 makes v1 a superset of 2026-04-10.
#: OpenAI GA server_vad/semantic_vad fields, plus openapi3/v1's Azure extensions on server_vad.
V1_TURN_KEYS: dict[str, tuple[str, ...] | None] = {
    "server_vad": (
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "create_response",
        "interrupt_response",
        "idle_timeout_ms",
        "end_of_utterance_detection",
        "auto_truncate",
    ),
    "semantic_vad": ("type", "eagerness", "create_response", "interrupt_response"),
    # openapi3/v1 maps these discriminator values to the Azure VAD models unchanged (None: all
    # of the dated fields).
    "azure_semantic_vad": None,
    "azure_semantic_vad_en": None,
    "azure_semantic_vad_multilingual": None,
}
#: OpenAI GA near_field/far_field plus openapi3/v1's azure_deep_noise_suppression.
V1_NOISE = ("near_field", "far_field", "azure_deep_noise_suppression")
#: OpenAI GA AudioTranscription plus openapi3/v1's phrase_list and custom_speech.
V1_TRANSCRIPTION_KEYS = ("model", "language", "prompt", "phrase_list", "custom_speech")
V1_AVATAR_KEYS = (  # openapi3/v1 AvatarConfig
    "type",
    "ice_servers",
    "character",
    "style",
    "model",
    "customized",
    "video",
    "scene",
    "output_protocol",
    "output_audit_audio",
)
V1_ANIMATION_KEYS = ("model_name", "outputs")  # openapi3/v1 Animation
V1_ECHO_KEYS = ("reference_source", "channels")  # source: v1/models.tsp EchoCancellation
V1_TOOL_TYPES = ("function", "mcp")  # source: v1/models.tsp SessionToolType
V1_FUNCTION_KEYS = ("type", "name", "description", "parameters")
V1_MCP_KEYS = (  # source: OpenAI GA MCPTool, which v1 takes whole
    "type",
    "server_label",
    "server_url",
    "connector_id",
    "authorization",
    "headers",
    "allowed_tools",
    "require_approval",
    "server_description",
)
#: dated top-level session fields v1 renames without changing the value.
V1_RENAMED = {"max_response_output_tokens": "max_output_tokens"}
#: kept as they are: OpenAI GA fields, and openapi3/v1's session-level Azure extensions.
V1_SAME = ("include", "tool_choice", "temperature", "interim_response", "metadata")
#: dated fields with no place in the v1 session: why, and whether that is an error (else the
#: field is left out with a warning, as dated versions before parallel_tool_calls do).
V1_NOT_EXPRESSIBLE = {
    "parallel_tool_calls": ("the v1 session has no parallel_tool_calls; not sent", "warning"),
    "reasoning_effort": (
        "the v1 session has no reasoning_effort (GA replaced it with `reasoning` on "
        "response.create)",
        "error",
    ),
}

#: One field v1 cannot say: (path in the dated session, why, severity).
Unsaid = tuple[tuple[str | int, ...], str, str]


def to_v1(dated: dict[str, Any]) -> tuple[dict[str, Any], list[Unsaid]]:
    """A dated-shape session (what compile builds) -> the v1 GA shape, plus what v1 cannot say.

    source: VoiceLive/v1/examples/v1/SessionUpdate.json (session.type realtime,
    output_modalities, audio.input.format/turn_detection, audio.output.format/voice/voice_type).
    """
    unsaid: list[Unsaid] = []
    s: dict[str, Any] = {"type": "realtime"}
    audio_in: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    if "modalities" in dated:
        mods = dated["modalities"]
        # source: OpenAI GA output_modalities is one of ["text"] or ["audio"]; audio output
        # carries its transcript, so the dated [text, audio] is ["audio"].
        s["output_modalities"] = (
            ["audio"] if isinstance(mods, list) and "audio" in mods else ["text"]
        )
    if "instructions" in dated:
        s["instructions"] = dated["instructions"]
    fmt = dated.get("input_audio_format")
    if fmt is not None or "input_audio_sampling_rate" in dated:
        if fmt in V1_G711:
            audio_in["format"] = {"type": V1_G711[str(fmt)]}
            if "input_audio_sampling_rate" in dated:
                unsaid.append((("input_audio_sampling_rate",), "G.711 on v1 has no rate", "error"))
        else:
            audio_in["format"] = {
                "type": "audio/pcm",
                "rate": dated.get("input_audio_sampling_rate", 24000),
            }
    if "input_audio_noise_reduction" in dated:
        nr = dated["input_audio_noise_reduction"]
        if nr is None:
            audio_in["noise_reduction"] = None
        elif isinstance(nr, dict) and nr.get("type") in V1_NOISE:
            audio_in["noise_reduction"] = {"type": nr["type"]}
        else:
            kind = nr.get("type") if isinstance(nr, dict) else nr
            unsaid.append(
                (
                    ("input_audio_noise_reduction",),
                    f"v1 has no noise reduction {kind}",
                    "error",
                )
            )
    ec = dated.get("input_audio_echo_cancellation")
    if isinstance(ec, dict):
        # models.tsp's EchoCancellation names no `type`; openapi3/v1's requires it: keep it.
        audio_in["echo_cancellation"] = {k: ec[k] for k in ("type", *V1_ECHO_KEYS) if k in ec}
    tr = dated.get("input_audio_transcription")
    if isinstance(tr, dict):
        audio_in["transcription"] = {k: tr[k] for k in V1_TRANSCRIPTION_KEYS if k in tr}
        for k in tr:
            if k not in V1_TRANSCRIPTION_KEYS:
                unsaid.append(
                    (("input_audio_transcription", k), f"v1 transcription has no {k}", "error")
                )
    if "turn_detection" in dated:
        td = dated["turn_detection"]
        if td is None:
            audio_in["turn_detection"] = None
        elif isinstance(td, dict):
            kind = str(td.get("type"))
            keys = V1_TURN_KEYS.get(kind, ()) or tuple(td)
            if kind not in V1_TURN_KEYS:
                unsaid.append(
                    (
                        ("turn_detection", "type"),
                        f"v1 has no turn detection {td.get('type')}",
                        "error",
                    )
                )
            else:
                audio_in["turn_detection"] = {k: td[k] for k in keys if k in td}
                for k in td:
                    if k not in keys:
                        unsaid.append(
                            (("turn_detection", k), f"v1 {td['type']} has no {k}", "error")
                        )
    out_fmt = dated.get("output_audio_format")
    if out_fmt is not None:
        if out_fmt in V1_G711:
            audio_out["format"] = {"type": V1_G711[str(out_fmt)]}
        else:
            digits = "".join(ch for ch in str(out_fmt).split("16", 1)[-1] if ch.isdigit())
            audio_out["format"] = {"type": "audio/pcm", "rate": int(digits) if digits else 24000}
    if "voice" in dated:
        voice = dated["voice"]
        obj = {"type": "openai", "name": voice} if isinstance(voice, str) else voice
        if isinstance(obj, dict):
            # the example's order: voice, then voice_type, then the rest
            obj = dict(sorted(obj.items(), key=lambda kv: (kv[0] != "name", kv[0] != "type")))
            for k, v in obj.items():
                if k in V1_VOICE_KEYS:
                    audio_out[V1_VOICE_KEYS[k]] = v
                else:
                    unsaid.append((("voice", k), f"the v1 output voice has no {k}", "error"))
    if "output_audio_timestamp_types" in dated:
        audio_out["output_audio_timestamp_types"] = dated["output_audio_timestamp_types"]
    audio: dict[str, Any] = {}
    if audio_in:
        audio["input"] = audio_in
    if audio_out:
        audio["output"] = audio_out
    if audio:
        s["audio"] = audio
    for key in V1_SAME:
        if key in dated:
            s[key] = dated[key]
    if isinstance(dated.get("tools"), list):
        tools: list[Any] = []
        for i, tool in enumerate(dated["tools"]):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind not in V1_TOOL_TYPES or not isinstance(tool, dict):
                unsaid.append((("tools", i), f"v1 tools are function or mcp, not {kind}", "error"))
                continue
            allowed: tuple[str, ...] = V1_FUNCTION_KEYS if kind == "function" else V1_MCP_KEYS
            tools.append({k: v for k, v in tool.items() if k in allowed})
            for k in tool:
                if k not in allowed:
                    unsaid.append((("tools", i, k), f"a v1 {kind} tool has no {k}", "error"))
        s["tools"] = tools
    for key, new in V1_RENAMED.items():
        if key in dated:
            s[new] = dated[key]
    parts: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("avatar", V1_AVATAR_KEYS),
        ("animation", V1_ANIMATION_KEYS),
    )
    for key, allowed in parts:
        value = dated.get(key)
        if isinstance(value, dict):
            s[key] = {k: v for k, v in value.items() if k in allowed}
            for k in value:
                if k not in allowed:
                    unsaid.append(((key, k), f"the v1 {key} has no {k}", "error"))
    for key, (why, severity) in V1_NOT_EXPRESSIBLE.items():
        if key in dated:
            unsaid.append(((key,), why, severity))
    return {k: s[k] for k in sorted(s, key=V1_SESSION_ORDER.index)}, unsaid


#: one fixed key order, so compiled v1 payloads can be golden files
V1_SESSION_ORDER = (
    "type",
    "output_modalities",
    "instructions",
    "audio",
    "include",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "temperature",
    "interim_response",
    "avatar",
    "animation",
    "metadata",
)


def is_v1_session(session: dict[str, Any]) -> bool:
    """Whether a compiled session is in the v1 (GA) shape."""
    return session.get("type") == "realtime"


def dated_audio(session: dict[str, Any]) -> dict[str, Any]:
    """The dated audio fields (``input_audio_format``, ``input_audio_sampling_rate``,
    ``output_audio_format``, ``voice``) of a compiled session in either shape, for code that
    opens the audio edges or names the voice; only the fields the session sets."""
    if not is_v1_session(session):
        keys = ("input_audio_format", "input_audio_sampling_rate", "output_audio_format", "voice")
        return {k: session[k] for k in keys if k in session}
    audio = session.get("audio") or {}
    audio_in, audio_out = audio.get("input") or {}, audio.get("output") or {}
    laws = {v: k for k, v in V1_G711.items()}
    out: dict[str, Any] = {}
    fin = audio_in.get("format")
    if isinstance(fin, dict):
        out["input_audio_format"] = laws.get(str(fin.get("type")), "pcm16")
        if "rate" in fin:
            out["input_audio_sampling_rate"] = fin["rate"]
    fout = audio_out.get("format")
    if isinstance(fout, dict):
        rate = fout.get("rate", 24000)
        law = laws.get(str(fout.get("type")))
        out["output_audio_format"] = law or ("pcm16" if rate == 24000 else f"pcm16_{rate}hz")
    dated_of = {v1: dated for dated, v1 in V1_VOICE_KEYS.items()}
    voice = {dated_of[k]: v for k, v in audio_out.items() if k in dated_of}
    if voice:
        out["voice"] = voice
    return out


def set_audio_formats(
    session: dict[str, Any], in_format: str, in_rate: int | None, out_format: str
) -> None:
    """Write wire formats (dated words: pcm16, pcm16_16000hz, g711_ulaw, …) into a compiled
    session, in the session's own shape (the phone edges pin the formats this way)."""
    if not is_v1_session(session):
        session.pop("input_audio_sampling_rate", None)
        session["input_audio_format"] = in_format
        if in_rate is not None:
            session["input_audio_sampling_rate"] = in_rate
        session["output_audio_format"] = out_format
        return
    v1, _ = to_v1(
        {
            "input_audio_format": in_format,
            **({"input_audio_sampling_rate": in_rate} if in_rate is not None else {}),
            "output_audio_format": out_format,
        }
    )
    audio = session.setdefault("audio", {})
    audio.setdefault("input", {})["format"] = v1["audio"]["input"]["format"]
    audio.setdefault("output", {})["format"] = v1["audio"]["output"]["format"]
