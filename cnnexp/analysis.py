"""Reading results files with pandas: load, compare two, summarise over seeds.

    from cnnexp.analysis import load_results, compare, summary
    df = load_results("results/init.csv")       # every row; provenance in df.attrs
    summary(df, ["x_grad_norm"])                # mean, std, sem, n over seeds (all metrics without a list)
    c = compare("results/init.csv", "other/init.csv", rtol=1e-6)   # atol: a floor per metric (default_floor)
    c.agree, c.by_metric                        # False, the largest relative difference per metric
    compare("f32.csv", "f64.csv", ignore=["dtype"])  # pair rows that differ only in dtype

Which columns are which comes from the file and the schema, never from a fixed list: a metric is a column
named in `schema.ALL_METRICS` (the results CSV's and the per-layer CSV's), and every other column (block, the
axes, and any axis added later) describes the configuration (`split_columns`). So files with more axes or
more blocks need nothing new here.

Every function takes a DataFrame from `load_results` or the path of a results CSV. Bad input raises
`ResultsError` (a `ValueError`) with a message naming the file, the column or the value.
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from cnnexp import stats as seeds
from cnnexp.errors import ResultsError, param
from cnnexp.paths import CSV, check_input, check_output, csv_header
from cnnexp.results import format_value, legacy_meta_path, meta_path, read_meta, write_atomically
from cnnexp.schema import (
    ALL_METRICS,
    AXIS,
    BLOCKS,
    EPOCH_METRICS,
    LAYER_METRICS,
    NET_LAYER_METRICS,
    NET_METRICS,
    RATIO_BLOCKS,
    REQUIRED_METRICS,
)
from cnnexp.stats import STATISTICS

# a loaded results frame, the path of a results CSV, or the paths of several (read as one: `load_many`)
Results: TypeAlias = pd.DataFrame | str | os.PathLike | Sequence[str | os.PathLike]

# pandas >= 3.1 parses floats exactly by default and deprecates `float_precision`; older pandas needs
# "round_trip" for the repr-written floats of a results file to come back bit for bit.
_PANDAS = tuple(int(p) for p in pd.__version__.split(".")[:2])
_EXACT_FLOATS = {} if _PANDAS >= (3, 1) else {"float_precision": "round_trip"}



# --------------------------------------------------------------------------------------------------
# Loading


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results CSV into a DataFrame with exact floats, checking it is a results file.

    The columns keep their file order; `block` and other text axes are strings, metrics are floats, and
    floats come back exactly as written. `df.attrs` holds the provenance of the `.meta.json` beside the
    file (its keys: sweep, fingerprint, environment, ...), when there is one, plus `path`.

    Args:
        path: a results CSV, e.g. results/init.csv.

    Returns:
        Every row of the file.

    Raises:
        ResultsError: the file is missing, empty, not a CSV, lacks `block` or a metric its provenance
            lists (without provenance: the first release's metrics, or for a per-layer file with a
            `block_index` column, the layer metrics), or has a metric column that is not numeric.
    """
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        raise ResultsError(f"{path}: is a YAML file (a sweep?), not a results CSV; run it with cnnexp sweep {path} "
                           "and use the CSV it writes")
    try:
        check_input(path)  # a device or a FIFO would be read forever, or block
        with warnings.catch_warnings():
            # a row longer than the header is damage, not an index column (index_col=False), and an error
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, index_col=False, **_EXACT_FLOATS)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ResultsError(f"{path}: is a directory, not a results CSV") from None
    except pd.errors.EmptyDataError:
        raise ResultsError(f"{path}: is empty, not a results CSV") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, OSError) as e:
        line = re.search(r"line (\d+), saw (\d+)", str(e))
        if line:  # pandas' tokenizer: a row with more cells than the header
            raise ResultsError(f"{path}: not a results CSV: line {line[1]} has {line[2]} cells, more than its "
                               "header") from None
        raise ResultsError(f"{path}: cannot be read as CSV: {' '.join(str(e).split())}") from None
    meta = read_meta(path)
    if meta is not None and not isinstance(meta, dict):
        raise ResultsError(f"{meta_path(path)}: damaged provenance file: holds a {type(meta).__name__}, "
                           "not a JSON object; restore it or delete it")
    # A file lists its own columns in its provenance (so one written before a metric existed is held to
    # its own); without provenance, hold it to the metrics every results file has had.
    listed = (meta or {}).get("columns")
    if isinstance(listed, list) and listed and all(isinstance(c, str) for c in listed):
        required: Sequence[str] = [m for m in ALL_METRICS if m in listed]
    else:
        required = _required_without_provenance(df.columns)
    missing = [c for c in ("block", *required) if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: not a cnnexp results file: missing column{'s' * (len(missing) > 1)} "
                           f"{', '.join(missing)} (it has {names(df.columns)})")
    if df.empty:
        raise ResultsError(f"{path}: has a header but no rows")
    config, metrics = split_columns(df)
    _require_cells(df, config, path)
    for column in metrics:
        df[column] = as_floats(df, column, path)
    _refuse_overflow(path, df, metrics)
    twins = first_twins(df, config)
    if twins:  # a row pasted twice (or 0.01 rewritten as 1e-2) would count twice in every mean
        (i, j), shown = twins
        raise ResultsError(f"{path}: lines {i} and {j} hold one configuration ({shown}); "
                           "a results file has one row per configuration: delete one of them")
    df["block"] = df["block"].astype(str)
    df.attrs = {**(meta or {}), "path": str(path)}
    return df


