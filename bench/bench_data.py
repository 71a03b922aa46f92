"""Benchmark: a whole `cnnexp sweep --workers 1 --curve` training networks on digits against a hand-written loop.

    .venv/bin/python bench/bench_data.py                 (or: .venv/bin/python bench/bench_data.py --repeats 5)

Whole process, on a small digits grid (ResNet-8 and ResNet-20 at input 1x8x8, the network and its plain twin,
2 seeds, 4 epochs of batch 64, SGD momentum 0.9, cosine; an evaluation pass over train and test after every
epoch: 8 runs). The baseline, `python hand_loop.py`, is the loop a researcher writes with the same modules
(cnnexp.build_net), one torch thread: per run, seed, draw, then epochs of seeded shuffles, SGD steps, the
evaluations, a curve row per epoch and a results row, each written as it comes. Against it: `cnnexp sweep
--workers 1 --curve` as a user types it (one process; a run there takes the cores of its process, see
docs/data.md), with --threads 1 (the same single thread as the hand loop), and with its default workers (a
one-thread process per core). Checkpoints are written after every epoch by cnnexp, not by the hand loop. Each
figure is the median of interleaved runs, reported as a ratio
to the hand loop measured in the same run.

The machine is noisy (2 cores, shared): read the ratios, not the seconds, and run it twice.
"""
from __future__ import annotations

from timing import report_against_hand_loop  # bench/timing.py: this script's folder is on sys.path

GRID = """
name: bench-data
net: [resnet8, resnet20]
sweep:
  data: digits
  input: 1x8x8
  init: kaiming
  epochs: 4
  batch: 64
  lr: 0.05
  schedule: cosine
  seed: [0, 1]
"""

# The baseline: the same modules (cnnexp.build_net), the draw and the steps of version 2 written out by hand.
HAND_LOOP = r'''
import csv, math, sys
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from sklearn.datasets import load_digits
from cnnexp import build_net

torch.set_num_threads(1)
digits = load_digits()
x, y = digits.images[:, None] / 16.0, digits.target
test = np.arange(len(y)) % 5 == 4
mean, sd = x[~test].mean(), x[~test].std()
x = torch.from_numpy(((x - mean) / sd).astype(np.float32))
y = torch.from_numpy(y)
x_train, y_train, x_test, y_test = x[~test], y[~test], x[test], y[test]

def evaluate(net, x, y):
    net.eval()
    with torch.no_grad():
        out = net(x)
        return float(F.cross_entropy(out, y)), int((out.argmax(1) == y).sum()) / len(y)

def run(name, skips, seed, epochs=4, batch=64, lr=0.05, curve=None, head=()):
    full = build_net(name, input="1x8x8")
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in full.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(math.sqrt(2 / fan_in) * torch.randn_like(m.weight))
                if m.bias is not None:
                    m.bias.copy_(0.0 * torch.randn_like(m.bias))
    net = full
    if not skips:
        net = build_net(name, input="1x8x8", skips=False)
        mine = net.state_dict().keys()
        net.load_state_dict({k: v for k, v in full.state_dict().items() if k in mine})
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    order = torch.Generator().manual_seed(seed)
    n = len(y_train)
    per_epoch = -(-n // batch)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=order)
        net.train()
        total, correct = 0.0, 0
        for i in range(per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            for g in opt.param_groups:
                g["lr"] = lr * (1 + math.cos(math.pi * ((epoch - 1) * per_epoch + i) / (epochs * per_epoch))) / 2
            xb = x_train[idx].requires_grad_(i == per_epoch - 1)
            out = net(xb)
            loss = F.cross_entropy(out, y_train[idx])
            opt.zero_grad()
            loss.backward()
            if i == per_epoch - 1:
                grad = math.sqrt(sum(float(p.grad.double().square().sum()) for p in net.parameters()))
                x_grad = float(xb.grad.double().norm())
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((out.detach().argmax(1) == y_train[idx]).sum())
        train = evaluate(net, x_train, y_train)
        held = evaluate(net, x_test, y_test)
        curve.writerow([*head, epoch, total / n, correct / n, *train, *held, grad, x_grad])
    return [*train, *held]

with open(sys.argv[1], "w", newline="") as f, open(sys.argv[2], "w", newline="") as g:
    w, c = csv.writer(f), csv.writer(g)
    w.writerow(["block", "net", "seed", "train_loss", "train_acc", "test_loss", "test_acc"])
    c.writerow(["block", "net", "seed", "epoch", "running_loss", "running_acc", "train_loss", "train_acc",
                "test_loss", "test_acc", "param_grad_norm", "x_grad_norm"])
    for name in ("resnet8", "resnet20"):
        for seed in (0, 1):
            for block in ("plain", "residual"):
                head = (block, name, seed)
                w.writerow([*head, *run(name, block == "residual", seed, curve=c, head=head)])
                f.flush()
                g.flush()
'''


def main() -> None:
    sweeps = {"cnnexp sweep": ["--curve", "c.csv"],
              "cnnexp sweep --workers 1": ["--curve", "c.csv", "--workers", "1"],
              "cnnexp sweep --workers 1 --threads 1": ["--curve", "c.csv", "--workers", "1", "--threads", "1"]}
    report_against_hand_loop(__doc__.splitlines()[0], GRID, HAND_LOOP, sweeps,
                             "8 runs of ResNet-8/20 on digits (4 epochs, an evaluation after each)", 38)


if __name__ == "__main__":
    main()
