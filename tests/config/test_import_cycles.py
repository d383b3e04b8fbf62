"""No import cycle between the modules of one app. Imports inside functions count (a lazy import
to dodge a cycle is a cycle all the same); imports under `if TYPE_CHECKING:` do not. Cycles
between apps are import-linter's (the layers contract in pyproject.toml)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = [
    "accounts", "organizations", "payments", "billing", "seats", "credits", "invoices",
    "analytics", "dunning", "dashboard", "demo", "config",
]  # fmt: skip


def _modules(app: str) -> dict[str, Path]:
    found = {}
    for path in (ROOT / app).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "migrations" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every module this one imports, wherever the import statement stands."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def _graph(app: str) -> dict[str, set[str]]:
    modules = _modules(app)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = _imports(tree, name, path.name == "__init__.py")
        graph[name] = {target for target in imported if target in modules and target != name}
    return graph


@pytest.mark.parametrize("app", APPS)
def test_no_import_cycle_inside_an_app(app: str) -> None:
    assert _cycles(_graph(app)) == []


def test_the_check_finds_a_cycle_made_by_an_import_inside_a_function(tmp_path: Path) -> None:
    services = ast.parse("from credits import tasks\n")
    tasks = ast.parse("def run():\n    from credits import services\n")
    graph = {
        "credits.services": set(_imports(services, "credits.services", False)) & {"credits.tasks"},
        "credits.tasks": set(_imports(tasks, "credits.tasks", False)) & {"credits.services"},
    }
    assert _cycles(graph) == [["credits.services", "credits.tasks"]]


def test_imports_only_for_type_checking_do_not_count() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from seats.selectors import X\n"
    )
    assert "seats.selectors" not in _imports(tree, "seats.exceptions", False)
