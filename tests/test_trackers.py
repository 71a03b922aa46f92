"""Logging results to MLflow and TensorBoard, read back with each tracker's own reader: every row's params and
metrics equal to the CSV, curve histories complete, nothing logged twice, a changed row reported, bad targets
refused in one line."""
import csv
import json
import time

import pytest
from typer.testing import CliRunner

from cnnexp.cli import app

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

runner = CliRunner()
SWEEP = "name: tiny\nsweep:\n  d: 8\n  batch: 2\n  small_init: [1.0e-1, 1.0e-2]\n  seed: [0, 1]\n  steps: 3\n"


@pytest.fixture
def swept(tmp_path, monkeypatch):
    """A small training sweep with its per-layer and curve files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(SWEEP)
    (tmp_path / "results").mkdir()
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--per-layer", "results/layers.csv",
                                 "--curve", "results/curve.csv"])
    assert result.exit_code == 0, result.output
    return tmp_path


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mlflow_runs(tmp_path, name="tiny"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'tiny.csv'}.mlflow.db")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return client, [r for r in runs if not r.info.run_name.endswith("(files)")]


CONFIG = ["block", "d", "batch", "small_init", "seed", "depth", "activation", "dtype", "alpha_init", "steps", "lr",
          "target"]


def test_mlflow_holds_every_row_to_the_bit_with_its_curve_and_layers(swept):
    result = runner.invoke(app, ["log", "results/tiny.csv", "--to", "mlflow"])
    assert result.exit_code == 0, result.output
    assert "logged 8 rows (0 already there)" in result.stderr
    client, runs = mlflow_runs(swept)
    rows, curve, layers = read("results/tiny.csv"), read("results/curve.csv"), read("results/layers.csv")
    assert len(runs) == len(rows) == 8
    by_params = {tuple(r.data.params[c] for c in CONFIG): r for r in runs}
    for row in rows:
        run = by_params[tuple(row[c] for c in CONFIG)]
        assert run.data.params == {c: row[c] for c in CONFIG} and run.info.status == "FINISHED"
        for metric in ("loss", "x_grad_norm", "a1_grad_norm", "w_norm", "param_grad_norm", "cos_x_out",
                       "initial_loss"):
            assert run.data.metrics[metric] == float(row[metric])  # to the last bit
        assert "steps_to_fit" not in run.data.metrics  # an empty cell is no metric
        mine = [c for c in curve if all(c[k] == row[k] for k in CONFIG)]
        history = client.get_metric_history(run.info.run_id, "curve/loss")
        assert sorted((h.step, h.value) for h in history) == sorted((int(c["step"]), float(c["loss"])) for c in mine)
        assert len(mine) == 4  # steps 0, 1, 2, 3
        [layer] = [r for r in layers if all(r[k] == row[k] for k in CONFIG)]
        assert run.data.metrics["layer/0/out_grad_norm"] == float(layer["out_grad_norm"])


def test_logging_again_or_after_a_resumed_sweep_logs_nothing_twice(swept):
    assert runner.invoke(app, ["log", "results/tiny.csv", "--to", "mlflow"]).exit_code == 0
    again = runner.invoke(app, ["log", "results/tiny.csv", "--to", "mlflow"])
    assert again.exit_code == 0 and "logged 0 rows (8 already there)" in again.stderr
    # a sweep killed after its rows were logged but before the last three reached the CSV, resumed with --log
    path = swept / "results" / "tiny.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))
    resumed = runner.invoke(app, ["sweep", "tiny.yaml", "--log", "mlflow", "--per-layer", "results/layers.csv",
                                  "--curve", "results/curve.csv"])
    assert resumed.exit_code == 0, resumed.output
    _, runs = mlflow_runs(swept)
    assert len(runs) == 8 and len({r.data.tags["cnnexp.key"] for r in runs}) == 8


def test_a_run_left_unfinished_is_replaced_and_a_changed_row_is_reported_not_overwritten(swept):
    assert runner.invoke(app, ["log", "results/tiny.csv", "--to", "mlflow"]).exit_code == 0
    client, runs = mlflow_runs(swept)
    first = runs[0]
    client.set_terminated(first.info.run_id, "RUNNING")  # as a kill mid-log leaves it
    result = runner.invoke(app, ["log", "results/tiny.csv", "--to", "mlflow"])
    assert result.exit_code == 0 and "logged 1 rows (7 already there)" in result.stderr
    rows = read("results/tiny.csv")
    rows[0]["loss"] = repr(float(rows[0]["loss"]) * (1 + 1e-15))
    with open("results/tiny.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    changed = runner.invoke(app, ["log", "results/tiny.csv", "--to", "mlflow"])
    assert changed.exit_code == 1 and "differs: block=plain,d=8" in changed.stderr
    _, after = mlflow_runs(swept)
    assert len(after) == 8 and float(rows[0]["loss"]) not in [r.data.metrics["loss"] for r in after]


def test_tensorboard_holds_a_run_per_row_with_hparams_and_writes_no_event_twice(swept):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = runner.invoke(app, ["log", "results/tiny.csv", "--to", "tensorboard:runs"])
    assert result.exit_code == 0, result.output
    runs = sorted(p for p in (swept / "runs").iterdir())
    rows = read("results/tiny.csv")
    assert len(runs) == len(rows) == 8
    for row in rows:
        name = ",".join(f"{c}={row[c]}" for c in CONFIG)
        ea = EventAccumulator(str(swept / "runs" / name))
        ea.Reload()
        for metric in ("loss", "x_grad_norm", "param_grad_norm"):
            [event] = ea.Scalars(metric)
            assert event.value == pytest.approx(float(row[metric]), rel=1e-7)  # stored as float32
        assert [e.step for e in ea.Scalars("curve/loss")] == [0, 1, 2, 3]
        assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(ea.PluginTagToContent("hparams"))
    files = {p: p.stat().st_size for p in (swept / "runs").rglob("*")}
    again = runner.invoke(app, ["log", "results/tiny.csv", "--to", "tensorboard:runs"])
    assert again.exit_code == 0 and "logged 0 rows (8 already there)" in again.stderr
    assert {p: p.stat().st_size for p in (swept / "runs").rglob("*")} == files


def test_a_sweep_with_log_logs_each_row_as_the_log_command_would(swept):
    (swept / "results" / "tiny.csv").unlink()
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--overwrite", "--log", "tensorboard:live",
                                 "--per-layer", "results/layers.csv", "--curve", "results/curve.csv"])
    assert result.exit_code == 0, result.output
    assert len(list((swept / "live").iterdir())) == 8
    again = runner.invoke(app, ["log", "results/tiny.csv", "--to", "tensorboard:live"])
    assert again.exit_code == 0 and "logged 0 rows (8 already there)" in again.stderr
    marker = json.loads(next((swept / "live").iterdir()).joinpath("cnnexp-row.json").read_text())
    assert set(marker) == {"config", "metrics", "values"}


@pytest.mark.parametrize("target, message", [
    ("wandb:project", "unknown tracker 'wandb'"),
    ("tensorboard:", "tensorboard needs a folder"),
    ("tensorboard:afile/runs", "tensorboard:afile/runs: cannot make the folder"),
    ("mlflow:sqlite:///nowhere/m.db", "does not exist or is not writable"),
    ("mlflow:ftp://host", "unknown tracking URI"),
    ("mlflow:http://127.0.0.1:9", "the tracking server does not answer"),
])
def test_a_bad_target_is_one_line_exit_2_and_the_sweep_writes_nothing(swept, target, message):
    (swept / "afile").write_text("not a folder")
    started = time.monotonic()
    result = runner.invoke(app, ["log", "results/tiny.csv", "--to", target])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert time.monotonic() - started < 30  # (a server that does not answer: refused in seconds, not minutes)
    sweep = runner.invoke(app, ["sweep", "tiny.yaml", "--out", "results/other.csv", "--log", target])
    assert sweep.exit_code == 2 and message in sweep.stderr
    assert not (swept / "results" / "other.csv").exists()


@pytest.mark.parametrize("module, target, extra", [("mlflow", "mlflow", "cnnexp[mlflow]"),
                                                   ("torch.utils.tensorboard", "tensorboard:runs",
                                                    "cnnexp[tensorboard]")])
def test_a_tracker_that_is_not_installed_names_its_extra(swept, monkeypatch, module, target, extra):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed: importing it fails
    if module == "mlflow":
        monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    result = runner.invoke(app, ["log", "results/tiny.csv", "--to", target])
    assert result.exit_code == 2 and f"not installed; pip install '{extra}'" in result.stderr


def test_the_sweeps_figures_and_files_are_artifacts_of_a_parent_run(swept):
    assert runner.invoke(app, ["plot", "results/tiny.csv", "--out", "results/tiny.png"]).exit_code == 0
    assert runner.invoke(app, ["log", "results/tiny.csv", "--to", "mlflow"]).exit_code == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{swept / 'results' / 'tiny.csv'}.mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    [parent] = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == "tiny (files)"]
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"tiny.csv", "tiny.csv.meta.json", "tiny.png"} <= names


def test_a_last_line_a_kill_left_torn_is_not_logged(swept):
    path = swept / "results" / "tiny.csv"
    path.write_bytes(path.read_bytes()[:-20])  # the last row cut short, as a kill mid-write leaves it
    result = runner.invoke(app, ["log", "results/tiny.csv", "--to", "tensorboard:runs"])
    assert result.exit_code == 0 and "logged 7 rows (0 already there)" in result.stderr


def test_a_network_trained_on_data_logs_its_epochs_as_histories(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(30, 4)), y=np.arange(30) % 3)
    (tmp_path / "n.yaml").write_text("input: 4\nlayers: [linear:out=8, relu, linear:out=3]\n")
    (tmp_path / "tiny.yaml").write_text("net: n.yaml\nsweep:\n  data: npz:d.npz\n  epochs: 3\n  batch: 8\n"
                                        "  eval_every: 2\n")
    (tmp_path / "results").mkdir()
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--curve", "results/curve.csv", "--log", "mlflow"])
    assert result.exit_code == 0, result.output
    client, runs = mlflow_runs(tmp_path)
    curve = read("results/curve.csv")
    assert len(runs) == 2
    for run in runs:
        block = run.data.params["block"]
        mine = [row for row in curve if row["block"] == block]
        history = client.get_metric_history(run.info.run_id, "curve/running_error")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
            [(int(row["epoch"]), float(row["running_error"])) for row in mine]
        evaluated = client.get_metric_history(run.info.run_id, "curve/test_acc")
        assert sorted(m.step for m in evaluated) == [2, 3]  # the epochs with an evaluation pass
        row = next(r for r in read("results/tiny.csv") if r["block"] == block)
        assert run.data.metrics["test_acc"] == float(row["test_acc"])
        assert "loss" not in run.data.metrics  # a trained row has no study at init: nothing logged for it
