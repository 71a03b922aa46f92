"""Figures of results files: a metric against an axis, one line per block, mean over seeds with a band.

    from cnnexp.plot import choose_layout, plot_results, sweep_figure
    plot_results("results/init.csv", "small_init", ["x_grad_norm"], out="fig.svg")   # -> Path("fig.svg")
    sweep_figure("results/depth.csv")         # the default figure of a sweep, beside its CSV: results/depth.png
    choose_layout(load_results("results/depth.csv"))
    # -> Layout(x='depth', ys=('x_grad_norm', 'param_grad_norm'), facet='small_init', lines=('block',), held=())

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cnnexp.analysis import Results, as_frame, names, require_numeric, source, split_columns
from cnnexp.errors import ResultsError, param
from cnnexp.fit import fit_group, law_for, transform, usable
from cnnexp.paths import check_output
from cnnexp.results import write_atomically
from cnnexp.schema import BLOCKS, FINDING_METRICS

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
LOG_SPAN = 100.0  # max/min at or above which a positive axis is drawn on a log scale
FRACTIONS = ("_acc", "_error")  # metrics that are fractions of a data set: drawn on a linear axis
DEFAULT_X = "small_init"  # preferred x when several axes have equally many values
DEFAULT_Y = FINDING_METRICS  # the study's finding
DEFAULT_LAYER_Y = ("out_grad_norm",)  # for a per-layer file, which has neither of the above
MAX_FACETS = 4  # an axis with at most this many values may become the columns of panels
MAX_LINES = 8  # lines (and legend entries) per panel; an axis that would exceed it is held at one value
LEGEND_COLUMNS = 4
PANEL = (4.8, 3.4)  # inches per panel
TITLE_CHARS_PER_INCH = 12  # characters of the medium title font per inch of figure width, with a margin
DPI = 110  # dots per inch of a raster figure (--dpi)
MAX_PIXELS = 50_000_000  # a raster figure larger than this (about 200 MB in memory) is refused
MAX_PANELS = 24  # panels of one figure: y columns times facet values
SHARE_DECADES = 3.0  # a row of panels shares its y axis unless that adds more decades than this to a panel
COINCIDE_RTOL = 1e-3  # lines within this of each other at every x look as one: they are drawn nested
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MARKERS_PER_LINE = 12  # a line of more points marks every n-th: fifty markers on coinciding lines merge into a band


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
                 facet: str | None = None, out: str | os.PathLike | None = None, fit: bool = False,
                 dpi: float = DPI, where: Sequence[str] = ()) -> Path:
    """Draw `y` against `x` and write the figure; its format follows the extension of `out`.

    Args:
        results: a frame from `load_results`, or the path of a results CSV.
        x: a numeric column for the horizontal axis [default: chosen from the data, see `choose_layout`].
        y: one numeric column or several, a row of panels each [default: x_grad_norm, param_grad_norm;
            out_grad_norm for a per-layer file].
        facet: a column whose values each get a column of panels [default: chosen from the data; ""
            for none]; at most MAX_PANELS panels in all.
        out: .png, .svg or .pdf [default: beside the CSV, <stem>_<y...>_vs_<x>.png, and _by_<facet>
            when `facet` is given].
        fit: also draw each line's fitted law (`cnnexp.fit`) dashed over the points it was fitted on, with
            its slope and 95% interval in the panel's legend, and the theory's slope dotted where derived.
        dpi: dots per inch of a .png (and of any raster part of the others).
        where: only the rows matching these "AXIS=VALUE[,VALUE...]" conditions (`cnnexp.analysis.select`); a
            held axis is held at the value chosen this way.

    Returns:
        The path written.

    Raises:
        ResultsError: an unknown or non-numeric column, an unknown extension, a dpi out of range, too
            many panels, or a bad results file; all checked before anything is written.
    """
    _check_outputs(out, dpi)
    df = as_frame(results, where)
    layout = choose_layout(df, x, y, facet)
    if out is None:
        out = _beside(df, "_".join([*layout.ys, "vs", layout.x, *(["by", facet] if facet else [])]))
    return _write(draw(df, layout, fit=fit), out, dpi)


def plot_layers(results: Results, y: Sequence[str] | str | None = None, *, out: str | os.PathLike | None = None,
                dpi: float = DPI, where: Sequence[str] = ()) -> Path:
    """Signal propagation plots (Brock et al. 2021) of a sweep of networks' per-layer file: each statistic
    against the layer's index along the network (log y), the plain twin and the network as written on the
    same panels, a column of panels per setting of init, small_init and bn, a band over seeds.

    The index counts the rows of the network's main path, in order: every layer outside residual blocks and
    each residual block's output (after the add; in the twin, its branch's output), as Brock et al. plot
    them at each block's end. The layers inside the blocks are in the file, not on the plot.

    Args:
        results: a frame from `load_results`, or the path of a per-layer CSV of a sweep of networks.
        y: statistics to draw [default: act_var, act_sq_mean, out_grad_norm].
        out: .png, .svg or .pdf [default: beside the CSV, <stem>_layers.png].
        dpi: dots per inch of a .png.

    Raises:
        ResultsError: not a per-layer file of networks, an unknown statistic, or too many panels.
    """
    _check_outputs(out, dpi)
    df = as_frame(results, where)
    if not {"path", "act_var"} <= set(df.columns):
        raise ResultsError(f"{source(df)}: signal propagation plots need the per-layer file of a sweep of networks "
                           "(cnnexp sweep with a net: and --per-layer); this file has no path and act_var columns")
    frame, facet = layer_frame(df)
    layout = choose_layout(frame, LAYER_INDEX, y or LAYER_Y, facet)
    return _write(draw(frame, layout), out if out is not None else _beside(df, "layers"), dpi)


LAYER_INDEX = "layer_index"  # the x of a signal propagation plot: a layer's place along the network, from 1
LAYER_Y = ("act_var", "act_sq_mean", "out_grad_norm")


def layer_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A per-layer file of networks as a signal propagation plot reads it: the rows of the main path (every
    layer outside residual blocks, and each block's output after its add), each run's numbered (LAYER_INDEX),
    and init, small_init and bn joined into one column of settings (its name is returned: the facet), each
    "small (0.01), on" or "kaiming, off"."""
    inside = df["path"].astype(str).str.contains(r"\.(?:residual|shortcut)\.", regex=True)
    rows = df[~inside].copy()
    config, _ = split_columns(rows)
    run = [c for c in config if c not in ("path", "layer")]
    rows[LAYER_INDEX] = rows.groupby(run, sort=False, dropna=False).cumcount() + 1
    parts = [c for c in ("init", "small_init", "bn") if c in rows.columns]
    if not parts:
        return rows.drop(columns=["path", "layer"]), ""

    def setting(row: pd.Series) -> str:
        small = f"{row['small_init']:g}" if pd.notna(row.get("small_init")) else ""
        init = f"{row['init']} ({small})" if "init" in row and small else str(row.get("init", small))
        return ", ".join(filter(None, [init, str(row.get("bn", ""))]))

    name = ", ".join(filter(None, ["init (small_init)" if "init" in parts else "small_init" if "small_init" in parts
                                   else "", "bn" if "bn" in parts else ""]))
    rows[name] = rows[parts].apply(setting, axis=1)
    rows = rows.drop(columns=["path", "layer", *parts])
    rows.attrs = df.attrs
    return rows, name


