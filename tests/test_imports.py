"""The package's import graph has one direction: no module imports itself back through others
(lazy imports inside functions included), and the op package never reaches into the models."""

from __future__ import annotations

import pytest

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tp2detr"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: the tp2detr modules it imports anywhere in its file}``."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("tp2detr") and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "tp2detr.ops.registry" in graph["tp2detr.models.deform_attn"]  # the walk sees real edges
    assert cycles(graph) == []


def test_the_op_package_never_imports_the_models():
    graph = import_graph()
    offending = {m: sorted(t for t in targets if t.startswith("tp2detr.models"))
                 for m, targets in graph.items() if m.startswith("tp2detr.ops")}
    assert {m: t for m, t in offending.items() if t} == {}


@pytest.mark.parametrize(
    ("layer", "never"),
    [
        ("tp2detr.engine", "tp2detr.cli"),  # the command lines use the engine, not the reverse
        ("tp2detr.evaluation", "tp2detr.engine"),  # the evaluator stands alone (plain numpy)
        ("tp2detr.evaluation", "tp2detr.models"),
        ("tp2detr.data", "tp2detr.engine"),  # data knows nothing of training
        ("tp2detr.losses", "tp2detr.engine"),
        ("tp2detr.models", "tp2detr.engine"),
    ],
)
def test_dependencies_point_one_way(layer: str, never: str):
    graph = import_graph()
    offending = {m: sorted(t for t in targets if t.startswith(never))
                 for m, targets in graph.items() if m.startswith(layer)}
    assert {m: t for m, t in offending.items() if t} == {}


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
