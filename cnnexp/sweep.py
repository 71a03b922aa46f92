"""Run a sweep: plan which rows are still missing, execute them, append each row as it arrives.

    from cnnexp.config import load_sweep
    plan = plan_sweep(load_sweep("configs/init.yaml"))            # reads, writes nothing
    plan.rows_total, plan.rows_skipped                                # (6, 0) on a fresh start
    report = run_sweep(plan)                                      # writes results/init.csv
    pairs = side_by_side(report.rows)                             # plain and residual, with ratios

Resuming: the rows already in the CSV are skipped, keyed by their configuration columns. A CSV is only
resumed by the sweep that wrote it (same fingerprint in its provenance file); any other is refused unless
`overwrite` starts it afresh.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import platform
import socket
import sys
from collections.abc import Callable, Container
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnexp import __version__
from cnnexp import stats as seeds
from cnnexp.config import (
    RunConfig,
    Sweep,
    Task,
    config_dict,
    expand,
    iter_configs,
    parse_blocks,
    parse_run,
    resolved,
)
from cnnexp.engine import (
    DEFAULT_THREADS,
    DRAW_BYTES,
    UNIT_BYTES,
    Execution,
    RunResult,
    curve_steps,
    device_info,
    execute,
    open_executor,
    plan_units,
    run_cost,
    unit_bytes,
    use_threads,
    worker_count,
)
from cnnexp.engine.result import STEP_PROGRESS, checkpoint_file
from cnnexp.engine.runtime import available_cores
from cnnexp.errors import CnnexpError, ConfigError, Interrupted, ResultsError, param, spell
from cnnexp.memory import refuse_beyond_memory
from cnnexp.nets import NetSpec, Row, lay_out, layer_rows, net_file
from cnnexp.paths import CSV, check_output
from cnnexp.results import (
    ResultsFile,
    existing_meta_path,
    fingerprint,
    format_value,
    is_locked,
    keep_rows,
    meta_path,
    read_meta,
    read_rows,
    row_key,
    write_meta,
    write_table,
)
from cnnexp.schema import (
    ALL_METRICS,
    AXIS,
    CONFIG_COLUMNS,
    DATA_TRAINING_DEFINITION,
    FINDING_METRICS,
    METRICS,
    NET_METRICS,
    RATIO_BLOCKS,
    STEP_METRICS,
    TRAINING_AXES,
    TRAINING_DEFINITION,
    Columns,
)
from cnnexp.schema import columns as columns_of
from cnnexp.shapes.types import parse_input


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """What a sweep will do: the tasks still to run and the rows already in its CSV."""

    sweep: Sweep
    path: Path
    configs: list[RunConfig]  # every RunConfig of the sweep, in grid order
    tasks: list[Task]  # the configurations with blocks still missing from the CSV
    done: dict[tuple[Any, ...], dict[str, str]]  # row key -> row text, for the rows already in the CSV
    fresh: bool  # the CSV is (re)started from an empty file
    per_layer: Path | None = None  # the per-layer CSV, when asked for
    seen_size: int | None = None  # the CSV's size when planned (None: absent), checked again before writing
    meta: dict[str, Any] | None = None  # the provenance of the rows already there
    execution: Execution = Execution()  # engine, device, workers, threads, scheduler
    warnings: tuple[str, ...] = ()  # what the user should know before the run starts (printed by the CLI)
    curve: Path | None = None  # the curve CSV (one row per run and recorded step), when asked for
    curve_every: int = 0  # --curve-every: also every N-th step in the curve (0: steps 0, 1, 2, 4, ... and the last)
    columns: Columns = columns_of(False)  # the columns of this sweep's files (schema.columns)
    overwrite: bool = False  # --overwrite: the files, and any checkpoints, start afresh
    continuing: int = 0  # runs still to run that continue from a checkpoint (training on data, docs/data.md)

    @property
    def side_files(self) -> list[SideFile]:
        """The files written beside the results CSV, each run's rows before its results row."""
        sides = ((param("per_layer"), self.per_layer, self.columns.layers, "layer_rows"),
                 (param("curve"), self.curve, self.columns.curve, "curve_rows"))
        return [SideFile(flag, path, columns, rows_of) for flag, path, columns, rows_of in sides
                if path is not None]

    @property
    def rows_total(self) -> int:
        return len(self.configs) * len(self.sweep.blocks)

    @property
    def rows_to_run(self) -> int:
        return sum(len(blocks) for _, blocks in self.tasks)

    @property
    def rows_skipped(self) -> int:
        return self.rows_total - self.rows_to_run


@dataclass(frozen=True)
class SideFile:
    """A file of several rows per run, written beside the results CSV (--per-layer, --curve).

    Resume keeps the two consistent: a run's rows here are written before its results row, and rows of runs
    that never reached the results CSV (a kill between the two) are dropped and run again.
    """

    flag: str
    path: Path
    columns: tuple[str, ...]
    rows_of: str  # the RunResult method that gives a run's rows

    def rows(self, result: RunResult) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = getattr(result, self.rows_of)()
        return rows


