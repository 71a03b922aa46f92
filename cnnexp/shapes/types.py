"""The plain data of `cnnexp.shapes`: shapes, per-layer rows, whole chains, and the integer rules they share.

Nothing here knows a layer kind; `layers` builds on it, `parse` on both, `chain` on all three.

    >>> parse_input("3x224x224")
    (3, 224, 224)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cnnexp.errors import ConfigError, param

Pair = tuple[int, int]
Shape = tuple[int, ...]  # (C, H, W), or (N,) once flattened
INT = re.compile(r"-?[0-9]+")  # ASCII only: `\d` would also take digits that int() refuses, such as '²'
INT64_MAX = 2**63 - 1  # PyTorch keeps every size, stride and padding as an int64
MAX_NUMEL = INT64_MAX // 4  # PyTorch refuses a float32 tensor whose size in bytes overflows int64
DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2}  # bytes per element, for the memory figures


@dataclass(frozen=True)
class View:
    """What a layer hands on: the output's shape and how far one of its elements sees into the input.

    Per axis (height, width), in input pixels: element i of the output sees the input from
    `start + i * jump` to `start + i * jump + receptive_field - 1` (padding counts: `start` may be negative).
    `grid` is the H x W a flatten turned into features that no linear layer has mixed yet: a linear layer then
    sees the whole grid, as a global pool does. `input_size` is the chain input's H x W.
    """

    shape: Shape
    receptive_field: tuple[float, float] = (1, 1)
    jump: tuple[float, float] = (1, 1)
    grid: Pair = (1, 1)
    start: tuple[float, float] = (0, 0)
    input_size: Pair = (1, 1)


@dataclass(frozen=True)
class LayerShape:
    """One row of the answer: what one layer (or, for a block's total row, one block) does to its input."""

    layer: str  # the spec as written, or the block's label, e.g. "residual (total)"
    output: Shape
    params: int
    macs: int
    receptive_field: tuple[float, float]  # ints except after a transposed conv, an upsample or a ragged pool
    jump: tuple[float, float]
    formula: tuple[str, str] = ("", "")  # the size formula filled in, for height and width (conv and pools)
    path: str = "1"  # position in the chain: "3", or "5.2.1.residual.2" inside blocks
    kind: str = ""  # the layer's kind, or "residual" / "repeat" for a block's total row
    activations: int = 0  # elements this row writes per sample (a block: its layers' and the add's)

    @property
    def is_block(self) -> bool:
        return self.kind in ("residual", "repeat")

    @property
    def depth(self) -> int:
        """How deep in blocks the row sits: 0 at the top level."""
        return (self.path.count(".")) // 2  # each block adds two parts: "2.1" (repeat) or "residual.1"


@dataclass(frozen=True)
class ChainShape:
    """A whole chain: its rows (layers and block totals, in order), totals, memory and the dense comparison."""

    input: Shape
    rows: tuple[LayerShape, ...]
    output: Shape
    params: int
    macs: int
    dense_params: int  # weights + biases of one fully-connected layer from input.numel() to output.numel()
    receptive_field: tuple[float, float] = (1, 1)
    jump: tuple[float, float] = (1, 1)
    activations: int = 0  # elements written per sample by every layer and residual add
    peak: int = 0  # elements alive at once at the worst moment of an inference forward (input included)
    peak_at: str = ""  # the path of the layer (or block) at that moment
    forward_backward: int = 0  # torchinfo's "forward/backward pass size", in elements (see docs/conv-shape.md)
    dtype: str = "float32"

    @property
    def layers(self) -> tuple[LayerShape, ...]:
        """The layer rows only (no block totals): their params and MACs add up to the chain's."""
        return tuple(r for r in self.rows if not r.is_block)

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype]

    def to_json(self) -> dict:
        """The `conv-shape --json` contract, key for key (docs/conv-shape.md)."""

        def row(s: LayerShape, first: dict) -> dict:
            return {**first, "output": list(s.output), "params": s.params, "macs": s.macs,
                    "receptive_field": list(s.receptive_field), "jump": list(s.jump), "path": s.path,
                    "activations": s.activations, "bytes": s.activations * self.itemsize}

        return {
            "input": list(self.input),
            "layers": [row(s, {"layer": s.layer}) for s in self.layers],
            "output": list(self.output),
            "params": self.params,
            "macs": self.macs,
            "blocks": [row(s, {"kind": s.kind}) for s in self.rows if s.is_block],
            "receptive_field": list(self.receptive_field),
            "jump": list(self.jump),
            "dtype": self.dtype,
            "activations": self.activations,
            "activation_bytes": self.activations * self.itemsize,
            "peak_bytes": self.peak * self.itemsize,
            "peak_at": self.peak_at,
            "forward_backward_bytes": self.forward_backward * self.itemsize,
        }


