"""The `cnnexp` command line: each command parses, calls one library function and renders.

    $ cnnexp sweep configs/init.yaml
    $ cnnexp run --d 256 --batch 64 --small-init 1e-4 --seed 123

Results go to stdout, progress and errors to stderr. A `CnnexpError` from the library becomes one line on
stderr and exit status 2. Heavy libraries (torch, pandas, matplotlib) are imported inside the commands that
need them, so `conv-shape` starts as fast as Typer itself.
"""

import functools
import math
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from cnnexp import __version__, examples, render
from cnnexp.config import load_sweep, shown_dict
from cnnexp.errors import CnnexpError, ConfigError, Interrupted, spell
from cnnexp.examples import copy_example
from cnnexp.schema import AXES, BLOCKS, DEFAULT_BLOCKS, NET
from cnnexp.shapes import shape_from_flags  # pure Python: conv-shape never imports torch, numpy or pandas
from cnnexp.trackers import SweepLog, log_results  # (mlflow and tensorboard: imported when a tracker opens)

app = typer.Typer(
    help="Experiment runner for the residual gradient study.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)
MIN_COLUMNS = 20  # a COLUMNS below this (0, 1) would print nothing, or a character per line: it is ignored


def _usable_columns() -> None:
    """Ignore a COLUMNS that no table or message could be printed in (0, 1, not a number): rich then takes
    the terminal's width, or prints a file's lines whole."""
    text = os.environ.get("COLUMNS")
    if text is not None and not (text.strip().isdigit() and int(text) >= MIN_COLUMNS):
        del os.environ["COLUMNS"]


_usable_columns()  # (before the consoles: rich reads COLUMNS when one is made)
# No markup in what cnnexp prints (file names may hold brackets); the error prefix asks for it explicitly.
out = Console(markup=False)
err = Console(stderr=True, markup=False)


def _version(value: bool) -> None:
    if value:
        print(f"cnnexp {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print cnnexp's version and exit.")] = False,
) -> None:
    """Experiment runner for the residual gradient study."""
    _usable_columns()


# The library names the parameter at fault (cnnexp.errors.param); a user reads the flag they typed: --name
# with - for _, except where the flag's name is not the parameter's.
FLAGS = {"overrides": "--set", "layers": "--layer", "path": "--from", "metrics": "--metric"}


def flag(parameter: str) -> str:
    """The flag a parameter of the library is given by on the command line."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def one_line(text: str) -> str:
    """A message as one line whatever it quotes: a newline or other control character from the user's input
    (a --set value, a file name) is shown escaped, as in a Python string."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def command(name: str | None = None, **kwargs):
    """Register a command whose `CnnexpError`s become one line on stderr and exit status 2."""

    def register(fn):
        @functools.wraps(fn)
        def guarded(*args, **kw):
            try:
                return fn(*args, **kw)
            except CnnexpError as e:
                err.print(f"[bold red]error:[/] {escape(one_line(e.message(flag)))}", markup=True, highlight=False,
                          soft_wrap=True)
                raise typer.Exit(e.exit_code) from None

        return app.command(name, **kwargs)(guarded)

    return register


def main() -> None:
    """The `cnnexp` script: run the command line, then end the process with its exit status (`_leave`)."""
    _leave(invoke())


def invoke() -> int:
    """Run the command line in sys.argv and return its exit status: Typer's app, with its usage errors (a bad
    flag, a missing argument) shown as one line on stderr like every other bad input, exit status 2."""
    import click

    if hasattr(signal, "SIGPIPE"):  # stdout closed early (`cnnexp run | head -1`): end quietly, as `cat` does
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if len(sys.argv) <= 1:
        sys.argv.append("--help")  # `cnnexp` alone: the help, as an answer (exit 0), not as a usage error
    try:
        code = app(standalone_mode=False)
    except click.ClickException as e:  # Typer's usage errors: a bad flag, a missing argument
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = escape(one_line(where + e.format_message()))
        err.print(f"[bold red]error:[/] {message}{escape(hint)}", markup=True, highlight=False,
                  soft_wrap=True)
        return e.exit_code
    except click.exceptions.Abort:  # Ctrl-C before any row was written
        err.print("interrupted")
        return 130
    except OSError as e:  # a file the command could not write: stdout on a full disk, say
        where = f"{e.filename}: cannot write" if e.filename else "cannot write the output"
        err.print(f"error: {where}: {e.strerror or e}", highlight=False, soft_wrap=True)
        return 1
    return code or 0