@dataclass(frozen=True)
class SweepReport:
    """A finished sweep: where its files are and every row of it (numbers, in grid order)."""

    path: Path
    meta_path: Path
    rows: list[dict[str, Any]]
    ran: int
    skipped: int


def default_path(sweep: Sweep) -> Path:
    return Path("results") / f"{sweep.name}.csv"


@dataclass(frozen=True)
class SweepOutputs:
    """The files a sweep writes, as asked for (each checked by `plan_sweep`).

    Attributes:
        out: the results CSV (default results/<name>.csv).
        overwrite: start the results afresh instead of resuming them.
        per_layer: also write one row per run and block index to this CSV.
        curve: also write one row per run and recorded step to this CSV (steps 0, 1, 2, 4, ... and the last).
        curve_every: also record every N-th step in the curve (0: only those).
        extend: keep the rows of a results CSV written by a narrower definition of this sweep (its values a
            subset of these: fewer seeds, fewer small_init values, ...) and run only the new configurations.
    """

    out: str | os.PathLike[str] | None = None
    overwrite: bool = False
    extend: bool = False
    per_layer: str | os.PathLike[str] | None = None
    curve: str | os.PathLike[str] | None = None
    curve_every: int = 0


def plan_sweep(sweep: Sweep, outputs: SweepOutputs = SweepOutputs(), *,
               execution: Execution = Execution()) -> SweepPlan:
    """Decide what a sweep has left to run, reading (never writing) its results files.

    Args:
        sweep: the checked sweep.
        outputs: the files to write (the results CSV, the per-layer and curve files) and whether to start
            them afresh.
        execution: engine, device, workers, threads and scheduler for the runs.

    Raises:
        ConfigError: a configuration needs more memory than the machine has.
        ResultsError: the results file belongs to another sweep definition (and `overwrite` is not set),
            is damaged, or would be resumed with another thread count.
    """
    _check_curve_every(outputs.curve_every)
    path, sides, meta, done, warnings = _existing_results(sweep, outputs, execution)
    cols = columns_of(sweep.training, sweep.net, sweep.on_data)
    configs = expand(sweep)
    if not done:  # nothing to look up (a fresh sweep): every block of every configuration
        tasks = [Task(config, sweep.blocks) for config in configs]
    else:
        tasks = []
        for config in configs:
            missing = tuple(b for b in sweep.blocks if _key(b, config, cols.config) not in done)
            if missing:
                tasks.append(Task(config, missing))
    warnings += _execution_changes(path, meta, execution) if done and tasks else ()
    if execution.workers is not None and execution.workers > max(len(tasks), 1):
        warnings += (f"{param('workers')} {execution.workers}: only {len(tasks)} configuration"
                     f"{'s' * (len(tasks) != 1)} to run, so {max(len(tasks), 1)} worker"
                     f"{'s' * (len(tasks) > 1)}",)
    fresh = outputs.overwrite or not done
    seen_size = path.stat().st_size if path.exists() else None
    folder = checkpoint_folder(path)
    continuing = 0 if outputs.overwrite or not folder.is_dir() else sum(
        checkpoint_file(folder, block, config).is_file() for config, blocks in tasks if config.trains_on_data
        for block in blocks)
    side = {f.flag: f.path for f in sides}
    return SweepPlan(sweep=sweep, path=path, configs=configs, tasks=tasks, done=done, fresh=fresh,
                     per_layer=side.get(param("per_layer")), seen_size=seen_size, meta=meta, execution=execution,
                     warnings=warnings, curve=side.get(param("curve")), curve_every=outputs.curve_every, columns=cols,
                     overwrite=outputs.overwrite, continuing=continuing)


