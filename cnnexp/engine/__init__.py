"""How runs execute: work units in, RunResults out, in any order. Only the writer process touches files.

    tasks  (a configuration and the blocks it still needs)
      -> plan_units   a d and seed's configurations together (one draw), cut by cost    (pure, no torch)
      -> execute      compute each unit in this process, a local process pool (`--workers`) or a Dask
                      cluster (`--scheduler`): any concurrent.futures-style executor, one code path,
                      at most `window` units in flight
      -> lists of RunResults, one list per unit, as each unit finishes

The engines (`--engine`) are interchangeable functions from a unit's tasks to RunResults: `batched` (the
default, cnnexp/engine/batched.py) and `reference` (the notebook's method, cnnexp/engine/reference.py). Both
take every metric through cnnexp.norms and agree to rel 1e-6.

    >>> from cnnexp.config import RunConfig
    >>> units = plan_units([(RunConfig(d=8, batch=4, seed=s), ("plain", "residual")) for s in range(3)])
    >>> [u.rows for u in units]
    [6]
    >>> [len(results) for results in execute(units)]
    [6]
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from cnnexp.config import Task, trains
from cnnexp.errors import CnnexpError, ConfigError
from cnnexp.schema import TEACHER_TARGETS

ENGINES: dict[str, str] = {  # --engine name -> the module and function that computes a unit's tasks
    "batched": "cnnexp.engine.batched:run_batched",
    "reference": "cnnexp.engine.reference:run_reference",
}
DEVICES: tuple[str, ...] = ("cpu", "cuda", "mps", "auto")
UNIT_BYTES = 256 * 2**20  # the memory one stack of configurations may take; a larger group is cut
DRAW_BYTES = UNIT_BYTES // 2  # the memory a unit's draw may take (every configuration's, drawn before any stack runs)
DRAW_COST = 300  # one drawn number costs about as much as this many multiply-adds (bench/bench_sweep.py)
UNIT_COST = 2e10  # about a second of one core: a unit is never longer, so a kill or Ctrl-C loses little
BLOCK_OVERHEAD = 32 * 2**10  # bytes of autograd graph and tensors' headers per block, whatever its size
DEFAULT_THREADS = 1  # torch threads in the writer's process: two were up to 9x slower under other load
POOL_COST = 5e9  # below this much work in all, worker processes cost more than they save
UNITS_PER_WORKER = 8  # with several workers, units this small: the last to finish leaves the others idle briefly


class RunError(CnnexpError):
    """A work unit could not be computed (out of memory, a worker lost): the rows already written stay."""


@dataclass(frozen=True)
class WorkUnit:
    """Configurations and the blocks each still needs: computed together, in one process.

    Attributes:
        tasks: (configuration, blocks) pairs. The batched engine stacks those of one shape (`shape_of`), and
            draws the random numbers of each seed once for all of its configurations, whatever their shapes.
        engine: a key of ENGINES.
        device: where the tensors live ("cpu", "cuda", "mps"); the draw is always on the CPU generator.
        layers: also measure every block index (for --per-layer).
        curve: also measure the steps of the curve file (for --curve): None for no curve, 0 for steps 0, 1, 2,
            4, 8, ... and the last, N > 0 for every N-th step as well (--curve-every).
    """

    tasks: tuple[Task, ...]
    engine: str = "batched"
    device: str = "cpu"
    layers: bool = False
    curve: int | None = None

    @property
    def rows(self) -> int:
        return sum(len(blocks) for _, blocks in self.tasks)

    @property
    def cost(self) -> float:
        return sum(run_cost(config, len(blocks)) for config, blocks in self.tasks)

    def describe(self) -> str:
        """The unit's configurations in a few words, for error messages."""
        configs = [config for config, _ in self.tasks]
        first = configs[0]
        shape = f"d={first.d}, batch={first.batch}, depth={first.depth}, {first.activation}, {first.dtype}"
        if len(configs) == 1:
            return f"{shape}, small_init={first.small_init!r}, seed={first.seed}"
        shapes = {shape_of(c) for c in configs}
        if len(shapes) == 1:
            return f"{shape} ({len(configs)} configurations)"
        return f"{len(configs)} configurations of {len(shapes)} shapes (d={_span(c.d for c in configs)}), " + (
            f"seed{'s' if len({c.seed for c in configs}) > 1 else ''} {_span(c.seed for c in configs)}")