def _check_outputs(out: str | os.PathLike | None, dpi: float) -> None:
    """Refuse a dpi out of range, or an `out` that is a special file, in a missing folder or of another format:
    before anything is read."""
    if not (0 < dpi < math.inf):  # also refuses NaN
        raise ResultsError(f"{param('dpi')} {dpi}: must be a positive number of dots per inch, e.g. {DPI}")
    if out is not None:
        check_output(out, param("out"), FORMATS)


def _beside(df: pd.DataFrame, what: str) -> Path:
    """A figure's default path: beside the (first) file read, <stem>[+N]_<what>.png."""
    paths = df.attrs.get("paths") or [source(df)]
    csv_path = Path(paths[0])
    stem = csv_path.stem + (f"+{len(paths) - 1}" if len(paths) > 1 else "")
    return csv_path.with_name(f"{stem}_{what}.png")


def _write(fig, out: str | os.PathLike, dpi: float) -> Path:
    """Write a figure in the format its path's extension asks for, refusing a raster too large to hold."""
    width, height = fig.get_size_inches() * dpi
    if file_format(out) == "png" and width * height > MAX_PIXELS:
        raise ResultsError(f"{param('dpi')} {dpi:g}: the figure would be {width:,.0f} x {height:,.0f} pixels, over "
                           f"{MAX_PIXELS:,}; use a smaller {param('dpi')} or .svg/.pdf")
    return write_atomically(out, lambda tmp: fig.savefig(tmp, format=file_format(out), dpi=dpi))


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
        raise ResultsError(f"{param('out')} {path}: unknown figure format {suffix or '(no extension)'!r}; "
                           f"use {', '.join(FORMATS)}")
    return FORMATS[suffix]


