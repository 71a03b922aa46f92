"""cnnexp.fit and `cnnexp fit`: slopes, intervals, R^2 equal an independent least-squares computation (numpy's
lstsq and the covariance formula, scipy's Student t); left-out rows are counted with their reasons; exact laws
hold on real float64 sweeps; bad input is one line, exit 2; `plot --fit` and the sweep's closing lines."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.image import imread
from scipy import stats
from typer.testing import CliRunner

import cnnexp
from cnnexp.cli import app
from cnnexp.config import parse_sweep
from cnnexp.errors import CnnexpError
from cnnexp.fit import DETAIL_COLUMNS, FIT_COLUMNS, SCALE_METRICS, fit, sweep_exponents
from cnnexp.plot import figure
from cnnexp.schema import AXES, NET
from cnnexp.schema import STEP_METRICS as METRICS
from cnnexp.sweep import SweepOutputs, plan_sweep, run_sweep
from tests.test_analysis import write_results

runner = CliRunner()
EXPONENTS = {"plain": {"loss": 4.0, "x_grad_norm": 4.0, "a1_grad_norm": 3.0, "param_grad_norm": 3.0, "w_norm": 1.0},
             "residual": {"loss": 0.0, "x_grad_norm": 0.02, "a1_grad_norm": 1.0, "param_grad_norm": 1.1,
                          "w_norm": 1.0}}


def cnnexp_cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def synthetic(axis="small_init", values=(1e-4, 1e-3, 1e-2, 1e-1), *, noise=0.05, seeds=(0, 1, 2), ds=(8, 16),
              law="power", seed=0) -> pd.DataFrame:
    """Rows whose metrics follow known laws in `axis` (power: m = A x^k; exponential: m = A 10^(k x)), with
    log-normal noise of `noise` decades."""
    rng = np.random.default_rng(seed)
    rows = []
    for block, exponents in EXPONENTS.items():
        for d in ds:
            for value in values:
                for s in seeds:
                    defaults = {a.name: a.default for a in AXES if not a.training and a.study != NET}
                    row = {"block": block, **defaults, "d": d, "seed": s, axis: value}
                    u = (math.log10(value) if value > 0 else -6.0) if law == "power" else value
                    row |= {m: 10.0 ** (-1 - d / 8 + exponents.get(m, 0.5) * u + noise * rng.standard_normal())
                            for m in METRICS}
                    rows.append(row)
    return pd.DataFrame(rows)


def reference(u, v):
    """Independent OLS: numpy.linalg.lstsq on [1, u], the slope's variance from sigma^2 (X'X)^-1, scipy's t."""
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    X = np.column_stack([np.ones_like(u), u])
    (intercept, slope), *_ = np.linalg.lstsq(X, v, rcond=None)
    residuals = v - X @ np.array([intercept, slope])
    n = len(u)
    var = residuals @ residuals / (n - 2) * np.linalg.inv(X.T @ X)[1, 1]
    half = stats.t.ppf(0.975, n - 2) * math.sqrt(var)
    spread = (v - v.mean()) @ (v - v.mean())
    r2 = 1 - residuals @ residuals / spread if spread > 0 else math.nan
    return {"slope": slope, "slope_low": slope - half, "slope_high": slope + half, "intercept": intercept, "r2": r2,
            "n": n, "max_residual": np.abs(residuals).max()}


def check_against_reference(fits, df, x, law="power"):
    """Every fitted row equals `reference` on the same rows (slope to 1e-9, interval to 1e-6)."""
    keys = [c for c in fits.columns if c not in (*FIT_COLUMNS, *DETAIL_COLUMNS)]
    assert keys == [c for c in df.columns if c not in (x, "seed", *METRICS)]
    for _, row in fits.iterrows():
        rows = df[(df[keys] == row[keys]).all(axis=1)]
        m = rows[row["metric"]].to_numpy(dtype=float)
        u = rows[x].to_numpy(dtype=float)
        keep = np.isfinite(m) & (m > 0) & ((u > 0) if law == "power" else True)
        if keep.sum() < 3 or len(set(u[keep])) < 2:
            assert row["n"] == keep.sum() and math.isnan(row["slope"]) and math.isnan(row["slope_low"])
            continue
        want = reference(np.log10(u[keep]) if law == "power" else u[keep], np.log10(m[keep]))
        assert row["n"] == want["n"] and row["excluded"] == len(rows) - want["n"]
        assert row["slope"] == pytest.approx(want["slope"], abs=1e-9)
        assert np.polyfit(np.log10(u[keep]) if law == "power" else u[keep], np.log10(m[keep]), 1)[0] == \
            pytest.approx(row["slope"], abs=1e-9)
        for column in ("slope_low", "slope_high", "intercept", "r2", "max_residual"):
            assert row[column] == pytest.approx(want[column], abs=1e-6, nan_ok=True), column


