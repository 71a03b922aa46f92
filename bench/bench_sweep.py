"""Benchmark: what cnnexp's probe and sweep cost over the bare computation they wrap.

    .venv/bin/python bench/bench_sweep.py          (or: make bench)

In-process: one configuration through `probe` (both blocks, hooks, per-layer capture) against a baseline of the
same forward and backward written out by hand with no hooks, at two sizes and one and two threads.
Whole-process: `cnnexp sweep configs/init.yaml` (6 runs) against `python -c "import torch"`, the start-up any
torch program pays. Repeats are interleaved and medians reported, as ratios against the baseline measured in the
same run, because this machine is noisy.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from cnnexp.config import RunConfig
from cnnexp.probe import probe
from timing import interleaved  # bench/timing.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent


def bare(config) -> None:
    """Both blocks' forward and backward, by hand: the floor any runner of this study pays."""
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, config.d, requires_grad=True)
    w1, w2 = (config.small_init * torch.randn(config.d, config.d) for _ in range(2))
    for residual in (False, True):
        w1.requires_grad_(), w2.requires_grad_()
        f = torch.relu(x @ w1.T) @ w2.T
        ((x + f) if residual else f).pow(2).mean().backward()


def in_process() -> None:
    print("in-process, per configuration (both blocks), median of interleaved repeats")
    print(f"{'d x batch':>10} {'threads':>7} {'bare ms':>9} {'probe ms':>9} {'probe/bare':>10}")
    for d, batch in ((32, 8), (256, 64)):
        config = RunConfig(d=d, batch=batch, small_init=1e-2, seed=0)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            m = interleaved({"bare": lambda: bare(config), "probe": lambda: probe(config, ("plain", "residual"))}, 200)
            print(f"{d:>5} x {batch:<3} {threads:>7} {m['bare'] * 1e3:>9.3f} {m['probe'] * 1e3:>9.3f} "
                  f"{m['probe'] / m['bare']:>10.2f}")


def whole_process() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cli = [sys.executable, "-m", "cnnexp", "sweep", str(ROOT / "configs/init.yaml"), "--out", f"{tmp}/i.csv",
               "--overwrite"]
        cases = {
            "import torch": lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True),
            "cnnexp sweep init": lambda: subprocess.run(cli, check=True, capture_output=True),
        }
        m = interleaved(cases, 7)
    print("\nwhole process, median of 7 interleaved runs")
    for name, seconds in m.items():
        print(f"{name:>18} {seconds:6.2f} s   ratio {seconds / m['import torch']:.2f}")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default\n")
    in_process()
    whole_process()
