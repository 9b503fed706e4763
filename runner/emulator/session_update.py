"""Field-by-field checks of a ``session.update``: what the service accepts, per api-version;
anything else becomes a :class:`FieldError` (one ``error`` event each).

Pure data work like protocol.py; the choices made where the reference lists an open question
are noted next to the code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from runner.config.capabilities import SMART_EOT, SMART_EOT_SINCE
from runner.config.service import (
    AZURE_SEMANTIC_VADS,
    V1,
    V1_G711,
    V1_SESSION_ORDER,
    V1_VOICE_KEYS,
    realtime_model,
    to_v1,
)
from runner.config.voices import NATIVE_VOICES, OPENAI_VOICES
from runner.emulator.protocol import (
    EOU_MODELS,
    INCLUDE,
    INPUT_FORMATS,
    INPUT_RATES,
    MAX_OUTPUT_TOKENS,
    MODALITIES,
    OUTPUT_RATES,
    PREVIEW_2025_05,
    REASONING,
    TRANSCRIBE_MODELS,
    VAD_TYPES,
    vad_defaults,
)


@dataclass
class FieldError:
    """One rejected field of a client event, rendered as one ``error`` event."""

    code: str
    message: str
    param: str | None


class _Check:
    """Collects errors while walking one ``session.update`` payload."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, param: str, message: str, code: str = "invalid_value") -> None:
        self.errors.append(FieldError(code, message, param))

    def unknown(
        self, obj: dict[str, Any], allowed: tuple[str, ...] | set[str], prefix: str
    ) -> None:
        # source: docs/emulator.md#unknown-field (a strict object, reported and in SPEC)
        for key in obj:
            if key not in allowed:
                self.fail(
                    f"{prefix}.{key}", f"Unknown parameter: '{prefix}.{key}'.", "unknown_parameter"
                )

    def type_(self, value: Any, kinds: type | tuple[type, ...], param: str, what: str) -> bool:
        ok = isinstance(value, kinds) and not (
            isinstance(value, bool) and bool not in _tuple(kinds)
        )
        if not ok:
            self.fail(
                param,
                f"Invalid type for '{param}': expected {what}, but got {_json_kind(value)}.",
                "invalid_type",
            )
        return ok

    def enum(self, value: Any, options: tuple[str, ...], param: str) -> bool:
        if value not in options:
            self.fail(
                param,
                f"Invalid value: {value!r}. Supported values are: "
                + ", ".join(repr(o) for o in options)
                + ".",
            )
            return False
        return True

    def number(
        self, value: Any, param: str, lo: float, hi: float | None = None, integer: bool = False
    ) -> bool:
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if not self.type_(value, kinds, param, "an integer" if integer else "a number"):
            return False
        if value < lo or (hi is not None and value > hi):
            upper = f" and at most {hi}" if hi is not None else ""
            self.fail(
                param, f"Invalid value for '{param}': {value}. It must be at least {lo}{upper}."
            )
            return False
        return True

    def require(self, obj: dict[str, Any], key: str, prefix: str) -> bool:
        if obj.get(key) in (None, ""):
            self.fail(
                f"{prefix}.{key}",
                f"Missing required parameter: '{prefix}.{key}'.",
                "missing_required_parameter",
            )
            return False
        return True


def _tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _json_kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), "a value")


SESSION_FIELDS = (
    "model",
    "modalities",
    "instructions",
    "voice",
    "input_audio_format",
    "input_audio_sampling_rate",
    "output_audio_format",
    "turn_detection",
    "input_audio_noise_reduction",
    "input_audio_echo_cancellation",
    "input_audio_transcription",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "max_response_output_tokens",
    "reasoning_effort",
    "interim_response",
    "output_audio_timestamp_types",
    "animation",
    "avatar",
    "include",
    "metadata",
)
_VOICE_OPTIONAL = (
    "temperature",
    "custom_lexicon_url",
    "custom_text_normalization_url",
    "prefer_locales",
    "locale",
    "style",
    "pitch",
    "rate",
    "volume",
)


