"""cnnexp.conv against torch.nn.functional.conv2d: both methods on random cases, and the errors."""
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from cnnexp.conv import STEP_MACS, check_conv, conv2d_numpy, loop_work
from cnnexp.errors import ConfigError, ShapeError


@st.composite
def conv_cases(draw):
    """A random geometry that torch accepts, with seeded float32 data."""
    pair = lambda low, high: st.tuples(st.integers(low, high), st.integers(low, high))  # noqa: E731
    kernel, stride, dilation, padding = draw(pair(1, 4)), draw(pair(1, 3)), draw(pair(1, 2)), draw(pair(0, 2))
    # at least the effective kernel, so the output is never empty
    h, w = (draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 12)) for k, d, p in zip(kernel, dilation, padding))
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    weight = rng.standard_normal((c_out, c_in, *kernel)).astype(np.float32)
    bias = rng.standard_normal(c_out).astype(np.float32) if draw(st.booleans()) else None
    # ints where the pair is square, as a user would write them
    geometry = {name: v[0] if v[0] == v[1] and draw(st.booleans()) else v
                for name, v in (("stride", stride), ("padding", padding), ("dilation", dilation))}
    return x, weight, bias, geometry


def torch_conv(x, weight, bias, geometry):
    return F.conv2d(torch.from_numpy(x), torch.from_numpy(weight),
                    None if bias is None else torch.from_numpy(bias), **geometry).numpy()


@pytest.mark.parametrize("method", ["loop", "fast"])
@settings(max_examples=60, deadline=None)
@given(case=conv_cases())
def test_equals_torch_conv2d(method, case):
    x, weight, bias, geometry = case
    expected = torch_conv(x, weight, bias, geometry)
    y = conv2d_numpy(x, weight, bias, method=method, **geometry)
    assert y.dtype == np.float32 and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_float64_stays_float64_and_matches_torch():
    rng = np.random.default_rng(1)
    x, weight, bias = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((5, 3, 3, 2)), rng.standard_normal(5)
    geometry = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    expected = torch_conv(x, weight, bias, geometry)
    for method in ("loop", "fast"):
        y = conv2d_numpy(x, weight, bias, method=method, **geometry)
        assert y.dtype == np.float64
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "x_shape, w_shape, bias_shape, kwargs, words",
    [
        ((3, 8, 8), (4, 3, 3, 3), None, {}, "x must be (N, C_in, H, W), got shape (3, 8, 8)"),
        ((1, 3, 8, 8), (4, 3, 3), None, {}, "w must be (C_out, C_in, kh, kw)"),
        ((1, 3, 8, 8), (4, 2, 3, 3), None, {}, "w has C_in=2"),
        ((1, 3, 8, 8), (4, 3, 3, 3), (3,), {}, "bias must have shape (4,)"),
        ((1, 3, 8, 8), (4, 3, 9, 3), None, {}, "does not fit the input"),
        ((1, 3, 8, 8), (4, 3, 3, 3), None, {"dilation": 4}, "does not fit the input"),
        ((1, 3, 8, 8), (4, 3, 3, 3), None, {"stride": 0}, "need stride >= 1"),
        ((1, 3, 8, 8), (4, 3, 3, 3), None, {"padding": -1}, "padding >= 0"),
        ((1, 3, 8, 8), (4, 3, 3, 3), None, {"stride": (1, 2, 3)}, "stride must be an int or a pair"),
        ((1, 3, 8, 8), (4, 3, 3, 3), None, {"method": "gpu"}, "method must be one of fast, loop"),
    ],
)
def test_bad_shapes_raise_value_error_naming_the_mismatch(x_shape, w_shape, bias_shape, kwargs, words):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    bias = None if bias_shape is None else np.zeros(bias_shape, np.float32)
    with pytest.raises(ValueError) as caught:
        conv2d_numpy(x, w, bias, **kwargs)
    assert words in str(caught.value)


def test_public_api_is_lazy_alias():
    import cnnexp

    assert cnnexp.conv2d_numpy is conv2d_numpy


