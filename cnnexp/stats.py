"""Statistics over seeds: the one implementation that `cnnexp summary` and a sweep's table on screen share.

Plain Python on a configuration's values (one per seed), exact where it can be: sums by `math.fsum`, and the
deviations divided by the largest magnitude before they are squared, so that seeds whose gradients are near
1e-236 do not have their deviations square to 0.

    >>> mean([1e-236, 3e-236]), std([1e-236, 3e-236])
    (2e-236, 1.4142135623730952e-236)
    >>> mean([1.0, float("nan")]), mean([1.0, float("nan")], skip_nan=False)
    (1.0, nan)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

STATISTICS = ("mean", "std", "sem")  # summary columns <metric>_mean, <metric>_std, <metric>_sem


def _kept(values: Iterable[float], skip_nan: bool) -> list[float]:
    return [v for v in values if not (skip_nan and math.isnan(v))]


def mean(values: Iterable[float], skip_nan: bool = True) -> float:
    """The mean (NaN for no values); NaN values left out, or with `skip_nan=False` making the mean NaN."""
    kept = _kept(values, skip_nan)
    return math.fsum(kept) / len(kept) if kept else math.nan


def std(values: Iterable[float], skip_nan: bool = True) -> float:
    """The sample standard deviation (ddof=1; NaN for fewer than two values, 0 when they are all 0, NaN with
    an infinite one), NaN values left out as by `mean`."""
    kept = _kept(values, skip_nan)
    if len(kept) < 2:
        return math.nan
    scale = max(abs(v) for v in kept)
    if not 0 < scale < math.inf:
        return 0.0 if scale == 0 else math.nan
    middle = math.fsum(kept) / len(kept)
    return scale * math.sqrt(math.fsum(((v - middle) / scale) ** 2 for v in kept) / (len(kept) - 1))


def sem(values: Iterable[float], skip_nan: bool = True) -> float:
    """The standard error of the mean, std / sqrt(n), n counting the values kept."""
    kept = _kept(values, skip_nan)
    return std(kept, skip_nan) / math.sqrt(len(kept)) if kept else math.nan