def apply_session_update(
    current: dict[str, Any], update: Any, api_version: str, *, voice_locked: bool = False
) -> tuple[dict[str, Any], list[FieldError]]:
    """Validate ``update`` field by field and merge it into a copy of ``current``.

    Returns the new effective session and the errors. When there is any error the caller keeps
    the old session (the REF says invalid updates are answered with ``error``; whether the valid
    fields of a partly invalid update still apply is not documented, so nothing applies).
    """
    check = _Check()
    if not isinstance(update, dict):
        check.fail("session", "Invalid type for 'session': expected an object.", "invalid_type")
        return current, check.errors
    if api_version == V1:
        # The v1 shape is checked strictly, then read as the dated fields it stands for, so
        # every value check below applies to both shapes alike.
        update = dated_update(update, check)
        if check.errors:
            return current, check.errors
    new = copy.deepcopy(current)
    check.unknown(update, SESSION_FIELDS, "session")
    for key, value in update.items():
        if key not in SESSION_FIELDS:
            continue
        p = f"session.{key}"
        fixed = _FIELD_CHECKS[key](check, value, p, api_version, new)
        if fixed is not _SKIP:
            new[key] = fixed
    if voice_locked and "voice" in update and update["voice"] != current.get("voice"):
        check.fail(
            "session.voice",
            "Cannot update a session's voice after the assistant has responded with audio.",
            "cannot_update_voice",
        )
    _check_combinations(check, new, update)
    return new, check.errors


_SKIP = object()


