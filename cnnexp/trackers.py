"""Results in the trackers labs use: MLflow and TensorBoard, one tracker run per results row, logged once.

    log_results("results/init.csv", "mlflow")                  # -> LogReport(logged=6, skipped=0, ...)
    log_results("results/init.csv", "tensorboard:runs/init")   # a run directory per row

The CSV stays the truth; a tracker holds a copy. Each row is one run, keyed by the sweep's name and the row's
configuration (its block and axes), so logging again, or after the sweep grew, logs only what is new. A run a
kill left unfinished is replaced; a finished run whose values differ from the row is reported, never
overwritten.

- MLflow (`mlflow`, `mlflow:URI`): an experiment named after the sweep; per row a run whose params are the
  configuration columns (as the CSV writes them) and whose metrics are the row's (an empty cell is no metric);
  curve rows as metric histories `curve/<metric>` at their step (or epoch); per-layer rows as metrics
  `layer/<block_index or path>/<metric>`; the results CSV, its provenance and its figures (results/<name>*.png)
  as artifacts of a parent run for the sweep. Default store: `sqlite:///<results>.mlflow.db` beside the
  results, no server needed.
- TensorBoard (`tensorboard:DIR`): a run directory per row, named by its configuration, holding its scalars (the
  row's metrics at step 0, `curve/<metric>` over steps, `layer/<...>/<metric>`) and the HParams plugin's
  summaries, so the sweep is a table of hyperparameters against metrics; a file `cnnexp-row.json` written last
  marks the run complete.

The trackers are optional extras (`pip install 'cnnexp[mlflow]'`, `'cnnexp[tensorboard]'`), imported only here.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cnnexp.errors import ConfigError, ResultsError
from cnnexp.paths import check_input
from cnnexp.results import existing_meta_path, format_value, read_meta, read_rows
from cnnexp.schema import ALL_METRICS, Columns

SCHEMES = ("mlflow", "tensorboard")
ANSWER_SECONDS = 5  # a tracking server that does not answer in this long is refused (MLflow retries for minutes)
KEY_TAG = "cnnexp.key"  # the tag (MLflow) that names a row's run: the sweep and the row's configuration
VALUES_TAG = "cnnexp.values"  # the tag that holds a hash of everything a run logged (to tell a changed row)
MARKER = "cnnexp-row.json"  # a TensorBoard run directory's last file: the row it holds, complete


@dataclass(frozen=True)
class Record:
    """One results row as a tracker logs it: its configuration (column -> the CSV's text), its metrics (column
    -> float; empty cells left out), and its curve and per-layer rows."""

    config: dict[str, str]
    metrics: dict[str, float]
    curve: tuple[dict[str, str], ...] = ()
    layers: tuple[dict[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The run's name: its configuration, e.g. "block=plain,d=256,small_init=0.01,seed=0"."""
        return ",".join(f"{k}={v}" for k, v in self.config.items())


@dataclass
class LogReport:
    """What a log did: rows logged now, rows already there (skipped), rows whose finished run holds other
    values (conflicts, never overwritten)."""

    target: str
    logged: int = 0
    skipped: int = 0
    conflicts: list[str] = field(default_factory=list)


class Tracker(Protocol):
    """A tracker opened for one sweep: logs a record unless its run is there already."""

    description: str

    def log(self, record: Record) -> str:
        """'logged', 'skipped' (there, with the same values) or 'conflict' (there, finished, other values)."""
        ...

    def close(self, artifacts: Iterable[Path] = ()) -> None: ...


def parse_target(target: str, results: Path) -> tuple[str, str]:
    """(scheme, location) of a `--to`/`--log` target: `mlflow`, `mlflow:URI`, `tensorboard:DIR`.

    Raises:
        ConfigError: an unknown scheme, or tensorboard without a folder.
    """
    scheme, _, rest = target.partition(":")
    if scheme not in SCHEMES:
        raise ConfigError(f"{target!r}: unknown tracker {scheme!r}; use mlflow[:TRACKING_URI] or tensorboard:DIR")
    if scheme == "tensorboard":
        if not rest:
            raise ConfigError(f"{target!r}: tensorboard needs a folder for its run directories, e.g. "
                              "tensorboard:runs")
        return scheme, rest
    return scheme, rest or f"sqlite:///{results.resolve()}.mlflow.db"


