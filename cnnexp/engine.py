"""How runs execute. Today: one configuration after another, in this process.

The seam: an executor takes tasks (a configuration and the blocks still to run on it) and yields
RunResults, in any order. A batched, GPU or Dask executor can replace `run_serial` without touching the
sweep planner or the results writer, which key every row by its configuration.

    >>> from cnnexp.config import RunConfig
    >>> [r.block for r in run_serial([(RunConfig(d=4, batch=2), ("plain",))])]
    ['plain']
"""
from __future__ import annotations

from typing import Iterable, Iterator

from cnnexp.config import Task
from cnnexp.probe import RunResult, probe



def use_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None keeps torch's default) and return the count in force.

    The study's tensors are small: one thread is as fast as two or faster (bench/bench_sweep.py), and
    immune to other processes' load. The last bits of a sum can depend on the count, so a resumed sweep keeps
    the count it started with.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def run_serial(tasks: Iterable[Task]) -> Iterator[RunResult]:
    """Probe each task in turn, yielding each block's result as soon as it is measured."""
    for config, blocks in tasks:
        yield from probe(config, blocks)
