"""The blocks of the study and the networks built from them.

With F(x) = fc2(act(fc1(x))), two bias-free Linear(d, d) layers:

    plain:     y = F(x)
    residual:  y = x + F(x)                 the identity path carries the gradient past F
    rezero:    y = x + alpha * F(x)         alpha a learnable scalar, starting at alpha_init (ReZero, SkipInit)
    prenorm:   y = x + F(LayerNorm(x))      normalised input to F, no affine parameters (pre-LN residual)

A network is `depth` blocks of one kind in sequence. The kinds are the entries of schema.BLOCK_KINDS (what
each skips, gates and normalises); `Block` builds any of them, so a block is defined once for both engines.

    >>> import torch
    >>> from cnnexp.config import RunConfig
    >>> net = build("residual", RunConfig(d=4, depth=3))
    >>> net(torch.zeros(2, 4)).shape, len(linear_weights(net))
    (torch.Size([2, 4]), 6)
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnexp.config import RunConfig
from cnnexp.schema import BLOCK_KIND, BlockKind

Activation = Callable[[torch.Tensor], torch.Tensor]
ACTIVATIONS: dict[str, Activation] = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class PlainBlock(nn.Module):
    """x -> fc2(act(fc1(x)))."""

    def __init__(self, d: int, activation: str = "relu"):
        super().__init__()
        self.fc1 = nn.Linear(d, d, bias=False)
        self.fc2 = nn.Linear(d, d, bias=False)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, d) -> (batch, d)
        out: torch.Tensor = self.fc2(self.act(self.fc1(x)))
        return out


def normalise(x: torch.Tensor) -> torch.Tensor:
    """A normalised kind's input to F: LayerNorm over the features, no affine parameters."""
    return F.layer_norm(x, x.shape[-1:])


class Block(nn.Module):
    """One block of a kind of schema.BLOCK_KINDS: x -> kind.out(x, F(x or normalise(x)), alpha), F a
    PlainBlock; a gated kind's alpha starts at alpha_init (with alpha = 0 the block starts as the identity)."""

    def __init__(self, kind: BlockKind, d: int, activation: str = "relu", alpha_init: float = 0.0):
        super().__init__()
        self.kind = kind
        self.f = PlainBlock(d, activation)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init))) if kind.gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.kind.out(x, self.f(normalise(x) if self.kind.normalised else x), self.alpha)
        return out


def build(block: str, config: RunConfig) -> nn.Sequential:
    """The network of one run: `config.depth` blocks of the named kind, in the run's dtype."""
    if block not in BLOCK_KIND:
        raise ValueError(f"unknown block {block!r}")
    kind = BLOCK_KIND[block]
    blocks = (Block(kind, config.d, config.activation, config.alpha_init) for _ in range(config.depth))
    return nn.Sequential(*blocks).to(DTYPES[config.dtype])


def linear_weights(net: nn.Module) -> list[nn.Parameter]:
    """The weights the study redraws, in the notebook's order: block by block, fc1 then fc2.

    For plain and residual networks these are all the parameters, in `parameters()` order; a rezero gate
    keeps its alpha_init.
    """
    return [m.weight for m in net.modules() if isinstance(m, nn.Linear)]  # type: ignore[misc]


def fc1_of(block: nn.Module) -> nn.Linear:
    """The first Linear layer of a block: its output is the block's a1."""
    return next(m for m in block.modules() if isinstance(m, nn.Linear))
