"""The batched engine's kernels: the draw of a stack of configurations, and their forward and backward passes.

Same study, same numbers as the reference engine (cnnexp/engine/reference.py), without its per-run costs:

    for each configuration b:  seed, x[b] = randn(batch, d), then each weight in order (fc1, fc2 per block)
                               = small_init * randn(d, d)                      drawn once, in float32,
                                                                               shared by every block kind
    for each block kind:       h = x                                           (B, batch, d)
                               a1 = h @ W1^T           (torch.bmm over the B configurations)
                               h = kind.out(h, F(h or LayerNorm(h)), alpha)    (schema.BLOCK_KINDS)
                               loss[b] = mean(h[b]^2);  backpropagate sum(loss)   (rows are independent, so
                                                                                   each gets its own gradient)

No nn.Module is built, so no default init is drawn and thrown away; the draw goes straight into the stacked
tensors. Every norm is taken per configuration by cnnexp.norms, as in the reference engine. Training
(cnnexp/engine/train.py) and the driver (cnnexp/engine/batched.py) build on these.
"""
from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import torch

from cnnexp import norms
from cnnexp.blocks import ACTIVATIONS, normalise
from cnnexp.config import RunConfig
from cnnexp.schema import BLOCK_KIND, TEACHER_TARGETS

PIECE = 16  # torch's CPU normal draw makes its numbers 16 at a time, each 16 from the next 16 uniform ones

Tensor = torch.Tensor
Place = tuple[Tensor, Callable[..., Any]]  # a tensor to fill, and how: how(numbers, out=part of it)
Gram = tuple[Tensor, Tensor | float]  # norms.gram's: the Gram matrices and their scale


class Drawn(NamedTuple):
    """A stack's draw, float32: x (B, batch, d), the weights fc1_0, fc2_0, fc1_1, ... each (B, d, d), and, where
    a configuration of the stack has a teacher target, the teachers T1, T2 (B, d, d) (zero for the others)."""

    x: Tensor
    weights: list[Tensor]
    teachers: list[Tensor]


def draw_stacks(stacks: Sequence[Sequence[RunConfig]]) -> list[Drawn]:
    """Each configuration's draw, exactly as the notebook makes it, written straight into stacked tensors: one
    Drawn per stack (a list of configurations of one shape).

    The notebook seeds, then draws x (batch, d), each weight (d, d) = small_init * randn in order and, for a
    teacher target, the teacher's two (d, d) = randn / sqrt(d). So configurations of one seed draw prefixes of
    the same stream of numbers, whatever their shapes, cut into pieces of their sizes. Where every piece's size
    is a multiple of PIECE, pieces drawn in turn are bit for bit the slices of one draw of their total (torch
    fills 16 at a time, from as many uniform numbers; tests/test_engine_batched.py holds this). So each seed's
    stream is drawn once, as long as its longest configuration needs, a cache-sized piece at a time, and each
    piece is written into every configuration it belongs to. A configuration with other sizes shares its draw
    only with those of its seed that draw the same sizes.
    """
    drawn = [_empty(configs) for configs in stacks]
    streams: dict[tuple[Any, ...], list[list[Place]]] = {}  # stream -> each of its configurations' places
    for configs, (x, weights, teachers) in zip(stacks, drawn):
        for b, config in enumerate(configs):
            places: list[Place] = [(x[b], _copy)]
            places += [(w[b], partial(torch.mul, other=config.weight_std)) for w in weights]
            if config.target in TEACHER_TARGETS:
                places += [(t[b], partial(torch.div, other=math.sqrt(config.d))) for t in teachers]
            sizes = tuple(place.numel() for place, _ in places)
            shared = all(size % PIECE == 0 for size in sizes)
            streams.setdefault((config.seed,) if shared else (config.seed, sizes), []).append(places)
    for key, members in streams.items():
        _draw_stream(key[0], members)
    return drawn


def _empty(configs: Sequence[RunConfig]) -> Drawn:
    first = configs[0]
    b, batch, d, f32 = len(configs), first.batch, first.d, torch.float32
    teachers = any(c.target in TEACHER_TARGETS for c in configs)
    return Drawn(torch.empty(b, batch, d, dtype=f32), [torch.empty(b, d, d, dtype=f32) for _ in range(2 * first.depth)],
                 [torch.zeros(b, d, d, dtype=f32) for _ in range(2)] if teachers else [])


