"""2-D convolution in numpy, two ways, and a check of both against PyTorch.

`method="loop"` follows the textbook formula one output pixel at a time, so it can be read next to it;
`method="fast"` gathers every receptive window into one matrix (im2col) and does a single BLAS matmul.

    >>> import numpy as np
    >>> from cnnexp.conv import conv2d_numpy
    >>> x = np.ones((1, 2, 5, 5), np.float32)          # (N, C_in, H, W)
    >>> w = np.ones((3, 2, 3, 3), np.float32)          # (C_out, C_in, kh, kw)
    >>> y = conv2d_numpy(x, w, np.zeros(3, np.float32), padding=1)
    >>> y.shape, y.dtype, float(y[0, 0, 2, 2]), float(y[0, 0, 0, 0])
    ((1, 3, 5, 5), dtype('float32'), 18.0, 8.0)

`check_conv` runs loop, fast and torch's `F.conv2d` on one random input and reports each one's largest
difference from torch and its time (torch is imported inside it, on demand). It refuses, before allocating
anything, a check whose arrays would not fit in the memory available, and skips the loop when its work is
over `loop_limit` (a Python step per output value: minutes for a large input).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnexp.errors import ConfigError, param
from cnnexp.memory import refuse_beyond_memory
from cnnexp.shapes import INT64_MAX, chain_shape, parse_layer, single_conv

LOOP_LIMIT = 1e8  # loop work allowed by default: about half a second per run on the 2-core development machine
STEP_MACS = 1000  # the loop's Python step per output value costs about as much as this many numpy MACs


def conv2d_numpy(x, w, bias=None, *, stride=1, padding=0, dilation=1, method="fast") -> np.ndarray:
    """Cross-correlate a batch of images with a bank of filters, as `torch.nn.functional.conv2d` does.

        y[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] * x[n, c, i*s + u*d - p, j*s + v*d - p]

    with x read as 0 outside the image.

    Args:
        x: input, shape (N, C_in, H, W).
        w: filters, shape (C_out, C_in, kh, kw).
        bias: shape (C_out,), or None for no bias.
        stride: int or (sh, sw).
        padding: zeros added on each side, int or (ph, pw).
        dilation: spacing between kernel taps, int or (dh, dw).
        method: "fast" (im2col + one matmul) or "loop" (the formula, pixel by pixel).

    Returns:
        y, shape (N, C_out, H_out, W_out), H_out = floor((H + 2p - d(kh-1) - 1) / s) + 1; float32 in gives
        float32 out.

    Raises:
        ValueError: shapes that do not fit together, non-positive stride or dilation, negative padding,
            an empty output, or an unknown method; the message names the mismatch.
    """
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C_in, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"w must be (C_out, C_in, kh, kw), got shape {w.shape}")
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"w has C_in={w.shape[1]} (shape {w.shape}) but x has C_in={x.shape[1]} (shape {x.shape})"
        )
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},) for C_out={w.shape[0]}, got {bias.shape}")
    stride, padding, dilation = (_pair(v, name) for v, name in
                                 ((stride, "stride"), (padding, "padding"), (dilation, "dilation")))
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"need stride >= 1, dilation >= 1, padding >= 0; got {stride}, {dilation}, {padding}")
    out_hw = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in
              zip(x.shape[2:], w.shape[2:], stride, padding, dilation)]
    if min(out_hw) < 1 or min(w.shape[2:]) < 1:
        raise ValueError(f"kernel {w.shape[2:]} (dilation {dilation}) does not fit the input {x.shape[2:]} "
                         f"padded by {padding}: the output would be {tuple(out_hw)}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    dtype = np.result_type(x, w, *(() if bias is None else (bias,)))
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))  # zeros outside the image
    y = _METHODS[method](xp.astype(dtype, copy=False), w.astype(dtype, copy=False), stride, dilation, out_hw)
    return y if bias is None else y + bias.astype(dtype).reshape(1, -1, 1, 1)


def _loop(xp, w, stride, dilation, out_hw):
    """The formula, one output pixel at a time (xp is already padded)."""
    (n_batch, _, _, _), (c_out, _, kh, kw) = xp.shape, w.shape
    (sh, sw), (dh, dw), (h_out, w_out) = stride, dilation, out_hw
    y = np.zeros((n_batch, c_out, h_out, w_out), dtype=xp.dtype)
    for n in range(n_batch):
        for o in range(c_out):
            for i in range(h_out):
                for j in range(w_out):
                    # x[c, i*s + u*d - p, j*s + v*d - p] for every c, u, v: a dilated window of the padded input
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                    window = xp[n, :, rows, cols]
                    y[n, o, i, j] = np.sum(w[o] * window)  # (C_in, kh, kw) summed
    return y


def _fast(xp, w, stride, dilation, out_hw):
    """im2col: every window as a column, then one batched matmul with the flattened filters."""
    (n_batch, c_in, _, _), (c_out, _, kh, kw) = xp.shape, w.shape
    (sh, sw), (dh, dw), (h_out, w_out) = stride, dilation, out_hw
    windows = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C_in, H_out, W_out, kh, kw), a view
    # Copy once into (N, C_in*kh*kw, H_out*W_out) so the product is one BLAS call and lands in NCHW order.
    cols = windows.transpose(0, 1, 4, 5, 2, 3).reshape(n_batch, c_in * kh * kw, h_out * w_out)
    y = np.matmul(w.reshape(c_out, c_in * kh * kw), cols)  # (N, C_out, H_out*W_out)
    return y.reshape(n_batch, c_out, h_out, w_out)


_METHODS = {"fast": _fast, "loop": _loop}


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


# ------------------------------------------------------------------------------------------- conv-check


@dataclass(frozen=True)
class MethodResult:
    """One implementation's run: its largest difference from torch and its median time, or why it did not run."""

    method: str  # "loop", "fast" or "torch"
    max_abs_error: float  # nan when skipped
    seconds: float  # nan when skipped
    skipped: str = ""  # the reason it did not run; empty when it ran


