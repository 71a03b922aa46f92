"""Fitted laws: least-squares slopes with 95% intervals, one per group of a results file, theory beside them.

    from cnnexp.fit import fit
    fits = fit("results/laws.csv", "small_init")                 # every scale metric, power law
    fits.loc[fits["block"] == "plain", ["depth", "metric", "slope", "slope_low", "slope_high", "theory"]]

A group is the rows that share every configuration column except the fitted axis and seed (seeds are pooled).
Each law is a straight line fitted by ordinary least squares after a change of variables, one entry of LAWS:

    power         log10(metric) = intercept + slope * log10(x)    (slope: the exponent)
    exponential   log10(metric) = intercept + slope * x           (slope: decades per unit of x, e.g. per block)

The 95% interval is slope +- t(0.975, n - 2) * se, se = sqrt(sum(residual^2) / (n - 2) / sum((x - mean x)^2)),
with Student's t from scipy. A law leaves out, and counts, the rows it cannot take (a metric 0, negative or not
finite where it takes log10 of the metric; an axis value <= 0 where it takes log10 of the axis) and says why.
A group with fewer than MIN_POINTS points left, or one axis value, gets no slope (NaN), not an error.

The frame returned has the fits contract (the group's configuration columns, then FIT_COLUMNS), then
DETAIL_COLUMNS: how the theory was judged, the largest residual (in decades when the metric is on log10),
why rows were left out, and for blocks whose input gradient tends to 2 ||x|| / (batch d) the measured value
over that limit at the group's smallest small_init.
"""
from __future__ import annotations

import math
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cnnexp import theory
from cnnexp.analysis import Results, as_frame, refuse_overwrite, source, split_columns, write_csv
from cnnexp.config import RunConfig
from cnnexp.errors import ConfigError, ResultsError, param
from cnnexp.nets import NetSpec, net_file
from cnnexp.schema import AXIS, BOTH, FINDING_METRICS, MLP, NET

FIT_COLUMNS = ("metric", "x", "law", "slope", "slope_low", "slope_high", "intercept", "r2", "n", "excluded",
               "theory")
DETAIL_COLUMNS = ("theory_kind", "holds", "max_residual", "excluded_why", "limit_ratio")
SCALE_METRICS = ("loss", "x_grad_norm", "a1_grad_norm", "param_grad_norm", "w_norm")  # the default --y
MIN_POINTS = 3  # a line through fewer points has no interval (n - 2 degrees of freedom)
CONFIDENCE = 0.95
MIN_SWEEP_VALUES = 3  # a sweep with this many small_init values ends with its fitted exponents


@dataclass(frozen=True)
class FitLaw:
    """A law fitted as a straight line: which of the axis and the metric are taken log10 of first."""

    name: str
    formula: str
    log_x: bool
    log_y: bool

    def predict(self, intercept: float, slope: float, x) -> np.ndarray:
        """The metric the line gives at axis values x (back through the law's change of variables)."""
        x = np.asarray(x, dtype=float)
        v = intercept + slope * (np.log10(x) if self.log_x else x)
        return 10.0 ** v if self.log_y else v


LAWS = {law.name: law for law in (
    FitLaw("power", "log10(metric) = intercept + slope * log10(x)", log_x=True, log_y=True),
    FitLaw("exponential", "log10(metric) = intercept + slope * x", log_x=False, log_y=True),
    FitLaw("log", "metric = intercept + slope * log10(x)", log_x=True, log_y=False),  # e.g. steps per decade
)}
# depth and the per-layer block index: gradients fall geometrically block after block; any other axis: power
DEFAULT_LAW = {"depth": "exponential", "block_index": "exponential"}


@dataclass(frozen=True)
class Line:
    """An ordinary least-squares line through (u, v) = the law's transformed (axis, metric) points."""

    slope: float
    low: float  # the 95% interval of the slope
    high: float
    intercept: float
    r2: float  # NaN when every v is the same
    max_residual: float  # the largest |v - line| (decades when v is log10 of the metric)
    n: int


