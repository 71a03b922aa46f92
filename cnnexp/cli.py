"""The `cnnexp` command line: each command parses, calls one library function and renders.

    $ cnnexp sweep configs/init.yaml
    $ cnnexp run --d 256 --batch 64 --small-init 1e-4 --seed 123

Results go to stdout, progress and errors to stderr. A `CnnexpError` from the library becomes one line on
stderr and exit status 2. Heavy libraries (torch, pandas, matplotlib) are imported inside the commands that
need them, so `conv-shape` starts as fast as Typer itself.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from cnnexp.errors import CnnexpError

app = typer.Typer(
    help="Experiment runner for the residual gradient study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
out = Console()
err = Console(stderr=True)


def command(name: str | None = None, **kwargs):
    """Register a command whose `CnnexpError`s become one line on stderr and exit status 2."""

    def register(fn):
        @functools.wraps(fn)
        def guarded(*args, **kw):
            try:
                return fn(*args, **kw)
            except CnnexpError as e:
                err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None

        return app.command(name, **kwargs)(guarded)

    return register


def main() -> None:
    code = _fast_conv_shape(sys.argv[1:])  # the calculator's fast path; None when Typer should parse
    if code is not None:
        raise SystemExit(code)
    app()


# --- CNN shapes and convolution ---


@command("conv-shape")
def conv_shape(
    size: Annotated[Optional[str], typer.Argument(help="One conv layer on an input of H or HxW pixels.")] = None,
    kernel: Annotated[Optional[str], typer.Option(help="Kernel size, N or NxM (with SIZE).")] = None,
    stride: Annotated[str, typer.Option(help="Stride, N or NxM (with SIZE).")] = "1",
    padding: Annotated[str, typer.Option(help="Padding, N, NxM or 'same' (with SIZE).")] = "0",
    dilation: Annotated[str, typer.Option(help="Dilation, N or NxM (with SIZE).")] = "1",
    in_channels: Annotated[int, typer.Option(help="Input channels (with SIZE).")] = 1,
    out_channels: Annotated[Optional[int], typer.Option(help="Output channels (with SIZE); default: in.")] = None,
    input: Annotated[Optional[str], typer.Option("--input", help="Chain input CxHxW, e.g. 3x224x224.")] = None,
    layer: Annotated[
        Optional[list[str]], typer.Option("--layer", help="A layer, e.g. conv:out=64,k=7,s=2,p=3 (repeat).")
    ] = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="YAML file with 'input' and 'layers'.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Output shape, parameters, MACs and receptive field of conv/pool layers, by PyTorch's rules.

    One layer:  cnnexp conv-shape 224 --kernel 3 --stride 2 --padding 1

    A chain:    cnnexp conv-shape --input 3x224x224 --layer conv:out=64,k=7,s=2,p=3 --layer maxpool:k=3,s=2,p=1
    """
    from cnnexp.shapes import shape_from_flags  # pure Python: this command never imports torch, numpy or pandas

    net = shape_from_flags(size, kernel, stride, padding, dilation, in_channels, out_channels, input, layer, from_)

    if as_json:
        import json

        typer.echo(json.dumps(net.to_json()))
        return
    _render_chain(net, single=size is not None)


def _render_chain(net, single: bool) -> None:
    from rich.table import Table

    def dims(shape) -> str:
        return " x ".join(str(n) for n in shape)

    def pair(values) -> str:
        return " x ".join(f"{v:g}" for v in values) if values[0] != values[1] else f"{values[0]:g}"

    if single:  # one layer: show the arithmetic, the point of the calculator
        for name, formula in zip("HW", net.layers[0].formula):
            out.print(f"{name}_out = {formula}", highlight=False)
    table = Table(title=f"input {dims(net.input)}", title_justify="left",
                  caption="RF: receptive field, jump: effective stride (input pixels)", caption_justify="left")
    for column in ("#", "layer", "C x H x W", "params", "MACs", "RF", "jump"):
        left = column in ("layer", "C x H x W")
        table.add_column(column, justify="left" if left else "right", no_wrap=column != "layer", overflow="fold")
    for i, row in enumerate(net.layers, 1):
        table.add_row(str(i), escape(row.layer), dims(row.output), f"{row.params:,}", f"{row.macs:,}",
                      pair(row.receptive_field), pair(row.jump))
    last = net.layers[-1]
    table.add_section()
    table.add_row("", "total", dims(net.output), f"{net.params:,}", f"{net.macs:,}",
                  pair(last.receptive_field), pair(last.jump))
    out.print(table)
    ratio = net.dense_params / net.params if net.params else float("inf")
    out.print(
        f"A fully-connected layer from {dims(net.input)} to {dims(net.output)} would need "
        f"{net.dense_params:,} weights and biases"
        + (f", {ratio:,.0f}x the {net.params:,} here." if net.params else "; these layers have none."),
        highlight=False,
    )