@dataclass(frozen=True)
class ConvCheck:
    """loop, fast and torch on the same random input."""

    input: tuple[int, int, int, int]  # (N, C_in, H, W)
    weight: tuple[int, int, int, int]  # (C_out, C_in, kh, kw)
    output: tuple[int, int, int, int]
    results: tuple[MethodResult, ...]
    tolerance: float  # absolute; every max_abs_error must be at most this

    @property
    def ok(self) -> bool:
        """Every method that ran is within the tolerance of torch."""
        return all(r.max_abs_error <= self.tolerance for r in self.results if not r.skipped)

    @property
    def ran(self) -> tuple[str, ...]:
        return tuple(r.method for r in self.results if not r.skipped)


def check_conv(
    batch: int = 2,
    in_channels: int = 3,
    out_channels: int = 4,
    size: str = "8",
    kernel: str = "3",
    stride: str = "1",
    padding: str = "1",
    dilation: str = "1",
    seed: int = 0,
    repeats: int = 3,
    tolerance: float = 1e-5,
    loop_limit: float = LOOP_LIMIT,
) -> ConvCheck:
    """Run loop, fast and torch's conv2d on one seeded random float32 input and compare them with torch.

    Args:
        batch, in_channels, out_channels: N, C_in and C_out.
        size, kernel, stride, padding, dilation: `N` or `NxM` each, as for `conv-shape`.
        seed: seeds the input, the filters and the bias (numpy takes any integer >= 0).
        repeats: each method runs this many times; the median time is reported.
        tolerance: relative; the absolute tolerance is this times max(1, largest |torch output|).
        loop_limit: the loop is skipped (and only fast is compared with torch) when its work, `loop_work`,
            is over this.

    Returns:
        The shapes, each method's max abs error against torch and median seconds (or why it was skipped),
        and the tolerance used.

    Raises:
        ConfigError: a size or count that is not positive or beyond int64, a negative seed, malformed
            `N`/`NxM` text, or arrays that would need more memory than is available now.
        ShapeError: a geometry PyTorch would refuse (checked by the `conv-shape` rules before any work).
    """
    for name, value in ((param("batch"), batch), (param("in_channels"), in_channels),
                        (param("out_channels"), out_channels), (param("repeats"), repeats)):
        if not 1 <= value <= INT64_MAX:
            raise ConfigError(f"{name} {value} must be between 1 and {INT64_MAX:,} (int64)")
    if seed < 0:
        raise ConfigError(f"{param('seed')} {seed} must be at least 0 (numpy refuses negative seeds)")
    if not tolerance > 0:
        raise ConfigError(f"{param('tolerance')} {tolerance} must be positive")
    if not loop_limit >= 0:
        raise ConfigError(f"{param('loop_limit')} {loop_limit} must be at least 0")
    # The same rules as conv-shape: a geometry torch would refuse is refused here, before any arithmetic.
    shape_in, specs = single_conv(size, kernel, stride, padding, dilation, in_channels, out_channels,
                                  what=param("size"))
    layer = chain_shape(shape_in, specs)
    conv = parse_layer(specs[0])
    if conv.padding is None:  # conv2d_numpy pads symmetrically; 'same' may need an odd pixel on one side
        raise ConfigError(f"{param('padding')} same is not supported by conv-check; give N or NxM")
    _, h, w = layer.input
    _, h_out, w_out = layer.output
    need = check_bytes(batch, in_channels, out_channels, (h, w), conv.kernel, conv.padding, (h_out, w_out))
    refuse_beyond_memory(need, "conv-check (the input, its float64 draw, the fast method's window "
                         "matrix, the outputs)", "lower --size, --batch or the channels")
    work = loop_work(batch, in_channels, out_channels, conv.kernel, (h_out, w_out))
    loop_skipped = ("" if work <= loop_limit
                    else f"loop skipped: its work {work:.2g} is over --loop-limit {loop_limit:g}")

    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, in_channels, h, w)).astype(np.float32)
    wt = rng.standard_normal((out_channels, in_channels, *conv.kernel)).astype(np.float32)
    b = rng.standard_normal(out_channels).astype(np.float32)
    geometry: dict[str, Any] = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)

    tx, tw, tb = (torch.from_numpy(a) for a in (x, wt, b))
    runs = {
        "loop": lambda: conv2d_numpy(x, wt, b, method="loop", **geometry),
        "fast": lambda: conv2d_numpy(x, wt, b, method="fast", **geometry),
        "torch": lambda: F.conv2d(tx, tw, tb, **geometry).numpy(),
    }
    if loop_skipped:
        del runs["loop"]
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, np.ndarray] = {}
    for name in ("fast", "torch"):  # once untimed: a first call pays one-off set-up (threads, kernel choice)
        runs[name]()
    for _ in range(repeats):  # interleaved, so a slow spell of the machine hits every method alike
        for name, run in runs.items():
            outputs.pop(name, None)  # free the last output first: check_bytes counts one of each at a time
            t0 = time.perf_counter()
            outputs[name] = run()
            times[name].append(time.perf_counter() - t0)
    reference = outputs["torch"]
    nan = float("nan")
    results = tuple(
        MethodResult(name, nan, nan, loop_skipped) if name not in runs else
        MethodResult(name, float(np.max(np.abs(outputs[name] - reference))), float(np.median(times[name])))
        for name in ("loop", "fast", "torch")
    )
    channels, height, width = layer.output
    return ConvCheck(
        input=x.shape,
        weight=wt.shape,
        output=(batch, channels, height, width),
        results=results,
        tolerance=tolerance * max(1.0, float(np.max(np.abs(reference)))),
    )