def ols(u: np.ndarray, v: np.ndarray, confidence: float = CONFIDENCE) -> Line:
    """Least squares v = intercept + slope u, with the slope's Student-t interval; NaN below MIN_POINTS
    points or with one distinct u."""
    n = len(u)
    if n < MIN_POINTS or len(np.unique(u)) < 2:
        nan = math.nan
        return Line(slope=nan, low=nan, high=nan, intercept=nan, r2=nan, max_residual=nan, n=n)
    from scipy.stats import t  # scipy only when a line is fitted: importing cnnexp.fit stays light

    du, dv = u - u.mean(), v - v.mean()
    sxx = float(du @ du)
    slope = float(du @ dv) / sxx
    intercept = float(v.mean() - slope * u.mean())
    residuals = v - (intercept + slope * u)
    ssr, sst = float(residuals @ residuals), float(dv @ dv)
    half = float(t.ppf(0.5 + confidence / 2, n - 2)) * math.sqrt(ssr / (n - 2) / sxx)
    r2 = 1.0 - ssr / sst if sst > 0 else math.nan
    return Line(slope, slope - half, slope + half, intercept, r2, float(np.abs(residuals).max()), n)


def law_for(axis: str, law: str | None) -> FitLaw:
    """The law asked for, or the axis' default (exponential for depth, power otherwise).

    Raises:
        ConfigError: an unknown law.
    """
    name = law or DEFAULT_LAW.get(axis, "power")
    if name not in LAWS:
        raise ConfigError(f"{param('law')} {name}: unknown law; use {', '.join(LAWS)}")
    return LAWS[name]


def usable(law: FitLaw, axis: str, u: pd.Series, v: pd.Series, zero: str = "underflow") -> tuple[np.ndarray, str]:
    """Which rows the law can take, and why the others are left out ("3 values 0: underflow; ..."); `zero`
    says why a metric is 0 (underflow, unless theory says it vanishes)."""
    missing = "empty: never reached" if v.name == "steps_to_fit" else "not finite"  # an empty steps_to_fit
    u, v = u.to_numpy(dtype=float), v.to_numpy(dtype=float)
    reasons = []  # (mask of rows left out for this reason, text), the first reason that applies wins
    reasons.append((~np.isfinite(v), missing))
    if law.log_y:
        reasons += [(v == 0, f"0: {zero}"), (v < 0, "negative")]
    reasons.append((~np.isfinite(u), f"{axis} not finite"))
    if law.log_x:
        reasons.append((u <= 0, f"{axis} <= 0"))
    left, why = np.zeros(len(u), dtype=bool), []
    for mask, text in reasons:
        new = mask & ~left
        if new.any():
            k = int(new.sum())
            why.append(f"{k} value{'s' * (k != 1)} {text}")
            left |= new
    return ~left, "; ".join(why)


