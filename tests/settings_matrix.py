"""Every leaf setting of the profile schema, with a one-setting profile and what it must do.

tests/test_settings_matrix.py runs each entry as a live session (real CLI, real SDK, the
emulator) and checks the expectations; it fails when the schema has a leaf with no entry here,
so a new field cannot ship untested. The table in docs/profiles.md is generated from this file:

    .venv/bin/python tests/settings_matrix.py          # prints the markdown table
    .venv/bin/python tests/settings_matrix.py --write  # rewrites it in docs/profiles.md
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "runner" / "config" / "schema" / "profile.schema.json"
SECRET = "tok-SECRET-5b7e21c9"  # the value of ${env:MATRIX_TOKEN}; must never be shown

PLUGIN = '''\
import asyncio

from runner.plugins import tool


@tool
def echo_back(text: str = "") -> str:
    """Say the text back."""
    return text or "nothing"


@tool
async def hang_forever() -> str:
    """Never answers (a hung tool)."""
    await asyncio.Event().wait()
    return "never"
'''
FILES = {
    "tools/plugin.py": PLUGIN,
    "base.yaml": "name: base\ninstructions: From the base profile.\ntemperature: 0.9\n",
    "persona.md.j2": "You are {{ 'a persona' | upper }}.\n",
}


@dataclass(frozen=True)
class Check:
    """One expectation. ``kind``: session | absent | query | header | client | server |
    no_server | seen | unseen; ``path`` is dotted inside the first session.update's session."""

    kind: str
    path: str
    value: Any = None


def wire(path: str, value: Any) -> Check:
    return Check("session", path, value)


def absent(path: str) -> Check:
    return Check("absent", path)


def query(name: str, value: str) -> Check:
    return Check("query", name, value)


def header(name: str, value: str) -> Check:
    return Check("header", name, value)


def client(event_type: str, contains: str = "") -> Check:
    """The runner sent an event of this type (whose JSON contains ``contains``)."""
    return Check("client", event_type, contains)


def server(event_type: str) -> Check:
    return Check("server", event_type)


def no_server(event_type: str) -> Check:
    return Check("no_server", event_type)


def seen(text: str) -> Check:
    """Shown on the console or written to the conversation/technical log."""
    return Check("seen", text)


def unseen(text: str) -> Check:
    return Check("unseen", text)


def _flow(
    *,
    start: str = "ask",
    ask: str = "",
    size: str = "{type: integer}",
    collect: bool = True,
    transitions: str = "[{to: done}]",
    done: str = "{end: true, goodbye: {text: 'Bye now, {{ size }}.'}}",
    extra: str = "",
) -> str:
    """A two-node flow: `ask` collects `size`, then `done` ends; parts can be replaced."""
    if not collect:
        done = done.replace("{{ size }}", "you")
    return (
        f"flow:\n  start: {start}\n  nodes:\n    ask:\n      instructions: Ask the size.\n"
        + (f"      collect: {{size: {size}}}\n" if collect else "")
        + ask
        + f"      transitions: {transitions}\n    done: {done}\n"
        + extra
    )


@dataclass(frozen=True)
class Setting:
    leaf: str  # schema path: a.b, list items as a[].b
    yaml: str  # the profile's lines (name and instructions are added when missing)
    checks: tuple[Check, ...]
    effect: str  # what it does at run time, in the user's words
    emulator: str  # acts | checks | records | client (the runner alone acts on it)
    say: str = "hello"
    covered_by: str = ""  # a deeper live test of the runtime effect (pytest node id)
    connections: int = 1  # a flow's hand-over to an agent opens a second one
    audio: bool = False  # speak WAV (tests/scenarios/audio) instead of typing: `--input`

    def profile(self) -> str:
        text = self.yaml
        if not text.startswith("name:") and "\nname:" not in text:
            text = "name: matrix\n" + text
        has_instructions = any(line.startswith("instructions:") for line in text.splitlines())
        if not has_instructions and "extends:" not in text and "agent:" not in text:
            text += "instructions: Be brief.\n"
        return text

    def compiled(self) -> str:
        """The compiled field for the docs table."""
        for c in self.checks:
            if c.kind == "session":
                return f"`{c.path}`"
            if c.kind == "query":
                return f"query `{c.path}`"
            if c.kind == "header":
                return f"header `{c.path}`"
        if any(c.kind == "absent" for c in self.checks):
            return "not sent"
        return "—"


def S(leaf: str, yaml: str, *checks: Check, effect: str, emulator: str, **kw: Any) -> Setting:  # noqa: N802
    return Setting(leaf, yaml, checks, effect, emulator, **kw)


_AV = "avatar: {character: lisa, "
_TD = "turn_detection: {type: azure_semantic_vad, "
_EOU = "end_of_utterance_detection: {model: semantic_detection_v1"
_MCP = "mcp_servers: [{label: docs, url: 'https://mcp.example/mcp'"
_GL = "connection: {model: gpt-live-1}\nvoice: marin\n"
_TRANSLATE = "Translate everything the caller says from "
_FN = {"type": "function", "name": "echo_back", "description": "Say the text back."}

