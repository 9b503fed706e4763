"""Finding tools: folders loaded by path, entry points, conflicts, load errors, filters."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.errors import ToolError, VlrunError
from runner.plugins import ENTRY_POINT_GROUP, Registry

DATA = Path(__file__).parent / "data" / "plugins"


@pytest.fixture
def fake_dist(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put a real (unpacked) distribution with `vlrun.tools` entry points on sys.path."""
    root = DATA / "fakedist"
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root
    for name in [m for m in sys.modules if m.startswith("acme_vlrun_tools")]:
        del sys.modules[name]


def make_dist(root: Path, name: str, entry_points: str) -> Path:
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")
    return root


def test_folder_tools_are_collected_with_their_sources() -> None:
    registry = Registry.discover([DATA / "folder_a"], entry_points=False)
    assert registry.names() == ["greet", "lookup_order", "shout"]
    greet = registry.get("greet")
    assert greet.source.endswith("folder_a/greet.py:6")
    assert not greet.is_async and not greet.wants_context
    order = registry.get("lookup_order")
    assert order.is_async and order.wants_context
    assert order.source.endswith("folder_a/greet.py:12")
    assert "helper" not in registry  # unmarked functions are not tools


def test_underscore_files_are_never_imported() -> None:
    # folder_a/_private.py raises on import; discovery succeeding proves it was skipped.
    Registry.discover([DATA / "folder_a"], entry_points=False)


def test_modules_are_loaded_by_path_under_private_names() -> None:
    stdlib_json = sys.modules["json"]
    registry = Registry.discover([DATA / "shadow"], entry_points=False)
    assert registry.names() == ["json_tool"]
    assert sys.modules["json"] is stdlib_json
    assert json.dumps({"a": 1}) == '{"a": 1}'
    module = sys.modules[registry.get("json_tool").func.__module__]
    assert module.__name__.startswith("vlrun_tools_") and module.__name__.endswith("_json")


def test_a_single_file_and_a_missing_folder() -> None:
    registry = Registry.discover(
        [DATA / "folder_b" / "greet_again.py", DATA / "no_such_folder"], entry_points=False
    )
    assert registry.names() == ["greet"]


def test_duplicate_names_across_folders_name_both_sources() -> None:
    with pytest.raises(ToolError) as info:
        Registry.discover([DATA / "folder_a", DATA / "folder_b"], entry_points=False)
    message = info.value.message
    assert "two tools are named 'greet'" in message
    assert "folder_a/greet.py:6" in message and "folder_b/greet_again.py:6" in message
    assert "@tool(name=" in (info.value.hint or "")


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("from runner.plugins import tool\n\n\ndef f(:\n    pass\n")
    with pytest.raises(ToolError, match=r"bad\.py:4: syntax error"):
        Registry.discover([tmp_path], entry_points=False)


def test_import_error_names_file_line_and_cause() -> None:
    with pytest.raises(ToolError) as info:
        Registry.discover([DATA / "broken_import"], entry_points=False)
    source = (DATA / "broken_import" / "needs_missing.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "import vlrun_no_such" in text)
    assert f"needs_missing.py:{line}:" in info.value.message
    assert "ModuleNotFoundError" in info.value.message
    assert isinstance(info.value, VlrunError)  # the CLI prints it without a traceback


def test_same_file_loaded_twice_is_one_module() -> None:
    a = Registry.discover([DATA / "folder_a"], entry_points=False)
    b = Registry.discover([DATA / "folder_a"], entry_points=False)
    assert a.get("greet").func is b.get("greet").func


def test_entry_points_from_an_installed_distribution(fake_dist: Path) -> None:
    registry = Registry.discover([], entry_points=True)
    assert {"get_stock_price", "convert_length", "greet"} <= set(registry.names())
    assert registry.get("get_stock_price").source == "acme-vlrun-tools:stock"
    assert registry.get("convert_length").source == "acme-vlrun-tools:units"
    assert registry.get("get_stock_price").is_async


def test_entry_points_can_be_turned_off(fake_dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "get_stock_price" not in Registry.discover([], entry_points=False)
    monkeypatch.setenv("VLRUN_TOOLS_ENTRY_POINTS", "0")
    assert "get_stock_price" not in Registry.discover([], entry_points=True)


def test_folder_and_entry_point_with_one_name(fake_dist: Path) -> None:
    with pytest.raises(ToolError) as info:
        Registry.discover([DATA / "folder_a"], entry_points=True)
    assert "folder_a/greet.py:6" in info.value.message
    assert "acme-vlrun-tools:units" in info.value.message


def test_broken_entry_point_names_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dist(tmp_path, "broken_tools", "nope = broken_tools_missing_module:thing")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(ToolError) as info:
        Registry.discover([], entry_points=True)
    assert "entry point 'nope'" in info.value.message
    assert "broken_tools:nope" in info.value.message
    assert "VLRUN_TOOLS_ENTRY_POINTS=0" in (info.value.hint or "")


def test_only_env_restricts_loaded_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLRUN_TOOLS_ONLY", "shout, lookup_order")
    registry = Registry.discover([DATA / "folder_a"], entry_points=False)
    assert registry.names() == ["lookup_order", "shout"]


def test_only_avoids_a_conflict_elsewhere() -> None:
    registry = Registry.discover(
        [DATA / "folder_a", DATA / "folder_b"], entry_points=False, only=["shout"]
    )
    assert registry.names() == ["shout"]


def test_get_unknown_tool_suggests_close_names() -> None:
    registry = Registry.discover([DATA / "folder_a"], entry_points=False)
    with pytest.raises(ToolError) as info:
        registry.get("gret")
    assert "'greet'" in (info.value.hint or "")


def test_schemas_are_what_the_compiler_needs() -> None:
    registry = Registry.discover([DATA / "folder_a"], entry_points=False)
    schemas = registry.schemas()
    assert list(schemas) == ["greet", "lookup_order", "shout"]
    # where the plugin is, so `vlrun explain` credits its values to the file, not the profile
    assert schemas["greet"].pop("source").endswith("folder_a/greet.py:6")
    assert schemas["greet"] == {
        "description": "Say hello to someone.",
        "parameters": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
            "additionalProperties": False,
        },
    }
    # The context parameter never reaches the model.
    assert list(schemas["lookup_order"]["parameters"]["properties"]) == ["order_id"]


def test_a_file_reached_twice_registers_once() -> None:
    registry = Registry.discover(
        [DATA / "folder_b", DATA / "folder_b" / "greet_again.py"], entry_points=False
    )
    assert registry.names() == ["greet"]