def _existing_results(sweep: Sweep, outputs: SweepOutputs, execution: Execution) -> tuple[
        Path, list[SideFile], dict[str, Any] | None, dict[tuple[Any, ...], dict[str, str]], tuple[str, ...]]:
    """Every check a sweep passes before it runs, reading (never writing) its files and enumerating no
    configuration: the output paths, memory, and the rows already there (verified, see `_resumable_rows`).

    Returns:
        (results path, side files, provenance or None, row key -> row text of the rows kept, warnings)
    """
    cols = columns_of(sweep.training, sweep.net, sweep.on_data)
    out, overwrite, curve_every = outputs.out, outputs.overwrite, outputs.curve_every
    path = check_output(out if out is not None else default_path(sweep), param("out"), CSV, create_parent=out is None)
    sides = [SideFile(flag, check_output(p, flag, CSV), columns, rows_of)
             for flag, p, columns, rows_of in ((param("per_layer"), outputs.per_layer, cols.layers, "layer_rows"),
                                               (param("curve"), outputs.curve, cols.curve, "curve_rows"))
             if p is not None]
    check_memory(largest_configs(sweep), len(sweep.blocks), sweep.name, execution.workers or 1, sweep.size)
    taken = [path.resolve(), meta_path(path).resolve()]
    for side in sides:
        if side.path.resolve() in taken:
            raise ResultsError(f"{side.path}: {side.flag} must name a file of its own, not the results CSV, its "
                               "provenance or another side file")
        taken.append(side.path.resolve())
    meta = None if overwrite else read_meta(path)
    done = {} if overwrite else _resumable_rows(path, sweep, meta, cols, outputs.extend)
    for key, given in (("per_layer", outputs.per_layer), ("curve", outputs.curve)):
        recorded = (meta or {}).get(key) if done else None
        if isinstance(recorded, str) and given is None:  # never drop a side file the earlier runs wrote
            rows = "per-layer" if key == "per_layer" else "curve"
            raise ResultsError(f"{path}: its earlier runs wrote their {rows} rows to {recorded}; resume with "
                               f"{param(key)} {recorded} to keep that file whole, or use {param('overwrite')}")
    warnings: tuple[str, ...] = ()
    for side in sides if not overwrite else ():
        if done and side.flag == param("curve") and (meta or {}).get("curve_every", curve_every) != curve_every:
            raise ResultsError(f"{side.path}: its rows were recorded with {param('curve_every')} "
                               f"{(meta or {}).get('curve_every')}; resume with the same, or use {param('overwrite')}")
        # refuses a file that is not such a CSV of this sweep, or one edited by hand
        side_rows = read_rows(side.path, side.columns, keys=_side_key_values(sweep, side, cols, curve_every),
                              numbers=_numbers(side.columns))
        incomplete = _runs_without(side, done, side_rows, cols.config, curve_every, sweep)
        if incomplete:  # e.g. the file was added at a resume: those runs run again, in every file
            done = {k: row for k, row in done.items() if k not in incomplete}
            rows = spell(side.flag).replace("_", "-")  # per-layer, curve
            warnings += (f"{side.path}: {len(incomplete)} of the runs already in {path} lack their {rows} "
                         "rows; they run again",)
    return path, sides, meta, done, warnings


@dataclass(frozen=True)
class SweepPreview:
    """What a dry run shows: the first configurations with the blocks still to run, the counts, and what a
    real run would do."""

    sweep: Sweep
    path: Path
    first: list[Task]  # the first configurations, in grid order, each with its blocks still to run (() if done)
    rows_total: int
    rows_to_run: int
    refusal: str | None  # why a real run would refuse (None: it would run)

    @property
    def rows_skipped(self) -> int:
        return self.rows_total - self.rows_to_run


def preview_sweep(sweep: Sweep, outputs: SweepOutputs = SweepOutputs(), *, execution: Execution = Execution(),
                  shown: int = 40) -> SweepPreview:
    """The plan of a dry run, never refused for what only matters when running or writing (a file of
    another definition, a damaged or locked file, a bad --out, too little memory): `refusal` then says
    why a real run would refuse, and the plan is of the whole sweep. Reads, writes nothing, and enumerates
    only the `shown` configurations listed (a sweep of a million plans in well under a second).
    """
    refusal: str | None = None
    done: dict[tuple[Any, ...], dict[str, str]] = {}
    path = Path(outputs.out) if outputs.out is not None else default_path(sweep)
    key_columns = columns_of(sweep.training, sweep.net, sweep.on_data).config
    try:
        path, _, _, done, _ = _existing_results(sweep, outputs, execution)
        if path.is_file() and is_locked(path):
            refusal = f"{path}: another cnnexp sweep is writing it now"
    except CnnexpError as e:
        refusal, done = e.args[0], {}
    first = [Task(c, tuple(b for b in sweep.blocks if _key(b, c, key_columns) not in done))
             for c in itertools.islice(iter_configs(sweep), shown)]
    total = sweep.size * len(sweep.blocks)
    return SweepPreview(sweep, path, first, total, total - len(done), refusal)


def _execution_changes(path: Path, meta: dict[str, Any] | None, execution: Execution) -> tuple[str, ...]:
    """What a resume changes in how rows are computed: worth a word, not a refusal (the engines and thread
    counts agree to rel 1e-6)."""
    before = (meta or {}).get("environment") or {}
    now = {"engine": execution.engine, "threads": execution.threads, "workers": execution.workers}
    changed = [f"{k} {before[k]} -> {v}" for k, v in now.items() if v is not None and k in before and before[k] != v]
    if not changed:
        return ()
    return (f"{path}: resuming with {', '.join(changed)}; rows agree with the earlier ones to rel 1e-6, not "
            "always to the last bit",)


