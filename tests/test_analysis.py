"""cnnexp.analysis against pandas computed here, in the test, and against hand-computed values."""
from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnexp.analysis import (beyond_tolerance, compare, load_results, refuse_overwrite, relative_difference,
                             split_columns, summary, write_csv)
from cnnexp.results import write_atomically
from cnnexp.errors import CnnexpError, ResultsError
from cnnexp.results import ResultsFile, write_meta
from cnnexp.schema import AXES, CONFIG_COLUMNS, STEP_METRICS as METRICS

COLUMNS = (*CONFIG_COLUMNS, *METRICS)  # the synthetic files here hold the study's metrics (no training metrics)


def make_rows(*, blocks=("plain", "residual"), small_inits=(1e-2, 1e-4), seeds=(0, 1, 2), extra=None,
              seed=0) -> list[dict]:
    """Result rows in the CSV layout, metrics drawn over many decades; `extra` adds axes after seed."""
    rng = np.random.default_rng(seed)
    extra = extra or {}
    rows = []
    for block, small_init, s, *more in itertools.product(blocks, small_inits, seeds, *extra.values()):
        row = {"block": block, **{a.name: a.default for a in AXES}}
        row |= {"d": 8, "batch": 4, "small_init": small_init, "seed": s, **dict(zip(extra, more))}
        row |= {m: float(rng.lognormal() * 10.0 ** rng.integers(-20, 3)) for m in METRICS}
        rows.append(row)
    return rows


def write_results(path, rows, *, meta=None):
    """Write rows with the results writer itself (repr floats), and a provenance file when given."""
    with ResultsFile(path, tuple(rows[0])).start() as f:
        for row in rows:
            f.append(row)
    if meta is not None:
        write_meta(path, meta)
    return path


@pytest.fixture
def results(tmp_path):
    return write_results(tmp_path / "init.csv", make_rows(), meta={"fingerprint": "abc", "columns": list(COLUMNS)})


# --- load_results ---------------------------------------------------------------------------------


def test_load_results_returns_every_row_exactly(results):
    with open(results, newline="") as f:
        expected = list(csv.DictReader(f))
    df = load_results(results)
    assert len(df) == len(expected) == 12
    assert list(df.columns) == list(COLUMNS)
    for got, want in zip(df.to_dict("records"), expected):
        assert got["block"] == want["block"] and got["seed"] == int(want["seed"])
        assert all(got[m] == float(want[m]) for m in ("small_init", *METRICS))  # exact, not close
    assert df["d"].dtype.kind == "i" and all(df[m].dtype == float for m in METRICS)
    assert df.attrs["fingerprint"] == "abc" and df.attrs["path"] == str(results)


def test_load_results_without_provenance_has_only_the_path(tmp_path):
    path = write_results(tmp_path / "r.csv", make_rows())
    assert load_results(path).attrs == {"path": str(path)}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=False, width=64), min_size=1, max_size=5))
def test_floats_come_back_bit_for_bit(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("rt") / "r.csv"
    rows = [{"block": "plain", "seed": i, **{m: v for m in METRICS}} for i, v in enumerate(values)]
    assert load_results(write_results(path, rows))["loss"].tolist() == values


@pytest.mark.parametrize("drop", [["block"], ["loss"], ["x_grad_norm", "w_norm"]])
def test_load_results_names_the_missing_columns(tmp_path, drop):
    rows = [{k: v for k, v in r.items() if k not in drop} for r in make_rows()]
    with pytest.raises(ResultsError, match=", ".join(drop)) as e:
        load_results(write_results(tmp_path / "r.csv", rows))
    assert isinstance(e.value, ValueError) and "not a cnnexp results file" in str(e.value)


def test_a_file_from_before_a_metric_existed_loads_by_its_provenance(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "w_norm"} for r in make_rows()]
    path = write_results(tmp_path / "old.csv", rows, meta={"columns": list(rows[0])})
    assert "w_norm" not in load_results(path).columns


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("block,d,seed,loss,x_grad_norm,a1_grad_norm,w_norm,param_grad_norm\n", "no rows"),
    ("block,seed,loss,x_grad_norm,a1_grad_norm,w_norm,param_grad_norm\nplain,0,1.0,oops,1,1,1\n",
     "column x_grad_norm is not numeric; line 2 has 'oops'"),
    ("block,seed,loss\nplain,0,1.0,2.0,3.0\n", "cannot be read as CSV"),
])
def test_load_results_refuses_bad_files_naming_them(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ResultsError, match=message) as e:
        load_results(path)
    assert str(path) in str(e.value)


def test_load_results_missing_file(tmp_path):
    with pytest.raises(ResultsError, match="nope.csv: no such file"):
        load_results(tmp_path / "nope.csv")


def test_split_columns_takes_every_non_metric_column_as_configuration():
    df = pd.DataFrame(columns=["block", "d", "depth", "activation", "loss", "w_norm", "seed"])
    assert split_columns(df) == (["block", "d", "depth", "activation", "seed"], ["loss", "w_norm"])


