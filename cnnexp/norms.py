"""Norms and cosines that neither underflow nor overflow: the one way every engine takes its metrics.

The study's gradients get tiny (small_init^4 per block): at small_init=1e-6 in float32 the squares of the
input gradient's elements (about 1e-44) are below float32's range, so `t.norm()` reads 5x too small, and at
depth 50 in float64 even the norm of 1e-237 elements squares to 0. Here a norm is taken in the tensor's own dtype only
where no square can have fallen out of range (`safe_range`); elsewhere the tensor is taken to float64 and
divided by its largest magnitude before squaring:

    ||t|| = s * sqrt(sum((t / s)^2)),   s = max |t_i|

so the sum lies in [1, n] whatever the scale, and the result is exact to float64 rounding while the norm is
representable. All functions work on a leading batch dimension: one value per configuration.

    >>> import torch
    >>> float(norm(torch.full((1, 4), 1e-200, dtype=torch.float64))[0])   # t.norm() would give 0.0
    2e-200
"""
from __future__ import annotations

import torch

LOST = 1e-9  # the most, relative to the sum, that squares fallen below a dtype's range may be worth on the fast path


def _scaled(rows: torch.Tensor) -> torch.Tensor:
    """||row|| = s * ||row / s|| with s = max |row_i|, in float64: no square can under- or overflow. -> (B,)"""
    rows, scale = _unit(rows)
    return scale * torch.linalg.vector_norm(rows, dim=1)  # an all-zero row: 0 * 0 = 0


def safe_range(dtype: torch.dtype, n: int) -> tuple[float, float]:
    """Where a norm of n numbers taken in their own dtype is as good as the exact one: above the low end,
    squares that fell below the dtype's smallest normal number are worth less than LOST of the sum; below
    the high end, no square (and not the sum) can overflow."""
    info = torch.finfo(dtype)
    return (n * info.tiny / LOST) ** 0.5, info.max ** 0.5 * 1e-3


def _norm(t: torch.Tensor) -> torch.Tensor:
    """The norm of each configuration's slice (everything but the leading dimension) of one tensor.
    -> (B,) float64

    Each row (along the dimension contiguous in memory) is taken in the tensor's own dtype, as the notebook
    does, and the rows' norms are summed in float64, where every row lies in `safe_range` (exact to the
    dtype's rounding) or is all zeros. A configuration with a row outside it (a tiny gradient, whose squares
    underflow) is taken again whole in float64, scaled by its largest element.
    """
    t = t.detach() if t.ndim > 1 else t.detach()[:, None]  # (B,): one number per configuration
    along = 1 + min(range(t.ndim - 1), key=lambda i: (t.stride(i + 1), -i))  # the contiguous dimension
    rows = torch.linalg.vector_norm(t, dim=along)  # (B, ...) in t's dtype
    low, high = safe_range(t.dtype, t.shape[along])
    exact = (rows >= low) & (rows <= high)  # False for 0, NaN and inf
    if (rows == 0).any():  # a row of zeros (a unit ReLU kept off) is exact; one whose squares underflowed is not
        exact |= t.abs().amax(dim=along) == 0
    safe = exact.reshape(len(t), -1).all(dim=1)  # (B,)
    norms = rows.to(torch.float64).reshape(len(t), -1).square().sum(dim=1).sqrt()
    if not safe.all():
        norms[~safe] = _scaled(t[~safe].reshape(int((~safe).sum()), -1))
    return norms


def norm(*tensors: torch.Tensor) -> torch.Tensor:
    """The L2 norm of the tensors taken together, per row of their leading dimension. -> (B,) float64"""
    return total(torch.stack([_norm(t) for t in tensors], dim=1))  # each exact to its dtype, then combined


def total(parts: torch.Tensor) -> torch.Tensor:
    """The norm of several tensors from their norms, (B, k) -> (B,) float64: sqrt(sum(parts^2)), scaled."""
    return parts[:, 0].to(torch.float64) if parts.shape[1] == 1 else _scaled(parts)


