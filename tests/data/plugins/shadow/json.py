"""A tool file named like a standard module: loading it by path must not shadow `json`."""

from runner.plugins import tool


@tool
def json_tool(text: str) -> str:
    """Echo the text."""
    return text