# --- summary --------------------------------------------------------------------------------------


def pandas_reference(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = df.groupby(keys)[list(METRICS)]
    mean, std, count = g.mean(), g.std(ddof=1), g.count()
    return mean, std, count


def test_summary_equals_pandas_groupby(results):
    df = pd.read_csv(results)
    keys = [c for c in CONFIG_COLUMNS if c != "seed"]
    mean, std, count = pandas_reference(df, keys)
    got = summary(results).set_index(keys)
    for m in METRICS:
        pd.testing.assert_series_equal(got[f"{m}_mean"], mean[m], check_names=False)
        pd.testing.assert_series_equal(got[f"{m}_std"], std[m], check_names=False)
        np.testing.assert_allclose(got[f"{m}_sem"], std[m] / np.sqrt(count[m]), rtol=1e-13)
        assert (got["n"] == count[m]).all()
    assert len(got) == 4 and (got["n"] == 3).all()


def test_summary_ratio_is_residual_mean_over_plain_mean_of_the_same_configuration(results):
    df = pd.read_csv(results)
    got = summary(results)
    for small_init in (1e-2, 1e-4):
        at = df[df["small_init"] == small_init]
        for m in ("x_grad_norm", "a1_grad_norm", "param_grad_norm"):
            want = at[at["block"] == "residual"][m].mean() / at[at["block"] == "plain"][m].mean()
            assert got.loc[got["small_init"] == small_init, f"{m}_ratio"].tolist() == pytest.approx([want, want], rel=1e-12)
    assert "loss_ratio" not in got and "w_norm_ratio" not in got  # not gradient metrics


def test_summary_with_one_seed_has_nan_std_and_sem(tmp_path):
    path = write_results(tmp_path / "r.csv", make_rows(seeds=(7,)))
    got = summary(path)
    assert got["loss_std"].isna().all() and got["loss_sem"].isna().all() and (got["n"] == 1).all()
    write_csv(got, tmp_path / "s.csv")
    assert "nan" in (tmp_path / "s.csv").read_text() and pd.read_csv(tmp_path / "s.csv")["loss_sem"].isna().all()


def test_summary_groups_by_new_axes_and_blocks(tmp_path):
    rows = make_rows(blocks=("plain", "residual", "rezero"), small_inits=(1e-3,),
                     extra={"depth": [1, 2], "activation": ["relu", "tanh"]})
    got = summary(write_results(tmp_path / "r.csv", rows))
    assert list(got.columns[:6]) == ["block", "d", "batch", "small_init", "depth", "activation"]
    assert len(got) == 3 * 2 * 2 and (got["n"] == 3).all()
    df = pd.DataFrame(rows)
    at = df[(df.depth == 2) & (df.activation == "tanh")]
    want = at[at.block == "residual"].x_grad_norm.mean() / at[at.block == "plain"].x_grad_norm.mean()
    assert (got.loc[(got.depth == 2) & (got.activation == "tanh"), "x_grad_norm_ratio"] == want).all()


def test_summary_has_no_ratio_without_both_blocks(tmp_path):
    got = summary(write_results(tmp_path / "r.csv", make_rows(blocks=("plain", "rezero"))))
    assert not [c for c in got.columns if c.endswith("_ratio")]


# --- compare --------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, rel", [
    (1.0, 2.0, 0.5), (2.0, 1.0, 0.5), (0.0, 0.0, 0.0), (-1.0, 1.0, 2.0), (0.0, 1e-30, 1.0),
    (math.nan, math.nan, 0.0), (math.nan, 1.0, math.inf), (math.inf, math.inf, 0.0), (math.inf, 1.0, math.inf),
])
def test_relative_difference_by_hand(a, b, rel):
    assert relative_difference([a], [b])[0] == rel


def test_tolerance_is_numpy_isclose_with_b_as_reference():
    # |a-b| = 1; atol + rtol*|b| is 1 with b = 10 (agree) and 0.9 with b = 9 (differ)
    assert beyond_tolerance([9.0, 10.0], [10.0, 9.0], rtol=0.1, atol=0.0).tolist() == [False, True]
    assert beyond_tolerance([0.0, math.nan, math.nan], [1e-12, math.nan, 0.0], rtol=0.0, atol=1e-12).tolist() \
        == [False, False, True]


def test_compare_identical_files_agree(results, tmp_path):
    copy = write_results(tmp_path / "copy.csv", make_rows())
    c = compare(results, copy)
    assert c.agree and (c.by_metric["max_rel_diff"] == 0).all() and (c.joined["status"] == "same").all()
    assert c.keys == CONFIG_COLUMNS and c.metrics == METRICS


def perturbed(metric: str, factor: float, row: int = 5) -> list[dict]:
    rows = make_rows()
    rows[row][metric] *= factor
    return rows


