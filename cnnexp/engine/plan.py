"""Planning: a sweep's tasks cut into work units, each short and within memory (pure, no torch).

    >>> from cnnexp.config import RunConfig, Task
    >>> units = plan_units([Task(RunConfig(d=8, batch=4, seed=s), ("plain", "residual")) for s in range(3)])
    >>> [u.rows for u in units]
    [6]
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cnnexp.config import Task
from cnnexp.engine.cost import DRAW_BYTES, draw_size, run_cost, shape_of
from cnnexp.engine.runtime import available_cores

UNIT_COST = 2e10  # about a second of one core: a unit is never longer, so a kill or Ctrl-C loses little
POOL_COST = 5e9  # below this much work in all, worker processes cost more than they save
UNITS_PER_WORKER = 8  # with several workers, units this small: the last to finish leaves the others idle briefly


@dataclass(frozen=True)
class WorkUnit:
    """Configurations and the blocks each still needs: computed together, in one process.

    Attributes:
        tasks: (configuration, blocks) pairs. The batched engine stacks those of one shape (`shape_of`), and
            draws the random numbers of each seed once for all of its configurations, whatever their shapes.
        engine: a key of cnnexp.engine.registry.ENGINES.
        device: where the tensors live ("cpu", "cuda", "mps"); the draw is always on the CPU generator.
        layers: also measure every block index (for --per-layer).
        curve: also measure the steps of the curve file (for --curve): None for no curve, 0 for steps 0, 1, 2,
            4, 8, ... and the last, N > 0 for every N-th step as well (--curve-every).
        checkpoints: the folder where a network training on data keeps its state after each epoch (None: none).
        threads: torch threads to compute the unit with (None: as its process has them).
    """

    tasks: tuple[Task, ...]
    engine: str = "batched"
    device: str = "cpu"
    layers: bool = False
    curve: int | None = None
    checkpoints: str | None = None
    threads: int | None = None

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
        if first.net is not None:
            small = f", small_init={first.small_init!r}" if first.init == "small" else ""
            data = f", data {first.data}, epochs={first.epochs}, lr={first.lr!r}" if first.on_data else ""
            blocks = self.tasks[0].blocks
            block = f" ({blocks[0]})" if first.trains_on_data and len(blocks) == 1 else ""
            return (f"net {first.net}{block}, input {first.input}{data}, batch={first.batch}, init {first.init}"
                    f"{small}, bn {first.bn}, {first.dtype}, seed={first.seed}")
        shape = f"d={first.d}, batch={first.batch}, depth={first.depth}, {first.activation}, {first.dtype}"
        if len(configs) == 1:
            return f"{shape}, small_init={first.small_init!r}, seed={first.seed}"
        shapes = {shape_of(c) for c in configs}
        if len(shapes) == 1:
            return f"{shape} ({len(configs)} configurations)"
        return f"{len(configs)} configurations of {len(shapes)} shapes (d={_span(c.d for c in configs)}), " + (
            f"seed{'s' if len({c.seed for c in configs}) > 1 else ''} {_span(c.seed for c in configs)}")


def _span(values: Iterable[Any]) -> str:
    """'3' for one value, '16..1024' for several."""
    found = sorted(set(values))
    return f"{found[0]}" if len(found) == 1 else f"{found[0]}..{found[-1]}"


def plan_units(tasks: Iterable[Task], *, engine: str = "batched", device: str = "cpu", layers: bool = False,
               workers: int = 1, curve: int | None = None, checkpoints: str | None = None,
               threads: int | None = None) -> list[WorkUnit]:
    """Cut tasks into work units, each within UNIT_COST and, with several workers, small enough to balance
    (about UNITS_PER_WORKER units per worker), largest first.

    The batched engine gets whole families: the configurations of one d and one seed, whatever their batch,
    depth or target, draw prefixes of the same random numbers, drawn once in a unit (kernels.draw_stacks). A
    unit holds as many families as fit its cost and DRAW_BYTES, the smaller d first, so the many
    configurations of a small d make large stacks. A family that alone is bigger than a unit is cut, and
    then each part draws its numbers again (balance first: with several workers, a sweep of few seeds would
    otherwise be a few long units). The reference engine gets one configuration per unit: it has nothing to
    share between them. A network gets a unit per configuration, and one per block when it trains on data (the
    two train apart: two workers can take them), with `checkpoints` and `threads`.
    """
    tasks = list(tasks)
    total = sum(run_cost(c, len(b)) for c, b in tasks)
    target = min(total / (UNITS_PER_WORKER * workers), UNIT_COST) if workers > 1 else UNIT_COST
    chunks: list[list[Task]]
    nets = [task for task in tasks if task[0].net is not None]
    if nets:  # whole networks: each configuration a unit of its own, computed by the net engine
        units = [WorkUnit((Task(config, (block,)),), "net", device, layers, curve, checkpoints, threads)
                 for config, blocks in nets if config.trains_on_data for block in blocks]
        units += [WorkUnit((task,), "net", device, layers, curve) for task in nets if not task.config.trains_on_data]
        rest = plan_units([task for task in tasks if task[0].net is None], engine=engine, device=device,
                          layers=layers, workers=workers, curve=curve)
        return sorted([*units, *rest], key=lambda u: -u.cost) if workers > 1 else [*units, *rest]
    if engine == "reference":
        chunks = [[task] for task in tasks]
    else:
        families: dict[tuple[int, int], list[Task]] = {}
        for task in tasks:
            families.setdefault((task[0].d, task[0].seed), []).append(task)
        chunk: list[Task] = []
        chunks, cost, drawn = [], 0.0, 0
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
    chunks: list[list[Task]] = []
    chunk: list[Task] = []
    cost, drawn = 0.0, 0
    for task in tasks:
        config, blocks = task
        more, grow = run_cost(config, len(blocks)), 4 * draw_size(config)
        if chunk and (cost + more > target or drawn + grow > DRAW_BYTES):
            chunks.append(chunk)
            chunk, cost, drawn = [], 0.0, 0
        chunk.append(task)
        cost, drawn = cost + more, drawn + grow
    return chunks + [chunk]


@dataclass(frozen=True)
class Execution:
    """How a sweep's units run (flags, recorded in the provenance; never part of a row).

    Attributes:
        engine: `--engine`, a key of cnnexp.engine.registry.ENGINES.
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
