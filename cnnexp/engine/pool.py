"""The local process pool (`--workers N`): units computed in N worker processes, one torch thread each.

Workers are forked from the writer after `import torch` (on Linux), so none pays for importing torch again.
They ignore Ctrl-C, which is the writer's to handle: it stops, says how many rows are safe, and the pool is
shut down with the units not yet started cancelled. A worker whose writer dies is ended by the kernel.

    >>> with process_pool(2) as pool:                                      # doctest: +SKIP
    ...     for results in execute(plan_units(tasks, workers=2), pool):
    ...         ...
"""
from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes, forked where the platform allows it (else spawned), started now."""
    import torch  # noqa: F401  (imported before the fork, so every worker starts with it)

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker)
    pool.submit(int).result()  # a forking pool starts every worker at its first task: now, before files open
    return pool


def _start_worker() -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    torch.set_num_threads(1)


def _die_with_parent() -> None:
    """On Linux, have the kernel end this worker when the writer dies (a SIGKILLed sweep leaves no orphans
    computing units whose rows nobody will write)."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the units not yet started and wait for the few being computed (each is short, see
    engine.UNIT_COST): workers killed mid-unit could leave the pool's queues, and so the exit, hanging."""
    pool.shutdown(wait=True, cancel_futures=True)
