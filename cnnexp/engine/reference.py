"""The reference engine (`--engine reference`): one configuration after another, with modules and hooks.

This is the notebook's `run_once`, done once per configuration for every block; the batched engine is proved
equal to it:

    torch.manual_seed(seed)
    x = randn(batch, d)                              # requires grad
    each Linear weight, block by block, fc1 then fc2  <-  small_init * randn_like(w)
    loss = out.pow(2).mean();  loss.backward()
    then, for steps > 0: the target y, and torch.optim.SGD for `steps` updates of loss = mean((out - y)^2)

The draw happens once, in float32, and is converted to the run's dtype and copied into each block's network, so
all blocks of one configuration see identical x and weights by construction, and a float64 run starts from the
same numbers as a float32 one. Gradients are captured by hooks on each block's a1 = fc1(input) and output.
This is the readable reference; every metric is taken by cnnexp.norms, the one underflow-free path all engines
share.

    >>> from cnnexp.config import RunConfig, Task
    >>> results = probe(RunConfig(d=8, batch=4, small_init=1e-2, seed=0, depth=2), ("plain", "residual"))
    >>> [r.block for r in results], len(results[0].layers)
    (['plain', 'residual'], 2)
    >>> [r.block for r in run_reference([Task(RunConfig(d=4, batch=2), ("plain",))])]
    ['plain']
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cnnexp.blocks import DTYPES, PlainBlock, build, fc1_of, linear_weights
from cnnexp.config import RunConfig, Task
from cnnexp.engine.result import Metrics, RunResult, curve_steps, report_step, run_metrics
from cnnexp.norms import cosine, mean_square, norm
from cnnexp.schema import FIT_FRACTION, TEACHER_TARGETS


def run_reference(tasks: Sequence[Task], device: str = "cpu", layers: bool = True,
                  curve: int | None = None, checkpoints: str | None = None) -> list[RunResult]:
    """Probe (and train, for steps > 0) each task in turn; one RunResult per configuration and block, in task
    order."""
    return [result for config, blocks in tasks for result in probe(config, blocks, device, curve)]


def draw(config: RunConfig, shapes: Sequence[torch.Size]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Seed, then draw x and one small_init-scaled Gaussian per weight shape, in float32, in that order."""
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, config.d, dtype=torch.float32)  # (batch, d)
    weights = [config.weight_std * torch.randn(shape, dtype=torch.float32) for shape in shapes]
    return x, weights


def probe(config: RunConfig, blocks: Sequence[str], device: str = "cpu", curve: int | None = None) -> list[RunResult]:
    """Run every named block kind on one configuration and return one RunResult per block kind.

    With steps > 0 each network trains (`train`); `curve` asks for the curve file's steps (see
    cnnexp.engine.result.curve_steps).
    """
    nets = {name: build(name, config).to(device) for name in blocks}
    shapes = [w.shape for w in linear_weights(next(iter(nets.values())))]
    x, weights = draw(config, shapes)  # on the CPU generator, whatever the device
    teacher = draw_teacher(config)  # after the student's draw, so the student is the notebook's
    dtype = DTYPES[config.dtype]
    x, weights = x.to(device, dtype), [w.to(device, dtype) for w in weights]
    y = target(config, x, teacher.to(device, dtype) if teacher is not None else None)
    record = curve_steps(config.steps, curve)
    return [train(name, net, config, x, weights, y, record) for name, net in nets.items()]


def draw_teacher(config: RunConfig) -> nn.Module | None:
    """For a teacher target, the teacher T2 relu(T1 x): T1, then T2, each randn(d, d) / sqrt(d) in float32."""
    if config.target not in TEACHER_TARGETS:
        return None
    t1, t2 = (torch.randn(config.d, config.d, dtype=torch.float32) / math.sqrt(config.d) for _ in range(2))
    teacher = PlainBlock(config.d, "relu")  # built after the draw: its default init draws from the generator too
    with torch.no_grad():
        for w, value in zip(linear_weights(teacher), (t1, t2), strict=True):
            w.copy_(value)
    return teacher


