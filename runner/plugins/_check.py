"""Where a profile's tools come from, and how its bindings are checked against them.

One rule for every command (check, compile, explain, run, test, tools, serve): `tools/` next to
the profile, `tools/` at the project's root (the nearest folder above that holds
``pyproject.toml`` or ``.git``), then folders given with ``--tools``. Never an arbitrary parent
(a stray ``/tmp/tools`` is not the project's), never the working directory, so a profile checks
and runs the same from anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner.config.call_control import CALL_CONTROL
from runner.config.suggest import suggest
from runner.errors import Problem, VlrunError
from runner.plugins._drift import schema_drift
from runner.plugins._loading import project_tool_dirs
from runner.plugins._registry import Registry


def tool_dirs(profile_path: Path, extra: Sequence[Path] = ()) -> tuple[Path, ...]:
    """The existing tool folders for the profile at ``profile_path``, nearest first."""
    return _tool_dirs(profile_path.parent.absolute(), tuple(Path(d).absolute() for d in extra))


@lru_cache(maxsize=64)
def _tool_dirs(folder: Path, extra: tuple[Path, ...]) -> tuple[Path, ...]:
    return project_tool_dirs(folder, extra)


_registries: dict[tuple[Path, ...], Registry] = {}


def check_bindings(
    profile: Any, problems: list[Problem], extra_dirs: Sequence[Path] = ()
) -> dict[str, Any] | None:
    """Append binding problems to ``problems``; the plugins' schemas, or None without tools."""
    flow = getattr(profile, "flow", None)
    node_tools = [
        (name, ("flow", "nodes", node.name, "tools", i))
        for node in (flow.nodes.values() if flow is not None else ())
        for i, name in enumerate(node.tools)
    ]
    if not profile.tools and not node_tools:
        return None
    dirs = tool_dirs(profile.source, extra_dirs)
    loc = profile.locator()
    try:
        if dirs not in _registries:
            _registries[dirs] = Registry.discover(list(dirs), entry_points=True)
        schemas: dict[str, Any] = _registries[dirs].schemas()
    except VlrunError as exc:
        problems.append(
            loc.problem(
                ("tools",),
                f"tool plugins failed to load: {exc.message}",
                hint=exc.hint,
                at_key=True,
            )
        )
        return None
    for i, binding in enumerate(profile.tools):
        actual = schemas.get(binding.name)
        if actual is None or binding.parameters is None:
            continue  # no plugin: compile reports it unless parameters are declared
        for sub, message in schema_drift(binding.parameters, actual["parameters"]):
            problems.append(
                loc.problem(
                    ("tools", i, "parameters"),
                    f"declared parameters differ from the plugin at {sub or '(root)'}: {message}",
                )
            )
    for name, path in node_tools:  # a node's tools are plugins by name, or call control
        if name not in schemas and name not in CALL_CONTROL:
            problems.append(
                loc.problem(
                    path,
                    f"node {path[2]!r} uses tool {name!r}, but no plugin provides it",
                    hint=suggest(name, [*schemas, *CALL_CONTROL])
                    or "add a plugin in tools/ with that name",
                )
            )
    return schemas