def numel(shape) -> int:
    total = 1
    for n in shape:
        total *= n
    return total


def parse_int(text: str, what: str) -> int:
    """Parse an integer written in ASCII digits that fits in PyTorch's int64.

    Raises:
        ConfigError: not an integer, or beyond int64 (checked before converting, so a number of
            thousands of digits is refused too, rather than tripping Python's own limit).
    """
    text = str(text).strip()
    if not INT.fullmatch(text):
        raise ConfigError(f"{what}: {short(text)} must be an integer")
    if len(text.lstrip("-").lstrip("0")) > 19 or abs(int(text)) > INT64_MAX:
        raise ConfigError(f"{what}: {short(text)} is beyond int64, the largest integer PyTorch takes "
                          f"({INT64_MAX:,})")
    return int(text)


def short(text: str) -> str:
    """The value as written, quoted, and shortened when it is very long."""
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"


def case_hint(name: str, choices, aliases: dict[str, str] | None = None) -> str:
    """' (... did you mean 'conv'?)' when `name` is one of `choices` in another case (or a known other name
    for one), else ''."""
    match = {c.lower(): c for c in choices}.get(name.lower())
    if match:
        return f" (they are case-sensitive: did you mean {match!r}?)"
    alias = (aliases or {}).get(name.lower())
    return f" (did you mean {alias!r}?)" if alias else ""


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
    if len(parts) in (1, 2) and all(INT.fullmatch(p.strip()) for p in parts):
        a, b = (parse_int(p, what) for p in parts) if len(parts) == 2 else (parse_int(parts[0], what),) * 2
        return a, b
    raise ConfigError(f"{what}: {short(str(text))} is not N or NxM (e.g. 3 or 3x5)")


def parse_input(text: str, what: str = param("input")) -> Shape:
    """Parse `CxHxW` into a positive (C, H, W), or `N` (a flat input of N features) into (N,).

    Raises:
        ConfigError: not three positive integers joined by `x` (or one), or a tensor too large for PyTorch.
    """
    parts = str(text).strip().lower().split("x")
    if len(parts) in (1, 3) and all(INT.fullmatch(p.strip()) for p in parts):
        shape = tuple(parse_int(p, what) for p in parts)
        if min(shape) > 0:
            check_numel(shape, f"{what}: {short(str(text))}", ConfigError)
            return shape
    raise ConfigError(f"{what}: {short(str(text))} is not CxHxW or N (flat) with positive sizes "
                      "(e.g. 3x224x224 or 256)")


def check_numel(shape: tuple, what: str, error: type) -> None:
    """Refuse a tensor PyTorch cannot allocate even on paper: its float32 size in bytes overflows int64."""
    n = numel(shape)
    if n > MAX_NUMEL:
        raise error(f"{what} would have {' x '.join(map(str, shape))} = {n:.3g} elements, more than "
                    f"PyTorch can address ({MAX_NUMEL:,}: its float32 size in bytes must fit in int64)")


def tidy(x: float) -> float:
    """Whole numbers stay ints, so conv and pool chains report ints."""
    return int(x) if float(x).is_integer() else x


def fmt(pair: Pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def dims(shape: Shape) -> str:
    """`64 x 56 x 56`, or `1000` for a flat shape."""
    return " x ".join(str(n) for n in shape)