@command("conv-check")
def conv_check(
    batch: Annotated[int, typer.Option(min=1, help="N, images in the batch.")] = 2,
    in_channels: Annotated[int, typer.Option(min=1, help="C_in.")] = 3,
    out_channels: Annotated[int, typer.Option(min=1, help="C_out, number of filters.")] = 4,
    size: Annotated[str, typer.Option(help="Image size, N or NxM.")] = "8",
    kernel: Annotated[str, typer.Option(help="Kernel size, N or NxM.")] = "3",
    stride: Annotated[str, typer.Option(help="Stride, N or NxM.")] = "1",
    padding: Annotated[str, typer.Option(help="Padding, N or NxM.")] = "1",
    dilation: Annotated[str, typer.Option(help="Dilation, N or NxM.")] = "1",
    seed: Annotated[int, typer.Option(help="Seeds input, filters and bias.")] = 0,
    repeats: Annotated[int, typer.Option(min=1, help="Runs per method; the median time is shown.")] = 3,
    tolerance: Annotated[float, typer.Option(help="Allowed error, relative to the largest output.")] = 1e-5,
) -> None:
    """Run the numpy loop, the numpy fast path and torch's conv2d on one random input; compare.

    Exit 0 when loop and fast match torch within the tolerance, 1 when they differ.
    """
    from rich.table import Table

    from cnnexp.conv import check_conv  # imports numpy here; torch is imported inside check_conv

    check = check_conv(batch, in_channels, out_channels, size, kernel, stride, padding, dilation, seed,
                       repeats, tolerance)
    torch_seconds = next(r.seconds for r in check.results if r.method == "torch")
    table = Table(title=f"x {tuple(check.input)} * w {tuple(check.weight)} -> y {tuple(check.output)}",
                  title_justify="left")
    for column in ("method", "max abs error vs torch", "median time", "time / torch"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in check.results:
        table.add_row(r.method, f"{r.max_abs_error:.2e}", f"{r.seconds * 1e3:.3f} ms",
                      f"{r.seconds / torch_seconds:.2f}x")
    out.print(table)
    verdict = "agree" if check.ok else "DIFFER"
    out.print(f"loop, fast and torch {verdict} (tolerance {check.tolerance:.2e})", highlight=False)
    if not check.ok:
        raise typer.Exit(1)


# Typer 0.29 builds a pydantic validator for each parameter of the command it runs, and importing pydantic
# for that costs more than starting Python. The calculator skips it when its arguments are plain: it parses
# them here and calls the very same `conv_shape` (same rendering, same one-line errors). Anything else
# (--help, --opt=value, a value that is not an int, an unknown or repeated flag) goes to Typer, which owns
# the messages for those. tests/test_cli.py keeps this table in step with the Typer command.
_CONV_SHAPE_FLAGS: dict[str, tuple[str, type]] = {
    "--kernel": ("kernel", str),
    "--stride": ("stride", str),
    "--padding": ("padding", str),
    "--dilation": ("dilation", str),
    "--in-channels": ("in_channels", int),
    "--out-channels": ("out_channels", int),
    "--input": ("input", str),
    "--layer": ("layer", list),
    "--from": ("from_", Path),
}


def _parse_conv_shape(argv: list[str]) -> dict | None:
    """`conv-shape`'s arguments as keyword arguments of `conv_shape`, or None to leave them to Typer."""
    kwargs: dict = {}
    args = iter(argv)
    for arg in args:
        if arg == "--json" and "as_json" not in kwargs:
            kwargs["as_json"] = True
        elif arg in _CONV_SHAPE_FLAGS:
            name, kind = _CONV_SHAPE_FLAGS[arg]
            value = next(args, None)
            if value is None or value.startswith("-") or (name in kwargs and kind is not list):
                return None
            if kind is list:
                kwargs.setdefault(name, []).append(value)
            elif kind is int:
                if not value.isdigit():
                    return None
                kwargs[name] = int(value)
            else:
                kwargs[name] = kind(value)
        elif not arg.startswith("-") and "size" not in kwargs:
            kwargs["size"] = arg
        else:
            return None
    return kwargs


def _fast_conv_shape(argv: list[str]) -> int | None:
    """Run `conv-shape` without Typer's parser if its arguments are plain; the exit status, or None."""
    kwargs = _parse_conv_shape(argv[1:]) if argv[:1] == ["conv-shape"] else None
    if kwargs is None:
        return None
    try:
        conv_shape(**kwargs)
    except typer.Exit as e:
        return e.exit_code
    return 0