def open_tracker(target: str, results: Path, sweep: str) -> Tracker:
    """Open (and check) a tracker for the rows of `results`, a sweep named `sweep`.

    Raises:
        ConfigError: the tracker's extra is not installed, the target is unknown, unwritable, or a tracking
            server that does not answer within ANSWER_SECONDS.
    """
    scheme, where = parse_target(target, results)
    if scheme == "tensorboard":
        return TensorBoardTracker(Path(where), sweep)
    return MlflowTracker(where, sweep)


# --------------------------------------------------------------------------------------------------
# Reading a results file


def records(path: Path) -> tuple[str, list[Record], list[Path]]:
    """The sweep's name, a Record per row of a results CSV (with its curve and per-layer rows, when the
    provenance names such files and they exist), and the files to keep as artifacts.

    Raises:
        ResultsError: the file is missing or not a results CSV.
    """
    path = Path(path)
    rows = _read_csv(path)
    meta = read_meta(path) or {}
    sweep = str((meta.get("sweep") or {}).get("name") or path.stem)
    if not rows:
        raise ResultsError(f"{path}: has no rows to log")
    config_columns = [c for c in rows[0] if c not in ALL_METRICS]
    if "block" not in config_columns:
        raise ResultsError(f"{path}: not a cnnexp results file (no block column)")
    sides = {}
    for name in ("curve", "per_layer"):
        side = meta.get(name)
        if isinstance(side, str) and Path(side).is_file():
            sides[name] = _by_config(_read_csv(Path(side)), config_columns)
    found = []
    for row in rows:
        config = {c: row[c] for c in config_columns}
        key = tuple(config.values())
        metrics = {c: float(v) for c, v in row.items() if c not in config and v not in ("", None)}
        found.append(Record(config, metrics, tuple(sides.get("curve", {}).get(key, ())),
                            tuple(sides.get("per_layer", {}).get(key, ()))))
    figures = sorted(path.parent.glob(f"{path.stem}*.png")) + sorted(path.parent.glob(f"{path.stem}*.svg"))
    artifacts = [p for p in (path, existing_meta_path(path), *figures) if p is not None]
    return sweep, found, artifacts


def _read_csv(path: Path) -> list[dict[str, str]]:
    """A results CSV's complete rows as text, read as a resume reads them (`results.read_rows`: a special file
    refused unread, a last line a kill left torn ignored), under the file's own header."""
    if check_input(path) is None:
        raise ResultsError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ResultsError(f"{path}: cannot be read as CSV: {e}") from None
    return read_rows(path, tuple(header)) if header else []


def _by_config(rows: list[dict[str, str]], columns: list[str]) -> dict[tuple[str, ...], list[dict[str, str]]]:
    grouped: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(tuple(row.get(c, "") for c in columns), []).append(row)
    return grouped


def fingerprint(record: Record) -> str:
    """A hash of everything a tracker holds of a record (its configuration and every scalar, to the bit)."""
    import hashlib

    held = json.dumps([record.config, [[k, v.hex(), s] for k, v, s in series(record)]], sort_keys=True)
    return hashlib.sha256(held.encode()).hexdigest()[:32]


def series(record: Record) -> list[tuple[str, float, int]]:
    """Every scalar a tracker holds of a record, as (key, value, step): the row's metrics at step 0, the
    curve's `curve/<metric>` at its step (or epoch), the per-layer rows' `layer/<index or path>/<metric>`."""
    out = [(k, v, 0) for k, v in record.metrics.items()]
    for row in record.curve:
        step = int(row.get("step") or row.get("epoch") or 0)
        out += [(f"curve/{k}", float(v), step) for k, v in row.items()
                if k in ALL_METRICS and k not in record.config and v != ""]
    for row in record.layers:
        where = row.get("block_index") or row.get("path") or ""
        out += [(f"layer/{where}/{k}", float(v), 0) for k, v in row.items()
                if k in ALL_METRICS and v != ""]
    return out


