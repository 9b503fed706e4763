"""A small mutation tester: change one thing in a module, run its tests, see whether they notice.

    python scripts/mutate.py runner/plugins/_dispatch.py -- tests/test_plugins_dispatch.py ...
    python scripts/mutate.py runner/live/state.py --scope TurnState,TaskGroup -- tests/...

Mutations (one per run): comparison operators flipped (== !=, < <=, > >=, is / is not,
in / not in), ``and`` <-> ``or``, ``not`` removed, ``if`` conditions negated, True <-> False,
integers n -> n + 1, ``+`` <-> ``-`` (also in ``+=``), and each statement inside a function
replaced by ``pass``. Each mutant is written into a private copy of the repository (one per
worker), the tests run there with ``-x``; a mutant survives if they all pass. Docstrings are
left alone. Prints the kill rate and every survivor with its line.

The tests first run once on the unchanged module: if they fail there, every mutant would
count as killed, so the run stops. ``--test-timeout`` bounds each test (a mutant that makes
one hang is killed in seconds, not after the suite's 120 s); ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLIP = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclass
class Mutant:
    number: int
    line: int
    what: str


class Mutator(ast.NodeTransformer):
    """Walks the tree counting mutation points; applies the one numbered ``target``."""

    def __init__(self, target: int | None, scope: set[str] | None) -> None:
        self.target = target
        self.scope = scope
        self.count = 0
        self.found: list[Mutant] = []
        self._inside: list[str] = []
        self._in_function = 0

    def _point(self, node: ast.AST, what: str) -> bool:
        if self.scope is not None and not (set(self._inside) & self.scope):
            return False
        n = self.count
        self.count += 1
        self.found.append(Mutant(n, getattr(node, "lineno", 0), what))
        return n == self.target

    def _scoped(self, node: ast.AST, name: str) -> ast.AST:
        self._inside.append(name)
        try:
            return self.generic_visit(node)
        finally:
            self._inside.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        return self._scoped(node, node.name)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        self._in_function += 1
        try:
            result = self._scoped(node, node.name)
        finally:
            self._in_function -= 1
        body = node.body
        start = 1 if body and _is_docstring(body[0]) else 0
        for i in range(start, len(body)):
            if isinstance(body[i], (ast.Pass, ast.Raise)):
                continue
            if self._point(body[i], f"statement at line {body[i].lineno} -> pass"):
                body[i] = ast.copy_location(ast.Pass(), body[i])
        return result

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            flipped = FLIP.get(type(op))
            if flipped and self._point(node, f"{type(op).__name__} -> {flipped.__name__}"):
                node.ops[i] = flipped()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._point(node, f"{type(node.op).__name__} -> {other.__name__}"):
            node.op = other()
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._point(node, "not removed"):
            return node.operand
        return node

    def visit_If(self, node: ast.If) -> ast.AST:
        if "version_info" in ast.unparse(node.test):
            # an interpreter-version branch: only the side this Python runs can be tested
            live = node.body if eval(ast.unparse(node.test), {"sys": sys}) else node.orelse
            for stmt in live:
                self.visit(stmt)
            return node
        self.generic_visit(node)
        if self._in_function and self._point(node, "if condition negated"):
            node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, bool):
            if self._point(node, f"{node.value} -> {not node.value}"):
                return ast.copy_location(ast.Constant(not node.value), node)
        elif isinstance(node.value, int) and self._point(node, f"{node.value} -> {node.value + 1}"):
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swap = {ast.Add: ast.Sub, ast.Sub: ast.Add}.get(type(node.op))
        if swap and self._point(node, f"{type(node.op).__name__} -> {swap.__name__}"):
            node.op = swap()
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        swap = {ast.Add: ast.Sub, ast.Sub: ast.Add}.get(type(node.op))
        if swap and self._point(node, f"{type(node.op).__name__}= -> {swap.__name__}="):
            node.op = swap()
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if _is_docstring(node):
            return node  # leave docstrings (and their text) alone
        return self.generic_visit(node)


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def mutants(source: str, scope: set[str] | None) -> list[Mutant]:
    walker = Mutator(None, scope)
    walker.visit(ast.parse(source))
    return walker.found


def mutated(source: str, number: int, scope: set[str] | None) -> str:
    tree = copy.deepcopy(ast.parse(source))
    Mutator(number, scope).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def run_one(
    work: Path, target: str, text: str, tests: list[str], timeout: float, test_timeout: float
) -> tuple[bool, str]:
    """Whether the tests kill this mutant (they fail, or hang past ``timeout``)."""
    (work / target).write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(work), "VLRUN_SCHEDULES": "25"}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    cmd += ["-p", "no:randomly", "-o", f"timeout={test_timeout:g}", *tests]
    try:
        result = subprocess.run(
            cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return True, "timeout"
    lines = result.stdout.strip().splitlines()
    return result.returncode != 0, lines[-1] if lines else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="module to mutate, relative to the repository")
    parser.add_argument("--scope", help="only inside these classes/functions (comma-separated)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant run")
    parser.add_argument("--test-timeout", type=float, default=20.0, help="seconds per test")
    parser.add_argument("--json", type=Path, help="write the figures and survivors here")
    parser.add_argument("--only", help="mutant numbers to run (comma-separated)")
    parser.add_argument("tests", nargs="+")
    args = parser.parse_args()
    scope = set(args.scope.split(",")) if args.scope else None
    source = (ROOT / args.target).read_text(encoding="utf-8")
    todo = mutants(source, scope)
    if args.only:
        wanted = {int(n) for n in args.only.split(",")}
        todo = [m for m in todo if m.number in wanted]
    base = Path(tempfile.mkdtemp(prefix="vlrun-mutate-"))
    works = []
    for w in range(args.workers):
        work = base / f"w{w}"
        shutil.copytree(
            ROOT,
            work,
            ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "logs", "*.egg-info"),
        )
        works.append(work)
    began = time.monotonic()
    ok, last = run_one(works[0], args.target, source, args.tests, args.timeout, args.test_timeout)
    baseline_s = time.monotonic() - began
    if ok:  # "killed" by the unchanged module: the tests themselves fail
        shutil.rmtree(base, ignore_errors=True)
        print(f"the tests fail on the unchanged {args.target}: {last}", file=sys.stderr)
        return 2
    print(f"baseline: the tests pass in {baseline_s:.1f} s", flush=True)
    free = list(works)
    survivors: list[Mutant] = []
    killed = 0

    def job(m: Mutant) -> tuple[Mutant, bool, str]:
        work = free.pop()
        try:
            text = mutated(source, m.number, scope)
            dead, last = run_one(
                work, args.target, text, args.tests, args.timeout, args.test_timeout
            )
        finally:
            (work / args.target).write_text(source, encoding="utf-8")
            free.append(work)
        return m, dead, last

    pool = concurrent.futures.ThreadPoolExecutor(args.workers)
    try:
        for m, dead, last in pool.map(job, todo):
            mark = "killed " if dead else "SURVIVED"
            print(f"{mark} #{m.number:3d} line {m.line:4d}: {m.what}  [{last}]", flush=True)
            if dead:
                killed += 1
            else:
                survivors.append(m)
    except KeyboardInterrupt:  # Ctrl+C: the running mutants finish, the queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        shutil.rmtree(base, ignore_errors=True)
    total = len(todo)
    rate = 100 * killed / total if total else 100.0
    took = time.monotonic() - began
    print(f"\n{args.target}: {killed}/{total} mutants killed ({rate:.1f} %) in {took:.0f} s")
    for m in survivors:
        print(f"  survivor #{m.number} line {m.line}: {m.what}")
    if args.json:
        summary = {
            "target": args.target,
            "scope": sorted(scope) if scope else None,
            "tests": args.tests,
            "total": total,
            "killed": killed,
            "rate": round(rate, 1),
            "seconds": round(took, 1),
            "baseline_seconds": round(baseline_s, 1),
            "survivors": [{"number": m.number, "line": m.line, "what": m.what} for m in survivors],
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