def run_sweep(
    plan: SweepPlan,
    *,
    command: str | None = None,
    on_start: Callable[[], None] | None = None,
    on_result: Callable[[object], None] | None = None,
) -> SweepReport:
    """Execute a plan: write the provenance, then append each result to the CSV as it arrives.

    Units run in this process, in local worker processes or on a Dask cluster (plan.execution); only this
    process writes files. A finished sweep's files are in grid order whatever order the rows arrived in.

    Args:
        plan: from `plan_sweep`.
        command: the command line to record (default: this process's argv).
        on_start: called once the files are open, locked and checked, before the first run (so a refusal
            comes before anything a caller would say about the run, e.g. "resuming ...").
        on_result: called with each RunResult after its row is written (e.g. to advance a progress bar).

    Returns:
        The report, with every row of the sweep (those skipped as well as those run).

    Raises:
        ResultsError: a results file could not be written (disk full, ...) or changed underneath the sweep;
            the rows written before stay, and a rerun resumes.
        RunError: a unit failed (out of memory, a lost worker); the rows written before stay.
        Interrupted: Ctrl-C; the rows written before stay.
    """
    execution, layers = plan.execution, plan.per_layer is not None
    curve = plan.curve_every if plan.curve is not None else None
    cost = sum(run_cost(config, len(blocks)) for config, blocks in plan.tasks)
    runs = sum(len(blocks) if config.trains_on_data else 1 for config, blocks in plan.tasks)  # units, at most
    workers = min(worker_count(execution, cost), max(runs, 1))
    per_run = training_threads(plan, execution)
    threads = use_threads(execution.threads or per_run or DEFAULT_THREADS)
    checkpoints = checkpoint_folder(plan.path) if any(c.trains_on_data for c in plan.configs) else None
    started = _now()
    command = command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    new: dict[tuple[Any, ...], dict[str, Any]] = {}
    keys = plan.columns.config
    with ExitStack() as files:
        # the executor first: a cluster that does not answer is refused before any file is touched, and local
        # workers forked after the results files were opened would hold their locks past a kill
        backend = files.enter_context(open_executor(execution, workers))
        # with several workers (local processes, or a cluster's threads): smaller units, largest first, to balance
        units = plan_units(plan.tasks, engine=execution.engine, device=execution.device, layers=layers,
                           workers=backend.parallel, curve=curve,
                           checkpoints=str(checkpoints.resolve()) if checkpoints is not None else None,
                           threads=per_run if workers > 1 else None)
        csv_file, sides = _open_results(plan, files)
        if checkpoints is not None and plan.overwrite:
            _clear(checkpoints)  # started afresh: no run continues from an earlier one
        meta = _provenance(plan, command, started, threads, backend.provenance)
        write_meta(plan.path, meta)  # before anything runs, so every row has its provenance
        if on_start is not None:
            on_start()
        try:
            for results in execute(units, backend.executor, backend.window):
                for result in results:
                    row = result.row()
                    for side, side_file in sides:  # first, so a run in the results CSV is complete
                        for side_row in side.rows(result):
                            side_file.append(side_row)
                    csv_file.append(row)
                    new[row_key(row, keys)] = row
                    if checkpoints is not None:  # the run is in the results: its checkpoint has served
                        checkpoint_file(checkpoints, result.block, result.config).unlink(missing_ok=True)
                    if on_result is not None:
                        on_result(result)
            order = {_key(b, c, keys): i
                     for i, (c, b) in enumerate(itertools.product(plan.configs, plan.sweep.blocks))}
            for f in [csv_file, *(side_file for _, side_file in sides)]:
                f.finish(order, keys)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: {csv_file.complete_rows()} of {plan.rows_total} rows written to "
                              f"{plan.path}; rerun the same command to resume") from None
        except OSError as e:  # the disk filled, a file-size limit, the folder vanished
            raise ResultsError(f"{e.filename or plan.path}: cannot write: {e.strerror or e}; "
                               f"{csv_file.complete_rows()} of {plan.rows_total} rows are safe in {plan.path}; "
                               "make room and rerun the same command to resume") from None
    meta["finished"] = meta["invocations"][-1]["finished"] = _now()
    write_meta(plan.path, meta)
    if checkpoints is not None:
        _clear(checkpoints)  # every run is in the results (a kill after a row, before its file went, left one)
    rows = [new.get(k) or _typed(plan.done[k], c, b) for c in plan.configs for b in plan.sweep.blocks
            for k in [_key(b, c, keys)]]
    return SweepReport(plan.path, meta_path(plan.path), rows, ran=len(new), skipped=plan.rows_skipped)


def checkpoint_folder(path: Path) -> Path:
    """The folder where a sweep's runs in progress keep their checkpoints: `<results file>.ckpt/`."""
    return path.with_name(path.name + ".ckpt")


def _clear(folder: Path) -> None:
    """Remove a checkpoint folder's checkpoints (and temporary files) and the folder, when that empties it."""
    if not folder.is_dir():
        return
    for file in folder.iterdir():
        if file.suffix in (".pt", ".tmp") and file.is_file():
            file.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # something else is in it: not ours to remove
        pass


