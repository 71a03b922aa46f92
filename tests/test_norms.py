"""Underflow-free norms and cosines against Python's math (hypot scales its arguments; fsum is exact)."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnexp import norms


def hypot(values) -> float:
    return math.hypot(*values)


@pytest.mark.parametrize("dtype, scale", [
    (torch.float32, 1e-30),   # squares 1e-60: below float32's range
    (torch.float32, 1e-40),   # subnormal float32 elements
    (torch.float64, 1e-237),  # squares below float64's range (a depth-50 plain stack)
    (torch.float64, 1e-300),
    (torch.float64, 1e200),   # squares beyond float64's range
    (torch.float32, 1e30),
])
def test_norm_neither_underflows_nor_overflows(dtype, scale):
    torch.manual_seed(0)
    t = (torch.randn(3, 50, dtype=torch.float64) * scale).to(dtype)
    assert (t != 0).all() and torch.isfinite(t).all()
    got = norms.norm(t).tolist()
    want = [hypot(row) for row in t.double().tolist()]
    assert got == pytest.approx(want, rel=1e-6 if scale < 1e-38 and dtype == torch.float32 else 1e-12)


def test_norm_of_several_tensors_is_the_norm_of_all_their_elements():
    torch.manual_seed(1)
    a, b = torch.randn(2, 3, 4, dtype=torch.float64) * 1e-200, torch.randn(2, 7, dtype=torch.float64) * 1e-190
    got = norms.norm(a, b).tolist()
    want = [hypot(a[i].flatten().tolist() + b[i].flatten().tolist()) for i in range(2)]
    assert got == pytest.approx(want, rel=1e-12)


def test_zero_rows_give_zero_norm_and_nan_cosine():
    z, t = torch.zeros(2, 5), torch.ones(2, 5)
    assert norms.norm(z).tolist() == [0.0, 0.0]
    assert all(math.isnan(c) for c in norms.cosine(z, t).tolist())
    assert norms.mean_square(z).tolist() == [0.0, 0.0]


def test_mean_square_equals_the_mean_of_squares():
    torch.manual_seed(2)
    t = torch.randn(4, 6, 5, dtype=torch.float64)
    assert norms.mean_square(t).tolist() == pytest.approx(t.pow(2).mean(dim=(1, 2)).tolist(), rel=1e-14)


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_subnormal=False)


@settings(max_examples=60, deadline=None)
@given(a=st.lists(finite, min_size=2, max_size=12), b=st.lists(finite, min_size=2, max_size=12),
       exponent=st.integers(-300, 300))
def test_cosine_is_the_true_cosine_at_any_scale_and_stays_in_range(a, b, exponent):
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if not any(a) or not any(b):
        return
    scale = 10.0 ** exponent
    ta = torch.tensor([a], dtype=torch.float64) * scale
    tb = torch.tensor([b], dtype=torch.float64) * scale
    [got] = norms.cosine(ta, tb).tolist()
    if not ta.any() or not tb.any():  # scaled below the smallest float64: no direction left
        assert math.isnan(got)
        return
    sa, sb = max(map(abs, a)), max(map(abs, b))
    a, b = [v / sa for v in a], [v / sb for v in b]  # scaled: the oracle must not underflow either
    want = math.fsum(x * y for x, y in zip(a, b)) / (hypot(a) * hypot(b))
    assert -1.0 <= got <= 1.0
    if ta.abs().max() > 0 and tb.abs().max() > 0 and (ta != 0).sum() == (torch.tensor(a) != 0).sum():
        assert got == pytest.approx(max(-1.0, min(1.0, want)), abs=1e-12)


def test_cosine_of_a_vector_with_itself_is_one_not_more():
    torch.manual_seed(3)
    t = torch.randn(5, 1000)
    assert norms.cosine(t, t).max() <= 1.0
    assert norms.cosine(t, t).tolist() == pytest.approx([1.0] * 5, abs=1e-15)


def test_rows_of_zeros_stay_on_the_fast_path_and_tiny_rows_do_not():
    """A gradient with zero rows (ReLU units that never fired) is exact in float32; one row of elements
    whose squares underflow sends its configuration to the scaled float64 path."""
    torch.manual_seed(4)
    t = torch.randn(2, 6, 40)
    t[0, 2] = 0.0
    t[1, 3] = 1e-25  # squares 1e-50: below float32's range
    got = norms.norm(t).tolist()
    want = [hypot(row.flatten().tolist()) for row in t.double()]
    assert got[0] == pytest.approx(want[0], rel=1e-6) and got[1] == pytest.approx(want[1], rel=1e-6)
    tiny = torch.full((1, 3, 40), 1e-25)
    assert norms.norm(tiny).tolist() == pytest.approx([hypot([1e-25] * 120)], rel=1e-6)


def exact_product_norm(g: torch.Tensor, h: torch.Tensor) -> list[float]:
    """||g^T h|| per configuration with Python's exact sums: fsum for every entry, then hypot."""
    out = []
    for gb, hb in zip(g.double().tolist(), h.double().tolist()):
        entries = [math.fsum(gr[i] * hr[j] for gr, hr in zip(gb, hb)) for i in range(len(gb[0]))
                   for j in range(len(hb[0]))]
        out.append(hypot(entries))
    return out


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), p=st.integers(1, 9), q=st.integers(1, 9), exponent=st.integers(-200, 200),
       seed=st.integers(0, 2**16))
def test_product_norm_is_the_norm_of_the_exact_product_by_both_ways(n, p, q, exponent, seed):
    """The Gram way (n (p + q) < p q) and the direct way, at any float64 scale, against exact sums. Scales near
    1e-200 would make every entry of g^T h 1e-400 (0 in float64): the exact answer is then only representable
    as the scaled product, so those are checked with the factors' scales taken out."""
    torch.manual_seed(seed)
    g, h = torch.randn(2, n, p, dtype=torch.float64), torch.randn(2, n, q, dtype=torch.float64)
    scale = 10.0 ** (exponent / 2)
    got = norms.product_norm(g * scale, h * scale)
    assert (got / scale**2).tolist() == pytest.approx(exact_product_norm(g, h), rel=1e-12)


def test_a_float32_product_that_underflows_is_formed_in_float32_as_autograd_forms_it():
    """Terms of g^T h below float32's range: the gradient autograd forms reads 0 (or subnormal), and so must
    its norm; a product in range is exact to float32 rounding."""
    torch.manual_seed(2)
    g, h = torch.randn(3, 8, 64), torch.randn(3, 8, 64)
    tiny_g, tiny_h = g * 1e-24, h * 1e-24  # terms 1e-48: below even float32's subnormals
    assert norms.product_norm(tiny_g, tiny_h).tolist() == norms.norm(tiny_h.transpose(1, 2) @ tiny_g).tolist()
    assert norms.product_norm(tiny_g, tiny_h).tolist() == [0.0, 0.0, 0.0]
    assert norms.product_norm(g, h).tolist() == pytest.approx(norms.norm(h.transpose(1, 2) @ g).tolist(), rel=1e-6)
    assert norms.product_norm(torch.zeros(1, 8, 64), h[:1]).tolist() == [0.0]
