"""Reading results files with pandas: load, compare two, summarise over seeds.

    >>> from cnnexp.analysis import load_results, compare, summary   # doctest: +SKIP
    >>> df = load_results("results/init.csv")       # every row; provenance in df.attrs
    >>> summary(df)                                 # mean, std, sem, n per metric over seeds
    >>> c = compare("results/init.csv", "other/init.csv", rtol=1e-6)
    >>> c.agree, c.by_metric                        # False, the largest relative difference per metric

Which columns are which comes from the file and the schema, never from a fixed list: a metric is a column
named in `schema.ALL_METRICS` (the results CSV's and the per-layer CSV's), and every other column (block, the
axes, and any axis added later) describes the configuration (`split_columns`). So files with more axes or
more blocks need nothing new here.

Every function takes a DataFrame from `load_results` or the path of a results CSV. Bad input raises
`ResultsError` (a `ValueError`) with a message naming the file, the column or the value.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd

from cnnexp.errors import ResultsError
from cnnexp.paths import CSV, check_input, check_output, csv_header
from cnnexp.results import legacy_meta_path, meta_path, read_meta, write_atomically
from cnnexp.schema import ALL_METRICS, LAYER_METRICS, RATIO_BLOCKS, REQUIRED_METRICS

Results = Union[pd.DataFrame, str, os.PathLike]  # a loaded results frame or the path of a results CSV

# pandas >= 3.1 parses floats exactly by default and deprecates `float_precision`; older pandas needs
# "round_trip" for the repr-written floats of a results file to come back bit for bit.
_PANDAS = tuple(int(p) for p in pd.__version__.split(".")[:2])
_EXACT_FLOATS = {} if _PANDAS >= (3, 1) else {"float_precision": "round_trip"}

STATISTICS = ("mean", "std", "sem")  # summary columns <metric>_mean, <metric>_std, <metric>_sem


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
        raise ResultsError(f"{path}: cannot be read as CSV: {' '.join(str(e).split())}") from None
    meta = read_meta(path)
    # A file lists its own columns in its provenance (so one written before a metric existed is held to
    # its own); without provenance, hold it to the metrics every results file has had.
    listed = (meta or {}).get("columns")
    if listed:
        required = [m for m in ALL_METRICS if m in listed]
    else:
        required = LAYER_METRICS if "block_index" in df.columns else REQUIRED_METRICS
    missing = [c for c in ("block", *required) if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: not a cnnexp results file: missing column{'s' * (len(missing) > 1)} "
                           f"{', '.join(missing)} (it has {', '.join(map(str, df.columns))})")
    if df.empty:
        raise ResultsError(f"{path}: has a header but no rows")
    config, metrics = split_columns(df)
    for column in metrics:
        require_numeric(df, column, path)
    repeated = df[df.duplicated(config, keep=False)]
    if len(repeated):  # a row pasted twice would count twice in every mean
        first = ", ".join(f"{k}={v!r}" for k, v in repeated.iloc[0][config].items())
        raise ResultsError(f"{path}: {len(repeated)} rows share one configuration, e.g. {first}; "
                           "a results file has one row per configuration")
    df["block"] = df["block"].astype(str)
    df.attrs = {**(meta or {}), "path": str(path)}
    return df


def split_columns(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The configuration columns and the metric columns of a results frame, each in file order.

    A metric is a column named in `schema.ALL_METRICS`; every other column identifies the configuration.
    """
    metrics = [c for c in df.columns if c in ALL_METRICS]
    return [c for c in df.columns if c not in metrics], metrics


def require_numeric(df: pd.DataFrame, column: str, path) -> None:
    """Refuse a column with a value that is not a number, naming the first such value and its line."""
    if pd.api.types.is_numeric_dtype(df[column]) and not pd.api.types.is_bool_dtype(df[column]):
        return
    numbers = pd.to_numeric(df[column], errors="coerce")
    bad = df[column][numbers.isna() & df[column].notna()]
    where = f"; line {bad.index[0] + 2} has {bad.iloc[0]!r}" if len(bad) else ""
    raise ResultsError(f"{path}: column {column} is not numeric{where}")


def as_frame(results: Results) -> pd.DataFrame:
    """The frame itself, or the results file at that path loaded with `load_results`."""
    return results if isinstance(results, pd.DataFrame) else load_results(results)


