"""The house rules of docs/architecture.md, checked on the source: the import graph of ``hrmcode/``
(module-level and function-level imports alike) has no cycle, and no floor imports a floor above it."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hrmcode"

# What each room may not import (docs/architecture.md, "Who may import whom").
FORBIDDEN = {
    "model": {"data", "agent", "quantize", "eval", "serve", "train", "cli"},
    "sandbox": {"data", "agent", "model", "quantize", "eval", "serve", "train", "cli"},
    "data": {"agent", "quantize", "eval", "serve", "train", "cli"},
    "agent": {"model", "quantize", "train", "eval", "serve", "cli"},
    "train": {"agent", "quantize", "eval", "serve", "cli"},
    "quantize": {"agent", "eval", "serve", "cli"},
    "eval": {"serve", "cli"},
    "serve": {"agent", "eval", "cli"},
    "export": {"sandbox", "data", "agent", "train", "quantize", "eval", "serve", "cli"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module a dotted name lands in (``hrmcode.a.b.func`` -> ``hrmcode.a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" for alias in node.names]
            for target in targets:
                if target.startswith("hrmcode"):
                    resolved = _resolve(target, modules)
                    if resolved and resolved != name:
                        graph[name].add(resolved)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


# The ground floor: modules directly under hrmcode/ that every room may use; they import no room.
GROUND = ("errors", "atomic", "jsonl", "paths", "memory", "reporting", "options", "presets", "artifacts", "diffs",
          "edits", "version", "datasets_io", "executor")


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "hrmcode.cli.app" in graph and "hrmcode.model.hrm" in graph
    assert any(_room(target) == "model" for target in graph["hrmcode.train.loop"])


def test_no_import_cycle():
    cycles = strongly_connected(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_no_floor_imports_a_floor_above_it(room):
    graph = import_graph()
    bad = sorted(f"{module} -> {target}" for module, targets in graph.items() if _room(module) == room
                 for target in targets if _room(target) in FORBIDDEN[room])
    assert not bad, f"{room}/ imports above itself: " + ", ".join(bad)


def test_the_library_never_imports_the_cli():
    entry_points = {"cli", "__main__"}  # ``python -m hrmcode`` starts the CLI
    bad = sorted(f"{module} -> {target}" for module, targets in import_graph().items()
                 if _room(module) not in entry_points for target in targets if _room(target) == "cli")
    assert not bad, ", ".join(bad)


@pytest.mark.parametrize("module", GROUND)
def test_the_ground_floor_imports_no_room(module):
    targets = import_graph()[f"hrmcode.{module}"]
    assert all(target.removeprefix("hrmcode.") in GROUND or target == "hrmcode" for target in targets), sorted(targets)


def test_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
