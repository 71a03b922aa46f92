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

from cnnexp.analysis import (
    beyond_tolerance,
    compare,
    load_results,
    refuse_overwrite,
    relative_difference,
    split_columns,
    summary,
    write_csv,
)
from cnnexp.errors import CnnexpError, ResultsError
from cnnexp.results import ResultsFile, write_atomically, write_meta
from cnnexp.schema import AXES, CONFIG_COLUMNS, NET
from cnnexp.schema import STEP_METRICS as METRICS

COLUMNS = (*CONFIG_COLUMNS, *METRICS)  # the synthetic files here hold the study's metrics (no training metrics)


def make_rows(*, blocks=("plain", "residual"), small_inits=(1e-2, 1e-4), seeds=(0, 1, 2), extra=None,
              seed=0) -> list[dict]:
    """Result rows in the CSV layout, metrics drawn over many decades; `extra` adds axes after seed."""
    rng = np.random.default_rng(seed)
    extra = extra or {}
    rows = []
    for block, small_init, s, *more in itertools.product(blocks, small_inits, seeds, *extra.values()):
        row = {"block": block, **{a.name: a.default for a in AXES if a.study != NET}}
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
            ratios = got.loc[got["small_init"] == small_init, f"{m}_ratio"].tolist()
            assert ratios == pytest.approx([want, want], rel=1e-12)
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


@pytest.mark.parametrize("asked", [["x_grad_norm"], ["loss", "cos_x_out", "loss"]])
def test_summary_of_chosen_metrics_equals_pandas_groupby(results, asked):
    df = pd.read_csv(results)
    keys = [c for c in CONFIG_COLUMNS if c != "seed"]
    wanted = list(dict.fromkeys(asked))
    got = summary(results, asked)
    stats = [f"{m}_{s}" for m in wanted for s in ("mean", "std", "sem")]
    ratios = [f"{m}_ratio" for m in wanted if "_grad" in m]
    assert list(got.columns) == [*keys, *stats, "n", *ratios]
    mean = df.groupby(keys)[wanted].mean()
    for m in wanted:
        pd.testing.assert_series_equal(got.set_index(keys)[f"{m}_mean"], mean[m], check_names=False)


@pytest.mark.parametrize("asked, message", [
    (["speed"], "metrics speed: not a metric of .*init.csv \\(its metrics: loss, x_grad_norm"),
    (["seed"], "metrics seed: a configuration column of"),
])
def test_summary_refuses_a_name_that_is_not_a_metric(results, asked, message):
    with pytest.raises(ResultsError, match=message):
        summary(results, asked)


@pytest.mark.parametrize("column", ["n", "loss_mean"])
def test_summary_refuses_a_configuration_column_named_like_its_own_columns(tmp_path, column):
    path = write_results(tmp_path / "r.csv", make_rows(extra={column: [3]}))
    with pytest.raises(ResultsError, match=f"r.csv: configuration column '{column}' has the name of a summary column"):
        summary(path)


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
    with pytest.raises(ResultsError, match="metrics speed: not a metric"):
        compare(results, b, metrics=["speed"])


def test_compare_joins_on_the_shared_configuration_columns(results, tmp_path):
    b = write_results(tmp_path / "b.csv", make_rows(extra={"future_axis": [1]}))
    c = compare(results, b)
    assert c.agree and c.keys == CONFIG_COLUMNS and c.config_only == ((), ("future_axis",))
    two_depths = write_results(tmp_path / "c.csv", make_rows(extra={"future_axis": [1, 2]}))
    with pytest.raises(ResultsError, match="lines 2 and 3 collide on the columns both files have.*has future_axis"):
        compare(results, two_depths)


def test_compare_without_shared_configuration_columns_is_refused():
    a = pd.DataFrame({"x": [1], "loss": [1.0]})
    b = pd.DataFrame({"y": [1], "loss": [1.0]})
    with pytest.raises(ResultsError, match="share no configuration column"):
        compare(a, b)


