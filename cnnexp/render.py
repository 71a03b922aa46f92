"""Rich renderings of cnnexp's results, for the command line: tables that never cut a number.

The library returns plain data; this module turns it into rich tables, and `show` prints one to a console at a
width that crops nothing. Only the CLI imports it.

    >>> from rich.console import Console                       # doctest: +SKIP
    >>> show(Console(), pairs_table(side_by_side(report.rows)))
"""
from __future__ import annotations

import math


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
    for part in _fit(out, renderable, limit) if limit else [renderable]:
        need = _need(out, part)
        width = max(out.width, need.minimum if limit else need.maximum)
        out.print(part, width=width, crop=False)


def _need(out, renderable):
    from rich.measure import Measurement

    return Measurement.get(out, out.options.update_width(10_000), renderable)


def _fit(out, table, limit: int) -> list:
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
            group = next((str(c.header).split("\n")[0] for c in reversed(before) if not str(c.header).startswith("\n")), "")
            first.header = group + str(first.header)
        piece.caption = None
        return piece

    groups: list[list] = [[]]
    for column in table.columns[len(keys):]:
        if groups[-1] and _need(out, part([*groups[-1], column])).minimum > limit:
            groups.append([])
        groups[-1].append(column)
    parts = [part(g) for g in groups]
    parts[-1].caption = table.caption
    return parts


def _table(title: str, columns: list[str], rows: list[list[str]], *, left: tuple[str, ...] = (), keys: int = 1):
    """A rich table whose cells are never cut: each column is at least as wide as its widest cell. Numbers are
    right-aligned; the columns named in `left` are left-aligned. The first `keys` columns name a row: `show`
    repeats them when it splits a table too wide for the terminal."""
    from rich import box
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, name in enumerate(columns):
        width = max((len(r[i]) for r in rows), default=0)
        width = max([width, *(len(line) for line in name.splitlines())])  # headers whole too
        justify = "left" if name in left else "right"
        table.add_column(name, justify=justify, min_width=width, overflow="fold")
    for r in rows:
        table.add_row(*r)
    table.key_columns = max(1, keys)
    return table


def _ratio_cell(value: float) -> str:
    if math.isnan(value):
        return MISSING
    return f"{value:.3g}x" if math.isfinite(value) else str(value)


def pairs_table(pairs, title: str = ""):
    """One row per configuration: each block's gradient norms side by side, and residual/plain ratios.

    Axes with one value across all rows go in the title, so the table stays narrow.
    """
    from cnnexp.schema import FINDING_METRICS

    axes = list(pairs[0].config) if pairs else []
    fixed = [a for a in axes if len({p.config[a] for p in pairs}) == 1]
    varying = [a for a in axes if a not in fixed]
    blocks = list(dict.fromkeys(b for p in pairs for b in p.metrics))
    with_ratio = any(p.ratios for p in pairs)
    columns = list(varying)
    for metric in FINDING_METRICS:  # the metric's name heads the first column of its group
        group = [*blocks, *(["ratio"] if with_ratio else [])]
        columns += [f"{metric if i == 0 else ''}\n{label}" for i, label in enumerate(group)]
    rows = []
    for p in pairs:
        cells = [_exact(p.config[a]) for a in varying]
        for metric in FINDING_METRICS:
            cells += [_fmt(p.metrics[b][metric], 4) if b in p.metrics else "" for b in blocks]
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
    from cnnexp.config import config_dict

    sweep, n = preview.sweep, preview.sweep.size
    columns = ["#", *sweep.axes, "to run"]
    rows = [[str(i), *(_exact(v) for v in config_dict(c).values()), ", ".join(blocks) or "done"]
            for i, (c, blocks) in enumerate(preview.first, start=1)]
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
    from cnnexp.schema import METRICS

    columns = ["metric", *pair.metrics, *(["residual/plain"] if pair.ratios else [])]
    rows = [[m, *(_fmt(values[m]) for values in pair.metrics.values()),
             *([_ratio_cell(pair.ratios[m]) if m in pair.ratios else ""] if pair.ratios else [])]
            for m in METRICS]
    title = "  ".join(f"{k}={_exact(v)}" for k, v in pair.config.items())
    return _table(title, columns, rows, left=("metric",))


MAX_SHOWN = 20  # rows of a difference table on screen; --out writes them all


MISSING = "—"  # a NaN on screen (a std or sem over one seed, a ratio without both blocks)


def _num(value, digits: int = 4) -> str:
    """A number on screen: NaN as a dash, integers whole, floats to `digits` significant digits."""
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    return _fmt(float(value), digits) if isinstance(value, float) else str(value)


