"""Speed of the CNN tools, as ratios against a baseline measured in the same run.

    $ .venv/bin/python bench/bench_conv.py               # about half a minute on 2 cores
    $ .venv/bin/python bench/bench_conv.py --repeats 41 --conv-repeats 101

(a) Whole process: `cnnexp conv-shape 224 --kernel 3` (through `python -m cnnexp` and through the installed
    entry point) against `python -c "import typer, rich.console"`, and against a bare one-command Typer
    program, to show what Typer itself costs. (b) In process: `conv2d_numpy(method="fast")` against torch's
    own `F.conv2d` on an 8x16x56x56 input with 32 3x3 filters.

Runs are interleaved (A, B, C, A, B, C, ...) so a noisy spell of the machine hits every contender alike, and
each figure is a median. Nothing here asserts: the numbers are for reading.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import interleaved  # bench/timing.py: this script's folder is on sys.path

BARE_TYPER = '''
from typing import Annotated, Optional
import typer
app = typer.Typer()
@app.command()
def shape(size: str, kernel: Annotated[Optional[str], typer.Option()] = None):
    print(size, kernel)
@app.command()
def other():
    pass
app()
'''


def whole_process(repeats: int) -> dict[str, float]:
    entry_point = Path(sys.executable).with_name("cnnexp")
    bare = Path(tempfile.mkdtemp()) / "bare_typer.py"
    bare.write_text(BARE_TYPER)
    commands = {
        'python -c "import typer, rich.console"': [sys.executable, "-c", "import typer, rich.console"],
        "bare Typer app (1 command, 2 params)": [sys.executable, str(bare), "shape", "224", "--kernel", "3"],
        "python -m cnnexp conv-shape 224 --kernel 3": [sys.executable, "-m", "cnnexp", "conv-shape", "224",
                                                       "--kernel", "3"],
        "cnnexp conv-shape 224 --kernel 3": [str(entry_point), "conv-shape", "224", "--kernel", "3"],
    }

    def runner(argv):
        return lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)

    return interleaved({name: runner(argv) for name, argv in commands.items()}, repeats)


def in_process(repeats: int) -> dict[str, float]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from cnnexp.conv import conv2d_numpy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 56, 56)).astype(np.float32)  # (N, C_in, H, W)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)  # (C_out, C_in, kh, kw)
    b = rng.standard_normal(32).astype(np.float32)
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    runs = {
        "torch F.conv2d (8x16x56x56, 32 3x3, p=1)": lambda: F.conv2d(tx, tw, tb, padding=1),
        'conv2d_numpy(method="fast")': lambda: conv2d_numpy(x, w, b, padding=1),
    }
    return interleaved(runs, repeats)


def report(title: str, medians: dict[str, float]) -> None:
    baseline = next(iter(medians.values()))
    width = max(map(len, medians))
    print(f"\n{title}")
    print(f"{'':{width}}  {'median':>10}  {'ratio':>6}")
    for name, seconds in medians.items():
        print(f"{name:{width}}  {seconds * 1e3:8.1f}ms  {seconds / baseline:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="rounds of whole-process runs")
    parser.add_argument("--conv-repeats", type=int, default=51, help="rounds of in-process conv runs")
    args = parser.parse_args()
    import torch

    no_pyc = os.environ.get("PYTHONDONTWRITEBYTECODE", "")
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, PYTHONDONTWRITEBYTECODE={no_pyc!r}")
    report(f"(a) whole process, {args.repeats} interleaved rounds", whole_process(args.repeats))
    report(f"(b) in process, {args.conv_repeats} interleaved rounds", in_process(args.conv_repeats))


if __name__ == "__main__":
    main()
