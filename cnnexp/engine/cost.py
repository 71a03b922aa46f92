"""What computing configurations costs: their shapes (what may be stacked), multiply-adds and memory.

Torch-free: the batched engine cuts a unit into stacks with it, the planner (cnnexp/engine/plan.py) cuts a
sweep into units, and the sweep checks memory before anything runs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cnnexp.config import RunConfig, Task, trains
from cnnexp.nets import net_size
from cnnexp.schema import TEACHER_TARGETS

UNIT_BYTES = 256 * 2**20  # the memory one stack of configurations may take; a larger group is cut
DRAW_BYTES = UNIT_BYTES // 2  # the memory a unit's draw may take (every configuration's, drawn before any stack runs)
DRAW_COST = 300  # one drawn number costs about as much as this many multiply-adds (bench/bench_sweep.py)
EVAL_CHUNK = 1000  # samples per forward pass of an evaluation (train_net; evaluation mode: it changes no number)
BLOCK_OVERHEAD = 32 * 2**10  # bytes of autograd graph and tensors' headers per block, whatever its size

Shape = tuple[Any, ...]


def shape_of(config: RunConfig) -> Shape:
    """What configurations must share to be stacked: everything but seed, small_init, alpha_init, lr and
    target (each configuration keeps its own, as a tensor of the stack)."""
    return (config.d, config.batch, config.depth, config.activation, config.dtype, config.steps)


def run_cost(config: RunConfig, n_blocks: int) -> float:
    """Multiply-adds of one configuration, with its draw and every training step counted: the weight to
    balance work by (a step is a forward and a backward pass, as the study at init is one)."""
    if config.net is not None:
        params, macs, _ = _net_size(config)
        passes: float = config.batch  # a backward costs about two forwards: 3 per sample of the study at init
        if config.trains_on_data:  # each epoch a step per sample, and the evaluations (a third of an epoch each)
            train, test = config.data.sizes
            passes = config.epochs * train + (config.epochs // config.eval_every + 1) * (train + test) / 3
        return DRAW_COST * params + 3 * passes * macs * n_blocks
    d, batch, depth = config.d, config.batch, config.depth
    return depth * d * d * (2 * DRAW_COST + 6 * batch * n_blocks * (config.steps + 1))


def unit_bytes(config: RunConfig, n_blocks: int) -> int:
    """A generous estimate of the memory one configuration takes inside a unit (batched or reference).

    The float32 draw (2 depth d^2 + batch d), its copy in the run's dtype, gradients and float64 copies for
    the norms (about 6 depth d^2 in all), and per block index the activations and their gradients (12 batch d)
    and autograd's own bookkeeping (about 32 KiB, measured at depth 15,000 with d=1), for each block kind.
    Training adds the teacher (2 d^2), the target y and the updated weights of each kind (its memory does not
    grow with the steps: the weights are updated in place of the last ones).
    """
    itemsize = 8 if config.dtype == "float64" else 4
    if config.net is not None:  # the draw and its copy; per block kind: every activation with its gradient, and
        params, _, activations = _net_size(config)  # the float64 copies the statistics take, one at a time
        need = 12 * params + config.batch * activations * n_blocks * (2 * itemsize + 8) + 4 * params * n_blocks
        if config.on_data:  # the data set in the run's dtype, an evaluation chunk's activations, the optimizer's
            train, test = config.data.sizes  # momentum and a checkpoint's copy
            need += itemsize * (train + test) * math.prod(config.sample_shape) + 8 * params * n_blocks
            need += EVAL_CHUNK * activations * itemsize if config.trains_on_data else 0
        return need
    d, batch, depth = config.d, config.batch, config.depth
    draw = 4 * (2 * depth * d * d + batch * d)
    per_block = 8 * (6 * d * d + 12 * batch * d) + BLOCK_OVERHEAD
    need = draw + n_blocks * depth * per_block + itemsize * 2 * depth * d * d
    if trains(config):
        need += 8 * (2 * d * d + batch * d) + itemsize * n_blocks * 4 * depth * d * d
    return need


def draw_size(config: RunConfig) -> int:
    """How many random numbers a configuration draws after its seed: x, each weight, and a teacher's two."""
    d, teacher = config.d, 2 if config.target in TEACHER_TARGETS else 0
    return config.batch * d + (2 * config.depth + teacher) * d * d


def stacks(tasks: Sequence[Task]) -> list[list[int]]:
    """The stacks a unit's tasks are computed in, as lists of their indices: those of one shape together, in
    order, cut so that each takes at most UNIT_BYTES (or holds one configuration)."""
    groups: dict[Shape, list[int]] = {}
    for i, (config, _) in enumerate(tasks):
        groups.setdefault(shape_of(config), []).append(i)
    found = []
    for group in groups.values():
        stack: list[int] = []
        size = 0
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


_SIZES: dict[tuple[Any, str], tuple[int, int, int]] = {}


def _net_size(config: RunConfig) -> tuple[int, int, int]:
    """(parameters, MACs, activations) of one sample through a configuration's network (cached: a sweep
    asks for each of its networks many times)."""
    found = _SIZES.get((config.net, config.input))
    if found is None:
        assert config.net is not None
        found = _SIZES[(config.net, config.input)] = net_size(config.net, config.sample_shape)
    return found
