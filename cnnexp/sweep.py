"""Run a sweep: plan which rows are still missing, execute them, append each row as it arrives.

    >>> from cnnexp.config import load_sweep                          # doctest: +SKIP
    >>> plan = plan_sweep(load_sweep("configs/init.yaml"))            # reads, writes nothing
    >>> plan.rows_total, plan.rows_skipped
    (6, 0)
    >>> report = run_sweep(plan)                                      # writes results/init.csv
    >>> pairs = side_by_side(report.rows)                             # plain and residual, with ratios

Resuming: the rows already in the CSV are skipped, keyed by their configuration columns. A CSV is only
resumed by the sweep that wrote it (same fingerprint in its provenance file); any other is refused unless
`overwrite` starts it afresh.
"""
from __future__ import annotations

import itertools
import math
import os
import platform
import socket
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Iterator

from cnnexp import __version__
from cnnexp.config import Sweep, Task, config_dict, expand, parse_blocks, parse_run
from cnnexp.engine import (UNIT_BYTES, Execution, device_info, execute, open_executor, plan_units, run_cost,
                           unit_bytes, use_threads, worker_count)
from cnnexp.errors import Interrupted, ResultsError
from cnnexp.memory import refuse_beyond_memory
from cnnexp.results import (ResultsFile, fingerprint, keep_rows, meta_path, read_meta, read_rows, row_key,
                            write_meta)
from cnnexp.schema import COLUMNS, CONFIG_COLUMNS, FINDING_METRICS, LAYER_COLUMNS, METRICS, RATIO_BLOCKS



@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will do: the tasks still to run and the rows already in its CSV."""

    sweep: Sweep
    path: Path
    configs: list  # every RunConfig of the sweep, in grid order
    tasks: list[Task]  # the configurations with blocks still missing from the CSV
    done: dict[tuple, dict[str, str]]  # row key -> row text, for the rows already in the CSV
    fresh: bool  # the CSV is (re)started from an empty file
    per_layer: Path | None = None  # the per-layer CSV, when asked for
    seen_size: int | None = None  # the CSV's size when planned (None: absent), checked again before writing
    meta: dict | None = None  # the provenance of the rows already there
    execution: Execution = Execution()  # engine, device, workers, threads, scheduler
    warnings: tuple[str, ...] = ()  # what the user should know before the run starts (printed by the CLI)

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
class SweepReport:
    """A finished sweep: where its files are and every row of it (numbers, in grid order)."""

    path: Path
    meta_path: Path
    rows: list[dict]
    ran: int
    skipped: int


def default_path(sweep: Sweep) -> Path:
    return Path("results") / f"{sweep.name}.csv"


def plan_sweep(
    sweep: Sweep,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    per_layer: str | os.PathLike | None = None,
    execution: Execution = Execution(),
) -> SweepPlan:
    """Decide what a sweep has left to run, reading (never writing) its results files.

    Args:
        sweep: the checked sweep.
        out: the results CSV (default results/<name>.csv).
        overwrite: start the results afresh instead of resuming them.
        per_layer: also write one row per run and block index to this CSV.
        execution: engine, device, workers, threads and scheduler for the runs.

    Raises:
        ConfigError: a configuration needs more memory than the machine has.
        ResultsError: the results file belongs to another sweep definition (and `overwrite` is not set),
            is damaged, or would be resumed with another thread count.
    """
    path = Path(out) if out is not None else default_path(sweep)
    configs = expand(sweep)
    check_memory(configs, len(sweep.blocks), sweep.name, execution.workers or 1)
    per_layer = Path(per_layer) if per_layer is not None else None
    for p, flag in ((path, "--out"), (per_layer, "--per-layer")):
        if p is not None and p.is_dir():
            raise ResultsError(f"{p}: is a directory; {flag} takes a CSV file path")
    if per_layer is not None and per_layer.resolve() in (path.resolve(), meta_path(path).resolve()):
        raise ResultsError(f"{per_layer}: --per-layer must name a file of its own, not the results CSV or its "
                           "provenance")
    meta = None if overwrite else read_meta(path)
    done = {} if overwrite else _resumable_rows(path, sweep, meta)
    if per_layer is not None and not overwrite:
        layer_rows = read_rows(per_layer, LAYER_COLUMNS)  # refuses a file that is not a per-layer CSV
        if done and not layer_rows:
            raise ResultsError(f"{path}: already holds {len(done)} rows without per-layer rows in {per_layer}; "
                               "ask for --per-layer from the start, or use --overwrite to start afresh")
    tasks = []
    for config in configs:
        missing = tuple(b for b in sweep.blocks if _key(b, config) not in done)
        if missing:
            tasks.append((config, missing))
    warnings = _execution_changes(path, meta, execution) if done and tasks else ()
    fresh = overwrite or not done
    seen_size = path.stat().st_size if path.exists() else None
    return SweepPlan(sweep, path, configs, tasks, done, fresh, per_layer, seen_size, meta, execution, warnings)


def _execution_changes(path: Path, meta: dict | None, execution: Execution) -> tuple[str, ...]:
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
    on_result: Callable[[object], None] | None = None,
) -> SweepReport:
    """Execute a plan: write the provenance, then append each result to the CSV as it arrives.

    Units run in this process, in local worker processes or on a Dask cluster (plan.execution); only this
    process writes files. A finished sweep's files are in grid order whatever order the rows arrived in.

    Args:
        plan: from `plan_sweep`.
        command: the command line to record (default: this process's argv).
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
    threads = use_threads(execution.threads)
    workers = worker_count(execution, sum(run_cost(config, len(blocks)) for config, blocks in plan.tasks))
    started = _now()
    command = command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    new: dict[tuple, dict] = {}
    with ExitStack() as files:
        # the executor first: a cluster that does not answer is refused before any file is touched
        executor, where = files.enter_context(open_executor(execution, workers))
        # with several workers (local processes, or a cluster's threads): smaller units, largest first, to balance
        units = plan_units(plan.tasks, engine=execution.engine, device=execution.device, layers=layers,
                           workers=where.get("threads_total", workers))
        csv_file, layer_file = _open_results(plan, files)
        meta = _provenance(plan, command, started, threads, where)
        write_meta(plan.path, meta)  # before anything runs, so every row has its provenance
        try:
            for results in execute(units, executor, where.get("window", 4)):
                for result in results:
                    row = result.row()
                    if layer_file is not None:
                        for layer_row in result.layer_rows():  # first, so a run in the results CSV is complete
                            layer_file.append(layer_row)
                    csv_file.append(row)
                    new[row_key(row, CONFIG_COLUMNS)] = row
                    if on_result is not None:
                        on_result(result)
            order = {_key(b, c): i for i, (c, b) in enumerate(itertools.product(plan.configs, plan.sweep.blocks))}
            csv_file.finish(order, CONFIG_COLUMNS)
            if layer_file is not None:
                layer_file.finish(order, CONFIG_COLUMNS)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: {len(plan.done) + len(new)} of {plan.rows_total} rows written to "
                              f"{plan.path}; rerun the same command to resume") from None
        except OSError as e:  # the disk filled, a file-size limit, the folder vanished
            raise ResultsError(f"{e.filename or plan.path}: cannot write: {e.strerror or e}; "
                               f"{len(plan.done) + len(new)} of {plan.rows_total} rows are safe in {plan.path}; "
                               "make room and rerun the same command to resume") from None
    meta["finished"] = meta["invocations"][-1]["finished"] = _now()
    write_meta(plan.path, meta)
    rows = [new.get(k) or _typed(plan.done[k], c, b) for c in plan.configs for b in plan.sweep.blocks
            for k in [_key(b, c)]]
    return SweepReport(plan.path, meta_path(plan.path), rows, ran=len(new), skipped=plan.rows_skipped)


