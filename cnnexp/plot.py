"""Figures of results files: a metric against an axis, one line per block, mean over seeds with a band.

    >>> from cnnexp.plot import choose_layout, plot_results, sweep_figure     # doctest: +SKIP
    >>> plot_results("results/init.csv", "small_init", ["x_grad_norm"], out="fig.svg")
    PosixPath('fig.svg')
    >>> sweep_figure("results/depth.csv")         # the default figure of a sweep, beside its CSV
    PosixPath('results/depth.png')
    >>> choose_layout(load_results("results/depth.csv"))
    Layout(x='depth', ys=('x_grad_norm', 'param_grad_norm'), facet='small_init', lines=('block',), held=())

What is drawn where follows from the data unless asked for (`choose_layout`): x is the numeric axis with the
most values (seed aside; small_init on a tie); a varying axis with at most MAX_FACETS values gets a column of
panels; each block gets a line, and so does each value of a further varying axis while a panel keeps at most
MAX_LINES lines. Any axis beyond that is held at one value (the one with the most x values), and the title
says so. Seeds are never lines: each line is the mean over seeds of `y` at each value of `x`, with a shaded
band from the smallest to the largest seed (the band stays positive, so it shows on log axes too).

An axis is logarithmic when none of its values is negative and the positive ones span at least two decades
(zeros, such as an underflowed gradient, are left off a log axis).

Figures are drawn on matplotlib's `Figure` with the Agg canvas directly, never through pyplot, so this
module changes no global backend and leaves nothing open.
"""
from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cnnexp.analysis import Results, as_frame, require_numeric, source, split_columns
from cnnexp.paths import check_output
from cnnexp.results import write_atomically
from cnnexp.errors import ResultsError
from cnnexp.schema import BLOCKS, FINDING_METRICS

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
LOG_SPAN = 100.0  # max/min at or above which a positive axis is drawn on a log scale
DEFAULT_X = "small_init"  # preferred x when several axes have equally many values
DEFAULT_Y = FINDING_METRICS  # the study's finding
DEFAULT_LAYER_Y = ("out_grad_norm",)  # for a per-layer file, which has neither of the above
MAX_FACETS = 4  # an axis with at most this many values may become the columns of panels
MAX_LINES = 8  # lines (and legend entries) per panel; an axis that would exceed it is held at one value
LEGEND_COLUMNS = 4
PANEL = (4.8, 3.4)  # inches per panel
TITLE_CHARS_PER_INCH = 12  # characters of the medium title font per inch of figure width, with a margin
DPI = 110
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class Layout:
    """What a figure draws: x, a row of panels per y, a column per value of `facet`, a line per value of
    `lines`, and each axis of `held` at one value only."""

    x: str
    ys: tuple[str, ...]
    facet: str | None
    lines: tuple[str, ...]  # block, then any other axis whose values get their own lines
    held: tuple[tuple[str, object, int], ...] = ()  # (axis, the value drawn, how many values the file has)


def plot_results(results: Results, x: str | None = None, y: Sequence[str] | str | None = None, *,
                 facet: str | None = None, out: str | os.PathLike | None = None) -> Path:
    """Draw `y` against `x` and write the figure; its format follows the extension of `out`.

    Args:
        results: a frame from `load_results`, or the path of a results CSV.
        x: a numeric column for the horizontal axis [default: chosen from the data, see `choose_layout`].
        y: one numeric column or several, a row of panels each [default: x_grad_norm, param_grad_norm;
            out_grad_norm for a per-layer file].
        facet: a column whose values each get a column of panels [default: chosen from the data].
        out: .png, .svg or .pdf [default: beside the CSV, <stem>_<y...>_vs_<x>.png, and _by_<facet>
            when `facet` is given].

    Returns:
        The path written.

    Raises:
        ResultsError: an unknown or non-numeric column, an unknown extension, or a bad results file;
            all checked before anything is written.
    """
    if out is not None:
        check_output(out, "--out", FORMATS)  # a special file, a missing folder, another format: before reading
    df = as_frame(results)
    layout = choose_layout(df, x, y, facet)
    if out is None:
        csv_path = Path(source(df))
        name = "_".join([csv_path.stem, *layout.ys, "vs", layout.x, *(["by", facet] if facet else [])])
        out = csv_path.with_name(name + ".png")
    fig = draw(df, layout)
    return write_atomically(out, lambda tmp: fig.savefig(tmp, format=file_format(out), dpi=DPI))