def test_compare_refuses_negative_tolerance(results):
    with pytest.raises(CnnexpError, match="non-negative"):
        compare(results, results, rtol=-1)


def precision_pair(tmp_path, noise=1e-9):
    """A float32 file and a float64 file of the same runs, metrics apart by a relative `noise`."""
    rows32 = make_rows(extra={"dtype": ["float32"]})
    rows64 = [{**r, "dtype": "float64", **{m: r[m] * (1 + noise) for m in METRICS}} for r in rows32]
    return write_results(tmp_path / "f32.csv", rows32), write_results(tmp_path / "f64.csv", rows64)


def test_compare_ignore_joins_a_float32_file_with_a_float64_one(tmp_path):
    a, b = precision_pair(tmp_path, noise=1e-9)
    apart = compare(a, b)
    assert len(apart.only("a")) == len(apart.only("b")) == len(make_rows()) and apart.differing.empty
    c = compare(a, b, ignore=["dtype"])
    assert c.agree and "dtype" not in c.keys and c.ignored == ("dtype",) and len(c.joined) == len(make_rows())
    # with a tolerance tighter than the noise, rows differ as numpy.isclose says (a cosine's floor is rtol)
    strict = compare(a, b, ignore=["dtype"], rtol=1e-12)
    da, db = pd.read_csv(a), pd.read_csv(b)
    for m in METRICS:
        want = ~np.isclose(da[m], db[m], rtol=1e-12, atol=1e-12 if m == "cos_x_out" else 0.0)
        assert strict.by_metric.loc[m, "rows_beyond"] == want.sum()
    assert strict.by_metric.loc["loss", "rows_beyond"] == len(da)


def test_compare_ignore_that_makes_rows_collide_names_the_key(tmp_path):
    rows = make_rows(extra={"dtype": ["float32", "float64"]})
    a = write_results(tmp_path / "both.csv", rows)
    with pytest.raises(ResultsError, match="both.csv: lines 2 and 3 collide once dtype is ignored: both are "
                                           "block='plain', d=8, batch=4, small_init=0.01, seed=0"):
        compare(a, a, ignore=["dtype"])


@pytest.mark.parametrize("column, message", [
    ("colour", "ignore colour: no column of"),
    ("loss", "ignore loss: a metric \\(choose metrics with metrics\\)"),
])
def test_compare_ignore_refuses_what_is_not_a_configuration_column(results, column, message):
    with pytest.raises(ResultsError, match=message):
        compare(results, results, ignore=[column])


def with_values(tmp_path, name, metric, values):
    rows = make_rows()
    for row, v in zip(rows, values):
        row[metric] = float(v)
    return write_results(tmp_path / name, rows)


def test_default_floor_lets_cosine_noise_near_zero_agree(tmp_path):
    n = len(make_rows())
    cos_a = [1.0 - 1e-9 * i if i % 2 else 1e-24 * (i + 1) for i in range(n)]
    cos_b = [v if i % 2 else -3e-24 * (i + 1) for i, v in enumerate(cos_a)]  # noise of both signs near 0
    a, b = with_values(tmp_path, "a.csv", "cos_x_out", cos_a), with_values(tmp_path, "b.csv", "cos_x_out", cos_b)
    c = compare(a, b)
    assert c.agree and c.by_metric.loc["cos_x_out", "atol"] == 1e-6
    assert c.by_metric.loc["cos_x_out", "max_rel_diff"] > 1  # relative to the values, they are far apart
    exact = compare(a, b, atol=0.0)  # an explicit atol overrides every floor
    assert exact.by_metric.loc["cos_x_out", "rows_beyond"] == (~np.isclose(cos_a, cos_b, rtol=1e-6, atol=0)).sum()
    assert exact.by_metric.loc["cos_x_out", "rows_beyond"] == n // 2


