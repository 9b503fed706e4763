"""Tools come from the profile's project only: its folder's tools/, the project root's tools/
(pyproject.toml or .git marks it; a serve file's folder is one for its routes), and --tools
folders. Never an arbitrary parent: a stray tools/ above a profile in a temporary folder made
a worker refuse to start ("two tools are named 'current_time'")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.plugins import Registry, tool_dirs
from runner.plugins._loading import project_root, project_tool_dirs

TOOL = '''from runner.plugins import tool


@tool
def {name}() -> str:
    """{doc}"""
    return "{doc}"
'''

# The stray file leaves a mark if it is ever imported: ignoring it means never running it.
STRAY = '''from pathlib import Path

from runner.plugins import tool

Path({marker!r}).write_text("imported")


@tool
def current_time() -> str:
    """Another program's tool."""
    return "stray"
'''


def stray_parent(tmp: Path) -> tuple[Path, Path, Path]:
    """outer/tools/current_time.py (stray) and outer/xyz/p.yaml with its own tools/."""
    outer = tmp / "outer"
    marker = tmp / "stray-imported"
    (outer / "tools").mkdir(parents=True)
    (outer / "tools" / "current_time.py").write_text(STRAY.format(marker=str(marker)))
    (outer / "xyz" / "tools").mkdir(parents=True)
    (outer / "xyz" / "tools" / "current_time.py").write_text(
        TOOL.format(name="current_time", doc="The profile's own clock.")
    )
    profile = outer / "xyz" / "p.yaml"
    profile.write_text("name: p\ninstructions: Tell the time.\ntools: [current_time]\n")
    return profile, outer / "xyz" / "tools", marker


def project(tmp: Path, marker: str, *levels: str) -> tuple[Path, Path]:
    """A project root (marked) with tools/greet.py and a profile some folders below."""
    root = tmp / "proj"
    (root / "tools").mkdir(parents=True)
    if marker == ".git":
        (root / ".git").mkdir()
    else:
        (root / marker).write_text("[project]\nname = 'proj'\n")
    (root / "tools" / "greet.py").write_text(TOOL.format(name="greet", doc="Say hello."))
    folder = root.joinpath("profiles", *levels)
    folder.mkdir(parents=True)
    profile = folder / "p.yaml"
    profile.write_text("name: p\ninstructions: Greet.\ntools: [greet]\n")
    return profile, root / "tools"


def test_no_project_marker_above_the_temporary_folder() -> None:
    """The tests below rely on it: a marker above tmp would make outer/ part of a project."""
    import tempfile

    assert project_root(Path(tempfile.gettempdir()).resolve()) is None


def test_a_stray_tools_folder_above_the_profile_is_ignored(tmp_path: Path, run_cli: Any) -> None:
    profile, own, marker = stray_parent(tmp_path)
    assert tool_dirs(profile) == (own,)  # the rule every command uses
    registry = Registry.discover(list(tool_dirs(profile)), entry_points=False)
    assert registry.schemas()["current_time"]["description"] == "The profile's own clock."
    result = run_cli(["check", str(profile)])
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "two tools are named" not in out
    assert not marker.exists()  # the stray file was never imported


def test_the_rule_itself_ignores_a_parent_that_is_not_a_project(tmp_path: Path) -> None:
    profile, own, _ = stray_parent(tmp_path)
    assert project_tool_dirs(profile.parent) == (own,)


def test_a_profile_in_a_project_finds_the_root_tools(tmp_path: Path, run_cli: Any) -> None:
    profile, root_tools = project(tmp_path, "pyproject.toml")
    assert tool_dirs(profile) == (root_tools,)
    result = run_cli(["check", str(profile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_profile_deep_in_a_git_project_finds_the_root_tools(tmp_path: Path, run_cli: Any) -> None:
    """Two folders below the root: the old one-level-up rule never reached it."""
    profile, root_tools = project(tmp_path, ".git", "team", "support")
    assert project_tool_dirs(profile.parent) == (root_tools,)
    assert tool_dirs(profile) == (root_tools,)
    result = run_cli(["check", str(profile)])
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "no plugin" not in out


def test_own_tools_come_first_then_the_root_then_tools_folders(tmp_path: Path) -> None:
    profile, root_tools = project(tmp_path, "pyproject.toml", "team")
    own = profile.parent / "tools"
    own.mkdir()
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    missing = tmp_path / "missing"
    assert tool_dirs(profile, (extra, missing, root_tools)) == (own, root_tools, extra)


def test_explicit_tools_folders_still_work(tmp_path: Path, run_cli: Any) -> None:
    (tmp_path / "alone").mkdir()
    profile = tmp_path / "alone" / "p.yaml"
    profile.write_text("name: p\ninstructions: Greet.\ntools: [greet]\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "greet.py").write_text(TOOL.format(name="greet", doc="Say hello."))
    without = run_cli(["check", str(profile)])
    assert without.returncode == 1 and "greet" in without.stdout + without.stderr
    given = run_cli(["check", "--tools", str(shared), str(profile)])
    assert given.returncode == 0, given.stdout + given.stderr


def test_a_serve_files_folder_is_a_root_for_its_routes(tmp_path: Path, run_cli: Any) -> None:
    """serve.yaml next to tools/, a profile two folders below with no marker in between: the
    worker and `vlrun check serve.yaml` find the tools through the serve file's folder."""
    app = tmp_path / "app"
    (app / "tools").mkdir(parents=True)
    (app / "tools" / "greet.py").write_text(TOOL.format(name="greet", doc="Say hello."))
    (app / "profiles" / "desk").mkdir(parents=True)
    (app / "profiles" / "desk" / "p.yaml").write_text(
        "name: p\ninstructions: Greet.\ntools: [greet]\n"
    )
    (app / "serve.yaml").write_text(
        "serve: 1\nroutes:\n  - {default: true, profile: profiles/desk/p.yaml}\n"
    )
    from runner.config.serve_file import extra_tool_dirs, load_serve_file

    serve = load_serve_file(app / "serve.yaml", env={})
    assert tool_dirs(serve.routes[0].profile, extra_tool_dirs(serve)) == (app / "tools",)
    result = run_cli(["check", str(app / "serve.yaml")])
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "no plugin" not in out
