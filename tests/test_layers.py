"""The subpackages of streamcompose import one another without cycles, so that each
layer can be read, tested and replaced on its own."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "streamcompose"


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (ROOT / parts[1]).is_dir() else None


def import_graph() -> dict[str, set[str]]:
    """Subpackage -> the subpackages its modules import (lazy imports included)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for file in ROOT.rglob("*.py"):
        source = _subpackage(".".join(file.relative_to(ROOT.parent).with_suffix("").parts))
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                target = _subpackage(name) if name.startswith("streamcompose.") else None
                if source and target and target != source:
                    graph[source].add(target)
    return graph


def test_no_import_cycle_between_subpackages():
    graph = import_graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n}))
                   for n in graph.get(start, ()))

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, {b}))
    assert cycles == []
    assert "agent" not in graph["steps"] and "agent" not in graph["topology"]
