"""The `cnnexp` command line: each command parses, calls one library function and renders.

    $ cnnexp sweep configs/init.yaml
    $ cnnexp run --d 256 --batch 64 --small-init 1e-4 --seed 123

Results go to stdout, progress and errors to stderr. A `CnnexpError` from the library becomes one line on
stderr and exit status 2. Heavy libraries (torch, pandas, matplotlib) are imported inside the commands that
need them, so `conv-shape` starts as fast as Typer itself.
"""
from __future__ import annotations

import functools
import math
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
    """The `cnnexp` script: Typer's app, with its usage errors (a bad flag, a missing argument) shown as one
    line on stderr like every other bad input, exit status 2."""
    import sys

    if len(sys.argv) <= 1:
        app()  # `cnnexp` alone: Typer prints the help
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as e:  # the base of Typer's (Click's) usage errors
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        err.print(f"[bold red]error:[/] {escape(where + e.format_message())}{escape(hint)}", highlight=False,
                  soft_wrap=True)
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        err.print("aborted")
        raise SystemExit(1) from None
    raise SystemExit(code or 0)


# --- the study: sweep and run ---------------------------------------------------------------------


def _fmt(value, digits: int = 6) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def show(renderable) -> None:
    """Print to stdout without ever cropping: wider than the terminal if a table needs it, and at its
    natural width when stdout is a file or a pipe."""
    from rich.measure import Measurement

    if getattr(renderable, "title", None):  # a title line may be longer than its table: print it whole
        out.print(renderable.title, style="italic", soft_wrap=True)
        renderable.title = None
    need = Measurement.get(out, out.options.update_width(1000), renderable)
    width = max(out.width, need.maximum if not out.is_terminal else need.minimum)
    out.print(renderable, width=width, crop=False)


def _table(title: str, columns: list[str], rows: list[list[str]], *, first_left: bool = False):
    """A rich table whose cells are never cut: each column is at least as wide as its widest cell."""
    from rich import box
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, name in enumerate(columns):
        width = max((len(r[i]) for r in rows), default=0)
        width = max([width, *(len(line) for line in name.splitlines())])  # headers whole too
        justify = "left" if first_left and i == 0 else "right"
        table.add_column(name, justify=justify, min_width=width, overflow="fold")
    for r in rows:
        table.add_row(*r)
    return table


def _ratio_cell(value: float) -> str:
    return f"{value:.3g}x" if math.isfinite(value) else str(value)


def pairs_table(pairs, title: str = ""):
    """One row per configuration: each block's gradient norms side by side, and residual/plain ratios.

    Axes with one value across all rows go in the title, so the table stays narrow.
    """
    from cnnexp.sweep import RATIO_METRICS

    axes = list(pairs[0].config) if pairs else []
    fixed = [a for a in axes if len({p.config[a] for p in pairs}) == 1]
    varying = [a for a in axes if a not in fixed]
    blocks = list(dict.fromkeys(b for p in pairs for b in p.metrics))
    with_ratio = any(p.ratios for p in pairs)
    columns = list(varying)
    for metric in RATIO_METRICS:  # the metric's name heads the first column of its group
        group = [*blocks, *(["ratio"] if with_ratio else [])]
        columns += [f"{metric if i == 0 else ''}\n{label}" for i, label in enumerate(group)]
    rows = []
    for p in pairs:
        cells = [_fmt(p.config[a]) for a in varying]
        for metric in RATIO_METRICS:
            cells += [_fmt(p.metrics[b][metric], 4) if b in p.metrics else "" for b in blocks]
            if with_ratio:
                cells.append(_ratio_cell(p.ratios[metric]) if metric in p.ratios else "")
        rows.append(cells)
    title = "  ".join([title, *(f"{a}={_fmt(pairs[0].config[a])}" for a in fixed)]).strip()
    table = _table(title, columns, rows)
    for column in table.columns:
        if column.header.endswith("ratio"):
            column.style = "bold magenta"
    if with_ratio:
        table.caption, table.caption_justify = "ratio = residual / plain", "left"
    return table


