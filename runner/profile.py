"""Profiles: YAML with positions -> extends -> --set -> env refs -> checks -> a frozen Profile.

Composition rules (documented in docs/profiles.md):
- ``extends: base.yaml`` deep-merges this file over the base: mappings merge key by key,
  lists replace, except ``tools`` (matched by name) and ``mcp_servers`` (by label), whose
  entries override same-named base entries and append new ones; ``key: null`` removes a key.
- ``--set a.b=value`` (``tools.0.timeout_s=5`` for list items) is applied after merging;
  the value is read as a YAML scalar or flow collection.
- ``${env:NAME}`` / ``${env:NAME:-default}`` work in any string; a string that is one
  reference takes the type of the value (``"0.5"`` becomes a number); ``$${`` is a literal.
- extends and template files are resolved relative to the file naming them and must stay
  inside the top-level profile's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner import yamlsrc
from runner.errors import Problem, ProfileError, UsageError
from runner.redact import register_secret
from runner.template import TemplateProblem, Where, render
from runner.validate import (
    OPENAI_VOICES,
    Locator,
    schema_problems,
    semantic_problems,
    suggest,
)
from runner.yamlsrc import PathKey, Pos

ENV_REF = re.compile(r"(?<!\$)\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ANY_REF = re.compile(r"(?<!\$)\$\{")
MAX_EXTENDS = 16
DEFAULT_TOOL_TIMEOUT_S = 10.0
_KEYED_LISTS = {"tools": "name", "mcp_servers": "label"}


# --- the record ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentBinding:
    """A Foundry agent: current form (name + project) or classic 2025-05-01-preview (id)."""

    name: str | None = None
    project: str | None = None
    version: str | None = None
    conversation_id: str | None = None
    id: str | None = None
    connection_string: str | None = None

    @property
    def legacy(self) -> bool:
        return self.id is not None

    def connect_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``azure.ai.voicelive.aio.connect`` (current form; else empty)."""
        if self.legacy:
            return {}
        pairs = {
            "agent_name": self.name,
            "project_name": self.project,
            "agent_version": self.version,
            "conversation_id": self.conversation_id,
        }
        return {k: v for k, v in pairs.items() if v is not None}

    def query_params(self) -> dict[str, str]:
        """Query parameters of the classic form (the runner adds agent-access-token)."""
        if not self.legacy or self.id is None:
            return {}
        out = {"agent-id": self.id}
        if self.connection_string is not None:
            out["agent-connection-string"] = self.connection_string
        elif self.project is not None:
            out["agent-project-name"] = self.project
        return out


@dataclass(frozen=True)
class Connection:
    endpoint: str | None
    model: str | None
    api_version: str | None  # None: the SDK default (runner.compile.DEFAULT_API_VERSION)
    agent: AgentBinding | None


@dataclass(frozen=True)
class Greeting:
    """Present when the assistant speaks first; ``instructions`` says what it is told."""

    instructions: str | None


@dataclass(frozen=True)
class ToolBinding:
    name: str
    timeout_s: float | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    line: int | None = None
    file: str | None = None


@dataclass(frozen=True)
class McpServer:
    label: str
    url: str
    allowed_tools: tuple[str, ...] | None
    approval: str | Mapping[str, tuple[str, ...]] | None  # always|never|ask|{always, never}
    headers: Mapping[str, str]  # resolved from env; values are registered secrets
    line: int | None = None


@dataclass(frozen=True)
class Profile:
    source: Path
    name: str
    description: str | None
    connection: Connection
    instructions: str | None
    greeting: Greeting | None
    tools: tuple[ToolBinding, ...]
    tool_timeout_s: float
    mcp_servers: tuple[McpServer, ...]
    input_format: str
    input_sampling_rate: int
    output_format: str
    output_sampling_rate: int
    vars: Mapping[str, Any]
    settings: Mapping[str, Any]  # the resolved document (read-only), for compile
    positions: Mapping[PathKey, Pos] = field(repr=False)
    env_refs: Mapping[PathKey, tuple[str, ...]] = field(repr=False)
    var_origins: Mapping[str, str] = field(repr=False)
    warnings: tuple[Problem, ...] = ()

    @property
    def agent(self) -> AgentBinding | None:
        return self.connection.agent

    def locator(self) -> Locator:
        return Locator(self.positions, str(self.source))

    def origin(self, path: PathKey) -> str | None:
        """Where the value at ``path`` came from: ``file:line``, ``--set ...``, with env names."""
        pos = self.locator().pos(path)
        if pos is None:
            return None
        text = pos.file if pos.line == 0 else f"{pos.file}:{pos.line}"
        for i in range(len(path), -1, -1):
            names = self.env_refs.get(tuple(path[:i]))
            if names:
                text += " (env " + ", ".join(names) + ")"
                break
        return text


