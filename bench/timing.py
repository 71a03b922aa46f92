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
