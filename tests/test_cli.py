"""The command line, through Typer's CliRunner and once through the installed `cnnexp` script."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnexp.cli import app
from tests.test_probe import NOTEBOOK

runner = CliRunner(env={"COLUMNS": "120"})
TINY = "name: tiny\nsweep:\n  d: 8\n  batch: 2\n  small_init: [1.0e-2, 1e-3]\n  seed: [0, 1]\n"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def test_sweep_writes_csv_meta_and_a_side_by_side_table(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml"])
    assert result.exit_code == 0, result.output
    lines = (in_tmp / "results" / "tiny.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 2
    assert (in_tmp / "results" / "tiny.meta.json").exists()
    assert "ratio" in result.stdout and "x_grad_norm" in result.stdout
    assert "wrote 8 rows" in result.stderr


def test_sweep_plot_draws_the_default_figure_beside_the_csv(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--plot"])
    assert result.exit_code == 0, result.output
    png = in_tmp / "results" / "tiny.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


def test_per_layer_rows_and_their_resume(in_tmp):
    args = ["sweep", "tiny.yaml", "--set", "depth=1,3", "--per-layer", "layers.csv"]
    assert runner.invoke(app, args).exit_code == 0
    import pandas as pd

    from cnnexp import load_results

    layers, rows = load_results("layers.csv"), load_results("results/tiny.csv")
    assert len(layers) == rows["depth"].sum()  # one row per run and block index
    first = layers[layers["block_index"] == 0].drop(columns="block_index").reset_index(drop=True)
    pd.testing.assert_series_equal(first["a1_grad_norm"], rows["a1_grad_norm"], check_names=False)
    # a torn per-layer file resumes to the same bytes
    full = (in_tmp / "layers.csv").read_bytes()
    csv_lines = (in_tmp / "results" / "tiny.csv").read_bytes().splitlines(keepends=True)
    (in_tmp / "results" / "tiny.csv").write_bytes(b"".join(csv_lines[:5]))
    assert runner.invoke(app, args).exit_code == 0
    assert (in_tmp / "layers.csv").read_bytes() == full
    # asking for per-layer rows only on a resume is refused
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "depth=1,3", "--per-layer", "other.csv"])
    assert result.exit_code == 2 and "without per-layer rows" in result.stderr


def test_sweep_resume_says_how_many_were_skipped(in_tmp):
    runner.invoke(app, ["sweep", "tiny.yaml"])
    result = runner.invoke(app, ["sweep", "tiny.yaml"])
    assert result.exit_code == 0 and "8 of 8 rows already there, skipped" in result.stderr


def test_set_and_out(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "seed=0,1,2", "--set", "d=4", "--out", "x/y.csv"])
    assert result.exit_code == 0, result.output
    lines = (in_tmp / "x" / "y.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3 * 2 and all(line.split(",")[1] == "4" for line in lines[1:])
    assert (in_tmp / "x" / "y.meta.json").exists()


def test_dry_run_lists_runs_and_writes_nothing(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--dry-run"])
    assert result.exit_code == 0
    assert "4 configurations x 2 blocks = 8 rows" in result.stdout
    assert not (in_tmp / "results").exists()


def test_a_foreign_csv_is_refused_and_left_alone(in_tmp):
    runner.invoke(app, ["sweep", "tiny.yaml"])
    before = (in_tmp / "results" / "tiny.csv").read_bytes()
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "seed=5"])
    assert result.exit_code == 2 and "different sweep definition" in result.stderr
    assert (in_tmp / "results" / "tiny.csv").read_bytes() == before
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "seed=5", "--overwrite"])
    assert result.exit_code == 0 and len((in_tmp / "results" / "tiny.csv").read_text().splitlines()) == 5


@pytest.mark.parametrize("args, words", [
    (["sweep", "nope.yaml"], ["nope.yaml", "no such file"]),
    (["sweep", "tiny.yaml", "--set", "sed=1"], ["unknown axis 'sed'", "did you mean 'seed'"]),
    (["sweep", "tiny.yaml", "--set", "batch=0"], ["--set batch", "at least 1"]),
    (["run", "--d", "0"], ["d", "at least 1"]),
    (["run", "--small-init", "-1"], ["small_init", "negative"]),
    (["run", "--blocks", "plain,foo"], ["unknown block 'foo'"]),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(in_tmp, args, words):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr
    assert not (in_tmp / "results").exists()


def test_bad_yaml_file_names_the_line(in_tmp):
    (in_tmp / "bad.yaml").write_text("sweep:\n  d: [1, 2]\n   seed: 1\n")
    result = runner.invoke(app, ["sweep", "bad.yaml"])
    assert result.exit_code == 2 and "bad.yaml: YAML error (line 3" in result.stderr


def test_run_prints_the_notebooks_numbers():
    result = runner.invoke(app, ["run", "--d", "256", "--batch", "64", "--small-init", "1e-4", "--seed", "123"])
    assert result.exit_code == 0
    assert "1.02284e-13" in result.stdout and "0.0156599" in result.stdout


def test_run_json_is_for_scripts():
    result = runner.invoke(app, ["run", "--json"])
    data = json.loads(result.stdout)
    assert data["config"] == {"d": 256, "batch": 64, "small_init": 1e-4, "seed": 123, "depth": 1,
                              "activation": "relu", "dtype": "float32", "alpha_init": 0.0}
    for block, expected in NOTEBOOK.items():
        assert data[block]["x_grad_norm"] == pytest.approx(expected["x_grad_norm"], rel=1e-5)


def test_installed_script_runs_a_sweep(tmp_path):
    script = shutil.which("cnnexp") or str(Path(__import__("sys").executable).parent / "cnnexp")
    (tmp_path / "tiny.yaml").write_text(TINY)
    done = subprocess.run([script, "sweep", "tiny.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "results" / "tiny.csv").read_text().splitlines()) == 9
    bad = subprocess.run([script, "sweep", "missing.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "missing.yaml" in bad.stderr
    # Typer's own usage errors are one line too
    for args, words in ((["sweep", "tiny.yaml", "--threads", "0"], "--threads"), (["sweep"], "Missing argument"),
                        (["run", "--d", "abc"], "'--d'"), (["nosuch"], "No such command")):
        bad = subprocess.run([script, *args], cwd=tmp_path, capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and words in bad.stderr, bad.stderr
        assert bad.stdout == "" and "Traceback" not in bad.stderr
    assert subprocess.run([script, "--help"], capture_output=True).returncode == 0