def _span(values) -> str:
    """'3' for one value, '16..1024' for several."""
    values = sorted(set(values))
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}..{values[-1]}"


def shape_of(config) -> tuple:
    """What configurations must share to be stacked: everything but seed, small_init, alpha_init, lr and
    target (each configuration keeps its own, as a tensor of the stack)."""
    return (config.d, config.batch, config.depth, config.activation, config.dtype, config.steps)


def curve_steps(steps: int, every: int | None) -> list[int]:
    """The steps a curve file records for a run of `steps` updates: none without a curve (every=None); else
    0, 1, 2, 4, 8, ... and the last, and with every=N > 0 each N-th step as well.

        >>> curve_steps(10, 0), curve_steps(10, 3), curve_steps(0, 0), curve_steps(5, None)
        ([0, 1, 2, 4, 8, 10], [0, 1, 2, 3, 4, 6, 8, 9, 10], [0], [])
    """
    if every is None:
        return []
    powers = {1 << k for k in range(steps.bit_length())}  # 1, 2, 4, ... <= steps
    regular = set(range(0, steps + 1, every)) if every > 0 else set()
    return sorted({0, steps} | powers | regular)


def run_cost(config, n_blocks: int) -> float:
    """Multiply-adds of one configuration, with its draw and every training step counted: the weight to
    balance work by (a step is a forward and a backward pass, as the study at init is one)."""
    d, batch, depth = config.d, config.batch, config.depth
    return depth * d * d * (2 * DRAW_COST + 6 * batch * n_blocks * (config.steps + 1))


def unit_bytes(config, n_blocks: int) -> int:
    """A generous estimate of the memory one configuration takes inside a unit (batched or reference).

    The float32 draw (2 depth d^2 + batch d), its copy in the run's dtype, gradients and float64 copies for
    the norms (about 6 depth d^2 in all), and per block index the activations and their gradients (12 batch d)
    and autograd's own bookkeeping (about 32 KiB, measured at depth 15,000 with d=1), for each block kind.
    Training adds the teacher (2 d^2), the target y and the updated weights of each kind (its memory does not
    grow with the steps: the weights are updated in place of the last ones).
    """
    d, batch, depth = config.d, config.batch, config.depth
    itemsize = 8 if config.dtype == "float64" else 4
    draw = 4 * (2 * depth * d * d + batch * d)
    per_block = 8 * (6 * d * d + 12 * batch * d) + BLOCK_OVERHEAD
    need = draw + n_blocks * depth * per_block + itemsize * 2 * depth * d * d
    if trains(config):
        need += 8 * (2 * d * d + batch * d) + itemsize * n_blocks * 4 * depth * d * d
    return need


def draw_size(config) -> int:
    """How many random numbers a configuration draws after its seed: x, each weight, and a teacher's two."""
    d, teacher = config.d, 2 if config.target in TEACHER_TARGETS else 0
    return config.batch * d + (2 * config.depth + teacher) * d * d


