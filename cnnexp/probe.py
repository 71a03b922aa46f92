"""Probe one configuration: draw x and small weights, run forward and backward, measure the gradients.

This is the notebook's `run_once`, done once per configuration for every block:

    torch.manual_seed(seed)
    x = randn(batch, d)                              # requires grad
    each Linear weight, block by block, fc1 then fc2  <-  small_init * randn_like(w)
    loss = out.pow(2).mean();  loss.backward()
    then, for steps > 0: the target y, and torch.optim.SGD for `steps` updates of loss = mean((out - y)^2)

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

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnexp.blocks import DTYPES, PlainBlock, build, fc1_of, linear_weights
from cnnexp.config import config_dict, trains
from cnnexp.norms import cosine, mean_square, norm
from cnnexp.schema import FIT_FRACTION, TEACHER_TARGETS


@dataclass(frozen=True)
class RunResult:
    """The metrics of one block kind on one configuration: one row of the results CSV, plus one row per
    block index for the per-layer file."""

    block: str
    config: object  # RunConfig
    metrics: dict[str, float]
    layers: tuple[dict[str, float], ...] = ()  # per block index, 0 next to the input (at the last step)
    curve: tuple[dict[str, float], ...] = ()  # per recorded step: {"step": s, metric: value, ...}

    def row(self) -> dict:
        """The results CSV row: block, the configuration's axes, then the metrics (a run at init, in the file of
        a sweep that trains others, has initial_loss = loss and no steps_to_fit, by the definition)."""
        at_init = {"initial_loss": self.metrics["loss"], "steps_to_fit": None}
        return {"block": self.block, **config_dict(self.config), **at_init, **self.metrics}

    def layer_rows(self) -> list[dict]:
        """The per-layer rows: block, the configuration's axes, block_index, then the layer metrics."""
        head = {"block": self.block, **config_dict(self.config)}
        return [{**head, "block_index": i, **layer} for i, layer in enumerate(self.layers)]

    def curve_rows(self) -> list[dict]:
        """The curve rows: block, the configuration's axes, step, then the metrics at that step."""
        head = {"block": self.block, **config_dict(self.config)}
        return [{**head, **point} for point in self.curve]


def draw(config, shapes: list[torch.Size]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Seed, then draw x and one small_init-scaled Gaussian per weight shape, in float32, in that order."""
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, config.d, dtype=torch.float32)  # (batch, d)
    weights = [config.small_init * torch.randn(shape, dtype=torch.float32) for shape in shapes]
    return x, weights


def probe(config, blocks: tuple[str, ...], device: str = "cpu", curve: int | None = None) -> list[RunResult]:
    """Run every named block kind on one configuration and return one RunResult per block kind.

    With steps > 0 each network trains (`train`); `curve` asks for the curve file's steps (see
    cnnexp.engine.curve_steps).
    """
    nets = {name: build(name, config).to(device) for name in blocks}
    shapes = [w.shape for w in linear_weights(next(iter(nets.values())))]
    x, weights = draw(config, shapes)  # on the CPU generator, whatever the device
    teacher = draw_teacher(config)  # after the student's draw, so the student is the notebook's
    dtype = DTYPES[config.dtype]
    x, weights = x.to(device, dtype), [w.to(device, dtype) for w in weights]
    y = target(config, x, teacher.to(device, dtype) if teacher is not None else None)
    from cnnexp.engine import curve_steps

    record = curve_steps(config.steps, curve)
    return [train(name, net, config, x, weights, y, record) for name, net in nets.items()]


def draw_teacher(config) -> nn.Module | None:
    """For a teacher target, the teacher T2 relu(T1 x): T1, then T2, each randn(d, d) / sqrt(d) in float32."""
    if config.target not in TEACHER_TARGETS:
        return None
    t1, t2 = (torch.randn(config.d, config.d, dtype=torch.float32) / math.sqrt(config.d) for _ in range(2))
    teacher = PlainBlock(config.d, "relu")  # built after the draw: its default init draws from the generator too
    with torch.no_grad():
        for w, value in zip(linear_weights(teacher), (t1, t2), strict=True):
            w.copy_(value)
    return teacher


def target(config, x: torch.Tensor, teacher: nn.Module | None) -> torch.Tensor | None:
    """The target y of the loss mean((out - y)^2): None for zero (the notebook's mean(out^2)), x, or the
    teacher's output, alone or added to x."""
    if config.target == "zero":
        return None
    with torch.no_grad():
        if config.target == "identity":
            return x.clone()
        return teacher(x) if config.target == "teacher_plain" else x + teacher(x)


def train(name: str, net: nn.Sequential, config, x, weights, y, record) -> RunResult:
    """Load the weights, then `config.steps` updates of torch.optim.SGD (full batch, no momentum, no weight
    decay), measuring with `measure` at every step: the metrics at the last step, the initial loss,
    steps_to_fit and the recorded steps' metrics."""
    with torch.no_grad():
        for w, value in zip(linear_weights(net), weights, strict=True):
            w.copy_(value)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr)
    threshold = FIT_FRACTION * one(mean_square, y) if y is not None else None
    curve, initial_loss, steps_to_fit = [], None, None
    for s in range(config.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        metrics, layers = measure(net, x, y)
        initial_loss = metrics["loss"] if s == 0 else initial_loss
        if threshold is not None and steps_to_fit is None and metrics["loss"] <= threshold:
            steps_to_fit = s
        if s in record:
            curve.append({"step": s, **metrics})
        if s < config.steps:
            optimizer.step()
    return RunResult(name, config, run_metrics(config, metrics, initial_loss, steps_to_fit), tuple(layers),
                     tuple(curve))


def run_metrics(config, last: dict, initial_loss: float, steps_to_fit: int | None) -> dict:
    """A run's metrics, as every engine reports them: those at its last step and, for a configuration that
    trains, its initial loss and steps_to_fit (a configuration at init has exactly the study's metrics)."""
    if not trains(config):
        return dict(last)
    return {**last, "initial_loss": initial_loss, "steps_to_fit": steps_to_fit}


def measure(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor | None = None):
    """Backpropagate loss = mean((net(x) - y)**2) (mean(net(x)**2) when y is None) into the parameters' .grad
    and return (metrics, per-layer metrics)."""
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
    diff = out if y is None else out - y
    diff.pow(2).mean().backward()

    params = list(net.parameters())
    out_grad = grads[("out", len(net) - 1)]
    metrics = {
        "loss": one(mean_square, diff.detach()),
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
