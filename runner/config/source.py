"""Safe, bounded YAML loading that keeps where every value came from.

PyYAML's loaders drop positions, silently keep the last of two duplicate keys and, with the
wrong loader, construct Python objects. So vlrun only *composes* the node graph (the C
parser when available) and builds plain JSON-like data itself:

- every value gets a :class:`Pos` (file, line, column; 1-based) keyed by its path;
- duplicate keys, non-standard tags (``!!python/...``, ``!custom``) and non-string keys are
  reported as problems; nothing is ever constructed from a tag;
- timestamps stay strings (``api_version: 2026-07-15`` must not become a date);
- file size, node count (alias bombs) and nesting depth are bounded.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from runner.errors import Problem, ProfileError

MAX_BYTES = 1024 * 1024  # a profile is a page of text; a megabyte is already absurd
MAX_NODES = 20_000  # counted after alias expansion: stops "billion laughs"
MAX_DEPTH = 64

PathKey = tuple[str | int, ...]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR = yaml.constructor.SafeConstructor()
_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_PLAIN_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}


class Pos(NamedTuple):
    """Where a value (and its key, for mapping values) sits in a source file; 1-based.

    A NamedTuple because a profile has one per value and loading must stay cheap."""

    file: str
    line: int
    col: int
    key_line: int | None = None
    key_col: int | None = None
    style: str | None = None  # YAML scalar style: None (plain), "'", '"', "|", ">"

    def at_key(self) -> tuple[int, int]:
        if self.key_line is not None and self.key_col is not None:
            return self.key_line, self.key_col
        return self.line, self.col


@dataclass(frozen=True)
class Source:
    """One parsed YAML document: plain data plus the position of every value by path."""

    file: str
    data: Any
    positions: dict[PathKey, Pos]
    has_refs: bool = True  # the text contains "${": env references may need resolving
    ref_paths: tuple[PathKey, ...] = ()  # paths of the string values that contain "${"
    warnings: tuple[Problem, ...] = ()  # e.g. a YAML 1.1 sexagesimal number (1:30 is 90)


def problem(
    file: str,
    line: int | None,
    col: int | None,
    message: str,
    *,
    json_path: str = "",
    hint: str | None = None,
    severity: str = "error",
) -> Problem:
    return Problem(file, line, col, severity, message, json_path, hint)  # type: ignore[arg-type]


def json_path(path: PathKey) -> str:
    """``("tools", 0, "name")`` -> ``$.tools[0].name``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += "." + part
        else:
            out += "[" + repr(part) + "]"
    return out


def read_text(path: Path, *, display: str | None = None, max_bytes: int = MAX_BYTES) -> str:
    """Read a UTF-8 text file, turning every way it can fail into a positioned problem."""
    return decode(read_bounded(path, display=display, max_bytes=max_bytes), display or str(path))


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def file_kind_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a text file (None: it is a regular file).

    Checked before opening, because opening a FIFO blocks and /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop"
        return f"cannot read file: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return (
                f"is {kind}, not a regular file"
                if kind != "a directory"
                else ("is a directory, not a file")
            )
    return "is not a regular file"


def read_bounded(path: Path, *, display: str | None = None, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; anything else is a ProfileError.

    The one way vlrun reads a file it was pointed at: the type is checked first, the file is
    opened with O_NONBLOCK (a FIFO swapped in after the check cannot block) and read to at
    most ``max_bytes + 1`` bytes whatever its stat size says (/proc files claim 0)."""
    name = display or str(path)

    def refuse(message: str, hint: str | None = None) -> ProfileError:
        return ProfileError([problem(name, None, None, message, hint=hint)])

    kind = file_kind_problem(path)
    if kind is not None:
        raise refuse(kind)
    too_large = "profiles are small text files; is this the right file?"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise refuse("is a symlink loop") from None
        raise refuse(f"cannot read file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped between the check and the open
            raise refuse("is not a regular file")
        if info.st_size > max_bytes:
            raise refuse(
                f"file is too large ({info.st_size} bytes; the limit is {max_bytes})", too_large
            )
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            chunk = os.read(fd, min(65536, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise refuse(f"file is too large (more than {max_bytes} bytes)", too_large)
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def head_text(path: Path, limit: int = 4096) -> str:
    """The first ``limit`` bytes of a regular file as text; "" for anything else.

    For telling file kinds apart without blocking on a FIFO or reading a device: the loader
    that runs next refuses the file with the reason."""
    if file_kind_problem(path) is not None:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, limit).decode("utf-8", errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def resolve(path: Path, *, display: str | None = None) -> Path:
    """``path.resolve()``, with a symlink loop reported as a problem instead of a crash.

    Python 3.11 raises RuntimeError for a loop, later versions OSError."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        raise ProfileError(
            [problem(display or str(path), None, None, "is a symlink loop")]
        ) from None


