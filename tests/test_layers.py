"""The package's layers, read from its imports (an ast walk, imports inside functions included): a module imports
only from its own layer or lower ones, and no modules import each other in a circle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cnntool"

# Lowest first. A module belongs to the first entry whose prefix names it.
LAYERS = [
    ("foundation", ("cnntool", "cnntool.errors", "cnntool.options", "cnntool.console", "cnntool.registry",
                    "cnntool.meta", "cnntool.weights", "cnntool.preprocess", "cnntool.sources", "cnntool.records",
                    "cnntool.device", "cnntool.cache", "cnntool.folders", "cnntool.boxes", "cnntool.augment")),
    ("dlib and faces", ("cnntool.dlib", "cnntool.faces")),
    ("models", ("cnntool.models",)),
    ("data", ("cnntool.data",)),
    ("loader", ("cnntool.loader",)),
    ("engines and shape-calc", ("cnntool.engine", "cnntool.shapecalc")),
    ("tasks", ("cnntool.tasks",)),
    ("command line", ("cnntool.command", "cnntool.cards", "cnntool.cli", "cnntool.cli_data", "cnntool.__main__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (p != "cnntool" and module.startswith(p + ".")) for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def imports(module: str) -> set[str]:
    """The cnntool modules `module` imports anywhere in its code (a `from pkg import sub` of a submodule counts as
    importing the submodule)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_imports_only_its_own_layer_or_lower():
    upward = [f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
              for m, targets in GRAPH.items() for t in targets if layer(t) > layer(m)]
    assert upward == []


def test_models_never_import_tasks_and_only_the_loader_loads_weights():
    for m, targets in GRAPH.items():
        if m.startswith("cnntool.models"):
            assert not any(t.startswith(("cnntool.tasks", "cnntool.loader", "cnntool.engine")) for t in targets), m


def test_no_modules_import_each_other_in_a_circle():
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert circles == []
