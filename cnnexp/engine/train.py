"""Training on the batched kernels: full-batch gradient descent on a stack of configurations of one shape.

The definition (docs/training.md), for each configuration b of the stack and each block kind:

    y[b] = 0 | x | T2 relu(T1 x) | x + T2 relu(T1 x)        the target (T1, T2 drawn after the student)
    for s in 0 .. steps:
        loss[b] = mean((out[b] - y[b])^2)                   at the weights after s updates
        metrics at step s (when s is recorded, and always at 0 and the last step)
        W <- W - lr[b] * dloss[b]/dW                        every parameter, a gate too (s < steps)
    steps_to_fit[b] = the first s with loss[b] <= 0.1 * mean(y[b]^2)   (None for y = 0, or never)

Every configuration's loss depends only on its own weights, so one backward pass of sum(loss) gives each its
own gradient, and one update with lr as a (B, 1, 1) tensor moves them all. With steps = 0 and the zero target
this is exactly the study at init (`kernels.measure`): one forward and backward, the same numbers.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x, w = torch.randn(2, 4, 3, dtype=torch.float64), [torch.randn(2, 3, 3, dtype=torch.float64) * 0.1] * 2
    >>> [t] = descend(["residual"], "relu", x, w, [torch.zeros(2, 1, 1)], y=2 * x, lr=torch.full((2, 1, 1), 0.5),
    ...           steps=50, record=[0, 50], layers=False, has_target=[True, True])
    >>> bool(t.last[0, 0] < t.first[0, 0]), t.steps_to_fit     # loss at the last step below the first
    (True, [16, 19])
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cnnexp import norms
from cnnexp.config import RunConfig
from cnnexp.engine.kernels import gradients, metrics
from cnnexp.engine.result import report_step
from cnnexp.schema import BLOCK_KIND, FIT_FRACTION, LAYER_METRICS, STEP_METRICS


def targets(configs: Sequence[RunConfig], x: torch.Tensor, teachers: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Each configuration's target y (B, batch, d), in x's dtype; None when every target is zero (the
    notebook's loss mean(out^2), computed exactly as the study at init computes it)."""
    kinds = [c.target for c in configs]
    if all(k == "zero" for k in kinds):
        return None
    y = torch.zeros_like(x)
    if teachers:
        t1, t2 = teachers  # (B, d, d) each
        taught = torch.bmm(torch.relu(torch.bmm(x, t1.transpose(1, 2))), t2.transpose(1, 2))  # T2 relu(T1 x)
    for b, kind in enumerate(kinds):
        if kind == "identity":
            y[b] = x[b]
        elif kind == "teacher_plain":
            y[b] = taught[b]
        elif kind == "teacher_residual":
            y[b] = x[b] + taught[b]
    return y


@dataclass(frozen=True)
class Trained:
    """What a stack's training measured: metrics (B, k) per recorded step, per-layer metrics at the last step,
    each configuration's steps_to_fit."""

    curve: dict[int, torch.Tensor]  # step -> (B, len(STEP_METRICS)) float64, for the recorded steps
    last: torch.Tensor  # (B, len(STEP_METRICS)): the metrics at the last step
    first: torch.Tensor  # (B, len(STEP_METRICS)): the metrics at step 0
    per_layer: torch.Tensor | None  # (B, depth, 4) at the last step
    steps_to_fit: list[int | None]

    def layer_metrics(self, b: int) -> tuple[dict[str, Any], ...]:
        if self.per_layer is None:
            return ()
        return tuple(dict(zip(LAYER_METRICS, v)) for v in self.per_layer[b].tolist())

    def curve_metrics(self, b: int) -> tuple[dict[str, Any], ...]:
        return tuple({"step": s, **dict(zip(STEP_METRICS, m[b].tolist()))} for s, m in self.curve.items())


def descend(kinds: Sequence[str], activation: str, x: torch.Tensor, weights: Sequence[torch.Tensor],
            alphas: Sequence[torch.Tensor], *, y: torch.Tensor | None, lr: torch.Tensor, steps: int,
            record: Sequence[int], layers: bool, has_target: Sequence[bool]) -> list[Trained]:
    """Train each block kind on a stack for `steps` full-batch gradient descent updates; one Trained per kind.

    Args:
        kinds: the networks' block kinds; several only with steps = 0 (the study at init: one pass measures
            them all), as an update gives each kind weights of its own.
        activation: the networks' nonlinearity.
        x: the inputs (B, batch, d); weights: fc1_0, fc2_0, ... each (B, d, d); alphas: the gates (B, 1, 1)
            per block index; all in the run's dtype (and left unchanged).
        y: the targets (B, batch, d), or None for the zero target everywhere.
        lr: each configuration's learning rate, (B, 1, 1) in the run's dtype.
        steps: the number of updates.
        record: the steps whose metrics go to the curve (step 0 and the last are measured anyway).
        layers: also measure every block index at the last step.
        has_target: per configuration, whether steps_to_fit is defined (its target is not zero).
    """
    recorded = set(record)
    weights, alphas = list(weights), list(alphas)
    threshold = FIT_FRACTION * norms.mean_square(y) if y is not None else None  # (B,) float64
    can_fit = torch.tensor(list(has_target), dtype=torch.bool, device=x.device)
    fitted = [torch.full((x.shape[0],), -1, dtype=torch.int64, device=x.device) for _ in kinds]
    curve: list[dict[int, torch.Tensor]] = [{} for _ in kinds]
    first: list[torch.Tensor | None] = [None] * len(kinds)
    last: list[torch.Tensor | None] = [None] * len(kinds)
    per_layer: list[torch.Tensor | None] = [None] * len(kinds)
    gate = BLOCK_KIND[kinds[0]].gated
    for s in range(steps + 1):
        measured = s in recorded or s in (0, steps)
        found = gradients(kinds, activation, x, weights, alphas, y, inputs=measured, update=s < steps)
        for k, g in enumerate(found):
            if measured:
                m, layer = metrics(g, layers and s == steps)
                loss = m[:, 0]
                first[k] = m if s == 0 else first[k]
                last[k], per_layer[k] = m, layer
                if s in recorded:
                    curve[k][s] = m
            elif threshold is not None:  # (the zero target has no steps_to_fit: no loss needed between records)
                loss = norms.mean_square(g.diff)
            if threshold is not None:
                fitted[k] = torch.where((fitted[k] < 0) & can_fit & (loss <= threshold), s, fitted[k])
        report_step(s, steps)
        if s < steps:
            with torch.no_grad():  # W <- W - lr * dloss/dW (one kind: see gradients)
                n, gparams = len(weights), found[0].gparams
                assert gparams is not None  # (asked for: update=True)
                weights = [w - lr * gw for w, gw in zip(weights, gparams[:n])]
                if gate:
                    alphas = [a - lr * ga for a, ga in zip(alphas, gparams[n:])]
    return [Trained({s: m.cpu() for s, m in sorted(curve[k].items())}, _cpu(last[k]), _cpu(first[k]),
                    layer.cpu() if (layer := per_layer[k]) is not None else None,
                    [int(v) if v >= 0 else None for v in fitted[k].tolist()])
            for k in range(len(kinds))]


def _cpu(t: torch.Tensor | None) -> torch.Tensor:
    if t is None:
        raise ValueError("no step was measured")  # (step 0 and the last always are)
    return t.cpu()