def decode(raw: bytes, name: str) -> str:
    """Strict UTF-8 (a BOM is allowed); a bad byte is reported at its line and column."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ProfileError(
            [
                problem(
                    name,
                    line,
                    col,
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                    hint="save the file as UTF-8",
                )
            ]
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ProfileError(
            [problem(name, line, None, "contains a NUL byte; is this a binary file?")]
        )
    return text


def load(text: str, file: str, *, max_nodes: int = MAX_NODES) -> Source:
    """Parse one YAML document into data plus positions; raise ProfileError listing problems."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            msg = f"{exc.problem} ({exc.context})"
        hint = None
        if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
            hint = "YAML indents with spaces, not tabs"
        raise ProfileError(
            [
                problem(
                    file,
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                    f"YAML syntax error: {msg}",
                    hint=hint,
                )
            ]
        ) from None
    except yaml.YAMLError as exc:  # e.g. several documents in one file
        raise ProfileError([problem(file, None, None, f"YAML error: {exc}")]) from None
    except RecursionError:
        raise ProfileError([problem(file, None, None, "YAML nesting is too deep")]) from None
    if root is None:
        raise ProfileError(
            [problem(file, 1, 1, "file is empty", hint="a profile needs at least `name:`")]
        )
    builder = _Builder(file, max_nodes)
    data = builder.build(root, (), None)
    if builder.problems:
        raise ProfileError(builder.problems)
    return Source(
        file, data, builder.positions, "${" in text, tuple(builder.refs), tuple(builder.warnings)
    )


def load_file(path: Path, *, display: str | None = None) -> Source:
    name = display or str(path)
    return load(read_text(path, display=name), name)


class _Budget(Exception):
    pass