def choose_layout(results: Results, x: str | None = None, ys: Sequence[str] | str | None = None,
                  facet: str | None = None) -> Layout:
    """Decide what goes where, from the data, for every role the caller leaves as None.

    x: the numeric configuration axis (seed and block aside) with the most distinct values, small_init on a
    tie. facet: the varying axis with the most values among those with at most MAX_FACETS ("" for none; one
    asked for may have up to MAX_PANELS / len(ys) values). lines: block, then the remaining varying axes,
    fewest values first, while a panel has at most MAX_LINES lines. Every axis left over is held at the value
    with the most distinct x values (the largest on a tie).

    Raises:
        ResultsError: a column that does not exist, an x or y column that is not numeric, or a facet with
            too many values.
    """
    df = as_frame(results)
    config, metrics = split_columns(df)
    auto_facet, facet = facet is None, facet or None  # "" asks for no facet
    counts = {c: df[c].nunique(dropna=False) for c in config}
    if x is None:
        numeric = [c for c in config if c not in ("block", "seed") and _is_numeric(df[c])]
        x = max(numeric, key=lambda c: (counts[c], c == DEFAULT_X), default=DEFAULT_X)
    if ys is None:
        ys = _default_ys(df, config, metrics)
    ys = [ys] if isinstance(ys, str) else list(dict.fromkeys(ys))
    named = [(param("x"), x), *((param("y"), c) for c in ys), *([(param("facet"), facet)] if facet else [])]
    for flag, column in named:
        if column not in df.columns:
            raise ResultsError(f"{flag} {column}: no such column in {source(df)} "
                               f"(its columns: {names(df.columns)})")
        if flag == param("x") and column in config and column != "block" and not _is_numeric(df[column]):
            numeric = [c for c in config if c not in ("block",) and _is_numeric(df[c])]
            raise ResultsError(f"{flag} {column}: not a numeric axis of {source(df)} (numeric axes: "
                               f"{', '.join(numeric) or 'none'}); to give each of its values panels of their own, "
                               f"use {param('facet')} {column}")
        if flag != param("facet"):
            require_numeric(df, column, source(df))
    free = [c for c in config if c not in ("block", "seed", x, facet) and counts[c] > 1]
    if auto_facet:
        few = [c for c in free if counts[c] <= MAX_FACETS and counts[c] * len(ys) <= MAX_PANELS]
        facet = max(few, key=lambda c: counts[c], default=None)
    _require_few_panels(df, ys, facet)
    lines, held, n_lines = ["block"], [], counts["block"]
    for c in sorted((c for c in free if c != facet), key=lambda c: counts[c]):
        if n_lines * counts[c] <= MAX_LINES:
            lines.append(c)
            n_lines *= counts[c]
        else:
            value = _held_value(df, c, x)
            held.append((c, value, counts[c]))
            df = df[df[c] == value]
    return Layout(x, tuple(ys), facet, tuple(lines), tuple(held))


def _default_ys(df: pd.DataFrame, config: list[str], metrics: list[str]) -> list[str]:
    """What a file is about: a curve file's loss over steps (or training error over epochs), a training sweep's
    steps_to_fit (where some run fitted), the study's finding, a per-layer file's out_grad_norm, else its first
    metric."""
    if "step" in config and "loss" in metrics:
        return ["loss"]
    if "epoch" in config and "running_error" in metrics:  # a curve of training on data: the training error
        return ["running_error"]
    if "steps_to_fit" in metrics and df["steps_to_fit"].notna().any():
        return ["steps_to_fit"]
    return [m for m in DEFAULT_Y if m in metrics] or [m for m in DEFAULT_LAYER_Y if m in metrics] or metrics[:1]


def _require_few_panels(df: pd.DataFrame, ys: list[str], facet: str | None) -> None:
    """Refuse a figure of more than MAX_PANELS panels (a facet on a column of thousands of values)."""
    columns = df[facet].nunique(dropna=False) if facet else 1
    if len(ys) * columns > MAX_PANELS:
        asked = f"{param('facet')} {facet}: {columns:,} values" if facet else f"{param('y')}: {len(ys)} columns"
        raise ResultsError(f"{asked} in {source(df)} would draw {len(ys) * columns:,} panels, more than "
                           f"{MAX_PANELS}; choose a column with fewer values (or {param('facet')} '' for none)")


