"""Benchmark: planning a sweep without running it (`cnnexp sweep FILE --dry-run`), up to 1,000,000 configurations.

    .venv/bin/python bench/bench_plan.py          (or: make bench)

Whole process, so start-up and YAML reading count: the issue asks for a 1,000,000-configuration plan in under
2 s. A dry run enumerates only the configurations it lists (40); the counts come from the axes. Also a real
plan (`plan_sweep`, which does enumerate every configuration for the run) in process, for comparison.
Repeats are interleaved and medians reported; nothing here asserts.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import interleaved  # bench/timing.py: this script's folder is on sys.path

SIZES = {10_000: (100, 100), 100_000: (100, 1_000), 1_000_000: (1_000, 1_000)}


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    cnnexp = Path(sys.executable).with_name("cnnexp")
    runs = {}
    for n, (ds, seeds) in SIZES.items():
        path = folder / f"s{n}.yaml"
        path.write_text(f"name: s{n}\nsweep:\n  d: {{range: [1, {ds + 1}]}}\n  seed: {{range: [0, {seeds}]}}\n")
        argv = [str(cnnexp), "sweep", str(path), "--dry-run", "--out", str(folder / f"s{n}.csv")]
        runs[f"cnnexp sweep ({n:,} configurations) --dry-run"] = (
            lambda argv=argv: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True))
    medians = interleaved(runs, repeats=5)
    print("whole process, 5 interleaved rounds")
    for name, seconds in medians.items():
        print(f"  {name:50} {seconds:6.2f} s")

    from cnnexp.config import load_sweep
    from cnnexp.sweep import SweepOutputs, plan_sweep

    sweep = load_sweep(folder / "s1000000.yaml")
    started = time.perf_counter()
    plan = plan_sweep(sweep, SweepOutputs(folder / "real.csv"))
    print(f"in process: plan_sweep of {len(plan.configs):,} configurations (every one enumerated for the run) "
          f"{time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
