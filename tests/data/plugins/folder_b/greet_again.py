"""A second folder that defines a tool with a name already used in folder_a."""

from runner.plugins import tool


@tool
def greet(name: str, formal: bool = False) -> str:
    """Greet, possibly formally."""
    return f"Good day, {name}." if formal else f"Hi {name}"
