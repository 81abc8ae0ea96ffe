"""Nothing outside ``turborec.train`` reaches into its private names (the service consumes
``Recommender.servable()`` and public verbs; import-linter keeps ``train``'s private modules private), and the
serving modules import one another one way."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "turborec"
TRAIN = SRC / "train"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _train_private_functions() -> set[str]:
    names: set[str] = set()
    for path in TRAIN.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _private(node.name):
                names.add(node.name)
    return names


def test_no_private_train_name_is_used_outside_train() -> None:
    methods = _train_private_functions()
    assert "_require" in methods  # the scan sees train's private helpers
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if TRAIN in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("turborec.train"):
                found += [f"{path.relative_to(SRC)}:{node.lineno} imports {a.name}" for a in node.names if _private(a.name)]
            if (isinstance(node, ast.Attribute) and node.attr in methods
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} calls .{node.attr}")
    assert not found, "\n".join(found)


def test_no_import_cycle_among_serving_modules() -> None:
    """Each serving module's imports (direct or not, lazy ones included) never lead back to it."""
    import grimp

    graph = grimp.build_graph("turborec")
    serving = sorted(m for m in graph.modules if m.startswith(("turborec.serving.", "turborec.loading")))
    assert "turborec.serving.net_model" in serving
    cycles = [
        (m, sorted(graph.find_upstream_modules(m) & graph.find_downstream_modules(m) & set(serving)))
        for m in serving
    ]
    assert not [c for c in cycles if c[1]], cycles
