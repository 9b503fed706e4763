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

The Profile record is in ``profile_types.py`` and the composition steps in
``profile_compose.py``; this module runs them in order, checks, and builds the record.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from runner.config import source as yamlsrc
from runner.config.compose import ENV_REF as ENV_REF  # re-exported
from runner.config.compose import MAX_EXTENDS as MAX_EXTENDS  # re-exported
from runner.config.compose import (
    apply_set,
    contained,
    load_chain,
    resolve_env,
    unprotect,
)
from runner.config.source import PathKey, Pos, json_path
from runner.config.template import TemplateProblem, Where, render
from runner.config.types import (
    AgentBinding,
    Connection,
    Greeting,
    McpServer,
    Profile,
    ToolBinding,
)
from runner.config.validate import (
    OPENAI_VOICES,
    Locator,
    schema_problems,
    semantic_problems,
    suggest,
)
from runner.errors import Problem, ProfileError, UsageError
from runner.redact import register_secret

if TYPE_CHECKING:
    from runner.config.flow import Flow

DEFAULT_TOOL_TIMEOUT_S = 10.0


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
    partial: bool = False,
) -> tuple[Profile | None, list[Problem]]:
    """Like :func:`load_profile` but returns the profile (if any) and all problems found.

    ``partial``: with errors, still return the profile built from the settings that have
    none (for `vlrun check` to check its tool bindings too); never run such a profile.
    A problem a ``--set`` causes inside a setting names that ``--set`` (Locator.problem)."""
    env = os.environ if env is None else env
    display = str(path)  # as given: problems name the file so
    path = Path(path)  # once: `vlrun check` analyses every profile it is given
    load_warnings: list[Problem] = []
    try:
        doc, positions, ref_paths = load_chain(path, display, load_warnings)
    except ProfileError as exc:
        return None, list(exc.all_problems)
    for expr in sets:
        apply_set(doc, positions, expr)
    problems: list[Problem] = list(load_warnings)
    env_refs: dict[PathKey, tuple[str, ...]] = {}
    loc = Locator(positions, display)
    protected: dict[str, str] = {}  # env values in templates, kept out of Jinja's reach
    if sets or ref_paths is None:
        doc = resolve_env(doc, (), env, loc, problems, env_refs, protected)
    else:
        for ref in ref_paths:
            parent: Any = doc
            for step in ref[:-1]:
                parent = parent[step]
            parent[ref[-1]] = resolve_env(
                parent[ref[-1]], ref, env, loc, problems, env_refs, protected
            )
    problems += _header_problems(doc, positions, env_refs, loc)
    # Every independent problem in one run: a setting with a schema (or env) error is set
    # aside, and the rest of the profile is checked without it; checks that read a set-aside
    # setting (templates read `vars`) are skipped rather than misled.
    broken = _broken_keys(doc, [p for p in problems if p.severity == "error"])
    if broken is None:
        return None, problems
    found = schema_problems(_without(doc, broken), loc)
    if found:
        more = _broken_keys(doc, found)
        if more is None or schema_problems(_without(doc, broken | more), loc):
            return None, [*problems, *found]  # the root itself is wrong: nothing to go on
        problems += found
        broken |= more
    doc = _without(doc, broken)
    problems += [
        p
        for p in semantic_problems(doc, loc)
        if not _NEEDS.get(_top_key(doc, p) or "", set()) & broken
    ]
    values: dict[str, Any] | None = None
    var_origins: dict[str, str] = {}
    if "vars" not in broken:
        values, var_origins = _vars(doc, vars, loc, problems)
    instructions = greeting = None
    if values is not None:
        instructions = _instructions(doc, values, path, positions, loc, problems)
        greeting = _greeting(doc, values, positions, loc, problems)
    flow = None
    if values is not None and "flow" in doc:
        # the flow wing is imported only for a profile that has one: `vlrun check`'s cold start
        from runner.config.flow import flow_problems, read_flow

        flow = read_flow(doc, positions, loc, problems, where=_where, protected=protected)
        if flow is not None:
            problems += flow_problems(
                flow,
                loc,
                tool_names=_tool_names(doc),
                var_names=(doc.get("vars") or {}).keys(),
                variables=values,
            )
    if protected:
        instructions = unprotect(instructions, protected) if instructions else instructions
        if greeting is not None:
            greeting = Greeting(
                unprotect(greeting.instructions, protected) if greeting.instructions else None,
                unprotect(greeting.text, protected) if greeting.text else None,
            )
        _unprotect_doc(doc, protected)
    if not partial and any(p.severity == "error" for p in problems):
        return None, problems
    profile = _build(
        path,
        doc,
        positions,
        env_refs,
        values or {},
        var_origins,
        instructions,
        greeting,
        problems,
        flow,
    )
    return profile, problems


