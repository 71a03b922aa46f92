"""Shape arithmetic for chains of 2-D convolution and pooling layers, by PyTorch's own rules.

Pure Python on purpose: the `conv-shape` calculator must answer without importing torch, numpy or pandas.

    >>> from cnnexp.shapes import chain_shape
    >>> net = chain_shape("3x224x224", ["conv:out=64,k=7,s=2,p=3", "maxpool:k=3,s=2,p=1"])
    >>> net.output, net.params
    ((64, 56, 56), 9472)
    >>> net.layers[-1].receptive_field, net.layers[-1].jump
    ((11, 11), (4, 4))

A layer is written `KIND:key=value,...`; values are `N` or `NxM` (height x width):

    conv:out=64,k=7,s=2,p=3            nn.Conv2d           keys out k s p d groups bias     (s defaults to 1)
    maxpool:k=3,s=2,p=1,ceil=true      nn.MaxPool2d        keys k s p d ceil                (s defaults to k)
    avgpool:k=2                        nn.AvgPool2d        keys k s p ceil                  (s defaults to k)
    convT:out=32,k=4,s=2,p=1,op=0      nn.ConvTranspose2d  keys out k s p op d groups bias  (s defaults to 1)

`p=same` (conv only, stride 1) pads so that the output size equals the input size, as PyTorch's
`padding='same'` does; `p=valid` is `p=0`. Kinds and keys are case-sensitive (`convT` is the only capital);
the words `true`, `false`, `same` and `valid` are not (`bias=False` is `bias=false`). An empty item
(`out=8,,k=3`, a trailing comma) is refused. Whatever PyTorch refuses, at construction or at forward on that
input, `chain_shape` refuses with a `ShapeError` (or a `ConfigError` for a malformed spec) naming the layer,
including numbers beyond int64 and tensors whose float32 size in bytes overflows int64, as PyTorch does.

Conventions where PyTorch has no opinion:
- MACs (multiply-accumulates per sample): conv = output elements x in/groups x kh x kw; convT = input
  elements x out/groups x kh x kw (each input pixel is scattered through the kernel); pools count 0, since
  they multiply nothing. Bias additions are not counted.
- Receptive field and jump (effective stride, in input pixels) per axis: `r += d(k-1) * jump; jump *= s` for
  conv and pools. A transposed conv upsamples, so it divides first: `jump /= s; r += d(k-1) * jump`, which can
  give fractional values (the footprint measured on the upsampled grid).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cnnexp.errors import CnnexpError, ConfigError, ShapeError

Pair = tuple[int, int]
Shape = tuple[int, int, int]  # (C, H, W)

# The keys each kind takes; `s` falls back to 1 for convolutions and to the kernel for pools, as in PyTorch.
KINDS: dict[str, tuple[str, ...]] = {
    "conv": ("out", "k", "s", "p", "d", "groups", "bias"),
    "maxpool": ("k", "s", "p", "d", "ceil"),
    "avgpool": ("k", "s", "p", "ceil"),
    "convT": ("out", "k", "s", "p", "op", "d", "groups", "bias"),
}
_PAIR_KEYS = {"k", "s", "p", "d", "op"}
_BOOL_KEYS = {"bias", "ceil"}
_INT = re.compile(r"-?[0-9]+")  # ASCII only: `\d` would also take digits that int() refuses, such as '²'
INT64_MAX = 2**63 - 1  # PyTorch keeps every size, stride and padding as an int64
MAX_NUMEL = INT64_MAX // 4  # PyTorch refuses a float32 tensor whose size in bytes overflows int64


@dataclass(frozen=True)
class Layer:
    """One parsed layer spec. `padding` is None when the spec says `p=same`."""

    spec: str  # as the user wrote it
    kind: str  # a key of KINDS
    kernel: Pair
    stride: Pair
    padding: Pair | None
    dilation: Pair = (1, 1)
    output_padding: Pair = (0, 0)
    out: int | None = None  # output channels (convolutions only)
    groups: int = 1
    bias: bool = True
    ceil: bool = False


@dataclass(frozen=True)
class LayerShape:
    """What one layer does to its input: shape, cost and how far its view reaches."""

    layer: str  # the spec, as written
    output: Shape
    params: int
    macs: int
    receptive_field: tuple[float, float]  # ints except after a transposed conv
    jump: tuple[float, float]
    formula: tuple[str, str]  # the size formula filled in, for height and width


@dataclass(frozen=True)
class ChainShape:
    """A whole chain: per-layer rows and totals, plus the fully-connected comparison."""

    input: Shape
    layers: tuple[LayerShape, ...]
    output: Shape
    params: int
    macs: int
    dense_params: int  # weights + biases of one fully-connected layer from input.numel() to output.numel()

    def to_json(self) -> dict:
        """The `conv-shape --json` contract, key for key."""
        return {
            "input": list(self.input),
            "layers": [
                {
                    "layer": s.layer,
                    "output": list(s.output),
                    "params": s.params,
                    "macs": s.macs,
                    "receptive_field": list(s.receptive_field),
                    "jump": list(s.jump),
                }
                for s in self.layers
            ],
            "output": list(self.output),
            "params": self.params,
            "macs": self.macs,
        }


# ---------------------------------------------------------------------------------------------- parsing


def parse_int(text: str, what: str) -> int:
    """Parse an integer written in ASCII digits that fits in PyTorch's int64.

    Raises:
        ConfigError: not an integer, or beyond int64 (checked before converting, so a number of
            thousands of digits is refused too, rather than tripping Python's own limit).
    """
    text = str(text).strip()
    if not _INT.fullmatch(text):
        raise ConfigError(f"{what}: {_short(text)} must be an integer")
    if len(text.lstrip("-").lstrip("0")) > 19 or abs(int(text)) > INT64_MAX:
        raise ConfigError(f"{what}: {_short(text)} is beyond int64, the largest integer PyTorch takes "
                          f"({INT64_MAX:,})")
    return int(text)


def _short(text: str) -> str:
    """The value as written, quoted, and shortened when it is very long."""
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"


def _case_hint(name: str, choices) -> str:
    """' (... did you mean 'conv'?)' when `name` is one of `choices` in another case, else ''."""
    match = {c.lower(): c for c in choices}.get(name.lower())
    return f" (they are case-sensitive: did you mean {match!r}?)" if match else ""


def parse_pair(text: str, what: str) -> Pair:
    """Parse `N` or `NxM` into (height, width).

    Args:
        text: the value as written, e.g. "3" or "3x5".
        what: names the value in the error message, e.g. "layer 2 'conv:k=x': k".

    Returns:
        The pair of ints; `N` means `(N, N)`.

    Raises:
        ConfigError: the text is not one or two integers joined by `x`.
    """
    parts = str(text).strip().lower().split("x")
    if len(parts) in (1, 2) and all(_INT.fullmatch(p.strip()) for p in parts):
        a, b = (parse_int(p, what) for p in parts) if len(parts) == 2 else (parse_int(parts[0], what),) * 2
        return a, b
    raise ConfigError(f"{what}: {_short(str(text))} is not N or NxM (e.g. 3 or 3x5)")


def parse_input(text: str, what: str = "--input") -> Shape:
    """Parse `CxHxW` into a positive (C, H, W).

    Raises:
        ConfigError: not three positive integers joined by `x`, or a tensor too large for PyTorch.
    """
    parts = str(text).strip().lower().split("x")
    if len(parts) == 3 and all(_INT.fullmatch(p.strip()) for p in parts):
        shape = tuple(parse_int(p, what) for p in parts)
        if min(shape) > 0:
            _check_numel(shape, f"{what}: {_short(str(text))}", ConfigError)
            return shape
    raise ConfigError(f"{what}: {_short(str(text))} is not CxHxW with positive sizes (e.g. 3x224x224)")


def parse_layer(spec: str, index: int = 1) -> Layer:
    """Parse a `KIND:key=value,...` spec (see the module docstring).

    Args:
        spec: the layer as written, e.g. "conv:out=64,k=7,s=2,p=3".
        index: the layer's 1-based position in its chain, for error messages.

    Returns:
        The `Layer`, with PyTorch's defaults filled in.

    Raises:
        ConfigError: unknown kind or key (both case-sensitive), an empty item, a repeated or missing key, or
            a value that is not a number or beyond int64.
    """
    where = f"layer {index} {_short(str(spec))}"
    kind, _, body = str(spec).partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown layer kind {kind!r}; use one of {', '.join(KINDS)}"
                          + _case_hint(kind, KINDS))
    items = [i.strip() for i in body.split(",")] if body.strip() else []
    raw: dict[str, str] = {}
    for position, item in enumerate(items, 1):
        if not item:
            place = ("a trailing comma" if position == len(items) else "a leading comma" if position == 1
                     else "an empty item (two commas in a row)")
            raise ConfigError(f"{where}: {place}; write key=value items separated by single commas")
        key, eq, value = (t.strip() for t in item.partition("="))
        if not eq or not value:
            raise ConfigError(f"{where}: {item!r} is not key=value")
        if key not in KINDS[kind]:
            raise ConfigError(f"{where}: unknown key {key!r} for {kind}; it takes {', '.join(KINDS[kind])}"
                              + _case_hint(key, KINDS[kind]))
        if key in raw:
            raise ConfigError(f"{where}: key {key!r} given twice")
        raw[key] = value
    if "k" not in raw:
        raise ConfigError(f"{where}: missing the kernel size, e.g. k=3")
    if kind in ("conv", "convT") and "out" not in raw:
        raise ConfigError(f"{where}: missing the output channels, e.g. out=64")

    values: dict = {}
    for key, value in raw.items():
        if key in _BOOL_KEYS:
            if value.lower() not in ("true", "false"):
                raise ConfigError(f"{where}: {key}={value!r} must be true or false")
            values[key] = value.lower() == "true"
        elif key == "p" and value.lower() in ("same", "valid"):
            values[key] = None if value.lower() == "same" else (0, 0)
        elif key in _PAIR_KEYS:
            values[key] = parse_pair(value, f"{where}: {key}")
        elif _INT.fullmatch(value):
            values[key] = parse_int(value, f"{where}: {key}")
        else:
            raise ConfigError(f"{where}: {key}={value!r} must be an integer")
    kernel = values["k"]
    pooling = kind in ("maxpool", "avgpool")
    return Layer(
        spec=str(spec),
        kind=kind,
        kernel=kernel,
        stride=values.get("s", kernel if pooling else (1, 1)),
        padding=values.get("p", (0, 0)),
        dilation=values.get("d", (1, 1)),
        output_padding=values.get("op", (0, 0)),
        out=values.get("out"),
        groups=values.get("groups", 1),
        bias=values.get("bias", True),
        ceil=values.get("ceil", False),
    )


def single_conv(
    size: str,
    kernel: str,
    stride: str = "1",
    padding: str = "0",
    dilation: str = "1",
    in_channels: int = 1,
    out_channels: int | None = None,
    what: str = "SIZE",
) -> tuple[str, list[str]]:
    """Write one conv layer given by flags as an input and a one-layer chain, for `chain_shape`.

    A single layer is a chain of one conv, so both forms of `conv-shape` share every rule and message.

    Args:
        size: `H` or `HxW`.
        kernel, stride, padding, dilation: `N` or `NxM` (padding may be `same` or `valid`).
        in_channels: channels of the input (only the parameter count and the JSON depend on it).
        out_channels: channels of the output; defaults to `in_channels`.
        what: names the size in messages: `SIZE` for conv-shape, `--size` for conv-check.

    Returns:
        The input as `CxHxW` and the chain as a list with one spec.

    Raises:
        ConfigError: the size is not `H` or `HxW` of positive integers within int64, or a channel count
            is not between 1 and int64's largest.
    """
    h, w = parse_pair(size, what)
    if min(h, w) < 1:
        raise ConfigError(f"{what} {_short(str(size))}: sizes must be at least 1 (e.g. 224 or 224x200)")
    for name, channels in (("--in-channels", in_channels), ("--out-channels", out_channels)):
        if channels is not None and not 1 <= channels <= INT64_MAX:
            raise ConfigError(f"{name} {_short(str(channels))} must be between 1 and {INT64_MAX:,} (int64)")
    _check_numel((in_channels, h, w), f"{what} {_short(str(size))}: the input", ConfigError)
    out = in_channels if out_channels is None else out_channels
    spec = f"conv:out={out},k={kernel},s={stride},p={padding},d={dilation}"
    return f"{in_channels}x{h}x{w}", [spec]


def load_chain(path: str | Path) -> tuple[str | None, list[str]]:
    """Read a chain from a YAML file.

    The file holds `input` (optional, `CxHxW`) and `layers`, a list of spec strings:

        input: 3x224x224
        layers:
          - conv:out=64,k=7,s=2,p=3
          - maxpool:k=3,s=2,p=1

    Args:
        path: the YAML file.

    Returns:
        The input text (None when the file has none) and the list of specs.

    Raises:
        ConfigError: the file is missing or not YAML, has an unknown key, or a layer is not a spec string.
    """
    from cnnexp.config import read_yaml  # only here: the calculator should not pay for YAML without a file

    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys 'input' and 'layers'")
    for key in data:
        if key not in ("input", "layers"):
            raise ConfigError(f"{path}: unknown key {key!r}; a chain file has 'input' and 'layers'")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError(f"{path}: 'layers' must be a non-empty list of specs like 'conv:out=64,k=3'")
    for i, spec in enumerate(layers, 1):
        if not isinstance(spec, str):
            raise ConfigError(f"{path}: layers[{i}] must be a spec string like 'conv:out=64,k=3', got {spec!r}")
    shape = data.get("input")
    if shape is not None:
        parse_input(str(shape), f"{path}: input")  # refuse it here, where the message can name the file
    return (None if shape is None else str(shape)), layers


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
) -> ChainShape:
    """`conv-shape`'s three ways in: one layer (SIZE and flags), `--layer`s, or a `--from` file.

    Args:
        size ... out_channels: one conv layer, as for `single_conv`; `kernel` is required with `size`.
        input: `CxHxW` for a chain; overrides the file's `input`.
        layers: layer specs for a chain.
        path: a chain file (see `load_chain`).

    Returns:
        The `chain_shape` of whichever form was given.

    Raises:
        ConfigError: no form, or two at once, or a form missing its input or kernel.
        ShapeError: a layer PyTorch would refuse.
    """
    if size is not None:
        if layers or path or input is not None:
            raise ConfigError("give either SIZE (one conv layer) or --input with --layer/--from (a chain), not both")
        if kernel is None:
            raise ConfigError("SIZE needs --kernel, e.g. cnnexp conv-shape 224 --kernel 3")
        input, layers = single_conv(size, kernel, stride, padding, dilation, in_channels, out_channels)
    elif path is not None:
        if layers:
            raise ConfigError("give the layers either with --layer or in the --from file, not both")
        file_input, layers = load_chain(path)
        if input is not None:
            parse_input(input)  # a bad --input is the flag's fault, so its message names the flag, not the file
        input = file_input if input is None else input  # the flag overrides the file
        if input is None:
            raise ConfigError(f"{path}: no 'input' in the file; add input: CxHxW or pass --input")
        try:
            return chain_shape(input, layers)
        except CnnexpError as e:  # the layer numbers count the file's layers: say which file
            raise type(e)(f"{path}: {e}") from None
    elif not layers:
        raise ConfigError("nothing to compute: give SIZE --kernel K, or --input CxHxW with --layer ... or --from")
    elif input is None:
        raise ConfigError("--layer needs --input CxHxW, e.g. --input 3x224x224")
    return chain_shape(input, layers)


# ------------------------------------------------------------------------------------------- arithmetic


def chain_shape(input: str | Shape, specs: list[str]) -> ChainShape:
    """Follow an input through a chain of layers, refusing whatever PyTorch would refuse.

    Args:
        input: `CxHxW` text or a (C, H, W) tuple.
        specs: layer specs in order (see the module docstring).

    Returns:
        Per-layer shapes, parameters, MACs, receptive fields and jumps, and the totals.

    Raises:
        ConfigError: a malformed input or spec.
        ShapeError: a layer PyTorch would refuse, with the layer's position, spec and the reason.
    """
    shape = parse_input(input) if isinstance(input, str) else tuple(input)
    if not specs:
        raise ConfigError("no layers: give at least one --layer (or a SIZE and --kernel)")
    rows: list[LayerShape] = []
    c, h, w = shape
    rf, jump = (1, 1), (1, 1)
    for index, spec in enumerate(specs, 1):
        layer = parse_layer(spec, index)
        row = _layer_shape(layer, f"layer {index} {spec!r}", (c, h, w), rf, jump)
        rows.append(row)
        (c, h, w), rf, jump = row.output, row.receptive_field, row.jump
    n_in, n_out = shape[0] * shape[1] * shape[2], c * h * w
    return ChainShape(
        input=shape,
        layers=tuple(rows),
        output=(c, h, w),
        params=sum(r.params for r in rows),
        macs=sum(r.macs for r in rows),
        dense_params=n_in * n_out + n_out,
    )


def _layer_shape(layer: Layer, where: str, shape: Shape, rf: tuple, jump: tuple) -> LayerShape:
    c_in, h, w = shape
    _check_values(layer, where, c_in)
    hw, formula = zip(*(_axis(layer, where, axis, size) for axis, size in enumerate((h, w))))
    convolution = layer.kind in ("conv", "convT")
    c_out = layer.out if convolution else c_in
    kh, kw = layer.kernel
    if convolution:
        _check_numel((c_out, c_in // layer.groups, kh, kw), f"{where}: the weight", ShapeError)
    _check_numel((c_out, *hw), f"{where}: the output", ShapeError)
    params = c_out * (c_in // layer.groups) * kh * kw + (c_out if layer.bias else 0) if convolution else 0
    if layer.kind == "conv":
        macs = c_out * hw[0] * hw[1] * (c_in // layer.groups) * kh * kw
    elif layer.kind == "convT":
        macs = c_in * h * w * (c_out // layer.groups) * kh * kw
    else:
        macs = 0
    new_rf, new_jump = zip(*(_receptive(layer, axis, rf[axis], jump[axis]) for axis in (0, 1)))
    return LayerShape(layer.spec, (c_out, *hw), params, macs, new_rf, new_jump, formula)


def _check_values(layer: Layer, where: str, c_in: int) -> None:
    """Refuse the values PyTorch refuses whatever the input size."""

    def positive(pair, name: str, hint: str) -> None:
        if min(pair) < 1:
            raise ShapeError(f"{where}: {name} {_fmt(pair)} must be at least 1 ({hint})")

    positive(layer.kernel, "kernel size k", "PyTorch refuses a kernel of size 0 or less")
    positive(layer.stride, "stride s", "PyTorch refuses a stride of 0 or less")
    positive(layer.dilation, "dilation d", "PyTorch refuses a dilation of 0 or less")
    if layer.padding is not None and min(layer.padding) < 0:
        raise ShapeError(f"{where}: padding p {_fmt(layer.padding)} is negative, which PyTorch refuses")
    if min(layer.output_padding) < 0:
        raise ShapeError(f"{where}: output padding op {_fmt(layer.output_padding)} is negative")
    if layer.kind not in ("conv", "convT"):
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
            f"{where}: PyTorch refuses padding='same' with stride {_fmt(layer.stride)}; "
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


def _check_numel(shape: tuple, what: str, error: type) -> None:
    """Refuse a tensor PyTorch cannot allocate even on paper: its float32 size in bytes overflows int64."""
    numel = 1
    for n in shape:
        numel *= n
    if numel > MAX_NUMEL:
        raise error(f"{what} would have {' x '.join(map(str, shape))} = {numel:.3g} elements, more than "
                    f"PyTorch can address ({MAX_NUMEL:,}: its float32 size in bytes must fit in int64)")


def _receptive(layer: Layer, axis: int, rf: float, jump: float) -> tuple[float, float]:
    """Receptive field and jump after this layer along one axis (see the module docstring)."""
    span = layer.dilation[axis] * (layer.kernel[axis] - 1)
    s = layer.stride[axis]
    if layer.kind == "convT":
        jump = _tidy(jump / s)
        return _tidy(rf + span * jump), jump
    return rf + span * jump, jump * s


def _tidy(x: float) -> float:
    """Whole numbers stay ints, so conv and pool chains report ints."""
    return int(x) if float(x).is_integer() else x


def _fmt(pair: Pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"