# fmt: off
MATRIX: tuple[Setting, ...] = (
    S("name", "name: matrix-named\n", seen("_matrix-named_conversation.log"),
      effect="names the conversation, its log files and JUnit cases", emulator="client"),
    S("description", "description: A profile that describes itself.\n", absent("description"),
      effect="documentation only: shown by `vlrun explain`, never sent", emulator="client"),
    S("extends", "extends: base.yaml\n", wire("instructions", "From the base profile."),
      wire("temperature", 0.9),
      effect="inherits every setting of the base profile, which this one overrides",
      emulator="client"),
    S("connection.endpoint", "connection:\n  endpoint: ${env:MATRIX_ENDPOINT}\n",
      seen("p.yaml: connection.endpoint), model gpt-realtime"),
      effect="the service the runner connects to (before AZURE_VOICELIVE_ENDPOINT)",
      emulator="client"),
    S("connection.model", "connection:\n  model: gpt-realtime-mini\n",
      query("model", "gpt-realtime-mini"), seen("model gpt-realtime-mini"),
      effect="the model deployment, in the WebSocket URL and the banner", emulator="checks"),
    S("connection.byom",
      "connection:\n  model: my-gpt-41\n  byom: byom-azure-openai-chat-completion\n",
      query("profile", "byom-azure-openai-chat-completion"), query("model", "my-gpt-41"),
      effect="your own deployment in the Foundry resource (BYOM), as the `profile` query",
      emulator="records"),
    S("connection.api_version", "connection:\n  api_version: 2025-05-01-preview\n",
      query("api-version", "2025-05-01-preview"),
      effect="the API version; compile adapts field names to it", emulator="acts"),
    S("connection.agent.name", "connection:\n  agent: {name: helper, project: proj}\n",
      query("agent-name", "helper"), absent("instructions"), seen("agent helper"),
      effect="binds a Foundry agent, which brings its own instructions", emulator="acts"),
    S("connection.agent.project", "connection:\n  agent: {name: helper, project: proj-x}\n",
      query("agent-project-name", "proj-x"),
      effect="the Foundry project of the agent", emulator="checks"),
    S("connection.agent.version", "connection:\n  agent: {name: helper, project: p, version: 3}\n",
      query("agent-version", "3"), effect="pins the agent version", emulator="records"),
    S("connection.agent.conversation_id",
      "connection:\n  agent: {name: helper, project: p, conversation_id: conv-42}\n",
      query("conversation-id", "conv-42"), effect="continues an agent conversation",
      emulator="records"),
    S("connection.agent.id", "connection:\n  agent: {id: asst_1, project: proj}\n",
      query("agent-id", "asst_1"), query("agent-access-token", "vlrun-emulator-agent-token"),
      seen("agent asst_1 (classic)"),
      effect="binds a classic agent; the runner fetches an Entra agent token", emulator="acts"),
    S("connection.agent.connection_string",
      "connection:\n  agent: {id: asst_1, connection_string: 'eastus.api.azureml.ms;s;rg;p'}\n",
      query("agent-connection-string", "eastus.api.azureml.ms;s;rg;p"),
      effect="a hub-based project for a classic agent (token scope changes)", emulator="acts"),
    S("connection.agent.identity_client_id",
      "connection:\n  agent: {name: helper, project: p, identity_client_id: 0000-1111}\n",
      query("agent-authentication-identity-client-id", "0000-1111"),
      effect="the managed identity the agent uses", emulator="records"),
    S("connection.agent.invoke_input",
      "connection:\n  api_version: 2026-06-01-preview\n"
      "  agent: {name: hosted, project: p, invoke_input: {locale: en-US}}\ngreeting: true\n",
      client("response.create", '"invoke_input": {"locale": "en-US"}'),
      effect="a hosted agent's invocation input, on each response.create the runner sends",
      emulator="records"),
    S("connection.agent.foundry_resource",
      "connection:\n  agent: {name: helper, project: p, foundry_resource: my-foundry}\n",
      query("foundry-resource-override", "my-foundry"),
      effect="a Foundry resource other than the endpoint's", emulator="records"),
    S("connection.query", "connection:\n  query: {feature: preview-x}\n",
      query("feature", "preview-x"), effect="extra query parameters on the URL",
      emulator="records"),
    S("connection.headers", "connection:\n  headers: {X-Trace-Token: '${env:MATRIX_TOKEN}'}\n",
      header("X-Trace-Token", SECRET), unseen(SECRET),
      effect="extra handshake headers; secret values masked everywhere", emulator="records"),
    S("connection.credential_scopes",
      "connection:\n  credential_scopes: ['https://cognitiveservices.azure.com/.default']\n",
      absent("credential_scopes"),
      effect="token scopes for Entra sign-in (no effect with an API key)", emulator="client",
      covered_by="tests/test_profile_fields_live.py::test_connect_options_reach_the_handshake_and_stay_masked"),
    S("connection.preview", "connection:\n  api_version: v1\n  preview: [BargeIn, Transcription]\n",
      query("api-version", "v1"),
      header("VoiceLive-Features", "BargeIn=V1Preview, Transcription=V1Preview"),
      wire("type", "realtime"),
      effect="v1 preview features, sent as the VoiceLive-Features header", emulator="checks"),
    S("vars.*", "vars: {city: Paris}\ninstructions: 'Talk about {{ city }}.'\n",
      wire("instructions", "Talk about Paris."), effect="values for the instructions template",
      emulator="client"),
    S("vars.*.type", "vars: {n: {type: integer, default: 3}}\ninstructions: 'Count {{ n + 1 }}.'\n",
      wire("instructions", "Count 4."), effect="the variable's type (for --var parsing)",
      emulator="client"),
    S("vars.*.default", "vars: {city: {default: Rome}}\ninstructions: 'Talk about {{ city }}.'\n",
      wire("instructions", "Talk about Rome."), effect="the value when --var gives none",
      emulator="client"),
    S("vars.*.description", "vars: {city: {default: Oslo, description: The city}}\n"
      "instructions: 'Talk about {{ city }}.'\n",
      wire("instructions", "Talk about Oslo."), effect="documents the variable (`vlrun explain`)",
      emulator="client"),
    S("instructions", "instructions: Speak like a pirate.\n",
      wire("instructions", "Speak like a pirate."), effect="the system instructions",
      emulator="records"),
    S("instructions.file", "instructions: {file: persona.md.j2}\n",
      wire("instructions", "You are A PERSONA.\n"),
      effect="instructions from a template file beside the profile", emulator="records"),
    S("voice", "voice: en-US-JennyNeural\n",
      wire("voice", {"name": "en-US-JennyNeural", "type": "azure-standard"}),
      effect="the voice by name (family inferred)", emulator="checks"),
    S("voice.type", "voice: {name: alloy, type: openai}\n", wire("voice.type", "openai"),
      effect="the voice family", emulator="checks"),
    S("voice.name", "voice: {name: en-US-GuyNeural}\n", wire("voice.name", "en-US-GuyNeural"),
      effect="the voice", emulator="checks"),
    S("voice.endpoint_id", "voice: {name: MyVoice, type: azure-custom, endpoint_id: ep-123}\n",
      wire("voice.endpoint_id", "ep-123"), effect="a custom voice's deployment",
      emulator="checks"),
    S("voice.model", "voice: {name: spk-1, type: azure-personal, model: DragonLatestNeural}\n",
      wire("voice.model", "DragonLatestNeural"), effect="a personal voice's base model",
      emulator="checks"),
    S("voice.temperature", "voice: {name: en-US-Ava:DragonHDLatestNeural, temperature: 0.6}\n",
      wire("voice.temperature", 0.6), effect="HD voice variation", emulator="checks"),
    S("voice.rate", "voice: {name: en-US-JennyNeural, rate: '1.2'}\n", wire("voice.rate", "1.2"),
      effect="speaking rate", emulator="records"),
    S("voice.pitch", "voice: {name: en-US-JennyNeural, pitch: '+5%'}\n",
      wire("voice.pitch", "+5%"), effect="pitch", emulator="records"),
    S("voice.volume", "voice: {name: en-US-JennyNeural, volume: '+10%'}\n",
      wire("voice.volume", "+10%"), effect="volume", emulator="records"),
    S("voice.style", "voice: {name: en-US-JennyNeural, style: cheerful}\n",
      wire("voice.style", "cheerful"), effect="speaking style", emulator="records"),
    S("voice.locale", "voice: {name: en-US-Ava:DragonHDLatestNeural, locale: en-GB}\n",
      wire("voice.locale", "en-GB"), effect="the HD voice's locale", emulator="records"),
    S("voice.prefer_locales",
      "voice: {name: en-US-Ava:DragonHDLatestNeural, prefer_locales: [en-GB]}\n",
      wire("voice.prefer_locales", ["en-GB"]), effect="preferred locales", emulator="records"),
    S("voice.custom_lexicon_url",
      "voice: {name: en-US-JennyNeural, custom_lexicon_url: 'https://example.com/lex.xml'}\n",
      wire("voice.custom_lexicon_url", "https://example.com/lex.xml"),
      effect="a pronunciation lexicon", emulator="records"),
    S("voice.custom_text_normalization_url",
      "voice: {name: en-US-JennyNeural, custom_text_normalization_url: 'https://example.com/t'}\n",
      wire("voice.custom_text_normalization_url", "https://example.com/t"),
      effect="custom text normalisation", emulator="records"),
    S("modalities", "modalities: [text]\n", wire("modalities", ["text"]),
      no_server("response.audio.delta"), seen("assistant: [emulator] You said: hello"),
      effect="text-only replies: no audio is sent or played", emulator="acts"),
    S("turn_detection", "turn_detection: server_vad\n",
      wire("turn_detection", {"type": "server_vad"}), effect="the end-of-turn detector by name",
      emulator="acts"),
    S("turn_detection.type", "turn_detection: {type: semantic_vad}\n",
      wire("turn_detection.type", "semantic_vad"), effect="the end-of-turn detector",
      emulator="checks"),
    S("turn_detection.threshold", "turn_detection: {type: server_vad, threshold: 0.7}\n",
      wire("turn_detection.threshold", 0.7), effect="speech detection sensitivity",
      emulator="acts"),
    S("turn_detection.prefix_padding_ms",
      "turn_detection: {type: server_vad, prefix_padding_ms: 400}\n",
      wire("turn_detection.prefix_padding_ms", 400), effect="audio kept before speech starts",
      emulator="acts"),
    S("turn_detection.silence_duration_ms",
      "turn_detection: {type: server_vad, silence_duration_ms: 700}\n",
      wire("turn_detection.silence_duration_ms", 700), effect="silence that ends a turn",
      emulator="acts"),
    S("turn_detection.speech_duration_ms", _TD + "speech_duration_ms: 120}\n",
      wire("turn_detection.speech_duration_ms", 120), effect="shortest sound counted as speech",
      emulator="acts"),
    S("turn_detection.remove_filler_words", _TD + "remove_filler_words: true}\n",
      wire("turn_detection.remove_filler_words", True), effect="fillers (um, uh) do not end turns",
      emulator="checks"),
    S("turn_detection.languages", "turn_detection: {type: azure_semantic_vad_multilingual, "
      "languages: [en, fr]}\n", wire("turn_detection.languages", ["en", "fr"]),
      effect="languages of the multilingual detector", emulator="checks"),
    S("turn_detection.create_response",
      "turn_detection: {type: server_vad, create_response: false}\n",
      wire("turn_detection.create_response", False),
      effect="no automatic reply at end of speech; the runner asks for it", emulator="acts"),
    S("turn_detection.interrupt_response",
      "turn_detection: {type: server_vad, interrupt_response: false}\n",
      wire("turn_detection.interrupt_response", False), effect="speech does not cancel a reply",
      emulator="acts"),
    S("turn_detection.auto_truncate", _TD + "auto_truncate: true}\n",
      wire("turn_detection.auto_truncate", True), effect="the service truncates on barge-in",
      emulator="acts"),
    S("turn_detection.eagerness", "turn_detection: {type: semantic_vad, eagerness: low}\n",
      wire("turn_detection.eagerness", "low"), effect="how quickly semantic VAD ends a turn",
      emulator="checks"),
    S("turn_detection.end_of_utterance_detection.model", _TD + _EOU + "}}\n",
      wire("turn_detection.end_of_utterance_detection.model", "semantic_detection_v1"),
      effect="semantic end-of-utterance model", emulator="checks"),
    S("turn_detection.end_of_utterance_detection.threshold_level",
      _TD + _EOU + ", threshold_level: high}}\n",
      wire("turn_detection.end_of_utterance_detection.threshold_level", "high"),
      effect="end-of-utterance sensitivity", emulator="checks"),
    S("turn_detection.end_of_utterance_detection.timeout_ms", _TD + _EOU + ", timeout_ms: 1500}}\n",
      wire("turn_detection.end_of_utterance_detection.timeout_ms", 1500),
      effect="longest wait for the end of an utterance", emulator="checks"),
    S("turn_detection.end_of_utterance_detection.threshold",
      "connection: {api_version: 2025-05-01-preview}\n" + _TD + _EOU + ", threshold: 0.02}}\n",
      wire("turn_detection.end_of_utterance_detection.threshold", 0.02),
      effect="end-of-utterance sensitivity (older API versions)", emulator="checks"),
    S("turn_detection.end_of_utterance_detection.timeout",
      "connection: {api_version: 2025-05-01-preview}\n" + _TD + _EOU + ", timeout: 3}}\n",
      wire("turn_detection.end_of_utterance_detection.timeout", 3),
      effect="end-of-utterance wait in seconds (older API versions)", emulator="checks"),
    S("audio.input_format", "audio: {input_format: g711_ulaw}\n",
      wire("input_audio_format", "g711_ulaw"), effect="the runner encodes the microphone as G.711",
      emulator="acts", covered_by="tests/test_g711.py"),
    S("audio.input_sampling_rate", "audio: {input_sampling_rate: 16000}\n",
      wire("input_audio_sampling_rate", 16000), effect="the microphone is captured at this rate",
      emulator="acts"),
    S("audio.output_format", "audio: {output_format: pcm16_16000hz}\n",
      wire("output_audio_format", "pcm16_16000hz"), effect="reply audio format; played resampled",
      emulator="acts"),
    S("audio.noise_reduction", "audio: {noise_reduction: azure_deep_noise_suppression}\n",
      wire("input_audio_noise_reduction", {"type": "azure_deep_noise_suppression"}),
      effect="server-side noise suppression", emulator="checks"),
    S("audio.echo_cancellation", "audio: {echo_cancellation: true}\n",
      wire("input_audio_echo_cancellation", {"type": "server_echo_cancellation"}),
      effect="server-side echo cancellation", emulator="acts"),
    S("audio.echo_cancellation.reference_source",
      "audio: {echo_cancellation: {reference_source: server}}\n",
      wire("input_audio_echo_cancellation.reference_source", "server"),
      effect="where the echo reference comes from", emulator="acts"),
    S("audio.echo_cancellation.channels",
      "audio: {echo_cancellation: {reference_source: client, channels: 2}}\n",
      wire("input_audio_echo_cancellation.channels", 2),
      effect="a stereo (mic + reference) input", emulator="checks"),
    S("audio.word_timestamps", "voice: en-US-JennyNeural\naudio: {word_timestamps: true}\n",
      wire("output_audio_timestamp_types", ["word"]), server("response.audio_timestamp.delta"),
      effect="word timings for the reply audio, kept in the trace", emulator="acts"),
    S("transcription", "transcription: false\n", wire("input_audio_transcription", None),
      effect="`false`: spoken turns are not transcribed", emulator="acts"),
    S("transcription.model", "transcription: {model: whisper-1}\n",
      wire("input_audio_transcription.model", "whisper-1"),
      effect="spoken turns are transcribed into the conversation log", emulator="acts"),
    S("transcription.language", "transcription: {model: azure-speech, language: fr-FR}\n",
      wire("input_audio_transcription.language", "fr-FR"), effect="transcription language",
      emulator="records"),
    S("transcription.phrase_list", "transcription: {model: azure-speech, phrase_list: [Contoso]}\n",
      wire("input_audio_transcription.phrase_list", ["Contoso"]), effect="recognition hints",
      emulator="records"),
    S("transcription.custom_speech",
      "transcription: {model: azure-speech, custom_speech: {en-US: cs-endpoint-1}}\n",
      wire("input_audio_transcription.custom_speech", {"en-US": "cs-endpoint-1"}),
      effect="custom speech models per locale", emulator="records"),
    S("transcription.prompt",
      "transcription: {model: gpt-4o-transcribe, prompt: 'Expect names.'}\n",
      wire("input_audio_transcription.prompt", "Expect names."), effect="transcription hints",
      emulator="records"),
    S("transcription.include", "transcription: {model: azure-speech, include: [logprobs]}\n",
      wire("include", ["item.input_audio_transcription.logprobs"]),
      absent("input_audio_transcription.include"),
      effect="extra transcription detail, session-wide", emulator="checks"),
    S("animation.model_name", "animation: {model_name: default}\n",
      wire("animation.model_name", "default"), effect="the animation model", emulator="checks"),
    S("animation.outputs", "animation: {outputs: [viseme_id]}\n",
      wire("animation.outputs", ["viseme_id"]), server("response.animation_viseme.delta"),
      no_server("response.animation_blendshapes.delta"),
      effect="viseme or blendshape events, counted in the trace", emulator="acts"),
    S("avatar.type", _AV + "type: video-avatar}\n", wire("avatar.type", "video-avatar"),
      effect="avatar kind", emulator="checks"),
    S("avatar.character", "avatar: {character: lisa}\n", wire("avatar.character", "lisa"),
      effect="the avatar", emulator="checks"),
    S("avatar.style", _AV + "style: casual-sitting}\n", wire("avatar.style", "casual-sitting"),
      effect="avatar style", emulator="records"),
    S("avatar.model", _AV + "type: photo-avatar, model: vasa-1}\n", wire("avatar.model", "vasa-1"),
      effect="photo-avatar model", emulator="checks"),
    S("avatar.customized", "avatar: {character: my-avatar, customized: true}\n",
      wire("avatar.customized", True), effect="a custom avatar", emulator="records"),
    S("avatar.output_protocol", _AV + "output_protocol: websocket}\n",
      wire("avatar.output_protocol", "websocket"), effect="video transport", emulator="checks"),
    S("avatar.output_audit_audio", _AV + "output_audit_audio: true}\n",
      wire("avatar.output_audit_audio", True), effect="audio copy for audit", emulator="records"),
    S("avatar.ice_servers[].urls", _AV + "ice_servers: [{urls: ['stun:stun.example:3478']}]}\n",
      wire("avatar.ice_servers", [{"urls": ["stun:stun.example:3478"]}]),
      effect="ICE servers for WebRTC video", emulator="records"),
    S("avatar.ice_servers[].username",
      _AV + "ice_servers: [{urls: ['turn:t.example'], username: u1}]}\n",
      wire("avatar.ice_servers", [{"urls": ["turn:t.example"], "username": "u1"}]),
      effect="TURN user name", emulator="records"),
    S("avatar.ice_servers[].credential",
      _AV + "ice_servers: [{urls: ['turn:t'], username: u, credential: '${env:MATRIX_TOKEN}'}]}\n",
      wire("avatar.ice_servers", [{"urls": ["turn:t"], "username": "u", "credential": SECRET}]),
      unseen(SECRET), effect="TURN credential, from the environment, masked", emulator="records"),
    S("avatar.video.bitrate", _AV + "video: {bitrate: 2000000}}\n",
      wire("avatar.video.bitrate", 2000000), effect="video bitrate", emulator="records"),
    S("avatar.video.codec", _AV + "video: {codec: h264}}\n", wire("avatar.video.codec", "h264"),
      effect="video codec", emulator="checks"),
    S("avatar.video.gop_size", _AV + "video: {gop_size: 60}}\n", wire("avatar.video.gop_size", 60),
      effect="keyframe interval", emulator="records"),
    S("avatar.video.crop.top_left",
      _AV + "video: {crop: {top_left: [10, 20], bottom_right: [900, 700]}}}\n",
      wire("avatar.video.crop.top_left", [10, 20]), effect="crop corner", emulator="records"),
    S("avatar.video.crop.bottom_right",
      _AV + "video: {crop: {top_left: [0, 0], bottom_right: [640, 480]}}}\n",
      wire("avatar.video.crop.bottom_right", [640, 480]), effect="crop corner", emulator="records"),
    S("avatar.video.resolution.width", _AV + "video: {resolution: {width: 1280, height: 720}}}\n",
      wire("avatar.video.resolution.width", 1280), effect="video width", emulator="records"),
    S("avatar.video.resolution.height", _AV + "video: {resolution: {width: 1920, height: 1080}}}\n",
      wire("avatar.video.resolution.height", 1080), effect="video height", emulator="records"),
    S("avatar.video.background.color", _AV + "video: {background: {color: '#00FF00FF'}}}\n",
      wire("avatar.video.background.color", "#00FF00FF"), effect="background colour",
      emulator="records"),
    S("avatar.video.background.image_url",
      _AV + "video: {background: {image_url: 'https://example.com/bg.png'}}}\n",
      wire("avatar.video.background.image_url", "https://example.com/bg.png"),
      effect="background image", emulator="records"),
    S("avatar.scene.zoom", _AV + "scene: {zoom: 1.5}}\n", wire("avatar.scene.zoom", 1.5),
      effect="photo-avatar framing", emulator="records"),
    S("avatar.scene.position_x", _AV + "scene: {position_x: 0.1}}\n",
      wire("avatar.scene.position_x", 0.1), effect="photo-avatar framing", emulator="records"),
    S("avatar.scene.position_y", _AV + "scene: {position_y: 0.2}}\n",
      wire("avatar.scene.position_y", 0.2), effect="photo-avatar framing", emulator="records"),
    S("avatar.scene.rotation_x", _AV + "scene: {rotation_x: 0.3}}\n",
      wire("avatar.scene.rotation_x", 0.3), effect="photo-avatar head pose", emulator="records"),
    S("avatar.scene.rotation_y", _AV + "scene: {rotation_y: 0.4}}\n",
      wire("avatar.scene.rotation_y", 0.4), effect="photo-avatar head pose", emulator="records"),
    S("avatar.scene.rotation_z", _AV + "scene: {rotation_z: 0.5}}\n",
      wire("avatar.scene.rotation_z", 0.5), effect="photo-avatar head pose", emulator="records"),
    S("avatar.scene.amplitude", _AV + "scene: {amplitude: 0.6}}\n",
      wire("avatar.scene.amplitude", 0.6), effect="photo-avatar motion", emulator="records"),
    S("temperature", "temperature: 0.7\n", wire("temperature", 0.7),
      effect="model sampling temperature", emulator="checks"),
    S("max_response_tokens", "max_response_tokens: 300\n", wire("max_response_output_tokens", 300),
      effect="longest reply (the emulator cuts it, status incomplete)", emulator="acts"),
    S("reasoning_effort", "reasoning_effort: low\n", wire("reasoning_effort", "low"),
      effect="reasoning effort of reasoning models", emulator="checks"),
    S("tool_choice", "tools: [echo_back]\ntool_choice: none\n", wire("tool_choice", "none"),
      no_server("response.function_call_arguments.done"), unseen("[tool] echo_back"),
      say="please echo_back this", effect="whether and which tool the model must call",
      emulator="acts"),
    S("parallel_tool_calls", "tools: [echo_back]\nparallel_tool_calls: false\n",
      wire("parallel_tool_calls", False), effect="one tool call at a time", emulator="acts",
      covered_by="tests/test_tool_roundtrip.py"),
    S("interim_response.type", "interim_response: {type: static, texts: ['One moment.']}\n",
      wire("interim_response.type", "static_interim_response"),
      effect="filler speech while the model is slow or a tool runs", emulator="checks"),
    S("interim_response.triggers", "tools: [echo_back]\n"
      "interim_response: {type: static, triggers: [tool], texts: ['One moment.']}\n",
      wire("interim_response.triggers", ["tool"]), seen("One moment."), say="please echo_back it",
      effect="when interim speech starts (shown and logged as [interim])", emulator="acts"),
    S("interim_response.latency_threshold_ms", "interim_response: {type: static, "
      "triggers: [latency], latency_threshold_ms: 800, texts: ['One moment.']}\n",
      wire("interim_response.latency_threshold_ms", 800), effect="delay before interim speech",
      emulator="checks"),
    S("interim_response.texts", "interim_response: {type: static, texts: ['Hold on.', 'Wait.']}\n",
      wire("interim_response.texts", ["Hold on.", "Wait."]), effect="the fixed interim phrases",
      emulator="checks"),
    S("interim_response.model", "interim_response: {type: llm, model: gpt-4o-mini}\n",
      wire("interim_response.model", "gpt-4o-mini"), effect="model for generated interim speech",
      emulator="checks"),
    S("interim_response.instructions",
      "interim_response: {type: llm, instructions: 'Say you are looking.'}\n",
      wire("interim_response.instructions", "Say you are looking."),
      effect="what generated interim speech says", emulator="checks"),
    S("interim_response.max_completion_tokens",
      "interim_response: {type: llm, max_completion_tokens: 40}\n",
      wire("interim_response.max_completion_tokens", 40), effect="length of interim speech",
      emulator="checks"),
    S("tools[]", "tools: [echo_back]\n",
      wire("tools", [{**_FN, "parameters": {"type": "object", "properties": {"text": {
          "type": "string", "default": ""}}, "additionalProperties": False}}]),
      client("conversation.item.create", "function_call_output"), seen("[tool] echo_back"),
      say="please echo_back this", effect="a plugin tool by name; the runner calls it",
      emulator="acts"),
    S("tools[].name", "tools: [{name: echo_back}]\n", wire("tools.0.name", "echo_back"),
      seen("[tool] echo_back -> \"please echo_back this\""), say="please echo_back this",
      effect="the plugin tool to bind", emulator="acts"),
    S("tools[].description", "tools: [{name: echo_back, description: 'Repeat the text.'}]\n",
      wire("tools.0.description", "Repeat the text."),
      effect="what the model is told the tool does",
      emulator="records"),
    S("tools[].timeout_s", "tools: [{name: hang_forever, timeout_s: 0.2}]\n",
      wire("tools.0.name", "hang_forever"), absent("tools.0.timeout_s"),
      client("conversation.item.create", "did not finish within 0.2 s"),
      seen("timed out after 0.2 s"),
      say="call hang_forever now", effect="a call that runs longer gets a timeout error result",
      emulator="client"),
    S("tools[].cancel_on_barge_in", "tools: [{name: echo_back, cancel_on_barge_in: false}]\n",
      absent("tools.0.cancel_on_barge_in"),
      effect="barge-in leaves this tool running (default: cancelled)", emulator="client",
      covered_by="tests/test_live_regressions.py"),
    S("tools[].parameters", "tools: [{name: lookup_order, parameters: {type: object, "
      "properties: {order: {type: string}}, required: [order]}}]\n",
      wire("tools.0.parameters", {"type": "object", "properties": {"order": {"type": "string"}},
                                  "required": ["order"]}),
      effect="the tool's JSON Schema when no plugin defines it (else checked against it)",
      emulator="acts"),
    S("tool_timeout_s", "tools: [hang_forever]\ntool_timeout_s: 0.2\n",
      client("conversation.item.create", "did not finish within 0.2 s"),
      seen("timed out after 0.2 s"),
      say="call hang_forever now", effect="default timeout of every tool call", emulator="client"),
    S("mcp_servers[].label", _MCP.replace("/mcp'", "/sse'") + "}]\n",
      wire("tools.0.server_label", "docs"), effect="the MCP server's name", emulator="acts"),
    S("mcp_servers[].url", _MCP + "}]\n", wire("tools.0.server_url", "https://mcp.example/mcp"),
      effect="where the service reaches the MCP server", emulator="records"),
    S("mcp_servers[].allowed_tools", _MCP + ", allowed_tools: [search]}]\n",
      wire("tools.0.allowed_tools", ["search"]), effect="which MCP tools the model may use",
      emulator="acts"),
    S("mcp_servers[].approval", _MCP + ", approval: ask}]\n",
      wire("tools.0.require_approval", "always"),
      effect="`ask`: the runner asks you before each call", emulator="acts",
      covered_by="tests/test_mcp_approval.py"),
    S("mcp_servers[].approval.always", _MCP + ", approval: {always: [search]}}]\n",
      wire("tools.0.require_approval", {"always": ["search"]}),
      effect="tools that need approval", emulator="acts"),
    S("mcp_servers[].approval.never", _MCP + ", approval: {never: [search]}}]\n",
      wire("tools.0.require_approval", {"never": ["search"]}),
      effect="tools that need no approval", emulator="acts"),
    S("mcp_servers[].headers", _MCP + ", headers: {X-Key: '${env:MATRIX_TOKEN}'}}]\n",
      wire("tools.0.headers", {"X-Key": SECRET}), unseen(SECRET),
      effect="headers the service sends to the MCP server; masked", emulator="records"),
    S("mcp_servers[].authorization", _MCP + ", authorization: '${env:MATRIX_TOKEN}'}]\n",
      wire("tools.0.authorization", SECRET), unseen(SECRET),
      effect="the MCP server's authorization; masked", emulator="records"),
    S("web_search", "web_search: true\n", wire("tools", [{"type": "web_search"}]),
      effect="the service's built-in web search tool", emulator="records"),
    S("file_search.vector_store_ids", "file_search: {vector_store_ids: [vs_docs]}\n",
      wire("tools", [{"type": "file_search", "vector_store_ids": ["vs_docs"]}]),
      effect="the service's built-in file search over these vector stores", emulator="records"),
    S("file_search.max_num_results",
      "file_search: {vector_store_ids: [vs_docs], max_num_results: 4}\n",
      wire("tools.0.max_num_results", 4), effect="at most this many file search results",
      emulator="records"),
    S("gpt_live.delegation.deployment",
      _GL + "gpt_live: {delegation: {deployment: backend-x}}\ntools: [echo_back]\n",
      wire("delegation", {"type": "responses", "responses": {"model": "backend-x", "tools": [
          {**_FN, "parameters": {"type": "object", "properties": {"text": {
              "type": "string", "default": ""}}, "additionalProperties": False}}]}}),
      client("response.item.create", "function_call_output"), seen("[tool] echo_back"),
      say="please echo_back this",
      effect="GPT-Live delegates to this deployment, which calls the profile's tools (the "
      "runner runs them)", emulator="acts"),
    S("gpt_live.delegation.instructions",
      _GL + "gpt_live: {delegation: {deployment: backend-x, instructions: Use the tools.}}\n",
      wire("delegation.responses.instructions", "Use the tools."),
      effect="the backend deployment's instructions", emulator="records"),
    S("gpt_live.delegation.agent.name",
      _GL + "gpt_live: {delegation: {agent: {name: desk-agent, project: proj}}}\n",
      wire("delegation", {"type": "client"}), audio=True,
      effect="client delegation: the runner asks this Foundry agent and speaks its answer "
      "as commentary", emulator="client"),
    S("gpt_live.delegation.agent.project",
      _GL + "gpt_live: {delegation: {agent: {name: desk-agent, project: proj-y}}}\n",
      wire("delegation.type", "client"), audio=True,
      effect="the Foundry project of that agent", emulator="client"),
    S("gpt_live.translation.target", _GL + "gpt_live: {translation: {target: fr-FR}}\n",
      wire("instructions", "Be brief.\n\n" + _TRANSLATE + "any language into fr-FR, and "
           "speak only the translation."),
      seen("(translation into fr-FR not performed)"), audio=True,
      effect="GPT-Live speaks only the translation into this language", emulator="acts"),
    S("gpt_live.translation.source",
      _GL + "gpt_live: {translation: {source: en-US, target: fr-FR}}\n",
      wire("instructions", "Be brief.\n\n" + _TRANSLATE + "en-US into fr-FR, and speak "
           "only the translation."), audio=True,
      effect="the caller's language (default: any)", emulator="records"),
    S("greeting", "greeting: true\n", client("response.create"),
      seen("assistant: [emulator] Hello from the local Voice Live emulator"),
      effect="the assistant speaks first", emulator="acts"),
    S("greeting.instructions", "greeting: {instructions: 'Greet the user by saying hi.'}\n",
      client("response.create", "Greet the user by saying hi."),
      seen("assistant: [emulator] Hello"),
      effect="what the assistant is told for its first words", emulator="acts"),
    S("greeting.text", "greeting: {text: 'Welcome to the matrix.'}\n",
      client("response.create", "Welcome to the matrix."),
      seen("assistant: Welcome to the matrix."),
      effect="fixed first words (pre-generated message)", emulator="acts",
      covered_by="tests/test_greeting_text.py"),
    S("greeting.enabled", "greeting: {enabled: false, text: 'Never said.'}\n",
      unseen("Never said."), effect="turns a greeting off (e.g. one inherited by extends)",
      emulator="client"),
    # conversation flows (docs/flows.md): say `size=3` and the emulator calls record_ask
    S("flow.start", _flow(extra="    other: {instructions: In other., transitions: [{to: ask}]}\n",
                          start="other"),
      wire("instructions", "Be brief.\n\nIn other."), effect="the node the conversation starts in",
      emulator="client"),
    S("flow.nodes.*.instructions", _flow(done="{instructions: Say thanks., end: true}"),
      wire("instructions", "Be brief.\n\nAsk the size."),
      client("session.update", "Say thanks."), say="size=3",
      effect="the node's instructions, added to the profile's; each node sends its session",
      emulator="records", covered_by="tests/test_flows_live.py::test_transition_order_on_the_wire"),
    S("flow.nodes.*.tools", _flow(ask="      tools: [echo_back]\n"),
      wire("tools.0.name", "echo_back"), wire("tools.1.name", "record_ask"),
      effect="plugin tools in this node only", emulator="acts"),
    S("flow.nodes.*.collect.*.type", _flow(),
      wire("tools.0.parameters.properties.size.type", "integer"),
      client("conversation.item.create", '\\"size\\": 3'), seen("flow: now in done"),
      say="size=3", effect="a value collected through record_<node>, typed", emulator="acts"),
    S("flow.nodes.*.collect.*.description", _flow(size="{type: integer, description: Guests}"),
      wire("tools.0.parameters.properties.size.description", "Guests"),
      effect="what the model is told the value is", emulator="records"),
    S("flow.nodes.*.collect.*.enum", _flow(size="{type: integer, enum: [2, 4]}"),
      wire("tools.0.parameters.properties.size.enum", [2, 4]),
      client("conversation.item.create", "invalid_arguments"), unseen("flow: now in done"),
      say="size=3", effect="only these values; others get an error result, the node stays",
      emulator="acts", covered_by="tests/test_flows_live.py::test_invalid_values_keep_the_node"),
    S("flow.nodes.*.collect.*.minimum", _flow(size="{type: integer, minimum: 1}"),
      wire("tools.0.parameters.properties.size.minimum", 1),
      client("conversation.item.create", "invalid_arguments"), say="size=0",
      effect="smallest number accepted", emulator="acts"),
    S("flow.nodes.*.collect.*.maximum", _flow(size="{type: integer, maximum: 8}"),
      wire("tools.0.parameters.properties.size.maximum", 8),
      client("conversation.item.create", "invalid_arguments"), say="size=9",
      effect="largest number accepted", emulator="acts"),
    S("flow.nodes.*.collect.*.required", _flow(size="{type: integer, required: false}"),
      absent("tools.0.parameters.required"), seen("flow: now in done"), say="size=3",
      effect="false: the model may leave the value out", emulator="acts"),
    S("flow.nodes.*.collect.*.secret",
      _flow(ask="      collect: {pin: {type: string, secret: true}}\n", collect=False),
      seen('"pin": "***"'), unseen('"pin": "9876"'), say="pin=9876",
      effect="masked on the console, in the logs and in the trace", emulator="client",
      covered_by="tests/test_flows_live.py::test_secret_values_never_reach_logs_or_trace"),
    S("flow.nodes.*.transitions[].to", _flow(), seen("flow: now in done"), say="size=3",
      effect="the node to go to once record_<node> succeeds", emulator="client"),
    S("flow.nodes.*.transitions[].when",
      _flow(transitions="[{to: other, when: size > 5}, {to: done}]",
            extra="    other: {instructions: Big party., end: true}\n"),
      seen("flow: now in other"), say="size=9",
      effect="the first transition whose condition holds is taken", emulator="client"),
    S("flow.nodes.*.greeting", _flow(done="{greeting: Say thanks., end: true}"),
      client("response.create", "Say thanks."), say="size=3",
      effect="on entering: what the assistant is told for its first words there",
      emulator="acts"),
    S("flow.nodes.*.greeting.instructions",
      _flow(done="{greeting: {instructions: Say thanks.}, end: true}"),
      client("response.create", "Say thanks."), say="size=3",
      effect="on entering: instructions for the node's first words", emulator="acts"),
    S("flow.nodes.*.greeting.text",
      _flow(done="{greeting: {text: 'Now in done.'}, end: true}"),
      seen("assistant: Now in done."), say="size=3",
      effect="on entering: fixed words (pre-generated message)", emulator="acts"),
    S("flow.nodes.*.context", _flow(done="{context: summary, end: true}"),
      client("conversation.item.delete"),
      client("conversation.item.create", "Summary of the conversation so far"), say="size=3",
      effect="keep, reset (items deleted) or summary (replaced by the values collected)",
      emulator="acts", covered_by="tests/test_flows_live.py::test_context_reset_and_summary"),
    S("flow.nodes.*.end", _flow(), seen("flow ended: ask -> done"), say="size=3",
      effect="the conversation ends after this node's reply", emulator="client"),
    S("flow.nodes.*.goodbye", _flow(done="{end: true, goodbye: Say goodbye warmly.}"),
      client("response.create", "Say goodbye warmly."), say="size=3",
      effect="what the assistant is told for its last words", emulator="acts"),
    S("flow.nodes.*.goodbye.instructions",
      _flow(done="{end: true, goodbye: {instructions: Say goodbye warmly.}}"),
      client("response.create", "Say goodbye warmly."), say="size=3",
      effect="instructions for the last words", emulator="acts"),
    S("flow.nodes.*.goodbye.text", _flow(), seen("assistant: Bye now, 3."), say="size=3",
      effect="fixed last words (a template: values collected)", emulator="acts"),
    S("flow.nodes.*.agent.name",
      _flow(done="{agent: {name: specialist, project: desk}}"),
      query("agent-name", "specialist"), seen("handing the conversation to agent specialist"),
      say="size=3", connections=2,
      effect="the Foundry agent the conversation is handed to (a new connection bound to it)",
      emulator="acts",
      covered_by="tests/test_flows_live.py::test_an_agent_node_hands_the_conversation_to_the_agent"),
    S("flow.nodes.*.agent.project",
      _flow(done="{agent: {name: specialist, project: desk}}"),
      query("agent-project-name", "desk"), say="size=3", connections=2,
      effect="the Foundry project of that agent", emulator="acts"),
    S("metadata", "metadata: {team: voice}\n", wire("metadata", {"team": "voice"}),
      effect="labels sent with the session", emulator="records"),
    S("session", "session: {max_response_output_tokens: 77}\n",
      wire("max_response_output_tokens", 77),
      effect="raw session fields merged last (escape hatch; `vlrun check` warns)",
      emulator="records"),
)
# fmt: on

