"""The import graph: no circles between files, and no arrow from a lower layer back up.

Layers, bottom up: the contract → the simulated services → the order app → the worker.
Read from the source (imports inside functions included), so it holds whatever runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orderdash", "orders", "worker")
# Each layer may import only itself and the layers listed after it.
LAYERS = ["worker", "orders", "orders.simulator", "orders.contract"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name.split(".")[0] in PACKAGES}
    return found


def graph() -> dict[str, set[str]]:
    files = [
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    ]
    modules = {module_name(path): path for path in files}
    edges = {}
    for name, path in modules.items():
        # "from orders import live" names a module; "from orders.live import hub" does not.
        edges[name] = {imp for imp in project_imports(path) if imp in modules} - {name}
    return edges


def layer_of(module: str) -> int:
    return max(
        i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")
    )


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module.split(".")[0] != "orderdash"
        for target in targets
        if target.split(".")[0] != "orderdash" and layer_of(target) < layer_of(module)
    ]
    assert upward == []


def test_there_are_no_import_circles():
    edges = graph()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for target in edges.get(module, ()):
            if target in path:
                circles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in edges:
        if module not in done:
            visit(module, [module])
    assert circles == []