def sweep_figure(csv_path: str | os.PathLike) -> Path:
    """The default figure of a sweep, beside its CSV: results/init.csv -> results/init.png.

    Every choice (x, panels, lines, held axes) comes from the data, as `choose_layout` makes it.
    """
    csv_path = Path(csv_path)
    return plot_results(csv_path, out=csv_path.with_suffix(".png"))


def file_format(path: str | os.PathLike) -> str:
    """The figure format an output path asks for, from its extension.

    Raises:
        ResultsError: the extension is not .png, .svg or .pdf.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ResultsError(f"--out {path}: unknown figure format {suffix or '(no extension)'!r}; "
                           f"use {', '.join(FORMATS)}")
    return FORMATS[suffix]


def choose_layout(results: Results, x: str | None = None, ys: Sequence[str] | str | None = None,
                  facet: str | None = None) -> Layout:
    """Decide what goes where, from the data, for every role the caller leaves as None.

    x: the numeric configuration axis (seed and block aside) with the most distinct values, small_init on a
    tie. facet: the varying axis with the most values among those with at most MAX_FACETS. lines: block,
    then the remaining varying axes, fewest values first, while a panel has at most MAX_LINES lines. Every
    axis left over is held at the value with the most distinct x values (the largest on a tie).

    Raises:
        ResultsError: a column that does not exist, or an x or y column that is not numeric.
    """
    df = as_frame(results)
    config, metrics = split_columns(df)
    counts = {c: df[c].nunique(dropna=False) for c in config}
    if x is None:
        numeric = [c for c in config if c not in ("block", "seed") and _is_numeric(df[c])]
        x = max(numeric, key=lambda c: (counts[c], c == DEFAULT_X), default=DEFAULT_X)
    if ys is None:
        ys = ([m for m in DEFAULT_Y if m in metrics] or [m for m in DEFAULT_LAYER_Y if m in metrics]
              or metrics[:1])
    ys = [ys] if isinstance(ys, str) else list(dict.fromkeys(ys))
    for flag, column in [("--x", x), *(("--y", c) for c in ys), *([("--facet", facet)] if facet else [])]:
        if column not in df.columns:
            raise ResultsError(f"{flag} {column}: no such column in {source(df)} "
                               f"(its columns: {', '.join(df.columns)})")
        if flag != "--facet":
            require_numeric(df, column, source(df))
    free = [c for c in config if c not in ("block", "seed", x, facet) and counts[c] > 1]
    if facet is None:
        facet = max((c for c in free if counts[c] <= MAX_FACETS), key=counts.get, default=None)
    lines, held, n_lines = ["block"], [], counts["block"]
    for c in sorted((c for c in free if c != facet), key=counts.get):
        if n_lines * counts[c] <= MAX_LINES:
            lines.append(c)
            n_lines *= counts[c]
        else:
            value = _held_value(df, c, x)
            held.append((c, value, counts[c]))
            df = df[df[c] == value]
    return Layout(x, tuple(ys), facet, tuple(lines), tuple(held))


def figure(results: Results, x: str | None = None, ys: Sequence[str] | str | None = None, *,
           facet: str | None = None):
    """A matplotlib Figure of `results` as `choose_layout` lays it out (see there for the defaults).

    Raises:
        ResultsError: a column that does not exist, or an x or y column that is not numeric.
    """
    df = as_frame(results)
    return draw(df, choose_layout(df, x, ys, facet))


def draw(df: pd.DataFrame, layout: Layout):
    """A matplotlib Figure: a row of panels per y, a column per facet value, a line per line key; the
    legend below the panels and the title wrapped to the figure's width."""
    from matplotlib.figure import Figure

    x, ys, facet, lines = layout.x, layout.ys, layout.facet, list(layout.lines)
    for column, value, _ in layout.held:
        df = df[df[column] == value]
    keys = list(dict.fromkeys(key for key, _ in df.groupby(lines, sort=False, dropna=False)))
    facets = list(pd.unique(df[facet])) if facet else [None]
    width = PANEL[0] * len(facets)
    title = _title(df, layout, width=int(width * TITLE_CHARS_PER_INCH))
    legend_rows = math.ceil(len(keys) / LEGEND_COLUMNS)
    height = PANEL[1] * len(ys) + 0.2 * (title.count("\n") + 1) + 0.25 * legend_rows
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = np.asarray(fig.subplots(len(ys), len(facets), sharex=True, sharey="row", squeeze=False))
    handles = {}
    for row, y in enumerate(ys):
        for col, value in enumerate(facets):
            ax = axes[row, col]
            panel = df if facet is None else df[df[facet] == value]
            for key, group in panel.groupby(lines, sort=False, dropna=False):
                stats = group.groupby(x)[y].agg(["mean", "min", "max"]).sort_index()
                style = _style(key, keys, lines)
                [handles[style["label"]]] = ax.plot(stats.index, stats["mean"], **style)
                ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.2,
                                linewidth=0)
            _set_scale(ax.set_yscale, df[y])
            _set_scale(ax.set_xscale, df[x])
            ax.grid(True, which="major", alpha=0.3)
            if facet is not None and row == 0:
                ax.set_title(f"{facet}={value}", fontsize="medium")
            if col == 0:
                ax.set_ylabel(y)
            if row == len(ys) - 1:
                ax.set_xlabel(x)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", frameon=False,
               fontsize="small", ncols=min(len(handles), LEGEND_COLUMNS))
    fig.suptitle(title, fontsize="medium")
    return fig


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _held_value(df: pd.DataFrame, column: str, x: str):
    """The value of `column` under which x has the most distinct values; the largest on a tie."""
    spread = df.groupby(column, sort=True)[x].nunique()
    return spread.index[::-1][spread.to_numpy()[::-1].argmax()]