def _leave(code: int) -> NoReturn:
    """End the process with `code`. Once torch is imported, a normal exit spends about 0.1 s tearing its
    modules down (bench/bench_exit.py: `cnnexp run` 0.98 s against 1.08 s, medians of 9, 2026-12-03). By now
    every file cnnexp wrote is closed and every unit is in (idle workers end with this process), so, torch
    imported, the process ends at once, with stdout and stderr flushed."""
    if "torch" not in sys.modules:
        raise SystemExit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # stdout on a full disk, say: as Python's own exit says when its last flush fails
        code = code or 120
    os._exit(code)


# --- the study: sweep and run ---------------------------------------------------------------------


ENGINE_HELP = "batched (default: configurations of one shape computed together) or reference (the notebook's " \
              "method, one run at a time); both give the same numbers (rel 1e-6)."
DEVICE_HELP = "cpu (default, exactly reproducible), cuda, mps, or auto (the best there is)."
ENGINE_NAMES = ("batched", "reference")  # (cnnexp.engine.ENGINES, named here so the CLI starts without it)
DEVICE_NAMES = ("cpu", "cuda", "mps", "auto")  # (cnnexp.engine.DEVICES, likewise)


def _choices_help(text: str, choices: tuple[str, ...]) -> str:
    """An option's help, with its values first when it takes one of a few (shown by --help)."""
    return f"{' | '.join(choices)}: {text}" if choices else text


def _completer(choices: tuple[str, ...]):
    """Shell completion of an option's values (cnnexp --install-completion), when it takes one of a few."""
    if not choices:
        return None
    return lambda incomplete: [c for c in choices if c.startswith(incomplete)]


SEVERAL_HELP = ("A results CSV, or several read as one (their rows together, with a source column when they hold "
                "different sweeps).")
WHERE_HELP = ("Only the rows whose AXIS has one of these values (repeatable), e.g. --where block=plain "
              "--where small_init=0.01,0.0001; numbers compare as numbers.")
TRACKER_HELP = ("mlflow (a local store beside the results: sqlite:///RESULTS.mlflow.db), mlflow:TRACKING_URI, or "
                "tensorboard:DIR (a run directory per row); needs cnnexp[mlflow] or cnnexp[tensorboard].")
CURVE_HELP = "Also write the metrics at steps 0, 1, 2, 4, 8, ... and the last of each run to this CSV."
CURVE_EVERY_HELP = "With --curve: also every N-th step (0: only those)."


def _execution(engine: str, device: str, workers=None, threads=None, scheduler=None, scheduler_file=None):
    # defers multiprocessing (the engine's process pool), for start-up
    from cnnexp.engine import ENGINES, Execution, resolve_device

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    return Execution(engine, resolve_device(device), workers, threads, scheduler,
                     str(scheduler_file) if scheduler_file is not None else None)


