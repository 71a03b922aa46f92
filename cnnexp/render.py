"""Rich renderings of cnnexp's results, for the command line: tables that never cut a number.

The library returns plain data; this module turns it into rich tables, and `show` prints one to a console at a
width that crops nothing. Only the CLI imports it.

    from rich.console import Console
    show(Console(), pairs_table(side_by_side(report.rows)))
"""
from __future__ import annotations

import math
from typing import Any

from cnnexp.schema import FINDING_METRICS
from cnnexp.schema import columns as columns_of
from cnnexp.stats import STATISTICS
from cnnexp.theory import EXACT_TOLERANCE, LIMIT_TOLERANCE, vanishes


def _fmt(value, digits: int = 6) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def show(out, renderable) -> None:
    """Print to stdout without ever cropping a cell. At a terminal, or when COLUMNS sets a width, a table
    wider than that is split into several, each repeating its key columns (a number is never cut or
    wrapped); otherwise (a file, a pipe) it is printed at its natural width."""
    import os

    limit = out.width if out.is_terminal or os.environ.get("COLUMNS", "").isdigit() else None
    if getattr(renderable, "title", None):  # a title line may be longer than its table: print it whole
        if limit:
            out.print(renderable.title, style="italic", width=limit, overflow="fold")
        else:
            out.print(renderable.title, style="italic", soft_wrap=True)
        renderable.title = None
    parts = _split_table(out, renderable, limit) if limit else [renderable]
    caption = getattr(renderable, "caption", None) if len(parts) > 1 else None  # under the last part, whole
    for part in parts:
        need = _need(out, part)
        width = max(out.width, need.minimum if limit else need.maximum)
        _emit(out, part, width=width, crop=False)
    if caption:
        _emit(out, caption, width=limit, overflow="fold", highlight=False)


def _emit(out, renderable, **options) -> None:
    """Print; to a file or a pipe, without the trailing spaces that pad a table's lines to its width."""
    if out.is_terminal:
        out.print(renderable, **options)
        return
    with out.capture() as captured:
        out.print(renderable, **options)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _need(out, renderable):
    from rich.measure import Measurement

    return Measurement.get(out, out.options.update_width(10_000), renderable)


def _split_table(out, table, limit: int) -> list:
    """A table as several whose minimum widths fit `limit`, each with the table's first `key_columns`
    columns and as many of the others as fit (at least one); the caption goes under the last."""
    import copy
    from dataclasses import replace

    from rich.table import Table

    if not isinstance(table, Table) or _need(out, table).minimum <= limit:
        return [table]
    keys = table.columns[: getattr(table, "key_columns", 1)]

    def part(columns) -> Table:
        piece = copy.copy(table)
        piece.columns = [replace(c, _index=i) for i, c in enumerate([*keys, *columns])]
        first = piece.columns[len(keys)]
        if str(first.header).startswith("\n"):  # a group's later column (e.g. a block under its metric): name it
            before = table.columns[: table.columns.index(columns[0])]
            group = next((str(c.header).split("\n")[0] for c in reversed(before)
                          if not str(c.header).startswith("\n")), "")
            first.header = group + str(first.header)
        piece.caption = None
        return piece

    units: list[list] = []  # a column group (a metric's blocks and ratio) stays together where it fits
    for column in table.columns[len(keys):]:
        if units and str(column.header).startswith("\n"):
            units[-1].append(column)
        else:
            units.append([column])
    groups: list[list] = [[]]
    for unit in units:
        whole = groups[-1] and _need(out, part([*groups[-1], *unit])).minimum > limit
        if whole and _need(out, part(unit)).minimum <= limit:
            groups.append([])  # the group starts the next part whole
            groups[-1] += unit
            continue
        for column in unit:  # (a group too wide for any part is cut, column by column)
            if groups[-1] and _need(out, part([*groups[-1], column])).minimum > limit:
                groups.append([])
            groups[-1].append(column)
    return [part(g) for g in groups]


