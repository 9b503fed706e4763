"""Composing a profile document: the ``extends`` chain and its merge, ``--set`` overrides and
``${env:NAME}`` references, all keeping source positions. The rules are in runner/profile.py."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.config import source as yamlsrc
from runner.config.locator import Locator
from runner.config.source import PathKey, Pos
from runner.errors import Problem, ProfileError, UsageError

ENV_REF = re.compile(r"(?<!\$)\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MAX_EXTENDS = 16
_KEYED_LISTS = {"tools": "name", "mcp_servers": "label"}


def _top_mapping(src: yamlsrc.Source) -> dict[str, Any]:
    if not isinstance(src.data, dict):
        # never the value itself: the file may be anything (/etc/passwd, a .env)
        kind = "a list" if isinstance(src.data, list) else f"a single {_kind_name(src.data)}"
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


def _kind_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "string" if isinstance(value, str) else "value"


def load_chain(
    path: Path, display: str, warnings: list[Problem] | None = None
) -> tuple[dict[str, Any], dict[PathKey, Pos], tuple[PathKey, ...] | None]:
    """Load a profile and its `extends` bases, innermost base first, and merge them.

    Also returns the paths of strings holding "${" (None: unknown, walk everything); the
    loader's warnings of every file in the chain are appended to ``warnings``."""
    chain: list[yamlsrc.Source] = []
    seen: list[Path] = []  # real paths, only computed once there is a base (saves syscalls)
    current, name = path, display
    while True:
        real = yamlsrc.resolve(current, display=name) if chain else None
        if chain and not seen:
            seen.append(yamlsrc.resolve(path, display=display))
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
        if warnings is not None:
            warnings.extend(src.warnings)
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
        root_dir = yamlsrc.resolve(path, display=display).parent
        current, name = contained(current, name, base, root_dir, pos, "$.extends")
        kind = yamlsrc.file_kind_problem(current)
        if kind is not None and kind != "file not found":
            # a FIFO or /dev/zero as a base is refused at the `extends:` line, before opening
            raise ProfileError(
                [
                    yamlsrc.problem(
                        src.file,
                        pos.line,
                        pos.col,
                        f"base profile {base!r} {kind}",
                        json_path="$.extends",
                    )
                ]
            )
        if kind is not None:
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


def contained(
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
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError on Python 3.11)
        raise ProfileError(
            [
                yamlsrc.problem(
                    pos.file, pos.line, pos.col, f"{rel!r} is a symlink loop", json_path=jpath
                )
            ]
        ) from None
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


def apply_set(doc: dict[str, Any], positions: dict[PathKey, Pos], expr: str) -> PathKey:
    """``a.b=value``: set one value, creating mappings on the way; list items by index.
    Returns the path it set."""
    key, sep, raw = expr.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not sep or not all(parts):
        raise UsageError(
            f"--set {expr!r} must look like path.to.key=value",
            hint="e.g. --set voice.name=alloy or --set tools.0.timeout_s=5",
        )
    if parts[0] == "extends":
        # extends is followed while the files are read, before any --set: setting it would
        # silently change nothing
        raise UsageError(
            f"--set {expr!r}: extends cannot be set from the command line",
            hint="write `extends:` in a profile file, or run the profile you meant directly",
        )
    try:
        value = yamlsrc.load(raw, f"--set {expr}").data if raw.strip() else ""
    except ProfileError as exc:
        quoted = raw.replace("'", "''")
        raise UsageError(
            f"--set {expr!r}: the value is not valid YAML ({exc.message})",
            hint=f"to pass it as text, quote it for YAML: --set \"{key.strip()}='{quoted}'\"",
        ) from None
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
    return prefix


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


# Strings rendered as Jinja2 templates: an env value substituted into one must stay text.
TEMPLATE_PATHS = frozenset({("instructions",), ("greeting",), ("greeting", "instructions")})
_TEMPLATE_SYNTAX = ("{{", "{%", "{#")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Malformed(Exception):
    pass