def plan_units(tasks: Iterable[Task], *, engine: str = "batched", device: str = "cpu", layers: bool = False,
               workers: int = 1, curve: int | None = None) -> list[WorkUnit]:
    """Cut tasks into work units, each within UNIT_COST and, with several workers, small enough to balance
    (about UNITS_PER_WORKER units per worker), largest first.

    The batched engine gets whole families: the configurations of one d and one seed, whatever their batch,
    depth or target, draw prefixes of the same random numbers, drawn once in a unit (batched.draw_stacks). A
    unit holds as many families as fit its cost and DRAW_BYTES, the smaller d first, so the many
    configurations of a small d make large stacks. A family that alone is bigger than a unit is cut, and
    then each part draws its numbers again (balance first: with several workers, a sweep of few seeds would
    otherwise be a few long units). The reference engine gets one configuration per unit: it has nothing to
    share between them.
    """
    tasks = list(tasks)
    total = sum(run_cost(c, len(b)) for c, b in tasks)
    target = min(total / (UNITS_PER_WORKER * workers), UNIT_COST) if workers > 1 else UNIT_COST
    if engine == "reference":
        chunks = [[task] for task in tasks]
    else:
        families: dict[tuple[int, int], list[Task]] = {}
        for task in tasks:
            families.setdefault((task[0].d, task[0].seed), []).append(task)
        chunks, chunk, cost, drawn = [], [], 0.0, 0
        for _, family in sorted(families.items(), key=lambda item: item[0][0]):  # by d, seeds in order
            more = sum(run_cost(c, len(b)) for c, b in family)
            grow = sum(4 * draw_size(c) for c, _ in family)  # float32 numbers
            if chunk and (cost + more > target or drawn + grow > DRAW_BYTES):
                chunks.append(chunk)
                chunk, cost, drawn = [], 0.0, 0
            if more > target or grow > DRAW_BYTES:  # a family bigger than a unit: its configurations are cut
                chunks += _cut(sorted(family, key=lambda task: shape_of(task[0])), target)
                continue
            chunk += family
            cost, drawn = cost + more, drawn + grow
        chunks += [chunk] if chunk else []
    units = [WorkUnit(tuple(chunk), engine, device, layers, curve) for chunk in chunks]
    return sorted(units, key=lambda u: -u.cost) if workers > 1 else units


def _cut(tasks: list[Task], target: float) -> list[list[Task]]:
    """Consecutive runs of tasks, each costing at most `target` and drawing at most DRAW_BYTES (or holding one
    task)."""
    chunks, chunk, cost, drawn = [], [], 0.0, 0
    for config, blocks in tasks:
        more, grow = run_cost(config, len(blocks)), 4 * draw_size(config)
        if chunk and (cost + more > target or drawn + grow > DRAW_BYTES):
            chunks.append(chunk)
            chunk, cost, drawn = [], 0.0, 0
        chunk.append((config, blocks))
        cost, drawn = cost + more, drawn + grow
    return chunks + [chunk]


def stacks(tasks: Sequence[Task]) -> list[list[int]]:
    """The stacks a unit's tasks are computed in, as lists of their indices: those of one shape together, in
    order, cut so that each takes at most UNIT_BYTES (or holds one configuration)."""
    groups: dict[tuple, list[int]] = {}
    for i, (config, _) in enumerate(tasks):
        groups.setdefault(shape_of(config), []).append(i)
    found = []
    for group in groups.values():
        stack, size = [], 0
        for i in group:
            config, blocks = tasks[i]
            grow = unit_bytes(config, len(blocks))
            if stack and size + grow > UNIT_BYTES:
                found.append(stack)
                stack, size = [], 0
            stack.append(i)
            size += grow
        found.append(stack)
    return found


@dataclass(frozen=True)
class Execution:
    """How a sweep's units run (flags, recorded in the provenance; never part of a row).

    Attributes:
        engine: `--engine`, a key of ENGINES.
        device: `--device`, resolved (cpu, cuda or mps).
        workers: `--workers`: processes on this machine (None: every core the process may use, when the
            sweep is big enough to gain from them).
        threads: `--threads`: torch threads in this process (workers use one each).
        scheduler: `--scheduler` address of a Dask cluster (or None).
        scheduler_file: `--scheduler-file` of a Dask cluster (or None).
    """

    engine: str = "batched"
    device: str = "cpu"
    workers: int | None = None
    threads: int | None = None
    scheduler: str | None = None
    scheduler_file: str | None = None