def _table(title: str, columns: list[str], rows: list[list[str]], *, left: tuple[str, ...] = (), keys: int = 1,
           gap: int = 2):
    """A rich table whose cells are never cut: each column is at least as wide as its widest cell. Numbers are
    right-aligned; the columns named in `left` are left-aligned. The first `keys` columns name a row: `show`
    repeats them when it splits a table too wide for the terminal. `gap=1` sets columns one space apart, with
    no edge, to keep a wide table within a narrow terminal (e.g. COLUMNS=60)."""
    from rich import box
    from rich.table import Table

    # with gap 1, the box's divider is the one space
    compact: dict[str, Any] = {"padding": 0, "show_edge": False} if gap == 1 else {}
    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, **compact)
    for i, name in enumerate(columns):
        width = max((len(r[i]) for r in rows), default=0)
        width = max([width, *(len(line) for line in name.splitlines())])  # headers whole too
        justify: Any = "left" if name in left else "right"
        table.add_column(name, justify=justify, min_width=width, overflow="fold")
    for r in rows:
        table.add_row(*r)
    table.key_columns = max(1, keys)  # type: ignore[attr-defined]  # read by show(), which splits tables
    return table


def _ratio_cell(value: float) -> str:
    if math.isnan(value):
        return MISSING
    return f"{value:.3g}x" if math.isfinite(value) else str(value)


UNDERFLOW = "0 (underflow)"  # a gradient whose every element fell below the dtype's smallest number


def _metric_cell(pair, block: str, metric: str, digits: int = 4) -> str:
    """A metric on screen: 0 from a nonzero init said to be an underflow; the spread over seeds when known."""

    value = pair.metrics[block][metric]
    if metric in ("steps_to_fit", "epochs_to_fit"):  # a count, whole; NaN: never reached (or nothing to reach)
        if math.isnan(value):
            return MISSING
        digits = 9 if float(value).is_integer() else 4  # (a mean over seeds may be a fraction)
    elif value == 0 and pair.config.get("small_init", 0) != 0 and metric not in ("w_norm", *DATA_SHOWN) \
            and not vanishes(block, metric, pair.config) \
            and not (block == "plain" and pair.config.get("zero_residual") and pair.config.get("bn") == "on"):
        # (rezero's a1 gradient at alpha_init 0 is exactly 0; so is a plain twin's whose branches end in a zeroed bn)
        return UNDERFLOW
    spread = pair.spread.get(block, {}).get(metric)
    cell = _fmt(value, digits)
    return cell if spread is None else f"{cell} ±{_percent(100 * spread)}%"


def _percent(value: float) -> str:
    """A spread in percent: two significant digits, and from 10 on a whole number (160, not 1.6e+02)."""
    return f"{value:.0f}" if value >= 10 else _fmt(value, 2)


TRAINING_SHOWN = {"initial_loss": "initial loss", "loss": "final loss", "steps_to_fit": "steps_to_fit"}
DATA_SHOWN = {"train_error": "train error", "test_error": "test error", "epochs_to_fit": "epochs_to_fit"}


def pairs_table(pairs, title: str = ""):
    """One row per configuration: each block's gradient norms side by side, and residual/plain ratios; for a
    sweep that trains, each block's initial loss, final loss and steps_to_fit side by side instead.

    Axes with one value across all rows go in the title, so the table stays narrow.
    """

    training = any("steps_to_fit" in m for p in pairs for m in p.metrics.values())
    on_data = any("epochs_to_fit" in m for p in pairs for m in p.metrics.values())
    shown = DATA_SHOWN if on_data else TRAINING_SHOWN if training else {m: m for m in FINDING_METRICS}
    training = training or on_data
    axes = list(pairs[0].config) if pairs else []
    fixed = [a for a in axes if len({p.config[a] for p in pairs}) == 1]
    varying = [a for a in axes if a not in fixed]
    blocks = list(dict.fromkeys(b for p in pairs for b in p.metrics))
    with_ratio = any(p.ratios for p in pairs) and not training
    columns = list(varying)
    for heading in shown.values():  # the metric's name heads the first column of its group
        group = [*blocks, *(["ratio"] if with_ratio else [])]
        columns += [f"{heading if i == 0 else ''}\n{label}" for i, label in enumerate(group)]
    shown_axes = {a: _column(p.config[a] for p in pairs) for a in varying}
    rows = []
    for i, p in enumerate(pairs):
        cells = [shown_axes[a][i] for a in varying]
        for metric in shown:
            cells += [_metric_cell(p, b, metric) if b in p.metrics else "" for b in blocks]
            if with_ratio:
                cells.append(_ratio_cell(p.ratios[metric]) if metric in p.ratios else "")
        rows.append(cells)
    title = "  ".join([title, *(f"{a}={_exact(pairs[0].config[a])}" for a in fixed)]).strip()
    table = _table(title, columns, rows, keys=len(varying))
    for column in table.columns:
        if column.header.endswith("ratio"):
            column.style = "bold magenta"
    if with_ratio:
        table.caption, table.caption_justify = "ratio = residual / plain", "left"
    return table


