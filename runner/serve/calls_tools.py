"""Call control as tools the model can call: ``hang_up``, ``transfer`` and ``send_dtmf``.

A route opts in with ``call_control: [hang_up, transfer, send_dtmf]`` in serve.yaml: the tools
then join that route's sessions (their schemas are added to the compiled session, their
functions to its registry). A profile's flow can list them in a node's ``tools`` instead:
they are then that node's only (a way out of the flow: transfer to a person, hang up).
A tool finds its call through the call id that the call's task
set in :data:`~runner.serve.calls_log.call_id_var`: async tools run as tasks of that call, so
they see it. What an edge cannot do (Twilio Media Streams send no DTMF, for example), and
what the provider refuses, reach the model as tool errors. The model can then say so.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from runner.config.flow import CALL_CONTROL
from runner.plugins import tool
from runner.serve.calls_log import call_id_var

NAMES = CALL_CONTROL
_TARGET = re.compile(r"^(\+[1-9][0-9]{1,14}|sips?:[^\s]{3,200})$")
_DIGITS = re.compile(r"^[0-9*#A-D]{1,32}$")


@dataclass
class Control:
    """What one call can do, as its edge provides it (None: not on this edge)."""

    request_hang_up: Callable[[str], None]
    transfer: Callable[[str], Awaitable[None]] | None = None
    send_dtmf: Callable[[str], Awaitable[None]] | None = None


_controls: dict[str, Control] = {}


def register(call_id: str, control: Control) -> None:
    _controls[call_id] = control


def unregister(call_id: str) -> None:
    _controls.pop(call_id, None)


def _current() -> Control:
    control = _controls.get(call_id_var.get())
    if control is None:
        raise RuntimeError("call control works only during a phone call")
    return control


@tool
async def hang_up(
    goodbye: Annotated[str, "What to say before hanging up; empty to say nothing more"] = "",
) -> dict[str, str]:
    """End the phone call. Use it when the caller is done or asks to hang up."""
    _current().request_hang_up(goodbye.strip()[:500])
    return {"status": "hanging up after the goodbye" if goodbye.strip() else "hanging up"}


@tool
async def transfer(
    target: Annotated[str, "A phone number in E.164 form (+15551234567) or a sip: URI"],
) -> dict[str, str]:
    """Transfer the caller to another number or SIP address; the call leaves this assistant."""
    target = target.strip()
    if not _TARGET.match(target):
        raise ValueError(f"{target!r} is not an E.164 number (+15551234567) or a sip: URI")
    control = _current()
    if control.transfer is None:
        raise RuntimeError("this call cannot be transferred")
    await control.transfer(target)
    return {"status": f"transferring to {target}"}


@tool
async def send_dtmf(
    digits: Annotated[str, "Keys to press: 0-9, *, #, A-D"],
) -> dict[str, str]:
    """Press phone keys on the call (for example to work a menu after a transfer)."""
    digits = digits.strip().upper()
    if not _DIGITS.match(digits):
        raise ValueError(f"{digits!r} holds keys a phone does not have (0-9, *, #, A-D)")
    control = _current()
    if control.send_dtmf is None:
        raise RuntimeError("this phone edge cannot send DTMF tones")
    await control.send_dtmf(digits)
    return {"status": f"sent {digits}"}


TOOLS: dict[str, Any] = {"hang_up": hang_up, "transfer": transfer, "send_dtmf": send_dtmf}