def _style(key, keys: list, lines: list[str]) -> dict:
    """A line's label and look: colour and (hollow) marker follow the block, the same in every figure, so
    lines that coincide still show each block's marker; the line style follows the other line axes."""
    key = key if isinstance(key, tuple) else (key,)
    keys = [k if isinstance(k, tuple) else (k,) for k in keys]
    blocks = list(dict.fromkeys([*BLOCKS, *(k[0] for k in keys)]))
    i = list(dict.fromkeys(k[1:] for k in keys)).index(key[1:])
    label = ", ".join([str(key[0]), *(f"{c}={v}" for c, v in zip(lines[1:], key[1:]))])
    b = blocks.index(key[0])
    return {"label": label, "color": f"C{b % 10}", "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[b % len(MARKERS)], "markerfacecolor": "none"}


def _set_scale(set_scale, values: pd.Series) -> None:
    """Set an axis' scale; on a log axis zeros are left out (masked), not drawn as a plunge to its edge."""
    scale = _scale(values)
    set_scale(scale, **({"nonpositive": "mask"} if scale == "log" else {}))


def _scale(values: pd.Series) -> str:
    """'log' when no finite value is negative and the positive ones span at least LOG_SPAN, else 'linear'.

    Zeros (a gradient that underflowed) do not prevent a log axis; they are simply not drawn on it.
    """
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    positive = v[v > 0]
    if len(positive) and (v >= 0).all() and positive.max() / positive.min() >= LOG_SPAN:
        return "log"
    return "linear"


def _title(df: pd.DataFrame, layout: Layout, width: int) -> str:
    """Where the figure comes from, the axes held fixed (and any held at one value of several), and what
    the line and band mean; each part wrapped to `width` characters."""
    config, _ = split_columns(df)
    shown = {layout.x, layout.facet, "seed", *layout.lines, *(c for c, _, _ in layout.held)}
    fixed = [f"{c}={df[c].iloc[0]}" for c in config if c not in shown]
    seeds = df.groupby([c for c in config if c != "seed"], dropna=False).size()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    parts = [f"{Path(source(df)).stem}: {'  '.join(fixed)}".rstrip(": ")]
    if layout.held:
        parts.append("drawn at " + ", ".join(f"{c}={v} only (of {k} values)" for c, v, k in layout.held))
    parts.append(f"line: mean over {'1 seed' if n == '1' else f'{n} seeds'}; band: min to max")
    return "\n".join(textwrap.fill(p, width, break_long_words=False, break_on_hyphens=False) for p in parts)