def plan_table(plan):
    """The runs of a sweep, one row per configuration, with the blocks still to run."""
    from cnnexp.config import config_dict

    todo = {id(c): blocks for c, blocks in plan.tasks}
    columns = ["#", *config_dict(plan.configs[0]), "to run"]
    rows = [[str(i), *(_fmt(v) for v in config_dict(c).values()), ", ".join(todo.get(id(c), ())) or "done"]
            for i, c in enumerate(plan.configs, start=1)]
    title = (f"{plan.sweep.name}: {len(plan.configs)} configurations x {len(plan.sweep.blocks)} blocks = "
             f"{plan.rows_total} rows ({plan.rows_to_run} to run) -> {plan.path}")
    return _table(title, columns, rows)


@command()
def sweep(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="The sweep file (YAML).", show_default=False)],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="AXIS=V1,V2", help="Replace an axis' values (repeatable), e.g. --set seed=0,1,2.")] = None,
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="Results CSV [default: results/<name>.csv].", show_default=False)] = None,
    per_layer: Annotated[Optional[Path], typer.Option(
        "--per-layer", help="Also write one row per run and block index to this CSV.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Start the results file afresh instead of resuming it.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the runs without running them.")] = False,
    plot: Annotated[bool, typer.Option(help="Also draw the sweep's default figure beside its CSV.")] = False,
    threads: Annotated[Optional[int], typer.Option(
        min=1, help="torch threads for the runs [default: torch's]; 1 is fastest for small d.", show_default=False)] = None,
) -> None:
    """Run a YAML sweep: every configuration, plain and residual, appended to a tidy CSV."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cnnexp.config import load_sweep
    from cnnexp.sweep import plan_sweep, run_sweep, side_by_side

    plan = plan_sweep(load_sweep(path, set_ or []), out_path, overwrite=overwrite, per_layer=per_layer)
    if dry_run:
        show(plan_table(plan))
        return
    if plan.rows_skipped:
        err.print(f"resuming {plan.path}: {plan.rows_skipped} of {plan.rows_total} rows already there, skipped",
                  soft_wrap=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True, disable=not plan.rows_to_run) as progress:
        bar = progress.add_task(plan.sweep.name, total=plan.rows_to_run)
        report = run_sweep(plan, on_result=lambda result: progress.advance(bar), threads=threads)
    show(pairs_table(side_by_side(report.rows), title=f"{plan.sweep.name}: gradient norms"))
    also = f"; per-layer rows in {plan.per_layer}" if plan.per_layer else ""
    err.print(f"wrote {report.ran} rows ({report.skipped} skipped) to {report.path}; provenance in {report.meta_path}"
              f"{also}", soft_wrap=True)
    if plot:
        from cnnexp.plot import sweep_figure

        err.print(f"wrote {sweep_figure(report.path)}", soft_wrap=True)


def _with_axis_options(fn):
    """Give a command one option per sweep axis (--d, --batch, --small-init, ...), from the axis table.

    The command receives the axis values in its **axes catch-all.
    """
    import inspect

    from cnnexp.schema import AXES

    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    axes = [inspect.Parameter(a.name, inspect.Parameter.KEYWORD_ONLY, default=a.default,
                              annotation=Annotated[a.kind, typer.Option(f"--{a.name.replace('_', '-')}", help=a.help)])
            for a in AXES]
    fn.__signature__ = inspect.Signature([*axes, *own])
    return fn


@command()
@_with_axis_options
def run(
    *,
    blocks: Annotated[str, typer.Option(help="Comma-separated blocks to run.")] = "plain,residual",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON, for scripts.")] = False,
    threads: Annotated[Optional[int], typer.Option(
        min=1, help="torch threads [default: torch's].", show_default=False)] = None,
    **axes,
) -> None:
    """Run one configuration (default: the notebook's) and print each block's metrics."""
    import json

    from cnnexp.config import config_dict
    from cnnexp.sweep import run_one, side_by_side

    results = run_one(axes, blocks.split(","), threads)
    if as_json:
        print(json.dumps({"config": config_dict(results[0].config), **{r.block: r.metrics for r in results}}, indent=2))
        return
    [pair] = side_by_side([r.row() for r in results])
    show(metrics_table(pair))


def metrics_table(pair):
    """The metrics of one configuration: a row per metric, a column per block, and the ratio."""
    from cnnexp.schema import METRICS

    columns = ["metric", *pair.metrics, *(["residual/plain"] if pair.ratios else [])]
    rows = [[m, *(_fmt(values[m]) for values in pair.metrics.values()),
             *([_ratio_cell(pair.ratios[m]) if m in pair.ratios else ""] if pair.ratios else [])]
            for m in METRICS]
    title = "  ".join(f"{k}={_fmt(v)}" for k, v in pair.config.items())
    return _table(title, columns, rows, first_left=True)


# --- analysis: compare, summary, plot ---------------------------------------------------------------

MAX_SHOWN = 20  # rows of a difference table on screen; --out writes them all
MISSING = "—"  # a NaN on screen (a std or sem over one seed, a ratio without both blocks)


def _names(values: list[str] | None) -> list[str]:
    """Repeatable options that also take commas: --y a --y b and --y a,b mean the same."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _num(value, digits: int = 4) -> str:
    """A number on screen: NaN as a dash, integers whole, floats to `digits` significant digits."""
    import math

    if isinstance(value, float) and math.isnan(value):
        return MISSING
    return _fmt(float(value), digits) if isinstance(value, float) else str(value)


def _varying(df, columns: list[str]) -> tuple[list[str], str]:
    """The columns with more than one value, and the others as 'name=value' for a table title."""
    varying = [c for c in columns if df[c].nunique(dropna=False) > 1]
    fixed = "  ".join(f"{c}={_num(df[c].iloc[0])}" for c in columns if c not in varying)
    return varying, fixed


def _shown(table, hidden: int):
    if hidden:
        table.caption, table.caption_justify = f"... and {hidden} more rows; --out writes them all", "left"
    return table


@command()
def compare(
    a: Annotated[Path, typer.Argument(metavar="A.csv", help="A results CSV.", show_default=False)],
    b: Annotated[Path, typer.Argument(metavar="B.csv", help="The results CSV to compare it with (the reference).",
                                      show_default=False)],
    rtol: Annotated[float, typer.Option(help="Relative tolerance: a differs from b when not "
                                             "|a-b| <= atol + rtol*|b| (numpy.isclose).")] = 1e-6,
    atol: Annotated[float, typer.Option(help="Absolute tolerance.")] = 0.0,
    metric: Annotated[Optional[list[str]], typer.Option(
        help="Compare only this metric; repeatable or comma-separated (default: every metric both files have).",
        show_default=False)] = None,
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="Write the joined comparison (both values, relative difference, status per row) as CSV.",
        show_default=False)] = None,
) -> None:
    """Compare two results files row by row; exit 0 when they agree, 1 when they differ (like diff)."""
    from cnnexp.analysis import compare as compare_results, write_csv

    result = compare_results(a, b, rtol=rtol, atol=atol, metrics=_names(metric))
    if out_path is not None:
        write_csv(result.joined, out_path)
    for table in comparison_tables(result):
        out.print(table)
    out.print(comparison_verdict(result), highlight=False, soft_wrap=True)
    if out_path is not None:
        err.print(f"wrote the comparison to {out_path}", soft_wrap=True)
    raise typer.Exit(0 if result.agree else 1)


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
    per_metric = _table(title, ["metric", "largest rel. diff", "rows beyond tolerance"], rows, first_left=True)
    per_metric.caption = (f"rel. diff = |a-b| / max(|a|,|b|); beyond tolerance: not |a-b| <= atol + rtol*|b| "
                          f"with rtol={result.rtol:g}, atol={result.atol:g}")
    per_metric.caption_justify = "left"
    tables = [per_metric]
    differing = result.differing
    if len(differing):
        varying, fixed = _varying(differing, keys)
        cells = [[*(_num(r[k]) for k in varying), m, repr(r[f"{m}_a"]), repr(r[f"{m}_b"]),
                  _num(r[f"{m}_rel_diff"], 3)]
                 for _, r in differing.iterrows() for m in result.metrics if r[f"{m}_differs"]]
        table = _table(f"beyond tolerance  {fixed}".strip(), [*varying, "metric", "A", "B", "rel. diff"],
                       cells[:MAX_SHOWN])
        tables.append(_shown(table, len(cells) - MAX_SHOWN if len(cells) > MAX_SHOWN else 0))
    for side in ("a", "b"):
        only = result.only(side)
        if len(only):
            cells = [[_num(v) for v in r] for r in only.itertuples(index=False)]
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


