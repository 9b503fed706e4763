"""Tool mocks for `vlrun PROFILE --mock-tools FILE.yaml`, in the scenario files' `mocks:` format.

A demo or an offline run of a tool profile then answers from the file instead of the network:
``mocks: {get_weather: {output: {...}, delay_ms: 300}}``; ``error: ...`` fails the call instead.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from runner.config import source
from runner.config.locator import Locator
from runner.config.validate import problems_against
from runner.errors import ProfileError


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("runner.config.schema").joinpath("scenario.schema.json").read_text()
    defs = json.loads(text)["$defs"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["mocks"],
        "properties": {"mocks": {"$ref": "#/$defs/mocks"}},
        "$defs": defs,
    }


def load_mocks(path: Path) -> dict[str, dict[str, Any]]:
    """Tool name -> mock; a mistake is a ProfileError naming the file and line."""
    src = source.load_file(path)
    problems = problems_against(_schema(), src.data, Locator(src.positions, str(path)))
    if problems:
        raise ProfileError(problems)
    mocks: dict[str, dict[str, Any]] = src.data["mocks"]
    return mocks