def source(df: pd.DataFrame) -> str:
    """The file a frame was loaded from, for messages."""
    return df.attrs.get("path", "the results")


# --------------------------------------------------------------------------------------------------
# Summary over seeds


def summary(results: Results) -> pd.DataFrame:
    """Mean, sample standard deviation, standard error and count of every metric over seeds.

    Rows are grouped by every configuration column except `seed` (block included), sorted as pandas'
    `groupby` sorts. With one row in a group, std and sem are NaN (pandas' ddof=1 semantics).

    When the file holds both a plain and a residual block, each gradient metric (a metric whose name
    contains "_grad") also gets `<metric>_ratio`: the residual mean over the plain mean of the same
    configuration, repeated on every block's row of it (NaN where one of the two blocks is missing).

    Args:
        results: a frame from `load_results`, or the path of a results CSV.

    Returns:
        The configuration columns (without seed), then `<metric>_mean`, `<metric>_std`, `<metric>_sem`
        for each metric, `n` (rows in the group), then the `<metric>_ratio` columns.
    """
    df = as_frame(results)
    config, metrics = split_columns(df)
    keys = [c for c in config if c != "seed"]
    grouped = df.groupby(keys, sort=True, dropna=False)
    stats = grouped[metrics].agg(list(STATISTICS))
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    stats["n"] = grouped.size()
    table = stats.reset_index()
    if set(RATIO_BLOCKS) <= set(table["block"]):
        table = _with_ratios(table, keys, [m for m in metrics if "_grad" in m])
    return table


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


@dataclass(frozen=True)
class Comparison:
    """Two results files joined on their shared configuration columns, metric by metric.

    `joined` has the key columns, `status` ("same", "differs", "a_only", "b_only"), then for each compared
    metric `<m>_a`, `<m>_b`, `<m>_rel_diff` and `<m>_differs`. `by_metric` has, per metric, the largest
    relative difference over the rows in both files and the number of rows beyond tolerance.
    """

    a: str  # the two files' names, for messages
    b: str
    keys: tuple[str, ...]  # the configuration columns both files have: the join key
    metrics: tuple[str, ...]  # the metrics compared
    rtol: float
    atol: float
    joined: pd.DataFrame
    by_metric: pd.DataFrame  # index: metric; columns: max_rel_diff, rows_beyond
    config_only: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # config columns in one file only (a, b)
    metrics_only: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # metrics in one file only (a, b)

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


def compare(a: Results, b: Results, *, rtol: float = 1e-6, atol: float = 0.0,
            metrics: Sequence[str] | None = None) -> Comparison:
    """Join two results files on their shared configuration columns and compare every shared metric.

    A value of `a` differs from `b` when not |a - b| <= atol + rtol * |b| (numpy.isclose semantics, so `b`
    is the reference); NaN in both agrees. The relative difference reported is |a - b| / max(|a|, |b|).

    Args:
        a, b: frames from `load_results`, or paths of results CSVs.
        rtol, atol: the tolerance, both >= 0.
        metrics: compare only these (default: every metric both files have).

    Returns:
        The comparison; `.agree` is False when a metric differs or a row or metric is on one side only.

    Raises:
        ResultsError: a file is not a results file, the files share no configuration column or no metric,
            a metric asked for is not in both, or a file has two rows with the same key.
    """
    if not (0 <= rtol < np.inf and 0 <= atol < np.inf):  # also refuses NaN
        raise ResultsError(f"tolerances must be finite non-negative numbers, got rtol={rtol}, atol={atol}")
    da, db = as_frame(a), as_frame(b)
    name_a, name_b = source(da), source(db)
    (config_a, metrics_a), (config_b, metrics_b) = split_columns(da), split_columns(db)
    keys = [c for c in config_a if c in config_b]
    if not keys:
        raise ResultsError(f"{name_a} and {name_b} share no configuration column ({name_a}: "
                           f"{', '.join(config_a)}; {name_b}: {', '.join(config_b)})")
    shared = [m for m in metrics_a if m in metrics_b]
    if metrics:
        for m in metrics:
            if m not in shared:
                lacking = [n for n, ms in ((name_a, metrics_a), (name_b, metrics_b)) if m not in ms]
                raise ResultsError(f"--metric {m}: not a metric of {' or '.join(lacking)} "
                                   f"(metrics in both: {', '.join(shared) or 'none'})")
        chosen, metrics_only = list(dict.fromkeys(metrics)), ((), ())
    else:
        chosen = shared
        metrics_only = (tuple(m for m in metrics_a if m not in shared),
                        tuple(m for m in metrics_b if m not in shared))
    if not chosen:
        raise ResultsError(f"{name_a} and {name_b} share no metric column")
    for df, other in ((da, db), (db, da)):
        _check_key(df, other, keys)
    joined = _join(da, db, keys, chosen, rtol, atol)
    in_both = joined["status"].isin(["same", "differs"])
    by_metric = pd.DataFrame(
        {"max_rel_diff": [joined.loc[in_both, f"{m}_rel_diff"].max() for m in chosen],
         "rows_beyond": [int(joined[f"{m}_differs"].sum()) for m in chosen]},
        index=pd.Index(chosen, name="metric"))
    config_only = (tuple(c for c in config_a if c not in keys), tuple(c for c in config_b if c not in keys))
    return Comparison(name_a, name_b, tuple(keys), tuple(chosen), rtol, atol, joined, by_metric,
                      config_only, metrics_only)


