"""Example tool for the reservation flow: books a table in a local file, from the values the
flow collected (``context.values``), and returns the booking reference.

Bookings are appended, one JSON object per line, to ``$VLRUN_BOOKINGS`` (default:
``$XDG_STATE_HOME/vlrun/bookings.jsonl``). The reference is derived from the booking itself,
so the same booking always gets the same reference (and a scenario can expect it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from runner.plugins import ToolContext, tool

NEEDED = ("guest", "date", "time", "party_size")


def bookings_file() -> Path:
    if os.environ.get("VLRUN_BOOKINGS"):
        return Path(os.environ["VLRUN_BOOKINGS"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vlrun" / "bookings.jsonl"


@tool
def book_table(context: ToolContext) -> dict[str, Any]:
    """Book the table the caller asked for (name, date, time and party size collected earlier).

    Returns the booking reference to read back to the caller.
    """
    missing = [k for k in NEEDED if context.values.get(k) in (None, "")]
    if missing:
        raise ValueError(f"cannot book yet: {', '.join(missing)} not collected")
    booking = {k: context.values[k] for k in NEEDED}
    digest = hashlib.sha256(json.dumps(booking, sort_keys=True).encode()).hexdigest()
    reference = "R-" + digest[:6].upper()
    path = bookings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"reference": reference, **booking}) + "\n")
    return {"reference": reference, **booking}
