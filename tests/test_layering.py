"""The package's shape: no import cycles (lazy imports inside functions included), modules of a size
a reader can hold in their head, and a docstring on every module saying why it exists."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO

PACKAGE = REPO / "trainer"
MAX_MODULE_LINES = 420  # "~400": a little slack, not a second budget


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, known: set[str]) -> Iterator[str]:
    """Every trainer module ``path`` imports, at module level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from trainer.x import y` imports trainer.x, and trainer.x.y when y is a module.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                yield name


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    # A package's __init__ runs when any of its modules is imported: it is not an edge of its own.
    return {name: {m for m in imported(path, known) if m != name and not name.startswith(m + ".")}
            for name, path in found.items()}  # fmt: skip


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    # cli imports the training only inside its command functions: the graph must still see it.
    assert "trainer.training.train" in graph["trainer.cli"]
    assert "trainer.records.prompt_db" in graph["trainer.cli"]


def test_no_import_cycles_lazy_ones_included() -> None:
    assert cycles(import_graph()) == []


def test_a_cycle_would_be_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_stay_readable() -> None:
    too_long = {
        name: lines
        for name, path in modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_every_module_says_why_it_exists() -> None:
    missing = [name for name, path in modules().items() if not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []


def test_every_benchmark_script_imports() -> None:
    """`make bench*` runs rarely: a moved helper must fail here, not an hour into a benchmark."""
    import importlib

    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    assert scripts
    for path in scripts:
        importlib.import_module("benchmarks" if path.stem == "__init__" else f"benchmarks.{path.stem}")