def plan_table(preview):
    """A dry run's plan (`sweep.SweepPreview`): a row per configuration shown, with the blocks still to run,
    titled with the counts of the whole sweep."""
    sweep, n = preview.sweep, preview.sweep.size

    keys = columns_of(sweep.training, sweep.net, sweep.on_data).config
    columns = ["#", *keys[1:], "to run"]  # the axes of the sweep's files
    axes = {a: _column(getattr(c, a) for c, _ in preview.first) for a in columns[1:-1]}
    rows = [[str(i), *(axes[a][i - 1] for a in columns[1:-1]), ", ".join(blocks) or "done"]
            for i, (_, blocks) in enumerate(preview.first, start=1)]
    title = (f"{sweep.name}: {_count(n, 'configuration')} x {_count(len(sweep.blocks), 'block')} = "
             f"{_count(preview.rows_total, 'row')} ({preview.rows_to_run:,} to run) -> {preview.path}")
    table = _table(title, columns, rows)
    if n > len(rows):
        table.caption, table.caption_justify = f"... and {_count(n - len(rows), 'more configuration')}", "left"
    return table


def plan_verdict(plan) -> str:
    """One line: what a real run of this plan would do."""
    if plan.refusal:
        return f"a real run would refuse: {plan.refusal}"
    if not plan.rows_to_run:
        return f"a real run would run nothing: all {_count(plan.rows_total, 'row')} are in {plan.path} already"
    if plan.rows_skipped:
        return (f"a real run would resume {plan.path}: {plan.rows_skipped:,} of {plan.rows_total:,} rows are there, "
                f"{plan.rows_to_run:,} to run")
    fresh = "start afresh" if plan.path.exists() else "write"
    return f"a real run would {fresh} {plan.path}: {_count(plan.rows_to_run, 'row')} to run"