#: Top-level settings whose checks read other settings: when one of those is set aside with
#: an error, the dependent setting's problems would be guesses, so they are not reported.
_NEEDS: dict[str, set[str]] = {
    "tool_choice": {"tools"},  # a tool's name
    "instructions": {"connection"},  # an agent binding has its own instructions
    "turn_detection": {"connection", "transcription"},  # the model, azure-speech
    "audio": {"modalities"},  # echo cancellation needs audio output
}


def _top_key(doc: Mapping[str, Any], problem: Problem) -> str | None:
    """The top-level setting a problem is about ("" for the document itself)."""
    at = problem.json_path or "$"
    if at == "$":
        return ""
    for key in doc:
        head = json_path((key,))
        if at == head or at.startswith((head + ".", head + "[")):
            return key
    return None


def _broken_keys(doc: Any, problems: Sequence[Problem]) -> set[str] | None:
    """The top-level settings ``problems`` are about; None when one is about the whole
    document (or the document is not a mapping), so nothing can be set aside."""
    if not isinstance(doc, dict):
        return None if problems else set()
    keys: set[str] = set()
    for problem in problems:
        key = _top_key(doc, problem)
        if not key:
            return None
        keys.add(key)
    return keys


def _without(doc: Any, keys: set[str]) -> Any:
    return {k: v for k, v in doc.items() if k not in keys} if keys else doc


def _tool_names(doc: Mapping[str, Any]) -> list[tuple[str, PathKey]]:
    tools = doc.get("tools") or []
    return [
        (item if isinstance(item, str) else str(item.get("name")), ("tools", i))
        for i, item in enumerate(tools)
    ]


def _secret_paths(doc: Mapping[str, Any]) -> list[tuple[PathKey, str]]:
    """Where a profile holds credentials, and what to say when one is written inline."""
    found: list[tuple[PathKey, str]] = []
    servers = doc.get("mcp_servers")
    for i, server in enumerate(servers if isinstance(servers, list) else []):
        if not isinstance(server, dict):
            continue
        headers = server.get("headers")
        for name in headers if isinstance(headers, dict) else {}:
            found.append(
                (
                    ("mcp_servers", i, "headers", name),
                    f"header {name!r} is written inline; header values are secrets",
                )
            )
        if "authorization" in server:
            found.append(
                (
                    ("mcp_servers", i, "authorization"),
                    "authorization is written inline; it is a secret",
                )
            )
    conn = doc.get("connection")
    conn_headers = conn.get("headers") if isinstance(conn, dict) else None
    for name in conn_headers if isinstance(conn_headers, dict) else {}:
        found.append(
            (
                ("connection", "headers", name),
                f"connection header {name!r} is written inline; header values are secrets",
            )
        )
    avatar = doc.get("avatar")
    ice = avatar.get("ice_servers") if isinstance(avatar, dict) else None
    for i, item in enumerate(ice if isinstance(ice, list) else []):
        if isinstance(item, dict) and "credential" in item:
            found.append(
                (
                    ("avatar", "ice_servers", i, "credential"),
                    "an ICE server credential is written inline; it is a secret",
                )
            )
    return found


