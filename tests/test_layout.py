"""The package's import structure: no cycle, and no import of cnnexp's own modules inside a function unless it
defers a library that is slow to import (or an optional extra), which a comment on that line names.

The graph is read from the source (the ast of every module), not by importing it: an edge A -> B for each
import of B at A's top level (imports under `if TYPE_CHECKING:` aside, as they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "cnnexp"
# Slow to import, or an optional extra: what an import inside a function may defer (for start-up time).
DEFERRABLE = ("torch", "pandas", "matplotlib", "scipy", "numpy", "yaml", "dask", "distributed", "mlflow",
              "tensorboard", "sklearn",
              # and, for the commands that do not run a sweep, the sweep machinery's own
              "multiprocessing", "importlib.metadata")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports(tree: ast.Module) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """The import statements at the module's top level (run on import) and those inside functions."""
    top: list[ast.stmt] = []
    inner: list[ast.stmt] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (inner if in_function else top).append(child)
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(tree, False)
    return top, inner


def targets(node: ast.stmt, here: str) -> list[str]:
    """The modules an import statement imports: cnnexp's own resolved to a module of MODULES, others by their
    dotted name (`from a import b` imports a, and a.b where b is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:  # a relative import
        package = here if MODULES[here].name == "__init__.py" else here.rpartition(".")[0]
        package = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
        base = f"{package}.{base}" if base else package
    if base.split(".")[0] != "cnnexp":
        return [base, *(f"{base}.{a.name}" for a in node.names)]
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}
TOP = {name: [t for node in imports(tree)[0] for t in targets(node, name)] for name, tree in TREES.items()}


def cycles() -> list[list[str]]:
    """The import cycles among cnnexp's modules (strongly connected components of more than one module, or a
    module importing itself), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in (t for t in TOP[v] if t in MODULES):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in TOP[v]:
                found.append(sorted(component))

    for v in MODULES:
        if v not in index:
            visit(v)
    return found


def loads(name: str) -> set[str]:
    """Every module importing `name` runs at its top level, directly or through cnnexp's modules."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for t in TOP[todo.pop()]:
            if t not in seen:
                seen.add(t)
                todo += [t] if t in MODULES else []
    return seen


def test_the_graph_is_read_from_every_module():
    assert {"cnnexp.cli", "cnnexp.engine", "cnnexp.engine.batched", "cnnexp.shapes.chain"} <= MODULES.keys()
    assert "cnnexp.engine.kernels" in TOP["cnnexp.engine.batched"]
    assert "torch" in loads("cnnexp.engine.batched") and "torch" not in loads("cnnexp.engine")
    assert "importlib.metadata" in loads("cnnexp.sweep")


def test_no_import_cycle():
    assert cycles() == []


def test_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setitem(TOP, "cnnexp.schema", [*TOP["cnnexp.schema"], "cnnexp.config"])  # config imports schema
    assert ["cnnexp.config", "cnnexp.schema"] in cycles()


def inner_imports() -> list[tuple[str, int, str, str]]:
    """(module, line, imported cnnexp module, the comment on that line) of each import of cnnexp's own modules
    inside a function."""
    found = []
    for name, tree in TREES.items():
        lines = MODULES[name].read_text(encoding="utf-8").splitlines()
        for node in imports(tree)[1]:
            for target in (t for t in targets(node, name) if t.split(".")[0] == "cnnexp"):
                above = lines[node.lineno - 2].strip()  # a comment on the line above counts too
                text = " ".join([above if above.startswith("#") else "", *lines[node.lineno - 1:node.end_lineno]])
                found.append((name, node.lineno, target, text.partition("#")[2]))
    return found


@pytest.mark.parametrize("module, line, target, comment", inner_imports(),
                         ids=[f"{m}:{n}" for m, n, _, _ in inner_imports()])
def test_an_import_inside_a_function_defers_what_its_comment_names(module, line, target, comment):
    """(the comment on the import's line or the line above)"""
    named = [lib for lib in DEFERRABLE if lib in comment]
    assert "defer" in comment and named, (f"{module}:{line} imports {target} inside a function: say which slow "
                                          f"library it defers ({', '.join(DEFERRABLE)}) in a comment there")
    loaded = loads(target)
    assert all(any(m == lib or m.startswith(f"{lib}.") for m in loaded) for lib in named), (
        f"{module}:{line}: {target} does not import all of {', '.join(named)} when imported")


def test_engine_imports_point_down_only_computing_below_running():
    """The engine's layers, as docs/development.md draws them (tools/layout_graph.py): every engine module
    imports only modules below it, so computing a unit never imports running units."""
    import sys

    sys.path.insert(0, str(ROOT.parent / "tools"))
    try:
        from layout_graph import COMPUTING, RUNNING, engine_imports
    finally:
        sys.path.remove(str(ROOT.parent / "tools"))
    order = [*RUNNING, *COMPUTING]
    assert sorted(order) == sorted(m.rpartition(".")[2] for m in MODULES if m.startswith("cnnexp.engine."))
    for i, name in enumerate(order):
        for target, _ in engine_imports(name):
            assert order.index(target) > i, f"cnnexp.engine.{name} imports {target}, which is not below it"
    assert not any(t.startswith(tuple(f"cnnexp.engine.{r}" for r in RUNNING)) for c in COMPUTING
                   for t in loads(f"cnnexp.engine.{c}"))


def test_the_version_is_written_once_and_the_installed_package_reads_it():
    from importlib.metadata import version

    import cnnexp

    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject.split("[tool.setuptools.dynamic]")[0]
    assert version("cnnexp") == cnnexp.__version__