def _count(n: int, noun: str) -> str:
    """'1 row', '2 rows', '1,000 rows' (the last word takes the plural)."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def metrics_table(pair):
    """The metrics of one configuration: a row per metric, a column per block, and the ratio."""
    metrics = list(dict.fromkeys(m for values in pair.metrics.values() for m in values))
    columns = ["metric", *pair.metrics, *(["residual/plain"] if pair.ratios else [])]
    rows = [[m, *(_metric_cell(pair, block, m, 6) for block in pair.metrics),
             *([_ratio_cell(pair.ratios[m]) if m in pair.ratios else ""] if pair.ratios else [])]
            for m in metrics]
    title = "  ".join(f"{k}={_exact(v)}" for k, v in pair.config.items())
    return _table(title, columns, rows, left=("metric",))


MAX_SHOWN = 20  # rows of a difference table on screen; --out writes them all


MISSING = "—"  # a NaN on screen (a std or sem over one seed, a ratio without both blocks)


def _num(value, digits: int = 4) -> str:
    """A number on screen: NaN as a dash, integers whole, floats to `digits` significant digits."""
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    return _fmt(float(value), digits) if isinstance(value, float) else str(value)


def _column(values) -> list[str]:
    """A column of configuration values on screen: floats with the fewest significant digits (6 at least) that
    keep every distinct value distinct (a logspace's 0.0031622776601683794 is 0.00316228), others as `_exact`."""
    values = list(values)
    floats = {v for v in values if isinstance(v, float) and v == v}
    for digits in range(6, 18):
        if len({f"{v:.{digits}g}" for v in floats}) == len(floats):
            break
    else:
        return [_exact(v) for v in values]
    def text(v: float) -> str:
        shown = f"{v:.{digits}g}"
        return shown + ".0" if shown.lstrip("-").isdigit() else shown  # a float stays one: 0.0, not 0

    return [text(v) if isinstance(v, float) and v == v else _exact(v) for v in values]


def _exact(value) -> str:
    """A configuration value on screen, exactly (floats as repr): two rows that differ must not look equal."""
    if isinstance(value, float):
        return MISSING if value != value else repr(float(value))
    return "" if value is None else str(value)  # (the small_init of a network drawn by another init)


def _varying(df, columns: list[str]) -> tuple[list[str], str]:
    """The columns with more than one value, and the others as 'name=value' for a table title."""
    varying = [c for c in columns if df[c].nunique(dropna=False) > 1]
    fixed = "  ".join(f"{c}={_exact(df[c].iloc[0])}" for c in columns if c not in varying)
    return varying, fixed


def _shown(table, hidden: int):
    if hidden:
        table.caption, table.caption_justify = f"... and {hidden} more rows; --out writes them all", "left"
    return table


def comparison_tables(result) -> list:
    """The tables of a comparison: per metric; the rows beyond tolerance; the rows on one side only."""
    joined, keys = result.joined, list(result.keys)
    both = joined[joined["status"].isin(["same", "differs"])]
    title = (f"A={result.a}  B={result.b}\n{len(both)} rows in both, {len(result.only('a'))} only in A, "
             f"{len(result.only('b'))} only in B")
    for side, columns in zip("AB", result.config_only):
        if columns:  # the join ignores them: say so, since rows that differ there are paired anyway
            title += f"; only {side} has {', '.join(columns)} (not joined on)"
    if result.ignored:
        title += f"; ignored: {', '.join(result.ignored)} (not joined on)"
    rows = [[m, f"{atol:.3g}", _num(rel, 3), str(n)] for m, atol, rel, n in result.by_metric.itertuples()]
    per_metric = _table(title, ["metric", "atol", "largest\nrel. diff", "rows\nbeyond"], rows, left=("metric",),
                        gap=1)
    atol = (f"atol={result.atol:g} (--atol)" if result.atol is not None else
            "atol: rtol x its magnitude for a metric that cancels near 0 (a cosine), 0 for norms and the loss")
    per_metric.caption = (f"rel. diff = |a-b| / max(|a|,|b|)\nbeyond tolerance: not |a-b| <= atol + rtol*|b|, "
                          f"rtol={result.rtol:g}\n{atol}")
    per_metric.caption_justify = "left"
    tables = [per_metric]
    differing = result.differing
    if len(differing):
        varying, fixed = _varying(differing, keys)
        cells = [[*(_exact(r[k]) for k in varying), m, *_apart(r[f"{m}_a"], r[f"{m}_b"]),
                  _num(r[f"{m}_rel_diff"], 3)]
                 for _, r in differing.iterrows() for m in result.metrics if r[f"{m}_differs"]]
        table = _table(f"beyond tolerance  {fixed}".strip(), [*varying, "metric", "A", "B", "rel. diff"],
                       cells[:MAX_SHOWN], left=("metric",), keys=len(varying) + 1, gap=1)
        tables.append(_shown(table, len(cells) - MAX_SHOWN if len(cells) > MAX_SHOWN else 0))
    for side in ("a", "b"):
        only = result.only(side)
        if len(only):
            cells = [[_exact(v) for v in r] for r in only.itertuples(index=False)]
            table = _table(f"only in {side.upper()} ({getattr(result, side)})", keys, cells[:MAX_SHOWN], gap=1)
            tables.append(_shown(table, max(len(cells) - MAX_SHOWN, 0)))
    return tables


def _apart(a: float, b: float) -> tuple[str, str]:
    """Two values that differ, to 10 significant digits or to as many more as tell them apart (17 do)."""
    for digits in range(10, 18):
        short = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if short[0] != short[1]:
            return short
    return repr(float(a)), repr(float(b))


def _tolerance(result) -> str:
    atol = "each metric's atol" if result.atol is None else f"atol={result.atol:g}"
    return f"rtol={result.rtol:g} and {atol}"


def comparison_verdict(result) -> str:
    """One line: agree, or what differs."""
    if result.agree:
        return f"agree: every metric within {_tolerance(result)}, every row on both sides"
    parts = [f"{m} ({n} row{'s' * (n != 1)} beyond tolerance)" for m, n in result.by_metric["rows_beyond"].items() if n]
    parts += [f"{n} row{'s' * (n != 1)} only in {side.upper()}"
              for side in ("a", "b") for n in [len(result.only(side))] if n]
    parts += [f"metric{'s' * (len(ms) > 1)} only in {side}: {', '.join(ms)}"
              for side, ms in zip("AB", result.metrics_only) if ms]
    return "differ: " + "; ".join(parts)


def summary_tables(table, width: int | None = None) -> list:
    """One table per metric (mean, std, sem, and n unless every group has the same n, then the title says
    it), then the residual/plain ratios. Columns one space apart; where a metric's table would still be
    wider than `width` (a narrow terminal, e.g. COLUMNS=60), its sem column (std / sqrt(n)) is left out
    and a caption says so."""
    metrics = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]
    config = list(table.columns[: list(table.columns).index(f"{metrics[0]}_mean")])
    varying, fixed = _varying(table, [*config, "n"])
    keys = [c for c in varying if c != "n"] or ["block"]
    counts = ["n"] if "n" in varying else []
    tables = []
    for m in metrics:
        cells = {c: _column(table[c]) for c in keys}
        cells |= {s: [_num(v) for v in table[f"{m}_{s}"]] for s in STATISTICS}
        cells |= {c: [str(v) for v in table[c]] for c in counts}
        if width is not None and _width(cells) > width:
            del cells["sem"]
        rich_table = _table(f"{m}  {fixed}".strip(), list(cells), [list(r) for r in zip(*cells.values())],
                            keys=len(keys), gap=1)
        if "sem" not in cells:
            rich_table.caption = "sem (std / sqrt(n)) left out to fit the terminal; --out writes it"
        tables.append(rich_table)
    ratios = [c for c in table.columns if c.endswith("_ratio")]
    if ratios:
        pairs = table[table["block"] == "residual"]
        keys = [c for c in keys if c != "block"]
        rows = [[*(_exact(r[c]) for c in keys), *(_ratio_cell(r[c]) for c in ratios)]
                for _, r in pairs.iterrows()]
        ratio_table = _table(f"residual / plain, ratio of the means  {fixed}".strip(),
                             [*keys, *(c.removesuffix("_ratio") for c in ratios)], rows, keys=len(keys), gap=1)
        for column in ratio_table.columns[len(keys):]:
            column.style = "bold magenta"
        tables.append(ratio_table)
    return tables


