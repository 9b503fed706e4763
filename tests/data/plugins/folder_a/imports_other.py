"""Re-exporting a tool from another file must not register it twice."""

from pathlib import Path

from runner.plugins import load_module_by_path, tool

greet = load_module_by_path(Path(__file__).parent / "greet.py").greet


@tool
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()
