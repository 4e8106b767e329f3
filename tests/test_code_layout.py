"""The README's Development section describes the package as it is: one-way imports, every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "target_rjmetrics"


def _imports() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (local server left out)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = path.stem
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("target_rjmetrics."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.ImportFrom) and node.module == "target_rjmetrics":
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("target_rjmetrics."))
        graph[name] = found - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports, if there is one."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_imports_run_one_way_and_nothing_imports_the_target() -> None:
    graph = _imports()
    assert "run" in graph["sinks"] and "run" in graph["target"], "the graph reader found nothing"
    importers = sorted(name for name, deps in graph.items() if "target" in deps and name != "__main__")
    assert importers == [], f"modules importing target.py: {importers}"
    assert _cycle(graph) is None, f"an import cycle: {' -> '.join(_cycle(graph) or [])}"
    for low in ("points", "validation", "batches", "keyorder", "sending", "state", "client", "settings", "stats"):
        assert not graph[low] & {"run", "sinks", "target"}, f"{low} imports a module above it"
    # The pure core reads no clock and starts no thread: its decisions depend on its events alone.
    for pure in ("keyorder", "points", "batches"):
        source = (PACKAGE / f"{pure}.py").read_text(encoding="utf-8")
        assert "import threading" not in source and "import time" not in source, f"{pure} is not pure"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_readme_development_table_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Development") :]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    named = {m for row in rows for m in re.findall(r"`([a-z_]+)(?:\.py|/)`", row)}
    modules = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")} | {"local_api"}
    assert len(rows) >= 5, "the README lost its table of modules"
    assert modules - named == set(), f"modules the README's table does not name: {sorted(modules - named)}"
    assert named - modules == set(), f"the README's table names modules that do not exist: {sorted(named - modules)}"