def _draw_stream(seed: int, members: list[list[Place]]) -> None:
    """Seed, then draw the pieces of the member that draws the most (in turn, each while in cache) and write
    every member's share of each."""
    torch.default_generator.manual_seed(seed)  # (torch.manual_seed also seeds CUDA/MPS lazily: 1 ms a call)
    sizes = [[place.numel() for place, _ in places] for places in members]
    offsets = [list(itertools.accumulate(s, initial=0)) for s in sizes]  # where each place starts, and the end
    longest = max(range(len(members)), key=lambda m: offsets[m][-1])
    scratch = torch.empty(max(sizes[longest]), dtype=torch.float32)
    for start, size in zip(offsets[longest], sizes[longest]):
        piece = torch.randn(size, out=scratch[:size])
        for places, starts in zip(members, offsets):
            _write(piece, start, places, starts)


def _write(piece: Tensor, start: int, places: list[Place], starts: list[int]) -> None:
    """Write the numbers of `piece` (which starts at `start` in the stream) into the places that take them,
    each place a (tensor, how) pair with how(numbers, out=part of the tensor), the i-th starting at starts[i]
    in the stream (and the last ending at starts[-1])."""
    end = start + len(piece)
    i = max(bisect.bisect_right(starts, start) - 1, 0)  # the first place that can take some of it
    while i < len(places) and starts[i] < end:
        (place, how), lo, hi = places[i], max(starts[i], start), min(starts[i + 1], end)
        if lo < hi:
            how(piece[lo - start:hi - start], out=place.view(-1)[lo - starts[i]:hi - starts[i]])
        i += 1


def _copy(numbers: Tensor, out: Tensor) -> None:
    out.copy_(numbers)


def draw_stack(configs: Sequence[RunConfig]) -> Drawn:
    """One stack's draw (see `draw_stacks`)."""
    return draw_stacks([configs])[0]


class Layer(NamedTuple):
    """One block index of a stack, as the forward pass made it: fc1's input, a1 = fc1(inp), hidden = act(a1),
    f = fc2(hidden), and the block's output."""

    inp: Tensor
    a1: Tensor
    hidden: Tensor
    f: Tensor
    out: Tensor


def normalises(kinds: Sequence[str]) -> bool:
    """Whether any of the kinds normalises F's input (then the first block's inputs differ between kinds)."""
    return any(BLOCK_KIND[kind].normalised for kind in kinds)


def gated(kinds: Sequence[str]) -> bool:
    """Whether any of the kinds has a gate (a parameter besides the weights)."""
    return any(BLOCK_KIND[kind].gated for kind in kinds)


def forward(kinds: Sequence[str], activation: str, x: Tensor, w1s: Sequence[Tensor], w2s: Sequence[Tensor],
            alphas: Sequence[Tensor]) -> list[Layer]:
    """The networks of `len(w1s)` blocks of each kind in `kinds`, on one stack, with the same weights.

    x is (B, K n, d): rows [k n, (k + 1) n) are kind k's copy of the batch. A network treats each row on its
    own, so each kind's loss, and so its gradient, depends on its own rows only. Each kind's rows go through
    matmuls of their own (`_linear`), except the first block's where every kind sees x: those are made once
    (`_SameRows`). Returns the layers in order.
    """
    act = ACTIVATIONS[activation]
    k = len(kinds)
    n = x.shape[1] // k
    entries = [BLOCK_KIND[kind] for kind in kinds]
    normalised = normalises(kinds)
    h, layers = x, []
    for i, (w1, w2, alpha) in enumerate(zip(w1s, w2s, alphas, strict=True)):
        # the first block sees x in every kind but a normalised one: there its matmuls are made once for all kinds
        linear: Callable[..., Tensor] = _SameRows.apply if i == 0 and k > 1 and not normalised else _linear
        parts = torch.split(h, n, dim=1)
        inp = h if not normalised else _joined(
            [normalise(p) if kind.normalised else p for kind, p in zip(entries, parts)])
        a1 = linear(inp, w1, k)  # (B, K n, d): fc1 of each configuration
        hidden = act(a1)
        f = linear(hidden, w2, k)  # F(inp)
        h = _joined([kind.out(p, q, alpha) for kind, p, q in zip(entries, parts, torch.split(f, n, dim=1))])
        layers.append(Layer(inp, a1, hidden, f, h))
    return layers


