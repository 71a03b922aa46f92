"""Timing for the benchmarks: interleaved repeats and medians, so a slow spell of a noisy machine hits every
case alike. Ratios are always taken against a baseline measured in the same run."""
import statistics
import time


def interleaved(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, run in turn `repeats` times (after one untimed warm-up round)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats + 1):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            if round_:  # round 0 warms caches (disk, BLAS threads) and is not counted
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def sweep_against_hand_loop(grid: str, hand_loop: str, sweeps: dict[str, list[str]], repeats: int) -> dict[str, float]:
    """Whole-process medians of `cnnexp sweep grid.yaml` with each list of flags in `sweeps`, interleaved with
    `python hand_loop.py h.csv hc.csv` ("hand loop (1 thread)"), in a scratch folder holding both files."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    cnnexp = str(Path(sys.executable).with_name("cnnexp"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "grid.yaml").write_text(grid)
        (folder / "hand_loop.py").write_text(hand_loop)

        def sweep(flags: list[str]):
            def go() -> None:
                subprocess.run([cnnexp, "sweep", "grid.yaml", "--overwrite", "--out", "r.csv", *flags], cwd=folder,
                               check=True, capture_output=True)
            return go

        def hand() -> None:
            subprocess.run([sys.executable, "hand_loop.py", "h.csv", "hc.csv"], cwd=folder, check=True)

        return interleaved({"hand loop (1 thread)": hand, **{name: sweep(flags) for name, flags in sweeps.items()}},
                           repeats)


def report_against_hand_loop(description: str, grid: str, hand_loop: str, sweeps: dict[str, list[str]], what: str,
                             width: int) -> None:
    """A sweep benchmark's command line (--repeats) and report: `sweep_against_hand_loop`, then each case's
    median seconds and its ratio to the hand loop, `what` saying what ran."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = sweep_against_hand_loop(grid, hand_loop, sweeps, args.repeats)
    base = times["hand loop (1 thread)"]
    print(f"whole process, {what}, median of {args.repeats} interleaved runs:")
    for name, seconds in times.items():
        print(f"  {name:{width}} {seconds:7.2f} s   {seconds / base:5.2f}x the hand loop")