def test_check_conv_agrees_with_itself_and_torch():
    check = check_conv(batch=2, in_channels=3, out_channels=4, size="9x7", kernel="3x2", stride="2x1",
                       padding="1", dilation="1x2", seed=3, repeats=2)
    assert [r.method for r in check.results] == ["loop", "fast", "torch"]
    assert check.ok and check.results[2].max_abs_error == 0.0
    expected = F.conv2d(torch.zeros(2, 3, 9, 7), torch.zeros(4, 3, 3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    assert check.output == tuple(expected.shape)


def test_check_conv_reports_a_difference_when_tolerance_is_below_rounding():
    # float32 sums in a different order differ in the last bits: a zero tolerance must report that.
    check = check_conv(batch=2, in_channels=8, out_channels=4, size="8", seed=0, repeats=1, tolerance=1e-30)
    assert not check.ok


@pytest.mark.parametrize(
    "kwargs, error",
    [({"kernel": "11"}, ShapeError), ({"padding": "same"}, ConfigError), ({"batch": 0}, ConfigError),
     ({"size": "8x"}, ConfigError), ({"tolerance": 0.0}, ConfigError)],
)
def test_check_conv_refuses_bad_input(kwargs, error):
    with pytest.raises(error):
        check_conv(**kwargs)


# ------------------------------------------------------------------------ loop limit, seed and memory


def test_loop_work_is_torchs_macs_plus_a_step_per_output_value():
    x, w = torch.zeros(2, 3, 11, 9), torch.zeros(5, 3, 3, 2)
    with FlopCounterMode(display=False) as counter:
        y = F.conv2d(x, w, stride=(2, 1), padding=1)
    macs = counter.get_total_flops() // 2  # torch counts a multiply-accumulate as 2 flops
    assert loop_work(2, 3, 5, (3, 2), tuple(y.shape[2:])) == macs + STEP_MACS * y.numel()


@pytest.mark.parametrize("over", [0, 1])
def test_loop_is_skipped_just_over_the_limit_and_fast_is_still_judged(over):
    y = F.conv2d(torch.zeros(2, 3, 8, 8), torch.zeros(4, 3, 3, 3), padding=1)
    work = 2 * 4 * 8 * 8 * 3 * 3 * 3 + STEP_MACS * y.numel()  # the MACs of the formula, written out
    check = check_conv(batch=2, in_channels=3, out_channels=4, size="8", repeats=1, loop_limit=work - over)
    loop, fast, torch_ = check.results
    assert [r.method for r in check.results] == ["loop", "fast", "torch"]
    if over:
        assert loop.skipped.startswith("loop skipped") and "--loop-limit" in loop.skipped
        assert np.isnan(loop.max_abs_error) and np.isnan(loop.seconds) and check.ran == ("fast", "torch")
    else:
        assert not loop.skipped and loop.max_abs_error <= check.tolerance and check.ran == ("loop", "fast", "torch")
    assert check.ok and fast.max_abs_error <= check.tolerance and torch_.max_abs_error == 0.0


def test_a_skipped_loop_does_not_hide_a_difference_of_fast():
    check = check_conv(batch=2, in_channels=8, out_channels=4, size="8", repeats=1, tolerance=1e-30, loop_limit=0)
    assert check.results[0].skipped and not check.ok


def test_seed_must_be_non_negative_and_may_be_large():
    with pytest.raises((ValueError, TypeError)):  # numpy's own refusal, which conv-check turns into one line
        np.random.default_rng(-1)
    with pytest.raises(ConfigError, match="seed -1 must be at least 0"):
        check_conv(seed=-1)
    assert check_conv(seed=2**100, repeats=1).ok  # numpy takes any non-negative integer


def _peak_traced_bytes(run) -> int:
    """numpy reports its array buffers to tracemalloc: the reference for what the check allocates."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


CASES = [
    dict(batch=2, in_channels=3, out_channels=4, size="64", padding="1"),
    dict(batch=2, in_channels=8, out_channels=6, size="60x40", kernel="5", stride="2", padding="2"),
    dict(batch=1, in_channels=2, out_channels=16, size="48", kernel="1", padding="0"),
]


@pytest.mark.parametrize("case", CASES)
def test_memory_estimate_covers_what_numpy_allocates(case, monkeypatch):
    import cnnexp.memory

    check_conv(repeats=1, loop_limit=0, **case)  # warm up torch, so its one-off set-up is not counted
    peak = _peak_traced_bytes(lambda: check_conv(repeats=2, **case))
    # with one byte less than that peak available, the estimate must refuse; with plenty, run
    monkeypatch.setattr(cnnexp.memory, "available_bytes", lambda: peak - 1)
    with pytest.raises(ConfigError, match="GiB available; lower --size, --batch or the channels"):
        check_conv(repeats=1, **case)
    monkeypatch.setattr(cnnexp.memory, "available_bytes", lambda: 3 * peak)  # and not wildly pessimistic
    assert check_conv(repeats=1, **case).ok


def test_memory_refusal_comes_before_any_allocation(monkeypatch):
    import cnnexp.memory

    monkeypatch.setattr(cnnexp.memory, "available_bytes", lambda: 0)

    def refused():
        with pytest.raises(ConfigError):
            check_conv(batch=2, in_channels=3, size="256")

    assert _peak_traced_bytes(refused) < 4 * 2 * 3 * 256 * 256 / 4  # a quarter of the float32 input