def target(config: RunConfig, x: torch.Tensor, teacher: nn.Module | None) -> torch.Tensor | None:
    """The target y of the loss mean((out - y)^2): None for zero (the notebook's mean(out^2)), x, or the
    teacher's output, alone or added to x."""
    if config.target == "zero":
        return None
    with torch.no_grad():
        if config.target == "identity":
            return x.clone()
        assert teacher is not None  # (a teacher target: draw_teacher drew it)
        taught: torch.Tensor = teacher(x)
        return taught if config.target == "teacher_plain" else x + taught


def train(name: str, net: nn.Sequential, config: RunConfig, x: torch.Tensor, weights: Sequence[torch.Tensor],
          y: torch.Tensor | None, record: Sequence[int]) -> RunResult:
    """Load the weights, then `config.steps` updates of torch.optim.SGD (full batch, no momentum, no weight
    decay), measuring with `measure` at every step: the metrics at the last step, the initial loss,
    steps_to_fit and the recorded steps' metrics."""
    with torch.no_grad():
        for w, value in zip(linear_weights(net), weights, strict=True):
            w.copy_(value)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr)
    threshold = FIT_FRACTION * one(mean_square, y) if y is not None else None
    curve: list[Metrics] = []
    initial_loss: float | None = None
    steps_to_fit: int | None = None
    for s in range(config.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        metrics, layers = measure(net, x, y)
        initial_loss = metrics["loss"] if s == 0 else initial_loss
        if threshold is not None and steps_to_fit is None and metrics["loss"] <= threshold:
            steps_to_fit = s
        if s in record:
            curve.append({"step": s, **metrics})
        report_step(s, config.steps)
        if s < config.steps:
            optimizer.step()
    return RunResult(name, config, run_metrics(config, metrics, initial_loss, steps_to_fit), tuple(layers),
                     tuple(curve))


def measure(net: nn.Sequential, x: torch.Tensor,
            y: torch.Tensor | None = None) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Backpropagate loss = mean((net(x) - y)**2) (mean(net(x)**2) when y is None) into the parameters' .grad
    and return (metrics, per-layer metrics)."""
    x = x.clone().requires_grad_(True)

    grads: dict[tuple[str, int], torch.Tensor] = {}  # ("a1" | "out", block index) -> gradient

    def capture(kind: str, index: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def on_forward(module: nn.Module, inputs: object, output: torch.Tensor) -> None:  # output: (batch, d)
            output.register_hook(  # type: ignore[no-untyped-call]
                lambda grad: grads.__setitem__((kind, index), grad.detach()))
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
    diff: torch.Tensor = out if y is None else out - y
    diff.pow(2).mean().backward()  # type: ignore[no-untyped-call]

    params = list(net.parameters())
    out_grad = grads[("out", len(net) - 1)]
    metrics = {
        "loss": one(mean_square, diff.detach()),
        "x_grad_norm": one(norm, _grad(x)),
        "a1_grad_norm": one(norm, grads[("a1", 0)]),
        "w_norm": one(norm, *params),
        "param_grad_norm": one(norm, *(p.grad for p in params if p.grad is not None)),
        "cos_x_out": one(cosine, _grad(x), out_grad),
    }
    layers = []
    for i, block in enumerate(net):
        w1, w2 = linear_weights(block)
        layers.append({
            "a1_grad_norm": one(norm, grads[("a1", i)]),
            "fc1_grad_norm": one(norm, _grad(w1)),
            "fc2_grad_norm": one(norm, _grad(w2)),
            "out_grad_norm": one(norm, grads[("out", i)]),
        })
    return metrics, layers


def one(metric: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> float:
    """A cnnexp.norms metric of one run's tensors (the norms work on a leading batch dimension)."""
    return float(metric(*(t.detach().unsqueeze(0) for t in tensors))[0])


def _grad(t: torch.Tensor) -> torch.Tensor:
    if t.grad is None:
        raise ValueError("no gradient reached this tensor")  # (the loss depends on every input and weight)
    return t.grad