def training_threads(plan: SweepPlan, execution: Execution) -> int | None:
    """Intra-op threads for each training run of a sweep that trains networks on data (None: the default).

    A process per run, up to the cores, each with one thread: two one-thread processes beat one two-thread
    process for several runs (docs/data.md). But where the whole sweep has fewer training runs than cores, or
    fewer worker processes are asked for, each process takes its share of the cores rather than one thread
    beside idle ones. The count follows from the whole sweep and the flags, never from what is left to run, so
    a resumed sweep computes with the threads it started with (bit for bit). Not on a cluster (its workers'
    threads are its own) or a GPU."""
    runs = sum(len(plan.sweep.blocks) for c in plan.configs if c.trains_on_data)
    if not runs or execution.threads or execution.scheduler or execution.scheduler_file or execution.device != "cpu":
        return None
    cores = available_cores()
    processes = min(execution.workers or cores, runs)
    return cores // processes if processes < cores else None


def _open_results(plan: SweepPlan, files: ExitStack) -> tuple[ResultsFile, list[tuple[SideFile, ResultsFile]]]:
    """Open and lock the results CSV and its side files (per-layer, curve), check them, and only then start
    them (empty them when fresh, cut a torn line, write headers): a refused sweep leaves every file as it
    was, and removes the files it created. Returns the results file and (SideFile, its ResultsFile) pairs."""
    opened = []
    try:
        opened.append(ResultsFile(plan.path, plan.columns.results))
        if opened[0].size != (plan.seen_size or 0):
            raise ResultsError(f"{plan.path}: changed since this sweep read it (another process wrote it?); "
                               "run the command again")
        if plan.side_files and not plan.fresh:  # runs whose side rows are missing run again
            opened[0].keep(set(plan.done), plan.columns.config)
        for side in plan.side_files:
            if not plan.fresh:  # rows of runs that never reached the results CSV (a kill between the two) run again
                keep_rows(side.path, side.columns, plan.columns.config, set(plan.done))
            opened.append(ResultsFile(side.path, side.columns))
    except ResultsError:
        for f in opened:
            f.abandon()
        raise
    for f in opened:
        files.enter_context(f.start(fresh=plan.fresh))
    return opened[0], list(zip(plan.side_files, opened[1:]))


def run_one(values: dict[str, Any], blocks: Any, execution: Execution = Execution(), *,
            curve: str | os.PathLike[str] | None = None, curve_every: int = 0,
            on_step: Callable[[int, int], None] | None = None) -> list[RunResult]:
    """Check and run one configuration (axis -> value) on the named blocks; returns one RunResult each.

    With `curve`, also write the run's curve file there (steps 0, 1, 2, 4, ... and the last; every
    `curve_every`-th as well), atomically. `on_step(s, steps)` hears of each training step as it is done.
    """
    config = parse_run(values, source="cnnexp run")
    blocks = parse_blocks(list(blocks), source="cnnexp run")
    _check_curve_every(curve_every)
    if curve is not None and Path(curve).is_dir():
        raise ResultsError(f"{curve}: is a directory; {param('curve')} takes a CSV file path")
    check_memory([config], len(blocks), "cnnexp run")
    use_threads(execution.threads or DEFAULT_THREADS)
    [unit] = plan_units([Task(config, blocks)], engine=execution.engine, device=execution.device,
                        curve=curve_every if curve is not None else None)
    heard = STEP_PROGRESS.set(on_step)
    try:
        [results] = execute([unit])
    finally:
        STEP_PROGRESS.reset(heard)
    if curve is not None:
        write_table(Path(curve), columns_of(True).curve, [r for result in results for r in result.curve_rows()])
    return results


@dataclass(frozen=True)
class Pair:
    """One configuration with each block's metrics side by side and the residual/plain ratios (or, from
    `over_seeds`, a configuration's mean over seeds with the spread)."""

    config: dict[str, Any]
    metrics: dict[str, dict[str, float]]  # block -> metric -> value (or mean over seeds)
    ratios: dict[str, float]  # metric -> residual / plain (only when both blocks ran)
    spread: dict[str, dict[str, float]] = field(default_factory=dict)  # block -> metric -> std / |mean| over seeds
    seeds: int = 1


def side_by_side(rows: list[dict[str, Any]]) -> list[Pair]:
    """Group result rows by configuration, in first-seen order, putting the blocks side by side.

    The training axes and metrics are left out unless a row trains (so the study at init looks as it did);
    a steps_to_fit of None (never reached) is NaN here."""
    training = any(row.get(a, AXIS[a].default) != AXIS[a].default for row in rows for a in TRAINING_AXES)
    net = any(row.get("net") is not None for row in rows)
    data = any(str(row.get("data", "random")) != "random" for row in rows)
    axes = [c for c in columns_of(training, net, data).config if c != "block"]
    trained = data and any(int(row.get("epochs") or 0) > 0 for row in rows)
    shown = DATA_PAIR_METRICS if trained else NET_METRICS if net else METRICS if training else STEP_METRICS
    grouped: dict[tuple[Any, ...], Pair] = {}
    for row in rows:
        config = {c: row[c] for c in axes}
        pair = grouped.setdefault(tuple(config.values()), Pair(config, {}, {}))
        values = {**row, **({"train_error": _error(row.get("train_acc")), "test_error": _error(row.get("test_acc"))}
                            if trained else {})}
        pair.metrics[row["block"]] = {m: math.nan if values.get(m) is None else values[m] for m in shown}
    for pair in grouped.values():
        top, bottom = RATIO_BLOCKS
        if {top, bottom} <= pair.metrics.keys():
            for m in FINDING_METRICS:
                if m in shown:
                    pair.ratios[m] = ratio(pair.metrics[top][m], pair.metrics[bottom][m])
    return list(grouped.values())


