"""Whole networks (docs/nets.md): the modules of a net file, the study's draw, and its metrics at init.

The definition (version 1), for one configuration:

    torch.manual_seed(seed);  x = randn(batch, *input)                          float32
    each conv/convT/linear parameter of the network *with* its skips, in file order (weight, then bias):
        p = scale * randn_like(p)       scale: small_init (init small), sqrt(2/fan_in) (kaiming weights),
                                        sqrt(2/(fan_in+fan_out)) (xavier weights), 0 (kaiming/xavier biases)
    zero_residual: the last bn of each residual branch gets weight 0; then everything to the run's dtype
    the plain twin takes the same tensors for every parameter it keeps
    forward in training mode (batch norm on batch statistics, dropout the identity), loss = mean(out^2), backward

Every metric goes through cnnexp.norms (no underflow); the per-layer statistics are taken in float64, scaled.

    >>> from cnnexp.config import RunConfig
    >>> from cnnexp.nets import net_from_items
    >>> net = net_from_items("demo", "16", [{"residual": ["linear:out=16,bias=false", "relu"]}])
    >>> [r.block for r in probe_net(RunConfig(net=net, batch=4), ("plain", "residual"))]
    ['plain', 'residual']
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from cnnexp.blocks import DTYPES
from cnnexp.config import RunConfig, Task
from cnnexp.data import load_data
from cnnexp.engine.reference import _grad, one
from cnnexp.engine.result import Metrics, RunResult
from cnnexp.engine.train_net import train
from cnnexp.nets import WEIGHTED, Block, NetSpec, Node, lay_out, load_net, net_from_items, walk
from cnnexp.norms import mean_square, norm
from cnnexp.schema import DATA_METRICS
from cnnexp.shapes.layers import Layer
from cnnexp.shapes.types import Shape, parse_input

_SIMPLE = {"identity": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
           "tanh": nn.Tanh, "silu": nn.SiLU, "hardswish": nn.Hardswish, "flatten": nn.Flatten}


def module(layer: Layer, shape_in: Shape) -> nn.Module:
    """The torch module of one parsed layer, on an input of `shape_in` (one sample). `inplace` is ignored:
    every layer writes a new tensor."""
    kind, c = layer.kind, shape_in[0]
    out, padding = layer.out or 0, layer.padding or (0, 0)  # (set wherever the kind takes them: cnnexp.shapes)
    if kind in _SIMPLE:
        made: nn.Module = _SIMPLE[kind]()
        return made
    if kind == "conv":
        same: Any = "same" if layer.padding is None else padding
        return nn.Conv2d(c, out, layer.kernel, layer.stride, same, layer.dilation, layer.groups, layer.bias)
    if kind == "convT":
        return nn.ConvTranspose2d(c, out, layer.kernel, layer.stride, padding, layer.output_padding,
                                  layer.groups, layer.bias, layer.dilation)
    if kind == "linear":
        return nn.Linear(c, out, layer.bias)
    if kind == "bn":
        norm_class = nn.BatchNorm1d if len(shape_in) == 1 else nn.BatchNorm2d
        return norm_class(c, eps=layer.eps, momentum=layer.momentum, affine=layer.affine)
    if kind == "maxpool":
        return nn.MaxPool2d(layer.kernel, layer.stride, padding, layer.dilation, ceil_mode=layer.ceil)
    if kind == "avgpool":
        return nn.AvgPool2d(layer.kernel, layer.stride, padding, ceil_mode=layer.ceil)
    if kind == "adaptiveavgpool":
        return nn.AdaptiveAvgPool2d(layer.size)
    if kind == "adaptivemaxpool":
        return nn.AdaptiveMaxPool2d(layer.size)
    if kind == "upsample":
        return nn.Upsample(scale_factor=tuple(float(s) for s in layer.scale), mode="nearest")
    if kind == "leakyrelu":
        return nn.LeakyReLU(layer.slope)
    if kind == "dropout":
        return nn.Dropout(layer.p)
    raise ValueError(f"no module for layer kind {kind!r}")  # (every kind of cnnexp.shapes.KINDS has one above)


def key(path: str) -> str:
    """A layer's name among the network's modules: its path with '/' for '.' (a module name has no dot)."""
    return path.replace(".", "/")


class Net(nn.Module):
    """A network laid out by `cnnexp.nets.lay_out`: one module per layer that runs, in file order (so
    `parameters()` are the file's layers in order, and a network built elsewhere loads into it by order).

    `forward(x, record)` returns the output; with a list as `record` it also appends, per layer and per
    residual block in the order they run, (node, output, branch output or None)."""

    def __init__(self, nodes: tuple[Node | Block, ...]):
        super().__init__()
        self.nodes = nodes
        self.layers = nn.ModuleDict({key(n.path): module(n.layer, n.shape_in) for n in walk(nodes)
                                     if isinstance(n, Node)})

    def forward(self, x: torch.Tensor, record: list[Any] | None = None) -> torch.Tensor:
        return self._through(self.nodes, x, record)

    def _through(self, nodes: tuple[Node | Block, ...], x: torch.Tensor, record: list[Any] | None) -> torch.Tensor:
        for node in nodes:
            if isinstance(node, Block):
                branch = self._through(node.branch, x, record)
                out = branch + (self._through(node.shortcut, x, record) if node.shortcut else x) \
                    if node.skip else branch
                if record is not None:
                    record.append((node, out, branch))
            else:
                out = self.layers[key(node.path)](x)
                if record is not None:
                    record.append((node, out, None))
            x = out
        return x


def build_net(spec_or_path: NetSpec | str | Path, *, skips: bool = True, bn: bool = True,
              input: str | None = None) -> Net:
    """The torch module of a net file (a path or a shipped name such as "resnet18", or a NetSpec): the network
    as written, or its plain twin (`skips=False`), with or without its batch norms. Its forward returns the
    output; its parameters are the file's layers in order (a layer's weight, then its bias; a residual block's
    branch before its shortcut; a repeat's passes in order) and its buffers batch norm's. Default init
    (PyTorch's own); the study draws its own (`draw`).

        >>> net = build_net("resnet18")
        >>> sum(p.numel() for p in net.parameters())
        11689512
    """
    spec = spec_or_path if isinstance(spec_or_path, NetSpec) else load_net(str(spec_or_path))
    shape = parse_input(input) if input is not None else spec.input
    if shape is None:
        raise ValueError(f"{spec.name}: the net file has no input; pass input='CxHxW'")
    return Net(lay_out(spec.items, shape, skips=skips, bn=bn))


def scale(config: RunConfig, name: str, weight: torch.Tensor) -> float:
    """The scale of one drawn tensor of a layer (`name`: weight or bias), by the configuration's init."""
    if config.init == "small":
        return config.weight_std
    if name == "bias":
        return 0.0
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    return math.sqrt(2 / fan_in) if config.init == "kaiming" else math.sqrt(2 / (fan_in + fan_out))


def draw(net: Net, config: RunConfig) -> None:
    """Fill the network's weighted layers (float32) from the seeded stream, in file order, then zero the
    last batch norm weight of each residual branch if the configuration asks for it."""
    with torch.no_grad():
        for node in walk(net.nodes):
            if isinstance(node, Node) and node.layer.kind in WEIGHTED:
                layer = net.layers[key(node.path)]
                weight = cast(torch.Tensor, layer.weight)
                for name in ("weight", "bias"):
                    p = getattr(layer, name)
                    if p is not None:
                        p.copy_(scale(config, name, weight) * torch.randn_like(p))
        if config.zero_residual:
            for block in (n for n in walk(net.nodes) if isinstance(n, Block)):
                norms = [n for n in walk(block.branch) if isinstance(n, Node) and n.layer.kind == "bn"]
                if norms and norms[-1].layer.affine:
                    cast(torch.Tensor, net.layers[key(norms[-1].path)].weight).zero_()


def run_net(tasks: Sequence[Task], device: str = "cpu", layers: bool = True, curve: int | None = None,
            checkpoints: str | None = None) -> list[RunResult]:
    """The engine of whole networks: each task in turn, one RunResult per configuration and block (a
    network on data trains first: cnnexp/engine/train_net.py, its checkpoints in the folder `checkpoints`)."""
    return [result for config, blocks in tasks for result in probe_net(config, blocks, device, layers, checkpoints)]


def networks(config: RunConfig, blocks: Sequence[str], device: str = "cpu") -> tuple[list[Net], torch.Tensor | None]:
    """Each block's network from one draw (the network as written for `residual`, its plain twin for `plain`,
    which takes the same tensors), in the run's dtype on `device`; and the random x (None on data: x is not
    drawn)."""
    spec, shape = config.net, config.sample_shape
    assert isinstance(spec, NetSpec)  # (a configuration of the nets study)
    bn = config.bn == "on"
    full = Net(lay_out(spec.items, shape, bn=bn))
    torch.manual_seed(config.seed)
    x = None if config.on_data else torch.randn(config.batch, *shape, dtype=torch.float32)
    draw(full, config)
    dtype = DTYPES[config.dtype]
    full.to(device, dtype)
    nets = []
    for block in blocks:
        net = full
        if block == "plain":
            net = Net(lay_out(spec.items, shape, skips=False, bn=bn)).to(device, dtype)
            mine = net.state_dict().keys()
            net.load_state_dict({k: v for k, v in full.state_dict().items() if k in mine})
        nets.append(net)
    return nets, (x.to(device, dtype) if x is not None else None)


def probe_net(config: RunConfig, blocks: Sequence[str], device: str = "cpu", layers: bool = True,
              checkpoints: str | None = None) -> list[RunResult]:
    """The study on one configuration of a network: the network as written (`residual`) and its plain twin
    (`plain`), from the same draw. On random x: loss mean(out^2). On a data set (docs/data.md): the
    cross-entropy on the first `batch` training samples, at init (epochs 0), or after training (its metrics
    and curve; the per-layer rows measured at the end)."""
    nets, x = networks(config, blocks, device)
    labels = None
    if config.on_data:  # the first `batch` training samples (taken before any copy: a data set may be large)
        data = load_data(config.data)
        x = torch.from_numpy(data.x_train[:config.batch]).to(device, DTYPES[config.dtype])
        labels = torch.from_numpy(data.y_train[:config.batch]).to(device)
    assert x is not None
    results = []
    for block, net in zip(blocks, nets):
        metrics: Metrics = {}
        curve: tuple[Metrics, ...] = ()
        if config.trains_on_data:
            metrics, curve = train(config, block, net, device, checkpoints)
        if layers or not config.trains_on_data:
            study, rows = measure(net, x, layers, labels)
            if not config.trains_on_data:
                metrics = {**study, **(dict.fromkeys(DATA_METRICS) if config.on_data else {})}
        results.append(RunResult(block, config, metrics, tuple(rows) if layers else (), curve))
    return results


def measure(net: Net, x: torch.Tensor, layers: bool = True,
            labels: torch.Tensor | None = None) -> tuple[Metrics, list[Metrics]]:
    """Forward in training mode (dropout the identity), loss = mean(out^2) (with `labels`: the cross-entropy
    on them), backward; the whole-network metrics and, with `layers`, one row per layer and block."""
    net.train()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.eval()  # the identity: its draw would disturb the stream
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    record: list[Any] = []
    out = net(x, record)
    for _, output, _ in record:
        if output.requires_grad:
            output.retain_grad()
    loss = out.pow(2).mean() if labels is None else F.cross_entropy(out, labels)
    loss.backward()
    params = list(net.parameters())
    metrics = {
        "loss": one(mean_square, out.detach()) if labels is None else float(loss.detach()),
        "x_grad_norm": one(norm, _grad(x)),
        "w_norm": one(norm, *params),
        "param_grad_norm": one(norm, *(p.grad for p in params if p.grad is not None)),
    }
    return metrics, ([_row(net, *entry) for entry in record] if layers else [])


def _row(net: Net, node: Node | Block, output: torch.Tensor, branch: torch.Tensor | None) -> Metrics:
    """One per-layer row: the layer's (or block's) path and spec, its output's statistics and gradient norm,
    its parameters' norms (layers that have any) and the branch's variance (blocks)."""
    sq_mean, var = channel_stats(output)
    row: Metrics = {"path": node.path, "layer": "residual" if isinstance(node, Block) else node.layer.spec,
                    "act_sq_mean": sq_mean, "act_var": var,
                    "out_grad_norm": one(norm, output.grad) if output.grad is not None else 0.0,
                    "weight_norm": None, "weight_grad_norm": None, "branch_var": None}
    if isinstance(node, Block):
        assert branch is not None
        row["branch_var"] = channel_stats(branch)[1]
    else:
        params = list(net.layers[key(node.path)].parameters())
        if params:
            row["weight_norm"] = one(norm, *params)
            row["weight_grad_norm"] = one(norm, *(_grad(p) for p in params))
    return row


def channel_stats(t: torch.Tensor) -> tuple[float, float]:
    """Brock et al. (2021)'s signal propagation statistics of a layer's output (batch, C, ...) or (batch, F):
    the mean over channels of the squared channel mean, and of the channel variance (population), each over
    batch and space. Taken in float64, where no square of a float32 number can underflow (1e-45 squares to
    1e-90); a float64 output beyond 1e+-150 is scaled by its largest magnitude first."""
    u = t.detach().to(torch.float64)
    scale = 1.0
    if t.dtype == torch.float64 and u.numel():
        largest = float(u.abs().max())
        if largest > 0 and math.isfinite(largest) and not SAFE[0] < largest < SAFE[1]:
            u, scale = u / largest, largest
    over = (0, *range(2, u.ndim))  # batch and space: one mean and variance per channel (two passes)
    mean = u.mean(dim=over, keepdim=True)
    var = (u - mean).square().mean(dim=over)
    return float(mean.square().mean()) * scale * scale, float(var.mean()) * scale * scale


SAFE = (1e-150, 1e150)  # float64 magnitudes whose squares, and sums of squares, stay normal numbers


__all__ = ["Net", "build_net", "draw", "probe_net", "run_net", "channel_stats", "net_from_items"]