def _check_key(df: pd.DataFrame, other: pd.DataFrame, keys: list[str]) -> None:
    """Refuse a join that would pair one row with several: the key must be unique, and of one kind."""
    for k in keys:
        if pd.api.types.is_numeric_dtype(df[k]) != pd.api.types.is_numeric_dtype(other[k]):
            raise ResultsError(f"column {k} holds numbers in one of {source(df)} and {source(other)} and text "
                               "in the other; they cannot be joined on it")
    repeated = df[df.duplicated(keys, keep=False)]
    if len(repeated):
        first = ", ".join(f"{k}={v}" for k, v in repeated.iloc[0][keys].items())
        extra = [c for c in split_columns(df)[0] if c not in keys]
        why = (f" (it has {', '.join(extra)}, which {source(other)} lacks)" if extra else "")
        raise ResultsError(f"{source(df)}: {len(repeated)} rows share one configuration on the columns "
                           f"{', '.join(keys)}{why}, e.g. {first}; cannot pair them with {source(other)}")


def _join(da: pd.DataFrame, db: pd.DataFrame, keys: list[str], metrics: list[str],
          rtol: float, atol: float) -> pd.DataFrame:
    joined = da[keys + metrics].merge(db[keys + metrics], on=keys, how="outer", suffixes=("_a", "_b"),
                                      indicator="side")
    both = (joined["side"] == "both").to_numpy()
    columns, differs = {}, np.zeros(len(joined), dtype=bool)
    for m in metrics:
        va, vb = joined[f"{m}_a"].to_numpy(dtype=float), joined[f"{m}_b"].to_numpy(dtype=float)
        beyond = both & beyond_tolerance(va, vb, rtol, atol)
        columns |= {f"{m}_a": va, f"{m}_b": vb,
                    f"{m}_rel_diff": np.where(both, relative_difference(va, vb), np.nan),
                    f"{m}_differs": beyond}
        differs |= beyond
    status = np.select([~both & (joined["side"] == "left_only"), ~both, differs],
                       ["a_only", "b_only", "differs"], "same")
    return pd.concat([joined[keys], pd.DataFrame({"status": status, **columns}, index=joined.index)], axis=1)


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
                raise ResultsError(f"--out {out}: would overwrite the input {protected}; "
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
    return check_output(path, "--out", CSV, ours=ours, overwrite=overwrite)


def write_csv(df: pd.DataFrame, path: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (),
              ours=None, overwrite: bool = False) -> Path:
    """Write a frame as CSV atomically: floats as repr (exact), NaN as `nan`, no index.

    Raises:
        ResultsError: `path` fails `check_csv_out` (an input, a special file, a missing folder, another
            extension, a file not `ours` without `overwrite`).
    """
    check_csv_out(path, inputs, ours=ours, overwrite=overwrite)
    return write_atomically(path, lambda tmp: df.to_csv(tmp, index=False, na_rep="nan", lineterminator="\n"))