def test_default_floor_keeps_norms_relative_at_every_scale(tmp_path):
    n = len(make_rows())
    norms_a = [10.0 ** -(20 * i) for i in range(n)]  # 1 down to 1e-220
    norms_b = [v * (2 if i == n - 1 else 1) for i, v in enumerate(norms_a)]
    c = compare(with_values(tmp_path, "a.csv", "x_grad_norm", norms_a),
                with_values(tmp_path, "b.csv", "x_grad_norm", norms_b))
    assert c.by_metric.loc["x_grad_norm", "atol"] == 0 and c.by_metric.loc["x_grad_norm", "rows_beyond"] == 1


def test_default_floor_of_a_signed_metric_is_rtol_times_its_largest_magnitude(tmp_path):
    rng = np.random.default_rng(3)
    n = len(make_rows())
    va = rng.normal(size=n) * 10.0 ** rng.integers(-12, 2, size=n)
    vb = va + rng.normal(size=n) * 1e-6
    c = compare(with_values(tmp_path, "a.csv", "loss", va), with_values(tmp_path, "b.csv", "loss", vb), rtol=1e-5)
    floor = 1e-5 * np.abs(np.concatenate([va, vb])).max()
    assert c.by_metric.loc["loss", "atol"] == floor
    assert c.by_metric.loc["loss", "rows_beyond"] == (~np.isclose(va, vb, rtol=1e-5, atol=floor)).sum()


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


