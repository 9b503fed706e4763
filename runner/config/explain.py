"""What a profile compiles to, and where each compiled value came from (`vlrun compile/explain`)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.config import gpt_live
from runner.config.check import BindingCheck
from runner.config.compile import PLUGIN_ORIGIN, compile_with_problems, effective_api_version
from runner.config.load import load_profile
from runner.config.service import BYOM_QUERY, FEATURES_HEADER
from runner.config.types import Profile
from runner.errors import Problem, ProfileError, UsageError
from runner.redact import redact, redact_obj

Trace = dict[Any, Any]


def compiled(
    path: Path,
    *,
    vars: Mapping[str, str],
    sets: Sequence[str],
    api_version: str | None,
    bindings: BindingCheck | None,
) -> tuple[Profile, dict[str, Any], list[Problem], Trace, dict[str, Any] | None]:
    """Load and compile ``path``; raise ProfileError on any error, return the warnings (and
    the plugins' tool schemas, for a flow's node sessions)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such profile file")
    profile = load_profile(path, vars=vars, sets=sets)
    problems = list(profile.warnings)
    schemas = bindings(profile, problems) if bindings else None
    payload, found, trace = compile_with_problems(
        profile, api_version=api_version, tool_schemas=schemas
    )
    problems += found
    if any(p.severity == "error" for p in problems):
        raise ProfileError(problems)
    return profile, payload, problems, trace, schemas


def explain_rows(
    loaded: Profile, payload: Mapping[str, Any], trace: Trace, api_version: str | None
) -> list[tuple[str, str, str]]:
    """(field, JSON value, origin) for every compiled leaf; secrets masked."""
    masked = redact_obj(payload["session"])
    rows: list[tuple[str, str, str]] = []
    if payload.get("type") == "session.start":  # GPT-Live (docs/gpt-live.md): no api-version
        rows.append(("api_version", "null", f"GPT-Live ({gpt_live.PATH}) takes none"))
    else:
        version = effective_api_version(loaded, api_version)
        version_from = "--api-version" if api_version else _exact_origin(loaded, "api_version")
        rows.append(("api_version", json.dumps(version), version_from))
    for key in ("endpoint", "model"):
        value = getattr(loaded.connection, key)
        rows.append(
            (
                f"connection.{key}",
                json.dumps(redact(value) if value else value),
                _exact_origin(loaded, key),
            )
        )
    rows += _connect_rows(loaded)
    if loaded.agent is not None:
        for key, value in {**loaded.agent.connect_kwargs(), **loaded.agent.query_params()}.items():
            rows.append(
                (
                    f"agent.{key}",
                    json.dumps(value),
                    loaded.origin(("connection", "agent")) or "default",
                )
            )
    for path, value in _leaves(masked, ()):
        text = json.dumps(value, ensure_ascii=False)
        if len(text) > 60:
            text = text[:57] + "..."
        rows.append(("session." + _dotted(path), text, origin_of(loaded, trace, path)))
    for name, value in loaded.vars.items():
        rows.append(
            (f"vars.{name}", json.dumps(redact_obj(value)), loaded.var_origins.get(name, "default"))
        )
    return rows


#: connect() entries another setting writes: (option, entry) -> the setting to credit
_DERIVED = {
    ("headers", FEATURES_HEADER): ("connection", "preview"),
    ("query", BYOM_QUERY): ("connection", "byom"),
}


def _connect_rows(loaded: Profile) -> list[tuple[str, str, str]]:
    """The ``connect()`` options; an entry another setting wrote (the VoiceLive-Features
    header from ``connection.preview``, the BYOM ``profile`` query from ``connection.byom``)
    is a row of its own, credited to that setting."""
    rows: list[tuple[str, str, str]] = []
    conn = loaded.connection
    derived = {
        ("headers", FEATURES_HEADER): bool(conn.preview),
        ("query", BYOM_QUERY): bool(conn.byom),
    }
    for key, value in conn.connect_options().items():
        own = value
        if isinstance(value, dict):
            own = {k: v for k, v in value.items() if not derived.get((key, k))}
        if own:
            rows.append(
                (
                    f"connection.{key}",
                    json.dumps(redact_obj(own)),
                    loaded.origin(("connection", key)) or "default",
                )
            )
        if isinstance(value, dict):
            for name, entry in value.items():
                if derived.get((key, name)):
                    rows.append(
                        (
                            f"connection.{key}.{name}",
                            json.dumps(redact_obj(entry)),
                            loaded.origin(_DERIVED[(key, name)]) or "default",
                        )
                    )
    return rows