# What a pair of a sweep that trains networks on data holds (the table shows some): the final errors (the last
# evaluation pass) and losses per block side by side, and how soon the training set was fit.
DATA_PAIR_METRICS: tuple[str, ...] = ("train_error", "test_error", "train_loss", "test_loss", "epochs_to_fit")


def _error(accuracy: float | None) -> float | None:
    return None if accuracy is None else 1 - accuracy


def over_seeds(pairs: list[Pair]) -> list[Pair]:
    """The configurations apart from their seed, each with its metrics' mean over seeds, their relative
    standard deviation (ddof=1) and the ratio of the means; the pairs themselves when each has one seed."""
    groups: dict[tuple[Any, ...], list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(tuple(v for k, v in pair.config.items() if k != "seed"), []).append(pair)
    if all(len(g) == 1 for g in groups.values()):
        return pairs
    merged = []
    for group in groups.values():
        config = {k: v for k, v in group[0].config.items() if k != "seed"}
        metrics: dict[str, dict[str, float]] = {}
        spread: dict[str, dict[str, float]] = {}
        for block in dict.fromkeys(b for p in group for b in p.metrics):
            for m in next(p.metrics[block] for p in group if block in p.metrics):
                values = [p.metrics[block][m] for p in group if block in p.metrics]
                mean = seeds.mean(values, skip_nan=False)  # a run that never fit makes its mean NaN, as shown
                metrics.setdefault(block, {})[m] = mean
                if len(values) > 1 and mean != 0 and math.isfinite(mean):
                    spread.setdefault(block, {})[m] = seeds.std(values, skip_nan=False) / abs(mean)
        top, bottom = RATIO_BLOCKS
        ratios = ({m: ratio(metrics[top][m], metrics[bottom][m]) for m in FINDING_METRICS if m in metrics[top]}
                  if {top, bottom} <= metrics.keys() else {})
        merged.append(Pair(config, metrics, ratios, spread, len(group)))
    return merged


def ratio(a: float, b: float) -> float:
    """a / b, with a nonzero a over a zero b as inf and 0/0 as nan (no ZeroDivisionError)."""
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.inf
    return a / b


def largest_configs(sweep: Sweep) -> list[RunConfig]:
    """The configurations among which the one `unit_bytes` finds largest is: the largest d, batch and depth
    with each dtype (a grid holds every combination), without enumerating the sweep."""
    axes = sweep.axes
    if sweep.net:  # each network on each input and data set, at the largest batch and epochs
        first = {a: v[0] for a, v in axes.items()} | {"batch": max(axes["batch"]), "epochs": max(axes["epochs"])}
        return [resolved(RunConfig(**{**first, "net": net, "input": given, "data": data, "dtype": dtype}))
                for net in axes["net"] for given in axes["input"] for data in axes["data"] for dtype in axes["dtype"]]
    biggest = {a: max(axes[a]) for a in ("d", "batch", "depth")}
    return [RunConfig(**{**{a: v[0] for a, v in axes.items()}, **biggest, "dtype": dtype}) for dtype in axes["dtype"]]


def check_memory(configs: list[RunConfig], n_blocks: int, source: str, workers: int = 1,
                 count: int | None = None) -> None:
    """Refuse configurations of which the largest would not fit in the memory available now, in each of the
    local worker processes at once (a unit holds the draw of up to DRAW_BYTES and stacks of up to UNIT_BYTES of
    the sweep's `count` configurations)."""
    biggest = max(configs, key=lambda c: unit_bytes(c, n_blocks))
    one = unit_bytes(biggest, n_blocks)
    if biggest.net is not None:  # a unit holds one configuration of a network
        refuse_beyond_memory(workers * one, f"{source}: the configuration net {biggest.net}, input {biggest.input}, "
                             f"batch={biggest.batch}", "lower batch" + (", or --workers" if workers > 1 else ""))
        return
    per_worker = max(one, min(UNIT_BYTES + DRAW_BYTES, one * (count or len(configs))))
    refuse_beyond_memory(workers * per_worker,
                         f"{source}: the configuration d={biggest.d}, batch={biggest.batch}, depth={biggest.depth}",
                         "lower d, batch or depth" + (", or --workers" if workers > 1 else ""))


# --------------------------------------------------------------------------------------------------


def _check_curve_every(curve_every: int) -> None:
    if curve_every < 0:
        raise ConfigError(f"{param('curve_every')} {curve_every}: must be 0 (steps 0, 1, 2, 4, ... and the last) or "
                          "more")


def _key(block: str, config: RunConfig, key_columns: tuple[str, ...] = CONFIG_COLUMNS) -> tuple[Any, ...]:
    """The row key of a block on a configuration (as `row_key` makes it from a row)."""
    return (block, *(format_value(getattr(config, c)) for c in key_columns[1:]))


def _typed(text_row: dict[str, str], config: RunConfig, block: str) -> dict[str, Any]:
    """A row read back from the CSV, with the numbers of its configuration and of the metrics it has (an
    empty steps_to_fit is None, as the engines give it)."""
    metrics = {m: (float(text) if text != "" else None) for m in ALL_METRICS
               if (text := text_row.get(m)) is not None}
    return {"block": block, **config_dict(config), **metrics}


def _runs_without(side: SideFile, done: dict[tuple[Any, ...], dict[str, Any]], side_rows: list[dict[str, str]],
                  key_columns: tuple[str, ...], curve_every: int, sweep: Sweep) -> set[tuple[Any, ...]]:
    """The runs in the results CSV that lack some of their rows in a side file (one per block index, or
    one per recorded step; of a network, one per layer and block that runs)."""
    net_rows = _net_row_counts(sweep) if sweep.net else None
    counts: dict[tuple[Any, ...], int] = {}
    for row in side_rows:
        key = row_key(row, key_columns)
        counts[key] = counts.get(key, 0) + 1
    def expected(row: dict[str, Any]) -> int:
        if side.flag == param("per_layer"):
            return int(row["depth"]) if net_rows is None else net_rows[row["block"], row["net"], row["bn"]]
        if sweep.on_data:  # a row per epoch
            return int(row["epochs"])
        return len(curve_steps(int(row.get("steps", 0)), curve_every))

    return {key for key, row in done.items() if counts.get(key, 0) != expected(row)}


def _net_layouts(sweep: Sweep) -> list[tuple[NetSpec, tuple[int, ...], bool, bool]]:
    """(net, an input, bn, skips) of every network layout a sweep of whole networks runs."""
    given = [parse_input(v) for v in sweep.axes["input"] if v]
    return [(net, given[0] if given else net.input, bn == "on", block != "plain") for net in sweep.axes["net"]
            for bn in sweep.axes["bn"] for block in sweep.blocks]


def _rows_of(net: NetSpec, shape: tuple[int, ...], bn: bool, skips: bool) -> list[Row]:
    """The per-layer rows of a network's runs (their count and paths do not depend on the input's size)."""
    return layer_rows(lay_out(net.items, shape, skips=skips, bn=bn))


def _net_row_counts(sweep: Sweep) -> dict[tuple[str, str, str], int]:
    """(block, net, bn) as the CSV writes them -> the per-layer rows of such a run."""
    return {(("residual" if skips else "plain"), str(net), "on" if bn else "off"): len(_rows_of(net, shape, bn, skips))
            for net, shape, bn, skips in _net_layouts(sweep)}


def _resumable_rows(path: Path, sweep: Sweep, meta: dict[str, Any] | None, cols: Columns,
                    extend: bool = False) -> dict[tuple[Any, ...], dict[str, str]]:
    """The rows a resume keeps, each verified: it parses, its key is one of this sweep's, no key twice, every
    number as cnnexp writes it (a hand edit is refused, naming its line, before anything builds on it)."""
    if not read_rows(path, cols.results):
        return {}
    if meta is None:
        raise ResultsError(f"{path}: holds results but has no provenance file {meta_path(path).name}, so it "
                           f"cannot be resumed safely; use {param('overwrite')} to start it afresh or {param('out')} "
                           "for another file")
    grows = extends(meta.get("sweep"), sweep.to_dict())
    if meta.get("fingerprint") != fingerprint(sweep.to_dict()) and not (extend and grows):
        differs = _what_differs(meta.get("sweep"), sweep.to_dict())
        if grows:
            differs += f"; {param('extend')} keeps its rows and runs only the new ones"
        raise ResultsError(f"{path}: was written by a different sweep definition"
                           f"{f' ({differs})' if differs else ''} (see "
                           f"{(existing_meta_path(path) or meta_path(path)).name}); "
                           f"use {param('overwrite')} to start it afresh or {param('out')} for another file")
    rows = read_rows(path, cols.results, keys=_key_values(sweep, cols.config), numbers=_numbers(cols.results))
    return {row_key(r, cols.config): r for r in rows}


def extends(before: Any, now: dict[str, Any]) -> bool:
    """Whether a sweep definition only adds values to the one a file records (same name, axes and networks;
    every earlier block and value still there): its rows are rows of this sweep."""
    if not isinstance(before, dict) or before == now:
        return False
    if {k: v for k, v in before.items() if k not in ("blocks", "sweep")} != \
            {k: v for k, v in now.items() if k not in ("blocks", "sweep")}:
        return False
    old, new = before.get("sweep") or {}, now.get("sweep") or {}
    if set(old) != set(new) or not set(before.get("blocks", [])) <= set(now.get("blocks", [])):
        return False
    return all(_values(old[k]) <= _values(new[k]) for k in old)


def _values(values: Any) -> set[str]:
    return {json.dumps(v) for v in (values if isinstance(values, list) else [values])}


def _what_differs(before: Any, now: dict[str, Any], most: int = 3) -> str:
    """What a sweep definition changed against the one a file records, e.g. "seed: file [0, 1, 2], now [0, 1,
    2, 3, 4]" (at most `most` keys; empty when the file records none)."""
    if not isinstance(before, dict):
        return ""
    def flat(d: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in d.items() if k != "sweep"}, **(d.get("sweep") or {})}

    old, new = flat(before), flat(now)
    changed = [k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)]

    def shown(value: Any) -> str:
        if value is None:
            return "absent"
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."

    parts = [f"{k}: file {shown(old.get(k))}, now {shown(new.get(k))}" for k in changed[:most]]
    return "; ".join(parts) + (f"; and {len(changed) - most} more" if len(changed) > most else "")


