"""Example tools for the IT help desk flow: check an employee's identity, open a ticket.

Both read what the flow collected (``context.values``). The directory of employees and PINs
is a JSON object ``{"E1234": "2468", ...}`` at ``$VLRUN_HELPDESK_DIRECTORY``; without it, one
demo employee exists (E1234, PIN 2468). Tickets are appended to ``$VLRUN_TICKETS`` (default:
``$XDG_STATE_HOME/vlrun/tickets.jsonl``). The PIN is never returned nor logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from runner.plugins import ToolContext, tool

DEMO_DIRECTORY = {"E1234": "2468"}


def _directory() -> dict[str, str]:
    path = os.environ.get("VLRUN_HELPDESK_DIRECTORY")
    if not path:
        return DEMO_DIRECTORY
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def _state(name: str, env: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vlrun" / name


@tool
def verify_identity(context: ToolContext) -> dict[str, Any]:
    """Check the employee ID and PIN the caller gave (collected earlier in the conversation).

    Returns whether they match; the PIN itself is never returned.
    """
    employee = str(context.values.get("employee_id") or "").strip().upper()
    pin = str(context.values.get("pin") or "").strip()
    expected = _directory().get(employee)
    verified = expected is not None and hmac.compare_digest(expected.encode(), pin.encode())
    context.logger.info("identity check for %s: %s", employee or "(none)", verified)
    return {"employee_id": employee, "verified": verified}


@tool
def open_ticket(context: ToolContext) -> dict[str, str]:
    """Open a help desk ticket for a specialist, with the problem collected earlier.

    Returns the ticket number to read to the caller.
    """
    ticket = {
        "employee_id": str(context.values.get("employee_id") or ""),
        "category": str(context.values.get("category") or "other"),
        "summary": str(context.values.get("summary") or ""),
    }
    digest = hashlib.sha256(json.dumps(ticket, sort_keys=True).encode()).hexdigest()
    number = "IT-" + str(int(digest[:8], 16) % 100000).zfill(5)
    path = _state("tickets.jsonl", "VLRUN_TICKETS")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"ticket": number, **ticket}) + "\n")
    return {"ticket": number, "category": ticket["category"]}
