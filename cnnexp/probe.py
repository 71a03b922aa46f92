"""Probe one configuration: draw x and small weights, run forward and backward, measure the gradients.

This is the notebook's `run_once`, done once per configuration for every block:

    torch.manual_seed(seed)
    x = randn(batch, d)                              # requires grad
    each Linear weight, block by block, fc1 then fc2  <-  small_init * randn_like(w)
    loss = out.pow(2).mean();  loss.backward()

The draw happens once, in float32, and is converted to the run's dtype and copied into each block's network, so
all blocks of one configuration see identical x and weights by construction, and a float64 run starts from the
same numbers as a float32 one. Gradients are captured by hooks on each block's a1 = fc1(input) and output.
This is the readable reference (`--engine reference`); every metric is taken by cnnexp.norms, the one
underflow-free path all engines share.

    >>> from cnnexp.config import RunConfig
    >>> results = probe(RunConfig(d=8, batch=4, small_init=1e-2, seed=0, depth=2), ("plain", "residual"))
    >>> [r.block for r in results], len(results[0].layers)
    (['plain', 'residual'], 2)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnexp.blocks import DTYPES, build, fc1_of, linear_weights
from cnnexp.config import config_dict
from cnnexp.norms import cosine, mean_square, norm


@dataclass(frozen=True)
class RunResult:
    """The metrics of one block kind on one configuration: one row of the results CSV, plus one row per
    block index for the per-layer file."""

    block: str
    config: object  # RunConfig
    metrics: dict[str, float]
    layers: tuple[dict[str, float], ...] = ()  # per block index, 0 next to the input

    def row(self) -> dict:
        """The results CSV row: block, the configuration's axes, then the metrics."""
        return {"block": self.block, **config_dict(self.config), **self.metrics}

    def layer_rows(self) -> list[dict]:
        """The per-layer rows: block, the configuration's axes, block_index, then the layer metrics."""
        head = {"block": self.block, **config_dict(self.config)}
        return [{**head, "block_index": i, **layer} for i, layer in enumerate(self.layers)]


def draw(config, shapes: list[torch.Size]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Seed, then draw x and one small_init-scaled Gaussian per weight shape, in float32, in that order."""
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, config.d, dtype=torch.float32)  # (batch, d)
    weights = [config.small_init * torch.randn(shape, dtype=torch.float32) for shape in shapes]
    return x, weights


def probe(config, blocks: tuple[str, ...], device: str = "cpu") -> list[RunResult]:
    """Run every named block kind on one configuration and return one RunResult per block kind."""
    nets = {name: build(name, config).to(device) for name in blocks}
    shapes = [w.shape for w in linear_weights(next(iter(nets.values())))]
    x, weights = draw(config, shapes)  # on the CPU generator, whatever the device
    dtype = DTYPES[config.dtype]
    x, weights = x.to(device, dtype), [w.to(device, dtype) for w in weights]
    results = []
    for name, net in nets.items():
        metrics, layers = measure(net, x, weights)
        results.append(RunResult(name, config, metrics, tuple(layers)))
    return results


def measure(net: nn.Sequential, x: torch.Tensor, weights: list[torch.Tensor]):
    """Load the weights, backpropagate loss = mean(net(x)**2) and return (metrics, per-layer metrics)."""
    with torch.no_grad():
        for w, value in zip(linear_weights(net), weights, strict=True):
            w.copy_(value)
    x = x.clone().requires_grad_(True)

    grads: dict[tuple[str, int], torch.Tensor] = {}  # ("a1" | "out", block index) -> gradient

    def capture(kind: str, index: int):
        def on_forward(module, inputs, output):  # output: (batch, d)
            output.register_hook(lambda grad: grads.__setitem__((kind, index), grad.detach()))
        return on_forward

    handles = []
    for i, block in enumerate(net):
        handles.append(fc1_of(block).register_forward_hook(capture("a1", i)))
        handles.append(block.register_forward_hook(capture("out", i)))
    try:
        out = net(x)
    finally:
        for h in handles:
            h.remove()
    out.pow(2).mean().backward()

    params = list(net.parameters())
    out_grad = grads[("out", len(net) - 1)]
    metrics = {
        "loss": one(mean_square, out.detach()),
        "x_grad_norm": one(norm, x.grad),
        "a1_grad_norm": one(norm, grads[("a1", 0)]),
        "w_norm": one(norm, *params),
        "param_grad_norm": one(norm, *(p.grad for p in params if p.grad is not None)),
        "cos_x_out": one(cosine, x.grad, out_grad),
    }
    layers = []
    for i, block in enumerate(net):
        w1, w2 = linear_weights(block)
        layers.append({
            "a1_grad_norm": one(norm, grads[("a1", i)]),
            "fc1_grad_norm": one(norm, w1.grad),
            "fc2_grad_norm": one(norm, w2.grad),
            "out_grad_norm": one(norm, grads[("out", i)]),
        })
    return metrics, layers


def one(metric, *tensors: torch.Tensor) -> float:
    """A cnnexp.norms metric of one run's tensors (the norms work on a leading batch dimension)."""
    return float(metric(*(t.detach().unsqueeze(0) for t in tensors))[0])
