"""Benchmark: a whole `cnnexp sweep --per-layer` of a grid of networks against a hand-written loop.

    .venv/bin/python bench/bench_nets.py                 (or: .venv/bin/python bench/bench_nets.py --repeats 5)

(a) Whole process, on a ResNet-20 grid (CIFAR input 3x32x32, batch 16; init small at small_init 0.1 and 0.01,
    and kaiming; bn on and off; 4 seeds; the network and its plain twin: 48 runs): `python hand_loop.py`, the
    loop a researcher writes (one process, torch.set_num_threads(1): per configuration and block, build the
    modules, seed, draw, forward with hooks on every layer, backward, the statistics, both CSVs written as it
    goes; written out below) against `cnnexp sweep` with its defaults (every core) and with --workers 1.
    Each figure is the median of interleaved runs, reported as a ratio to the hand loop measured in the same run.

The machine is noisy (2 cores, shared): read the ratios, not the seconds, and run it twice.
"""
from __future__ import annotations

from timing import report_against_hand_loop  # bench/timing.py: this script's folder is on sys.path

GRID = """
name: bench-nets
net: resnet20
sweep:
  batch: [16]
  init: [small, kaiming]
  small_init: [1.0e-1, 1.0e-2]
  bn: [on, off]
  seed: [0, 1, 2, 3]
"""

# The baseline: ResNet-20 and its plain twin written by hand, hooks on every layer, the same two files.
HAND_LOOP = r'''
import csv, itertools, math, sys
import torch
from torch import nn

torch.set_num_threads(1)

class Block(nn.Module):
    def __init__(self, c_in, c_out, stride, bn, skips):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
        self.branch = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), norm(c_out), nn.ReLU(),
                                    nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), norm(c_out))
        self.shortcut = None
        if skips and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm(c_out))
        self.skips = skips
    def forward(self, x):
        out = self.branch(x)
        if self.skips:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return out

def resnet20(bn, skips):
    norm = nn.BatchNorm2d(16) if bn else nn.Identity()
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), norm, nn.ReLU()]
    c = 16
    for stage, width in enumerate((16, 32, 64)):
        for i in range(3):
            layers += [Block(c, width, 2 if stage and not i else 1, bn, skips), nn.ReLU()]
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)

def stats(t):
    t = t.detach().double()
    u = t if t.ndim > 2 else t[:, :, None]
    dims = (0, *range(2, u.ndim))
    mean = u.mean(dim=dims, keepdim=True)
    return float(mean.square().mean()), float((u - mean).square().mean())

def run(block, batch, init, small_init, bn, seed):
    full = resnet20(bn, True)
    torch.manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        for m in full.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                for p in (m.weight, m.bias):
                    if p is not None:
                        s = small_init if init == "small" else (math.sqrt(2 / fan_in) if p is m.weight else 0.0)
                        p.copy_(s * torch.randn_like(p))
    net = full
    if block == "plain":
        net = resnet20(bn, False)
        net.load_state_dict(full.state_dict(), strict=False)
    outputs = []
    leaves = [m for m in net.modules() if not list(m.children()) or isinstance(m, Block)]
    def keep(m, i, o):
        o.retain_grad()
        outputs.append((m, o))
    hooks = [m.register_forward_hook(keep) for m in leaves]
    x = x.requires_grad_()
    out = net(x)
    for h in hooks:
        h.remove()
    loss = out.pow(2).mean()
    loss.backward()
    params = list(net.parameters())
    metrics = [float(loss.detach()), float(x.grad.double().norm()),
               math.sqrt(sum(float(p.detach().double().square().sum()) for p in params)),
               math.sqrt(sum(float(p.grad.double().square().sum()) for p in params))]
    rows = []
    for m, o in outputs:
        sq, var = stats(o)
        own = list(m.parameters(recurse=False))
        rows.append([type(m).__name__, sq, var, float(o.grad.double().norm()) if o.grad is not None else 0.0,
                     math.sqrt(sum(float(p.detach().double().square().sum()) for p in own)) if own else "",
                     math.sqrt(sum(float(p.grad.double().square().sum()) for p in own)) if own else ""])
    return metrics, rows

with open(sys.argv[1], "w", newline="") as f, open(sys.argv[2], "w", newline="") as g:
    w, v = csv.writer(f), csv.writer(g)
    w.writerow(["block", "batch", "init", "small_init", "bn", "seed", "loss", "x_grad_norm", "w_norm",
                "param_grad_norm"])
    v.writerow(["block", "batch", "init", "small_init", "bn", "seed", "layer", "act_sq_mean", "act_var",
                "out_grad_norm", "weight_norm", "weight_grad_norm"])
    inits = [("small", 0.1), ("small", 0.01), ("kaiming", "")]
    for (init, small_init), bn, seed in itertools.product(inits, [True, False], range(4)):
        for block in ("plain", "residual"):
            metrics, rows = run(block, 16, init, small_init or 0.0, bn, seed)
            config = [block, 16, init, small_init, "on" if bn else "off", seed]
            for row in rows:
                v.writerow([*config, *row])
            w.writerow([*config, *metrics])
            f.flush()
            g.flush()
'''


def main() -> None:
    sweeps = {"cnnexp sweep": ["--per-layer", "l.csv"],
              "cnnexp sweep --workers 1": ["--per-layer", "l.csv", "--workers", "1"]}
    report_against_hand_loop(__doc__.splitlines()[0], GRID, HAND_LOOP, sweeps,
                             "48 runs of ResNet-20 (3x32x32, batch 16)", 28)


if __name__ == "__main__":
    main()
