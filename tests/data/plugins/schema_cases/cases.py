"""Tools covering every type the schema builder supports; each has a golden schema file."""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated, Literal, Optional, TypedDict

from runner.plugins import ToolContext, tool


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    """A point on the map."""

    lat: float
    lon: float
    label: str = ""


class Filters(TypedDict, total=False):
    min_rating: int
    tags: list[str]


@tool
def primitives(text: str, count: int, ratio: float, flag: bool) -> dict:
    """Take one of each primitive."""
    return {"text": text, "count": count, "ratio": ratio, "flag": flag}


@tool
def defaults(text: str = "hi", count: int = 3, ratio: float = 0.5, flag: bool = False) -> None:
    """Everything optional."""


@tool
def literals(mode: Literal["fast", "slow"], level: Literal[1, 2, 3] = 2) -> str:
    """Pick a mode."""
    return mode


@tool
def enums(unit: Unit, priority: Priority = Priority.LOW) -> dict:
    """Enum members arrive as members."""
    return {"unit": type(unit).__name__, "value": unit.value, "priority": priority.name}


@tool
def lists(
    names: list[str],
    scores: list[float] | None = None,
    pair: tuple[int, str] = (1, "a"),
    many: tuple[int, ...] = (),
) -> dict:
    """Arrays of things."""
    return {"names": names, "scores": scores, "pair": list(pair), "many": list(many)}


@tool
def optionals(city: Optional[str], country: str | None = None, limit: int | str = 10) -> None:  # noqa: UP045
    """Optional and union values."""


@tool
def annotated(
    location: Annotated[str, "City and country, e.g. 'Paris, France'"],
    days: Annotated[int, "How many days ahead"] = 1,
) -> None:
    """Annotated descriptions."""


@tool
def google_docstring(query: str, max_results: int = 5) -> None:
    """Search the catalogue.

    The search is fuzzy and
    case-insensitive.

    Args:
        query: What to look for,
            in plain words.
        max_results (int): At most this many results.

    Returns:
        A list of hits.
    """


@tool
def objects(where: Point, filters: Filters, extra: dict[str, int] | None = None) -> dict:
    """Dataclass and TypedDict parameters."""
    return {"where_type": type(where).__name__, "lat": where.lat, "filters": filters}


@tool(name="renamed_tool", description="A description set in the decorator.")
def with_overrides(context: ToolContext, value: int) -> dict:
    """This docstring is not used."""
    return {"call_id": context.call_id, "tool_name": context.tool_name, "value": value}


@tool
def nested(points: list[Point], by_unit: dict[str, list[Unit]] | None = None) -> dict:
    """Nested containers that need converting."""
    return {
        "types": [type(p).__name__ for p in points],
        "units": {k: [u.name for u in v] for k, v in (by_unit or {}).items()},
    }


@tool
def no_parameters() -> str:
    """Takes nothing."""
    return "ok"