def _open_results(plan: SweepPlan, files: ExitStack):
    """Open and lock the results CSV and the per-layer CSV, check them, and only then start them (empty
    them when fresh, cut a torn line, write headers): a refused sweep leaves every file as it was, and
    removes the files it created."""
    opened = []
    try:
        opened.append(ResultsFile(plan.path, COLUMNS))
        if opened[0].size != (plan.seen_size or 0):
            raise ResultsError(f"{plan.path}: changed since this sweep read it (another process wrote it?); "
                               "run the command again")
        if plan.per_layer is not None:
            if not plan.fresh:  # rows of runs that never reached the results CSV (a kill between the two) run again
                keep_rows(plan.per_layer, LAYER_COLUMNS, CONFIG_COLUMNS, set(plan.done))
            opened.append(ResultsFile(plan.per_layer, LAYER_COLUMNS))
    except ResultsError:
        for f in opened:
            f.abandon()
        raise
    for f in opened:
        files.enter_context(f.start(fresh=plan.fresh))
    return opened[0], (opened[1] if len(opened) > 1 else None)


def run_one(values: dict, blocks, execution: Execution = Execution()) -> list:
    """Check and run one configuration (axis -> value) on the named blocks; returns one RunResult each."""
    config = parse_run(values, source="cnnexp run")
    blocks = parse_blocks(list(blocks), source="cnnexp run")
    check_memory([config], len(blocks), "cnnexp run")
    use_threads(execution.threads)
    [unit] = plan_units([(config, blocks)], engine=execution.engine, device=execution.device)
    [results] = execute([unit])
    return results


@dataclass(frozen=True)
class Pair:
    """One configuration with each block's metrics side by side and the residual/plain ratios (or, from
    `over_seeds`, a configuration's mean over seeds with the spread)."""

    config: dict
    metrics: dict[str, dict[str, float]]  # block -> metric -> value (or mean over seeds)
    ratios: dict[str, float]  # metric -> residual / plain (only when both blocks ran)
    spread: dict[str, dict[str, float]] = field(default_factory=dict)  # block -> metric -> std / |mean| over seeds
    seeds: int = 1


