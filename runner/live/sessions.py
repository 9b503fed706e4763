"""Which session a compiled payload needs, in one place for every edge.

A profile compiles to a Voice Live ``session.update`` (:class:`~runner.live.session.LiveSession`)
or, for GPT-Live, to a ``session.start`` (:class:`~runner.live.gpt_live.GptLiveSession`, its own
WebSocket and events: docs/gpt-live.md). An edge (the browser console of `vlrun serve`, a phone
call) builds its session with :func:`open_session` from the same :class:`SessionSettings` and
collaborators either way, and opens its audio with :func:`audio_session`: GPT-Live has one
format both ways under ``audio.format``, which the audio edges read in the dated words.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from runner.errors import UsageError
from runner.live.gpt_live import GptLiveSession, audio_fields, is_gpt_live_start
from runner.live.session import LiveSession
from runner.live.settings import SessionSettings

__all__ = [
    "audio_session",
    "is_duplex",
    "open_session",
    "session_class_for",
    "takes_images",
    "with_formats",
]


def is_duplex(payload: Mapping[str, Any]) -> bool:
    """A GPT-Live ``session.start`` (full duplex), not a Voice Live ``session.update``."""
    return is_gpt_live_start(payload)


def session_class_for(payload: Mapping[str, Any]) -> type[LiveSession] | type[GptLiveSession]:
    return GptLiveSession if is_duplex(payload) else LiveSession


def audio_session(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The session's audio in the words the audio edges read (``input_audio_format``,
    ``input_audio_sampling_rate``, ``output_audio_format``, or v1's ``audio``): GPT-Live's
    ``audio.format`` is one format both ways, not the Voice Live session's keys."""
    session = dict(payload.get("session") or {})
    return audio_fields(session) if is_duplex(payload) else session


def with_formats(
    payload: Mapping[str, Any], in_format: str, in_rate: int | None, out_format: str
) -> dict[str, Any]:
    """The payload with these wire formats (dated words: ``pcm16``, ``pcm16_16000hz``,
    ``g711_ulaw``, ...) pinned, as a phone edge pins its media's, in the payload's own shape:
    GPT-Live's one ``audio.format`` (docs/gpt-live.md "Startup"), or the Voice Live session's
    keys. Raises :class:`UsageError` for formats GPT-Live cannot take. The payload is not
    changed."""
    from runner.config.service import set_audio_formats

    session = copy.deepcopy(dict(payload.get("session") or {}))
    if is_duplex(payload):
        session.setdefault("audio", {})["format"] = _gpt_live_format(in_format, in_rate, out_format)
    else:
        set_audio_formats(session, in_format, in_rate, out_format)
    return {**payload, "session": session}


def _gpt_live_format(in_format: str, in_rate: int | None, out_format: str) -> dict[str, Any]:
    from runner.config.gpt_live import G711, PCM_RATES

    def word(fmt: str, rate: int | None) -> tuple[str, int]:
        if fmt in G711:
            return G711[fmt], 8000
        digits = "".join(ch for ch in fmt.removeprefix("pcm16") if ch.isdigit())
        return "audio/pcm", int(digits or rate or 24000)

    heard, said = word(in_format, in_rate), word(out_format, None)
    if heard != said:
        raise UsageError(
            f"GPT-Live has one audio format both ways, and this edge hears {in_format} "
            f"and plays {out_format}",
            hint="route the call to a Voice Live profile, or carry one format both ways",
        )
    if heard[0] == "audio/pcm" and heard[1] not in PCM_RATES:
        raise UsageError(
            f"GPT-Live takes PCM16 at 16000 or 24000 Hz, not {heard[1]}",
            hint="carry the media at 16 or 24 kHz, or G.711",
        )
    return {"type": heard[0], "rate": heard[1]}


def takes_images(live: Any) -> bool:
    """Whether the session takes image turns (GPT-Live's WebSocket has no image event)."""
    return not isinstance(live, GptLiveSession)


def open_session(
    settings: SessionSettings,
    *,
    target: Any,
    credential: Any,
    transcript: Any,
    player: Any,
    source: Any = None,
    registry: Any = None,
    flow: Any = None,
    opener: Any = None,
    profile: Any = None,
) -> LiveSession | GptLiveSession:
    """The session ``settings.session_update`` needs, with the same arguments as
    :class:`LiveSession` (``profile``: the loaded profile, whose Foundry agent answers a
    GPT-Live client delegation). A GPT-Live session has one connection: an attached socket
    (``opener``) and a flow's node updates have no GPT-Live form, and are refused here."""
    payload = settings.session_update
    if not is_duplex(payload):
        return LiveSession(
            settings,
            target=target,
            credential=credential,
            transcript=transcript,
            player=player,
            source=source,
            registry=registry,
            flow=flow,
            opener=opener,
        )
    if opener is not None:
        raise UsageError(
            "a GPT-Live profile cannot run on an attached media socket (it has its own endpoint)",
            hint="route this call to a Voice Live profile",
        )
    if flow is not None:
        raise UsageError(
            "a GPT-Live profile has no flow (session.update cannot change its instructions)",
            hint="drop the flow, or use a gpt-realtime model",
        )
    return GptLiveSession(
        payload,
        target=target,
        endpoint=settings.endpoint,
        credential=credential,
        transcript=transcript,
        player=player,
        source=source,
        registry=registry,
        greeting=settings.greeting,
        lines=settings.lines,
        end_when_input_ends=settings.end_when_input_ends,
        finish_timeout_s=settings.finish_timeout_s,
        tool_timeouts=settings.tool_timeouts,
        profile_name=settings.profile_name,
        profile_vars=settings.profile_vars,
        handle_signals=settings.handle_signals,
        client_backend=_agent_backend(profile, settings.endpoint, credential),
    )


def _agent_backend(profile: Any, endpoint: str, credential: Any) -> Any:
    """The Foundry agent a GPT-Live profile delegates to (gpt_live.delegation.agent), if any."""
    if profile is None:
        return None
    from runner.config.gpt_live import delegation_agent
    from runner.live.agent_backend import FoundryAgentBackend

    agent = delegation_agent(getattr(profile, "settings", None) or {})
    if agent is None:
        return None
    return FoundryAgentBackend(endpoint, agent[0], agent[1], credential)
