"""The layout is the architecture: layers that only point down, and no import cycle anywhere.

Every import in grantflow's own modules counts — at module level, inside functions, under ``TYPE_CHECKING`` —
because a cycle that is deferred still ties two modules together. The layers, from the bottom: ``domain``
(models and pure rules) → ``configuration`` (settings) → ``integrations`` (vendor adapters) and ``store`` →
``activities`` (side effects) → ``workflows`` (processes) → ``web`` (the HTTP edge) and ``worker.py`` →
``grantflow`` (the command line and the dev stack). ``sandbox`` (the stand-ins) sees only ``domain``.
Workflows never import a vendor adapter.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "domain",
    "configuration",
    "integrations",
    "store",
    "activities",
    "workflows",
    "web",
    "grantflow",
    "sandbox",
)

# What each layer may import besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "configuration": frozenset({"domain"}),
    "integrations": frozenset({"domain", "configuration"}),
    "store": frozenset({"domain", "configuration"}),
    "activities": frozenset({"domain", "configuration", "integrations", "store"}),
    "workflows": frozenset({"domain", "configuration", "activities"}),
    "web": frozenset({"domain", "configuration", "integrations", "store", "workflows"}),
    "worker": frozenset({"domain", "configuration", "integrations", "store", "activities", "workflows"}),
    "grantflow": frozenset(PACKAGES) | {"worker"},
    "sandbox": frozenset({"domain"}),
}


def product_modules() -> dict[str, Path]:
    modules = {"worker": ROOT / "worker.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The grantflow modules ``name`` imports, anywhere in its body. ``from pkg import sub`` is an import of
    the submodule ``pkg.sub`` when there is one, otherwise of ``pkg``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    yield sub
                elif source in modules:
                    yield source


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {
        name: {target for target in imports_of(name, path, modules) if target != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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


def test_the_import_walk_sees_every_kind_of_import() -> None:
    """The walk finds deferred and TYPE_CHECKING imports, relative ones, and submodules imported by name."""
    graph = import_graph()
    assert "store.schema" in graph["store.requests"]
    assert "configuration.settings" in graph["store.anchors"]
    assert graph["domain.durations"] == set()
    assert len(graph) > 80
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_anywhere() -> None:
    assert cycles(import_graph()) == []


def test_layers_only_point_down() -> None:
    graph = import_graph()
    upward = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        for target in targets
        if (layer := name.partition(".")[0]) != (target_layer := target.partition(".")[0])
        and target_layer not in ALLOWED[layer]
    )
    assert upward == []


def test_workflows_never_import_a_vendor_adapter() -> None:
    graph = import_graph()
    assert not [
        (name, target)
        for name, targets in graph.items()
        if name.startswith("workflows")
        for target in targets
        if target.startswith("integrations")
    ]