def side_by_side(rows: list[dict]) -> list[Pair]:
    """Group result rows by configuration, in first-seen order, putting the blocks side by side."""
    grouped: dict[tuple, Pair] = {}
    for row in rows:
        config = {c: row[c] for c in CONFIG_COLUMNS if c != "block"}
        pair = grouped.setdefault(tuple(config.values()), Pair(config, {}, {}))
        pair.metrics[row["block"]] = {m: row[m] for m in METRICS}
    for pair in grouped.values():
        top, bottom = RATIO_BLOCKS
        if {top, bottom} <= pair.metrics.keys():
            for m in FINDING_METRICS:
                pair.ratios[m] = ratio(pair.metrics[top][m], pair.metrics[bottom][m])
    return list(grouped.values())


def over_seeds(pairs: list[Pair]) -> list[Pair]:
    """The configurations apart from their seed, each with its metrics' mean over seeds, their relative
    standard deviation (ddof=1) and the ratio of the means; the pairs themselves when each has one seed."""
    groups: dict[tuple, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(tuple(v for k, v in pair.config.items() if k != "seed"), []).append(pair)
    if all(len(g) == 1 for g in groups.values()):
        return pairs
    merged = []
    for group in groups.values():
        config = {k: v for k, v in group[0].config.items() if k != "seed"}
        metrics, spread = {}, {}
        for block in dict.fromkeys(b for p in group for b in p.metrics):
            for m in METRICS:
                values = [p.metrics[block][m] for p in group if block in p.metrics]
                mean = math.fsum(values) / len(values)
                metrics.setdefault(block, {})[m] = mean
                if len(values) > 1 and mean != 0 and math.isfinite(mean):
                    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
                    spread.setdefault(block, {})[m] = std / abs(mean)
        top, bottom = RATIO_BLOCKS
        ratios = ({m: ratio(metrics[top][m], metrics[bottom][m]) for m in FINDING_METRICS}
                  if {top, bottom} <= metrics.keys() else {})
        merged.append(Pair(config, metrics, ratios, spread, len(group)))
    return merged


def ratio(a: float, b: float) -> float:
    """a / b, with a nonzero a over a zero b as inf and 0/0 as nan (no ZeroDivisionError)."""
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.inf
    return a / b


def check_memory(configs: list, n_blocks: int, source: str, workers: int = 1) -> None:
    """Refuse configurations of which the largest would not fit in the memory available now, in each of the
    local worker processes at once (a unit holds up to UNIT_BYTES of configurations)."""
    biggest = max(configs, key=lambda c: unit_bytes(c, n_blocks))
    one = unit_bytes(biggest, n_blocks)
    per_worker = max(one, min(UNIT_BYTES, one * len(configs)))
    refuse_beyond_memory(workers * per_worker,
                         f"{source}: the configuration d={biggest.d}, batch={biggest.batch}, depth={biggest.depth}",
                         "lower d, batch or depth" + (", or --workers" if workers > 1 else ""))


# --------------------------------------------------------------------------------------------------


def _key(block: str, config) -> tuple:
    return row_key({"block": block, **config_dict(config)}, CONFIG_COLUMNS)


def _typed(text_row: dict[str, str], config, block: str) -> dict:
    """A row read back from the CSV, with the numbers of its configuration and metrics."""
    return {"block": block, **config_dict(config), **{m: float(text_row[m]) for m in METRICS}}


def _resumable_rows(path: Path, sweep: Sweep, meta: dict | None) -> dict[tuple, dict[str, str]]:
    rows = read_rows(path, COLUMNS)
    if not rows:
        return {}
    if meta is None:
        raise ResultsError(f"{path}: holds results but has no provenance file {meta_path(path).name}, so it "
                           "cannot be resumed safely; use --overwrite to start it afresh or --out for another file")
    if meta.get("fingerprint") != fingerprint(sweep.to_dict()):
        raise ResultsError(f"{path}: was written by a different sweep definition (see {meta_path(path).name}); "
                           "use --overwrite to start it afresh or --out for another file")
    return {row_key(r, CONFIG_COLUMNS): r for r in rows}


def _provenance(plan: SweepPlan, command: str, started: str, threads: int, where: dict) -> dict:
    import torch

    previous = plan.meta if not plan.fresh else None
    invocation = {"command": command, "started": started, "finished": None,
                  "rows_to_run": plan.rows_to_run, "rows_skipped": plan.rows_skipped}
    return {
        "cnnexp": __version__,
        "fingerprint": fingerprint(plan.sweep.to_dict()),
        "sweep": plan.sweep.to_dict(),
        "columns": list(COLUMNS),
        "per_layer": str(plan.per_layer) if plan.per_layer is not None else None,
        "command": command,
        "started": started,
        "finished": None,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": metadata.version("numpy"),
            "platform": platform.platform(),
            "host": socket.gethostname(),
            "dtype": str(torch.get_default_dtype()).removeprefix("torch."),
            "engine": plan.execution.engine,
            **device_info(plan.execution.device),
            "threads": threads,
            **where,
        },
        "invocations": [*(previous or {}).get("invocations", []), invocation],
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