# --------------------------------------------------------------------------------------------------
# MLflow


class MlflowTracker:
    """An MLflow experiment named after the sweep, a run per row (see the module's docstring)."""

    def __init__(self, uri: str, sweep: str):
        try:
            import logging

            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("mlflow: not installed; pip install 'cnnexp[mlflow]'") from None
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(ANSWER_SECONDS))
        self.description = f"mlflow {uri}"
        _check_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        try:
            found = self.client.get_experiment_by_name(sweep)
            self.experiment = found.experiment_id if found else self.client.create_experiment(sweep)
        except Exception as e:  # the store refused: unwritable, another program's database, a server error
            raise ConfigError(f"mlflow {uri}: cannot open the experiment {sweep!r}: {_first(e)}") from None
        self.sweep = sweep

    def _runs(self, key: str) -> list[Any]:
        escaped = key.replace("'", "\\'")
        return list(self.client.search_runs([self.experiment], filter_string=f"tags.`{KEY_TAG}` = '{escaped}'"))

    def log(self, record: Record) -> str:
        from mlflow.entities import Metric, Param, RunTag

        key = f"{self.sweep}:{record.name}"
        for run in self._runs(key):
            if run.info.status != "FINISHED":  # a kill left it half-logged: replace it
                self.client.delete_run(run.info.run_id)
                continue
            return "skipped" if run.data.tags.get(VALUES_TAG) == fingerprint(record) else "conflict"
        run = self.client.create_run(self.experiment, run_name=record.name, tags={
            KEY_TAG: key, VALUES_TAG: fingerprint(record), "cnnexp.sweep": self.sweep})
        metrics = [Metric(k, v, 0, step) for k, v, step in series(record)]
        params = [Param(k, v) for k, v in record.config.items()]
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000],
                                  params=params if not start else [], tags=[RunTag("cnnexp.rows", "1")])
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return "logged"

    def close(self, artifacts: Iterable[Path] = ()) -> None:
        files = [p for p in artifacts if p.is_file()]
        if not files:
            return
        key = f"{self.sweep}:sweep"
        for run in self._runs(key):
            self.client.delete_run(run.info.run_id)  # the sweep's files as they are now replace the last copy
        parent = self.client.create_run(self.experiment, tags={KEY_TAG: key, "cnnexp.sweep": self.sweep},
                                        run_name=f"{self.sweep} (files)")
        for p in files:
            self.client.log_artifact(parent.info.run_id, str(p))
        self.client.set_terminated(parent.info.run_id, "FINISHED")


def _check_uri(uri: str) -> None:
    """Refuse a tracking URI that cannot work: an unknown scheme, an sqlite file in a missing or unwritable
    folder, a server that does not answer within ANSWER_SECONDS."""
    import urllib.error
    import urllib.request

    scheme = uri.partition(":")[0]
    if scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ConfigError(f"mlflow {uri}: the folder {folder} does not exist or is not writable")
    elif scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=ANSWER_SECONDS).close()
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ConfigError(f"mlflow {uri}: the tracking server does not answer ({_first(e)})") from None
    else:
        raise ConfigError(f"mlflow {uri}: unknown tracking URI; use sqlite:///PATH or http(s)://HOST:PORT")


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


# --------------------------------------------------------------------------------------------------
# TensorBoard