_SMART = "end_of_utterance_detection: {model: smart_end_of_turn_detection"
#: Values of a setting that switch on a feature of their own while the leaf's row shows
#: another value; each runs live like a leaf's row and has its own line in the docs table.
# fmt: off
VALUES: tuple[Setting, ...] = (
    S("turn_detection.end_of_utterance_detection.model: smart_end_of_turn_detection",
      "connection: {api_version: 2026-06-01-preview}\n"
      + _TD + _SMART + ", threshold_level: low, timeout_ms: 900}}\n",
      wire("turn_detection.end_of_utterance_detection",
           {"model": "smart_end_of_turn_detection", "threshold_level": "low", "timeout_ms": 900}),
      effect="audio-based end-of-turn detection (preview: -preview api_versions from "
      "2026-06-01-preview)", emulator="checks"),
    S("connection.model: gpt-live-1", _GL + "gpt_live: {delegation: {deployment: backend-x}}\n",
      client("session.start"), wire("model", "gpt-live-1"), wire("audio.output.voice", "marin"),
      seen("[emulator]"),
      effect="GPT-Live: its own endpoint (/openai/v1/live) and one session.start "
      "(docs/gpt-live.md)", emulator="acts"),
)
# fmt: on
ALL: tuple[Setting, ...] = (*MATRIX, *VALUES)


