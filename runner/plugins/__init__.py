"""Tool plugins: ``@tool`` marks a function, a :class:`Registry` finds, checks and calls it.

Marking is cheap and has no side effects (the pluggy way); the registry does the work once,
when it collects tools: it builds the JSON Schema from the type hints, compiles a validator
and refuses anything it could not call safely. Dispatch then only parses, validates, calls
and serialises, so a tool call costs the live loop well under a millisecond of overhead.

Tools come from two places, in this order:
- folders of ``*.py`` files, loaded *by path* under a private module name, so a folder
  called ``tools`` never clashes with an installed package of that name;
- installed distributions, through the ``vlrun.tools`` entry-point group.

``VLRUN_TOOLS_ONLY=name1,name2`` restricts which tools load; ``VLRUN_TOOLS_ENTRY_POINTS=0``
turns entry-point loading off (``Registry.discover(..., entry_points=False)`` does the same).

This package is the only API tool authors import. Its internals are the ``_``-prefixed
modules: ``_types`` (``@tool`` and the records), ``_loading`` (files and entry points),
``_dispatch`` (one call), ``_drift`` (profile vs plugin schemas), ``_schema`` (type hints to
JSON Schema) and ``_registry``.
"""

from runner.plugins._check import check_bindings, tool_dirs
from runner.plugins._dispatch import ToolThreads
from runner.plugins._drift import schema_drift
from runner.plugins._loading import ENTRY_POINT_GROUP, load_module_by_path
from runner.plugins._mocks import MockRegistry
from runner.plugins._registry import DEFAULT_TIMEOUT_S, Registry
from runner.plugins._static import check_bindings_statically
from runner.plugins._types import ToolContext, ToolResult, ToolSpec, tool

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ENTRY_POINT_GROUP",
    "MockRegistry",
    "Registry",
    "ToolContext",
    "ToolResult",
    "ToolSpec",
    "ToolThreads",
    "check_bindings",
    "check_bindings_statically",
    "load_module_by_path",
    "schema_drift",
    "tool",
    "tool_dirs",
]