@command()
def sweep(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="The sweep file (YAML).", show_default=False)],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="AXIS=V1,V2", help="Replace an axis' values (repeatable), e.g. --set seed=0,1,2.")] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Results CSV [default: results/<name>.csv].", show_default=False)] = None,
    per_layer: Annotated[Path | None, typer.Option(
        "--per-layer", help="Also write one row per run and block index to this CSV.", show_default=False)] = None,
    curve: Annotated[Path | None, typer.Option(
        "--curve", help=CURVE_HELP, show_default=False)] = None,
    curve_every: Annotated[int, typer.Option("--curve-every", help=CURVE_EVERY_HELP)] = 0,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Start the results file afresh instead of resuming it.")] = False,
    extend: Annotated[bool, typer.Option(
        "--extend", help="Keep the rows of a results file written by a narrower definition of this sweep (fewer "
                         "seeds or values) and run only the new ones; the provenance records both.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs without running them, and say what a "
                                                            "real run would do (resume, or refuse and why).")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Also draw the sweep's default figure beside its CSV.")] = False,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP, autocompletion=_completer(ENGINE_NAMES))] = "batched",
    workers: Annotated[int | None, typer.Option(
        min=1, max=256, help="Worker processes, one torch thread each [default: every core the process may use, "
                              "for a sweep big enough to gain].", show_default=False)] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, autocompletion=_completer(DEVICE_NAMES))] = "cpu",
    scheduler: Annotated[str | None, typer.Option(
        help="Run on the Dask cluster at this address, e.g. tcp://10.0.0.5:8786 (needs cnnexp[dask]).",
        show_default=False)] = None,
    scheduler_file: Annotated[Path | None, typer.Option(
        help="Run on the Dask cluster described by this file (dask scheduler --scheduler-file, dask-jobqueue).",
        show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, max=1024,
        help="torch threads in this process [default: 1, the fastest on a busy machine; training on data in one "
             "process: every core]; workers use one each.",
        show_default=False)] = None,
    log: Annotated[str | None, typer.Option(
        "--log", metavar="TARGET", help=f"Also log each row to a tracker as it is written: {TRACKER_HELP}",
        show_default=False)] = None,
) -> None:
    """Run a YAML sweep: every configuration on every block, each row appended to a tidy CSV as it finishes."""
    # defers multiprocessing and importlib.metadata (the sweep's machinery), for start-up
    from cnnexp.sweep import SweepOutputs, plan_sweep, preview_sweep, run_sweep, side_by_side

    execution = _execution(engine, device, workers, threads, scheduler, scheduler_file)
    loaded = load_sweep(path, set_ or [])
    outputs = SweepOutputs(out=out_path, overwrite=overwrite, per_layer=per_layer, curve=curve, curve_every=curve_every,
                           extend=extend)
    if dry_run:
        preview = preview_sweep(loaded, outputs, execution=execution)
        _warn(loaded.warnings)
        render.show(out, render.plan_table(preview))
        out.print(spell(render.plan_verdict(preview), flag), highlight=False, soft_wrap=True)
        return
    plan = plan_sweep(loaded, outputs, execution=execution)
    tracker = None
    if log is not None:  # opened and checked before the sweep starts: a bad target refuses it
        tracker = SweepLog(log, plan.path, plan.sweep.name, plan.columns, layers=plan.per_layer is not None,
                           curve=plan.curve is not None)

    def written(result) -> None:
        progress.advance(result)
        if tracker is not None and (problem := tracker.add(result)):
            _warn([problem])

    def started() -> None:  # the files are open and locked: from here on, nothing will refuse the sweep
        _warn([*loaded.warnings, *plan.warnings])
        if plan.rows_skipped:
            err.print(f"resuming {plan.path}: {plan.rows_skipped} of {plan.rows_total} rows already there, skipped",
                      soft_wrap=True)
        if plan.continuing:
            err.print(f"{plan.continuing} run{'s' * (plan.continuing > 1)} continue{'s' * (plan.continuing == 1)} "
                      f"from {'their checkpoints' if plan.continuing > 1 else 'its checkpoint'} in "
                      f"{plan.path.name}.ckpt/", soft_wrap=True)

    with render.SweepProgress(err, plan.sweep.name, plan.rows_to_run) as progress:
        report = run_sweep(plan, on_start=started, on_result=written)
    if tracker is not None and tracker.tracker is not None:
        tracker.tracker.close([report.path, report.meta_path])
    trains = any(c.trains_on_data for c in plan.configs)
    what = "errors after training" if trains else "losses and steps to fit" if plan.sweep.training else "gradient norms"
    for table in render.sweep_tables(side_by_side(report.rows), title=f"{plan.sweep.name}: {what}",
                                     path=report.path):
        render.show(out, table)
    also = f"; per-layer rows in {plan.per_layer}" if plan.per_layer else ""
    also += f"; curve rows in {plan.curve}" if plan.curve else ""
    err.print(f"wrote {report.ran} rows ({report.skipped} skipped) to {report.path}; provenance in {report.meta_path}"
              f"{also}", soft_wrap=True)
    if plot:
        from cnnexp.plot import sweep_figure  # defers pandas

        err.print(f"wrote {sweep_figure(report.path)}", soft_wrap=True)
    if len(plan.sweep.axes["small_init"]) >= 3 and not plan.sweep.training:  # the finding at init, as numbers
        from cnnexp.fit import sweep_exponents  # defers pandas

        for line in render.fit_lines(sweep_exponents(report.rows)):
            out.print(line, highlight=False, soft_wrap=True)