def _slope(value: float) -> str:
    return MISSING if math.isnan(value) else f"{value:.4f}"




def _width(cells: dict[str, list[str]]) -> int:
    """The width of a gap=1 table of these columns: each as wide as its header or widest cell, plus gaps."""
    return sum(max(len(name), *map(len, column)) for name, column in cells.items()) + len(cells) - 1


def _theory_cell(row) -> str:
    if math.isnan(row["theory"]):
        return ""
    return f"{row['theory']:g}" + (" (limit)" if row["theory_kind"] == "limit" else "")


def _holds_cell(row) -> str:
    """yes / NO with how far off, for a fit beside a derived law; empty without one or without a slope."""
    holds = row["holds"]
    if holds is None or isinstance(holds, float):  # NaN: no law, or no slope
        return ""
    if holds:
        return "yes"

    off = row["slope"] - row["theory"]
    if row["theory_kind"] == "limit":
        return f"NO: {off:+.3g} (beyond {LIMIT_TOLERANCE:g}; the range is far from small_init -> 0)"
    return f"NO: {off:+.3g} (outside the interval and beyond {EXACT_TOLERANCE:g})"


def fit_title(metric: str, x: str, law: str) -> str:
    """How a fitted law reads: metric ~ x^slope (power), metric ~ 10^(slope * x) (exponential), or
    metric = intercept + slope * log10(x) (log)."""
    return {"power": f"{metric} ~ {x}^slope", "exponential": f"{metric} ~ 10^(slope * {x})",
            "log": f"{metric} = intercept + slope * log10({x})"}[law]


