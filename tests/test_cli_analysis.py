"""`cnnexp compare`, `summary` and `plot` through Typer's CliRunner: exit codes, output, files, errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cnnexp.cli import app
from cnnexp.schema import CONFIG_COLUMNS, STEP_METRICS as METRICS
from tests.test_analysis import make_rows, write_results

runner = CliRunner()


def cnnexp(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *words):
    """Exit 2 with a single stderr line naming `words`, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture
def a(tmp_path):
    return write_results(tmp_path / "a.csv", make_rows())


def variant(tmp_path, rows, name="b.csv"):
    return write_results(tmp_path / name, rows)


def scaled(metric, factor, row=2):
    rows = make_rows()
    rows[row][metric] *= factor
    return rows


# --- compare --------------------------------------------------------------------------------------


def test_compare_identical_files_exits_0(a, tmp_path):
    result = cnnexp("compare", a, variant(tmp_path, make_rows()))
    assert result.exit_code == 0 and "agree" in result.stdout


def test_compare_a_metric_off_by_a_tenth_of_a_percent(a, tmp_path):
    b = variant(tmp_path, scaled("param_grad_norm", 1.001))
    strict = cnnexp("compare", a, b, "--rtol", "1e-6")
    assert strict.exit_code == 1
    assert "differ: param_grad_norm (1 row beyond tolerance)" in strict.stdout
    assert all(f"{m} (" not in strict.stdout for m in METRICS if m != "param_grad_norm")
    assert cnnexp("compare", a, b, "--rtol", "1e-2").exit_code == 0
    assert cnnexp("compare", a, b, "--metric", "loss,w_norm").exit_code == 0
    assert cnnexp("compare", a, b, "--atol", "1").exit_code == 0


def test_compare_rows_missing_on_one_side_exit_1(a, tmp_path):
    result = cnnexp("compare", a, variant(tmp_path, make_rows()[:-2]))
    assert result.exit_code == 1 and "2 rows only in A" in result.stdout