def transform(law: FitLaw, u, v):
    """The law's straight-line variables of axis values u and metric values v."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.log10(u) if law.log_x else np.asarray(u, dtype=float),
                np.log10(v) if law.log_y else np.asarray(v, dtype=float))


def fit(results: Results, x: str, y: Sequence[str] | str | None = None, *, law: str | None = None,
        where: Sequence[str] = ()) -> pd.DataFrame:
    """Fit a law of each metric against axis `x`, one line per group (seeds pooled).

    Args:
        results: a frame from `load_results`, or the path of a results CSV.
        x: the configuration axis to fit against (small_init, d, batch, depth, ...).
        y: the metrics [default: loss, x_grad_norm, a1_grad_norm, param_grad_norm, w_norm, those present].
        law: "power" or "exponential" [default: exponential for depth and block_index, power for any other axis].

    Returns:
        One row per group and metric: the group's configuration columns (every one of the file's except
        `x` and seed, in file order), then FIT_COLUMNS, then DETAIL_COLUMNS.

    Raises:
        ResultsError: not a results file; `x` is not a numeric configuration axis or has one value; a
            metric of `y` is not a metric of the file.
        ConfigError: an unknown law.
    """
    df = as_frame(results, where)
    fitted = law_for(x, law)
    if x == "small_init" and "init" in df.columns:  # a network drawn by another init has no small_init
        df = df[df["init"] == "small"]
    config, metrics = split_columns(df)
    metrics_y = _check(df, config, metrics, x, y)
    keys = [c for c in config if c not in (x, "seed")]
    norms = _XNorms()
    nets = df.attrs.get("net_files")  # a sweep of networks records each network's layers in its provenance
    rows = []
    grouped = df.groupby(keys, sort=False, dropna=False) if keys else [((), df)]
    for key, group in grouped:
        values = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for metric in metrics_y:
            rows.append({**values, **fit_group(group, x, metric, fitted, values, nets), "metric": metric})
            if metric == "x_grad_norm" and theory.has_x_grad_limit(str(values.get("block"))):
                rows[-1]["limit_ratio"] = norms.ratio(group)
    columns = [*keys, *FIT_COLUMNS, *DETAIL_COLUMNS]
    out = pd.DataFrame(rows, columns=columns)
    out[["n", "excluded"]] = out[["n", "excluded"]].astype(int)
    out.attrs = {"path": source(df), "x": x, "law": fitted.name}
    return out


def fit_file(path: str | os.PathLike | Sequence[str | os.PathLike], x: str, y: Sequence[str] | str | None = None, *,
             law: str | None = None, out: str | os.PathLike | None = None, where: Sequence[str] = ()) -> pd.DataFrame:
    """`fit` of the results file at `path`, the fits also written to `out` as CSV (exact floats, NaN empty).

    Raises:
        ResultsError, ConfigError: as `fit`; also `out` would replace the input or its provenance.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if out is not None:
        refuse_overwrite(out, paths)  # before any work: a refused --out leaves nothing behind
    fits = fit(paths, x, y, law=law, where=where)
    if out is not None:
        write_csv(fits, out, inputs=paths, na_rep="")
    return fits


def fit_group(group: pd.DataFrame, x: str, metric: str, law: FitLaw, config: dict,
              nets: dict | None = None) -> dict:
    """The fit of one group's `metric` against `x`: the FIT_COLUMNS and DETAIL_COLUMNS of its row (without
    limit_ratio), from the rows the law can take. `nets`: the networks of a sweep of networks, by name, as its
    provenance records them (for their theory)."""
    block = str(config.get("block"))
    keep, why = usable(law, x, group[x], group[metric], theory.vanishes(block, metric, config) or "underflow")
    u, v = transform(law, group[x].to_numpy(dtype=float)[keep], group[metric].to_numpy(dtype=float)[keep])
    line = ols(u, v)
    if _trained(config):  # the laws are of the study at init: none for a trained run
        derived = None
    elif config.get("net") is not None:
        net = (nets or {}).get(str(config["net"]))
        derived = theory.net_law(block, metric, x, law.name, config, net if isinstance(net, dict) else None)
    else:
        derived = theory.law(block, metric, x, law.name, config)
    holds = math.nan
    if derived is not None and not math.isnan(line.slope):
        off = abs(line.slope - derived.value)
        inside = derived.kind == "exact" and line.low <= derived.value <= line.high
        holds = bool(inside or off <= derived.tolerance)
    return {"x": x, "law": law.name, "slope": line.slope, "slope_low": line.low, "slope_high": line.high,
            "intercept": line.intercept, "r2": line.r2, "n": line.n, "excluded": int((~keep).sum()),
            "theory": derived.value if derived else math.nan, "theory_kind": derived.kind if derived else "",
            "holds": holds, "max_residual": line.max_residual, "excluded_why": why, "limit_ratio": math.nan}


def _trained(config: dict) -> bool:
    """Whether a group's runs trained (steps > 0): theory derives the laws of the study at init only."""
    try:
        return float(config.get("steps", 0)) > 0
    except (TypeError, ValueError):
        return False


