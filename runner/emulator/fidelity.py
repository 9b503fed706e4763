"""Fidelity notes: where the emulator had to assume what the service does.

The rule (docs/emulator.md#conformance): documented behaviour is followed, reported behaviour
is followed in its stricter reading, and where the service's behaviour is unknown the emulator
stays permissive and says so here. Each note has a short key and a sentence naming the
assumption. A note is kept once per session (``SessionRecord.fidelity``) and passed once per
emulator run to every listener, which is how ``vlrun emulate`` and ``vlrun test`` print their
``fidelity:`` lines on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

Listener = Callable[[str, str], object]  # (key, message); any result is ignored

_lock = threading.Lock()
_listeners: list[Listener] = []

#: every assumption the emulator can report, by key (docs/emulator.md lists the same keys)
NOTES = {
    "partial-update": (
        "a session.update after the first one left out fields; the emulator merges it into the "
        "session (as the API spec describes), but the service has been reported to replace the "
        "whole session, so send the whole session every time"
    ),
    "azure-speech-default-vad": (
        "azure-speech transcription on a realtime model with the default server_vad left in "
        "place was accepted; the service refuses it when server_vad is chosen explicitly, "
        "and what it does with its default is not documented"
    ),
    "turn-detection-null": (
        "turn_detection was switched between null and a VAD type mid-session; the emulator "
        "allows it, the service's behaviour is not documented"
    ),
    "mcp-order": (
        "an MCP call completes after its response.done (the order the SDK's MCP sample needs); "
        "the service's order is not documented"
    ),
    "mcp-continue": (
        "after an MCP approval the emulator continues by itself (as the SDK's MCP sample "
        "expects) and queues a client's response.create behind that continuation; the "
        "service's behaviour is not documented"
    ),
    "failed-close": (
        "a failed response closes the socket with code 1011; the service was reported to close "
        "it, the close code is not documented"
    ),
    "avatar": ("session.avatar.connect was answered with an emulated SDP answer; no video is sent"),
    "sip-webhook-signature": (
        "Voice Live SIP webhooks were signed the Standard Webhooks way (webhook-id, "
        "webhook-timestamp, webhook-signature: HMAC-SHA256 with the whsec_ secret), as Azure "
        "OpenAI's SIP webhooks are; the Voice Live SIP spec does not define the delivery"
    ),
    "sip-decision-timeout": (
        "an incoming SIP call left undecided expired after the emulator's decision timeout; "
        "the service's timeout is not documented"
    ),
    "sip-media": (
        "a SIP call's caller was emulated by text turns (/_emulator/sip/calls/ID/say); the "
        "emulator carries no SIP media"
    ),
    "v1-response-extension": (
        "a v1 response.create used a Voice Live field that v1/models.tsp does not list "
        "(pre_generated_assistant_message, interim_response or invoke_input); the emulator "
        "takes it as on 2026-04-10 (v1 is documented as a superset), its v1 place is not "
        "specified"
    ),
    "builtin-search": (
        "a built-in web_search or file_search ran; the emulator searched nothing and said so, "
        "took the tool definition in the OpenAI Responses shape (Voice Live's reference "
        "documents the call items and events, not the definition), and spaced the events "
        "like one MCP step"
    ),
    "image-url": (
        "an input_image gave an https URL; the emulator does not fetch it and takes it as the "
        "service might (OpenAI's realtime image input documents data URLs)"
    ),
    "gl-query": (
        "a GPT-Live connection had query parameters and was refused; OpenAI documents none "
        "and Azure's pages show none, whether the service refuses them is not documented"
    ),
    "gl-model": (
        "a GPT-Live session named a gpt-live-* model the documents do not list; the emulator "
        "took it (new versions appear, e.g. gpt-live-1.1 in OpenAI's prompting guide)"
    ),
    "gl-path": (
        "a gpt-live-* model was refused on /voice-live/realtime; no document puts GPT-Live on "
        "that path, but none says the service refuses it"
    ),
    "gl-translation": (
        "GPT-Live translation was asked for with vlrun's instruction sentence; no session "
        "field exists for it, and the emulator says what it would translate, never translating"
    ),
    "gl-delegation-timeout": (
        "a GPT-Live client delegation got no answer within the emulator's wait (30 s by "
        "default); how long the service waits, and what it says then, is not documented"
    ),
    "gl-full-duplex": (
        "GPT-Live's backchannels, end of turn and yielding followed the emulator's stated "
        "rules (docs/emulator.md gl-*); the model decides these itself, differently"
    ),
    "input-text": (
        "input_text.delta/done were accepted; the service's events in reply are not "
        "documented, the emulator sends none and answers the finished text as a user turn"
    ),
}


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener(key, message)`` for each new note while the block runs (any thread)."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


class Fidelity:
    """The notes of one emulator run: each key is passed on once."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def note(self, key: str) -> str:
        message = NOTES[key]
        with _lock:
            first = key not in self.seen
            self.seen.setdefault(key, message)
            listeners = list(_listeners) if first else []
        if first:
            log.info("fidelity: %s", message)
        for listener in listeners:
            listener(key, message)
        return message


def line(message: str) -> str:
    """The stderr line for a note."""
    return f"fidelity: {message}"