def fit_tables(fits) -> list:
    """One table per metric: a row per group (block first), the slope with its 95% interval, the theory and
    whether the fit holds it, R^2, the largest residual, and the points used and left out (and why)."""
    from cnnexp.fit import DETAIL_COLUMNS, FIT_COLUMNS  # defers pandas

    config = [c for c in fits.columns if c not in (*FIT_COLUMNS, *DETAIL_COLUMNS)]
    varying, fixed = _varying(fits, config)
    if "block" in config and "block" not in varying:
        varying = ["block", *varying]
    tables = []
    for metric, rows in fits.groupby("metric", sort=False):
        x, law = rows["x"].iloc[0], rows["law"].iloc[0]
        ratio = rows["limit_ratio"].notna().any()
        columns = [*varying, "slope", "95% interval", "theory", "holds", "R^2", "max resid.", "n", "excluded",
                   *(["x_grad / limit"] if ratio else [])]
        cells = []
        for _, r in rows.iterrows():
            interval = MISSING if math.isnan(r["slope"]) else f"[{r['slope_low']:.4f}, {r['slope_high']:.4f}]"
            excluded = f"{r['excluded']} ({r['excluded_why']})" if r["excluded"] else "0"
            cells.append([*(_exact(r[c]) for c in varying), _slope(r["slope"]), interval, _theory_cell(r),
                          _holds_cell(r), MISSING if math.isnan(r["r2"]) else f"{r['r2']:.6f}",
                          _num(r["max_residual"], 3), str(r["n"]), excluded,
                          *([_num(r["limit_ratio"], 7)] if ratio else [])])
        unit = "decades" if law in ("power", "exponential") else "units"
        table = _table(f"{fit_title(metric, x, law)}  ({law} law)  {fixed}".strip(), columns, cells,
                       left=("block", "holds", "excluded"), keys=len(varying))
        table.caption_justify = "left"
        table.caption = (f"least squares over the seeds pooled; interval: slope +- t(0.975, n-2) * se; "
                         f"max resid. in {unit}")
        if ratio:
            table.caption += ("; x_grad / limit: x_grad_norm over 2||x||/(batch*d), mean over the rows at the "
                              "smallest small_init")
        tables.append(table)
    return tables


def fit_lines(fits) -> list[str]:
    """A sentence per group: the fitted exponents of each metric with their intervals and theory, e.g.
    `plain depth=2: x_grad_norm ~ small_init^8.0000 [7.9135, 8.0865] (theory 8: holds)`."""
    from cnnexp.fit import DETAIL_COLUMNS, FIT_COLUMNS  # defers pandas

    if fits.empty:
        return []
    config = [c for c in fits.columns if c not in (*FIT_COLUMNS, *DETAIL_COLUMNS)]
    varying, _ = _varying(fits, config)
    varying = [c for c in varying if c != "block"]
    lines = []
    for _, rows in fits.groupby([c for c in config], sort=False, dropna=False):
        first = rows.iloc[0]
        label = " ".join([str(first.get("block", "")), *(f"{c}={_exact(first[c])}" for c in varying)]).strip()
        parts = []
        for _, r in rows.iterrows():
            text = f"{fit_title(r['metric'], r['x'], r['law']).replace('slope', _slope(r['slope']))}"
            if not math.isnan(r["slope"]):
                text += f" [{r['slope_low']:.4f}, {r['slope_high']:.4f}]"
            if not math.isnan(r["theory"]):
                limit = " as small_init -> 0" if r["theory_kind"] == "limit" else ""
                holds = _holds_cell(r).split(" (")[0]
                text += f" (theory {r['theory']:g}{limit}{': ' + holds if holds else ''})"
            parts.append(text)
        lines.append(f"{label}: {', '.join(parts)}")
    return lines


