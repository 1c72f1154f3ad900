"""The code's layers, read from the source: no import circles, and each job package of ``tasks/``
imports only the packages below it.

Imports inside functions count too: hiding a circle in a function keeps the interpreter quiet, not
the reader. ``if TYPE_CHECKING:`` blocks are left out (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "lstm_model")
# tasks/ sub-packages, lowest first: each may import only those before it (and itself).
TASK_LAYERS = ("common", "store", "registry", "scoring", "feedback", "training")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Project modules that ``path`` imports (``from a.b import c`` counts as a.b.c when that is a module)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    graph = {module_name(p): imported_modules(p, known) for p in files}
    for module, deps in graph.items():  # a module's own packages are not edges (their __init__ is empty)
        deps -= {module, *(d for d in deps if module.startswith(d + "."))}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := walk(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] == "tasks" and len(parts) > 1 and parts[1] in TASK_LAYERS:
        return TASK_LAYERS.index(parts[1])
    return None


class TestFindCycle:
    """The checker itself finds a circle where there is one, so a pass below means something."""

    def test_a_circle_of_three_is_found(self):
        assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]

    def test_a_diamond_is_no_circle(self):
        assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None

    def test_an_import_inside_a_function_counts(self, tmp_path):
        module = tmp_path / "m.py"
        module.write_text("def f():\n    from flows.cli import main\n")
        assert imported_modules(module, {"flows.cli"}) == {"flows.cli"}


def test_no_import_circle():
    assert find_cycle(import_graph()) is None


def test_tasks_are_flat_no_more():
    loose = sorted(p.name for p in (REPO / "tasks").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules directly under tasks/ (put each in the package of its job): {loose}"


@pytest.mark.parametrize("layer", TASK_LAYERS)
def test_a_job_package_imports_only_the_ones_below_it(layer):
    level = TASK_LAYERS.index(layer)
    graph = import_graph()
    upward = sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        if layer_of(module) == level
        for dep in deps
        if (dep_level := layer_of(dep)) is not None and dep_level > level
    )
    assert upward == []


def test_lstm_model_and_tasks_never_import_the_flows():
    graph = import_graph()
    wrong = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m.split(".")[0] in ("lstm_model", "tasks")
        for d in deps
        if d.split(".")[0] == "flows" or (m.startswith("lstm_model") and d.startswith("tasks"))
    )
    assert wrong == []
