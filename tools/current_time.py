"""Example tool: the current time in any IANA timezone, from the standard library's zoneinfo."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from runner.plugins import tool


@tool
def current_time(
    timezone: Annotated[str, 'IANA timezone name, e.g. "Europe/Paris" or "America/New_York"'],
) -> dict[str, str]:
    """Get the current local date and time in a timezone.

    Use it whenever the user asks what time or day it is somewhere.
    """
    name = timezone.strip()
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {timezone!r}; {_suggestion(name)}") from None
    now = dt.datetime.now(zone)
    return {
        "timezone": name,
        "time": now.strftime("%H:%M"),
        "date": now.strftime("%A %d %B %Y"),
        "iso": now.isoformat(timespec="seconds"),
        "utc_offset": now.strftime("%z")[:3] + ":" + now.strftime("%z")[3:],
    }


def _suggestion(name: str) -> str:
    # The model usually gets the city right and the region wrong ("Paris" for "Europe/Paris").
    city = name.replace(" ", "_").split("/")[-1].lower()
    matches = sorted(z for z in available_timezones() if z.lower().endswith("/" + city))
    if matches:
        return "did you mean " + " or ".join(repr(m) for m in matches[:3]) + "?"
    return 'use an IANA name such as "Europe/Paris"'