def fits_json(fits) -> str:
    """The fits as a JSON list of records (strict JSON: a missing number is null, floats exact)."""
    import json

    records = []
    for record in fits.to_dict("records"):
        records.append({k: (None if isinstance(v, float) and math.isnan(v) else
                            v.item() if hasattr(v, "item") else v) for k, v in record.items()})
    return json.dumps(records, indent=2, allow_nan=False)


def dims(shape) -> str:
    """`64 x 56 x 56`, or `1000` for a flat shape."""
    return " x ".join(str(n) for n in shape)


def _bytes(n: int) -> str:
    """Bytes in decimal units, as torchinfo prints them: 512 B, 3.2 kB, 12.85 MB, 1.03 GB."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def chain_table(net):
    """conv-shape's table: a row per layer (its path indented by block depth), a row per block total, the
    chain's total, and the activation memory of each row."""

    def pair(values) -> str:
        return " x ".join(f"{v:g}" for v in values) if values[0] != values[1] else f"{values[0]:g}"

    size = net.itemsize
    rows = [["  " * row.depth + row.path, "  " * row.depth + row.layer, dims(row.output), f"{row.params:,}",
             f"{row.macs:,}", pair(row.receptive_field), pair(row.jump), f"{row.activations:,}",
             _bytes(row.activations * size)] for row in net.rows]
    total = ["", "total", dims(net.output), f"{net.params:,}", f"{net.macs:,}", pair(net.receptive_field),
             pair(net.jump), f"{net.activations:,}", _bytes(net.activations * size)]
    table = _table(f"input {dims(net.input)}",
                   ["#", "layer", "output", "params", "MACs", "RF", "jump", "activations", net.dtype],
                   [*rows, total], left=("#", "layer", "output"))
    for index, row in enumerate(net.rows):
        if row.is_block:
            table.rows[index].style = "bold"
    table.rows[-2].end_section = True  # a rule above the totals
    table.caption = "RF: receptive field, jump: effective stride (input pixels); activations: per sample"
    table.caption_justify = "left"
    return table


def print_chain(out, net, single: bool) -> None:
    """The conv-shape answer: for one layer the arithmetic, then the table (`chain_table`), and the
    comparison with a fully-connected layer."""
    if single:  # one layer: show the arithmetic, the point of the calculator
        for name, formula in zip("HW", net.layers[0].formula):
            out.print(f"{name}_out = {formula}", highlight=False)
    show(out, chain_table(net))
    size = net.itemsize
    out.print(
        f"Activation memory per sample ({net.dtype}): {_bytes(net.activations * size)} written, peak "
        f"{_bytes(net.peak * size)} alive at once in an inference forward (at {net.peak_at}); torchinfo's "
        f"forward/backward pass size: {_bytes(net.forward_backward * size)}.",
        highlight=False, soft_wrap=True,
    )
    # rounded in integers: a float quotient would print noise digits for the huge counts of huge inputs
    ratio = (2 * net.dense_params + net.params) // (2 * net.params) if net.params else 0
    out.print(
        f"A fully-connected layer from {dims(net.input)} to {dims(net.output)} would need "
        f"{net.dense_params:,} weights and biases"
        + (f", {ratio:,}x the {net.params:,} here." if net.params else "; these layers have none."),
        highlight=False, soft_wrap=True,
    )


def check_table(check):
    """conv-check's answer: each method's largest error against torch and its time."""
    torch_seconds = next(r.seconds for r in check.results if r.method == "torch")
    rows = [[r.method, "skipped", MISSING, MISSING] if r.skipped else
            [r.method, f"{r.max_abs_error:.2e}", f"{r.seconds * 1e3:.3f} ms", f"{r.seconds / torch_seconds:.2f}x"]
            for r in check.results]
    title = f"x {tuple(check.input)} * w {tuple(check.weight)} -> y {tuple(check.output)}"
    table = _table(title, ["method", "max abs error vs torch", "median time", "time / torch"], rows, left=("method",))
    reasons = [r.skipped for r in check.results if r.skipped]
    if reasons:
        table.caption, table.caption_justify = "\n".join(reasons), "left"
    return table


