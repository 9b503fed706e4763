"""Typed turns waiting to be sent: a bounded FIFO with an end-of-input mark.

Lines come from stdin, the drawn console or an edge (a phone call's DTMF keys). Each turn is
sent once the reply before it has ended, so a flood (a key held down, a paste) would queue one
turn per line for as long as the call lasts. The queue holds :data:`MAX_QUEUED_TURNS`; past
it the oldest waiting turn gives way, and the console says so once. The stdin reader does not
lose lines to the bound: while the queue is full it holds its line and reads no further
(:meth:`runner.live.inputs.Inputs.take_line`), so a long script piped into ``vlrun run`` is
read as the conversation goes.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

#: Typed turns that may wait to be sent; a person types far fewer, a script is read as it goes.
MAX_QUEUED_TURNS = 256


class TypedTurns:
    """Typed turns not sent yet, oldest first; after :meth:`end`, nothing more is taken."""

    def __init__(
        self, bound: int = MAX_QUEUED_TURNS, on_first_drop: Callable[[int], None] | None = None
    ) -> None:
        if bound < 1:
            raise ValueError("a turn queue holds at least one turn")
        self.bound = bound
        self.dropped = 0  # turns that gave way to newer ones
        self.ended = False  # end of input was queued: nothing more is taken
        self._end_pending = False  # ... and the sender has not reached it yet
        self._turns: collections.deque[str] = collections.deque()
        self._on_first_drop = on_first_drop

    def full(self) -> bool:
        """Another turn would push out the oldest."""
        return len(self._turns) >= self.bound

    def __len__(self) -> int:
        return len(self._turns)

    def __bool__(self) -> bool:
        """Something is to be done: a turn to send, or the end of input."""
        return bool(self._turns) or self._end_pending

    def waiting(self) -> tuple[str, ...]:
        """The turns not sent yet, oldest first."""
        return tuple(self._turns)

    def put(self, text: str) -> None:
        """Queue a turn; past the bound the oldest waiting one is dropped (said once)."""
        if self.ended:
            return
        if len(self._turns) >= self.bound:
            self._turns.popleft()
            self.dropped += 1
            if self.dropped == 1 and self._on_first_drop is not None:
                self._on_first_drop(self.bound)
        self._turns.append(text)

    def end(self) -> None:
        """End of input: taken after the turns queued before it."""
        if not self.ended:
            self.ended = self._end_pending = True

    def next_is_end(self) -> bool:
        return not self._turns and self._end_pending

    def pop(self) -> str | None:
        """The oldest turn, or None for the end of input."""
        if not self._turns:
            self._end_pending = False
            return None
        return self._turns.popleft()