def worker_count(execution: Execution, total_cost: float) -> int:
    """The local worker processes to use: as asked, or every core when the work is big enough to gain."""
    if execution.workers is not None:
        return execution.workers  # (the sweep never starts more than it has units)
    if execution.device != "cpu" or total_cost < POOL_COST:
        return 1  # one process drives a GPU; a small sweep is over before workers would start
    return available_cores()


def compute(unit: WorkUnit) -> list:
    """Run one unit with its engine; one RunResult per configuration and block. Runs in any process."""
    import importlib

    module, function = ENGINES[unit.engine].split(":")
    return getattr(importlib.import_module(module), function)(unit.tasks, unit.device, unit.layers, unit.curve)


def execute(units: Iterable[WorkUnit], executor: Executor | None = None, window: int = 4) -> Iterator[list]:
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
            yield _collect(unit, lambda u=unit: compute(u))
        return
    pending: dict = {}
    queue = iter(units)
    try:
        while True:
            while len(pending) < window and (unit := next(queue, None)) is not None:
                pending[executor.submit(compute, unit)] = unit
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield _collect(pending.pop(future), future.result)
    finally:
        for future in pending:
            future.cancel()


def _collect(unit: WorkUnit, result) -> list:
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
    import sys
    from concurrent.futures import CancelledError
    from concurrent.futures.process import BrokenProcessPool

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


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def import_torch():
    """`import torch`, with the garbage collector paused while it runs, then everything it made frozen.

    The import makes hundreds of thousands of objects, all kept for the life of the process: the collector's
    passes over them were 0.25 s of a 1.1 s import here (2026-11-29), and once frozen they are not traversed
    again, in this process or in the workers forked from it (nor copied on write by those passes).
    """
    import gc
    import sys

    if "torch" not in sys.modules:
        paused = gc.isenabled()
        gc.disable()
        try:
            import torch  # noqa: F401
        finally:
            if paused:
                gc.enable()
        gc.freeze()
    return sys.modules["torch"]


def resolve_device(name: str) -> str:
    """The device to compute on: cpu, cuda or mps; `auto` picks cuda, then mps, then cpu.

    Raises:
        ConfigError: the device is unknown or this machine does not have it.
    """
    torch = import_torch()  # (the first import of torch in a sweep or run)

    if name not in DEVICES:
        raise ConfigError(f"--device {name!r}: expected one of {', '.join(DEVICES)}")
    have = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if have[d])
    if not have[name]:
        raise ConfigError(f"--device {name}: this machine has no {name} device that torch can use "
                          f"(torch {torch.__version__}); use --device cpu or auto")
    return name


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None keeps torch's default) and return the count in force.

    The study's tensors are small: one thread is as fast as two or faster (bench/bench_sweep.py), and immune
    to other processes' load; workers run one thread each.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


@contextmanager
def open_executor(execution: Execution, workers: int) -> Iterator[tuple[Executor | None, dict]]:
    """The executor for a sweep's units and what to record of it in the provenance.

    Yields (None, ...) for this process alone, a local process pool for several workers, or a Dask cluster's
    executor for a scheduler (cnnexp/engine/cluster.py). On an error or Ctrl-C the units not yet started are
    cancelled and the workers stopped at once.
    """
    if execution.scheduler or execution.scheduler_file:
        from cnnexp.engine.cluster import cluster_executor

        with cluster_executor(execution) as (executor, info):
            yield executor, info
        return
    if workers <= 1:
        yield None, {"workers": 1}
        return
    from cnnexp.engine.pool import process_pool, stop

    pool = process_pool(workers)
    try:
        yield pool, {"workers": workers, "window": 2 * workers}
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=False)  # every unit is in: the idle workers exit while the writer finishes the files


def device_info(device: str) -> dict:
    """What the provenance records of the device: its name and the torch/CUDA versions."""
    import torch

    info = {"device": device, "torch": torch.__version__}
    if device == "cuda":
        info.update(device_name=torch.cuda.get_device_name(), cuda=torch.version.cuda)
    elif device == "mps":
        info.update(device_name="Apple MPS")
    return info
