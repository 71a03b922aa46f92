"""cnnexp.stats against numpy and pandas computed here, and by hand; and the two places that use it."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnexp import stats
from cnnexp.sweep import Pair, over_seeds

# seeds' values as the study meets them: over hundreds of decades, exact zeros, now and then NaN (a run that
# never fit) or inf
VALUE = st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.floats(min_value=-1e3, max_value=1e3),
                  st.just(0.0), st.just(math.nan), st.just(math.inf))


def exact_mean(values: list[float]) -> float:
    return float(sum(Fraction(v) for v in values) / len(values))


@given(st.lists(VALUE, max_size=12))
def test_mean_is_the_correctly_rounded_mean_of_the_values_kept(values):
    kept = [v for v in values if not math.isnan(v)]
    got = stats.mean(values)
    if not kept:
        assert math.isnan(got)
    elif any(math.isinf(v) for v in kept):
        assert got == math.inf
    else:  # fsum is exact; one division rounds (and a sum near the largest float may overflow first)
        want = exact_mean(kept)
        assert got == pytest.approx(want, rel=1e-15, abs=1e-300) or math.isinf(got)
    assert math.isnan(stats.mean(values, skip_nan=False)) == (len(kept) < len(values) or not values)


@given(st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=2, max_size=12))
def test_std_and_sem_agree_with_numpy_on_ordinary_values(values):
    want = np.std(values, ddof=1)
    assert stats.std(values) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert stats.sem(values) == pytest.approx(want / math.sqrt(len(values)), rel=1e-9, abs=1e-12)


@given(st.lists(st.floats(min_value=1, max_value=10), min_size=2, max_size=12), st.integers(-300, 300))
def test_std_scales_exactly_with_the_values_however_small(values, exponent):
    """The deviations are divided by the largest value before they are squared, so 1e-236 does not underflow:
    std(c x) == c std(x) for a power of two c, where numpy's would square the deviations to 0."""
    c = 2.0 ** exponent
    assert stats.std([c * v for v in values]) == pytest.approx(c * stats.std(values), rel=1e-14)


def test_hand_computed_values_and_edge_cases():
    assert stats.std([1e-236, 3e-236]) == pytest.approx(math.sqrt(2) * 1e-236, rel=1e-15)
    assert stats.std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx(math.sqrt(32 / 7), rel=1e-15)
    assert math.isnan(stats.std([5.0])) and math.isnan(stats.sem([])) and math.isnan(stats.mean([]))
    assert stats.std([0.0, 0.0, 0.0]) == 0.0
    assert math.isnan(stats.std([1.0, math.inf]))
    assert stats.std([1.0, math.nan, 3.0]) == pytest.approx(math.sqrt(2), rel=1e-15)  # NaN left out
    assert math.isnan(stats.std([1.0, math.nan, 3.0], skip_nan=False))


@given(st.lists(st.floats(min_value=1e-300, max_value=1e300), min_size=1, max_size=8))
def test_summary_and_the_sweeps_table_give_the_same_statistics(values):
    """One implementation: `cnnexp summary`'s mean and std of a configuration over seeds are the numbers the
    sweep's table on screen shows (there as a relative spread)."""
    from cnnexp.analysis import summary
    from cnnexp.schema import AXES, CONFIG_COLUMNS, STEP_METRICS

    defaults = {a.name: a.default for a in AXES if not a.training}
    rows, pairs = [], []
    for seed, v in enumerate(values):
        config = {**defaults, "seed": seed}
        metrics = {m: v for m in STEP_METRICS}
        rows.append({"block": "plain", **config, **metrics})
        pairs.append(Pair(config, {"plain": metrics}, {}))
    frame = pd.DataFrame(rows, columns=[*CONFIG_COLUMNS, *STEP_METRICS])
    table = summary(frame, ["x_grad_norm"])
    [shown] = over_seeds(pairs) if len(values) > 1 else [pairs[0]]
    assert table["x_grad_norm_mean"].tolist() == [shown.metrics["plain"]["x_grad_norm"]]
    if len(values) > 1 and shown.metrics["plain"]["x_grad_norm"] > 0:
        mean, std = table["x_grad_norm_mean"][0], table["x_grad_norm_std"][0]
        assert shown.spread["plain"]["x_grad_norm"] == std / mean