def test_compare_out_writes_the_joined_comparison(a, tmp_path):
    b = variant(tmp_path, scaled("loss", 1.5))
    assert cnnexp("compare", a, b, "--out", tmp_path / "cmp.csv").exit_code == 1
    joined = pd.read_csv(tmp_path / "cmp.csv")
    assert list(joined.columns[:len(CONFIG_COLUMNS) + 1]) == [*CONFIG_COLUMNS, "status"] and len(joined) == len(make_rows())
    [row] = joined[joined["status"] == "differs"].to_dict("records")
    want = make_rows()[2]["loss"]
    assert row["loss_a"] == want and row["loss_b"] == want * 1.5 and row["loss_rel_diff"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("text, words", [
    ("a,b\n1,2\n", ["not a cnnexp results file", "block", "loss"]),
    ("", ["is empty"]),
])
def test_compare_a_non_results_file_exits_2_without_writing(a, tmp_path, text, words):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    one_line_error(cnnexp("compare", a, bad, "--out", tmp_path / "cmp.csv"), str(bad), *words)
    assert not (tmp_path / "cmp.csv").exists()


def test_compare_bad_flags_exit_2(a):
    one_line_error(cnnexp("compare", a, a, "--metric", "speed"), "--metric speed")
    one_line_error(cnnexp("compare", a, a, "--rtol", "-1"), "rtol=-1")
    one_line_error(cnnexp("compare", a, a.with_name("nope.csv")), "nope.csv: no such file")


# --- summary --------------------------------------------------------------------------------------


def test_summary_out_equals_pandas_groupby(a, tmp_path):
    result = cnnexp("summary", a, "--out", tmp_path / "s.csv")
    assert result.exit_code == 0 and "residual / plain" in result.stdout
    got = pd.read_csv(tmp_path / "s.csv")
    keys = ["block", "d", "batch", "small_init"]
    g = pd.read_csv(a).groupby(keys)[list(METRICS)]
    want = pd.concat([g.mean().add_suffix("_mean"), g.std(ddof=1).add_suffix("_std"),
                      g.count()[["loss"]].rename(columns={"loss": "n"})], axis=1).reset_index()
    pd.testing.assert_frame_equal(got[want.columns], want)  # exact: the CSV holds repr floats
    np.testing.assert_allclose(got["loss_sem"], want["loss_std"] / np.sqrt(want["n"]), rtol=1e-13)


def test_summary_shows_a_dash_for_the_std_of_one_seed(tmp_path):
    result = cnnexp("summary", variant(tmp_path, make_rows(seeds=(5,))))
    assert result.exit_code == 0 and "—" in result.stdout and "nan" not in result.stdout


def test_summary_of_a_non_numeric_metric_exits_2(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("block,seed,loss,x_grad_norm,a1_grad_norm,w_norm,param_grad_norm\nplain,0,1,2,3,4,high\n")
    one_line_error(cnnexp("summary", path, "--out", tmp_path / "s.csv"), "param_grad_norm", "not numeric")
    assert not (tmp_path / "s.csv").exists()


# --- --out never replaces an input ------------------------------------------------------------------


@pytest.mark.parametrize("command, out", [
    ("summary", "a.csv"), ("summary", "a.meta.json"), ("compare", "a.csv"), ("compare", "b.csv"),
    ("compare", "b.meta.json"),
])
def test_out_that_is_an_input_exits_2_and_changes_nothing(tmp_path, monkeypatch, command, out):
    monkeypatch.chdir(tmp_path)
    write_results(tmp_path / "a.csv", make_rows(), meta={"fingerprint": "abc"})
    b = write_results(tmp_path / "b.csv", make_rows(), meta={"fingerprint": "abc"})
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    inputs = ["./a.csv"] if command == "summary" else ["./a.csv", b]
    result = cnnexp(command, *inputs, "--out", out)
    one_line_error(result, f"--out {out}", "would overwrite the input")
    assert result.stdout == "" and {p: p.read_bytes() for p in tmp_path.iterdir()} == before


# --- plot -----------------------------------------------------------------------------------------


def test_plot_writes_a_png(a, tmp_path):
    result = cnnexp("plot", a, "--x", "small_init", "--y", "x_grad_norm", "--y", "loss", "--out", tmp_path / "f.png")
    assert result.exit_code == 0 and result.stdout == ""
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "f.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, words", [
    (["--y", "speed"], ["--y speed", "no such column"]),
    (["--x", "block"], ["column block is not numeric"]),
    (["--out", "f.gif"], ["unknown figure format '.gif'"]),
])
def test_plot_bad_input_exits_2(a, args, words):
    one_line_error(cnnexp("plot", a, *args), *words)


def test_plot_of_a_per_layer_file_chooses_its_axes(tmp_path):
    from tests.test_plot import layer_rows

    path = write_results(tmp_path / "depth.layers.csv", layer_rows())
    result = cnnexp("plot", path)
    want = tmp_path / "depth.layers_out_grad_norm_vs_block_index.png"
    assert result.exit_code == 0 and result.stderr == f"wrote {want}\n", result.output
    assert want.read_bytes()[:4] == b"\x89PNG"


def test_plot_of_an_empty_file_exits_2(tmp_path):
    (tmp_path / "e.csv").write_text("")
    one_line_error(cnnexp("plot", tmp_path / "e.csv"), "e.csv", "empty")


# --- the process ------------------------------------------------------------------------------------


def test_cli_module_does_not_import_pandas_or_matplotlib():
    code = "import sys, cnnexp.cli; print(sorted({'pandas', 'matplotlib'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_compare_exit_status_as_a_process(a, tmp_path):
    b = variant(tmp_path, scaled("loss", 2.0))
    r = subprocess.run([sys.executable, "-m", "cnnexp", "compare", str(a), str(b)], capture_output=True, text=True)
    assert r.returncode == 1 and "loss" in r.stdout and r.stderr == ""