@command()
def summary(
    path: Annotated[Path, typer.Argument(metavar="RESULTS.csv", help="A results CSV.", show_default=False)],
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="Write <metric>_mean, _std, _sem, n (and _ratio) beside the configuration columns as CSV.",
        show_default=False)] = None,
) -> None:
    """Mean, standard deviation (ddof=1), standard error and n of every metric over seeds."""
    from cnnexp.analysis import summary as summarize, write_csv

    table = summarize(path)
    if out_path is not None:
        write_csv(table, out_path)
    for rich_table in summary_tables(table):
        out.print(rich_table)
    if out_path is not None:
        err.print(f"wrote the summary to {out_path}", soft_wrap=True)


def summary_tables(table) -> list:
    """One table per metric (mean, std, sem, n per configuration), then the residual/plain ratios."""
    metrics = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]
    config = list(table.columns[: list(table.columns).index(f"{metrics[0]}_mean")])
    varying, fixed = _varying(table, config)
    varying = varying or ["block"]
    tables = []
    for m in metrics:
        rows = [[*(_num(r[c]) for c in varying), *(_num(r[f"{m}_{s}"]) for s in ("mean", "std", "sem")),
                 str(r["n"])] for _, r in table.iterrows()]
        tables.append(_table(f"{m}  {fixed}".strip(), [*varying, "mean", "std", "sem", "n"], rows))
    ratios = [c for c in table.columns if c.endswith("_ratio")]
    if ratios:
        pairs = table[table["block"] == "residual"]
        keys = [c for c in varying if c != "block"]
        rows = [[*(_num(r[c]) for c in keys), *(MISSING if r[c] != r[c] else _ratio_cell(r[c]) for c in ratios)]
                for _, r in pairs.iterrows()]
        ratio_table = _table(f"residual / plain, ratio of the means  {fixed}".strip(),
                             [*keys, *(c.removesuffix("_ratio") for c in ratios)], rows)
        for column in ratio_table.columns[len(keys):]:
            column.style = "bold magenta"
        tables.append(ratio_table)
    return tables


@command()
def plot(
    path: Annotated[Path, typer.Argument(metavar="RESULTS.csv", help="A results CSV.", show_default=False)],
    x: Annotated[Optional[str], typer.Option(
        help="Column for the horizontal axis (default: small_init).", show_default=False)] = None,
    y: Annotated[Optional[list[str]], typer.Option(
        help="Column to plot (repeatable or comma-separated: a row of panels each) "
             "(default: x_grad_norm and param_grad_norm).", show_default=False)] = None,
    facet: Annotated[Optional[str], typer.Option(
        help="Column whose values each get a column of panels.", show_default=False)] = None,
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="Figure file: .png, .svg or .pdf (default: beside the CSV, <stem>_<y>_vs_<x>.png).",
        show_default=False)] = None,
) -> None:
    """Plot a metric against an axis: a line per block, mean over seeds, a band from min to max."""
    from cnnexp.plot import plot_results

    written = plot_results(path, x, _names(y) or None, facet=facet, out=out_path)
    err.print(f"wrote {written}", soft_wrap=True)