def _numbers(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The metric columns that always hold a float (steps_to_fit is empty when the fit was never reached; in a
    file of networks on data, each row fills either the metrics at init or those of training)."""
    if "data" in columns:
        return ()
    return tuple(c for c in columns if c in METRICS and c != "steps_to_fit")


def _key_values(sweep: Sweep, key_columns: tuple[str, ...]) -> dict[str, Container[str]]:
    """Key column -> the texts a row of this sweep holds there, as the writer writes them."""
    values: dict[str, Container[str]] = {"block": set(sweep.blocks)}
    values |= {a: {format_value(v) for v in vs} for a, vs in sweep.axes.items() if a in key_columns}
    if sweep.net:  # the input the runs used (the net file's, unless set) and the empty small_init of other inits
        values["input"] = {config.input for config in largest_configs(sweep)}
        values["small_init"] = {format_value(None if init != "small" else v)
                                for init in sweep.axes["init"] for v in sweep.axes["small_init"]}
    return values


def _side_key_values(sweep: Sweep, side: SideFile, cols: Columns, curve_every: int) -> dict[str, Container[str]]:
    """As `_key_values`, for a side file's rows (with a per-layer file's block_index, a curve's step)."""
    values = _key_values(sweep, cols.config)
    if side.flag == param("per_layer") and sweep.net:
        values["path"] = {row.path for layout in _net_layouts(sweep) for row in _rows_of(*layout)}
    elif side.flag == param("per_layer"):
        values["block_index"] = {str(i) for i in range(max(sweep.axes["depth"]))}
    elif sweep.on_data:
        values["epoch"] = {str(e) for e in range(1, max(sweep.axes["epochs"]) + 1)}
    else:
        values["step"] = {str(s) for steps in sweep.axes["steps"] for s in curve_steps(steps, curve_every)}
    return values


def _provenance(plan: SweepPlan, command: str, started: str, threads: int,
                where: dict[str, Any]) -> dict[str, Any]:
    import torch

    previous = plan.meta if not plan.fresh else None
    dtypes = list(plan.sweep.axes["dtype"])
    invocation = {"command": command, "started": started, "finished": None,
                  "rows_to_run": plan.rows_to_run, "rows_skipped": plan.rows_skipped}
    environment = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": metadata.version("numpy"),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,  # the runs' own dtype (or dtypes)
        "engine": plan.execution.engine,
        **device_info(plan.execution.device),
        "threads": threads,
        **where,
    }
    if previous and "environment" in previous and not plan.rows_to_run:
        environment = previous["environment"]  # nothing runs now: the rows are still the earlier runs'
    extends = list((previous or {}).get("extends", []))  # the earlier definitions an --extend grew from
    if previous is not None and previous.get("fingerprint") != fingerprint(plan.sweep.to_dict()):
        extends.append(previous.get("sweep"))
    return {
        **({"extends": extends} if extends else {}),
        "cnnexp": __version__,
        "fingerprint": fingerprint(plan.sweep.to_dict()),
        "sweep": plan.sweep.to_dict(),
        "columns": list(plan.columns.results),
        "per_layer": str(plan.per_layer) if plan.per_layer is not None else None,
        **({"curve": str(plan.curve), "curve_every": plan.curve_every} if plan.curve is not None else {}),
        **({"training_definition": DATA_TRAINING_DEFINITION if plan.sweep.on_data else TRAINING_DEFINITION}
           if plan.sweep.training or plan.curve or plan.sweep.on_data else {}),
        **({"data_files": {str(d): d.path for d in plan.sweep.axes["data"] if d.path}} if plan.sweep.on_data else {}),
        **({"net_files": {str(net): net_file(net) for net in plan.sweep.axes["net"]}} if plan.sweep.net else {}),
        "command": command,
        "started": started,
        "finished": None,
        "environment": environment,
        "invocations": [*(previous or {}).get("invocations", []), invocation],
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
