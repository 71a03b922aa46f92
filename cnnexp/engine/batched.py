"""The batched engine (`--engine batched`, the default): configurations of one shape computed as one stack.

Same study, same numbers as the reference engine (cnnexp/probe.py), without its per-run costs:

    for each configuration b:  seed, x[b] = randn(batch, d), then each weight in order (fc1, fc2 per block)
                               = small_init * randn(d, d)                      drawn once, in float32,
                                                                               shared by every block kind
    for each block kind:       h = x                                           (B, batch, d)
                               a1 = h @ W1^T           (torch.bmm over the B configurations)
                               h = F(h) | h + F(h) | h + alpha F(h) | h + F(LayerNorm(h))
                               loss[b] = mean(h[b]^2);  backpropagate sum(loss)   (rows are independent, so
                                                                                   each gets its own gradient)

No nn.Module is built, so no default init is drawn and thrown away; the draw goes straight into the stacked
tensors. Every norm is taken per configuration by cnnexp.norms, as in the reference engine.

    >>> from cnnexp.config import RunConfig
    >>> results = run_batched([(RunConfig(d=8, batch=4, seed=s), ("plain", "residual")) for s in (0, 1)])
    >>> [(r.config.seed, r.block) for r in results]
    [(0, 'plain'), (0, 'residual'), (1, 'plain'), (1, 'residual')]
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from cnnexp import norms
from cnnexp.blocks import ACTIVATIONS, DTYPES
from cnnexp.config import Task
from cnnexp.engine import shape_of
from cnnexp.probe import RunResult
from cnnexp.schema import BLOCKS, LAYER_METRICS


def draw_stack(configs: Sequence) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Each configuration's draw, exactly as the notebook makes it, written straight into stacked tensors.

    Returns x (B, batch, d) and the weights fc1_0, fc2_0, fc1_1, ... each (B, d, d), all float32.
    """
    first = configs[0]
    x = torch.empty(len(configs), first.batch, first.d)
    weights = [torch.empty(len(configs), first.d, first.d) for _ in range(2 * first.depth)]
    for b, config in enumerate(configs):
        torch.manual_seed(config.seed)
        torch.randn(config.batch, config.d, out=x[b])
        for w in weights:
            torch.randn(config.d, config.d, out=w[b]).mul_(config.small_init)
    return x, weights


def forward(block: str, activation: str, x, w1s, w2s, alphas):
    """The network of `len(w1s)` blocks of one kind on a stack of inputs. Returns out, [a1], [block output]."""
    act = ACTIVATIONS[activation]
    h, a1s, outs = x, [], []
    for w1, w2, alpha in zip(w1s, w2s, alphas, strict=True):
        inp = F.layer_norm(h, h.shape[-1:]) if block == "prenorm" else h
        a1 = torch.bmm(inp, w1.transpose(1, 2))  # (B, batch, d): fc1 of each configuration
        f = torch.bmm(act(a1), w2.transpose(1, 2))  # F(inp)
        if block == "plain":
            h = f
        elif block == "rezero":
            h = h + alpha * f  # alpha: (B, 1, 1)
        else:
            h = h + f
        a1s.append(a1)
        outs.append(h)
    return h, a1s, outs


def measure(block: str, activation: str, x, weights, alphas, layers: bool):
    """Forward and backward one block kind on a stack; returns the metrics as a (B, k) float64 tensor and the
    per-layer metrics as (B, depth, 4) (or None)."""
    x = x.detach().requires_grad_(True)
    weights = [w.detach().requires_grad_(True) for w in weights]
    w1s, w2s = weights[0::2], weights[1::2]
    params = [*weights, *alphas] if block == "rezero" else weights
    for a in alphas:
        a.requires_grad_(block == "rezero")
    out, a1s, outs = forward(block, activation, x, w1s, w2s, alphas)
    loss = out.pow(2).mean(dim=(1, 2))  # (B,): each configuration's loss, the notebook's mean(out^2)
    grads = torch.autograd.grad(loss.sum(), [x, *a1s, *outs, *params])
    depth = len(a1s)
    gx, ga1, gout, gparams = grads[0], grads[1:1 + depth], grads[1 + depth:1 + 2 * depth], grads[1 + 2 * depth:]
    metrics = torch.stack([
        norms.mean_square(out),  # loss
        norms.norm(gx),  # x_grad_norm
        norms.norm(ga1[0]),  # a1_grad_norm
        norms.norm(*params),  # w_norm
        norms.norm(*gparams),  # param_grad_norm
        norms.cosine(gx, gout[-1]),  # cos_x_out
    ], dim=1)
    per_layer = None
    if layers:
        per_layer = torch.stack([
            torch.stack([norms.norm(ga1[i]), norms.norm(gparams[2 * i]), norms.norm(gparams[2 * i + 1]),
                         norms.norm(gout[i])], dim=1)
            for i in range(depth)], dim=1)  # (B, depth, 4)
    return metrics, per_layer


def run_batched(tasks: Sequence[Task], device: str = "cpu", layers: bool = True) -> list[RunResult]:
    """Run tasks whose configurations share one shape; one RunResult per configuration and block, in task
    order (configuration by configuration, blocks in canonical order)."""
    from cnnexp.schema import METRICS

    configs = [config for config, _ in tasks]
    if len({shape_of(c) for c in configs}) != 1:
        raise ValueError("run_batched takes configurations of one shape")  # the unit planner's invariant
    first = configs[0]
    dtype = DTYPES[first.dtype]
    x, weights = draw_stack(configs)
    x, weights = x.to(device, dtype), [w.to(device, dtype) for w in weights]
    found: dict[tuple[int, str], RunResult] = {}
    for block in BLOCKS:
        rows = [i for i, (_, blocks) in enumerate(tasks) if block in blocks]
        if not rows:
            continue
        pick = (lambda t: t) if len(rows) == len(tasks) else (lambda t: t[rows])
        # rezero's gate starts as float32(alpha_init) in the run's dtype, as every starting value does
        gate = torch.tensor([configs[i].alpha_init for i in rows], dtype=torch.float32).to(device, dtype)
        alphas = [gate[:, None, None].clone() for _ in range(first.depth)]
        metrics, per_layer = measure(block, first.activation, pick(x), [pick(w) for w in weights], alphas, layers)
        metrics = metrics.cpu().tolist()
        per_layer = per_layer.cpu().tolist() if per_layer is not None else [()] * len(rows)
        for i, values, layer_values in zip(rows, metrics, per_layer):
            found[i, block] = RunResult(block, configs[i], dict(zip(METRICS, values)),
                                        tuple(dict(zip(LAYER_METRICS, v)) for v in layer_values))
    return [found[i, b] for i, (_, blocks) in enumerate(tasks) for b in BLOCKS if b in blocks]
