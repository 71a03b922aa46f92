"""Benchmark: time per training step of the batched engine against the floor, the same matmuls and updates by hand.

    .venv/bin/python bench/bench_train.py

For a stack of B configurations of one shape (plain and residual blocks, depth 2, relu, teacher_residual target):

    floor      forward with torch.bmm, the backward written out as matmuls (no autograd), W -= lr * grad, and
               the loss per configuration: the least any implementation of the definition does per step
    batched    cnnexp.engine.train.fit: autograd on the stack, the float64 loss per step for steps_to_fit, the
               metrics at steps 0 and the last
    reference  the reference engine (modules and torch.optim.SGD, metrics at every step), one configuration at a
               time: timed on 4 configurations and scaled to B (its cost is linear in B)

Each is run for STEPS steps; the time per step is over the whole stack, both blocks. Repeats are interleaved and
medians reported, as ratios against the floor measured in the same run, because this machine is noisy.
"""
from __future__ import annotations

import torch
from timing import interleaved  # bench/timing.py: this script's folder is on sys.path

from cnnexp.blocks import DTYPES
from cnnexp.config import RunConfig
from cnnexp.engine.kernels import draw_stack
from cnnexp.engine.reference import run_reference
from cnnexp.engine.train import descend, targets

STEPS = 100
BLOCKS = ("plain", "residual")


def stack(d: int, batch: int, b: int, dtype: str):
    configs = [RunConfig(d=d, batch=batch, small_init=1e-2, seed=s, depth=2, dtype=dtype, steps=STEPS, lr=0.4,
                         target="teacher_residual") for s in range(b)]
    x, weights, teachers = draw_stack(configs)
    t = DTYPES[dtype]
    x, weights = x.to(t), [w.to(t) for w in weights]
    y = targets(configs, x, [w.to(t) for w in teachers])
    lr = torch.full((b, 1, 1), 0.4, dtype=t)
    return configs, x, weights, y, lr


def floor(x, weights, y, lr) -> list[torch.Tensor]:
    """STEPS steps of both blocks by hand: bmm forward, bmm backward, in-place updates, the loss per configuration.
    Returns each block's loss at the last step (B,)."""
    n = x.shape[1] * x.shape[2]
    last = []
    for residual in (False, True):
        ws = [w.clone() for w in weights]
        for _ in range(STEPS):
            h, saved = x, []
            for w1, w2 in zip(ws[0::2], ws[1::2]):
                a1 = torch.bmm(h, w1.transpose(1, 2))
                r = torch.relu(a1)
                f = torch.bmm(r, w2.transpose(1, 2))
                saved.append((h, a1, r))
                h = h + f if residual else f
            diff = h - y
            loss = diff.square().mean(dim=(1, 2))  # the loss, for steps_to_fit
            g = diff * (2.0 / n)
            grads = []
            for (inp, a1, r), w1, w2 in zip(reversed(saved), reversed(ws[0::2]), reversed(ws[1::2])):
                gw2 = torch.bmm(g.transpose(1, 2), r)
                ga1 = torch.bmm(g, w2) * (a1 > 0)
                gw1 = torch.bmm(ga1.transpose(1, 2), inp)
                g = torch.bmm(ga1, w1) + (g if residual else 0)
                grads[:0] = [gw1, gw2]
            for w, gw in zip(ws, grads):
                w.sub_(lr * gw)
        last.append(loss)  # at the weights before the last update, as fit's step STEPS - 1
    return last


def batched(x, weights, y, lr, record=()) -> list:
    b = x.shape[0]
    return [descend(block, "relu", x, weights, [torch.zeros(b, 1, 1, dtype=x.dtype)] * 2, y=y, lr=lr, steps=STEPS,
                record=record, layers=False, has_target=[True] * b) for block in BLOCKS]


def check(x, weights, y, lr) -> None:
    """The floor computes the same thing: its loss before the last update is fit's at step STEPS - 1."""
    trained = batched(x, weights, y, lr, record=[STEPS - 1])
    for by_hand, t in zip(floor(x, weights, y, lr), trained):
        assert torch.allclose(by_hand.double(), t.curve[STEPS - 1][:, 0], rtol=1e-4), (by_hand, t.curve)


def main() -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; {STEPS} steps of plain and residual, depth 2; "
          "median of interleaved repeats; time per step of the whole stack (both blocks)\n")
    print(f"{'d x batch':>10} {'B':>3} {'dtype':>8} {'floor ms':>9} {'batched ms':>11} {'batched/floor':>14} "
          f"{'reference ms':>13} {'reference/floor':>16}")
    for d, batch, b in ((24, 40, 24), (64, 256, 8), (256, 64, 4)):
        for dtype in ("float64", "float32"):
            configs, x, weights, y, lr = stack(d, batch, b, dtype)
            check(x, weights, y, lr)
            args = (x, weights, y, lr)
            cases = {"floor": lambda args=args: floor(*args), "batched": lambda args=args: batched(*args)}
            if d == 24:
                cases["reference"] = lambda configs=configs: run_reference([(c, BLOCKS) for c in configs[:4]])
            m = {k: v / STEPS for k, v in interleaved(cases, 5).items()}
            if "reference" in m:
                m["reference"] *= b / 4
            ref = (f"{m['reference'] * 1e3:>13.3f} {m['reference'] / m['floor']:>16.1f}" if "reference" in m
                   else f"{'':>13} {'':>16}")
            print(f"{d:>5} x {batch:<3} {b:>3} {dtype:>8} {m['floor'] * 1e3:>9.3f} {m['batched'] * 1e3:>11.3f} "
                  f"{m['batched'] / m['floor']:>14.2f} {ref}")


if __name__ == "__main__":
    main()