def _warn(warnings) -> None:
    for line in warnings:
        err.print(f"[bold yellow]warning:[/] {escape(one_line(spell(line, flag)))}", markup=True, highlight=False,
                  soft_wrap=True)


def _with_axis_options(fn):
    """Give a command one option per sweep axis (--d, --batch, --small-init, ...), from the axis table.

    The command receives the axis values in its **axes catch-all.
    """
    import inspect

    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    axes = [inspect.Parameter(a.name, inspect.Parameter.KEYWORD_ONLY, default=a.default,
                              annotation=Annotated[a.kind, typer.Option(f"--{a.name.replace('_', '-')}",
                                                                        help=_choices_help(a.help, a.choices),
                                                                        autocompletion=_completer(a.choices))])
            for a in AXES if a.study != NET]  # (whole networks come from a sweep's net: key)
    fn.__signature__ = inspect.Signature([*axes, *own])
    return fn


@command()
@_with_axis_options
def run(
    *,
    blocks: Annotated[str, typer.Option(help=f"Comma-separated blocks to run, of {', '.join(BLOCKS)}.",
                                        autocompletion=_completer(BLOCKS))] = ",".join(DEFAULT_BLOCKS),
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON, for scripts.")] = False,
    curve: Annotated[Path | None, typer.Option("--curve", help=CURVE_HELP, show_default=False)] = None,
    curve_every: Annotated[int, typer.Option("--curve-every", help=CURVE_EVERY_HELP)] = 0,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP, autocompletion=_completer(ENGINE_NAMES))] = "batched",
    device: Annotated[str, typer.Option(help=DEVICE_HELP, autocompletion=_completer(DEVICE_NAMES))] = "cpu",
    threads: Annotated[int | None, typer.Option(
        min=1, max=1024, help="torch threads [default: 1].", show_default=False)] = None,
    **axes,
) -> None:
    """Run one configuration (default: the notebook's) and print each block's metrics."""
    import json

    # defers multiprocessing and importlib.metadata (the sweep's machinery), for start-up
    from cnnexp.sweep import run_one, side_by_side

    execution = _execution(engine, device, threads=threads)
    steps = axes.get("steps") or 0
    with render.StepProgress(err, steps) as progress:
        try:
            results = run_one(axes, blocks.split(","), execution, curve=curve, curve_every=curve_every,
                              on_step=progress.step)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted at step {progress.done:,} of {steps:,}; nothing was written (a run "
                              "keeps no partial results: a sweep with these steps writes each run as it ends "
                              "and resumes)") from None
    if as_json:
        # strict JSON: a metric that overflowed (inf) or is undefined (nan) is null
        finite = lambda metrics: {k: v if v is not None and math.isfinite(v) else None  # noqa: E731
                                  for k, v in metrics.items()}
        data = {"config": shown_dict(results[0].config), **{r.block: finite(r.metrics) for r in results}}
        print(json.dumps(data, indent=2, allow_nan=False))
        return
    [pair] = side_by_side([r.row() for r in results])
    render.show(out, render.metrics_table(pair))
    if curve is not None:
        err.print(f"wrote the curve to {curve}", soft_wrap=True)


# --- analysis: compare, summary, plot ---------------------------------------------------------------