# --- loading ---------------------------------------------------------------------------------


def load_profile(
    path: Path,
    *,
    vars: Mapping[str, str] = MappingProxyType({}),
    sets: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Profile:
    """Load, merge, resolve, check and render a profile; ProfileError lists every problem."""
    profile, problems = analyse(path, vars=vars, sets=sets, env=env)
    if profile is None or any(p.severity == "error" for p in problems):
        raise ProfileError(problems)
    return profile


def analyse(
    path: Path,
    *,
    vars: Mapping[str, str] = MappingProxyType({}),
    sets: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[Profile | None, list[Problem]]:
    """Like :func:`load_profile` but returns the profile (if any) and all problems found."""
    env = os.environ if env is None else env
    display = str(path)
    try:
        doc, positions, ref_paths = _load_chain(Path(path), display)
    except ProfileError as exc:
        return None, list(exc.all_problems)
    for expr in sets:
        _apply_set(doc, positions, expr)
    problems: list[Problem] = []
    env_refs: dict[PathKey, tuple[str, ...]] = {}
    loc = Locator(positions, display)
    if sets or ref_paths is None:
        doc = _resolve_env(doc, (), env, loc, problems, env_refs)
    else:
        for ref in ref_paths:
            parent: Any = doc
            for step in ref[:-1]:
                parent = parent[step]
            parent[ref[-1]] = _resolve_env(parent[ref[-1]], ref, env, loc, problems, env_refs)
    problems += _header_problems(doc, positions, env_refs, loc)
    if problems:
        return None, problems
    found = schema_problems(doc, loc)
    if found:
        return None, found
    problems += semantic_problems(doc, loc)
    values, var_origins = _vars(doc, vars, loc, problems)
    instructions = greeting = None
    if values is not None:
        instructions = _instructions(doc, values, Path(path), positions, loc, problems)
        greeting = _greeting(doc, values, positions, problems)
    if any(p.severity == "error" for p in problems):
        return None, problems
    profile = _build(
        Path(path),
        doc,
        positions,
        env_refs,
        values or {},
        var_origins,
        instructions,
        greeting,
        problems,
    )
    return profile, problems


def _top_mapping(src: yamlsrc.Source) -> dict[str, Any]:
    if not isinstance(src.data, dict):
        kind = "a list" if isinstance(src.data, list) else f"a single value ({src.data!r})"
        raise ProfileError(
            [
                yamlsrc.problem(
                    src.file,
                    1,
                    1,
                    f"a profile is a mapping of settings, not {kind}",
                    hint="start with `name: my-profile`",
                )
            ]
        )
    return src.data


def _load_chain(
    path: Path, display: str
) -> tuple[dict[str, Any], dict[PathKey, Pos], tuple[PathKey, ...] | None]:
    """Load a profile and its `extends` bases, innermost base first, and merge them.

    Also returns the paths of strings holding "${" (None: unknown, walk everything)."""
    chain: list[yamlsrc.Source] = []
    seen: list[Path] = []  # real paths, only computed once there is a base (saves syscalls)
    current, name = path, display
    while True:
        real = current.resolve() if chain else None
        if chain and not seen:
            seen.append(path.resolve())
        if real is not None and real in seen:
            first = chain[-1]
            pos = first.positions.get(("extends",))
            cycle = " -> ".join([*(s.file for s in chain), name])
            raise ProfileError(
                [
                    yamlsrc.problem(
                        first.file,
                        pos.line if pos else None,
                        pos.col if pos else None,
                        f"extends cycle: {cycle}",
                        json_path="$.extends",
                    )
                ]
            )
        if real is not None:
            seen.append(real)
        src = yamlsrc.load_file(current, display=name)
        data = _top_mapping(src)
        chain.append(src)
        base = data.get("extends")
        if base is None:
            break
        pos = src.positions[("extends",)]
        if not isinstance(base, str) or not base.strip():
            raise ProfileError(
                [
                    yamlsrc.problem(
                        src.file,
                        pos.line,
                        pos.col,
                        "extends needs a file name",
                        json_path="$.extends",
                    )
                ]
            )
        if len(chain) > MAX_EXTENDS:
            raise ProfileError(
                [
                    yamlsrc.problem(
                        src.file, pos.line, pos.col, f"more than {MAX_EXTENDS} levels of extends"
                    )
                ]
            )
        root_dir = path.resolve().parent
        current, name = _contained(current, name, base, root_dir, pos, "$.extends")
        if not current.is_file():
            raise ProfileError(
                [
                    yamlsrc.problem(
                        src.file,
                        pos.line,
                        pos.col,
                        f"base profile {base!r} not found"
                        + (f" (looked for {name})" if name != base else ""),
                        json_path="$.extends",
                    )
                ]
            )
    doc, positions = chain[-1].data, dict(chain[-1].positions)
    for src in reversed(chain[:-1]):
        doc, positions = _merge(doc, positions, src.data, src.positions)
    doc.pop("extends", None)
    if len(chain) == 1:  # one file: the loader already knows which strings hold "${"
        return doc, positions, chain[0].ref_paths
    return doc, positions, None if any(src.has_refs for src in chain) else ()


def _contained(
    current: Path, current_display: str, rel: str, root_dir: Path, pos: Pos, jpath: str
) -> tuple[Path, str]:
    """Resolve ``rel`` next to ``current``; refuse absolute paths and escapes from the root."""
    if os.path.isabs(rel) or rel.startswith("~"):
        raise ProfileError(
            [
                yamlsrc.problem(
                    pos.file,
                    pos.line,
                    pos.col,
                    f"{rel!r} must be a path relative to this file",
                    json_path=jpath,
                )
            ]
        )
    target = current.parent / rel
    try:
        target.resolve().relative_to(root_dir)
    except ValueError:
        raise ProfileError(
            [
                yamlsrc.problem(
                    pos.file,
                    pos.line,
                    pos.col,
                    f"{rel!r} points outside the profile's folder",
                    json_path=jpath,
                    hint="keep base profiles and templates next to the profile",
                )
            ]
        ) from None
    return target, os.path.normpath(os.path.join(os.path.dirname(current_display), rel))


def _subtree(positions: Mapping[PathKey, Pos], prefix: PathKey) -> dict[PathKey, Pos]:
    n = len(prefix)
    return {p[n:]: v for p, v in positions.items() if p[:n] == prefix}


def _merge(
    base: Any, base_pos: dict[PathKey, Pos], child: Any, child_pos: Mapping[PathKey, Pos]
) -> tuple[Any, dict[PathKey, Pos]]:
    """Deep-merge ``child`` over ``base``; positions follow whichever file a value came from."""
    out_pos: dict[PathKey, Pos] = {}

    def put(sub: Mapping[PathKey, Pos], to: PathKey) -> None:
        for p, v in sub.items():
            out_pos[to + p] = v

    def merge(b: Any, bp: dict[PathKey, Pos], c: Any, cp: dict[PathKey, Pos], at: PathKey) -> Any:
        if isinstance(b, dict) and isinstance(c, dict):
            out_pos[at] = cp.get((), bp.get(()))  # type: ignore[assignment]
            result: dict[str, Any] = {}
            for k, v in b.items():
                if k in c:
                    continue
                result[k] = v
                put(_subtree(bp, (k,)), (*at, k))
            for k, v in c.items():
                if v is None and k != "extends":
                    continue  # null removes the key
                if k in b:
                    key_kind = _KEYED_LISTS.get(k) if at == () else None
                    if key_kind and isinstance(b[k], list) and isinstance(v, list):
                        result[k] = merge_keyed(
                            b[k], _subtree(bp, (k,)), v, _subtree(cp, (k,)), (*at, k), key_kind
                        )
                    else:
                        result[k] = merge(b[k], _subtree(bp, (k,)), v, _subtree(cp, (k,)), (*at, k))
                else:
                    result[k] = v
                    put(_subtree(cp, (k,)), (*at, k))
            return result
        put(cp, at)
        return c

    def merge_keyed(
        b: list[Any],
        bp: dict[PathKey, Pos],
        c: list[Any],
        cp: dict[PathKey, Pos],
        at: PathKey,
        key: str,
    ) -> list[Any]:
        def name(item: Any) -> Any:
            return (
                item if isinstance(item, str) else item.get(key) if isinstance(item, dict) else None
            )

        out_pos[at] = cp.get((), bp.get(()))  # type: ignore[assignment]
        result: list[Any] = []
        child_by_name = {name(x): i for i, x in enumerate(c) if name(x) is not None}
        used: set[int] = set()
        for i, item in enumerate(b):
            j = child_by_name.get(name(item))
            if j is not None:
                used.add(j)
                put(_subtree(cp, (j,)), (*at, len(result)))
                result.append(c[j])
            else:
                put(_subtree(bp, (i,)), (*at, len(result)))
                result.append(item)
        for j, item in enumerate(c):
            if j not in used:
                put(_subtree(cp, (j,)), (*at, len(result)))
                result.append(item)
        return result

    merged = merge(base, base_pos, child, dict(child_pos), ())
    return merged, {k: v for k, v in out_pos.items() if v is not None}


def _apply_set(doc: dict[str, Any], positions: dict[PathKey, Pos], expr: str) -> None:
    """``a.b=value``: set one value, creating mappings on the way; list items by index."""
    key, sep, raw = expr.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not sep or not all(parts):
        raise UsageError(
            f"--set {expr!r} must look like path.to.key=value",
            hint="e.g. --set voice.name=alloy or --set tools.0.timeout_s=5",
        )
    try:
        value = yamlsrc.load(raw, f"--set {expr}").data if raw.strip() else ""
    except ProfileError as exc:
        raise UsageError(f"--set {expr!r}: the value is not valid YAML ({exc.message})") from None
    node: Any = doc
    path: list[str | int] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        step: str | int = part
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UsageError(
                    f"--set {expr!r}: {'.'.join(parts[:i]) or 'value'} has no item {part!r}",
                    hint=f"indexes 0..{len(node) - 1}" if node else None,
                )
            step = int(part)
        elif not isinstance(node, dict):
            raise UsageError(f"--set {expr!r}: {'.'.join(parts[:i])} is not a mapping")
        path.append(step)
        if last:
            node[step] = value
        else:
            if isinstance(node, dict) and node.get(step) is None:
                node[step] = {}
            elif not isinstance(node[step], dict | list):
                raise UsageError(
                    f"--set {expr!r}: {'.'.join(parts[: i + 1])} is a single value, not a mapping"
                )
            node = node[step]
    prefix = tuple(path)
    for p in [p for p in positions if p[: len(prefix)] == prefix]:
        del positions[p]
    here = Pos(f"--set {expr}", 0, 0)
    positions[prefix] = here
    for sub in _walk_paths(value, prefix):
        positions[sub] = here


def _walk_paths(value: Any, at: PathKey) -> list[PathKey]:
    out: list[PathKey] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*at, k))
            out += _walk_paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*at, i))
            out += _walk_paths(v, (*at, i))
    return out