def figure(results: Results, x: str | None = None, ys: Sequence[str] | str | None = None, *,
           facet: str | None = None):
    """A matplotlib Figure of `results` as `choose_layout` lays it out (see there for the defaults).

    Raises:
        ResultsError: a column that does not exist, or an x or y column that is not numeric.
    """
    df = as_frame(results)
    return draw(df, choose_layout(df, x, ys, facet))


def draw(df: pd.DataFrame, layout: Layout, *, fit: bool = False):
    """A matplotlib Figure: a row of panels per y, a column per facet value, a line per line key; the
    legend below the panels and the title wrapped to the figure's width.

    A line is the mean over seeds at each x, with a band from min to max when a point has several runs.
    Lines that coincide are drawn nested (the earlier wider), a row's panels keep their own y range when
    sharing one would spread them over many more decades, and every value a log axis cannot show (zeros,
    such as an underflowed gradient) or that is not finite is counted in the title, never dropped in silence.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    x, ys, facet, lines = layout.x, layout.ys, layout.facet, list(layout.lines)
    for column, value, _ in layout.held:
        df = df[df[column] == value]
    keys = list(dict.fromkeys(key for key, _ in df.groupby(lines, sort=False, dropna=False)))
    facets = list(pd.unique(df[facet])) if facet else [None]
    scales = {c: _scale(df[c]) for c in (x, *ys)}
    banded = _runs_per_point(df, layout) > 1
    panels = {(row, col): _panel_lines(df if facet is None else df[df[facet] == value], layout, y)
              for row, y in enumerate(ys) for col, value in enumerate(facets)}
    notes = [*_undrawn(df, layout, scales), *_nested_note(panels, ys, facet, facets, lines)]
    width = PANEL[0] * len(facets)
    title = _title(df, layout, width=int(width * TITLE_CHARS_PER_INCH), banded=banded, notes=notes)
    legend_rows = math.ceil(len(keys) / LEGEND_COLUMNS)
    height = PANEL[1] * len(ys) + 0.2 * (title.count("\n") + 1) + 0.25 * legend_rows
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = np.asarray(fig.subplots(len(ys), len(facets), sharex=True, squeeze=False))
    handles = {}
    for row, y in enumerate(ys):
        shared = _share_y([panels[row, col] for col in range(len(facets))], scales[y])
        for col, value in enumerate(facets):
            ax = axes[row, col]
            if shared and col:
                ax.sharey(axes[row, 0])
                ax.tick_params(axis="y", labelleft=False)
            widths = _nesting(panels[row, col])
            for (key, stats), extra in zip(panels[row, col], widths):
                style = _style(key, keys, lines)
                [handles[style["label"]]] = ax.plot(stats.index, stats["mean"], **style,
                                                    linewidth=1.5 + 2.5 * extra, markersize=6 + 4 * extra,
                                                    zorder=2 - 0.1 * extra,
                                                    markevery=max(1, len(stats) // MARKERS_PER_LINE))
                if banded:
                    ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.2,
                                    linewidth=0)
            if fit:
                draw_fits(ax, df if facet is None else df[df[facet] == value], x, y, lines, keys)
            _set_scale(ax.set_yscale, scales[y])
            _set_scale(ax.set_xscale, scales[x])
            if scales[x] == "linear" and pd.api.types.is_integer_dtype(df[x]):  # seed, depth: no 0.25 ticks
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def draw_fits(ax, panel: pd.DataFrame, x: str, y: str, lines: list[str], keys: list) -> None:
    """Each line's fitted law (the axis' default law, seeds pooled) dashed over the points it was fitted on,
    the theory's slope dotted through their centroid where one is derived; slopes and intervals in a legend
    inside the panel."""
    law = law_for(x, None)
    config, _ = split_columns(panel)
    handles = []
    for key, group in panel.groupby(lines, sort=False, dropna=False):
        style = _style(key, keys, lines)
        row = fit_group(group, x, y, law, group.iloc[0][config].to_dict(), panel.attrs.get("net_files"))
        if math.isnan(row["slope"]):
            continue
        keep, _ = usable(law, x, group[x], group[y])
        used = group[x].to_numpy(dtype=float)[keep]
        grid = (np.geomspace if law.log_x else np.linspace)(used.min(), used.max(), 50)
        label = f"{style['label']}: {row['slope']:.4f} [{row['slope_low']:.4f}, {row['slope_high']:.4f}]"
        if not math.isnan(row["theory"]):
            u, v = transform(law, used, group[y].to_numpy(dtype=float)[keep])
            through = v.mean() - row["theory"] * u.mean()  # the line of that slope closest to the points
            ax.plot(grid, law.predict(through, row["theory"], grid), color=style["color"], linestyle=":",
                    linewidth=1.5)
            label += f", theory {row['theory']:g}{' (limit)' if row['theory_kind'] == 'limit' else ''}"
        handles += ax.plot(grid, law.predict(row["intercept"], row["slope"], grid), color=style["color"],
                           linestyle="--", linewidth=1, label=label)
    if handles:
        ax.legend(handles=handles, fontsize="x-small", frameon=False, title_fontsize="x-small",
                  title=f"{law.name} law, 95% interval (dashed); theory (dotted)")


def _panel_lines(panel: pd.DataFrame, layout: Layout, y: str) -> list[tuple[object, pd.DataFrame]]:
    """Each line of one panel in drawing order: its key and, per x, the mean, min and max of y over seeds (an x
    where y has no value is left out, so the points that have one are joined: an evaluation every few epochs)."""
    return [(key, group.groupby(layout.x)[y].agg(["mean", "min", "max"]).dropna(how="all").sort_index())
            for key, group in panel.groupby(list(layout.lines), sort=False, dropna=False)]


def _runs_per_point(df: pd.DataFrame, layout: Layout) -> int:
    """The most runs behind one point of one line (1 when x is the seed, or with one seed)."""
    where = [*layout.lines, *([layout.facet] if layout.facet else []), layout.x]
    return int(df.groupby(where, dropna=False).size().max()) if len(df) else 0


def _same_line(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Two lines that would look as one: the same x values and means within COINCIDE_RTOL everywhere."""
    return (a.index.equals(b.index)
            and bool(np.isclose(a["mean"], b["mean"], rtol=COINCIDE_RTOL, atol=0, equal_nan=True).all()))


