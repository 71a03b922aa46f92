"""The walk: an input through a chain of layers, repeats and residual blocks, giving each row's shape,
parameters, MACs, receptive field, jump and activations, the totals, and the inference memory peak.

    >>> net = chain_shape("3x56x56", [{"residual": ["conv:out=3,k=3,p=1", "bn"]}, "relu"])
    >>> [(r.path, r.params) for r in net.rows]
    [('1.residual.1', 84), ('1.residual.2', 6), ('1', 90), ('2', 0)]
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cnnexp import examples
from cnnexp.errors import CnnexpError, ConfigError, ShapeError, param
from cnnexp.shapes.layers import step
from cnnexp.shapes.parse import MAX_LAYERS, Repeat, Residual, count_rows, load_chain, parse_items, single_conv
from cnnexp.shapes.types import DTYPES, ChainShape, LayerShape, View, dims, numel, parse_input, tidy


@dataclass
class _Walk:
    """What the walk gathers: the rows, and the memory peak of an inference forward."""

    rows: list
    peak: int = 0
    peak_at: str = ""

    def live(self, elements: int, path: str) -> None:
        if elements > self.peak:
            self.peak, self.peak_at = elements, path


def chain_shape(input: str | tuple, specs: list, dtype: str = "float32") -> ChainShape:
    """Follow an input through a chain, refusing whatever PyTorch would refuse.

    Args:
        input: `CxHxW` text or a (C, H, W) tuple.
        specs: the chain's items in order: spec strings, `{"repeat": N, "layers": [...]}` and
            `{"residual": [...], "shortcut": [...]}` (see docs/conv-shape.md).
        dtype: float32, float16 or bfloat16: the bytes per element of the memory figures.

    Returns:
        A row per layer and per block, the totals, and the memory figures.

    Raises:
        ConfigError: a malformed input, spec or block, or an unknown dtype.
        ShapeError: a layer PyTorch would refuse, or a residual block whose two branches do not match, with
            the layer's path, spec and the reason.
    """
    _check_dtype(dtype)
    shape = parse_input(input) if isinstance(input, str) else tuple(input)
    if not specs:
        raise ConfigError(f"no layers: give at least one {param('layers')} (or a SIZE and {param('kernel')})")
    nodes = parse_items(specs)
    if count_rows(nodes) > MAX_LAYERS:
        raise ConfigError(f"the chain expands to {count_rows(nodes):,} rows, more than {MAX_LAYERS:,}; "
                          "lower a repeat count")
    walk = _Walk([])
    view = View(shape, input_size=shape[1:] if len(shape) == 3 else (1, 1))
    walk.live(numel(shape), "input")
    view, _ = _walk(nodes, "", view, 0, False, walk)
    layers = [r for r in walk.rows if not r.is_block]
    n_in, n_out = numel(shape), numel(view.shape)
    return ChainShape(
        input=shape,
        rows=tuple(walk.rows),
        output=view.shape,
        params=sum(r.params for r in layers),
        macs=sum(r.macs for r in layers),
        dense_params=n_in * n_out + n_out,
        receptive_field=view.receptive_field,
        jump=view.jump,
        activations=sum(r.activations for r in walk.rows if "." not in r.path),
        peak=walk.peak,
        peak_at=walk.peak_at,
        # torchinfo: twice (forward and backward) the outputs of the layers that have parameters
        forward_backward=2 * sum(r.activations for r in layers if r.params),
        dtype=dtype,
    )


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"{param('dtype')} {dtype!r}: use one of {', '.join(DTYPES)}")


def _walk(nodes, prefix: str, view: View, held: int, input_held: bool, walk: _Walk) -> tuple[View, bool]:
    """Walk `nodes` from `view`, appending rows to `walk.rows`.

    Memory (per sample, in elements): while a layer runs, its input and output are alive, plus `held` (the
    tensors kept for pending residual adds); its input is not counted twice when it is one of those
    (`input_held`). Every layer writes a new tensor (nothing in place).

    Returns:
        The view after the nodes, and whether the current tensor is still held by an enclosing block.
    """
    for i, node in enumerate(nodes, 1):
        path = f"{prefix}{i}"
        if isinstance(node, Repeat):
            first = len(walk.rows)
            for r in range(1, node.times + 1):
                view, input_held = _walk(node.body, f"{path}.{r}.", view, held, input_held, walk)
            walk.rows.append(_total(walk.rows[first:], path, f"repeat x{node.times} (total)", "repeat", view, 0))
        elif isinstance(node, Residual):
            view = _residual(node, path, view, held, input_held, walk)
            input_held = False
        else:
            where = f"layer {path} {node.spec!r}"
            out, params, macs, formula = step(node, where, view)
            n = numel(out.shape)
            walk.live(held + (0 if input_held else numel(view.shape)) + n, path)
            walk.rows.append(LayerShape(node.spec, out.shape, params, macs, out.receptive_field, out.jump,
                                        formula, path, node.kind, n))
            view, input_held = out, False
    return view, input_held


def _residual(node: Residual, path: str, x: View, held: int, input_held: bool, walk: _Walk) -> View:
    """branch(x) + shortcut(x): both must give the same shape; the field and jump are the longer path's."""
    first = len(walk.rows)
    x_size = numel(x.shape)
    kept = held + (0 if input_held else x_size)  # x stays alive for the shortcut
    a, _ = _walk(node.branch, f"{path}.residual.", x, kept, True, walk)
    b, _ = _walk(node.shortcut, f"{path}.shortcut.", x, held + numel(a.shape), input_held, walk)
    if a.shape != b.shape:
        shortcut = "the identity shortcut" if not node.shortcut else "the shortcut"
        raise ShapeError(f"block {path} (residual): the residual branch gives {dims(a.shape)} but {shortcut} "
                         f"gives {dims(b.shape)}; they must match to be added")
    n = numel(a.shape)
    # the add: both operands and the sum alive (x itself, when it is the identity shortcut, is b)
    walk.live(held + (0 if input_held and not node.shortcut else numel(b.shape)) + 2 * n, path)
    out = _union(a, b)
    walk.rows.append(_total(walk.rows[first:], path, "residual (total)", "residual", out, n))
    return out


def _union(a: View, b: View) -> View:
    """The field of a sum: per axis, the span of both branches' fields where they move alike (the same jump);
    else the longer path's."""
    fields = []
    for axis in (0, 1):
        if a.jump[axis] != b.jump[axis]:
            longer = max((a, b), key=lambda v: v.receptive_field[axis])
            fields.append((longer.receptive_field[axis], longer.jump[axis], longer.start[axis]))
            continue
        start = min(a.start[axis], b.start[axis])
        end = max(v.start[axis] + v.receptive_field[axis] for v in (a, b))
        fields.append((end - start, a.jump[axis], start))
    rf, jump, start = (tuple(tidy(f[i]) for f in fields) for i in range(3))
    return replace(a, receptive_field=rf, jump=jump, start=start)


def _total(rows: list, path: str, label: str, kind: str, view: View, add: int) -> LayerShape:
    """A block's total row: its layers' params, MACs and activations (plus the add's output)."""
    depth = path.count(".") + 2  # the rows of this block's own children (not their blocks' totals)
    mine = [r for r in rows if r.path.count(".") == depth]
    return LayerShape(label, view.shape, sum(r.params for r in mine), sum(r.macs for r in mine),
                      view.receptive_field, view.jump, ("", ""), path, kind,
                      sum(r.activations for r in mine) + add)


def shape_from_flags(
    size: str | None = None,
    kernel: str | None = None,
    stride: str = "1",
    padding: str = "0",
    dilation: str = "1",
    in_channels: int = 1,
    out_channels: int | None = None,
    input: str | None = None,
    layers: list[str] | None = None,
    path: str | Path | None = None,
    dtype: str = "float32",
) -> ChainShape:
    """`conv-shape`'s three ways in: one layer (SIZE and flags), `--layer`s, or a `--from` file.

    Args:
        size ... out_channels: one conv layer, as for `single_conv`; `kernel` is required with `size`.
        input: `CxHxW` for a chain; overrides the file's `input`.
        layers: layer specs for a chain.
        path: a chain file (see `load_chain`).
        dtype: the element type of the memory figures.

    Returns:
        The `chain_shape` of whichever form was given.

    Raises:
        ConfigError: no form, or two at once, or a form missing its input or kernel.
        ShapeError: a layer PyTorch would refuse.
    """
    _check_dtype(dtype)
    if size is not None:
        if layers or path or input is not None:
            raise ConfigError(f"give either SIZE (one conv layer) or {param('input')} with "
                              f"{param('layers')}/{param('path')} (a chain), not both")
        if kernel is None:
            raise ConfigError(f"SIZE needs {param('kernel')}, e.g. cnnexp conv-shape 224 --kernel 3")
        input, layers = single_conv(size, kernel, stride, padding, dilation, in_channels, out_channels)
    elif path is not None:
        if layers:
            raise ConfigError(f"give the layers either with {param('layers')} or in the {param('path')} file, not both")
        if input is not None:
            parse_input(input)  # a bad --input is the flag's fault, so its message names the flag, not the file
        if not Path(path).exists() and examples.is_name(str(path)) and str(path) in examples.nets():
            path = examples.nets()[str(path)]  # `--from resnet18`: the shipped configs/nets/resnet18.yaml
        file_input, layers = load_chain(path)
        input = file_input if input is None else input  # the flag overrides the file
        if input is None:
            raise ConfigError(f"{path}: no 'input' in the file; add input: CxHxW or pass {param('input')}")
        try:
            return chain_shape(input, layers, dtype)
        except CnnexpError as e:  # the layer numbers count the file's layers: say which file
            raise type(e)(f"{path}: {e.args[0]}") from None
    elif not layers:
        raise ConfigError(f"nothing to compute: give SIZE {param('kernel')} K, or {param('input')} CxHxW with "
                          f"{param('layers')} ... or {param('path')}")
    elif input is None:
        raise ConfigError(f"{param('layers')} needs {param('input')} CxHxW, e.g. {param('input')} 3x224x224")
    return chain_shape(input, layers, dtype)
