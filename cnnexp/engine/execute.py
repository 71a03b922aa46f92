"""Running units: each unit computed by its engine, here, in a local process pool or on a Dask cluster.

    units (cnnexp/engine/plan.py)
      -> execute      compute each unit in this process, a local process pool (`--workers`) or a Dask
                      cluster (`--scheduler`): any concurrent.futures-style executor, one code path,
                      at most `window` units in flight
      -> lists of RunResults, one list per unit, as each unit finishes

    >>> from cnnexp.config import RunConfig, Task
    >>> from cnnexp.engine.plan import plan_units
    >>> units = plan_units([Task(RunConfig(d=8, batch=4, seed=s), ("plain", "residual")) for s in range(3)])
    >>> [len(results) for results in execute(units)]
    [6]
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cnnexp.engine.cluster import cluster_executor
from cnnexp.engine.plan import Execution, WorkUnit
from cnnexp.engine.pool import process_pool, stop
from cnnexp.engine.registry import engine
from cnnexp.engine.result import RunResult
from cnnexp.engine.runtime import first_line, use_threads
from cnnexp.errors import CnnexpError

WINDOW = 4  # units in flight by default


class RunError(CnnexpError):
    """A work unit could not be computed (out of memory, a worker lost): the rows already written stay."""


def compute(unit: WorkUnit) -> list[RunResult]:
    """Run one unit with its engine; one RunResult per configuration and block. Runs in any process."""
    if unit.threads is not None:
        use_threads(unit.threads)
    return engine(unit.engine)(unit.tasks, unit.device, unit.layers, unit.curve, unit.checkpoints)


def execute(units: Iterable[WorkUnit], executor: Executor | None = None,
            window: int = WINDOW) -> Iterator[list[RunResult]]:
    """Compute units, yielding each unit's RunResults as it finishes.

    Args:
        units: from `plan_units`.
        executor: a concurrent.futures-style executor (a local process pool, or Dask's
            `Client.get_executor()`); None computes each unit here, in order.
        window: the most units submitted and not yet collected, so a huge sweep holds few futures.

    Raises:
        RunError: a unit failed for a reason in its data (out of memory) or its worker was lost.
    """
    if executor is None:
        for unit in units:
            yield _collect(unit, lambda u=unit: compute(u))  # type: ignore[misc]
        return
    pending: dict[Future[list[RunResult]], WorkUnit] = {}
    queue = iter(units)
    try:
        while True:
            while len(pending) < window and (waiting := next(queue, None)) is not None:
                pending[executor.submit(compute, waiting)] = waiting
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield _collect(pending.pop(future), future.result)
    finally:
        for future in pending:
            future.cancel()


def _collect(unit: WorkUnit, result: Callable[[], list[RunResult]]) -> list[RunResult]:
    """A unit's results, with a failure in its data (or a lost worker) as one RunError naming it."""
    try:
        return result()
    except (MemoryError, RuntimeError) as e:  # torch reports an allocation failure as a RuntimeError
        raise RunError(f"{unit.describe()}: {type(e).__name__}: {first_line(e)}") from None
    except Exception as e:
        lost = _lost(e)
        if lost is None:
            raise
        raise RunError(f"{unit.describe()}: {lost}") from None


def _lost(e: Exception) -> str | None:
    """Why a unit's worker (or the cluster) was lost, when `e` says so; None for any other exception."""
    if isinstance(e, BrokenProcessPool):
        return "a worker process died (killed, or out of memory)"
    distributed = sys.modules.get("distributed")  # imported only where a cluster is used
    if distributed is not None and isinstance(e, distributed.KilledWorker):
        return (f"every worker that ran it died ({e.allowed_failures + 1} tries; killed, or out of memory: see "
                f"the workers' logs, e.g. for the memory limit); rerun the same command to resume")
    if isinstance(e, CancelledError):
        return "the cluster dropped it (the scheduler stopped, or lost this client); rerun the same command to resume"
    if isinstance(e, OSError) and distributed is not None:  # a connection to the scheduler or a worker was lost
        return f"lost the cluster: {type(e).__name__}: {first_line(e)}; rerun the same command to resume"
    return None


@dataclass(frozen=True)
class Backend:
    """Where a sweep's units run, as `open_executor` opened it.

    Attributes:
        executor: the executor to submit units to; None to compute them in this process, in order.
        parallel: how many units compute at once (worker processes, or the cluster's threads): the planner
            cuts units small enough to keep them all busy.
        window: the most units in flight.
        provenance: what the provenance file records of it (its "environment" entries).
    """

    executor: Executor | None
    parallel: int
    window: int = WINDOW
    provenance: dict[str, Any] = field(default_factory=dict)


@contextmanager
def open_executor(execution: Execution, workers: int) -> Iterator[Backend]:
    """The executor for a sweep's units and what to record of it in the provenance.

    Yields a Backend with no executor for this process alone, a local process pool for several workers, or a
    Dask cluster's executor for a scheduler (cnnexp/engine/cluster.py). On an error or Ctrl-C the units not
    yet started are cancelled and the workers stopped at once.
    """
    if execution.scheduler or execution.scheduler_file:
        with cluster_executor(execution) as (executor, info):
            yield Backend(executor, info["threads_total"], info["window"], info)
        return
    if workers <= 1:
        yield Backend(None, 1, WINDOW, {"workers": 1})
        return
    pool = process_pool(workers)
    try:
        yield Backend(pool, workers, 2 * workers, {"workers": workers, "window": 2 * workers})
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=False)  # every unit is in: the idle workers exit while the writer finishes the files
