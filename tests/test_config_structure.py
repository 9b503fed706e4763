"""The structure issue 26 asks of runner/config and its neighbours, read from the source.

import-linter holds the import order itself (pyproject.toml); these tests hold what it cannot
see: that docs/flows.md's module map is the code's, that every name the code takes from the
flow's public face is declared public there, and that no two exception classes share a name.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections import Counter
from pathlib import Path

import runner.config.flow as flow_face

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "runner" / "config"
FLOW_FACE = "runner.config.flow"


def _trees(*folders: str) -> list[tuple[Path, ast.Module]]:
    out = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(part.startswith(".venv") for part in path.relative_to(ROOT).parts):
                continue  # a virtualenv kept beside the code (bench's peer) is not the project
            out.append((path, ast.parse(path.read_text(encoding="utf-8"), str(path))))
    return out


def _config_imports(path: Path) -> set[str]:
    """The runner.config modules a file imports, TYPE_CHECKING and function-local ones too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "runner.config":
                names |= {f"runner.config.{a.name}" for a in node.names}
            elif node.module.startswith("runner.config."):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("runner.config.")}
    return names


def _documented_modules() -> list[str]:
    """The modules of docs/flows.md's "Where the code is" table, top to bottom."""
    text = (ROOT / "docs" / "flows.md").read_text(encoding="utf-8")
    assert "## Where the code is" in text, "docs/flows.md has no module map"
    section = text.split("## Where the code is", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(runner/config/\w+\.py)` \|", section, flags=re.MULTILINE)


def test_the_docs_module_map_lists_every_flow_module_in_import_order() -> None:
    documented = _documented_modules()
    on_disk = {
        f"runner/config/{p.name}"
        for p in CONFIG.glob("*.py")
        if p.name.startswith("flow") or p.name in ("call_control.py", "greeting.py")
    }
    assert set(documented) - {"runner/config/types.py"} == on_disk
    # "each importing only those below it": nothing listed imports a module listed above it.
    dotted = [m.removesuffix(".py").replace("/", ".") for m in documented]
    for i, module in enumerate(documented):
        above = set(dotted[:i])
        assert not _config_imports(ROOT / module) & above, module


def test_every_name_taken_from_the_flow_face_is_declared_public_there() -> None:
    """mypy's strict config (no implicit re-export) and readers both rely on ``__all__``."""
    taken: set[str] = set()
    for _path, tree in _trees("runner", "tests", "scripts", "bench"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == FLOW_FACE:
                taken |= {a.name for a in node.names}
    assert taken, "nothing imports the flow face: this test would prove nothing"
    assert taken <= set(flow_face.__all__)
    for name in flow_face.__all__:
        assert getattr(flow_face, name) is not None, name


def _exception_classes(trees: list[tuple[Path, ast.Module]]) -> list[tuple[str, Path]]:
    """Classes deriving (by name, through runner's own classes) from a built-in exception."""
    bases: dict[str, set[str]] = {}
    where: list[tuple[str, Path]] = []
    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                names = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
                bases.setdefault(node.name, set()).update(names)
                where.append((node.name, path))

    def builtin_exception(name: str) -> bool:
        obj = getattr(builtins, name, None)
        return isinstance(obj, type) and issubclass(obj, BaseException)

    errors = {n for n, b in bases.items() if any(builtin_exception(x) for x in b)}
    grew = True
    while grew:  # close over runner's own hierarchy: Foo(ConnectError) is an exception too
        new = {n for n, b in bases.items() if b & errors} - errors
        errors |= new
        grew = bool(new)
    return [(n, p) for n, p in where if n in errors]


def test_no_two_exception_classes_in_runner_share_a_name() -> None:
    """An ``except AuthError`` must not depend on which of two AuthErrors was imported."""
    found = _exception_classes(_trees("runner"))
    assert any(n == "AuthError" for n, _ in found), "the scan must see runner.errors.AuthError"
    counts = Counter(n for n, _ in found if not n.startswith("_"))
    twice = {
        n: sorted(str(p.relative_to(ROOT)) for m, p in found if m == n)
        for n, c in counts.items()
        if c > 1
    }
    assert twice == {}
