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

from cnnexp.engine.cost import UNIT_BYTES


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
    keep_freed_memory()
    torch.set_num_threads(1)


def keep_freed_memory() -> None:
    """On Linux (glibc), have malloc keep the memory one unit frees for the next, in this process.

    A unit's stacked weights are tens of MiB; glibc maps each such block fresh from the kernel and unmaps it
    when freed, so every unit faulted all of its pages in again: 15% of a unit's time at d=1024 (measured in
    process, 2026-11-29). Units are bounded (cost.UNIT_BYTES a stack, DRAW_BYTES the draw), and so is what a
    process keeps. Used only in the worker processes cnnexp starts: not in the caller's own process (a
    notebook's, say), whose malloc settings are its own, nor on a Dask worker, whose memory the cluster manages
    (its nanny asks malloc to give memory back).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    m_trim_threshold, m_mmap_max = -1, -4  # mallopt's parameters, from <malloc.h>
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(m_mmap_max, 0)  # big blocks from the heap too, where freed memory can be reused
        libc.mallopt(m_trim_threshold, 2 * UNIT_BYTES)  # and keep up to two units' worth of it
    except (OSError, AttributeError):  # not glibc: its default behaviour stays
        pass


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
    plan.UNIT_COST): workers killed mid-unit could leave the pool's queues, and so the exit, hanging."""
    pool.shutdown(wait=True, cancel_futures=True)
