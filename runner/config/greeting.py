"""What the assistant says first: a record both the profile and a flow node's words make.

Its own module so that :mod:`runner.config.types` (the profile, which holds a flow) and
:mod:`runner.config.flow_model` (whose nodes render greetings) both import it one way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Greeting:
    """Present when the assistant speaks first: told ``instructions``, or saying ``text``."""

    instructions: str | None
    text: str | None = None  # fixed words, spoken verbatim
