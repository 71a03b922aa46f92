"""The picture of cnnexp/engine's two layers in docs/development.md, drawn from the source (a cog block calls
`engine_picture()`): each module with the engine modules it imports, computing a unit below running units.

tests/test_layout.py holds the rule the picture shows: a module of COMPUTING never imports one of RUNNING.
"""
from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "cnnexp" / "engine"

# The two layers, each module once, from the top of the picture down (imports point down, never up).
RUNNING = ("execute", "plan", "pool", "cluster", "runtime")
COMPUTING = ("registry", "batched", "net", "train_net", "reference", "train", "kernels", "cost", "result")


def engine_imports(name: str) -> list[tuple[str, bool]]:
    """(engine module, imported inside a function) of each engine module that `name` imports, in source order
    (imports under `if TYPE_CHECKING:` left out: they never run)."""
    tree = ast.parse((ENGINE / f"{name}.py").read_text(encoding="utf-8"))
    found: dict[str, bool] = {}

    def walk(node: ast.AST, inner: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("cnnexp.engine."):
                module = child.module.split(".")[2]
                found[module] = found.get(module, True) and inner
            walk(child, inner or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    walk(tree, False)
    return list(found.items())


def engine_picture() -> str:
    """The layers as text: each module, then what it imports (`(deferred)`: inside a function, for torch)."""
    width = max(map(len, RUNNING + COMPUTING))
    lines = []
    for title, layer in (("running units", RUNNING), ("computing a unit", COMPUTING)):
        lines.append(f"{title}:")
        for name in layer:
            targets = [f"{m} (deferred)" if inner else m for m, inner in engine_imports(name)]
            lines.append(f"  {name:<{width}}  -> {', '.join(targets)}" if targets else f"  {name}")
        if layer is RUNNING:
            lines.append("  " + "-" * 40 + " imports point down only")
    return "\n".join(lines) + "\n"


def show_engine_picture() -> None:
    """Write the picture into the page, as a fenced block (for a cog block)."""
    import cog  # the module cogapp hands to the code of a block

    cog.out("```\n" + engine_picture() + "```\n")


if __name__ == "__main__":
    print(engine_picture(), end="")