class TensorBoardTracker:
    """A run directory per row under DIR (see the module's docstring)."""

    def __init__(self, folder: Path, sweep: str):
        try:
            from torch.utils.tensorboard import SummaryWriter  # (tensorboard's own writer underneath)
        except ImportError:
            raise ConfigError("tensorboard: not installed; pip install 'cnnexp[tensorboard]'") from None
        self.writer = SummaryWriter
        self.folder, self.sweep = folder, sweep
        self.description = f"tensorboard {folder}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"tensorboard:{folder}: cannot make the folder: {e.strerror or e}") from None
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ConfigError(f"tensorboard:{folder}: not a writable folder")

    def log(self, record: Record) -> str:
        from torch.utils.tensorboard.summary import hparams

        run = self.folder / _dirname(record.name)
        marker = run / MARKER
        held = {"config": record.config, "metrics": {k: v.hex() for k, v in record.metrics.items()},
                "values": fingerprint(record)}
        if marker.is_file():
            try:
                same = json.loads(marker.read_text()).get("values") == held["values"]
            except (OSError, ValueError, AttributeError):
                same = False
            return "skipped" if same else "conflict"
        if run.exists():  # a kill left it unfinished: write it afresh
            shutil.rmtree(run)
        with self.writer(log_dir=str(run)) as w:
            for k, v, step in series(record):
                w.add_scalar(k, v, step)
            finite = {k: v for k, v in record.metrics.items() if math.isfinite(v)}
            for summary in hparams(dict(record.config), finite):
                w.file_writer.add_summary(summary)
        tmp = run / (MARKER + ".tmp")
        tmp.write_text(json.dumps(held))
        tmp.replace(marker)
        return "logged"

    def close(self, artifacts: Iterable[Path] = ()) -> None:
        return None


def _dirname(name: str) -> str:
    """A run's directory name: its configuration, with what a file name cannot hold replaced."""
    return "".join(c if c.isalnum() or c in "=,._-+" else "_" for c in name)[:240]


# --------------------------------------------------------------------------------------------------


def log_results(path: str | os.PathLike[str], target: str) -> LogReport:
    """Log every row of a results CSV (and its curve and per-layer rows) to a tracker, each once.

    Raises:
        ConfigError: a bad target (see `open_tracker`).
        ResultsError: not a results file.
    """
    path = Path(path)
    sweep, found, artifacts = records(path)
    tracker = open_tracker(target, path, sweep)
    report = LogReport(tracker.description)
    for record in found:
        outcome = tracker.log(record)
        if outcome == "logged":
            report.logged += 1
        elif outcome == "skipped":
            report.skipped += 1
        else:
            report.conflicts.append(record.name)
    tracker.close(artifacts)
    return report


class SweepLog:
    """A sweep's rows logged as they are written (`cnnexp sweep --log`), each as `cnnexp log` would log it
    from the files: the tracker opened before the sweep starts; a failure mid-sweep stops the logging and is
    said once (the CSV stays whole; `cnnexp log` catches up later)."""

    def __init__(self, target: str, results: Path, sweep: str, columns: Columns, *, layers: bool, curve: bool):
        self.tracker: Tracker | None = open_tracker(target, results, sweep)
        self.target, self.columns, self.layers, self.curve = target, columns, layers, curve

    def add(self, result: Any) -> str | None:
        """Log one RunResult (after its row is in the CSV); returns a warning the first time logging fails."""
        if self.tracker is None:
            return None

        def text(row: dict[str, Any], columns: tuple[str, ...]) -> dict[str, str]:
            return {c: format_value(row[c]) for c in columns}  # as the CSV holds it

        row = text(result.row(), self.columns.results)
        config = {c: row[c] for c in self.columns.config}
        metrics = {c: float(v) for c, v in row.items() if c not in config and v != ""}
        curve = [text(r, self.columns.curve) for r in result.curve_rows()] if self.curve else []
        layers = [text(r, self.columns.layers) for r in result.layer_rows()] if self.layers else []
        try:
            self.tracker.log(Record(config, metrics, tuple(curve), tuple(layers)))
        except Exception as e:  # a tracker that fails never stops the sweep
            self.tracker = None
            return (f"{self.target}: logging stopped ({type(e).__name__}: {_first(e)}); every row is in the CSV: "
                    "run cnnexp log to catch up")
        return None
