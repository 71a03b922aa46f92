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
    """Print to stdout without ever cropping: wider than the terminal if a table needs it, and at its
    natural width when stdout is a file or a pipe."""
    from rich.measure import Measurement

    if getattr(renderable, "title", None):  # a title line may be longer than its table: print it whole
        out.print(renderable.title, style="italic", soft_wrap=True)
        renderable.title = None
    need = Measurement.get(out, out.options.update_width(1000), renderable)
    width = max(out.width, need.maximum if not out.is_terminal else need.minimum)
    out.print(renderable, width=width, crop=False)


def _table(title: str, columns: list[str], rows: list[list[str]], *, left: tuple[str, ...] = ()):
    """A rich table whose cells are never cut: each column is at least as wide as its widest cell. Numbers are
    right-aligned; the columns named in `left` are left-aligned."""
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
    return table


def _ratio_cell(value: float) -> str:
    if math.isnan(value):
        return MISSING
    return f"{value:.3g}x" if math.isfinite(value) else str(value)


UNDERFLOW = "0 (underflow)"  # a gradient whose every element fell below the dtype's smallest number


def _metric_cell(pair, block: str, metric: str, digits: int = 4) -> str:
    """A metric on screen: 0 from a nonzero init said to be an underflow; the spread over seeds when known."""
    value = pair.metrics[block][metric]
    if metric == "steps_to_fit":  # a count of steps, whole; NaN: never reached (or no target to reach)
        if math.isnan(value):
            return MISSING
        digits = 9
    elif value == 0 and pair.config.get("small_init", 0) != 0 and metric != "w_norm":
        return UNDERFLOW
    spread = pair.spread.get(block, {}).get(metric)
    cell = _fmt(value, digits)
    return cell if spread is None else f"{cell} ±{_fmt(100 * spread, 2)}%"


TRAINING_SHOWN = {"initial_loss": "initial loss", "loss": "final loss", "steps_to_fit": "steps_to_fit"}


def pairs_table(pairs, title: str = ""):
    """One row per configuration: each block's gradient norms side by side, and residual/plain ratios; for a
    sweep that trains, each block's initial loss, final loss and steps_to_fit side by side instead.

    Axes with one value across all rows go in the title, so the table stays narrow.
    """
    from cnnexp.schema import FINDING_METRICS

    training = any("steps_to_fit" in m for p in pairs for m in p.metrics.values())
    shown = TRAINING_SHOWN if training else {m: m for m in FINDING_METRICS}
    axes = list(pairs[0].config) if pairs else []
    fixed = [a for a in axes if len({p.config[a] for p in pairs}) == 1]
    varying = [a for a in axes if a not in fixed]
    blocks = list(dict.fromkeys(b for p in pairs for b in p.metrics))
    with_ratio = any(p.ratios for p in pairs) and not training
    columns = list(varying)
    for heading in shown.values():  # the metric's name heads the first column of its group
        group = [*blocks, *(["ratio"] if with_ratio else [])]
        columns += [f"{heading if i == 0 else ''}\n{label}" for i, label in enumerate(group)]
    rows = []
    for p in pairs:
        cells = [_exact(p.config[a]) for a in varying]
        for metric in shown:
            cells += [_metric_cell(p, b, metric) if b in p.metrics else "" for b in blocks]
            if with_ratio:
                cells.append(_ratio_cell(p.ratios[metric]) if metric in p.ratios else "")
        rows.append(cells)
    title = "  ".join([title, *(f"{a}={_exact(pairs[0].config[a])}" for a in fixed)]).strip()
    table = _table(title, columns, rows)
    for column in table.columns:
        if column.header.endswith("ratio"):
            column.style = "bold magenta"
    if with_ratio:
        table.caption, table.caption_justify = "ratio = residual / plain", "left"
    return table


def plan_table(plan):
    """The runs of a sweep, one row per configuration, with the blocks still to run."""
    todo = dict(plan.tasks)  # RunConfig -> blocks still to run
    columns = ["#", *plan.columns.config[1:], "to run"]  # the axes of the sweep's files
    rows = [[str(i), *(_exact(getattr(c, a)) for a in columns[1:-1]), ", ".join(todo.get(c, ())) or "done"]
            for i, c in enumerate(plan.configs, start=1)]
    title = (f"{plan.sweep.name}: {len(plan.configs)} configurations x {len(plan.sweep.blocks)} blocks = "
             f"{plan.rows_total} rows ({plan.rows_to_run} to run) -> {plan.path}")
    return _table(title, columns, rows)


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
                       cells[:MAX_SHOWN], left=("metric",))
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
        tables.append(_table(f"{m}  {fixed}".strip(), [*varying, "mean", "std", "sem", "n"], rows))
    ratios = [c for c in table.columns if c.endswith("_ratio")]
    if ratios:
        pairs = table[table["block"] == "residual"]
        keys = [c for c in varying if c != "block"]
        rows = [[*(_exact(r[c]) for c in keys), *(_ratio_cell(r[c]) for c in ratios)]
                for _, r in pairs.iterrows()]
        ratio_table = _table(f"residual / plain, ratio of the means  {fixed}".strip(),
                             [*keys, *(c.removesuffix("_ratio") for c in ratios)], rows)
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


class SweepProgress:
    """A sweep's progress on stderr: a bar with rows/s and the last configuration at a terminal, a line every
    few seconds in a log, nothing for a sweep with nothing to run.

        with SweepProgress(err, "init", plan.rows_to_run) as progress:
            run_sweep(plan, on_result=progress.advance)
    """

    EVERY = 5.0  # seconds between lines when stderr is not a terminal

    def __init__(self, console, name: str, total: int):
        self.console, self.name, self.total, self.done = console, name, total, 0
        self._bar = None
        self._last_line = 0.0

    def __enter__(self) -> "SweepProgress":
        import time

        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn)

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
        rate = f"{self.done / max(now - self._started, 1e-9):,.0f} rows/s"
        config = result.config
        where = f"{result.block} d={config.d} batch={config.batch} depth={config.depth} seed={config.seed}"
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