def _names(values: list[str] | None) -> list[str]:
    """Repeatable options that also take commas: --y a --y b and --y a,b mean the same."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


@command()
def compare(
    a: Annotated[Path, typer.Argument(metavar="A.csv", help="A results CSV.", show_default=False)],
    b: Annotated[Path, typer.Argument(metavar="B.csv", help="The results CSV to compare it with (the reference).",
                                      show_default=False)],
    rtol: Annotated[float, typer.Option(help="Relative tolerance: a differs from b when not "
                                             "|a-b| <= atol + rtol*|b| (numpy.isclose).")] = 1e-6,
    atol: Annotated[float | None, typer.Option(
        help="Absolute tolerance for every metric [default: a floor per metric: rtol times its magnitude for "
             "cos_x_out and metrics with negative values, 0 for norms and the loss].", show_default=False)] = None,
    ignore: Annotated[list[str] | None, typer.Option(
        help="Leave this configuration column out of the join (repeatable or comma-separated), e.g. "
             "--ignore dtype to pair a float32 file with a float64 one.", show_default=False)] = None,
    metric: Annotated[list[str] | None, typer.Option(
        help="Compare only this metric; repeatable or comma-separated (default: every metric both files have).",
        show_default=False)] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Write the joined comparison (both values, relative difference, status per row) as CSV.",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Let --out replace a file that is not an earlier comparison (never an input).")] = False,
    where: Annotated[list[str] | None, typer.Option(
        "--where", metavar="AXIS=V1,V2", help=WHERE_HELP, show_default=False)] = None,
) -> None:
    """Compare two results files row by row; exit 0 when they agree, 1 when they differ (like diff)."""
    # defers pandas
    from cnnexp.analysis import check_csv_out, is_comparison_file, write_csv
    from cnnexp.analysis import compare as compare_results  # defers pandas

    written: dict[str, Any] = dict(inputs=[a, b], ours=is_comparison_file, overwrite=overwrite)
    if out_path is not None:
        check_csv_out(out_path, **written)  # before any work
    result = compare_results(a, b, rtol=rtol, atol=atol, metrics=_names(metric), ignore=_names(ignore),
                             where=where or [])
    if out_path is not None:
        write_csv(result.joined, out_path, **written)
    for table in render.comparison_tables(result):
        render.show(out, table)
    out.print(render.comparison_verdict(result), highlight=False, soft_wrap=True)
    if out_path is not None:
        err.print(f"wrote the comparison to {out_path}", soft_wrap=True)
    raise typer.Exit(0 if result.agree else 1)


@command()
def summary(
    path: Annotated[list[Path], typer.Argument(metavar="RESULTS.csv...", help=SEVERAL_HELP, show_default=False)],
    metric: Annotated[list[str] | None, typer.Option(
        help="Summarise only this metric; repeatable or comma-separated (default: every metric of the file).",
        show_default=False)] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Write <metric>_mean, _std, _sem, n (and _ratio) beside the configuration columns as CSV.",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Let --out replace a file that is not an earlier summary (never an input).")] = False,
    where: Annotated[list[str] | None, typer.Option(
        "--where", metavar="AXIS=V1,V2", help=WHERE_HELP, show_default=False)] = None,
) -> None:
    """Mean, standard deviation (ddof=1), standard error and n of every metric over seeds."""
    from cnnexp.analysis import check_csv_out, is_summary_file, write_csv  # defers pandas
    from cnnexp.analysis import summary as summarize  # defers pandas

    written: dict[str, Any] = dict(inputs=path, ours=is_summary_file, overwrite=overwrite)
    if out_path is not None:
        check_csv_out(out_path, **written)  # before any work
    table = summarize(path, _names(metric), where=where or [])
    if out_path is not None:
        write_csv(table, out_path, **written)
    for rich_table in render.summary_tables(table, width=out.width if out.is_terminal else None):
        render.show(out, rich_table)
    if out_path is not None:
        err.print(f"wrote the summary to {out_path}", soft_wrap=True)


@command()
def plot(
    path: Annotated[list[Path], typer.Argument(metavar="RESULTS.csv...", help=SEVERAL_HELP, show_default=False)],
    x: Annotated[str | None, typer.Option(
        help="Column for the horizontal axis (default: the numeric axis with the most values; small_init on a "
             "tie).", show_default=False)] = None,
    y: Annotated[list[str] | None, typer.Option(
        help="Column to plot (repeatable or comma-separated: a row of panels each) "
             "(default: x_grad_norm and param_grad_norm; out_grad_norm for a per-layer file).",
        show_default=False)] = None,
    facet: Annotated[str | None, typer.Option(
        help="Column whose values each get a column of panels (default: an axis with at most 4 values, if any; "
             "'' for none). At most 24 panels in all.", show_default=False)] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Figure file: .png, .svg or .pdf (default: beside the CSV, <stem>_<y...>_vs_<x>.png).",
        show_default=False)] = None,
    fit: Annotated[bool, typer.Option(
        "--fit", help="Also draw each line's fitted law (dashed, slope and 95% interval in the legend) and the "
                      "theory's slope (dotted) where derived; see `cnnexp fit`.")] = False,
    dpi: Annotated[float, typer.Option(help="Dots per inch of a .png.")] = 110,
    layers: Annotated[bool, typer.Option(
        "--layers", help="Signal propagation plots of a per-layer file of networks: act_var, act_sq_mean and "
                         "out_grad_norm against the layer index, plain twin and network on the same panels, "
                         "a column per init, small_init and bn (docs/nets.md).")] = False,
    where: Annotated[list[str] | None, typer.Option(
        "--where", metavar="AXIS=V1,V2", help=WHERE_HELP, show_default=False)] = None,
) -> None:
    """Plot a metric against an axis: a line per block, mean over seeds, a band from min to max.

    Values a log axis cannot show (zeros, such as an underflowed gradient) and NaN are counted in the title,
    lines that coincide are drawn nested, and panels whose ranges lie many decades apart get their own y axis.
    """
    from cnnexp.plot import plot_layers, plot_results  # defers pandas

    if layers:
        if x is not None or facet is not None or fit:
            raise ConfigError("--layers draws each statistic against the layer index, a column of panels per "
                              "init, small_init and bn: it takes no --x, --facet or --fit")
        written = plot_layers(path, _names(y) or None, out=out_path, dpi=dpi, where=where or [])
    else:
        written = plot_results(path, x, _names(y) or None, facet=facet, out=out_path, fit=fit, dpi=dpi,
                               where=where or [])
    err.print(f"wrote {written}", soft_wrap=True)


@command("examples")
def examples_command(
    name: Annotated[str | None, typer.Argument(help="An example to copy out (see the list).",
                                               show_default=False)] = None,
    to: Annotated[Path | None, typer.Option("--to", help="Where to copy it [default: NAME.yaml here].",
                                            show_default=False)] = None,
) -> None:
    """List the shipped sweeps and networks (usable by name: cnnexp sweep init, conv-shape --from resnet18),
    or copy one out to edit."""
    if name is not None:
        err.print(f"wrote {copy_example(name, to)}", soft_wrap=True, highlight=False)
        return
    render.show(out, render.examples_table(examples.sweeps(), examples.nets(), examples.describe))


@command("log")
def log_command(
    path: Annotated[Path, typer.Argument(metavar="RESULTS.csv", help="A results CSV.", show_default=False)],
    to: Annotated[str, typer.Option("--to", metavar="TARGET", help=TRACKER_HELP, show_default=False)],
) -> None:
    """Log a results file (with its curve and per-layer rows) to MLflow or TensorBoard: a run per row, each
    once; exit 1 if a finished run holds other values than its row (it is never overwritten)."""
    report = log_results(path, to)
    err.print(f"logged {report.logged} rows ({report.skipped} already there) to {report.target}", soft_wrap=True)
    for name in report.conflicts:
        err.print(f"differs: {name}: its finished run holds other values than the row; left as it is",
                  soft_wrap=True, highlight=False)
    if report.conflicts:
        raise typer.Exit(1)


@command("fit")
def fit_command(
    path: Annotated[list[Path], typer.Argument(metavar="RESULTS.csv...", help=SEVERAL_HELP, show_default=False)],
    x: Annotated[str, typer.Option(
        help="The axis to fit against, e.g. small_init, d, batch or depth.", show_default=False)],
    y: Annotated[list[str] | None, typer.Option(
        help="Metric to fit (repeatable or comma-separated) (default: loss, x_grad_norm, a1_grad_norm, "
             "param_grad_norm, w_norm).", show_default=False)] = None,
    law: Annotated[str | None, typer.Option(
        help="power: log10(metric) on log10(x); exponential: log10(metric) on x; log: the metric itself on "
             "log10(x), e.g. steps_to_fit per decade (default: exponential for depth and block_index, power for "
             "any other axis).", show_default=False)] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Write the fits as CSV: the group's configuration columns, then metric, x, law, slope, "
                      "slope_low, slope_high, intercept, r2, n, excluded, theory, ...", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fits as JSON records, for scripts.")] = False,
    where: Annotated[list[str] | None, typer.Option(
        "--where", metavar="AXIS=V1,V2", help=WHERE_HELP, show_default=False)] = None,
) -> None:
    """Fit a law per group (seeds pooled): slope with its 95% interval, R^2, and the theory beside it."""
    from cnnexp.fit import fit_file  # defers pandas

    fits = fit_file(path, x, _names(y) or None, law=law, out=out_path, where=where or [])
    if as_json:
        print(render.fits_json(fits))
    else:
        for table in render.fit_tables(fits):
            render.show(out, table)
    if out_path is not None:
        err.print(f"wrote {len(fits)} fits to {out_path}", soft_wrap=True)


# --- CNN shapes and convolution ---


@command("conv-shape")
def conv_shape(
    size: Annotated[str | None, typer.Argument(help="One conv layer on an input of H or HxW pixels.")] = None,
    kernel: Annotated[str | None, typer.Option(help="Kernel size, N or NxM (with SIZE).")] = None,
    stride: Annotated[str, typer.Option(help="Stride, N or NxM (with SIZE).")] = "1",
    padding: Annotated[str, typer.Option(help="Padding, N, NxM or 'same' (with SIZE).")] = "0",
    dilation: Annotated[str, typer.Option(help="Dilation, N or NxM (with SIZE).")] = "1",
    in_channels: Annotated[int, typer.Option(help="Input channels (with SIZE).")] = 1,
    out_channels: Annotated[int | None, typer.Option(help="Output channels (with SIZE); default: in.")] = None,
    input: Annotated[str | None, typer.Option("--input", help="Chain input CxHxW, e.g. 3x224x224.")] = None,
    layer: Annotated[
        list[str] | None, typer.Option("--layer", help="A layer, e.g. conv:out=64,k=7,s=2,p=3 (repeat).")
    ] = None,
    from_: Annotated[Path | None, typer.Option("--from", help="YAML file with 'input' and 'layers'.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    dtype: Annotated[str, typer.Option(help="Element type of the memory figures: float32, float16, bfloat16.")]
    = "float32",
) -> None:
    """Output shape, parameters, MACs, receptive field and activation memory of a CNN, by PyTorch's rules.

    One layer:  cnnexp conv-shape 224 --kernel 3 --stride 2 --padding 1

    A chain:    cnnexp conv-shape --input 3x224x224 --layer conv:out=64,k=7,s=2,p=3 --layer maxpool:k=3,s=2,p=1

    A network:  cnnexp conv-shape --from configs/nets/resnet18.yaml   (repeats, residual blocks: docs/conv-shape.md)
    """
    net = shape_from_flags(size, kernel, stride, padding, dilation, in_channels, out_channels, input, layer, from_,
                           dtype)

    if as_json:
        import json

        typer.echo(json.dumps(net.to_json()))
        return
    render.print_chain(out, net, single=size is not None)


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
    seed: Annotated[int, typer.Option(min=0, help="Seeds input, filters and bias.")] = 0,
    repeats: Annotated[int, typer.Option(min=1, help="Runs per method; the median time is shown.")] = 3,
    tolerance: Annotated[float, typer.Option(help="Allowed error, relative to the largest output.")] = 1e-5,
    loop_limit: Annotated[float, typer.Option(
        min=0, help="Skip the pure-Python loop when its work is over this: MACs plus 1,000 per output value "
                    "(1e8 is about half a second a run).")] = 1e8,
) -> None:
    """Run the numpy loop, the numpy fast path and torch's conv2d on one random input; compare.

    Exit 0 when the methods that ran match torch within the tolerance, 1 when they differ. The loop is skipped
    (and said so) when its work is over --loop-limit; a check too big for the memory available is refused.
    """
    from cnnexp.conv import check_conv  # defers numpy (check_conv imports PyTorch itself)

    check = check_conv(batch, in_channels, out_channels, size, kernel, stride, padding, dilation, seed,
                       repeats, tolerance, loop_limit)
    render.show(out, render.check_table(check))
    verdict = "agree" if check.ok else "DIFFER"
    skipped = "".join(f"; {r.method} skipped (over --loop-limit)" for r in check.results if r.skipped)
    out.print(f"{', '.join(check.ran[:-1])} and {check.ran[-1]} {verdict} (tolerance {check.tolerance:.2e}){skipped}",
              highlight=False, soft_wrap=True)
    if not check.ok:
        raise typer.Exit(1)
