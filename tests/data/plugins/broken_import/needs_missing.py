"""A tool file whose import fails at line 3."""

# fmt: off
import vlrun_no_such_module_for_tests  # noqa: F401

from runner.plugins import tool


@tool
def never(x: int) -> int:
    return x