def product_norm(g: torch.Tensor, h: torch.Tensor,
                 h_gram: tuple[torch.Tensor, torch.Tensor | float] | None = None) -> torch.Tensor:
    """||g[b]^T h[b]|| (Frobenius) for g (B, n, p) and h (B, n, q), the norm of a linear layer's weight gradient
    (g the gradient at its output, h its input, n the batch), without forming the product where that is dearer:

        ||g^T h||^2 = <g g^T, h h^T>        (n x n Gram matrices: n^2 (p + q) work instead of n p q)

    Both ways run in float64 (on float64 g and h scaled by their largest magnitudes), so nothing under- or
    overflows. That equals the norm of the product formed in g's dtype (as autograd forms it) to that dtype's
    rounding, except where the product's terms fall below the dtype's normal range: there the product is formed
    in g's dtype, as autograd would, so a gradient that underflows in float32 reads as it does. `h_gram` is
    gram(h) when the caller has it (several block kinds share an input). -> (B,) float64
    """
    n, p, q = g.shape[1], g.shape[2], h.shape[2]
    info = torch.finfo(g.dtype)
    if uses_gram(n, p, q):
        (gg, sg), (hh, sh) = gram(g), h_gram or gram(h)
        root = (gg * hh).sum(dim=(1, 2)).clamp_min(0).sqrt()  # (a sum of rounding errors around 0 can dip below)
    else:
        (gu, sg), (hu, sh) = _wide(g), _wide(h)
        root = torch.linalg.vector_norm(torch.bmm(gu.transpose(1, 2), hu), dim=(1, 2))
    found = sg * sh * root
    # each of the n p q terms formed in g's dtype is off by at most `tiny` (flushed to zero, at worst), and
    # its rounding is negligible above this, as in safe_range
    low, high = (p * q) ** 0.5 * n * info.tiny / LOST, info.max ** 0.5 * 1e-3
    formed = ~((found >= low) & (found <= high)) & (found > 0)  # (0: a zero g or h, or a float64 underflow)
    if formed.any():
        found[formed] = norm(torch.bmm(h[formed].transpose(1, 2), g[formed]))
    return found


def uses_gram(n: int, p: int, q: int) -> bool:
    """Whether `product_norm` of (B, n, p) and (B, n, q) takes Gram matrices (when n is small against p, q)."""
    return n * (p + q) < p * q


def gram(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
    """The Gram matrix t t^T of each configuration's (n, p) slice in float64 (t scaled by its largest magnitude
    first unless it is float32, whose squares lie deep inside float64's range), and that scale. -> ((B, n, n), (B,))"""
    wide, scale = _wide(t)
    return torch.bmm(wide, wide.transpose(1, 2)), scale


def _wide(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
    """t in float64, divided by each configuration's largest magnitude unless t is float32, and that scale."""
    return (t.detach().to(torch.float64), 1.0) if _narrow(t) else _unit(t)


def _narrow(t: torch.Tensor) -> bool:
    """Whether t is float32 or narrower: its numbers' products, and their sums, lie deep inside float64's range."""
    return torch.finfo(t.dtype).bits <= 32


def _unit(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t (B, ...) in float64 divided by each configuration's largest magnitude, and that magnitude (B,)."""
    t = t.detach().to(torch.float64)
    scale = t.abs().amax(dim=tuple(range(1, t.ndim)))
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return t / safe.reshape(-1, *[1] * (t.ndim - 1)), scale


def mean_square(t: torch.Tensor) -> torch.Tensor:
    """mean(t^2) over everything but the leading dimension, as (||t|| / sqrt(n))^2. -> (B,) float64"""
    n = t[0].numel()
    return (norm(t) / n ** 0.5).square()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The true cosine between a and b per row, a.b / sqrt((a.a) (b.b)), from the 2 x 2 Gram matrix of the pair
    in float64 (each scaled by its largest magnitude unless float32, as in `gram`), clipped to [-1, 1]; NaN
    where either is exactly zero (no direction). -> (B,) float64"""
    pair = torch.empty(len(a), 2, a[0].numel(), dtype=torch.float64, device=a.device)
    for i, t in enumerate((a, b)):
        t = t.detach().reshape(len(t), -1)
        pair[:, i] = t if _narrow(t) else _unit(t)[0]  # (`_wide`, without its float64 copy of a float32 t)
    g = torch.bmm(pair, pair.transpose(1, 2))  # (B, 2, 2): a.a, a.b; a.b, b.b
    return (g[:, 0, 1] / (g[:, 0, 0] * g[:, 1, 1]).sqrt()).clamp(-1.0, 1.0)  # a zero row: 0 / 0 = NaN