def _required_without_provenance(columns: Sequence[str]) -> Sequence[str]:
    """The metrics a file without provenance must have: a per-layer file's (of the notebook's block, with
    `block_index`, or of a network, with `path`), a network's results, or the first release's."""
    if "epoch" in columns:  # a curve file of networks trained on data: its running values are in every row
        return EPOCH_METRICS[:3]
    if "block_index" in columns:
        return LAYER_METRICS
    if "net" in columns:
        return NET_LAYER_METRICS[:3] if "path" in columns else NET_METRICS
    return REQUIRED_METRICS


def first_twins(df: pd.DataFrame, columns: list[str]) -> tuple[tuple[int, int], str] | None:
    """The file lines (header = line 1) of the first two rows equal on `columns`, and their shared values
    as 'column=value, ...'; None when every row is distinct there."""
    repeated = df[df.duplicated(columns, keep=False)]
    if not len(repeated):
        return None
    first = repeated.iloc[0][columns]
    i, j = repeated[(repeated[columns] == first).all(axis=1)].index[:2] + 2
    values = (v.item() if isinstance(v, np.generic) else v for v in first)  # 8, not np.int64(8)
    return (int(i), int(j)), ", ".join(f"{k}={v!r}" for k, v in zip(columns, values))


def _require_cells(df: pd.DataFrame, config: list[str], path) -> None:
    """Refuse a row with an empty configuration cell (a short or hand-cut line, which pandas pads with NaN)
    or a block cnnexp does not know (a hand edit such as PLAIN)."""
    empty = df[config].isna().any(axis=1)
    if "init" in df.columns and "small_init" in config:  # a network drawn by another init has no small_init
        others = df[[c for c in config if c != "small_init"]].isna().any(axis=1)
        empty = others | (df["small_init"].isna() & (df["init"] == "small"))
    if empty.any():
        line = empty.idxmax()
        column = next(c for c in config if pd.isna(df.at[line, c]))
        raise ResultsError(f"{path}: line {line + 2} has no value in column {column}; "
                           "a results row fills every configuration column (a damaged line? delete it)")
    unknown = ~df["block"].astype(str).isin(BLOCKS)
    if unknown.any():
        line = unknown.idxmax()
        raise ResultsError(f"{path}: line {line + 2} has block {df.at[line, 'block']!r}, not one of "
                           f"{', '.join(BLOCKS)}")