def _coinciding(lines: list) -> list[tuple[int, ...]]:
    """Groups (indices in drawing order) of two or more lines of one panel that coincide."""
    groups: list[list[int]] = []
    for i, (_, stats) in enumerate(lines):
        home = next((g for g in groups if _same_line(lines[g[0]][1], stats)), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return [tuple(g) for g in groups if len(g) > 1]


def _nesting(lines: list) -> list[int]:
    """For each line, how many lines coinciding with it are drawn after it: 0 for most; the earlier lines
    of a coinciding group are drawn wider and below, so each stays visible around the next."""
    extra = [0] * len(lines)
    for group in _coinciding(lines):
        for position, i in enumerate(group):
            extra[i] = len(group) - 1 - position
    return extra


def _nested_note(panels: dict, ys: Sequence[str], facet: str | None, facets: list, lines: list[str]) -> list[str]:
    """A title line naming the lines drawn nested because they coincide, per y and (with facets) per panel."""
    said = []
    for row, y in enumerate(ys):
        for col, value in enumerate(facets):
            groups = [" = ".join(_line_label(panels[row, col][i][0], lines) for i in group)
                      for group in _coinciding(panels[row, col])]
            if groups:
                where = f"{y}" + (f" at {facet}={value}" if facet is not None else "")
                said.append(f"{where}: {'; '.join(groups)}")
    return [f"coinciding lines (within {COINCIDE_RTOL:g}), drawn nested: {'; '.join(said)}"] if said else []


def _line_label(key, columns: Sequence[str]) -> str:
    """A line's name: the block, then 'axis=value' for each further column of its key."""
    key = key if isinstance(key, tuple) else (key,)
    return ", ".join([str(key[0]), *(f"{c}={v}" for c, v in zip(columns[1:], key[1:]))])


def _share_y(lines_per_panel: list[list], scale: str) -> bool:
    """Whether a row of panels shares one y axis: yes, unless on a log axis the row spans more than
    SHARE_DECADES decades beyond the widest single panel (facets 150 decades apart each get their own)."""
    if scale != "log" or len(lines_per_panel) < 2:
        return True
    spans = []
    for lines in lines_per_panel:
        v = np.concatenate([stats[["mean", "min", "max"]].to_numpy(float).ravel() for _, stats in lines] or [[]])
        v = v[np.isfinite(v) & (v > 0)]
        if len(v):
            spans.append((np.log10(v.min()), np.log10(v.max())))
    if len(spans) < 2:
        return True
    low, high = min(a for a, _ in spans), max(b for _, b in spans)
    return high - low <= max(b - a for a, b in spans) + SHARE_DECADES


def _undrawn(df: pd.DataFrame, layout: Layout, scales: dict[str, str]) -> list[str]:
    """Title lines counting the runs whose x or y cannot be drawn: zeros (and negatives) on a log axis,
    and NaN or infinite values; each says where they are (line, facet, x values)."""
    notes = []
    for column in (layout.x, *layout.ys):
        values = df[column].to_numpy(dtype=float)
        reasons = {"nan": np.isnan(values), "inf": np.isinf(values)}
        if scales[column] == "log":
            zero = "0 (underflow)" if "_grad" in column else "0"  # a gradient norm of 0: every element underflowed
            reasons[zero] = values == 0  # a log axis has no place for it
        for what, mask in reasons.items():
            n = int(mask.sum())
            if n:
                why = " (log axis)" if what.startswith("0") else ""
                notes.append(f"not drawn{why}: {column} = {what} in {n} run{'s' * (n > 1)}, "
                             f"{_where(df[mask], layout)}")
    return notes


def _where(rows: pd.DataFrame, layout: Layout, most: int = 3) -> str:
    """Where some rows lie, briefly: 'plain at small_init=1e-06, 1e-08; residual at ...'."""
    by = [*layout.lines, *([layout.facet] if layout.facet else [])]
    parts = []
    for key, group in rows.groupby(by, sort=False, dropna=False):
        name = _line_label(key, by)
        xs = list(dict.fromkeys(group[layout.x]))
        shown = ", ".join(map(str, xs[:most])) + (f" and {len(xs) - most} more" if len(xs) > most else "")
        parts.append(f"{name} at {layout.x}={shown}")
    rest = len(parts) - most
    return "; ".join(parts[:most]) + (f"; and {rest} more line{'s' * (rest > 1)}" if rest > 0 else "")


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
    label = _line_label(key, lines)
    b = blocks.index(key[0])
    return {"label": label, "color": f"C{b % 10}", "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[b % len(MARKERS)], "markerfacecolor": "none"}


def _set_scale(set_scale, scale: str) -> None:
    """Set an axis' scale; on a log axis zeros are left out (masked, and counted in the title by
    `_undrawn`), not drawn as a plunge to its edge."""
    set_scale(scale, **({"nonpositive": "mask"} if scale == "log" else {}))


def _scale(values: pd.Series) -> str:
    """'log' when no finite value is negative and the positive ones span at least LOG_SPAN, else 'linear'.

    Zeros (a gradient that underflowed) do not prevent a log axis; they are simply not drawn on it. An accuracy
    or an error (a fraction, where 0 is the point: a training set fit) is always linear.
    """
    if str(values.name).endswith(FRACTIONS):
        return "linear"
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    positive = v[v > 0]
    if len(positive) and (v >= 0).all() and positive.max() / positive.min() >= LOG_SPAN:
        return "log"
    return "linear"


def _title(df: pd.DataFrame, layout: Layout, width: int, banded: bool = True, notes: Sequence[str] = ()) -> str:
    """Where the figure comes from, the axes held fixed (and any held at one value of several), what the
    line and band mean, and `notes` (values not drawn, lines drawn nested); each part wrapped to `width`
    characters."""
    config, _ = split_columns(df)
    shown = {layout.x, layout.facet, "seed", *layout.lines, *(c for c, _, _ in layout.held)}
    fixed = [f"{c}={df[c].iloc[0]}" for c in config if c not in shown]
    parts = [f"{Path(source(df)).stem}: {'  '.join(fixed)}".rstrip(": ")]
    if layout.held:
        parts.append("drawn at " + ", ".join(f"{c}={v} only (of {k} values)" for c, v, k in layout.held))
    if banded:
        seeds = df.groupby([c for c in config if c != "seed"], dropna=False).size()
        n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
        parts.append(f"line: mean over {n} seeds; band: min to max")
    elif layout.x == "seed":
        parts.append("line: one run per point (seed on x)")
    else:
        seeds = pd.unique(df["seed"]) if "seed" in df else []
        parts.append("line: one run per point" + (f" (seed={seeds[0]})" if len(seeds) == 1 else ""))
    parts.extend(notes)
    return "\n".join(textwrap.fill(p, width, break_long_words=False, break_on_hyphens=False) for p in parts)
