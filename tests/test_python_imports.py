"""The Python packages import one way: no module of model_export or emotion_runtime imports (directly or through
others, at module level or inside a function) a module that imports it back. A circle hides which module owns a
piece of code and forces imports into function bodies to break it at run time."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"model_export": ROOT / "model_export", "emotion_runtime": ROOT / "py_src" / "emotion_runtime"}


def package_imports(package: str, folder: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports anywhere in its body (relative or absolute)."""
    modules = {p.stem for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in modules:
        deps: set[str] = set()
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 1 or base.split(".")[0] == package:
                    target = base.split(".")[-1] if base and base != package else ""
                    deps |= {target} if target in modules else {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith(package + ".")}
        graph[name] = deps - {name, "__init__"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_reports_a_circle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("from .b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g  # lazy, still a circle\n")
    (tmp_path / "c.py").write_text("from pkg.a import f\n")
    graph = package_imports("pkg", tmp_path)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_has_no_import_circle(package):
    graph = package_imports(package, PACKAGES[package])
    assert graph, f"no modules found under {PACKAGES[package]}"
    assert find_cycle(graph) is None, f"{package} imports in a circle: {' -> '.join(find_cycle(graph))}"
