"""Probe one configuration: draw x and small weights, run forward and backward, measure the gradients.

This is the notebook's `run_once`, done once per configuration for every block:

    torch.manual_seed(seed)
    x = randn(batch, d)                            # requires grad
    every parameter, in parameters() order  <-  small_init * randn_like(p)
    loss = out.pow(2).mean();  loss.backward()

The draw happens once and is copied into each block, so the plain and residual runs of one configuration
see identical x and weights by construction.

    >>> from cnnexp.config import RunConfig
    >>> results = probe(RunConfig(d=8, batch=4, small_init=1e-2, seed=0), ("plain", "residual"))
    >>> [r.block for r in results], sorted(results[0].metrics)[:2]
    (['plain', 'residual'], ['a1_grad_norm', 'loss'])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnexp.blocks import build, first_fc1
from cnnexp.config import config_dict


@dataclass(frozen=True)
class RunResult:
    """The metrics of one block on one configuration: one row of the results CSV."""

    block: str
    config: object  # RunConfig
    metrics: dict[str, float]

    def row(self) -> dict:
        """The CSV row: block, the configuration's axes, then the metrics."""
        return {"block": self.block, **config_dict(self.config), **self.metrics}


def draw(config, shapes: list[torch.Size]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Seed, then draw x and one small_init-scaled Gaussian tensor per parameter shape, in that order."""
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, config.d)  # (batch, d)
    weights = [config.small_init * torch.randn(shape) for shape in shapes]
    return x, weights


def probe(config, blocks: tuple[str, ...]) -> list[RunResult]:
    """Run every named block on one configuration and return its metrics, one RunResult per block."""
    nets = {name: build(name, config.d) for name in blocks}
    shapes = [p.shape for p in next(iter(nets.values())).parameters()]
    x, weights = draw(config, shapes)
    return [RunResult(name, config, measure(net, x, weights)) for name, net in nets.items()]


def measure(net: nn.Module, x: torch.Tensor, weights: list[torch.Tensor]) -> dict[str, float]:
    """Load the weights into net, backpropagate loss = mean(net(x)**2) and return the study's metrics."""
    with torch.no_grad():
        for p, w in zip(net.parameters(), weights, strict=True):
            p.copy_(w)
    x = x.clone().requires_grad_(True)

    captured: dict[str, torch.Tensor] = {}

    def hook_a1(module, inputs, a1):  # a1 = fc1(x), (batch, d)
        a1.register_hook(lambda grad: captured.__setitem__("a1", grad.detach()))

    handle = first_fc1(net).register_forward_hook(hook_a1)
    try:
        loss = net(x).pow(2).mean()
    finally:
        handle.remove()
    loss.backward()

    params = list(net.parameters())
    return {
        "loss": float(loss.detach()),
        "x_grad_norm": float(x.grad.norm()),
        "a1_grad_norm": float(captured["a1"].norm()),
        "w_norm": l2(p.detach() for p in params),
        "param_grad_norm": l2(p.grad for p in params),
    }


def l2(tensors) -> float:
    """The L2 norm of several tensors taken together, summed in double precision as the notebook does."""
    return math.sqrt(sum(float(t.pow(2).sum()) for t in tensors))