class SweepProgress:
    """A sweep's progress on stderr: a bar with rows/s and the last configuration at a terminal, a line every
    few seconds in a log, nothing for a sweep with nothing to run.

        with SweepProgress(err, "init", plan.rows_to_run) as progress:
            run_sweep(plan, on_result=progress.advance)
    """

    EVERY = 5.0  # seconds between lines when stderr is not a terminal

    def __init__(self, console, name: str, total: int):
        self.console, self.name, self.total, self.done = console, name, total, 0
        self._bar: Any = None  # a rich Progress on a terminal
        self._last_line = 0.0

    def __enter__(self) -> SweepProgress:
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._started = self._last_line = time.monotonic()
        if self.total and self.console.is_terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[now]}"), console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.name, total=self.total, rate="", now="")
        return self

    def advance(self, result) -> None:
        """One more row written (called with its RunResult)."""
        import time

        self.done += 1
        now = time.monotonic()
        rate = f"{self.done / max(now - self._started, 1e-9):,.3g} rows/s"
        config = result.config
        where = (f"{result.block} d={config.d} batch={config.batch} depth={config.depth} seed={config.seed}"
                 if config.net is None else f"{result.block} {config.net} batch={config.batch} init={config.init} "
                                            f"bn={config.bn} seed={config.seed}")
        if self._bar is not None:
            self._bar.update(self._task, advance=1, rate=rate, now=where)
        elif now - self._last_line >= self.EVERY and self.done < self.total:
            self._last_line = now
            self.console.print(f"{self.name}: {self.done} of {self.total} rows, {rate}, at {where}",
                               highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


MAX_CONFIGURATIONS_SHOWN = 40  # rows of a sweep's table on screen; the CSV and `cnnexp summary` have them all


def sweep_tables(pairs, title: str, path) -> list:
    """A sweep's result on screen: a row per configuration (over seeds, with their mean and spread, when there
    are several), only the first and last rows when there are many."""
    # defers multiprocessing and importlib.metadata (the sweep's machinery), for start-up
    from cnnexp.sweep import over_seeds

    groups = over_seeds(pairs)
    several = len(groups) < len(pairs)
    shown = _head_and_tail(groups)
    table = pairs_table(shown, f"{title}, mean over seeds ± relative standard deviation" if several else title)
    if len(shown) < len(groups):
        table.caption = "\n".join(filter(None, [table.caption, (
            f"{len(groups) - len(shown):,} configurations between the first and last {len(shown) // 2} not shown; "
            f"all rows are in {path} (cnnexp summary {path})")]))
    return [table]


def _head_and_tail(items: list) -> list:
    half = MAX_CONFIGURATIONS_SHOWN // 2
    return items if len(items) <= MAX_CONFIGURATIONS_SHOWN else [*items[:half], *items[-half:]]


def examples_table(sweeps: dict, nets: dict, describe):
    """The shipped examples: name, kind (a sweep or a network) and what each is, from its first comment."""
    rows = [[name, kind, describe(path)] for kind, found in (("sweep", sweeps), ("net", nets))
            for name, path in found.items()]
    return _table("shipped examples (cnnexp sweep NAME, conv-shape --from NAME; cnnexp examples NAME copies one)",
                  ["name", "kind", "what it is"], rows, left=("name", "kind", "what it is"), keys=1)


class StepProgress:
    """A long `cnnexp run --steps N`: a bar of its updates at a terminal, a line every few seconds in a log;
    `done` is the last step heard of (what an interrupt stopped at)."""

    EVERY = 5.0

    def __init__(self, console, steps: int):
        self.console, self.steps, self.done = console, steps, 0
        self._bar: Any = None
        self._last = 0.0

    def __enter__(self) -> StepProgress:
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._last = time.monotonic()
        if self.steps and self.console.is_terminal:
            self._bar = Progress(TextColumn("steps"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("steps", total=self.steps)
        return self

    def step(self, step: int, steps: int) -> None:
        import time

        self.done = step
        if self._bar is not None:
            self._bar.update(self._task, completed=step)
        elif time.monotonic() - self._last >= self.EVERY and step < steps:
            self._last = time.monotonic()
            self.console.print(f"step {step:,} of {steps:,}", highlight=False)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
