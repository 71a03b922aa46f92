"""Norms and cosines that neither underflow nor overflow: the one way every engine takes its metrics.

The study's gradients get tiny (small_init^4 per block): at small_init=1e-6 in float32 the squares of the
input gradient's elements (about 1e-44) are below float32's range, so `t.norm()` reads 5x too small, and at
depth 50 in float64 even the norm of 1e-237 elements squares to 0. Here every tensor is taken to float64 (exact
for both dtypes) and divided by its largest magnitude before squaring:

    ||t|| = s * sqrt(sum((t / s)^2)),   s = max |t_i|

so the sum lies in [1, n] whatever the scale, and the result is exact to float64 rounding while the norm is
representable. All functions work on a leading batch dimension: one value per configuration.

    >>> import torch
    >>> float(norm(torch.full((1, 4), 1e-200, dtype=torch.float64))[0])   # t.norm() would give 0.0
    2e-200
"""
from __future__ import annotations

import torch


SAFE = (1e-140, 1e140)  # a float64 norm in this range lost nothing that matters to squares under- or overflowing


def _rows(tensors) -> list[torch.Tensor]:
    """Each tensor as (B, n) float64: one row per configuration."""
    return [t.detach().reshape(t.shape[0], -1).to(torch.float64) for t in tensors]


def _scaled(rows: torch.Tensor) -> torch.Tensor:
    """||row|| = s * ||row / s|| with s = max |row_i|: no square can under- or overflow. -> (B,)"""
    scale = rows.abs().amax(dim=1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))[:, None]
    return scale * torch.linalg.vector_norm(rows / safe, dim=1)  # an all-zero row: 0 * 0 = 0


def _norm(t: torch.Tensor) -> torch.Tensor:
    """The norm of each row of one tensor. The squares of float32 (or narrower) numbers are never below or
    above float64's range, so one float64 pass is exact; float64 rows whose norm lies outside SAFE are taken
    again, scaled. -> (B,) float64"""
    rows = t.detach().reshape(t.shape[0], -1)
    result = torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64)
    if rows.dtype == torch.float64:
        redo = ~((result > SAFE[0]) & (result < SAFE[1]))
        if redo.any():
            result[redo] = _scaled(rows[redo])
    return result


def norm(*tensors: torch.Tensor) -> torch.Tensor:
    """The L2 norm of the tensors taken together, per row of their leading dimension. -> (B,) float64"""
    parts = torch.stack([_norm(t) for t in tensors])  # (k, B): each exact, then combined scaled
    if len(parts) == 1:
        return parts[0]
    return _scaled(parts.T.contiguous())


def mean_square(t: torch.Tensor) -> torch.Tensor:
    """mean(t^2) over everything but the leading dimension, as (||t|| / sqrt(n))^2. -> (B,) float64"""
    n = t[0].numel()
    return (norm(t) / n ** 0.5).square()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The true cosine between a and b per row, computed scale-free and clipped to [-1, 1]; NaN where either
    is exactly zero (no direction). -> (B,) float64"""
    a, b = _rows([a, b])
    a = a / norm(a)[:, None]  # an all-zero row becomes 0/0 = NaN, and so does its cosine
    b = b / norm(b)[:, None]
    return (a * b).sum(dim=1).clamp(-1.0, 1.0)