def loop_work(batch: int, in_channels: int, out_channels: int, kernel: tuple[int, int],
              out_hw: tuple[int, int]) -> int:
    """The loop method's work, in multiply-accumulates, counting its Python step per output value as
    `STEP_MACS` more: a 1x1 kernel on one channel does one MAC per step, yet a step costs about 10 us.

    Measured on the development machine: about 10 us per output value plus 2.5 to 25 ns per MAC, so a work of
    1e8 takes about half a second, whatever the mix.
    """
    outputs = batch * out_channels * out_hw[0] * out_hw[1]
    return outputs * (in_channels * kernel[0] * kernel[1] + STEP_MACS)


def check_bytes(batch: int, in_channels: int, out_channels: int, size: tuple[int, int], kernel: tuple[int, int],
                padding: tuple[int, int], out_hw: tuple[int, int]) -> int:
    """Peak bytes of `check_conv`'s arrays, from their shapes alone (float32, 4 bytes; the draw is float64).

    Kept throughout: the input and the filters. On top, the largest of: the float64 draw of the larger one;
    the fast method at work (the padded input, the window matrix of every receptive field, the product and
    the product plus bias) while the two other methods' outputs are kept; the comparison (three outputs and
    two temporaries).
    """
    (h, w), (kh, kw), (ph, pw), (h_out, w_out) = size, kernel, padding, out_hw
    n_x, n_w = batch * in_channels * h * w, out_channels * in_channels * kh * kw
    n_padded = batch * in_channels * (h + 2 * ph) * (w + 2 * pw)
    n_windows = batch * in_channels * kh * kw * h_out * w_out
    n_y = batch * out_channels * h_out * w_out
    kept = 4 * (n_x + n_w + out_channels)
    draw = 8 * max(n_x, n_w)
    fast = 4 * (n_padded + n_windows + 2 * n_y) + 2 * 4 * n_y
    compare = 5 * 4 * n_y
    return kept + max(draw, fast, compare)