def schema_leaves(schema: Mapping[str, Any] | None = None) -> set[str]:
    """Every settable leaf of the profile schema; a field with a scalar form and an object
    form is a leaf itself and has leaves below it."""
    root = schema if schema is not None else json.loads(SCHEMA.read_text())
    found: set[str] = set()

    def walk(node: Mapping[str, Any], path: str) -> None:
        types = node.get("type", [])
        types = [types] if isinstance(types, str) else list(types)
        alternatives = node.get("oneOf") or node.get("anyOf")
        if alternatives:
            for alt in alternatives:
                shared = {k: v for k, v in node.items() if k not in ("oneOf", "anyOf")}
                walk({**shared, **alt}, path)
            return
        props = node.get("properties")
        scalar = [t for t in types if t not in ("object", "array", "null")]
        each = node.get("additionalProperties")
        if isinstance(each, Mapping) and each.get("properties"):
            walk(each, f"{path}.*")  # named entries (vars, flow nodes): one leaf set for all
            return
        if props:
            if path and (scalar or "enum" in node or "const" in node):
                found.add(path)
            for name, sub in props.items():
                walk(sub, f"{path}.{name}" if path else name)
            return
        items = node.get("items")
        if "array" in types and isinstance(items, Mapping) and items.get("properties"):
            walk(items, path + "[]")
            return
        if path:
            found.add(path)

    walk(root, "")
    return found


def by_leaf() -> dict[str, Setting]:
    return {s.leaf: s for s in MATRIX}


def markdown() -> Iterator[str]:
    yield "| setting | compiled to | at run time | emulator |"
    yield "|---|---|---|---|"
    for s in ALL:
        yield f"| `{s.leaf}` | {s.compiled()} | {s.effect} | {s.emulator} |"


def write_docs(doc: Path = ROOT / "docs" / "profiles.md") -> None:
    """Replace the table in docs/profiles.md with the one this matrix generates."""
    text = doc.read_text()
    start = text.index("| setting | compiled to |")
    end = text.index("\n\n", start)
    doc.write_text(text[:start] + "\n".join(markdown()) + text[end:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_docs()
    else:
        print("\n".join(markdown()))
