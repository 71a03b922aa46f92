"""`cnnexp compare`, `summary` and `plot` through Typer's CliRunner: exit codes, output, files, errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cnnexp.cli import app
from cnnexp.schema import CONFIG_COLUMNS
from cnnexp.schema import STEP_METRICS as METRICS
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
    assert list(joined.columns[:len(CONFIG_COLUMNS) + 1]) == [*CONFIG_COLUMNS, "status"]
    assert len(joined) == len(make_rows())
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
    one_line_error(cnnexp("compare", a, a, "--rtol", "-1"), "--rtol -1: must be a finite non-negative number")
    one_line_error(cnnexp("compare", a, a.with_name("nope.csv")), "nope.csv: no such file")


def test_compare_ignore_dtype_pairs_a_float32_file_with_a_float64_one(tmp_path):
    rows32 = make_rows()
    rows64 = [{**r, "dtype": "float64", "loss": r["loss"] * (1 + 1e-9)} for r in rows32]
    a, b = variant(tmp_path, rows32, "f32.csv"), variant(tmp_path, rows64, "f64.csv")
    apart = cnnexp("compare", a, b)
    assert apart.exit_code == 1 and f"{len(rows32)} rows only in A" in apart.stdout
    joined = cnnexp("compare", a, b, "--ignore", "dtype", "--out", tmp_path / "c.csv")
    assert joined.exit_code == 0 and "ignored: dtype" in joined.stdout, joined.stdout
    got = pd.read_csv(tmp_path / "c.csv")
    assert "dtype" not in got.columns and (got["status"] == "same").all() and len(got) == len(rows32)
    assert (got["dtype_a"] == "float32").all() and (got["dtype_b"] == "float64").all()  # the pairing, visible
    keys = [c for c in CONFIG_COLUMNS if c != "dtype"]
    paired = got.merge(pd.read_csv(b), on=keys)
    np.testing.assert_array_equal(paired["loss_b"], paired["loss"])


def test_compare_ignore_that_makes_rows_collide_is_one_line(tmp_path):
    both = variant(tmp_path, make_rows() + [{**r, "dtype": "float64"} for r in make_rows()], "both.csv")
    one_line_error(cnnexp("compare", both, both, "--ignore", "dtype"), "both.csv", "collide once dtype is ignored",
                   "block='plain'", "seed=0")


def test_compare_cosine_noise_near_zero_agrees_by_default_and_differs_with_atol_0(a, tmp_path):
    rows = make_rows()
    rows_a, rows_b = [{**r, "cos_x_out": 1e-24} for r in rows], [{**r, "cos_x_out": -2e-24} for r in rows]
    a, b = variant(tmp_path, rows_a, "ca.csv"), variant(tmp_path, rows_b, "cb.csv")
    assert cnnexp("compare", a, b).exit_code == 0
    strict = cnnexp("compare", a, b, "--atol", "0")
    assert strict.exit_code == 1 and f"cos_x_out ({len(rows)} rows beyond tolerance)" in strict.stdout


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


def test_summary_metric_limits_the_tables_and_the_csv(a, tmp_path):
    result = cnnexp("summary", a, "--metric", "loss", "--metric", "x_grad_norm,loss", "--out", tmp_path / "s.csv")
    assert result.exit_code == 0
    assert result.stdout.count(" mean ") == 2 and "param_grad_norm" not in result.stdout
    got = pd.read_csv(tmp_path / "s.csv")
    assert [c for c in got.columns if c.endswith("_mean")] == ["loss_mean", "x_grad_norm_mean"]
    keys = ["block", "d", "batch", "small_init"]
    want = pd.read_csv(a).groupby(keys)["x_grad_norm"].mean().to_numpy()
    np.testing.assert_array_equal(got["x_grad_norm_mean"], want)


@pytest.mark.parametrize("args, words", [
    (["--metric", "speed"], ["--metric speed: not a metric", "its metrics: loss"]),
    (["--metric", "seed"], ["--metric seed: a configuration column"]),
])
def test_summary_bad_metric_exits_2(a, args, words):
    one_line_error(cnnexp("summary", a, *args), *words)


def test_summary_of_a_file_with_a_column_named_n_is_one_line(tmp_path):
    path = variant(tmp_path, make_rows(extra={"n": [3]}), "withn.csv")
    one_line_error(cnnexp("summary", path), "withn.csv", "column 'n'", "rename it")


@pytest.mark.parametrize("cell, words", [
    ("oops", ["line 4 has 'oops'", "loss"]),
    ("9" * 400, ["line 4", "loss", "beyond the float range", "400 characters"]),
    ("1" + "0" * 40, []),  # a big integer within the float range is a number
])
@pytest.mark.parametrize("command", ["summary", "plot", "compare"])
def test_damaged_metric_cells_are_one_line_in_every_command(tmp_path, command, cell, words):
    path = variant(tmp_path, make_rows(), "r.csv")
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[lines[0].split(",").index("loss")] = cell
    path.write_text("\n".join([*lines[:3], ",".join(cells), *lines[4:]]) + "\n")
    args = {"summary": [path], "plot": [path, "--out", tmp_path / "f.png"], "compare": [path, path]}[command]
    result = cnnexp(command, *args)
    if words:
        one_line_error(result, "r.csv", *words)
    else:
        assert result.exit_code == 0, result.output


# --- --out never replaces an input ------------------------------------------------------------------


@pytest.mark.parametrize("command, out", [
    ("summary", "a.csv"), ("summary", "a.csv.meta.json"), ("compare", "a.csv"), ("compare", "b.csv"),
    ("compare", "b.csv.meta.json"),
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
    (["--out", "f.gif"], ["'.gif'"]),
    (["--dpi", "0"], ["--dpi 0.0: must be a positive number"]),
    (["--dpi", "nan"], ["--dpi nan"]),
    (["--dpi", "1e6"], ["pixels, over 50,000,000"]),
])
def test_plot_bad_input_exits_2(a, tmp_path, args, words):
    one_line_error(cnnexp("plot", a, "--out", tmp_path / "f.png", *args), *words)
    assert not (tmp_path / "f.png").exists()


def test_plot_empty_facet_and_dpi(tmp_path):
    from matplotlib.image import imread

    from tests.test_plot import depth_rows

    path = write_results(tmp_path / "depth.csv", depth_rows())
    for dpi in (40, 80):
        result = cnnexp("plot", path, "--facet", "", "--dpi", dpi, "--out", tmp_path / f"f{dpi}.png")
        assert result.exit_code == 0, result.output
    small, large = imread(tmp_path / "f40.png"), imread(tmp_path / "f80.png")
    assert abs(large.shape[1] - 2 * small.shape[1]) <= 2
    with_facets = cnnexp("plot", path, "--dpi", 40, "--out", tmp_path / "g.png")
    assert with_facets.exit_code == 0 and imread(tmp_path / "g.png").shape[1] > 1.5 * small.shape[1]  # two panels wide


def test_plot_facet_with_too_many_panels_is_one_line(tmp_path):
    from tests.test_plot import layer_rows

    path = write_results(tmp_path / "depth.layers.csv", layer_rows())
    one_line_error(cnnexp("plot", path, "--facet", "out_grad_norm"), "--facet out_grad_norm", "panels", "more than 24")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.layers.csv"]


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


# --- tables in a narrow terminal ---------------------------------------------------------------------


def at_width(tables, width: int) -> list[str]:
    """The tables as a terminal of `width` columns shows them, without their title lines."""
    import io

    from rich.console import Console

    from cnnexp import render

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=None, markup=False)
    titles = {line for t in tables for line in (t.title or "").splitlines()}
    for table in tables:
        render.show(console, table)
    return [line for line in buffer.getvalue().splitlines() if line not in titles]


def test_summary_of_a_grid_fits_a_terminal_of_60_columns(tmp_path):
    from cnnexp import render
    from cnnexp.analysis import summary

    rows = make_rows(small_inits=(1e-1, 1e-2, 1e-4, 1e-6), extra={"d": [32, 256], "batch": [16, 64], "depth": [1, 20]})
    table = summary(variant(tmp_path, rows, "grid.csv"), ["x_grad_norm", "loss"])
    narrow = at_width(render.summary_tables(table, width=60), 60)
    assert max(map(len, narrow)) <= 60 and "sem (std / sqrt(n)) left out to fit the terminal" in "\n".join(narrow)
    wide = at_width(render.summary_tables(table), 200)
    assert any(" sem" in line for line in wide) and not any("left out" in line for line in wide)
    # every mean is on screen, to 4 digits, whatever the width
    for m in ("x_grad_norm", "loss"):
        assert all(any(f"{v:.4g}" in line for line in narrow) for v in table[f"{m}_mean"])


def test_comparison_tables_fit_60_columns(a, tmp_path):
    from cnnexp import render
    from cnnexp.analysis import compare

    rows = make_rows()
    rows[2]["loss"] *= 1 + 1e-12  # apart only in the 13th digit: shown to 13 digits, not 17
    lines = at_width(render.comparison_tables(compare(a, variant(tmp_path, rows), rtol=1e-14)), 60)
    assert max(map(len, lines)) <= 60, "\n".join(lines)
    want = make_rows()[2]["loss"]
    assert f"{want:.13g}" in "\n".join(lines) and f"{want * (1 + 1e-12):.13g}" in "\n".join(lines)


# --- hand-edited and damaged files: exit 0 or 2, one line, never a traceback -----------------------------

CELLS = st.one_of(
    st.sampled_from(["", "oops", "nan", "inf", "-inf", "1e999", "-1e-400", "9" * 400, "PLAIN", "0x10", "1_000",
                     "True", "1e-2", "\"a,b\"", "  7 ", "ñ", "[1]", str(2**64), str(-(2**70))]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"), max_size=12),
)


@settings(max_examples=60, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 15), CELLS), min_size=1, max_size=4),
       command=st.sampled_from(["summary", "compare"]))
def test_a_damaged_results_file_gives_exit_0_or_2_and_at_most_one_line(tmp_path_factory, edits, command):
    tmp = tmp_path_factory.mktemp("fuzz")
    path = variant(tmp, make_rows(), "r.csv")
    lines = [line.split(",") for line in path.read_text().splitlines()]
    for row, column, text in edits:  # row 0 is the header
        cells = lines[row % len(lines)]
        cells[column % len(cells)] = text
    path.write_text("\n".join(",".join(cells) for cells in lines) + "\n")
    result = cnnexp(command, *([path] if command == "summary" else [path, path]))
    assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        one_line_error(result)


# --- every --out is checked before any work (devices made here, never the real /dev/null) -------------


@pytest.mark.parametrize("command", ["summary", "compare", "plot"])
def test_out_onto_a_device_or_fifo_is_refused_and_the_node_kept(a, tmp_path, command):
    import os
    import stat

    device = tmp_path / ("null.png" if command == "plot" else "null.csv")
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    fifo = tmp_path / ("pipe.png" if command == "plot" else "pipe.csv")
    os.mkfifo(fifo)
    inputs = [a, a] if command == "compare" else [a]
    for node, kind in ((device, "a character device"), (fifo, "a FIFO")):
        one_line_error(cnnexp(command, *inputs, "--out", node), f"--out {node}: is {kind}")
        assert not stat.S_ISREG(node.stat().st_mode)
    assert stat.S_ISCHR(device.stat().st_mode) and os.major(device.stat().st_rdev) == 1


@pytest.mark.parametrize("command, out, words", [
    ("summary", "s.json", ["--out s.json: unknown or unwritten format '.json' (.json is JSON)", "e.g. s.csv"]),
    ("compare", "c.parquet", ["--out c.parquet", "Parquet"]),
    ("plot", "f.csv", ["--out f.csv: unknown format '.csv'", ".png, .svg, .pdf"]),
    ("summary", "missing/s.csv", ["the folder missing does not exist"]),
])
def test_out_of_another_format_or_folder_is_refused(a, tmp_path, monkeypatch, command, out, words):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    one_line_error(cnnexp(command, *([a, a] if command == "compare" else [a]), "--out", out), *words)
    assert sorted(tmp_path.iterdir()) == before


def test_summary_out_never_replaces_a_results_file_without_overwrite(a, tmp_path):
    other = write_results(tmp_path / "other.csv", make_rows())
    before = other.read_bytes()
    one_line_error(cnnexp("summary", a, "--out", other), f"--out {other}: exists and was not written by this "
                                                          "command; use --overwrite")
    assert other.read_bytes() == before
    compared = cnnexp("compare", a, a, "--out", other)
    assert compared.exit_code == 2 and other.read_bytes() == before
    assert cnnexp("summary", a, "--out", other, "--overwrite").exit_code == 0
    assert "x_grad_norm_mean" in other.read_text()
    assert cnnexp("summary", a, "--out", other).exit_code == 0  # now it is a summary: rewriting it is fine
    assert cnnexp("compare", a, a, "--out", tmp_path / "c.csv").exit_code == 0
    assert cnnexp("compare", a, a, "--out", tmp_path / "c.csv").exit_code == 0


@pytest.mark.parametrize("meta", ['[1, 2]', '"text"', '{"columns": 7}', '{"columns": [1]}', '{"environment": 3}'])
@pytest.mark.parametrize("command", ["summary", "compare", "plot"])
def test_a_damaged_provenance_is_one_line_in_every_analysis(a, tmp_path, meta, command):
    (tmp_path / "a.csv.meta.json").write_text(meta)
    before = sorted(tmp_path.iterdir())
    one_line_error(cnnexp(command, *([a, a] if command == "compare" else [a])), "a.csv.meta.json",
                   "provenance file")
    assert sorted(tmp_path.iterdir()) == before


def test_where_filters_summary_fit_plot_and_compare(tmp_path):
    import json

    from cnnexp.analysis import load_results, select, summary

    path = write_results(tmp_path / "r.csv", make_rows())
    for args in (["summary", str(path), "--where", "block=plain", "--metric", "loss"],
                 ["fit", str(path), "--x", "small_init", "--where", "block=plain", "--json"],
                 ["plot", str(path), "--where", "block=plain", "--out", str(tmp_path / "p.png")],
                 ["compare", str(path), str(path), "--where", "seed=1"]):
        result = cnnexp(*args)
        assert result.exit_code == 0, result.output
    fits = json.loads(cnnexp("fit", str(path), "--x", "small_init", "--where", "block=plain", "--json").stdout)
    assert {f["block"] for f in fits} == {"plain"}
    assert summary(path, ["loss"], where=["block=plain"]).equals(summary(select(load_results(path), ["block=plain"]),
                                                                         ["loss"]))
    one_line_error(cnnexp("summary", str(path), "--where", "seed=9"), "--where seed=9: no row of")


def test_several_files_read_as_one_with_a_source_column_where_their_sweeps_differ(tmp_path):
    import pandas as pd

    from cnnexp.analysis import load_many, load_results, summary

    a = write_results(tmp_path / "a.csv", make_rows(seeds=(0, 1)), meta={"sweep": {"name": "a", "seed": [0, 1]}})
    b = write_results(tmp_path / "b.csv", make_rows(seeds=(2, 3), seed=1), meta={"sweep": {"name": "b"}})
    both = load_many([a, b])
    want = pd.concat([load_results(a), load_results(b)], ignore_index=True)
    assert list(both["source"]) == ["a.csv"] * len(load_results(a)) + ["b.csv"] * len(load_results(b))
    assert both.drop(columns="source").equals(want[both.drop(columns="source").columns])
    table = summary([a, b], ["loss"])
    assert set(table["source"]) == {"a.csv", "b.csv"} and (table["n"] == 2).all()
    result = cnnexp("summary", a, b, "--metric", "loss")
    assert result.exit_code == 0 and "source" in result.stdout
    assert cnnexp("fit", a, b, "--x", "small_init", "--json").exit_code == 0
    plotted = cnnexp("plot", a, b)
    assert plotted.exit_code == 0 and (tmp_path / "a+1_x_grad_norm_param_grad_norm_vs_small_init.png").is_file()
    one_line_error(cnnexp("summary", a, a), "two rows hold one configuration")