def _unprotect_doc(doc: dict[str, Any], protected: Mapping[str, str]) -> None:
    """The settings record shows the template strings as written, env values in place."""
    if isinstance(doc.get("instructions"), str):
        doc["instructions"] = unprotect(doc["instructions"], protected)
    greeting = doc.get("greeting")
    if isinstance(greeting, str):
        doc["greeting"] = unprotect(greeting, protected)
    elif isinstance(greeting, dict):
        for key in ("instructions", "text"):
            if isinstance(greeting.get(key), str):
                greeting[key] = unprotect(greeting[key], protected)


def _header_problems(
    doc: Mapping[str, Any],
    positions: Mapping[PathKey, Pos],
    refs: Mapping[PathKey, tuple[str, ...]],
    loc: Locator,
) -> list[Problem]:
    """Credentials (MCP headers and authorization, ICE credentials): env references only."""
    out: list[Problem] = []
    for path, message in _secret_paths(doc):
        if path not in refs:
            out.append(
                loc.problem(
                    path,
                    message,
                    hint="use ${env:NAME} and set NAME in the environment",
                )
            )
            continue
        value: Any = doc
        for key in path:
            value = value[key]
        if isinstance(value, str):
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
            number = float(raw)
            if not math.isfinite(number):  # float() takes "nan" and "inf"; JSON has neither
                raise ValueError(raw)
            return number
        if kind == "boolean":
            low = raw.strip().lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise UsageError(
            f"--var {name}={raw}: expected {kind}"
            + (" (a finite number)" if kind == "number" else "")
        ) from None
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
        display = ""
        try:
            target, display = contained(
                declaring,
                fpos.file,
                spec["file"],
                source.resolve().parent,
                fpos,
                "$.instructions.file",
            )
            text = yamlsrc.read_text(target, display=display)
        except ProfileError as exc:
            for found in exc.all_problems:
                if found.line is None and found.file == display:
                    # not-found, a FIFO, /dev/zero, a loop: said at the `file:` line naming it
                    problems.append(
                        loc.problem(
                            ("instructions", "file"),
                            f"template file {spec['file']!r} not found"
                            if found.message == "file not found"
                            else f"template file {spec['file']!r}: {found.message}",
                            hint=found.hint,
                        )
                    )
                else:
                    problems.append(found)
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
    loc: Locator,
    problems: list[Problem],
) -> Greeting | None:
    spec = doc.get("greeting")
    if spec is None or spec is False:
        return None
    if spec is True:
        return Greeting(None)
    path: PathKey = ("greeting",)
    fixed = False
    if isinstance(spec, dict):
        if spec.get("enabled") is False:
            return None
        if "text" in spec and "instructions" in spec:
            problems.append(
                loc.problem(
                    ("greeting", "text"),
                    "a greeting has either `text` (fixed words) or `instructions` "
                    "(the model words it), not both",
                    hint="keep `text` to say exactly those words, or `instructions` to have "
                    "the model word them",
                    at_key=True,
                )
            )
            return None
        fixed = "text" in spec
        path = ("greeting", "text" if fixed else "instructions")
        text = spec.get("text" if fixed else "instructions")
    else:
        text = spec
    if text is None:
        return Greeting(None)
    try:
        rendered = render(
            text, values, _where(positions.get(path), "$." + ".".join(map(str, path)), "")
        )
    except TemplateProblem as exc:
        problems.append(exc.problem)
        return None
    return Greeting(None, rendered) if fixed else Greeting(rendered)


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
    flow: Flow | None = None,
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
            identity_client_id=agent_doc.get("identity_client_id"),
            foundry_resource=agent_doc.get("foundry_resource"),
            invoke_input=_freeze(agent_doc.get("invoke_input")),
        )
    connection = Connection(
        endpoint=conn.get("endpoint") or None,
        model=conn.get("model") or None,
        api_version=conn.get("api_version") or None,
        agent=agent,
        query=MappingProxyType(dict(conn.get("query") or {})),
        headers=MappingProxyType(dict(conn.get("headers") or {})),
        credential_scopes=tuple(conn.get("credential_scopes") or ()),
        preview=tuple(conn.get("preview") or ()),
        byom=conn.get("byom") or None,
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
                cancel_on_barge_in=bool(spec.get("cancel_on_barge_in", True)),
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
                authorization=item.get("authorization"),
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
        flow=flow,
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
