"""The engines (`--engine`): interchangeable functions from a unit's tasks to RunResults, by name.

Each engine is an `Engine`: `batched` (the default, cnnexp/engine/batched.py) and `reference` (the notebook's
method, cnnexp/engine/reference.py). Both take every metric through cnnexp.norms and agree to rel 1e-6. A new
engine is a module of the computing layer with one such function, and one entry in ENGINES.

    >>> sorted(ENGINES)
    ['batched', 'reference']
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from cnnexp.config import Task
from cnnexp.engine.result import RunResult


class Engine(Protocol):
    """Computes a unit's tasks: one RunResult per configuration and block, in task order (configuration by
    configuration, blocks in canonical order). `checkpoints`: a folder where runs that take several epochs
    keep their state (only the net engine's training has any)."""

    def __call__(self, tasks: Sequence[Task], device: str = "cpu", layers: bool = True,
                 curve: int | None = None, checkpoints: str | None = None) -> list[RunResult]: ...


def _batched() -> Engine:
    from cnnexp.engine.batched import run_batched  # deferred: imports torch (planning and the CLI do without)

    return run_batched


def _reference() -> Engine:
    from cnnexp.engine.reference import run_reference  # deferred: imports torch (planning and the CLI do without)

    return run_reference


def _net() -> Engine:
    from cnnexp.engine.net import run_net  # deferred: imports torch (planning and the CLI do without)

    return run_net


ENGINES: dict[str, Callable[[], Engine]] = {  # --engine name -> the engine, loaded when first asked for
    "batched": _batched,
    "reference": _reference,
}
# The engine of whole networks (docs/nets.md): the planner gives it every configuration with a net, whatever
# --engine says (it has one path, the reference's way: modules, one configuration at a time).
MODEL_ENGINES: dict[str, Callable[[], Engine]] = {"net": _net}


def engine(name: str) -> Engine:
    """The engine of that name (a key of ENGINES or MODEL_ENGINES)."""
    return {**ENGINES, **MODEL_ENGINES}[name]()
