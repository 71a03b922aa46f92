"""The batched engine (`--engine batched`, the default): configurations of one shape computed as one stack.

The driver over the kernels (cnnexp/engine/kernels.py: the draw, the forward and backward passes) and the
training on them (cnnexp/engine/train.py): a unit's tasks cut into stacks (cost.stacks), every stack's draw
made first (each seed's numbers once), then each stack's passes, each block kind's RunResults out.

    >>> from cnnexp.config import RunConfig, Task
    >>> results = run_batched([Task(RunConfig(d=8, batch=4, seed=s), ("plain", "residual")) for s in (0, 1)])
    >>> [(r.config.seed, r.block) for r in results]
    [(0, 'plain'), (0, 'residual'), (1, 'plain'), (1, 'residual')]
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnexp.blocks import DTYPES
from cnnexp.config import Task
from cnnexp.engine.cost import shape_of, stacks
from cnnexp.engine.kernels import Drawn, draw_stacks
from cnnexp.engine.result import RunResult, curve_steps, run_metrics
from cnnexp.engine.train import descend, targets
from cnnexp.schema import BLOCKS, STEP_METRICS


def _passes(tasks: Sequence[Task], steps: int) -> list[tuple[list[str], list[int]]]:
    """The passes that compute `tasks`: (the block kinds, the indices of the tasks) of each.

    At init every kind has the same weights, so configurations that ask for the same kinds are measured in
    one pass (and each kind rounds as it would alone, see `kernels._linear`). Training runs each kind apart,
    as an update gives each its own weights.
    """
    if steps:
        return [([kind], [i for i, (_, blocks) in enumerate(tasks) if kind in blocks])
                for kind in BLOCKS if any(kind in blocks for _, blocks in tasks)]
    asked = dict.fromkeys(frozenset(blocks) for _, blocks in tasks)
    return [([kind for kind in BLOCKS if kind in kinds],
             [i for i, (_, blocks) in enumerate(tasks) if frozenset(blocks) == kinds])
            for kinds in asked]


def run_batched(tasks: Sequence[Task], device: str = "cpu", layers: bool = True,
                curve: int | None = None, checkpoints: str | None = None) -> list[RunResult]:
    """Run a unit's tasks; one RunResult per configuration and block, in task order (configuration by
    configuration, blocks in canonical order). Configurations of one shape are computed as stacks (`stacks`),
    all drawn first, each seed's numbers once (`draw_stacks`). Configurations with steps > 0 train
    (cnnexp/engine/train.py); `curve` asks for the curve file's steps (see `curve_steps`)."""
    groups = stacks(tasks)
    drawn = draw_stacks([[tasks[i][0] for i in group] for group in groups])
    found: dict[tuple[int, str], RunResult] = {}
    for group in groups:
        stack = drawn.pop(0)  # (each stack's draw is let go once computed)
        for (i, block), result in _run_stack([tasks[i] for i in group], stack, device, layers, curve).items():
            found[group[i], block] = result
    return [found[i, b] for i, (_, blocks) in enumerate(tasks) for b in BLOCKS if b in blocks]


def _run_stack(tasks: Sequence[Task], drawn: Drawn, device: str, layers: bool,
               curve: int | None) -> dict[tuple[int, str], RunResult]:
    """Run tasks of one shape as one stack, from its draw: {(index in tasks, block): RunResult}."""
    configs = [config for config, _ in tasks]
    if len({shape_of(c) for c in configs}) != 1:
        raise ValueError("a stack takes configurations of one shape")  # stacks()'s invariant
    first = configs[0]
    dtype = DTYPES[first.dtype]
    x, weights, teachers = drawn
    x, weights = x.to(device, dtype), [w.to(device, dtype) for w in weights]
    y = targets(configs, x, [t.to(device, dtype) for t in teachers])
    # each configuration's learning rate, in the run's dtype as every starting value is
    lr = torch.tensor([c.lr for c in configs], dtype=torch.float64).to(device, dtype)[:, None, None]
    record = curve_steps(first.steps, curve)
    # a gate starts as float32(alpha_init) in the run's dtype, as every starting value does
    gate = torch.tensor([c.alpha_init for c in configs], dtype=torch.float32).to(device, dtype)[:, None, None]
    found: dict[tuple[int, str], RunResult] = {}
    for together, rows in _passes(tasks, first.steps):
        def pick(t: torch.Tensor, rows: list[int] = rows) -> torch.Tensor:
            return t if len(rows) == len(tasks) else t[rows]

        trained = descend(together, first.activation, pick(x), [pick(w) for w in weights],
                          [pick(gate).clone() for _ in range(first.depth)], y=None if y is None else pick(y),
                          lr=pick(lr), steps=first.steps, record=record, layers=layers,
                          has_target=[configs[i].target != "zero" for i in rows])
        for block, t in zip(together, trained):
            for row, i in enumerate(rows):
                last = dict(zip(STEP_METRICS, t.last[row].tolist()))
                metrics = run_metrics(configs[i], last, float(t.first[row, 0]), t.steps_to_fit[row])
                found[i, block] = RunResult(block, configs[i], metrics, t.layer_metrics(row), t.curve_metrics(row))
    return found