def test_power_law_slopes_and_intervals_equal_an_independent_least_squares():
    df = synthetic()
    fits = fit(df, "small_init")
    assert list(fits.columns) == ["block", "d", "batch", "depth", "activation", "dtype", "alpha_init",
                                  *FIT_COLUMNS, *DETAIL_COLUMNS]
    assert len(fits) == 2 * 2 * len(SCALE_METRICS)  # blocks x d x metrics; seeds pooled
    assert list(fits["metric"][:5]) == list(SCALE_METRICS) and (fits["x"] == "small_init").all()
    assert (fits["law"] == "power").all() and (fits["n"] == 12).all() and (fits["excluded"] == 0).all()
    check_against_reference(fits, df, "small_init")
    # the known exponents fall inside their intervals (noise 0.05 decades, 12 points)
    for _, r in fits.iterrows():
        assert abs(r["slope"] - EXPONENTS[r["block"]][r["metric"]]) < 0.05


def test_exponential_law_is_decades_per_unit_and_is_depths_default():
    df = synthetic("depth", (1, 2, 3, 5, 8), law="exponential")
    fits = fit(df, "depth", ["x_grad_norm", "param_grad_norm"])
    assert (fits["law"] == "exponential").all() and (fits["theory"].isna()).all()
    check_against_reference(fits, df, "depth", law="exponential")
    plain = fits[(fits["block"] == "plain") & (fits["metric"] == "param_grad_norm")]
    assert plain["slope"].to_numpy() == pytest.approx([3.0, 3.0], abs=0.02)
    assert fit(df, "depth", "loss", law="power")["law"].eq("power").all()


@pytest.mark.parametrize("noise, seeds", [(0.0, (0,)), (0.3, (0, 1, 2, 3, 4))])
def test_one_seed_without_noise_and_many_seeds_with_much(noise, seeds):
    df = synthetic(noise=noise, seeds=seeds, ds=(8,))
    fits = fit(df, "small_init", "a1_grad_norm")
    if noise == 0:
        assert fits["slope"].to_numpy() == pytest.approx([3.0, 1.0], abs=1e-12)
        assert fits["slope_high"].sub(fits["slope_low"]).max() < 1e-9
        return
    check_against_reference(fits, df, "small_init")


def test_left_out_rows_are_counted_with_their_reasons():
    df = synthetic(values=(0.0, 1e-4, 1e-3, 1e-2, 1e-1), seeds=(0, 1, 2), ds=(8,))
    plain = df.index[df["block"] == "plain"]  # 0-2 at small_init 0, 3-5 at 1e-4, 6-8 at 1e-3, ...
    df.loc[plain[[0, 3, 4]], "x_grad_norm"] = 0.0  # underflow
    df.loc[plain[5], "x_grad_norm"] = -1.0
    df.loc[plain[6], "x_grad_norm"] = math.inf
    df.loc[plain[7], "x_grad_norm"] = math.nan
    fits = fit(df, "small_init", ["x_grad_norm", "loss"])
    row = fits[(fits["block"] == "plain") & (fits["metric"] == "x_grad_norm")].iloc[0]
    # a row is counted once, for the first reason that applies: the metric's, then the axis'
    assert row["excluded_why"] == ("2 values not finite; 3 values 0: underflow; 1 value negative; "
                                   "2 values small_init <= 0")
    assert row["excluded"] == 8 and row["n"] == 7
    loss = fits[(fits["block"] == "plain") & (fits["metric"] == "loss")].iloc[0]
    assert (loss["excluded"], loss["n"], loss["excluded_why"]) == (3, 12, "3 values small_init <= 0")
    check_against_reference(fits, df, "small_init")
    # an exponential law takes x = 0 (no log10 of the axis), so only the metric's rows are left out
    depth = fit(df, "small_init", "loss", law="exponential")
    assert (depth["excluded"] == 0).all() and (depth["n"] == 15).all()


