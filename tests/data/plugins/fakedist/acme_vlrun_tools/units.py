"""A whole module of tools behind one entry point."""

from typing import Literal

from runner.plugins import tool


@tool
def convert_length(value: float, to: Literal["m", "ft"]) -> float:
    """Convert a length between metres and feet."""
    return round(value * 3.28084, 4) if to == "ft" else round(value / 3.28084, 4)


@tool(name="greet")
def greet_from_package(name: str) -> str:
    """A package tool that clashes with folder_a's greet."""
    return name
