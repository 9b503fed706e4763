"""Full duplex bookkeeping for GPT-Live (docs/gpt-live.md, "Full duplex: backchannels and
yielding"): which assistant output is a backchannel, which a reply, and when the model yielded.

The wire has no turn, backchannel or yield event: only transcript fragments of both sides with
``start_ms``/``end_ms`` on the session's timeline. vlrun's rule (the same in the runner,
``vlrun serve`` and scenarios):

- an *utterance* is a run of fragments of one side with under :data:`GAP_MS` between one
  fragment's end and the next one's start;
- an assistant utterance is a **backchannel** when it starts while the caller speaks (before the
  end of the caller's latest fragment plus :data:`GAP_MS`), lasts at most
  :data:`BACKCHANNEL_MAX_MS` and has at most :data:`BACKCHANNEL_MAX_WORDS` words; anything else
  is a **reply**. A backchannel is never a barge-in and never a reply;
- a reply **yielded** when the caller was speaking as it stopped: the caller's utterance began
  before the reply's end and lasted past it.

"The caller speaks" is known from the caller's transcript fragments and, as it happens, from the
caller's own audio that vlrun sends (its timeline position and whether it is voiced): a
service sends the caller's transcript once an utterance is over, after the backchannels made
during it, so the audio is what tells a backchannel as it comes.

Pure: it takes fragments and tells a :class:`DuplexSink` what to show; no I/O, no clock of its
own (every decision is on the fragments' own timeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

GAP_MS = 500
BACKCHANNEL_MAX_MS = 1000
BACKCHANNEL_MAX_WORDS = 3


class DuplexSink(Protocol):
    """What the bookkeeping decides, as it decides it."""

    def caller_said(self, utterance_id: str, text: str) -> None: ...

    def reply_delta(self, utterance_id: str, delta: str) -> None: ...

    def reply_done(self, utterance_id: str, text: str, *, yielded: bool) -> None: ...

    def backchannel(self, utterance_id: str, text: str) -> None: ...


@dataclass
class Utterance:
    id: str
    start_ms: int
    end_ms: int
    parts: list[str] = field(default_factory=list)
    kind: str = "reply"  # "pending" (may be a backchannel), "reply", "caller"

    @property
    def text(self) -> str:
        return join(self.parts).strip()

    @property
    def words(self) -> int:
        return len(self.text.split())


def join(parts: list[str]) -> str:
    """Fragments as one text: a fragment carries its own leading space, except where two
    utterances met within the gap (then one space between)."""
    out = ""
    for part in parts:
        if out and part and not out[-1].isspace() and not part[0].isspace():
            out += " "
        out += part
    return out


class Duplex:
    """Both sides' fragments in, utterances and their kinds out (to ``sink``)."""

    def __init__(self, sink: DuplexSink) -> None:
        self.sink = sink
        self.caller: Utterance | None = None  # the caller's open utterance
        self.assistant: Utterance | None = None  # the assistant's open utterance
        self._last_caller: Utterance | None = None  # the latest, open or closed
        self._count = 0
        # the caller's voiced audio, as vlrun sent it: (from, until) of the latest stretch
        self._voiced: tuple[int, int] | None = None
        self.backchannels = 0
        self.replies = 0
        self.yields = 0

    def _new_id(self, side: str) -> str:
        self._count += 1
        return f"{side}_{self._count}"

    # ------------------------------------------------------------------ fragments in

    def caller_fragment(self, delta: str, start_ms: int, end_ms: int) -> None:
        self._close_assistant_before(start_ms)
        caller = self.caller
        if caller is not None and start_ms >= caller.end_ms + GAP_MS:
            self._finish_caller()
            caller = None
        if caller is None:
            caller = self.caller = Utterance(self._new_id("caller"), start_ms, end_ms, [], "caller")
            self._last_caller = caller
        caller.parts.append(delta)
        caller.end_ms = max(caller.end_ms, end_ms)

    def caller_audio(self, start_ms: int, end_ms: int, voiced: bool) -> None:
        """A stretch of the caller's audio as sent, on the session's timeline."""
        if not voiced:
            return
        if self._voiced is None or start_ms > self._voiced[1] + GAP_MS:
            self._voiced = (start_ms, end_ms)
        else:
            self._voiced = (self._voiced[0], max(self._voiced[1], end_ms))

    def _caller_speaking_at(self, ms: int) -> bool:
        caller = self.caller
        if caller is not None and caller.start_ms <= ms < caller.end_ms + GAP_MS:
            return True
        voiced = self._voiced
        return voiced is not None and voiced[0] <= ms < voiced[1] + GAP_MS

    def assistant_fragment(self, delta: str, start_ms: int, end_ms: int) -> None:
        out = self.assistant
        if out is not None and start_ms >= out.end_ms + GAP_MS:
            self._finish_assistant()  # the earlier output (a reply the caller cut, say) first
            out = None
        if self.caller is not None and start_ms >= self.caller.end_ms + GAP_MS:
            self._finish_caller()  # the caller's turn was over before this: said before it
        if out is None:
            during = self._caller_speaking_at(start_ms)
            out = self.assistant = Utterance(
                self._new_id("assistant"), start_ms, end_ms, [], "pending" if during else "reply"
            )
            if out.kind == "reply":
                self.replies += 1
        out.parts.append(delta)
        out.end_ms = max(out.end_ms, end_ms)
        if out.kind == "pending":
            if out.end_ms - out.start_ms > BACKCHANNEL_MAX_MS or out.words > BACKCHANNEL_MAX_WORDS:
                out.kind = "reply"  # too long for a backchannel: a reply, shown from its start
                self.replies += 1
                self.sink.reply_delta(out.id, join(out.parts).lstrip())
        else:
            before = join(out.parts[:-1]).strip()
            if not before:
                delta = delta.lstrip()  # a line starts with its first word
            elif delta and not before[-1].isspace() and not delta[0].isspace():
                delta = " " + delta
            self.sink.reply_delta(out.id, delta)

    def assistant_audio(self, start_ms: int, end_ms: int) -> None:
        """The assistant's audio covers ``start_ms``-``end_ms``: an utterance goes on while its
        audio does (transcript fragments may be a word per second of slow speech)."""
        out = self.assistant
        if out is not None and start_ms < out.end_ms + GAP_MS:
            out.end_ms = max(out.end_ms, end_ms)

    def time_passed(self, now_ms: int) -> None:
        """The session's timeline reached ``now_ms`` (an output audio range, a usage update):
        utterances quiet for :data:`GAP_MS` by then are over."""
        self._close_assistant_before(now_ms)
        if self.caller is not None and now_ms >= self.caller.end_ms + GAP_MS:
            self._finish_caller()

    def caller_typed(self) -> None:
        """The caller typed a turn: what the assistant was saying before it is over."""
        self._finish_assistant()
        self._finish_caller()

    def flush(self) -> None:
        """The end of the session: whatever is open is over."""
        self._finish_assistant()
        self._finish_caller()

    # ------------------------------------------------------------------ decisions

    def _close_assistant_before(self, now_ms: int) -> None:
        out = self.assistant
        if out is not None and now_ms >= out.end_ms + GAP_MS:
            self._finish_assistant()

    def _finish_caller(self) -> None:
        caller, self.caller = self.caller, None
        if caller is not None and caller.text:
            self.sink.caller_said(caller.id, caller.text)

    def _finish_assistant(self) -> None:
        out, self.assistant = self.assistant, None
        if out is None:
            return
        if out.kind == "pending":
            self.backchannels += 1
            self.sink.backchannel(out.id, out.text)
            return
        spans = [(c.start_ms, c.end_ms) for c in (self._last_caller,) if c is not None]
        if self._voiced is not None:
            spans.append(self._voiced)
        yielded = any(out.start_ms < a < out.end_ms and b > out.end_ms for a, b in spans)
        self.yields += int(yielded)
        self.sink.reply_done(out.id, out.text, yielded=yielded)