def test_too_few_points_or_one_axis_value_gives_no_slope_not_an_error():
    df = synthetic(values=(1e-3, 1e-2), seeds=(0,), ds=(8, 16))  # 2 points per group
    df = pd.concat([df, synthetic(values=(1e-3,), seeds=(0, 1, 2), ds=(32,))])  # d 32: 3 points, one value
    fits = fit(df, "small_init", "loss")
    assert fits["slope"].isna().all() and fits["slope_low"].isna().all() and fits["r2"].isna().all()
    assert list(fits["n"]) == [2, 2, 2, 2, 3, 3] and (fits["theory"][fits["block"] == "plain"] == 4).all()


@pytest.mark.parametrize("x, y, law, words", [
    ("width", None, None, ["x width", "not a configuration axis", "small_init"]),
    ("seed", None, None, ["x seed", "seeds are pooled"]),
    ("block", None, None, ["x block"]),
    ("activation", None, None, ["x activation: not a numeric axis", "small_init"]),
    ("d", None, None, []),  # fine: d has two values
    ("batch", None, None, ["x batch", "has one value", "(4)"]),
    ("small_init", ["grad_norm"], None, ["y grad_norm", "not a metric", "x_grad_norm"]),
    ("small_init", None, "cubic", ["law cubic", "unknown law", "power, exponential, log"]),
])
def test_bad_input_is_refused_naming_it(x, y, law, words):
    df = synthetic()
    df["batch"] = 4
    if not words:
        assert len(fit(df, x, y, law=law))
        return
    with pytest.raises(CnnexpError) as e:
        fit(df, x, y, law=law)
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), str(e.value)


# --- on real sweeps ----------------------------------------------------------------------------------