def test_compare_names_the_one_metric_perturbed_by_a_tenth_of_a_percent(results, tmp_path):
    b = write_results(tmp_path / "b.csv", perturbed("a1_grad_norm", 1.001))
    c = compare(results, b, rtol=1e-6)
    assert not c.agree
    assert c.by_metric["rows_beyond"].to_dict() == {m: int(m == "a1_grad_norm") for m in METRICS}
    a_value = make_rows()[5]["a1_grad_norm"]
    assert c.by_metric.loc["a1_grad_norm", "max_rel_diff"] == pytest.approx(0.001 / 1.001, rel=1e-9)
    [row] = c.differing.to_dict("records")
    assert row["a1_grad_norm_a"] == a_value and row["a1_grad_norm_b"] == a_value * 1.001
    assert compare(results, b, rtol=1e-2).agree


def test_compare_reports_rows_on_one_side_only(results, tmp_path):
    rows = make_rows()
    b = write_results(tmp_path / "b.csv", rows[:3] + rows[4:] + [{**rows[0], "seed": 99}])
    c = compare(results, b)
    assert not c.agree and c.differing.empty
    assert c.only("a").to_dict("records") == [{k: rows[3][k] for k in CONFIG_COLUMNS}]
    assert c.only("b")["seed"].tolist() == [99]


def test_compare_metric_limits_and_refuses_unknown(results, tmp_path):
    b = write_results(tmp_path / "b.csv", perturbed("loss", 2.0))
    assert compare(results, b, metrics=["x_grad_norm"]).agree
    assert list(compare(results, b, metrics=["x_grad_norm"]).joined.columns[-4:]) == [
        "x_grad_norm_a", "x_grad_norm_b", "x_grad_norm_rel_diff", "x_grad_norm_differs"]
    with pytest.raises(ResultsError, match="--metric speed: not a metric"):
        compare(results, b, metrics=["speed"])


def test_compare_joins_on_the_shared_configuration_columns(results, tmp_path):
    b = write_results(tmp_path / "b.csv", make_rows(extra={"future_axis": [1]}))
    c = compare(results, b)
    assert c.agree and c.keys == CONFIG_COLUMNS and c.config_only == ((), ("future_axis",))
    two_depths = write_results(tmp_path / "c.csv", make_rows(extra={"future_axis": [1, 2]}))
    with pytest.raises(ResultsError, match="rows share one configuration.*future_axis"):
        compare(results, two_depths)


def test_compare_without_shared_configuration_columns_is_refused():
    a = pd.DataFrame({"x": [1], "loss": [1.0]})
    b = pd.DataFrame({"y": [1], "loss": [1.0]})
    with pytest.raises(ResultsError, match="share no configuration column"):
        compare(a, b)


def test_compare_refuses_negative_tolerance(results):
    with pytest.raises(CnnexpError, match="non-negative"):
        compare(results, results, rtol=-1)


# --- writing --------------------------------------------------------------------------------------


def test_write_atomically_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomically(target, fail)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("out", ["r.csv", "./r.csv", "sub/../r.csv", "r.meta.json", "link.csv", "hard.csv"])
def test_write_csv_refuses_to_overwrite_an_input_or_its_provenance(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    results = write_results(tmp_path / "r.csv", make_rows(), meta={"fingerprint": "abc"})
    (tmp_path / "link.csv").symlink_to(results)
    (tmp_path / "hard.csv").hardlink_to(results)
    before = {p: p.read_bytes() for p in (results, tmp_path / "r.meta.json")}
    with pytest.raises(ResultsError, match=f"--out {out}: would overwrite the input"):
        write_csv(summary(results), out, inputs=[tmp_path / "other.csv", "r.csv"])
    assert {p: p.read_bytes() for p in before} == before


def test_refuse_overwrite_lets_other_paths_through(tmp_path):
    results = write_results(tmp_path / "r.csv", make_rows())
    refuse_overwrite(tmp_path / "r-summary.csv", [results])
    refuse_overwrite(tmp_path / "r.meta.json.csv", [results])
    assert write_csv(summary(results), tmp_path / "s.csv", inputs=[results]).exists()


def test_an_unwritable_out_path_is_one_clear_error(results, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsError, match="cannot write"):
        write_csv(summary(results), tmp_path / "file" / "s.csv")  # a file where a directory should be


def test_a_row_given_twice_is_refused_not_counted_twice(tmp_path):
    rows = make_rows()
    path = write_results(tmp_path / "dup.csv", [*rows, rows[3]])
    with pytest.raises(ResultsError, match="2 rows share one configuration"):
        load_results(path)


@pytest.mark.parametrize("rtol, atol", [(float("inf"), 0.0), (1e-6, float("inf")), (float("nan"), 0.0)])
def test_tolerances_must_be_finite(results, rtol, atol):
    with pytest.raises(ResultsError, match="finite non-negative"):
        compare(results, results, rtol=rtol, atol=atol)