def _leaves(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def _dotted(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def origin_of(profile: Any, trace: dict[Any, Any], out_path: tuple[Any, ...]) -> str:
    """The profile place a compiled field came from, via the compile trace."""
    for i in range(len(out_path), 0, -1):
        source = trace.get(out_path[:i])
        if source is None:
            continue
        if source[0] == PLUGIN_ORIGIN:
            return f"{source[1]} (plugin)"
        rest = out_path[i:]
        candidate = (*source, *rest)
        if candidate in profile.positions:
            source = candidate
        if source == ("instructions",) and profile.vars:
            used = ", ".join(f"{k} from {profile.var_origins.get(k, '?')}" for k in profile.vars)
            return f"{profile.origin(source) or 'default'}; vars: {used}"
        return profile.origin(source) or "default"
    return "default"


def _exact_origin(profile: Any, key: str) -> str:
    path = ("connection", key)
    if path not in profile.positions:
        return "default (SDK)" if key == "api_version" else "default"
    return str(profile.origin(path))


def flow_rows(
    loaded: Profile,
    payload: Mapping[str, Any],
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[str, str, str]]:
    """Each flow node's session as it differs from the profile's: (field, value, origin)."""
    from runner.config.flow import node_sessions

    flow = loaded.flow
    if flow is None:
        return []
    rows: list[tuple[str, str, str]] = []
    for node, update, own in node_sessions(flow, payload, loaded.vars, schemas):
        session = redact_obj(update["session"])
        where = loaded.origin(node.path) or "profile"
        label = f"flow.{node.name}" + (" (start)" if node.name == flow.start else "")
        label += " (end)" if node.end else ""
        text = json.dumps(redact(own.strip()), ensure_ascii=False)
        rows.append((label, text if len(text) <= 60 else text[:57] + '..."', where))
        names = [t.get("name") or t.get("server_label") for t in session.get("tools") or []]
        rows.append((f"flow.{node.name}.tools", json.dumps(names), where))
        for t in node.transitions:
            rule = f"when {t.when.text}" if t.when else "always"
            rows.append(
                (f"flow.{node.name} -> {t.to}", json.dumps(rule), loaded.origin(t.path) or where)
            )
    return rows


def format_rows(rows: Sequence[tuple[str, str, str]], columns: int | None = None) -> list[str]:
    """``field  value  <- origin`` lines, each at most ``columns`` wide when given (a terminal):
    long values are cut ("..."), origins wrap under their column (or go on a line of their own
    when the terminal is too narrow for a column). ``None``: one line per row, nothing cut."""
    if not rows:
        return []
    nw = max(len(r[0]) for r in rows)
    vw = min(60, max(len(r[1]) for r in rows))
    if columns is None:
        return [f"{n.ljust(nw)}  {v.ljust(vw)}  <- {o}" for n, v, o in rows]
    longest_origin = max(len(r[2]) for r in rows)
    # The origin is what explain is for: the value column gives way first, down to 16.
    vw = max(16, min(vw, columns - nw - 7 - min(longest_origin, 30)))
    ow = columns - nw - 7 - vw
    lines: list[str] = []
    for name, value, origin in rows:
        if ow < 20:  # too narrow for an origin column: value and origin under the name
            room = columns - nw - 2
            if len(value) <= room:
                lines.append(f"{name.ljust(nw)}  {value}")
            else:
                lines.append(name[:columns])
                lines.append("    " + _cut(value, columns - 4))
            lines.extend(
                textwrap.wrap(
                    origin, columns, initial_indent="    <- ", subsequent_indent="       "
                )
                or ["    <- "]
            )
            continue
        parts = textwrap.wrap(origin, ow, break_on_hyphens=False) or [""]
        lines.append(f"{name.ljust(nw)}  {_cut(value, vw).ljust(vw)}  <- {parts[0]}")
        lines.extend(" " * (nw + 7 + vw) + part for part in parts[1:])
    return lines


def _cut(value: str, width: int) -> str:
    """``value`` in at most ``width`` characters; a cut JSON string keeps its closing quote."""
    if len(value) <= width:
        return value
    if value.startswith('"') and width > 4:
        return value[: width - 4] + '..."'
    return value[: max(width - 3, 0)] + "..."
