"""Benchmark: a whole `cnnexp sweep` against the notebook's loop, per engine and worker count.

    .venv/bin/python bench/bench_sweep.py                 (or: make bench)
    .venv/bin/python bench/bench_sweep.py --repeats 5 --quick
    .venv/bin/python bench/bench_sweep.py --quick --against ../before     (another checkout, e.g. a git worktree)

(a) Whole process, on a 960-row grid like the one the engine issue names (d 16, 64, 256, 1024; batch 8, 64;
    small_init 1e-2, 1e-4; 30 seeds; plain and residual): `python notebook_loop.py` (a loop that builds the
    notebook's two modules and calls its run_once for every row, writing the same CSV; written out below)
    against `cnnexp sweep` with each engine and worker count. Each figure is a median of interleaved runs and
    is reported as a ratio to the notebook loop measured in the same run.
(b) In process, per configuration (both blocks) by d: the reference engine, and the batched engine on a
    stack of 30 seeds, per configuration.

The machine is noisy (2 cores, shared): read the ratios, not the seconds, and run it twice.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import interleaved  # bench/timing.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent

GRID = """
name: bench
sweep:
  d: [16, 64, 256, 1024]
  batch: [8, 64]
  small_init: [1.0e-2, 1.0e-4]
  seed: {range: [0, 30]}
"""

# The baseline: the notebook's method as a researcher would loop it, one run_once call per block and
# configuration, each on freshly built nn.Linear modules, appending the same CSV columns.
NOTEBOOK_LOOP = r'''
import csv, itertools, math, sys
import torch
import torch.nn.functional as F
from torch import nn

class Plain(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))

class Residual(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.f = Plain(d)
    def forward(self, x):
        return x + self.f(x)

def run_once(block, d, batch, small_init, seed):
    torch.manual_seed(seed)
    x = torch.randn(batch, d, requires_grad=True)
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
            p.add_(small_init * torch.randn_like(p))
    fc1 = block.f.fc1 if isinstance(block, Residual) else block.fc1
    fc2 = block.f.fc2 if isinstance(block, Residual) else block.fc2
    a1 = fc1(x)
    a1.retain_grad()
    out = fc2(F.relu(a1))
    if isinstance(block, Residual):
        out = x + out
    loss = out.pow(2).mean()
    loss.backward()
    params = list(block.parameters())
    return {
        "loss": float(loss.detach()), "x_grad_norm": float(x.grad.norm()), "a1_grad_norm": float(a1.grad.norm()),
        "w_norm": math.sqrt(sum(float(p.detach().pow(2).sum()) for p in params)),
        "param_grad_norm": math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params)),
    }

with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["block", "d", "batch", "small_init", "seed", "loss", "x_grad_norm", "a1_grad_norm", "w_norm",
                "param_grad_norm"])
    for d, batch, small_init, seed in itertools.product([16, 64, 256, 1024], [8, 64], [1e-2, 1e-4], range(30)):
        for name, kind in (("plain", Plain), ("residual", Residual)):
            m = run_once(kind(d), d, batch, small_init, seed)
            w.writerow([name, d, batch, small_init, seed, *m.values()])
            f.flush()
'''


def whole_process(repeats: int, cases: list[tuple[str, list[str], str | None]]) -> None:
    """Each case: (its name, the sweep's flags, another checkout of cnnexp to run instead of this one, or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "grid.yaml").write_text(GRID)
        (tmp / "loop.py").write_text(NOTEBOOK_LOOP)
        runs = {"notebook loop": lambda: subprocess.run([sys.executable, str(tmp / "loop.py"), str(tmp / "nb.csv")],
                                                        check=True)}
        for name, flags, tree in cases:
            cmd = [sys.executable, "-m", "cnnexp", "sweep", str(tmp / "grid.yaml"), "--out", str(tmp / "c.csv"),
                   "--overwrite", *flags]
            env = {**os.environ, "PYTHONPATH": tree} if tree else None  # (its package first on the path)
            runs[name] = lambda cmd=cmd, env=env: subprocess.run(cmd, check=True, capture_output=True, env=env,
                                                                 cwd=tmp)
        medians = interleaved(runs, repeats)
    print(f"whole process, 960 rows, median of {repeats} interleaved runs")
    for name, seconds in medians.items():
        print(f"  {name:<36} {seconds:6.2f} s   {seconds / medians['notebook loop']:6.3f}x the notebook loop")


def in_process(repeats: int) -> None:
    import torch

    from cnnexp.config import RunConfig
    from cnnexp.engine.batched import run_batched
    from cnnexp.engine.reference import run_reference

    torch.set_num_threads(1)
    print("\nin process, one thread, ms per configuration (both blocks)")
    print(f"  {'d':>5} {'batch':>5} {'reference':>10} {'batched':>10} {'ratio':>6}")
    for d in (16, 64, 256, 1024):
        tasks = [(RunConfig(d=d, batch=64, small_init=1e-2, seed=s), ("plain", "residual")) for s in range(30)]
        cases = {"reference": lambda tasks=tasks: run_reference(tasks),
                 "batched": lambda tasks=tasks: run_batched(tasks)}
        m = interleaved(cases, repeats)
        ref, bat = (m[k] / len(tasks) * 1e3 for k in ("reference", "batched"))
        print(f"  {d:>5} {64:>5} {ref:>10.3f} {bat:>10.3f} {bat / ref:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="only the default engine with 1 and 2 workers")
    parser.add_argument("--against", metavar="DIR", help="also time the checkout of cnnexp in DIR (e.g. a git "
                        "worktree of an earlier commit), 2 workers, interleaved with the rest")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} cores seen; "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC\n")
    cases = [("cnnexp sweep (batched, 2 workers)", ["--workers", "2"], str(ROOT)),
             ("cnnexp sweep (batched, 1 worker)", ["--workers", "1"], str(ROOT))]
    if args.against:  # (its bytecode compiled first, as `make` compiles this one's)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(args.against) / "cnnexp")], check=True)
        cases.append((f"{Path(args.against).name} (2 workers)", ["--workers", "2"], str(Path(args.against).resolve())))
    if not args.quick:
        cases += [("cnnexp sweep --engine reference", ["--engine", "reference", "--workers", "1"], str(ROOT)),
                  ("cnnexp sweep --engine reference, 2 workers", ["--engine", "reference", "--workers", "2"],
                   str(ROOT))]
    whole_process(args.repeats, cases)
    in_process(args.repeats)


if __name__ == "__main__":
    main()