def split_columns(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The configuration columns and the metric columns of a results frame, each in file order.

    A metric is a column named in `schema.ALL_METRICS`; every other column identifies the configuration.
    """
    metrics = [c for c in df.columns if c in ALL_METRICS]
    return [c for c in df.columns if c not in metrics], metrics


def require_numeric(df: pd.DataFrame, column: str, path) -> None:
    """Refuse a column with a value that is not a number, naming the first such value and its line."""
    if not _is_number_column(df[column]):
        as_floats(df, column, path)


def _is_number_column(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def as_floats(df: pd.DataFrame, column: str, path) -> pd.Series:
    """A column as float64, refusing (with its line and value) a cell that is not a number or lies beyond
    the float range (a 400-digit integer, 1e999): a metric is a float, and an overflow must not pass as inf.

    Raises:
        ResultsError: naming the file, the column, the line and the value.
    """
    values = df[column]
    if pd.api.types.is_float_dtype(values):
        return values
    if _is_number_column(values):  # integers, including uint64 beyond int64
        return values.astype(float)
    return pd.Series([_cell_float(v, column, i, path) for i, v in values.items()], index=values.index,
                     dtype=float)


def _cell_float(value, column: str, index, path) -> float:
    try:
        number = float(value)
    except OverflowError:  # a Python int beyond the float range
        number = math.inf
    except (TypeError, ValueError):
        raise ResultsError(f"{path}: column {column} is not numeric; line {index + 2} has "
                           f"{_shorten(value)}") from None
    if math.isinf(number) and not _says_infinity(value):
        raise _beyond_range(path, column, index, value)
    return number


def _says_infinity(text) -> bool:
    return str(text).strip().lower().lstrip("+-") in ("inf", "infinity")


def _beyond_range(path, column: str, index, value) -> ResultsError:
    return ResultsError(f"{path}: column {column}, line {index + 2}: {_shorten(value)} is beyond the float "
                        "range; a metric cell holds a float")


def _refuse_overflow(path: Path, df: pd.DataFrame, metrics: list[str]) -> None:
    """Refuse a metric cell pandas read as inf although its text is a finite number (1e999, 400 nines)."""
    suspect = [m for m in metrics if np.isinf(df[m].to_numpy()).any()]
    if not suspect:
        return
    text = pd.read_csv(path, index_col=False, usecols=suspect, dtype=str, keep_default_na=False)
    for m in suspect:
        for i in df.index[np.isinf(df[m].to_numpy())]:
            if not _says_infinity(text.at[i, m]):
                raise _beyond_range(path, m, i, text.at[i, m])


def _shorten(value, limit: int = 40) -> str:
    """A cell for a message: its repr, cut in the middle when long (a 400-digit integer)."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-8:]} ({len(str(value))} characters)"


def names(columns) -> str:
    """Column names for a one-line message: as they are, or as repr when one holds a control character
    (a tab or a record separator would break the line)."""
    return ", ".join(str(c) if str(c).isprintable() else repr(c) for c in columns)


def as_frame(results: Results, where: Sequence[str] = ()) -> pd.DataFrame:
    """The frame itself, or the results file at that path loaded with `load_results`; with `where`, only the
    rows that `select` keeps."""
    if isinstance(results, pd.DataFrame):
        df = results
    elif isinstance(results, (str, os.PathLike)):
        df = load_results(results)
    else:
        df = load_many(list(results))
    return select(df, where) if where else df


def load_many(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Several results files read as one frame: their rows one after another, with a `source` column (the
    file's name) when they hold different sweeps. A configuration column one file lacks takes the axis'
    default there (an older file, written before the axis existed).

    Raises:
        ResultsError: a file that is not a results file, a configuration column that is no axis and that some
            file lacks, or one configuration in two files of one sweep (it would count twice).
    """
    frames = [load_results(p) for p in paths]
    if len(frames) == 1:
        return frames[0]
    definitions = {json.dumps(f.attrs.get("sweep"), sort_keys=True) if f.attrs.get("sweep") else source(f)
                   for f in frames}
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    config = [c for c in columns if c not in ALL_METRICS]
    filled = []
    for f in frames:
        missing = [c for c in config if c not in f.columns]
        for c in missing:
            if c not in AXIS:
                raise ResultsError(f"{source(f)}: has no column {c}, which another file has; read them apart")
            f = f.assign(**{c: AXIS[c].default})
        if len(definitions) > 1:
            f = f.assign(source=Path(source(f)).name)
        filled.append(f)
    order = ["block", *(["source"] if len(definitions) > 1 else []), *[c for c in config if c != "block"],
             *[c for c in columns if c in ALL_METRICS]]
    df = pd.concat(filled, ignore_index=True, sort=False)[order]
    df.attrs = {"path": ", ".join(str(p) for p in paths), "paths": [str(p) for p in paths]}
    twins = first_twins(df, [c for c in order if c not in ALL_METRICS])
    if twins:
        raise ResultsError(f"{df.attrs['path']}: two rows hold one configuration ({twins[1]}), in files of one "
                           "sweep; give each file once")
    return df


def select(df: pd.DataFrame, where: Sequence[str]) -> pd.DataFrame:
    """The rows whose configuration matches every condition "AXIS=VALUE[,VALUE...]" (`--where`), as the CSV
    writes its values (numbers compared as numbers: 1e-2 is 0.01).

        >>> frame = pd.DataFrame({"block": ["plain", "residual"], "seed": [0, 1], "loss": [1.0, 2.0]})
        >>> select(frame, ["block=residual"])["seed"].tolist()
        [1]

    Raises:
        ResultsError: a condition that is not AXIS=VALUE, an axis that is not a configuration column, or a value
            no row has (naming the values there are).
    """
    config, _ = split_columns(df)
    keep = pd.Series(True, index=df.index)
    for text in where:
        axis, sep, values = (t.strip() for t in text.partition("="))
        if not sep or not axis or not values:
            raise ResultsError(f"{param('where')} {text!r}: expected AXIS=VALUE[,VALUE...], e.g. "
                               f"{param('where')} block=plain")
        if axis not in config:
            raise ResultsError(f"{param('where')} {text}: {axis!r} is not a configuration column of {source(df)} "
                               f"(its columns: {', '.join(config)})")
        column = df[axis]
        texts = column.map(_cell)
        wanted = [v.strip() for v in values.split(",")]
        for value in wanted:
            if not _matches(column, texts, value).any():
                present = ", ".join(dict.fromkeys(texts))
                raise ResultsError(f"{param('where')} {axis}={value}: no row of {source(df)} has it "
                                   f"({axis} there: {present[:200]})")
        keep &= pd.concat([_matches(column, texts, v) for v in wanted], axis=1).any(axis=1)
    out = df[keep].reset_index(drop=True)
    out.attrs = df.attrs
    return out


def _cell(value) -> str:
    """A value of a frame as the CSV holds it (`results.format_value`; NaN, pandas' empty cell, as empty)."""
    value = value.item() if isinstance(value, np.generic) else value
    return format_value(None if isinstance(value, float) and value != value else value)


def _matches(column: pd.Series, texts: pd.Series, value: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        try:
            return column == float(value)
        except ValueError:
            return pd.Series(False, index=column.index)
    return texts == value


def source(df: pd.DataFrame) -> str:
    """The file a frame was loaded from, for messages."""
    return df.attrs.get("path", "the results")


# --------------------------------------------------------------------------------------------------
# Summary over seeds


def summary(results: Results, metrics: Sequence[str] | None = None, *, where: Sequence[str] = ()) -> pd.DataFrame:
    """Mean, sample standard deviation, standard error and count of every metric over seeds.

    Rows are grouped by every configuration column except `seed` (block included), sorted as pandas'
    `groupby` sorts. With one row in a group, std and sem are NaN (pandas' ddof=1 semantics).

    When the file holds both a plain and a residual block, each gradient metric (a metric whose name
    contains "_grad") also gets `<metric>_ratio`: the residual mean over the plain mean of the same
    configuration, repeated on every block's row of it (NaN where one of the two blocks is missing).

    Args:
        results: a frame from `load_results`, or the path of a results CSV.
        metrics: summarise only these, in this order (default: every metric of the file).
        where: only the rows matching these "AXIS=VALUE[,VALUE...]" conditions (`select`).

    Returns:
        The configuration columns (without seed), then `<metric>_mean`, `<metric>_std`, `<metric>_sem`
        for each metric, `n` (rows in the group), then the `<metric>_ratio` columns.

    Raises:
        ResultsError: a metric asked for is not a metric of the file, or a configuration column has the
            name of a column the summary adds (`n`, `<metric>_mean`, ...).
    """
    df = as_frame(results, where)
    metrics = pick_metrics(df, metrics)
    keys = [c for c in split_columns(df)[0] if c != "seed"]
    added = ["n", *(f"{m}_{s}" for m in metrics for s in (*STATISTICS, "ratio"))]
    clash = [c for c in keys if c in added]
    if clash:
        raise ResultsError(f"{source(df)}: configuration column {clash[0]!r} has the name of a summary column "
                           f"({', '.join(c for c in added if c in clash)} is added by summary); rename it")
    grouped = df.groupby(keys, sort=True, dropna=False)
    stats = grouped[metrics].agg([_over_seeds(f) for f in (seeds.mean, seeds.std, seeds.sem)])
    stats.columns = [f"{metric}_{stat}" for metric, stat in zip(stats.columns.get_level_values(0),
                                                                 STATISTICS * len(metrics))]
    stats["n"] = grouped.size()
    table = stats.reset_index()
    if set(RATIO_BLOCKS) <= set(table["block"]):
        table = _with_ratios(table, keys, [m for m in metrics if "_grad" in m])
    return table


def _over_seeds(statistic: Callable[[list[float]], float]) -> Callable[[pd.Series], float]:
    """`statistic` (of cnnexp.stats, which the sweep's table on screen uses too) of a group's column."""
    def of_group(values: pd.Series) -> float:
        return statistic(values.astype(float).tolist())

    of_group.__name__ = statistic.__name__
    return of_group


def pick_metrics(df: pd.DataFrame, asked: Sequence[str] | None, flag: str = param("metrics")) -> list[str]:
    """The metrics asked for, once each and in the order asked, or every metric of the frame.

    Raises:
        ResultsError: a name that is not a metric column of the frame, naming the ones it has.
    """
    _, metrics = split_columns(df)
    if not asked and "data" in df.columns:  # networks on data: a row fills the metrics at init or of training
        return [m for m in metrics if df[m].notna().any()] or metrics
    if not asked:
        return metrics
    for m in asked:
        if m not in metrics:
            what = "a configuration column" if m in df.columns else "not a metric"
            raise ResultsError(f"{flag} {m}: {what} of {source(df)} (its metrics: {', '.join(metrics)})")
    return list(dict.fromkeys(asked))


def _with_ratios(table: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Add `<metric>_ratio` = residual mean / plain mean, matched on the other configuration columns."""
    top, bottom = RATIO_BLOCKS
    others = [k for k in keys if k != "block"]
    means = [f"{m}_mean" for m in metrics]
    if not others:  # a single configuration: merge needs a key
        table, others = table.assign(_all=0), ["_all"]
    pairs = (table.loc[table["block"] == top, others + means]
             .merge(table.loc[table["block"] == bottom, others + means], on=others, suffixes=("_r", "_p")))
    for m, mean in zip(metrics, means):
        # pandas division: x/0 is inf and 0/0 is nan, as in sweep.ratio
        pairs[f"{m}_ratio"] = pairs[f"{mean}_r"] / pairs[f"{mean}_p"]
    ratios = pairs[others + [f"{m}_ratio" for m in metrics]]
    return table.merge(ratios, on=others, how="left").drop(columns=["_all"], errors="ignore")


# --------------------------------------------------------------------------------------------------
# Comparing two files


RTOL = 1e-6  # compare's default relative tolerance
# Metrics bounded by construction, and their bound: the scale of their rounding error whatever their value.
BOUNDS = {"cos_x_out": 1.0}


@dataclass(frozen=True)
class Comparison:
    """Two results files joined on their shared configuration columns, metric by metric.

    `joined` has the key columns, `<c>_a` and `<c>_b` for each ignored column `c`, `status` ("same",
    "differs", "a_only", "b_only"), then for each compared metric `<m>_a`, `<m>_b`, `<m>_rel_diff` and
    `<m>_differs`. `by_metric` has, per metric, the absolute tolerance used, the largest relative difference
    over the rows in both files and the number of rows beyond tolerance.
    """

    a: str  # the two files' names, for messages
    b: str
    keys: tuple[str, ...]  # the configuration columns both files have, less the ignored: the join key
    metrics: tuple[str, ...]  # the metrics compared
    rtol: float
    atol: float | None  # the absolute tolerance asked for; None: each metric's floor (by_metric["atol"])
    joined: pd.DataFrame
    by_metric: pd.DataFrame  # index: metric; columns: atol, max_rel_diff, rows_beyond
    config_only: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # config columns in one file only (a, b)
    metrics_only: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # metrics in one file only (a, b)
    ignored: tuple[str, ...] = ()  # configuration columns left out of the join, as asked

    @property
    def differing(self) -> pd.DataFrame:
        """The rows in both files with at least one metric beyond tolerance."""
        return self.joined[self.joined["status"] == "differs"]

    def only(self, side: str) -> pd.DataFrame:
        """The key columns of the rows only file `side` ("a" or "b") has."""
        return self.joined.loc[self.joined["status"] == f"{side}_only", list(self.keys)]

    @property
    def agree(self) -> bool:
        """No metric beyond tolerance, no row and no metric on one side only."""
        return (bool((self.joined["status"] == "same").all())
                and not any(self.metrics_only))


def relative_difference(a, b) -> np.ndarray:
    """|a - b| / max(|a|, |b|), elementwise: 0 where a == b (both zero, equal infinities) or both are NaN,
    inf where only one is NaN or the two are infinities of opposite sign."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(a), np.abs(b))
    rel = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, rel)
    return np.where(np.isnan(rel), np.inf, rel)


def beyond_tolerance(a, b, rtol: float, atol: float) -> np.ndarray:
    """Where a differs from b beyond tolerance: not |a - b| <= atol + rtol * |b| (numpy.isclose, with b
    as the reference); NaN against NaN agrees."""
    return ~np.isclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=atol,
                       equal_nan=True)


def default_floor(a, b, rtol: float, metric: str = "") -> float:
    """The absolute tolerance compare uses for a metric when none is given: rtol times the metric's
    magnitude, for a metric whose values can cancel to near zero; 0 for one that cannot.

    A norm or a loss is a sum of non-negative terms: its rounding error is relative to its own value, so
    rtol alone judges it at every scale (1e-300 against 2e-300 differs). A cosine, or any metric taking
    both signs, is a sum of terms that cancel: near zero its rounding error is relative to the terms, not
    to the value (1e-24 against -3e-24 is noise). Its magnitude is its bound (1 for cos_x_out, `BOUNDS`)
    or, without one, the largest finite |value| in either file.

        >>> default_floor([0.9, -1e-24], [0.9, 3e-24], 1e-6, "cos_x_out")
        1e-06
        >>> default_floor([1e-300, 5.0], [2e-300, 5.0], 1e-6, "x_grad_norm")
        0.0
    """
    values = np.concatenate([np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()])
    values = values[np.isfinite(values)]
    if metric in BOUNDS:
        return rtol * BOUNDS[metric]
    if not (values < 0).any():
        return 0.0
    return rtol * float(np.abs(values).max())


def compare(a: Results, b: Results, *, rtol: float = RTOL, atol: float | None = None,
            metrics: Sequence[str] | None = None, ignore: Sequence[str] = (), where: Sequence[str] = ()) -> Comparison:
    """Join two results files on their shared configuration columns and compare every shared metric.

    A value of `a` differs from `b` when not |a - b| <= atol + rtol * |b| (numpy.isclose semantics, so `b`
    is the reference); NaN in both agrees. Without `atol`, each metric gets its own floor
    (`default_floor`): 0 for norms and the loss, rtol times the magnitude for cos_x_out and any metric with
    negative values. The relative difference reported is |a - b| / max(|a|, |b|).

    Args:
        a, b: frames from `load_results`, or paths of results CSVs.
        rtol: the relative tolerance, >= 0.
        atol: one absolute tolerance for every metric, >= 0 [default: each metric's floor].
        metrics: compare only these (default: every metric both files have).
        ignore: configuration columns to leave out of the join, e.g. ["dtype"] to pair a float32 file
            with a float64 one row by row.

    Returns:
        The comparison; `.agree` is False when a metric differs or a row or metric is on one side only.

    Raises:
        ResultsError: a file is not a results file, the files share no configuration column or no metric,
            a metric asked for is not in both, a column to ignore is not a configuration column, or a file
            has two rows with the same key (after ignoring).
    """
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not 0 <= value < np.inf:  # also refuses NaN
            raise ResultsError(f"{param(name)} {value:g}: must be a finite non-negative number")
    da, db = as_frame(a, where), as_frame(b, where)
    name_a, name_b = source(da), source(db)
    (config_a, metrics_a), (config_b, metrics_b) = split_columns(da), split_columns(db)
    ignore = list(dict.fromkeys(ignore))
    for column in ignore:
        if column not in config_a and column not in config_b:
            is_metric = column in metrics_a + metrics_b
            what = f"a metric (choose metrics with {param('metrics')})" if is_metric else "no column"
            raise ResultsError(f"{param('ignore')} {column}: {what} of {name_a} or {name_b} (configuration columns: "
                               f"{names(dict.fromkeys(config_a + config_b))})")
    config_a, config_b = ([c for c in config if c not in ignore] for config in (config_a, config_b))
    keys = [c for c in config_a if c in config_b]
    if not keys:
        raise ResultsError(f"{name_a} and {name_b} share no configuration column ({name_a}: "
                           f"{names(config_a)}; {name_b}: {names(config_b)})")
    shared = [m for m in metrics_a if m in metrics_b]
    if metrics:
        for m in metrics:
            if m not in shared:
                lacking = [n for n, ms in ((name_a, metrics_a), (name_b, metrics_b)) if m not in ms]
                raise ResultsError(f"{param('metrics')} {m}: not a metric of {' or '.join(lacking)} "
                                   f"(metrics in both: {', '.join(shared) or 'none'})")
        metrics_only: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        chosen = list(dict.fromkeys(metrics))
    else:
        chosen = shared
        metrics_only = (tuple(m for m in metrics_a if m not in shared),
                        tuple(m for m in metrics_b if m not in shared))
    if not chosen:
        raise ResultsError(f"{name_a} and {name_b} share no metric column")
    for df, other in ((da, db), (db, da)):
        _check_key(df, other, keys, ignore)
    atols = {m: atol if atol is not None else default_floor(da[m], db[m], rtol, m) for m in chosen}
    joined = _join(da, db, keys, atols, rtol, ignore)
    in_both = joined["status"].isin(["same", "differs"])
    by_metric = pd.DataFrame(
        {"atol": [atols[m] for m in chosen],
         "max_rel_diff": [joined.loc[in_both, f"{m}_rel_diff"].max() for m in chosen],
         "rows_beyond": [int(joined[f"{m}_differs"].sum()) for m in chosen]},
        index=pd.Index(chosen, name="metric"))
    config_only = (tuple(c for c in config_a if c not in keys), tuple(c for c in config_b if c not in keys))
    return Comparison(name_a, name_b, tuple(keys), tuple(chosen), rtol, atol, joined, by_metric,
                      config_only, metrics_only, tuple(ignore))


def _check_key(df: pd.DataFrame, other: pd.DataFrame, keys: list[str], ignored: list[str]) -> None:
    """Refuse a join that would pair one row with several: the key must be unique, and of one kind."""
    for k in keys:
        if pd.api.types.is_numeric_dtype(df[k]) != pd.api.types.is_numeric_dtype(other[k]):
            raise ResultsError(f"column {names([k])} holds numbers in one of {source(df)} and {source(other)} and text "
                               "in the other; they cannot be joined on it")
    twins = first_twins(df, keys)
    if twins:
        (i, j), shown = twins
        left_out = [c for c in split_columns(df)[0] if c not in keys]
        if any(c in ignored for c in left_out):
            why = f"once {', '.join(c for c in left_out if c in ignored)} is ignored"
        else:
            why = f"on the columns both files have ({source(df)} also has {', '.join(left_out)})"
        raise ResultsError(f"{source(df)}: lines {i} and {j} collide {why}: both are {shown}; "
                           f"cannot pair them with {source(other)}")


def _join(da: pd.DataFrame, db: pd.DataFrame, keys: list[str], atols: dict[str, float],
          rtol: float, ignored: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of both files paired on `keys`: the keys, each ignored column as `<c>_a`, `<c>_b` (so the
    pairing can be seen), `status`, then per metric `<m>_a`, `<m>_b`, `<m>_rel_diff`, `<m>_differs`."""
    metrics = list(atols)
    sides = [df[keys + metrics].join(df[[c for c in ignored if c in df]].add_suffix(f"_{side}"))
             for df, side in ((da, "a"), (db, "b"))]
    joined = sides[0].merge(sides[1], on=keys, how="outer", suffixes=("_a", "_b"), indicator="side")
    shown = [f"{c}_{side}" for c in ignored for side in "ab" if f"{c}_{side}" in joined]
    both = (joined["side"] == "both").to_numpy()
    columns: dict[str, Any] = {}
    differs = np.zeros(len(joined), dtype=bool)
    for m in metrics:
        va, vb = joined[f"{m}_a"].to_numpy(dtype=float), joined[f"{m}_b"].to_numpy(dtype=float)
        beyond = both & beyond_tolerance(va, vb, rtol, atols[m])
        columns |= {f"{m}_a": va, f"{m}_b": vb,
                    f"{m}_rel_diff": np.where(both, relative_difference(va, vb), np.nan),
                    f"{m}_differs": beyond}
        differs |= beyond
    status = np.select([~both & (joined["side"] == "left_only"), ~both, differs],
                       ["a_only", "b_only", "differs"], "same")
    return pd.concat([joined[keys + shown], pd.DataFrame({"status": status, **columns}, index=joined.index)],
                     axis=1)


# --------------------------------------------------------------------------------------------------
# Writing


def refuse_overwrite(out: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> None:
    """Refuse an output path that is one of the input CSVs or the provenance file beside one.

    Paths are compared after resolving symbolic links and `..`, so `./r.csv` and `r.csv` are the same file.

    Raises:
        ResultsError: `out` would replace an input.
    """
    target = Path(out).resolve()
    for path in inputs:
        for protected in (Path(path), meta_path(Path(path)), legacy_meta_path(Path(path))):
            if target == protected.resolve() or (target.exists() and protected.exists()
                                                 and os.path.samefile(target, protected)):  # a hard link
                raise ResultsError(f"{param('out')} {out}: would overwrite the input {protected}; "
                                   "choose another file name")


def is_summary_file(path: Path) -> bool:
    """Whether a CSV looks like one `summary --out` wrote (a column n and <metric>_mean columns)."""
    header = csv_header(path)
    return "n" in header and any(c.endswith("_mean") for c in header)


def is_comparison_file(path: Path) -> bool:
    """Whether a CSV looks like one `compare --out` wrote (a status column and <metric>_rel_diff columns)."""
    header = csv_header(path)
    return "status" in header and any(c.endswith("_rel_diff") for c in header)


def check_csv_out(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (), *,
                  ours=None, overwrite: bool = False) -> Path:
    """Check a CSV output path before any work (see `paths.check_output`), and that it is no input.

    Args:
        ours: says whether an existing file is one this command wrote (`is_summary_file`, ...); None: any.
        overwrite: replace an existing file that is not ours (never an input).

    Raises:
        ResultsError: see `paths.check_output` and `refuse_overwrite`.
    """
    refuse_overwrite(path, inputs)
    return check_output(path, param("out"), CSV, ours=ours, overwrite=overwrite)


def write_csv(df: pd.DataFrame, path: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (),
              ours=None, overwrite: bool = False, na_rep: str = "nan") -> Path:
    """Write a frame as CSV atomically: floats as repr (exact), NaN as `na_rep` (`nan`), no index.

    Raises:
        ResultsError: `path` fails `check_csv_out` (an input, a special file, a missing folder, another
            extension, a file not `ours` without `overwrite`).
    """
    check_csv_out(path, inputs, ours=ours, overwrite=overwrite)
    return write_atomically(path, lambda tmp: df.to_csv(tmp, index=False, na_rep=na_rep, lineterminator="\n"))