def run(tmp_path, sweep: dict, name="laws"):
    sweep_file = parse_sweep({"name": name, **sweep}, source=f"{name}.yaml")
    plan = plan_sweep(sweep_file, SweepOutputs(tmp_path / f"{name}.csv"))
    return run_sweep(plan).path


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A tiny float64 sweep of every block over small_init at depths 1 and 2, two seeds."""
    return run(tmp_path_factory.mktemp("laws"), {
        "blocks": ["plain", "residual", "rezero", "prenorm"],
        "sweep": {"d": 8, "batch": 4, "small_init": [1e-4, 1e-3, 1e-2, 1e-1], "seed": [0, 1], "depth": [1, 2],
                  "dtype": "float64"}})


def test_exact_plain_laws_hold_on_a_real_float64_sweep(real):
    fits = fit(real, "small_init")
    plain = fits[fits["block"] == "plain"]
    assert len(plain) == 10 and plain["theory_kind"].eq("exact").all() and plain["holds"].eq(True).all()
    assert (plain["slope"] - plain["theory"]).abs().max() < 1e-6
    assert list(plain["theory"]) == [4, 4, 3, 3, 1, 8, 8, 7, 7, 1]
    check_against_reference(fits, cnnexp.load_results(real), "small_init")
    rezero = fits[fits["block"] == "rezero"].set_index(["depth", "metric"])
    assert (rezero.loc[(2, "a1_grad_norm"), ["n", "excluded"]] == [0, 8]).all()  # exactly 0: all left out
    assert rezero.loc[(2, "a1_grad_norm"), "excluded_why"] == "8 values 0: exactly 0 at alpha_init 0"
    assert abs(rezero.loc[(2, "param_grad_norm"), "slope"] - 2) < 1e-6
    assert rezero.loc[(1, "x_grad_norm"), "limit_ratio"] == pytest.approx(1, abs=1e-12)
    for block in ("residual", "prenorm"):
        rows = fits[fits["block"] == block]
        assert list(rows["theory_kind"]) == ["limit"] * 4 + ["exact"] + ["limit"] * 4 + ["exact"]
        assert rows["holds"].eq(True).all()
        assert rows["limit_ratio"].dropna().to_numpy() == pytest.approx([1, 1], abs=1e-6)


def test_fit_command_writes_the_same_frame_and_prints_tables(real, tmp_path):
    out = tmp_path / "fits.csv"
    result = cnnexp_cli("fit", real, "--x", "small_init", "--y", "x_grad_norm,param_grad_norm", "--out", out)
    assert result.exit_code == 0, result.output
    assert "x_grad_norm ~ small_init^slope" in result.stdout and "param_grad_norm ~ small_init^slope" in result.stdout
    assert "12.0000" not in result.stdout and "8.0000" in result.stdout and "yes" in result.stdout
    written = pd.read_csv(out, keep_default_na=False, na_values=[""])
    want = fit(real, "small_init", ["x_grad_norm", "param_grad_norm"])
    want[["theory_kind", "excluded_why"]] = want[["theory_kind", "excluded_why"]].replace("", math.nan)
    pd.testing.assert_frame_equal(written, want, check_dtype=False)
    text = out.read_text().splitlines()
    assert text[0].startswith("block,d,batch,depth,activation,dtype,alpha_init,metric,x,law,slope,slope_low,"
                              "slope_high,intercept,r2,n,excluded,theory,")
    assert ",nan" not in out.read_text()  # missing values are empty cells
    as_json = json.loads(cnnexp_cli("fit", real, "--x", "small_init", "--json").stdout)
    assert len(as_json) == 4 * 2 * 5 and as_json[0]["slope"] == fit(real, "small_init")["slope"][0]


def test_theory_that_does_not_hold_is_said_plainly(tmp_path):
    df = synthetic(ds=(8,))
    df.loc[df["block"] == "plain", "loss"] **= 1.01  # exponent 4.04 +- noise: outside, the table says so
    path = write_results(tmp_path / "r.csv", df.to_dict("records"))
    fits = fit(path, "small_init", "loss")
    assert list(fits["holds"]) == [False, True]
    assert "NO: +0.0" in cnnexp_cli("fit", path, "--x", "small_init", "--y", "loss").stdout


@pytest.mark.parametrize("args, words", [
    (["--x", "width"], ["--x width"]),
    (["--x", "small_init", "--y", "nope"], ["--y nope"]),
    (["--x", "batch"], ["--x batch", "one value"]),
    (["--x", "small_init", "--law", "cubic"], ["--law cubic"]),
])
def test_fit_command_bad_input_is_one_line_exit_2(real, tmp_path, args, words):
    out = tmp_path / "fits.csv"
    result = cnnexp_cli("fit", real, *args, "--out", out)
    assert result.exit_code == 2 and not out.exists(), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and all(w in lines[0] for w in words), result.stderr


def test_fit_command_refuses_a_file_that_is_not_results_and_its_own_input(real, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    result = cnnexp_cli("fit", other, "--x", "a")
    assert result.exit_code == 2 and "not a cnnexp results file" in result.stderr
    before = real.read_bytes()
    result = cnnexp_cli("fit", real, "--x", "small_init", "--out", real)
    assert result.exit_code == 2 and "would overwrite the input" in result.stderr and real.read_bytes() == before


def test_cnnexp_fit_is_public_beside_load_results(real):
    import cnnexp.fit  # noqa: F401  (the module's import must not hide the function)

    assert "fit" in cnnexp.__all__
    pd.testing.assert_frame_equal(cnnexp.fit(cnnexp.load_results(real), "small_init"), fit(real, "small_init"))


# --- on figures and at the end of a sweep -------------------------------------------------------------


def test_plot_fit_draws_each_law_over_its_points_with_slope_and_interval(real, tmp_path):
    fits = fit(real, "small_init", "x_grad_norm").set_index(["depth", "block"])
    fig = figure(real, "small_init", ["x_grad_norm"])  # without --fit: no fit legends
    assert all(ax.get_legend() is None for ax in fig.axes)
    out = tmp_path / "fit.png"
    assert cnnexp_cli("plot", real, "--x", "small_init", "--y", "x_grad_norm", "--fit", "--out", out).exit_code == 0
    assert imread(out).shape[0] > 100
    from cnnexp.plot import choose_layout, draw

    df = cnnexp.load_results(real)
    fig = draw(df, choose_layout(df, "small_init", ["x_grad_norm"]), fit=True)
    for ax, depth in zip(fig.axes, (1, 2)):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        plain = fits.loc[(depth, "plain")]
        assert labels[0] == (f"plain: {plain['slope']:.4f} [{plain['slope_low']:.4f}, {plain['slope_high']:.4f}], "
                             f"theory {4 * depth}")
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        xs = dashed[0].get_xdata()
        assert xs.min() == pytest.approx(1e-4) and xs.max() == pytest.approx(1e-1)
        ys = dashed[0].get_ydata()
        assert math.log10(ys[-1] / ys[0]) / 3 == pytest.approx(plain["slope"], abs=1e-9)
        assert sum(line.get_linestyle() == ":" for line in ax.lines) == 4  # every block has a derived law


def test_a_sweep_over_three_small_init_values_ends_with_its_exponents(tmp_path):
    config = tmp_path / "three.yaml"
    config.write_text("blocks: [plain, residual]\nsweep: {d: 8, batch: 4, small_init: [1.0e-3, 1.0e-2, 1.0e-1], "
                      "seed: [0, 1], dtype: float64}\n")
    result = cnnexp_cli("sweep", config, "--out", tmp_path / "three.csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()[-2:]
    fits = sweep_exponents(cnnexp.load_results(tmp_path / "three.csv")).set_index(["block", "metric"])
    p = fits.loc[("plain", "x_grad_norm")]
    assert lines[0].startswith(f"plain: x_grad_norm ~ small_init^4.0000 [{p['slope_low']:.4f}, "
                               f"{p['slope_high']:.4f}] (theory 4: yes), param_grad_norm ~ small_init^3.0000")
    r = fits.loc[("residual", "x_grad_norm")]
    assert lines[1].startswith(f"residual: x_grad_norm ~ small_init^{r['slope']:.4f} [")
    assert "(theory 0 as small_init -> 0: yes)" in lines[1]
    two = tmp_path / "two.yaml"
    two.write_text("sweep: {d: 8, batch: 4, small_init: [1.0e-3, 1.0e-2], seed: 0}\n")
    result = cnnexp_cli("sweep", two, "--out", tmp_path / "two.csv")
    assert result.exit_code == 0 and "small_init^" not in result.stdout
    assert sweep_exponents(cnnexp.load_results(tmp_path / "two.csv")).empty


@settings(max_examples=40, deadline=None)
# some noise: the R^2 of points exactly on a line is rounding, which two computations need not share
@given(exponent=st.floats(-12, 12), noise=st.floats(1e-3, 1), n_values=st.integers(2, 6), n_seeds=st.integers(1, 4),
       law=st.sampled_from(["power", "exponential"]), seed=st.integers(0, 2**32 - 1))
def test_any_law_exponent_and_noise_matches_the_independent_fit(exponent, noise, n_values, n_seeds, law, seed):
    rng = np.random.default_rng(seed)
    values = np.sort(rng.choice([1e-5, 3e-4, 1e-3, 0.02, 0.5, 1.0, 2.0, 7.0], n_values, replace=False))
    rows = []
    for value in values:
        for s in range(n_seeds):
            u = math.log10(value) if law == "power" else value
            metric = 10.0 ** (exponent * u + noise * rng.standard_normal())
            rows.append({"block": "plain", "d": 8, "small_init": float(value), "seed": s, "loss": metric,
                         **{m: 1.0 for m in METRICS if m != "loss"}})
    df = pd.DataFrame(rows)
    fits = fit(df, "small_init", "loss", law=law)
    check_against_reference(fits, df, "small_init", law=law)
    assert fits["n"].iloc[0] + fits["excluded"].iloc[0] == len(df)


# --- the log law: a metric itself on log10(axis), e.g. steps_to_fit per decade ----------------------------


def test_log_law_equals_an_independent_least_squares_and_keeps_zeros():
    rng = np.random.default_rng(3)
    rows = []
    for block, per_decade in (("plain", -70.0), ("residual", -40.0)):
        for value in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1):
            for s in range(3):
                steps = 120 + per_decade * math.log10(value) + rng.normal(0, 5)
                row = {"block": block, **{a.name: a.default for a in AXES if a.study != NET}, "steps": 500,
                       "target": "identity", "small_init": value, "seed": s}
                row |= {m: 1.0 for m in METRICS} | {"initial_loss": 1.0, "steps_to_fit": max(round(steps), 0)}
                rows.append(row)
    rows[0]["steps_to_fit"] = 0  # a real value: fitted at once
    rows[1]["steps_to_fit"] = float("nan")  # never reached
    df = pd.DataFrame(rows)
    fits = fit(df, "small_init", "steps_to_fit", law="log")
    assert list(fits["law"]) == ["log", "log"]
    for _, row in fits.iterrows():
        group = df[(df["block"] == row["block"]) & df["steps_to_fit"].notna()]
        want = reference(np.log10(group["small_init"]), group["steps_to_fit"])
        assert row["slope"] == pytest.approx(np.polyfit(np.log10(group["small_init"]), group["steps_to_fit"], 1)[0],
                                             abs=1e-9)
        assert row["slope_low"] == pytest.approx(want["slope_low"], abs=1e-6)
        assert row["n"] == len(group)
    plain = fits[fits["block"] == "plain"].iloc[0]
    assert plain["n"] == 17 and "1 value empty: never reached" in plain["excluded_why"]


def test_a_plain_relu_conv_network_fits_twice_its_weighted_layers_with_the_theory_beside(tmp_path, monkeypatch):
    """The whole way: a sweep of a network (bn off, init small), then `cnnexp fit` on its results file."""
    import json

    from typer.testing import CliRunner

    from cnnexp.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "convs.yaml").write_text("input: 2x6x6\nlayers: [conv:out=3,k=3,p=1,bias=false, relu, "
                                         "conv:out=3,k=3,bias=false, relu, flatten, linear:out=2,bias=false]\n")
    (tmp_path / "s.yaml").write_text("net: convs.yaml\nblocks: [plain]\nsweep: {batch: 3, bn: off, "
                                     "small_init: {logspace: [-3, -1, 3]}, seed: [0, 1]}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["sweep", "s.yaml"]).exit_code == 0
    result = runner.invoke(app, ["fit", "results/s.csv", "--x", "small_init", "--json"])
    assert result.exit_code == 0, result.output
    fits = {r["metric"]: r for r in json.loads(result.stdout)}
    assert fits["x_grad_norm"]["theory"] == 6 and fits["x_grad_norm"]["holds"] is True  # k = 3 weighted layers
    assert fits["x_grad_norm"]["slope"] == pytest.approx(6, abs=1e-6)
    assert fits["param_grad_norm"]["theory"] == 5 and fits["loss"]["theory"] == 6
    shown = runner.invoke(app, ["fit", "results/s.csv", "--x", "small_init"]).stdout
    assert "6.0000" in shown and "yes" in shown


def test_trained_runs_get_no_init_theory_in_fit_or_in_plots():
    """The laws are those of the study at init: a group that trained (steps > 0) has none beside it."""
    from cnnexp.fit import LAWS, fit_group

    at_init = synthetic()
    trained = at_init.assign(steps=400)
    assert fit(at_init, "small_init")["theory"].notna().any()
    fits = fit(trained, "small_init")
    assert fits["theory"].isna().all() and (fits["holds"].isna()).all()
    group = trained[trained["block"] == "plain"]
    config = group.iloc[0].to_dict()
    assert math.isnan(fit_group(group, "small_init", "x_grad_norm", LAWS["power"], config)["theory"])  # (plot --fit)


def test_block_index_defaults_to_the_exponential_law_as_depth_does():
    from cnnexp.fit import law_for

    assert law_for("block_index", None).name == law_for("depth", None).name == "exponential"
    assert law_for("small_init", None).name == "power"
