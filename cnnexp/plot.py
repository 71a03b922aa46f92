"""Figures of results files: a metric against an axis, one line per block, mean over seeds with a band.

    >>> from cnnexp.plot import plot_results, sweep_figure                     # doctest: +SKIP
    >>> plot_results("results/init.csv", "small_init", ["x_grad_norm"], out="fig.svg")
    PosixPath('fig.svg')
    >>> sweep_figure("results/init.csv")          # the default figure of a sweep, beside its CSV
    PosixPath('results/init.png')

Each panel draws, for every block, the mean over seeds of `y` at each value of `x`, and a shaded band from
the smallest to the largest seed (the band stays positive, so it shows on log axes too). When an axis other
than `x` and the facet also varies, each of its values gets its own line, labelled with it. An axis is
logarithmic when none of its values is negative and the positive ones span at least two decades (zeros,
such as an underflowed gradient, are left off a log axis).

Figures are drawn on matplotlib's `Figure` with the Agg canvas directly, never through pyplot, so this
module changes no global backend and leaves nothing open.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cnnexp.analysis import Results, as_frame, require_numeric, source, split_columns, write_atomically
from cnnexp.errors import ResultsError

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
LOG_SPAN = 100.0  # max/min at or above which a positive axis is drawn on a log scale
DEFAULT_X, DEFAULT_Y = "small_init", ("x_grad_norm", "param_grad_norm")  # the study's finding
PANEL = (4.8, 3.4)  # inches per panel
DPI = 110


def plot_results(results: Results, x: str | None = None, y: Sequence[str] | str | None = None, *,
                 facet: str | None = None, out: str | os.PathLike | None = None) -> Path:
    """Draw `y` against `x` and write the figure; its format follows the extension of `out`.

    Args:
        results: a frame from `load_results`, or the path of a results CSV.
        x: a numeric column for the horizontal axis [default: small_init].
        y: one numeric column or several, a row of panels each [default: x_grad_norm, param_grad_norm].
        facet: a column whose values each get a column of panels.
        out: .png, .svg or .pdf [default: beside the CSV, <stem>_<y>_vs_<x>.png].

    Returns:
        The path written.

    Raises:
        ResultsError: an unknown or non-numeric column, an unknown extension, or a bad results file;
            all checked before anything is written.
    """
    x = x or DEFAULT_X
    ys = [y] if isinstance(y, str) else list(dict.fromkeys(y or DEFAULT_Y))
    if out is not None:
        file_format(out)  # refuse an unknown extension before reading anything
    df = as_frame(results)
    if out is None:
        csv_path = Path(source(df))
        name = "_".join([csv_path.stem, *ys, "vs", x, *(["by", facet] if facet else [])])
        out = csv_path.with_name(name + ".png")
    fig = figure(df, x, ys, facet=facet)
    return write_atomically(out, lambda tmp: fig.savefig(tmp, format=file_format(out), dpi=DPI))


def sweep_figure(csv_path: str | os.PathLike) -> Path:
    """The default figure of a sweep, beside its CSV: results/init.csv -> results/init.png.

    x = small_init, y = x_grad_norm and param_grad_norm (one panel each), a line per block, no facet.
    """
    csv_path = Path(csv_path)
    return plot_results(csv_path, DEFAULT_X, DEFAULT_Y, out=csv_path.with_suffix(".png"))


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


def figure(results: Results, x: str, ys: Sequence[str], *, facet: str | None = None):
    """A matplotlib Figure: a row of panels per y, a column per value of `facet` (one without).

    Raises:
        ResultsError: a column that does not exist, or an x or y column that is not numeric.
    """
    from matplotlib.figure import Figure

    df = as_frame(results)
    for flag, column in [("--x", x), *(("--y", c) for c in ys), *([("--facet", facet)] if facet else [])]:
        if column not in df.columns:
            raise ResultsError(f"{flag} {column}: no such column in {source(df)} "
                               f"(its columns: {', '.join(df.columns)})")
        if flag != "--facet":
            require_numeric(df, column, source(df))
    lines = _line_columns(df, x, facet)
    labels = list(dict.fromkeys(_label(key, lines) for key, _ in df.groupby(lines, sort=False, dropna=False)))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}  # same colour for a line in every panel
    facets = list(pd.unique(df[facet])) if facet else [None]
    fig = Figure(figsize=(PANEL[0] * len(facets), PANEL[1] * len(ys)), layout="constrained")
    axes = np.asarray(fig.subplots(len(ys), len(facets), sharex=True, sharey="row", squeeze=False))
    for row, y in enumerate(ys):
        for col, value in enumerate(facets):
            ax = axes[row, col]
            panel = df if facet is None else df[df[facet] == value]
            for key, group in panel.groupby(lines, sort=False, dropna=False):
                stats = group.groupby(x)[y].agg(["mean", "min", "max"]).sort_index()
                label = _label(key, lines)
                ax.plot(stats.index, stats["mean"], marker="o", color=colours[label], label=label)
                ax.fill_between(stats.index, stats["min"], stats["max"], color=colours[label], alpha=0.2,
                                linewidth=0)
            ax.set_yscale(_scale(df[y]))
            ax.set_xscale(_scale(df[x]))
            ax.grid(True, which="major", alpha=0.3)
            if facet is not None and row == 0:
                ax.set_title(f"{facet}={value}")
            if col == 0:
                ax.set_ylabel(y)
            if row == len(ys) - 1:
                ax.set_xlabel(x)
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(_title(df, x, facet, lines), fontsize="medium")
    return fig


def _line_columns(df: pd.DataFrame, x: str, facet: str | None) -> list[str]:
    """The columns that tell lines apart: block, and every other configuration column that varies,
    except seed (averaged over), x and the facet."""
    config, _ = split_columns(df)
    varying = [c for c in config if c not in ("block", "seed", x, facet) and df[c].nunique(dropna=False) > 1]
    return ["block", *varying]


def _label(key, columns: list[str]) -> str:
    key = key if isinstance(key, tuple) else (key,)
    return ", ".join([str(key[0]), *(f"{c}={v}" for c, v in zip(columns[1:], key[1:]))])


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


def _title(df: pd.DataFrame, x: str, facet: str | None, lines: list[str]) -> str:
    """Where the figure comes from, the axes held fixed, and what the line and band mean."""
    config, _ = split_columns(df)
    fixed = [f"{c}={df[c].iloc[0]}" for c in config if c not in (x, facet, "seed", *lines)]
    seeds = df.groupby([c for c in config if c != "seed"], dropna=False).size()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    seeds_text = "1 seed" if n == "1" else f"{n} seeds"
    return f"{Path(source(df)).stem}: {'  '.join(fixed)}\nline: mean over {seeds_text}; band: min to max"