@pytest.mark.parametrize("out", ["r.csv", "./r.csv", "sub/../r.csv", "r.csv.meta.json", "link.csv", "hard.csv"])
def test_write_csv_refuses_to_overwrite_an_input_or_its_provenance(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    results = write_results(tmp_path / "r.csv", make_rows(), meta={"fingerprint": "abc"})
    (tmp_path / "link.csv").symlink_to(results)
    (tmp_path / "hard.csv").hardlink_to(results)
    before = {p: p.read_bytes() for p in (results, tmp_path / "r.csv.meta.json")}
    with pytest.raises(ResultsError, match=f"out {out}: would overwrite the input"):
        write_csv(summary(results), out, inputs=[tmp_path / "other.csv", "r.csv"])
    assert {p: p.read_bytes() for p in before} == before


def test_refuse_overwrite_lets_other_paths_through(tmp_path):
    results = write_results(tmp_path / "r.csv", make_rows())
    refuse_overwrite(tmp_path / "r-summary.csv", [results])
    refuse_overwrite(tmp_path / "r.csv.meta.json.csv", [results])
    assert write_csv(summary(results), tmp_path / "s.csv", inputs=[results]).exists()


def test_an_unwritable_out_path_is_one_clear_error(results, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsError, match="file is not a folder"):
        write_csv(summary(results), tmp_path / "file" / "s.csv")  # a file where a directory should be


def test_a_row_given_twice_is_refused_not_counted_twice(tmp_path):
    rows = make_rows()
    path = write_results(tmp_path / "dup.csv", [*rows, rows[3]])
    with pytest.raises(ResultsError, match=r"dup.csv: lines 5 and 14 hold one configuration \(block='plain', d=8"):
        load_results(path)


def test_a_key_rewritten_in_another_form_is_the_same_configuration(tmp_path):
    path = write_results(tmp_path / "r.csv", make_rows())
    lines = path.read_text().splitlines()
    assert ",0.01,1," in lines[2]
    path.write_text("\n".join([*lines, lines[2].replace(",0.01,1,", ",1e-2,1,")]) + "\n")  # a hand edit
    with pytest.raises(ResultsError, match=f"lines 3 and {len(lines) + 1} hold one configuration"):
        load_results(path)


def edited(tmp_path, column: str, line: int, text: str):
    """A results file with the cell of `column` on file line `line` (header = 1) replaced by `text`."""
    path = write_results(tmp_path / "r.csv", make_rows())
    lines = path.read_text().splitlines()
    cells = lines[line - 1].split(",")
    cells[lines[0].split(",").index(column)] = text
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("column, text, message", [
    ("loss", "oops", "column loss is not numeric; line 4 has 'oops'"),
    ("x_grad_norm", "9" * 400, "column x_grad_norm, line 4: '99999.*' \\(400 characters\\) is beyond the float range"),
    ("cos_x_out", "1e999", "column cos_x_out, line 4: '1e999' is beyond the float range"),
    ("block", "PLAIN", "line 4 has block 'PLAIN', not one of plain, residual"),
    ("seed", "", "line 4 has no value in column seed"),
])
def test_a_damaged_cell_is_refused_naming_file_line_and_value(tmp_path, column, text, message):
    with pytest.raises(ResultsError, match=f"r.csv: {message}"):
        load_results(edited(tmp_path, column, 4, text))


def test_a_column_of_integers_even_beyond_int64_reads_as_floats(tmp_path):
    path = write_results(tmp_path / "r.csv", make_rows())
    df = pd.read_csv(path)
    df["loss"] = [2**64 - 1, *range(1, len(df))]  # what a hand edit or another tool might leave
    df.to_csv(path, index=False)
    got = load_results(path)["loss"]
    assert got.dtype == np.float64 and got.tolist() == [float(2**64 - 1), *map(float, range(1, len(df)))]


def test_infinity_written_as_inf_is_kept(tmp_path):
    assert load_results(edited(tmp_path, "loss", 4, "inf"))["loss"].iloc[2] == math.inf


def test_a_short_junk_line_is_refused_not_padded(tmp_path):
    path = write_results(tmp_path / "r.csv", make_rows())
    path.write_text(path.read_text() + "junk\n")
    with pytest.raises(ResultsError, match=f"line {len(make_rows()) + 2} has no value in column d"):
        load_results(path)


@pytest.mark.parametrize("text", ["[1, 2]", '"a string"', "3"])
def test_provenance_that_is_not_an_object_is_one_clear_error(results, text):
    from cnnexp.results import existing_meta_path

    existing_meta_path(results).write_text(text)
    with pytest.raises(ResultsError, match=f"{existing_meta_path(results).name}: "):
        load_results(results)


@pytest.mark.parametrize("rtol, atol", [(float("inf"), 0.0), (1e-6, float("inf")), (float("nan"), 0.0)])
def test_tolerances_must_be_finite(results, rtol, atol):
    with pytest.raises(ResultsError, match="finite non-negative"):
        compare(results, results, rtol=rtol, atol=atol)


def test_a_networks_results_leave_small_init_empty_only_for_other_inits(tmp_path):
    rows = [{"block": "plain", "net": "n", "input": "3", "batch": 2, "init": init, "small_init": small, "bn": "on",
             "zero_residual": False, "dtype": "float32", "seed": 0, "loss": 1.0, "x_grad_norm": 1.0, "w_norm": 1.0,
             "param_grad_norm": 1.0} for init, small in (("small", 0.1), ("kaiming", None))]
    df = load_results(write_results(tmp_path / "n.csv", rows))
    assert list(df["init"]) == ["small", "kaiming"] and df["small_init"].isna().tolist() == [False, True]
    rows[0]["small_init"] = None
    with pytest.raises(ResultsError, match="line 2 has no value in column small_init"):
        load_results(write_results(tmp_path / "m.csv", rows))


def test_select_keeps_the_rows_matching_every_condition_numbers_as_numbers(results):
    from cnnexp.analysis import select

    df = load_results(results)
    kept = select(df, ["block=plain", "small_init=1e-2,0.0001", "seed=0,2"])
    want = df[(df["block"] == "plain") & df["small_init"].isin([1e-2, 1e-4]) & df["seed"].isin([0, 2])]
    assert kept.drop(columns=[]).equals(want.reset_index(drop=True)) and len(kept) == 4
    assert kept.attrs == df.attrs
    with pytest.raises(ResultsError, match=r"where small_init=0.5: no row of .* has it \(small_init there: 0.01, "
                                           r"0.0001\)"):
        select(df, ["small_init=0.5"])
    with pytest.raises(ResultsError, match="'loss' is not a configuration column"):
        select(df, ["loss=1"])
    with pytest.raises(ResultsError, match="expected AXIS=VALUE"):
        select(df, ["block"])