def _resolve_env(
    value: Any,
    path: PathKey,
    env: Mapping[str, str],
    loc: Locator,
    problems: list[Problem],
    refs: dict[PathKey, tuple[str, ...]],
) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_env(v, (*path, k), env, loc, problems, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, (*path, i), env, loc, problems, refs) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    names: list[str] = []
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        names.append(name)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    stripped = ENV_REF.sub("", value)
    if _ANY_REF.search(stripped):
        problems.append(
            loc.problem(
                path,
                f"malformed reference in {value!r}",
                hint="write ${env:NAME} or ${env:NAME:-default}; $${ is a literal ${",
            )
        )
        return value
    whole = ENV_REF.fullmatch(value) is not None
    result = ENV_REF.sub(sub, value).replace("$${", "${")
    if names:
        refs[path] = tuple(names)
    for name in missing:
        problems.append(
            loc.problem(
                path,
                f"environment variable {name} is not set",
                hint=f"set {name}, or give a default: ${{env:{name}:-value}}",
            )
        )
    if whole and result.strip():
        try:
            typed = yamlsrc.load(result, "<env>").data
        except ProfileError:
            return result
        if isinstance(typed, bool | int | float):
            return typed
    return result


def _header_problems(
    doc: Mapping[str, Any],
    positions: Mapping[PathKey, Pos],
    refs: Mapping[PathKey, tuple[str, ...]],
    loc: Locator,
) -> list[Problem]:
    """MCP header values are credentials: only env references, never inline text."""
    out: list[Problem] = []
    servers = doc.get("mcp_servers")
    if not isinstance(servers, list):
        return out
    for i, server in enumerate(servers):
        headers = server.get("headers") if isinstance(server, dict) else None
        if not isinstance(headers, dict):
            continue
        for name, value in headers.items():
            path = ("mcp_servers", i, "headers", name)
            if path not in refs:
                out.append(
                    loc.problem(
                        path,
                        f"header {name!r} is written inline; header values are secrets",
                        hint="use ${env:NAME} and set NAME in the environment",
                    )
                )
            elif isinstance(value, str):
                register_secret(value)
    return out


