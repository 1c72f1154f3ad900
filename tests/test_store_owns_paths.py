"""The store layer (``tasks/store/``) owns every path under the storage root: read from the source,
no job or flow spells one.

A path is "spelled" when code outside the store imports the folder names of
:mod:`tasks.store.layout`, writes the partition key, or hands a ``Storage`` method a path it built
itself (a string literal, an f-string or a concatenation). Jobs pass on what a store function
returned, or nothing (the root). The checker is tested on small sources first, so a pass below means
something.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "tasks" / "store"
CHECKED = ("flows", "tasks")
# Storage's methods that take a path relative to the root (tasks/store/storage.py).
PATH_METHODS = {
    "path", "uri", "exists", "read_bytes", "read_text", "write_bytes", "write_text", "read_many",
    "create", "open_write", "temp_files", "glob", "delete",
}  # fmt: skip
PARTITION_KEY = "scored_date="


def _is_storage(node: ast.expr) -> bool:
    """``storage``, ``self.storage``, ``run.storage``, ``store``...: a name that says it is the storage."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "stor" in name.lower()


def _builds_a_path(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return _builds_a_path(node.left) or _builds_a_path(node.right)
    return False


def _path_arguments(call: ast.Call) -> list[ast.expr]:
    """The arguments of a Storage call that are paths: all of ``path``/``uri`` (parts joined), the
    first of the others (the rest is data or options)."""
    if call.func.attr in ("path", "uri"):
        return list(call.args)
    return call.args[:1] + [k.value for k in call.keywords if k.arg in ("rel", "pattern", "folder_pattern")]


def spelled_paths(source: str, name: str = "<source>") -> list[str]:
    """Every place of ``source`` that spells a storage path (see the module docstring), as ``line: why``."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.ImportFrom) and node.module == "tasks.store.layout":
            found.append(f"{node.lineno}: imports the store's folder names")
        elif isinstance(node, ast.Import) and any(a.name == "tasks.store.layout" for a in node.names):
            found.append(f"{node.lineno}: imports the store's folder names")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and PARTITION_KEY in node.value:
            found.append(f"{node.lineno}: spells the partition key")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in PATH_METHODS
            and _is_storage(node.func.value)
            and any(_builds_a_path(arg) for arg in _path_arguments(node))
        ):
            found.append(f"{node.lineno}: builds a path for Storage.{node.func.attr}")
    return found


class TestTheChecker:
    def test_an_f_string_path_is_found(self):
        assert spelled_paths('storage.read_text(f"{MODELS}/{version}/bundle.json")') == [
            "1: builds a path for Storage.read_text"
        ]

    def test_a_literal_and_a_concatenation_are_found(self):
        source = 'self.storage.glob("ledger/*.json")\nrun.storage.exists(folder + "/x")\n'
        assert len(spelled_paths(source)) == 2

    def test_a_folder_name_import_is_found(self):
        assert spelled_paths("from tasks.store.layout import REVIEW") == [
            "1: imports the store's folder names"
        ]

    def test_the_partition_key_is_found(self):
        assert spelled_paths('pattern = "predictions/scored_date=*"') == ["1: spells the partition key"]

    def test_a_path_from_the_store_is_fine(self):
        source = (
            "storage.read_text(version_file(v, META_FILE))\nstorage.uri()\nstorage.delete(rel)\n"
            'storage.write_text(ledger_record(key), record.to_json() + "\\n")\n'
        )
        assert spelled_paths(source) == []


def _outside_the_store() -> list[Path]:
    files = [p for package in CHECKED for p in (REPO / package).rglob("*.py")]
    return sorted(p for p in files if STORE not in p.parents)


def test_the_store_is_where_the_paths_are():
    """The check reads something: the store's own modules do spell paths."""
    assert any(spelled_paths(p.read_text(), str(p)) for p in STORE.glob("*.py"))


@pytest.mark.parametrize("package", CHECKED)
def test_no_path_is_spelled_outside_the_store(package):
    spelled = {
        str(p.relative_to(REPO)): found
        for p in _outside_the_store()
        if p.relative_to(REPO).parts[0] == package and (found := spelled_paths(p.read_text(), str(p)))
    }
    assert spelled == {}, "ask tasks/store/ for the path (add a function there if none fits)"
