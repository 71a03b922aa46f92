"""The two blocks of the study, as in the notebook's third part.

    plain:     H(x) = fc2(relu(fc1(x)))
    residual:  y    = x + F(x),   F = the plain block

    >>> import torch
    >>> block = ResidualBlock(4)
    >>> block(torch.zeros(2, 4)).shape
    torch.Size([2, 4])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PlainBlock(nn.Module):
    """x -> fc2(relu(fc1(x))), two bias-free Linear(d, d) layers."""

    def __init__(self, d: int):
        super().__init__()
        self.fc1 = nn.Linear(d, d, bias=False)
        self.fc2 = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, d) -> (batch, d)
        return self.fc2(F.relu(self.fc1(x)))


class ResidualBlock(nn.Module):
    """x -> x + F(x), with F a PlainBlock: the identity path carries the gradient past F."""

    def __init__(self, d: int):
        super().__init__()
        self.f = PlainBlock(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, d) -> (batch, d)
        return x + self.f(x)


BLOCK_TYPES: dict[str, type[nn.Module]] = {"plain": PlainBlock, "residual": ResidualBlock}


def build(block: str, d: int) -> nn.Module:
    """The network of one run: a block of the named kind, of width d."""
    return BLOCK_TYPES[block](d)


def first_fc1(net: nn.Module) -> nn.Linear:
    """The fc1 nearest the input: its output is the a1 whose gradient the study reports."""
    return next(m for name, m in net.named_modules() if name.endswith("fc1"))