def _model(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if c.type_(v, str, p, "a string") and s.get("model") and v != s["model"]:
        c.fail(p, "The model cannot be changed with session.update; connect with another model.")
    return _SKIP


def _modalities(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if not c.type_(v, list, p, "an array"):
        return _SKIP
    for i, m in enumerate(v):
        c.enum(m, MODALITIES, f"{p}[{i}]")
    if v and "text" not in v:
        c.fail(p, "Invalid modalities: audio-only output is not supported; include 'text'.")
    if not v:
        c.fail(p, "Invalid modalities: at least 'text' is required.")
    return v


def _string(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    return v if c.type_(v, str, p, "a string") else _SKIP


def _voice(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if isinstance(v, str):
        return v if c.enum(v, OPENAI_VOICES, p) else _SKIP
    if not c.type_(v, dict, p, "a string or an object"):
        return _SKIP
    kinds = (
        "openai",
        "azure-standard",
        "azure-custom",
        "azure-personal",
        "avatar-voice-sync",
        "azure-realtime-native",
    )
    if not c.enum(v.get("type"), kinds, f"{p}.type"):
        return _SKIP
    kind = v["type"]
    allowed: tuple[str, ...] = ("type", "name")
    if kind == "openai":
        c.unknown(v, allowed, p)
        if c.require(v, "name", p):
            c.enum(v["name"], OPENAI_VOICES, f"{p}.name")
    elif kind == "azure-realtime-native":
        c.unknown(v, allowed, p)
        if c.require(v, "name", p):
            c.enum(v["name"], NATIVE_VOICES, f"{p}.name")
        if s.get("model") and s["model"] != "azure-realtime":
            c.fail(
                f"{p}.type",
                "azure-realtime-native voices are only available with the azure-realtime model.",
            )
    else:
        extra = {
            "azure-custom": ("endpoint_id",),
            "azure-personal": ("model",),
            "avatar-voice-sync": ("model",),
        }.get(kind, ())
        c.unknown(v, allowed + extra + _VOICE_OPTIONAL, p)
        if kind != "avatar-voice-sync":
            c.require(v, "name", p)
        for key in extra:
            c.require(v, key, p)
        if "temperature" in v:
            c.number(v["temperature"], f"{p}.temperature", 0, 1)
    return v


def _enum_field(options: tuple[str, ...]) -> Any:
    def check(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
        return v if c.enum(v, options, p) else _SKIP

    return check


def _input_rate(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if not c.type_(v, int, p, "an integer"):
        return _SKIP
    if v not in INPUT_RATES:
        c.fail(
            p,
            f"Invalid value: {v}. Supported sampling rates are: "
            + ", ".join(str(r) for r in INPUT_RATES)
            + ".",
        )
        return _SKIP
    return v


def _turn_detection(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if v is None:
        return None
    if not c.type_(v, dict, p, "an object or null"):
        return _SKIP
    if not c.enum(v.get("type"), VAD_TYPES, f"{p}.type"):
        return _SKIP
    kind = v["type"]
    base = ("type", "create_response", "interrupt_response")
    if kind == "semantic_vad":
        allowed: tuple[str, ...] = (*base, "eagerness")
    else:
        allowed = (
            *base,
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "speech_duration_ms",
            "end_of_utterance_detection",
            "auto_truncate",
            "speech_duration_assistant_speaking_ms",
        )
        if kind != "server_vad":
            allowed += ("remove_filler_words", "appended_text_after_truncation")
        if kind in ("azure_semantic_vad", "azure_semantic_vad_multilingual"):
            allowed += ("languages",)
    c.unknown(v, allowed, p)
    for key, value in v.items():
        q = f"{p}.{key}"
        if key == "threshold":
            c.number(value, q, 0, 1)
        elif key.endswith("_ms"):
            c.number(value, q, 0, 10000, integer=True)
        elif key in (
            "create_response",
            "interrupt_response",
            "auto_truncate",
            "remove_filler_words",
        ):
            c.type_(value, bool, q, "a boolean")
        elif key == "eagerness":
            c.enum(value, ("auto", "low", "medium", "high"), q)
        elif key == "languages" and c.type_(value, list, q, "an array"):
            for i, lang in enumerate(value):
                c.type_(lang, str, f"{q}[{i}]", "a string")
        elif key == "appended_text_after_truncation":
            c.type_(value, str, q, "a string")
        elif key == "end_of_utterance_detection" and value is not None:
            _eou(c, value, q, api)
    if v.get("auto_truncate") and v.get("interrupt_response") is False:
        c.fail(f"{p}.auto_truncate", "auto_truncate requires interrupt_response to be true.")
    return {"type": kind, **vad_defaults(kind, api), **v}


def _eou(c: _Check, v: Any, p: str, api: str) -> None:
    """Both end-of-utterance shapes, chosen by api-version.

    2025-05-01-preview took ``threshold`` (0-1) and ``timeout`` (seconds); later versions take
    ``threshold_level`` and ``timeout_ms``. Whether the current service still tolerates the old
    fields is an open question; the emulator rejects them as unknown so profiles get fixed.
    """
    if not c.type_(v, dict, p, "an object"):
        return
    if v.get("model") == SMART_EOT:
        # source: docs/emulator.md#smart-eot (REF 2026-06-01-preview: new there; REF
        # 2026-07-15: "Smart turn detection ... remain in preview"; no VoiceLive-Features key
        # for it on v1 is documented): previews from 2026-06-01-preview take it, nothing else
        if not (api.endswith("-preview") and api[:10] >= SMART_EOT_SINCE[:10]):
            c.fail(
                f"{p}.model",
                f"Invalid value: '{SMART_EOT}' is a preview feature that api-version {api} "
                f"does not take; use {SMART_EOT_SINCE} or a later preview version.",
            )
            return
    else:
        c.enum(v.get("model"), (*EOU_MODELS, SMART_EOT), f"{p}.model")
    if api == PREVIEW_2025_05:
        c.unknown(v, ("model", "threshold", "timeout"), p)
        if "threshold" in v:
            c.number(v["threshold"], f"{p}.threshold", 0, 1)
        if "timeout" in v:
            c.number(v["timeout"], f"{p}.timeout", 0, 10)
    else:
        c.unknown(v, ("model", "threshold_level", "timeout_ms"), p)
        if "threshold_level" in v:
            c.enum(
                v["threshold_level"], ("low", "medium", "high", "default"), f"{p}.threshold_level"
            )
        if "timeout_ms" in v:
            c.number(v["timeout_ms"], f"{p}.timeout_ms", 0, 10000, integer=True)


def _typed_or_null(kinds: tuple[str, ...], extra: tuple[str, ...] = ()) -> Any:
    def check(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
        if v is None:
            return None
        if not c.type_(v, dict, p, "an object or null"):
            return _SKIP
        c.unknown(v, ("type", *extra), p)
        return v if c.enum(v.get("type"), kinds, f"{p}.type") else _SKIP

    return check


def _echo(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    fixed = _typed_or_null(("server_echo_cancellation",), ("reference_source", "channels"))(
        c, v, p, api, s
    )
    if not isinstance(fixed, dict):
        return fixed
    source = fixed.get("reference_source", "server")
    channels = fixed.get("channels", 1)
    if c.enum(source, ("server", "client"), f"{p}.reference_source") and channels in (1, 2):
        if source == "server" and channels == 2:
            c.fail(
                f"{p}.channels",
                "Two channels require reference_source 'client'.",
                "invalid_ec_channels_requires_client",
            )
        if source == "client" and channels == 1:
            c.fail(
                f"{p}.channels",
                "A client echo reference needs two interleaved channels.",
                "invalid_ec_reference_channels",
            )
    elif channels not in (1, 2):
        c.fail(f"{p}.channels", f"Invalid value: {channels!r}. Supported values are: 1, 2.")
    return fixed


def _transcription(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if v is None:
        return None
    if not c.type_(v, dict, p, "an object or null"):
        return _SKIP
    c.unknown(v, ("model", "language", "custom_speech", "phrase_list", "prompt"), p)
    if c.require(v, "model", p):
        c.enum(v["model"], TRANSCRIBE_MODELS, f"{p}.model")
    if "language" in v:
        c.type_(v["language"], str, f"{p}.language", "a string")
    if (
        "phrase_list" in v
        and c.type_(v["phrase_list"], list, f"{p}.phrase_list", "an array")
        and len(v["phrase_list"]) >= 500
    ):
        c.fail(f"{p}.phrase_list", "phrase_list supports fewer than 500 entries.")
    return v


def _tools(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if not c.type_(v, list, p, "an array"):
        return _SKIP
    names: set[str] = set()
    for i, tool in enumerate(v):
        q = f"{p}[{i}]"
        if not c.type_(tool, dict, q, "an object") or not c.enum(
            tool.get("type"), _tool_types(api), f"{q}.type"
        ):
            continue
        if tool["type"] in BUILTIN_SEARCH:
            if tool["type"] in names:
                c.fail(f"{q}.type", f"Duplicate tool: {tool['type']!r} is declared twice.")
            names.add(tool["type"])
            _builtin_search(c, tool, q)
        elif tool["type"] == "function":
            c.unknown(tool, ("type", "name", "description", "parameters"), q)
            if c.require(tool, "name", q):
                if tool["name"] in names:
                    c.fail(f"{q}.name", f"Duplicate tool name: {tool['name']!r}.")
                names.add(tool["name"])
            if "parameters" in tool:
                c.type_(tool["parameters"], dict, f"{q}.parameters", "an object")
        else:
            c.unknown(
                tool,
                (
                    "type",
                    "server_label",
                    "server_url",
                    "allowed_tools",
                    "headers",
                    "authorization",
                    "require_approval",
                    "server_description",
                ),
                q,
            )
            c.require(tool, "server_label", q)
            c.require(tool, "server_url", q)
            approval = tool.get("require_approval", "always")
            if isinstance(approval, str):
                c.enum(approval, ("never", "always"), f"{q}.require_approval")
            elif isinstance(approval, dict):
                c.unknown(approval, ("never", "always"), f"{q}.require_approval")
            else:
                c.type_(approval, (str, dict), f"{q}.require_approval", "a string or an object")
    return v


#: the service's own search tools, from 2026-04-10 (docs/emulator.md#builtin-search)
BUILTIN_SEARCH = ("web_search", "file_search")
BUILTIN_SEARCH_SINCE = "2026-04-10"


def _tool_types(api: str) -> tuple[str, ...]:
    # source: docs/emulator.md#builtin-search: from 2026-04-10 (SDK 1.2.0, REF 2026-04-10's
    # web_search_call and file_search_call items); v1/models.tsp lists function and mcp only
    if api != V1 and api[:10] >= BUILTIN_SEARCH_SINCE and not api.startswith("2025"):
        return ("function", "mcp", *BUILTIN_SEARCH)
    return ("function", "mcp")


def _builtin_search(c: _Check, tool: dict[str, Any], q: str) -> None:
    """A built-in search tool's definition, in the OpenAI Responses shape its items come from."""
    if tool["type"] == "web_search":
        c.unknown(tool, ("type", "search_context_size", "user_location", "filters"), q)
        if "search_context_size" in tool:
            c.enum(
                tool["search_context_size"], ("low", "medium", "high"), f"{q}.search_context_size"
            )
        for key in ("user_location", "filters"):
            if key in tool:
                c.type_(tool[key], dict, f"{q}.{key}", "an object")
        return
    keys = ("type", "vector_store_ids", "max_num_results", "filters", "ranking_options")
    c.unknown(tool, keys, q)
    stores = tool.get("vector_store_ids")
    if stores is None:
        c.fail(
            f"{q}.vector_store_ids",
            f"Missing required parameter: '{q}.vector_store_ids'.",
            "missing_required_parameter",
        )
    elif c.type_(stores, list, f"{q}.vector_store_ids", "an array"):
        if not stores:
            c.fail(f"{q}.vector_store_ids", "At least one vector store id is required.")
        for i, store in enumerate(stores):
            if c.type_(store, str, f"{q}.vector_store_ids[{i}]", "a string") and not store:
                c.fail(f"{q}.vector_store_ids[{i}]", "A vector store id cannot be empty.")
    if "max_num_results" in tool:
        c.number(tool["max_num_results"], f"{q}.max_num_results", 1, 50, integer=True)
    for key in ("filters", "ranking_options"):
        if key in tool:
            c.type_(tool[key], dict, f"{q}.{key}", "an object")


def _tool_choice(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if isinstance(v, str):
        return v if c.enum(v, ("auto", "none", "required"), p) else _SKIP
    if c.type_(v, dict, p, "a string or an object"):
        c.unknown(v, ("type", "name"), p)
        if c.enum(v.get("type"), ("function",), f"{p}.type") and c.require(v, "name", p):
            return v
    return _SKIP


def _bool(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    return v if c.type_(v, bool, p, "a boolean") else _SKIP


def _temperature(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    # REF says 0.6-1.2 for realtime models, the SDK docstring 0-1: accept the union (open q. 4).
    return v if c.number(v, p, 0.0, 1.2) else _SKIP


def _max_tokens(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if v == "inf":
        return v
    return v if c.number(v, p, 1, MAX_OUTPUT_TOKENS, integer=True) else _SKIP


def _object(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    return v if v is None or c.type_(v, dict, p, "an object") else _SKIP


def _interim(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if v is None:
        return None
    if not c.type_(v, dict, p, "an object"):
        return _SKIP
    return (
        v
        if c.enum(v.get("type"), ("static_interim_response", "llm_interim_response"), f"{p}.type")
        else _SKIP
    )


def _string_list(options: tuple[str, ...]) -> Any:
    def check(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
        if not c.type_(v, list, p, "an array"):
            return _SKIP
        ok = all([c.enum(x, options, f"{p}[{i}]") for i, x in enumerate(v)])
        return v if ok else _SKIP

    return check


def _metadata(c: _Check, v: Any, p: str, api: str, s: dict[str, Any]) -> Any:
    if v is None:
        return None
    if not c.type_(v, dict, p, "an object"):
        return _SKIP
    if len(v) > 16:
        c.fail(p, "metadata supports at most 16 key-value pairs.")
    for key, value in v.items():
        if len(key) > 64:
            c.fail(f"{p}.{key}", "metadata keys can be at most 64 characters long.")
        if c.type_(value, str, f"{p}.{key}", "a string") and len(value) > 512:
            c.fail(f"{p}.{key}", "metadata values can be at most 512 characters long.")
    return v


_FIELD_CHECKS: dict[str, Any] = {
    "model": _model,
    "modalities": _modalities,
    "instructions": _string,
    "voice": _voice,
    "input_audio_format": _enum_field(INPUT_FORMATS),
    "input_audio_sampling_rate": _input_rate,
    "output_audio_format": _enum_field(tuple(OUTPUT_RATES)),
    "turn_detection": _turn_detection,
    "input_audio_noise_reduction": _typed_or_null(
        ("azure_deep_noise_suppression", "near_field", "far_field")
    ),
    "input_audio_echo_cancellation": _echo,
    "input_audio_transcription": _transcription,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _bool,
    "temperature": _temperature,
    "max_response_output_tokens": _max_tokens,
    "reasoning_effort": _enum_field(REASONING),
    "interim_response": _interim,
    "output_audio_timestamp_types": _string_list(("word",)),
    "animation": _object,
    "avatar": _object,
    "include": _string_list(INCLUDE),
    "metadata": _metadata,
}


def check_history(
    current: dict[str, Any],
    update: dict[str, Any],
    new: dict[str, Any],
    *,
    configured: bool,
    client_fields: set[str],
) -> tuple[list[FieldError], list[str]]:
    """Checks that depend on what this connection set before: errors and fidelity-note keys."""
    check = _Check()
    notes: list[str] = []
    if update.get("type") == "realtime":
        # a v1 update (docs/emulator.md#v1-shape): its history rules are the dated fields'
        update = dated_update(update, _Check())
    if "turn_detection" not in update and azure_speech_vad_conflict(new):
        if "turn_detection" in client_fields:  # the client chose that VAD earlier
            check.fail(
                "session.turn_detection.type",
                "When using azure-speech as InputAudioTranscription, turn_detection must be of "
                "type AzureSemanticVAD or AzureMultilingualSemanticVAD",
            )
        else:  # source: docs/emulator.md#azure-speech-default-vad
            notes.append("azure-speech-default-vad")
    if not configured:
        return check.errors, notes
    old_td, new_td = current.get("turn_detection"), update.get("turn_detection", _SKIP)
    if isinstance(old_td, dict) and isinstance(new_td, dict) and "type" in new_td:
        # source: docs/emulator.md#td-type-locked
        if new_td["type"] != old_td.get("type"):
            check.fail(
                "session.turn_detection.type",
                f"turn_detection.type cannot be changed once the session is configured "
                f"(from {old_td.get('type')!r} to {new_td['type']!r}).",
            )
    elif new_td is not _SKIP and (old_td is None) != (new_td is None):
        notes.append("turn-detection-null")  # source: docs/emulator.md#td-null-switch
    if client_fields - set(update):
        notes.append("partial-update")  # source: docs/emulator.md#partial-update
    return check.errors, notes


def azure_speech_vad_conflict(session: dict[str, Any]) -> bool:
    """azure-speech transcription with a VAD it refuses on a realtime model (reported)."""
    td = session.get("turn_detection")
    transcription = session.get("input_audio_transcription")
    return (
        realtime_model(session.get("model"))
        and isinstance(transcription, dict)
        and transcription.get("model") == "azure-speech"
        and isinstance(td, dict)
        and td.get("type") not in AZURE_SEMANTIC_VADS
    )


def _check_combinations(c: _Check, new: dict[str, Any], update: dict[str, Any]) -> None:
    # Refused when the client chose the VAD (the reported case). With the default VAD left in
    # place the service's behaviour is unknown: Connection notes it (azure-speech-default-vad).
    if "turn_detection" in update and azure_speech_vad_conflict(new):
        # source: docs/emulator.md#azure-speech-vad
        c.fail(
            "session.turn_detection.type",
            "When using azure-speech as InputAudioTranscription, turn_detection must be of type "
            "AzureSemanticVAD or AzureMultilingualSemanticVAD",
        )
    modalities = new.get("modalities") or ["text", "audio"]
    if (
        ("input_audio_echo_cancellation" in update or "modalities" in update)
        and new.get("input_audio_echo_cancellation")
        and "audio" not in modalities
    ):
        # source: docs/emulator.md#ec-text-only
        c.fail(
            "session.input_audio_echo_cancellation",
            "Echo cancellation is not supported when modalities are text-only.",
            "ec_not_supported",
        )
    fmt = new.get("input_audio_format", "pcm16")
    if (
        fmt.startswith("g711")
        and "input_audio_sampling_rate" in update
        and new.get("input_audio_sampling_rate") != 8000
    ):
        c.fail("session.input_audio_sampling_rate", "G.711 input audio is sampled at 8000 Hz.")
    if (
        fmt.startswith("g711")
        and "input_audio_format" in update
        and "input_audio_sampling_rate" not in update
    ):
        new["input_audio_sampling_rate"] = 8000  # echoed as 8000 for g711 (TEST)
    if (
        not fmt.startswith("g711")
        and "input_audio_format" in update
        and "input_audio_sampling_rate" not in update
        and new.get("input_audio_sampling_rate") == 8000
    ):
        new["input_audio_sampling_rate"] = 24000
    if "tool_choice" in update and isinstance(new.get("tool_choice"), dict):
        names = {t.get("name") for t in new.get("tools") or [] if isinstance(t, dict)}
        if new["tool_choice"].get("name") not in names:
            c.fail(
                "session.tool_choice.name",
                f"Tool {new['tool_choice'].get('name')!r} is not declared in session.tools.",
            )


# --- api-version v1 ----------------------------------------------------------------------------
# source: azure-rest-api-specs VoiceLive/v1/examples/v1/SessionUpdate.json and v1/models.tsp
# (the GA shape), with the Azure extensions where openapi3/v1/VoiceLive.json puts them; the
# same tables as runner.config.service.to_v1, read the other way (docs/emulator.md#v1-shape).
_V1_SESSION = ("type", "model", *V1_SESSION_ORDER[1:])  # what the client compiles, and model
_V1_INPUT = (
    "format",
    "noise_reduction",
    "echo_cancellation",
    "transcription",
    "turn_detection",
    "channels",
    "multichannel_audio_context_template",
)
_V1_OUTPUT = ("format", "speed", "output_audio_timestamp_types", *V1_VOICE_KEYS.values())
_V1_AUDIO_TYPES = ("audio/pcm", *V1_G711.values())


def dated_update(update: dict[str, Any], check: _Check) -> dict[str, Any]:
    """A v1 ``session`` -> the dated fields it stands for; v1 shape errors go to ``check``."""
    check.unknown(update, _V1_SESSION, "session")
    # source: docs/emulator.md#v1-session-type (OpenAI GA: session.type is required)
    if update.get("type") != "realtime":
        check.fail(
            "session.type",
            f"Invalid value: {update.get('type')!r}. Supported values are: 'realtime'."
            if "type" in update
            else "Missing required parameter: 'session.type'.",
            "invalid_value" if "type" in update else "missing_required_parameter",
        )
    out: dict[str, Any] = {}
    for key in ("model", "instructions", "include", "tools", "tool_choice", "temperature"):
        if key in update:
            out[key] = update[key]
    for key in ("interim_response", "avatar", "animation", "metadata"):
        if key in update:
            out[key] = update[key]
    if "max_output_tokens" in update:
        out["max_response_output_tokens"] = update["max_output_tokens"]
    if "output_modalities" in update:
        _v1_modalities(update["output_modalities"], out, check, "session")
    audio = update.get("audio", {})
    if not check.type_(audio, dict, "session.audio", "an object"):
        return out
    check.unknown(audio, ("input", "output"), "session.audio")
    audio_in, audio_out = audio.get("input", {}), audio.get("output", {})
    if check.type_(audio_in, dict, "session.audio.input", "an object"):
        _v1_input(check, audio_in, out)
    if check.type_(audio_out, dict, "session.audio.output", "an object"):
        _v1_output(check, audio_out, out)
    return out


def _v1_format(check: _Check, fmt: Any, param: str) -> tuple[str, int | None] | None:
    """A v1 format object -> (dated format word, rate or None)."""
    if not check.type_(fmt, dict, param, "an object"):
        return None
    check.unknown(fmt, ("type", "rate"), param)
    if not check.enum(fmt.get("type"), _V1_AUDIO_TYPES, f"{param}.type"):
        return None
    if fmt["type"] != "audio/pcm":
        if "rate" in fmt:  # source: docs/emulator.md#v1-format (G.711 is 8 kHz, no rate)
            check.fail(f"{param}.rate", f"Unknown parameter: '{param}.rate'.", "unknown_parameter")
        return {v: k for k, v in V1_G711.items()}[fmt["type"]], None
    rate = fmt.get("rate", 24000)
    if not check.enum(rate, INPUT_RATES, f"{param}.rate"):  # type: ignore[arg-type]
        return None
    return "pcm16", rate


def _v1_input(check: _Check, audio_in: dict[str, Any], out: dict[str, Any]) -> None:
    p = "session.audio.input"
    check.unknown(audio_in, _V1_INPUT, p)
    if "format" in audio_in:
        fmt = _v1_format(check, audio_in["format"], f"{p}.format")
        if fmt is not None:
            out["input_audio_format"] = fmt[0]
            if fmt[1] is not None:
                out["input_audio_sampling_rate"] = fmt[1]
    for key, dated in (
        ("noise_reduction", "input_audio_noise_reduction"),
        ("transcription", "input_audio_transcription"),
        ("turn_detection", "turn_detection"),
    ):
        if key in audio_in:
            out[dated] = audio_in[key]
    if "echo_cancellation" in audio_in:
        ec = audio_in["echo_cancellation"]
        if check.type_(ec, dict, f"{p}.echo_cancellation", "an object"):
            # v1/models.tsp names no `type`; openapi3/v1 requires server_echo_cancellation
            out["input_audio_echo_cancellation"] = {"type": "server_echo_cancellation", **ec}


def _v1_output(check: _Check, audio_out: dict[str, Any], out: dict[str, Any]) -> None:
    p = "session.audio.output"
    check.unknown(audio_out, _V1_OUTPUT, p)
    if "format" in audio_out:
        fmt = _v1_format(check, audio_out["format"], f"{p}.format")
        if fmt is not None:
            word, rate = fmt
            out["output_audio_format"] = word if rate in (None, 24000) else f"pcm16_{rate}hz"
    if "speed" in audio_out:  # OpenAI GA; the emulator checks it and speaks at one speed
        check.number(audio_out["speed"], f"{p}.speed", 0.25, 1.5)
    if "output_audio_timestamp_types" in audio_out:
        out["output_audio_timestamp_types"] = audio_out["output_audio_timestamp_types"]
    dated_of = {v1: dated for dated, v1 in V1_VOICE_KEYS.items()}
    voice = {dated_of[k]: v for k, v in audio_out.items() if k in dated_of}
    if voice:
        voice.setdefault("type", "openai")  # source: v1/models.tsp voice_type default openai
        if "name" not in voice and voice["type"] != "avatar-voice-sync":
            check.fail(
                f"{p}.voice",
                f"Missing required parameter: '{p}.voice'.",
                "missing_required_parameter",
            )
        out["voice"] = voice


def v1_echo(session: dict[str, Any]) -> dict[str, Any]:
    """The emulator's (dated-shape) effective session as ``session.created``/``updated``
    should echo it on v1: the GA shape, plus the server-set fields (docs/emulator.md#v1-shape).
    Fields v1 has no place for (``parallel_tool_calls``) are left out."""
    shaped, _ = to_v1(session)
    server: dict[str, Any] = {}
    for key in ("object", "id", "model", "expires_at", "agent"):
        if key in session:
            server[key] = session[key]
    return {**server, **shaped}


def dated_keys(update: dict[str, Any], api_version: str) -> set[str]:
    """The dated top-level session fields an update sets: on v1, the fields its GA shape stands
    for (``audio.input.turn_detection`` is ``turn_detection``), so the history rules that ask
    what the client chose before (docs/emulator.md#azure-speech-vad, #partial-update) read
    the same on every api-version."""
    if api_version == V1:
        return set(dated_update(update, _Check()))
    return set(update)


# source: docs/emulator.md#v1-response-create: VoiceLive/v1/events.tsp ClientEventResponseCreate
# and v1/models.tsp ResponseCreateParams (OpenAI GA RealtimeResponseCreateParams, with Voice
# Live's additional_instructions, tools and tool_choice).
_V1_RESPONSE = (
    "output_modalities",
    "instructions",
    "additional_instructions",
    "audio",
    "conversation",
    "input",
    "metadata",
    "max_output_tokens",
    "prompt",
    "tools",
    "tool_choice",
)
#: Voice Live's own dated response fields that models.tsp does not list; versioning.md section
#: 6 makes v1 a superset of 2026-04-10, so they are taken as they are, with a fidelity note.
V1_RESPONSE_EXTENSIONS = ("pre_generated_assistant_message", "interim_response", "invoke_input")
_V1_RESPONSE_OUTPUT = ("format", "voice", *tuple(V1_VOICE_KEYS.values())[1:])


def v1_response(params: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError], bool]:
    """A v1 ``response.create`` ``response`` -> the dated per-response fields the emulator reads,
    the errors (``param`` under ``response``), and whether a Voice Live extension was used."""
    check = _Check()
    check.unknown(params, (*_V1_RESPONSE, *V1_RESPONSE_EXTENSIONS), "response")
    out: dict[str, Any] = {k: v for k, v in params.items() if k in _V1_RESPONSE}
    out.pop("output_modalities", None)
    out.pop("audio", None)
    if "output_modalities" in params:
        _v1_modalities(params["output_modalities"], out, check, "response")
    audio = params.get("audio", {})
    if check.type_(audio, dict, "response.audio", "an object"):
        check.unknown(audio, ("output",), "response.audio")
        audio_out = audio.get("output", {})
        if check.type_(audio_out, dict, "response.audio.output", "an object"):
            check.unknown(audio_out, _V1_RESPONSE_OUTPUT, "response.audio.output")
            shaped: dict[str, Any] = {}
            inner = _Check()
            known = {k: audio_out[k] for k in _V1_RESPONSE_OUTPUT if k in audio_out}
            _v1_output(inner, known, shaped)
            for err in inner.errors:  # the same checks as the session's, named under response
                param = (err.param or "").replace("session.", "response.", 1)
                check.fail(param, err.message.replace("session.", "response."), err.code)
            if "voice" in shaped:  # its value checked as the session's voice is
                _voice(check, shaped["voice"], "response.voice", V1, {})
            out.update(shaped)
    extended = False
    for key in V1_RESPONSE_EXTENSIONS:
        if key in params:
            out[key] = params[key]
            extended = True
    return out, check.errors, extended


def _v1_modalities(mods: Any, out: dict[str, Any], check: _Check, where: str) -> None:
    """v1's ``output_modalities`` as the dated ``modalities`` (a session's or a response's)."""
    # source: docs/emulator.md#v1-output-modalities (OpenAI GA: ["text"] or ["audio"])
    if mods == ["audio"]:
        out["modalities"] = ["text", "audio"]
    elif mods == ["text"]:
        out["modalities"] = ["text"]
    else:
        check.fail(
            f"{where}.output_modalities",
            f"Invalid value: {mods!r}. Supported values are: ['text'], ['audio'].",
        )