def _exact(value) -> str:
    """A configuration value on screen, exactly (floats as repr): two rows that differ must not look equal."""
    if isinstance(value, float):
        return MISSING if value != value else repr(float(value))
    return str(value)


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
    rows = [[m, _num(rel, 3), str(n)] for m, rel, n in result.by_metric.itertuples()]
    per_metric = _table(title, ["metric", "largest rel. diff", "rows beyond tolerance"], rows, left=("metric",))
    per_metric.caption = (f"rel. diff = |a-b| / max(|a|,|b|); beyond tolerance: not |a-b| <= atol + rtol*|b| "
                          f"with rtol={result.rtol:g}, atol={result.atol:g}")
    per_metric.caption_justify = "left"
    tables = [per_metric]
    differing = result.differing
    if len(differing):
        varying, fixed = _varying(differing, keys)
        cells = [[*(_exact(r[k]) for k in varying), m, repr(r[f"{m}_a"]), repr(r[f"{m}_b"]),
                  _num(r[f"{m}_rel_diff"], 3)]
                 for _, r in differing.iterrows() for m in result.metrics if r[f"{m}_differs"]]
        table = _table(f"beyond tolerance  {fixed}".strip(), [*varying, "metric", "A", "B", "rel. diff"],
                       cells[:MAX_SHOWN], left=("metric",), keys=len(varying) + 1)
        tables.append(_shown(table, len(cells) - MAX_SHOWN if len(cells) > MAX_SHOWN else 0))
    for side in ("a", "b"):
        only = result.only(side)
        if len(only):
            cells = [[_exact(v) for v in r] for r in only.itertuples(index=False)]
            table = _table(f"only in {side.upper()} ({getattr(result, side)})", keys, cells[:MAX_SHOWN])
            tables.append(_shown(table, max(len(cells) - MAX_SHOWN, 0)))
    return tables


def comparison_verdict(result) -> str:
    """One line: agree, or what differs."""
    if result.agree:
        return f"agree: every metric within rtol={result.rtol:g}, atol={result.atol:g}, every row on both sides"
    parts = [f"{m} ({n} row{'s' * (n != 1)} beyond tolerance)" for m, _, n in result.by_metric.itertuples() if n]
    parts += [f"{n} row{'s' * (n != 1)} only in {side.upper()}"
              for side in ("a", "b") for n in [len(result.only(side))] if n]
    parts += [f"metric{'s' * (len(ms) > 1)} only in {side}: {', '.join(ms)}"
              for side, ms in zip("AB", result.metrics_only) if ms]
    return "differ: " + "; ".join(parts)


def summary_tables(table) -> list:
    """One table per metric (mean, std, sem, n per configuration), then the residual/plain ratios."""
    metrics = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]
    config = list(table.columns[: list(table.columns).index(f"{metrics[0]}_mean")])
    varying, fixed = _varying(table, config)
    varying = varying or ["block"]
    tables = []
    for m in metrics:
        rows = [[*(_exact(r[c]) for c in varying), *(_num(r[f"{m}_{s}"]) for s in ("mean", "std", "sem")),
                 str(r["n"])] for _, r in table.iterrows()]
        tables.append(_table(f"{m}  {fixed}".strip(), [*varying, "mean", "std", "sem", "n"], rows, keys=len(varying)))
    ratios = [c for c in table.columns if c.endswith("_ratio")]
    if ratios:
        pairs = table[table["block"] == "residual"]
        keys = [c for c in varying if c != "block"]
        rows = [[*(_exact(r[c]) for c in keys), *(_ratio_cell(r[c]) for c in ratios)]
                for _, r in pairs.iterrows()]
        ratio_table = _table(f"residual / plain, ratio of the means  {fixed}".strip(),
                             [*keys, *(c.removesuffix("_ratio") for c in ratios)], rows, keys=len(keys))
        for column in ratio_table.columns[len(keys):]:
            column.style = "bold magenta"
        tables.append(ratio_table)
    return tables


def print_chain(out, net, single: bool) -> None:
    """The conv-shape answer: for one layer the arithmetic, then a row per layer, totals, and the
    comparison with a fully-connected layer."""

    def dims(shape) -> str:
        return " x ".join(str(n) for n in shape)

    def pair(values) -> str:
        return " x ".join(f"{v:g}" for v in values) if values[0] != values[1] else f"{values[0]:g}"

    if single:  # one layer: show the arithmetic, the point of the calculator
        for name, formula in zip("HW", net.layers[0].formula):
            out.print(f"{name}_out = {formula}", highlight=False)
    rows = [[str(i), row.layer, dims(row.output), f"{row.params:,}", f"{row.macs:,}",
             pair(row.receptive_field), pair(row.jump)] for i, row in enumerate(net.layers, 1)]
    last = net.layers[-1]
    total = ["", "total", dims(net.output), f"{net.params:,}", f"{net.macs:,}", pair(last.receptive_field),
             pair(last.jump)]
    table = _table(f"input {dims(net.input)}", ["#", "layer", "C x H x W", "params", "MACs", "RF", "jump"],
                   [*rows, total], left=("layer", "C x H x W"))
    table.rows[-2].end_section = True  # a rule above the totals
    table.caption, table.caption_justify = "RF: receptive field, jump: effective stride (input pixels)", "left"
    show(out, table)
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
