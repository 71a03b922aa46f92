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
    app()


# --- the study: sweep and run ---------------------------------------------------------------------


def _fmt(value, digits: int = 6) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def show(renderable) -> None:
    """Print to stdout without ever cropping: wider than the terminal if a table needs it, and at its
    natural width when stdout is a file or a pipe."""
    from rich.measure import Measurement

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
    path: Annotated[Path, typer.Argument(help="The sweep file (YAML).", show_default=False)],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="AXIS=V1,V2", help="Replace an axis' values (repeatable), e.g. --set seed=0,1,2.")] = None,
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="Results CSV [default: results/<name>.csv].", show_default=False)] = None,
    per_layer: Annotated[Optional[Path], typer.Option(
        "--per-layer", help="Also write one row per run and block index to this CSV.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Start the results file afresh instead of resuming it.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the runs without running them.")] = False,
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
        report = run_sweep(plan, on_result=lambda result: progress.advance(bar))
    show(pairs_table(side_by_side(report.rows), title=f"{plan.sweep.name}: gradient norms"))
    also = f"; per-layer rows in {plan.per_layer}" if plan.per_layer else ""
    err.print(f"wrote {report.ran} rows ({report.skipped} skipped) to {report.path}; provenance in {report.meta_path}"
              f"{also}", soft_wrap=True)


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
    **axes,
) -> None:
    """Run one configuration (default: the notebook's) and print each block's metrics."""
    import json

    from cnnexp.config import config_dict
    from cnnexp.sweep import run_one, side_by_side

    results = run_one(axes, blocks.split(","))
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
