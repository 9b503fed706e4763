"""The call-control tools a flow node may list beside plugins (a telephony concept).

`vlrun serve` gives them to phone calls (a flow's way out: transfer to a person, hang up);
elsewhere there is no call to control. The profile only names them: their behaviour lives in
:mod:`runner.serve`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plugins read CALL_CONTROL without importing the flow model
    from runner.config.flow_model import Flow

# In the order call_control_of lists them.
CALL_CONTROL = ("hang_up", "transfer", "send_dtmf")


def call_control_of(flow: Flow | None) -> tuple[str, ...]:
    """The call-control tools a flow's nodes list, in CALL_CONTROL's order."""
    used = {
        name for node in (flow.nodes.values() if flow is not None else ()) for name in node.tools
    }
    return tuple(name for name in CALL_CONTROL if name in used)