def _check(df: pd.DataFrame, config: list[str], metrics: list[str], x: str, y) -> list[str]:
    """The metrics to fit, after checking `x` and `y` against the file; one-line errors naming them."""
    name = source(df)
    axes = [c for c in config if c not in ("block", "seed")]
    if x not in axes:
        why = "seeds are pooled, not fitted" if x == "seed" else f"not a configuration axis of {name}"
        raise ResultsError(f"{param('x')} {x}: {why} (its axes: {', '.join(axes) or 'none'})")
    if not pd.api.types.is_numeric_dtype(df[x]) or pd.api.types.is_bool_dtype(df[x]):
        numeric = [a for a in axes if pd.api.types.is_numeric_dtype(df[a])]
        raise ResultsError(f"{param('x')} {x}: not a numeric axis (numeric axes of {name}: {', '.join(numeric)})")
    values = df[x].unique()
    if len(values) < 2:
        raise ResultsError(f"{param('x')} {x}: has one value in {name} ({values[0].item()!r}); a fit needs at least 2 "
                           "values")
    if y is None:
        chosen = [m for m in SCALE_METRICS if m in metrics] or metrics
    else:
        chosen = list(dict.fromkeys([y] if isinstance(y, str) else y))
    for m in chosen:
        if m not in metrics:
            raise ResultsError(f"{param('y')} {m}: not a metric of {name} (its metrics: {', '.join(metrics)})")
    return chosen


class _XNorms:
    """||x|| of each run's input, redrawn from its seed as the probe draws it (cached), for the limit
    2 ||x|| / (batch d) of the input gradient."""

    def __init__(self):
        self.cache: dict[tuple[int, int, int], float] = {}

    def norm(self, seed: int, batch: int, d: int) -> float:
        if (seed, batch, d) not in self.cache:
            from cnnexp.engine.reference import draw  # defers torch: only for files with a block that has the limit

            x, _ = draw(RunConfig(d=d, batch=batch, seed=seed), [])
            self.cache[(seed, batch, d)] = float(x.double().norm())
        return self.cache[(seed, batch, d)]

    def ratio(self, group: pd.DataFrame) -> float:
        """Mean of x_grad_norm over its limit, over the rows at the group's smallest small_init."""
        if not {"seed", "batch", "d", "x_grad_norm"} <= set(group.columns):
            return math.nan
        rows = group[group["small_init"] == group["small_init"].min()] if "small_init" in group else group
        ratios = [r.x_grad_norm / theory.x_grad_limit(self.norm(int(r.seed), int(r.batch), int(r.d)),
                                                       int(r.batch), int(r.d))
                  for r in rows.itertuples(index=False)]
        return float(np.mean(ratios))


def sweep_exponents(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """The study's finding as numbers: the small_init exponents of x_grad_norm and param_grad_norm, one row per
    group and metric (as `fit` returns them), when small_init has MIN_SWEEP_VALUES or more values; else empty.

    Args:
        rows: a sweep's rows (dicts of column -> value, as `SweepReport.rows`) or a results frame.
    """
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if "small_init" not in df or df["small_init"].nunique() < MIN_SWEEP_VALUES:
        return pd.DataFrame()
    metrics = [m for m in FINDING_METRICS if m in df]
    if not isinstance(rows, pd.DataFrame):  # a sweep's own rows: every axis of both studies, networks as NetSpecs
        nets = [n for n in dict.fromkeys(df.get("net", [])) if isinstance(n, NetSpec)]
        df = df[[c for c in df if c not in AXIS or AXIS[c].study in (BOTH, NET if nets else MLP)]]
        df.attrs["net_files"] = {str(n): net_file(n) for n in nets}
    return fit(df, "small_init", metrics) if metrics else pd.DataFrame()


class _CallableModule(types.ModuleType):
    """`cnnexp.fit` names both this module and its function `fit` (public beside `load_results`). Importing the
    module makes the package attribute the module, so the module calls `fit` itself: `cnnexp.fit(df, "d")`
    works whether or not `cnnexp.fit` was imported first."""

    def __call__(self, *args, **kwargs):
        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