def _substitute(
    text: str, env: Mapping[str, str], names: list[str], missing: list[str]
) -> tuple[str, bool]:
    """Expand ``${env:NAME}``, ``${env:NAME:-default}`` (defaults may hold references, to any
    depth) and ``$${``; returns the text and whether it was exactly one reference."""
    out, _, whole = _expand(text, 0, env, names, missing, nested=False)
    return out, whole


def _expand(
    text: str, i: int, env: Mapping[str, str], names: list[str], missing: list[str], nested: bool
) -> tuple[str, int, bool]:
    """Expand from ``i`` to the end (or, nested, to the ``}`` closing a default)."""
    parts: list[str] = []
    start = i
    refs = 0
    while i < len(text):
        if text.startswith("$${", i):
            parts.append("${")
            i += 3
        elif text.startswith("${", i):
            if not text.startswith("${env:", i):
                raise _Malformed
            m = _NAME.match(text, i + 6)
            if m is None:
                raise _Malformed
            name, i = m.group(0), m.end()
            names.append(name)
            if text.startswith("}", i):
                i += 1
                default = None
            elif text.startswith(":-", i):
                # the default is expanded either way, so a bad one is an error even when unused
                inner: list[str] = []
                default, i, _ = _expand(text, i + 2, env, names, inner, nested=True)
                if name not in env:
                    missing.extend(inner)
            else:
                raise _Malformed
            refs += 1
            if name in env:
                parts.append(env[name])
            elif default is not None:
                parts.append(default)
            else:
                missing.append(name)
        elif nested and text[i] == "}":
            return "".join(parts), i + 1, False
        else:
            parts.append(text[i])
            i += 1
    if nested:
        raise _Malformed  # a default that never closes
    whole = refs == 1 and text[start:].startswith("${env:") and len(parts) == 1
    return "".join(parts), i, whole


def resolve_env(
    value: Any,
    path: PathKey,
    env: Mapping[str, str],
    loc: Locator,
    problems: list[Problem],
    refs: dict[PathKey, tuple[str, ...]],
    protected: dict[str, str] | None = None,
) -> Any:
    """Substitute env references in every string under ``value``.

    Env values are data: in a template string (instructions, greeting) a value holding
    template syntax is put in as a placeholder from ``protected``, so that ``{{ 7*7 }}`` in
    the environment reaches the model as written, not as 49 (see :func:`unprotect`)."""
    if isinstance(value, dict):
        return {
            k: resolve_env(v, (*path, k), env, loc, problems, refs, protected)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            resolve_env(v, (*path, i), env, loc, problems, refs, protected)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value
    names: list[str] = []
    missing: list[str] = []
    view = env
    if protected is not None and path in TEMPLATE_PATHS:
        view = _Protecting(env, protected)
    try:
        result, whole = _substitute(value, view, names, missing)
    except _Malformed:
        problems.append(
            loc.problem(
                path,
                f"malformed reference in {value!r}",
                hint="write ${env:NAME} or ${env:NAME:-default}; $${ is a literal ${",
            )
        )
        return value
    if names:
        refs[path] = tuple(dict.fromkeys(names))
    for name in dict.fromkeys(missing):
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


class _Protecting(Mapping[str, str]):
    """An env view whose template-looking values come out as placeholders."""

    def __init__(self, env: Mapping[str, str], protected: dict[str, str]) -> None:
        self.env = env
        self.protected = protected

    def __getitem__(self, name: str) -> str:
        value = self.env[name]
        if not any(s in value for s in _TEMPLATE_SYNTAX):
            return value
        key = f"\ue000{len(self.protected)}\ue001"  # private-use: Jinja passes it through
        self.protected[key] = value
        return key

    def __contains__(self, name: object) -> bool:
        return name in self.env

    def __iter__(self) -> Any:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


_PLACEHOLDER = re.compile("\ue000\\d+\ue001")


def unprotect(text: str, protected: Mapping[str, str]) -> str:
    """Put the env values back in place of their placeholders, after rendering."""
    if not protected or "\ue000" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: protected.get(m.group(0), m.group(0)), text)
