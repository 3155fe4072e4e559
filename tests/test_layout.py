"""The package layout stays readable: no import circles and no module over 600 lines.

The import graph is read with `ast` from the source files, not by importing them, so a circle
that Python happens to tolerate (because one side imports inside a function) is caught too.
Every ``import`` counts, wherever it stands, except those under ``if TYPE_CHECKING:``: those
never run, and let a lower layer name a higher layer's type in an annotation (the report
writers annotate with `Explanation`, which they receive but never import).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cfattack", "descriptors", "stylegan3_ops")
MAX_MODULE_LINES = 600


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the project's packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every dotted name an import statement in ``tree`` may refer to (outside TYPE_CHECKING)."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # `from pkg import name` refers to the submodule pkg.name when there is one, else to
            # pkg itself: `resolve` takes the longest prefix that is a module. (The parent package's
            # __init__ runs before any submodule; that is not counted as an edge.)
            names.extend(f"{source}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (the longest existing prefix of each name)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {resolve(n) for n in _imported_names(tree, module, path.name == "__init__.py")}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_the_graph_sees_function_level_and_relative_imports():
    # The checker itself must be able to fail: a known one-way chain is found in the graph.
    graph = import_graph()
    assert "cfattack.errors" in graph["cfattack.images"]
    assert "stylegan3_ops.bias_act" in graph["cfattack.stylegan.layers"] | graph["cfattack.stylegan.synthesis"]
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    circles = import_circles(import_graph())
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


# Each package's layer: a package may import packages of lower layers only (and its own modules).
# Reading down the table is reading the pipeline: generator -> inversion -> attack/attribution ->
# explanation -> reports of many explanations -> the command line.
LAYERS: dict[str, int] = {
    "stylegan3_ops": 0, "descriptors": 0,
    "cfattack.errors": 0, "cfattack.atomic": 1, "cfattack.int_ranges": 1, "cfattack.classes": 1,
    "cfattack.regular_files": 1, "cfattack.bounded_pickle": 1, "cfattack.torch_zip": 2,
    "cfattack.progress": 1, "cfattack.threads": 1,
    "cfattack.config": 0, "cfattack.images": 2, "cfattack": 0,
    "cfattack.stylegan": 3, "cfattack.classifiers": 3, "cfattack.reports": 3,
    "cfattack.quality": 4, "cfattack.attack": 4, "cfattack.attribution": 4,
    "cfattack.inversion": 5,
    "cfattack.bundle": 6,
    "cfattack.pipeline": 7,
    "cfattack.batch": 8, "cfattack.training": 8,
    "cfattack.evaluation": 9,
    "cfattack.cli": 10,
    # deprecated re-exports of old module paths (one release), above what they re-export
    "cfattack.legacy": 10, "cfattack.explainer": 10, "cfattack.cli_batch": 11, "cfattack.__main__": 11,
}


def _package_of(module: str) -> str:
    """``cfattack.pipeline.explainer`` -> ``cfattack.explain``; ``descriptors.shape`` -> ``descriptors``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "cfattack" else parts[0]


def test_packages_import_only_lower_layers():
    graph = import_graph()
    wrong = []
    for module, targets in graph.items():
        source = _package_of(module)
        assert source in LAYERS, f"{source} has no layer in tests/test_layout.py: add it"
        for target in targets:
            destination = _package_of(target)
            if destination != source and LAYERS[destination] >= LAYERS[source]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that point up or sideways: " + ", ".join(sorted(wrong))


def test_shared_helpers_import_no_stage():
    # The root helpers sit below every stage: they may import each other, never a subpackage.
    graph = import_graph()
    helpers = ("cfattack.errors", "cfattack.atomic", "cfattack.images", "cfattack.config",
               "cfattack.classes", "cfattack.int_ranges", "cfattack.regular_files",
               "cfattack.bounded_pickle", "cfattack.torch_zip", "cfattack.progress", "cfattack.threads")
    for helper in helpers:
        upward = {m for m in graph[helper] if m.startswith("cfattack.") and m not in helpers}
        assert not upward, f"{helper} imports {sorted(upward)}"


def test_the_cli_is_imported_by_nothing_else():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("cfattack.cli") or module in ("cfattack.__main__", "cfattack.cli_batch"):
            continue
        assert not {t for t in targets if t.startswith("cfattack.cli")}, f"{module} imports the CLI"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_module_is_at_most_600_lines(module):
    path = _modules()[module]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(REPO_ROOT)} has {lines} lines"