def _vars(
    doc: Mapping[str, Any], given: Mapping[str, str], loc: Locator, problems: list[Problem]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    declared = doc.get("vars") or {}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name in given:
        if name not in declared:
            raise UsageError(
                f"--var {name}: the profile declares no variable {name!r}",
                hint=suggest(name, declared)
                or (
                    "declared: " + ", ".join(declared)
                    if declared
                    else "declare it under `vars:` in the profile"
                ),
            )
    ok = True
    for name, spec in declared.items():
        kind, default = _var_spec(spec)
        if name in given:
            values[name] = _convert_var(name, given[name], kind)
            origins[name] = f"--var {name}"
        elif default is not None:
            values[name] = default
            origins[name] = "default"
        else:
            problems.append(
                loc.problem(
                    ("vars", name),
                    f"variable {name!r} has no default and no value",
                    hint=f"pass --var {name}=VALUE or give it a default",
                    at_key=True,
                )
            )
            ok = False
    return (values if ok else None), origins


def _var_spec(spec: Any) -> tuple[str | None, Any]:
    if isinstance(spec, dict):
        default = spec.get("default")
        kind = spec.get("type") or (_kind_of(default) if default is not None else "string")
        return kind, default
    return (_kind_of(spec) if spec is not None else "string"), spec


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _convert_var(name: str, raw: str, kind: str | None) -> Any:
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            low = raw.strip().lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise UsageError(f"--var {name}={raw}: expected {kind}") from None
    return raw


def _instructions(
    doc: Mapping[str, Any],
    values: Mapping[str, Any],
    source: Path,
    positions: Mapping[PathKey, Pos],
    loc: Locator,
    problems: list[Problem],
) -> str | None:
    spec = doc.get("instructions")
    if spec is None:
        return None
    pos = positions.get(("instructions",))
    if isinstance(spec, dict):
        fpos = positions.get(("instructions", "file")) or pos
        assert fpos is not None
        declaring = Path(fpos.file) if fpos.line else source
        try:
            target, display = _contained(
                declaring,
                fpos.file,
                spec["file"],
                source.resolve().parent,
                fpos,
                "$.instructions.file",
            )
            text = yamlsrc.read_text(target, display=display)
        except ProfileError as exc:
            if exc.all_problems and exc.all_problems[0].message == "file not found":
                problems.append(
                    loc.problem(
                        ("instructions", "file"), f"template file {spec['file']!r} not found"
                    )
                )
            else:
                problems.extend(exc.all_problems)
            return None
        where = Where(display, 1, json_path="$.instructions.file")
    else:
        text = spec
        where = _where(pos, "$.instructions", str(source))
    try:
        return render(text, values, where)
    except TemplateProblem as exc:
        problems.append(exc.problem)
        return None


def _where(pos: Pos | None, jpath: str, file: str) -> Where:
    if pos is None or pos.line == 0:
        return Where(pos.file if pos else file, 0, 0, one_line=True, json_path=jpath)
    if pos.style == "|":  # literal block: template line 1 is the line after the indicator
        return Where(pos.file, pos.line + 1, json_path=jpath)
    return Where(pos.file, pos.line, pos.col, one_line=True, json_path=jpath)


def _greeting(
    doc: Mapping[str, Any],
    values: Mapping[str, Any],
    positions: Mapping[PathKey, Pos],
    problems: list[Problem],
) -> Greeting | None:
    spec = doc.get("greeting")
    if spec is None or spec is False:
        return None
    if spec is True:
        return Greeting(None)
    path: PathKey = ("greeting",)
    if isinstance(spec, dict):
        if spec.get("enabled") is False:
            return None
        text = spec.get("instructions")
        path = ("greeting", "instructions")
    else:
        text = spec
    if text is None:
        return Greeting(None)
    try:
        return Greeting(
            render(text, values, _where(positions.get(path), "$." + ".".join(map(str, path)), ""))
        )
    except TemplateProblem as exc:
        problems.append(exc.problem)
        return None


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _output_rate(fmt: str) -> int:
    if fmt.startswith("g711"):
        return 8000
    m = re.fullmatch(r"pcm16_(\d+)hz", fmt)
    return int(m.group(1)) if m else 24000


def _build(
    source: Path,
    doc: dict[str, Any],
    positions: dict[PathKey, Pos],
    env_refs: dict[PathKey, tuple[str, ...]],
    values: dict[str, Any],
    var_origins: dict[str, str],
    instructions: str | None,
    greeting: Greeting | None,
    problems: list[Problem],
) -> Profile:
    conn = doc.get("connection") or {}
    agent_doc = conn.get("agent")
    agent = None
    if isinstance(agent_doc, dict):
        version = agent_doc.get("version")
        agent = AgentBinding(
            name=agent_doc.get("name"),
            project=agent_doc.get("project"),
            version=str(version) if version is not None else None,
            conversation_id=agent_doc.get("conversation_id"),
            id=agent_doc.get("id"),
            connection_string=agent_doc.get("connection_string"),
        )
    connection = Connection(
        endpoint=conn.get("endpoint") or None,
        model=conn.get("model") or None,
        api_version=conn.get("api_version") or None,
        agent=agent,
    )
    tools = []
    for i, item in enumerate(doc.get("tools") or []):
        pos = positions.get(("tools", i))
        spec = {"name": item} if isinstance(item, str) else item
        timeout = spec.get("timeout_s")
        tools.append(
            ToolBinding(
                name=spec["name"],
                timeout_s=float(timeout) if timeout is not None else None,
                description=spec.get("description"),
                parameters=spec.get("parameters"),  # type: ignore[arg-type]
                line=pos.line if pos and pos.line else None,
                file=pos.file if pos else None,
            )
        )
    servers = []
    for i, item in enumerate(doc.get("mcp_servers") or []):
        pos = positions.get(("mcp_servers", i))
        approval = item.get("approval")
        if isinstance(approval, dict):
            approval = MappingProxyType({k: tuple(v) for k, v in approval.items()})
        allowed = item.get("allowed_tools")
        servers.append(
            McpServer(
                label=item["label"],
                url=item["url"],
                allowed_tools=tuple(allowed) if allowed is not None else None,
                approval=approval,
                headers=MappingProxyType(dict(item.get("headers") or {})),
                line=pos.line if pos and pos.line else None,
            )
        )
    audio = doc.get("audio") or {}
    in_fmt = audio.get("input_format", "pcm16")
    out_fmt = audio.get("output_format", "pcm16")
    in_rate = audio.get("input_sampling_rate") or (8000 if in_fmt.startswith("g711") else 24000)
    timeout = doc.get("tool_timeout_s")
    return Profile(
        source=source,
        name=doc.get("name") or source.stem,
        description=doc.get("description"),
        connection=connection,
        instructions=instructions,
        greeting=greeting,
        tools=tuple(tools),
        tool_timeout_s=float(timeout) if timeout is not None else DEFAULT_TOOL_TIMEOUT_S,
        mcp_servers=tuple(servers),
        input_format=in_fmt,
        input_sampling_rate=int(in_rate),
        output_format=out_fmt,
        output_sampling_rate=_output_rate(out_fmt),
        vars=MappingProxyType(values),
        settings=_freeze(doc),
        positions=MappingProxyType(positions),
        env_refs=MappingProxyType(env_refs),
        var_origins=MappingProxyType(var_origins),
        warnings=tuple(p for p in problems if p.severity == "warning"),
    )


def voice_type(voice: Any) -> str | None:
    """The voice family a profile's `voice` value means (explicit `type` or inferred)."""
    if isinstance(voice, str):
        return "openai" if voice in OPENAI_VOICES else "azure-standard"
    if isinstance(voice, Mapping):
        explicit = voice.get("type")
        if explicit:
            return str(explicit)
        return "openai" if voice.get("name") in OPENAI_VOICES else "azure-standard"
    return None