def _linear(x: Tensor, w: Tensor, k: int = 1) -> Tensor:
    """A bias-free linear layer on a stack: x (B, k n, d) @ w^T, w (B, d_out, d), each kind's n rows by a matmul
    of their own, forward and backward, so each kind rounds as it would alone (a matmul over more rows is
    rounded otherwise in the last bit, and a cancelling sum such as rezero's gate gradient magnifies that)."""
    return _joined([torch.bmm(p, w.transpose(1, 2)) for p in torch.split(x, x.shape[1] // k, dim=1)])


class _SameRows(torch.autograd.Function):
    """`_linear` for an x whose k blocks of rows are equal (every kind's copy of one input): one block is
    multiplied and the product repeated, a k-th of the work. The backward is a linear layer's own, grad @ w,
    for each kind's rows, so each kind's gradient stays its own. Only for weights that take no gradient (the
    study at init: no update)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, k: int) -> Tensor:
        ctx.save_for_backward(w)
        ctx.k = k
        return _linear(x[:, :x.shape[1] // k], w).repeat(1, k, 1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        if ctx.needs_input_grad[1]:
            raise RuntimeError("_SameRows takes no weight gradient")
        (w,) = ctx.saved_tensors
        return _joined([torch.bmm(g, w) for g in torch.split(grad, grad.shape[1] // ctx.k, dim=1)]), None, None


def _joined(parts: Sequence[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(list(parts), dim=1)


class Gradients(NamedTuple):
    """One kind's part of `gradients`: the loss's difference out - y, and, as asked, the parameters' gradients
    (for an update) and what the metrics need."""

    diff: Tensor  # out - y (B, n, d)
    gparams: tuple[Tensor, ...] | None = None  # with update: the weights' gradients, then a gated kind's gates'
    param_norms: Tensor | None = None  # with inputs: each parameter's norm (B, n params) float64
    gx: Tensor | None = None  # with inputs: the gradient at x
    ga1: list[Tensor] | None = None  # with inputs: the gradient at each a1
    gout: list[Tensor] | None = None  # with inputs: the gradient at each block's output
    gparam_norms: Tensor | None = None  # with inputs: each parameter's gradient norm (B, n params) float64


def measure(kinds: Sequence[str], activation: str, x: Tensor, weights: Sequence[Tensor], alphas: Sequence[Tensor],
            layers: bool, y: Tensor | None = None) -> list[tuple[Tensor, Tensor | None]]:
    """The study at init: forward and backward every kind on a stack in one pass. Per kind, the metrics as a
    (B, k) float64 tensor and the per-layer metrics as (B, depth, 4) (or None). The loss is mean((out - y)^2),
    the notebook's mean(out^2) when y is None."""
    return [metrics(g, layers) for g in gradients(kinds, activation, x, weights, alphas, y, update=False)]


def gradients(kinds: Sequence[str], activation: str, x: Tensor, weights: Sequence[Tensor], alphas: Sequence[Tensor],
              y: Tensor | None = None, inputs: bool = True, update: bool = True) -> list[Gradients]:
    """Forward and backward every kind on a stack (see `forward`): loss[b, k] = mean((out[b, k] - y[b])^2)
    (y = 0 when None); backpropagate their sum. Returns one Gradients per kind.

    Each holds the loss's difference `diff` = out - y. With `update` (one kind only: an update parts the kinds'
    weights), also the parameters' gradients `gparams` (weights, then the gates), for a training step.
    With `inputs`, what the metrics need: the norm of each parameter (`param_norms`, (B, n) float64), the
    gradients at x (`gx`), at each a1 (`ga1`) and at each block output (`gout`), and each parameter's gradient
    norm (`gparam_norms`, (B, n) float64). A weight's gradient is g^T h (g the gradient at its layer's output, h the
    layer's input): when no update needs it, its norm comes from g and h (`norms.product_norm`) and autograd is
    spared the matmuls that would form it.
    """
    if update and len(kinds) > 1:
        raise ValueError("kinds train apart: their weights part after the first update")
    k, n = len(kinds), x.shape[1]
    has_gates = gated(kinds)
    x = (x if k == 1 else x.repeat(1, k, 1)).detach().requires_grad_(inputs)
    weights = [w.detach().requires_grad_(update) for w in weights]
    alphas = [a.detach().requires_grad_(has_gates) for a in alphas]
    with torch.enable_grad():
        layers = forward(kinds, activation, x, weights[0::2], weights[1::2], alphas)
        out = layers[-1].out
        diff = out if y is None else out - (y if k == 1 else y.repeat(1, k, 1))  # (B, K n, d)
        loss = torch.unflatten(diff.pow(2), 1, (k, n)).mean(dim=(2, 3))  # (B, K): the notebook's mean(out^2) per kind
        asked = [x, *(layer.a1 for layer in layers), *(layer.out for layer in layers)] if inputs else []
        if inputs and not update:
            asked += [layer.f for layer in layers]
        gates = alphas if has_gates else []
        grads = torch.autograd.grad(loss.sum(), asked + (weights if update else []) + gates)
    shared: list[Gram | None] | None = None
    weight_norms = gate_norms = None
    if inputs:  # the parameters' norms, for the metrics: the same weights for every kind
        weight_norms = torch.stack([norms.norm(w) for w in weights], dim=1)
        gate_norms = torch.stack([norms.norm(a) for a in alphas], dim=1)
        if not update and not normalises(kinds):  # the first block's inputs are the same rows in every kind
            shared = [norms.gram(h[:, :n]) if norms.uses_gram(n, h.shape[2], h.shape[2]) else None
                      for h in (layers[0].inp, layers[0].hidden)]  # (the Grams its weight norms take)
    found = []
    for i, kind in enumerate(kinds):
        rows = slice(i * n, (i + 1) * n)
        gparams = tuple(grads[len(asked):]) if update else None  # (one kind: its weights', then its gates')
        g = Gradients(diff[:, rows].detach(), gparams)
        if inputs:
            assert weight_norms is not None and gate_norms is not None
            gate = BLOCK_KIND[kind].gated
            param_norms = torch.cat([weight_norms, gate_norms], dim=1) if gate else weight_norms
            g = _inputs(g, gate, layers, grads, rows, grads[len(grads) - len(gates):], shared)._replace(
                param_norms=param_norms)
        found.append(g)
    return found


def _inputs(g: Gradients, gate: bool, layers: list[Layer], grads: Sequence[Tensor], rows: slice,
            ggates: Sequence[Tensor], shared: list[Gram | None] | None = None) -> Gradients:
    """One kind's gradients at x, at each a1 and each block output, and each parameter's gradient norm (given
    `shared`, the Gram matrices of the first block's two inputs, where every kind has the same)."""
    depth = len(layers)
    gx, ga1, gout = grads[0], grads[1:1 + depth], grads[1 + depth:1 + 2 * depth]
    g = g._replace(gx=gx[:, rows], ga1=[t[:, rows] for t in ga1], gout=[t[:, rows] for t in gout])
    if g.gparams is not None:
        return g._replace(gparam_norms=torch.stack([norms.norm(t) for t in g.gparams], dim=1))
    gf = grads[1 + 2 * depth:1 + 3 * depth]
    weight_norms = [norms.product_norm(t[:, rows], h[:, rows], shared[j] if shared and i == 0 else None)
                    for i, (layer, g1, g2) in enumerate(zip(layers, ga1, gf))
                    for j, (t, h) in enumerate(((g1, layer.inp), (g2, layer.hidden)))]
    gate_norms = [norms.norm(t) for t in ggates] if gate else []
    return g._replace(gparam_norms=torch.stack(weight_norms + gate_norms, dim=1))


def metrics(g: Gradients, layers: bool) -> tuple[Tensor, Tensor | None]:
    """The metrics of one kind of `gradients(..., inputs=True)` as a (B, k) float64 tensor (in STEP_METRICS
    order), and the per-layer metrics as (B, depth, 4) (or None)."""
    gx, ga1, gout, gparam_norms, param_norms = g.gx, g.ga1, g.gout, g.gparam_norms, g.param_norms
    if gx is None or ga1 is None or gout is None or gparam_norms is None or param_norms is None:
        raise ValueError("metrics need gradients(..., inputs=True)")
    found = torch.stack([
        norms.mean_square(g.diff),  # loss
        norms.norm(gx),  # x_grad_norm
        norms.norm(ga1[0]),  # a1_grad_norm
        norms.total(param_norms),  # w_norm
        norms.total(gparam_norms),  # param_grad_norm
        norms.cosine(gx, gout[-1]),  # cos_x_out
    ], dim=1)
    per_layer = None
    if layers:
        per_layer = torch.stack([
            torch.stack([norms.norm(ga1[i]), gparam_norms[:, 2 * i], gparam_norms[:, 2 * i + 1],
                         norms.norm(gout[i])], dim=1)
            for i in range(len(ga1))], dim=1)  # (B, depth, 4)
    return found, per_layer