class _Builder:
    """Turns a composed node graph into plain data, collecting problems instead of failing."""

    def __init__(self, file: str, max_nodes: int) -> None:
        self.file = file
        self.max_nodes = max_nodes
        self.count = 0
        self.problems: list[Problem] = []
        self.positions: dict[PathKey, Pos] = {}
        self.refs: list[PathKey] = []
        self.warnings: list[Problem] = []

    def _pos(self, node: yaml.Node, key: yaml.Node | None) -> Pos:
        m = node.start_mark
        style = getattr(node, "style", None) if isinstance(node, yaml.ScalarNode) else None
        if key is None:
            return Pos(self.file, m.line + 1, m.column + 1, style=style)
        k = key.start_mark
        return Pos(self.file, m.line + 1, m.column + 1, k.line + 1, k.column + 1, style)

    def _add(self, node: yaml.Node, path: PathKey, message: str, hint: str | None = None) -> None:
        m = node.start_mark
        self.problems.append(
            problem(
                self.file, m.line + 1, m.column + 1, message, json_path=json_path(path), hint=hint
            )
        )

    def build(self, root: yaml.Node, path: PathKey, key: yaml.Node | None) -> Any:
        try:
            return self._node(root, path, key, 0)
        except _Budget:
            if self.problems and "nesting deeper" in self.problems[-1].message:
                return None
            self.problems.append(
                problem(
                    self.file,
                    root.start_mark.line + 1,
                    root.start_mark.column + 1,
                    f"document expands to more than {self.max_nodes} values (alias bomb?)",
                    hint="anchors and aliases may not multiply the document this much",
                )
            )
            return None

    def _node(self, node: yaml.Node, path: PathKey, key: yaml.Node | None, depth: int) -> Any:
        self.count += 1
        if self.count > self.max_nodes:
            raise _Budget
        if depth > MAX_DEPTH:
            m = node.start_mark
            self.problems.append(
                problem(
                    self.file,
                    m.line + 1,
                    m.column + 1,
                    f"nesting deeper than {MAX_DEPTH} levels (recursive alias?)",
                )
            )
            raise _Budget
        self.positions[path] = self._pos(node, key)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _TAG + "seq":
                self._bad_tag(node, path)
                return None
            return [
                self._node(item, (*path, i), None, depth + 1) for i, item in enumerate(node.value)
            ]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _TAG + "map":
                self._bad_tag(node, path)
                return None
            return self._mapping(node, path, depth)
        return None  # pragma: no cover - compose yields only the three kinds

    def _bad_tag(self, node: yaml.Node, path: PathKey) -> None:
        self._add(
            node,
            path,
            f"YAML tag {_short(node.tag)} is not allowed",
            hint="profiles hold plain data: strings, numbers, booleans, lists and mappings",
        )

    def _scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        tag = node.tag
        if tag == _TAG + "timestamp":
            return node.value  # keep dates as written: api_version is a string
        if tag not in _PLAIN_TAGS:
            self._bad_tag(node, path)
            return None
        try:
            if tag == _STR:
                if "${" in node.value:
                    self.refs.append(path)
                return node.value
            value = _SCALAR.yaml_constructors[tag](_SCALAR, node)
        except (yaml.YAMLError, ValueError):
            self._add(node, path, f"cannot read {node.value!r} as {_short(tag)}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            # .nan/.inf pass every `minimum`/`maximum` check and compile to bare NaN, not JSON
            self._add(
                node,
                path,
                f"{node.value!r} is not a finite number",
                hint="write an ordinary number; NaN and infinity are not allowed",
            )
            return None
        if isinstance(value, int | float) and ":" in node.value and not isinstance(value, bool):
            m = node.start_mark
            self.warnings.append(
                problem(
                    self.file,
                    m.line + 1,
                    m.column + 1,
                    f"{node.value!r} is read as the base-60 number {value} (YAML 1.1)",
                    json_path=json_path(path),
                    hint=f"quote it ('{node.value}') for text, or write {value} if you meant it",
                    severity="warning",
                )
            )
        return value

    def _pairs(
        self, node: yaml.MappingNode, path: PathKey, depth: int
    ) -> Iterator[tuple[yaml.Node, yaml.Node]]:
        """Key/value nodes with YAML merge keys (``<<: *base``) expanded; explicit keys win."""
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for knode, vnode in node.value:
            if knode.tag == _TAG + "merge":
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        self._add(src, path, "a YAML merge key (<<) needs a mapping")
                        continue
                    self.count += len(src.value)
                    if self.count > self.max_nodes:
                        raise _Budget
                    merged.extend(src.value)
            else:
                yield knode, vnode
        own = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        seen: set[Any] = set()
        for knode, vnode in merged:
            if (
                isinstance(knode, yaml.ScalarNode)
                and knode.value not in own
                and knode.value not in seen
            ):
                seen.add(knode.value)
                yield knode, vnode

    def _mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first: dict[str, yaml.Node] = {}
        for knode, vnode in self._pairs(node, path, depth):
            if not isinstance(knode, yaml.ScalarNode) or knode.tag not in _PLAIN_TAGS:
                self._add(knode, path, "mapping keys must be plain strings")
                continue
            name = knode.value
            if knode.tag != _TAG + "str":
                # `yes:`, `1:`, `null:` are read as bool/int/null by YAML; vlrun keys are names
                name = str(knode.value)
            if name in first:
                prev = first[name].start_mark
                self._add(
                    knode,
                    (*path, name),
                    f"duplicate key {name!r} (first defined at line {prev.line + 1})",
                    hint="YAML would silently keep only the last one; remove or rename one of them",
                )
                continue
            first[name] = knode
            out[name] = self._node(vnode, (*path, name), knode, depth + 1)
        return out


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag
