"""Each layer kind's rules: the keys it takes, and what it does to a `View` (shape, parameters, MACs,
receptive field and jump), refusing whatever PyTorch refuses.

    >>> from cnnexp.shapes.parse import parse_layer
    >>> view, params, macs, _ = step(parse_layer("conv:out=64,k=7,s=2,p=3"), "layer 1", View((3, 224, 224)))
    >>> view.shape, params, macs
    ((64, 112, 112), 9472, 118013952)

Conventions where PyTorch has no opinion:
- MACs (multiply-accumulates per sample), as torch's flop counter counts them (its flops / 2): conv = output
  elements x in/groups x kh x kw; convT = input elements x out/groups x kh x kw; linear = in x out. Bias
  additions, batch norm, activations, pools, upsampling and residual adds count 0.
- Receptive field and jump (effective stride, in input pixels) per axis: `r += d(k-1) * jump; jump *= s` for
  conv and pools. A transposed conv or an upsample divides first: `jump /= s; r += d(k-1) * jump`, which can
  give fractional values. An adaptive pool counts as a pool with its largest window and stride H/out. Where
  one element sees the whole map (an adaptive pool to 1, a linear layer after a flatten), its field is the
  input pixels it really depends on: the span of the whole map's fields, within the input.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import gcd

from cnnexp.errors import ShapeError
from cnnexp.shapes.types import INT64_MAX, Pair, View, check_numel, dims, fmt, tidy

# Key types: what a value must look like (parse.py reads them).
INT, PAIR, PADDING, BOOL, PROB, FLOAT = "int", "pair", "padding", "bool", "probability", "float"
_CONV = {"out": INT, "k": PAIR, "s": PAIR, "p": PADDING, "d": PAIR, "groups": INT, "bias": BOOL}
_INPLACE = {"inplace": BOOL}  # accepted where PyTorch has it; it changes no figure here

# The keys each kind takes, with their types; `s` falls back to 1 for convolutions, to the kernel for pools.
KINDS: dict[str, dict[str, str]] = {
    "conv": _CONV,                                                                 # nn.Conv2d
    "maxpool": {"k": PAIR, "s": PAIR, "p": PADDING, "d": PAIR, "ceil": BOOL},      # nn.MaxPool2d
    "avgpool": {"k": PAIR, "s": PAIR, "p": PADDING, "ceil": BOOL},                 # nn.AvgPool2d
    "convT": {**_CONV, "op": PAIR},                                                # nn.ConvTranspose2d
    "adaptiveavgpool": {"out": PAIR},                                              # nn.AdaptiveAvgPool2d
    "adaptivemaxpool": {"out": PAIR},                                              # nn.AdaptiveMaxPool2d
    "upsample": {"scale": PAIR},                                                   # nn.Upsample, nearest
    "bn": {"affine": BOOL, "eps": FLOAT, "momentum": PROB},          # nn.BatchNorm2d (BatchNorm1d when flat)
    "identity": {},                                                                # nn.Identity
    "relu": _INPLACE,
    "relu6": _INPLACE,
    "gelu": {},
    "sigmoid": {},
    "tanh": {},
    "silu": _INPLACE,
    "hardswish": _INPLACE,
    "leakyrelu": {"slope": FLOAT, "inplace": BOOL},
    "dropout": {"p": PROB, "inplace": BOOL},
    "flatten": {},                                                                 # nn.Flatten()
    "linear": {"out": INT, "bias": BOOL, "in": INT},                               # nn.Linear
}
REQUIRED = {  # key -> the hint when it is missing
    "conv": {"k": "the kernel size, e.g. k=3", "out": "the output channels, e.g. out=64"},
    "convT": {"k": "the kernel size, e.g. k=3", "out": "the output channels, e.g. out=64"},
    "maxpool": {"k": "the kernel size, e.g. k=3"},
    "avgpool": {"k": "the kernel size, e.g. k=3"},
    "adaptiveavgpool": {"out": "the output size, e.g. out=1 or out=7x7"},
    "adaptivemaxpool": {"out": "the output size, e.g. out=1 or out=7x7"},
    "upsample": {"scale": "the scale factor, e.g. scale=2"},
    "linear": {"out": "the output features, e.g. out=1000"},
}
ALIASES = {"batchnorm": "bn", "batchnorm2d": "bn", "fc": "linear", "dense": "linear", "convtranspose": "convT",
           "conv2d": "conv", "maxpool2d": "maxpool", "avgpool2d": "avgpool", "upsampling": "upsample"}
CONVOLUTIONS = ("conv", "convT")
POOLS = ("maxpool", "avgpool")
ADAPTIVE = ("adaptiveavgpool", "adaptivemaxpool")
ELEMENTWISE = ("identity", "relu", "relu6", "gelu", "sigmoid", "tanh", "silu", "hardswish", "leakyrelu", "dropout")
SPATIAL = (*CONVOLUTIONS, *POOLS, *ADAPTIVE, "upsample")  # need a C x H x W input


@dataclass(frozen=True)
class Layer:
    """One parsed layer spec. `padding` is None when the spec says `p=same`."""

    spec: str  # as the user wrote it
    kind: str  # a key of KINDS
    kernel: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: Pair | None = (0, 0)
    dilation: Pair = (1, 1)
    output_padding: Pair = (0, 0)
    out: int | None = None  # output channels (convolutions) or features (linear)
    groups: int = 1
    bias: bool = True
    ceil: bool = False
    size: Pair | None = None  # an adaptive pool's output H x W
    scale: Pair = (1, 1)  # an upsample's factor
    affine: bool = True  # a batch norm's learnt scale and shift
    p: float = 0.5  # a dropout's probability
    eps: float = 1e-5  # a batch norm's epsilon
    momentum: float = 0.1  # a batch norm's momentum (for its running statistics)
    slope: float = 0.01  # a leaky ReLU's negative slope
    features_in: int | None = None  # a linear layer's `in`, when the spec states it (checked against the input)


def step(layer: Layer, where: str, view: View) -> tuple[View, int, int, tuple[str, str]]:
    """What one layer does to its input.

    Args:
        layer: the parsed layer.
        where: names the layer in messages, e.g. "layer 3.residual.2 'conv:out=64,k=3'".
        view: the input's shape, receptive field, jump and (flat inputs) the grid not yet mixed.

    Returns:
        The output's view, the parameters (as `sum(p.numel() for p in module.parameters())`), the MACs, and
        the size formula filled in for height and width (empty for kinds without one).

    Raises:
        ShapeError: a layer PyTorch would refuse on this input, with the reason.
    """
    shape, kind = view.shape, layer.kind
    flat = len(shape) == 1
    if kind in SPATIAL and flat:
        raise ShapeError(f"{where}: {kind} needs a C x H x W input, but its input is flat ({shape[0]}); "
                         "put it before the flatten")
    if kind == "linear":
        if not flat:
            raise ShapeError(f"{where}: linear takes a flat input, but gets {dims(shape)}; put a flatten before "
                             f"it (giving {shape[0] * shape[1] * shape[2]})")
        return _linear(layer, where, view)
    if kind == "flatten":
        grid = view.grid if flat else shape[1:]
        n = shape[0] if flat else shape[0] * shape[1] * shape[2]
        return replace(view, shape=(n,), grid=grid), 0, 0, ("", "")
    if kind in ELEMENTWISE:
        if kind == "dropout" and not 0 <= layer.p <= 1:
            raise ShapeError(f"{where}: p={layer.p:g} must be between 0 and 1, as PyTorch's Dropout requires")
        return view, 0, 0, ("", "")
    if kind == "bn":
        return view, 2 * shape[0] if layer.affine else 0, 0, ("", "")
    if kind in ADAPTIVE:
        return _adaptive(layer, where, view)
    if kind == "upsample":
        return _upsample(layer, where, view)
    return _window(layer, where, view)


def _linear(layer: Layer, where: str, view: View) -> tuple[View, int, int, tuple[str, str]]:
    n_in, n_out = view.shape[0], layer.out
    if n_out < 1:
        raise ShapeError(f"{where}: out={n_out} features; PyTorch needs at least 1")
    if layer.features_in is not None and layer.features_in != n_in:
        raise ShapeError(f"{where}: in={layer.features_in}, but the flat input has {n_in} features")
    check_numel((n_out, n_in), f"{where}: the weight", ShapeError)
    # every output feature sees the whole grid the flatten laid out: a global pool's window
    out = _field(replace(view, shape=(n_out,), grid=(1, 1)), [_whole(view, a, g) for a, g in enumerate(view.grid)])
    return out, n_out * n_in + (n_out if layer.bias else 0), n_in * n_out, ("", "")


def _adaptive(layer: Layer, where: str, view: View) -> tuple[View, int, int, tuple[str, str]]:
    c, h, w = view.shape
    if min(layer.size) < 1:
        raise ShapeError(f"{where}: out={fmt(layer.size)}; an adaptive pool's output must be at least 1x1")
    check_numel((c, *layer.size), f"{where}: the output", ShapeError)
    fields, formula = [], []
    for axis, (size, out) in enumerate(zip((h, w), layer.size)):
        # PyTorch's window i is [floor(i*H/out), ceil((i+1)*H/out)); the widest is ceil((H + out - g) / out)
        widest = -(-(size + out - gcd(size, out)) // out)
        fields.append(_whole(view, axis, size) if out == 1 else _grow(view, axis, widest - 1, size / out, 0))
        formula.append(f"adaptive: {size} -> {out} (windows of up to {widest})")
    return _field(replace(view, shape=(c, *layer.size)), fields), 0, 0, tuple(formula)


def _upsample(layer: Layer, where: str, view: View) -> tuple[View, int, int, tuple[str, str]]:
    c, h, w = view.shape
    if min(layer.scale) < 1:
        raise ShapeError(f"{where}: scale={fmt(layer.scale)} must be at least 1 (a whole factor)")
    hw = (h * layer.scale[0], w * layer.scale[1])
    if max(hw) > INT64_MAX:
        raise ShapeError(f"{where}: the output {dims((c, *hw))} is beyond int64")
    check_numel((c, *hw), f"{where}: the output", ShapeError)
    # nearest: each output pixel copies one input pixel, so the field stays and the jump shrinks
    fields = [_grow(view, axis, 0, layer.scale[axis], 0, up=True) for axis in (0, 1)]
    formula = tuple(f"{n}*{s} = {n * s}" for n, s in zip((h, w), layer.scale))
    return _field(replace(view, shape=(c, *hw)), fields), 0, 0, formula


def _window(layer: Layer, where: str, view: View) -> tuple[View, int, int, tuple[str, str]]:
    """Convolutions and pools: a window of k pixels every s pixels (scattered, for convT)."""
    c_in, h, w = view.shape
    _check_values(layer, where, c_in)
    hw, formula = zip(*(_axis(layer, where, axis, size) for axis, size in enumerate((h, w))))
    convolution = layer.kind in CONVOLUTIONS
    c_out = layer.out if convolution else c_in
    kh, kw = layer.kernel
    if convolution:
        check_numel((c_out, c_in // layer.groups, kh, kw), f"{where}: the weight", ShapeError)
    check_numel((c_out, *hw), f"{where}: the output", ShapeError)
    params = c_out * (c_in // layer.groups) * kh * kw + (c_out if layer.bias else 0) if convolution else 0
    if layer.kind == "conv":
        macs = c_out * hw[0] * hw[1] * (c_in // layer.groups) * kh * kw
    elif layer.kind == "convT":
        macs = c_in * h * w * (c_out // layer.groups) * kh * kw
    else:
        macs = 0
    fields = []
    for a in (0, 1):
        span = layer.dilation[a] * (layer.kernel[a] - 1)
        left = span // 2 if layer.padding is None else layer.padding[a]  # 'same' pads the odd pixel on the right
        fields.append(_grow(view, a, span, layer.stride[a], left, up=layer.kind == "convT"))
    return _field(replace(view, shape=(c_out, *hw)), fields), params, macs, formula


def _check_values(layer: Layer, where: str, c_in: int) -> None:
    """Refuse the values PyTorch refuses whatever the input size."""

    def positive(pair, name: str, hint: str) -> None:
        if min(pair) < 1:
            raise ShapeError(f"{where}: {name} {fmt(pair)} must be at least 1 ({hint})")

    positive(layer.kernel, "kernel size k", "PyTorch refuses a kernel of size 0 or less")
    positive(layer.stride, "stride s", "PyTorch refuses a stride of 0 or less")
    positive(layer.dilation, "dilation d", "PyTorch refuses a dilation of 0 or less")
    if layer.padding is not None and min(layer.padding) < 0:
        raise ShapeError(f"{where}: padding p {fmt(layer.padding)} is negative, which PyTorch refuses")
    if min(layer.output_padding) < 0:
        raise ShapeError(f"{where}: output padding op {fmt(layer.output_padding)} is negative")
    if layer.kind not in CONVOLUTIONS:
        if layer.padding is None:
            raise ShapeError(f"{where}: PyTorch's {layer.kind} has no padding='same'; give p as N or NxM")
        return
    if layer.out < 1:
        raise ShapeError(f"{where}: out={layer.out} channels; PyTorch needs at least 1")
    if layer.groups < 1:
        raise ShapeError(f"{where}: groups={layer.groups} must be a positive integer")
    for name, channels in (("input channels", c_in), ("out", layer.out)):
        if channels % layer.groups:
            raise ShapeError(f"{where}: {name} {channels} is not divisible by groups={layer.groups}")
    if layer.padding is None and layer.kind == "convT":
        raise ShapeError(f"{where}: PyTorch's ConvTranspose2d has no padding='same'; give p as N or NxM")
    if layer.padding is None and max(layer.stride) > 1:
        raise ShapeError(
            f"{where}: PyTorch refuses padding='same' with stride {fmt(layer.stride)}; "
            "'same' needs stride 1 (give p as a number for a strided conv)"
        )


def _axis(layer: Layer, where: str, axis: int, size: int) -> tuple[int, str]:
    """Output size along one axis (0 = height, 1 = width) and its formula, filled in."""
    name = "HW"[axis]
    k, s, d = layer.kernel[axis], layer.stride[axis], layer.dilation[axis]
    span = d * (k - 1)  # the effective kernel is span + 1 pixels wide

    if layer.padding is None:  # 'same': stride 1 was checked, so the output equals the input
        # PyTorch puts the odd pixel of an even total padding on the right/bottom.
        left = span // 2
        return size, f"same: pad {left}+{span - left} = D(K-1) = {d}*({k}-1), so {name}_out = {name} = {size}"

    p = layer.padding[axis]
    # PyTorch's rule for conv and pools: a window of span + 1 pixels every s pixels over the padded input.
    rounding = "ceil" if layer.ceil else "floor"
    windows = (size + 2 * p - span - 1 + (s - 1 if layer.ceil else 0)) // s + 1
    formula = f"{rounding}(({size} + 2*{p} - {d}*({k}-1) - 1) / {s}) + 1"
    if layer.kind == "convT":
        op = layer.output_padding[axis]
        if not (op < s or op < d):
            raise ShapeError(
                f"{where}: output padding op={op} on {name} must be smaller than the stride ({s}) "
                f"or the dilation ({d})"
            )
        out = (size - 1) * s - 2 * p + span + op + 1
        formula = f"({size}-1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {out}"
        if out < 1:
            raise ShapeError(f"{where}: output {name} would be {out} (from {formula}); it must be at least 1")
        return out, formula

    if layer.kind == "conv":
        if size + 2 * p < span + 1:
            raise ShapeError(
                f"{where}: the effective kernel {span + 1} (D(K-1)+1) is larger than the padded input "
                f"{name} {size}+2*{p} = {size + 2 * p}"
            )
        return windows, f"{formula} = {windows}"

    # Pools: PyTorch checks the padding against the bare kernel, whatever the dilation.
    if p > k // 2:
        raise ShapeError(
            f"{where}: padding {p} on {name} is more than half the kernel size {k}; "
            f"PyTorch's {layer.kind} needs p <= k//2 = {k // 2}"
        )
    out = windows
    if layer.ceil and (out - 1) * s >= size + p:  # PyTorch drops a last window starting in the right padding
        out -= 1
        formula += " - 1 (last window starts in the padding)"
    formula += f" = {out}"
    if out < 1:
        raise ShapeError(f"{where}: output {name} would be {out} (from {formula}); the input is too small")
    return out, formula


def _grow(view: View, axis: int, span: int, s: float, left: int, up: bool = False) -> tuple:
    """(field, jump, start) along one axis after a window of span + 1 input elements moved s at a time, with
    `left` padding before the first. A transposed conv or an upsample (`up`) divides the jump first."""
    rf, jump, start = view.receptive_field[axis], view.jump[axis], view.start[axis]
    if up:  # output o gathers inputs (o + p - span)/s ... (o + p)/s
        jump /= s
        return rf + span * jump, jump, start + (left - span) * jump
    return rf + span * jump, jump * s, start - left * jump


def _whole(view: View, axis: int, size: int) -> tuple:
    """(field, jump, start) of an element that sees all `size` elements along the axis: the span of their
    fields, within the input (padding adds no pixel it depends on)."""
    rf, jump, start = view.receptive_field[axis], view.jump[axis], view.start[axis]
    first, last = max(start, 0), min(start + (size - 1) * jump + rf - 1, view.input_size[axis] - 1)
    return last - first + 1, jump * size, first


def _field(view: View, fields: list) -> View:
    """The view with the (field, jump, start) of both axes, whole numbers as ints."""
    rf, jump, start = (tuple(tidy(f[i]) for f in fields) for i in range(3))
    return replace(view, receptive_field=rf, jump=jump, start=start)
