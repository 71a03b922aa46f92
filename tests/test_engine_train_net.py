"""Training networks on data (cnnexp/engine/train_net.py, docs/data.md): every curve and results row against an
independent implementation of definition version 2 written out here in float64 (its own draw, batch norm,
cross-entropy and SGD with momentum and weight decay); checkpoints, resume and their refusals."""
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from cnnexp.config import load_sweep
from cnnexp.sweep import SweepOutputs, plan_sweep, run_sweep

NET = """input: {input}
layers:
  - conv:out=4,k=3,p=1,bias=false
  - bn
  - relu
  - residual: [conv:out=4,k=3,p=1,bias=false, bn, relu, conv:out=4,k=3,p=1, bn]
  - relu
  - adaptiveavgpool:out=1
  - flatten
  - linear:out={classes}
"""


# --- the independent implementation of version 2 -----------------------------------------------------------

def normalised(x_train, x_test):
    """Per channel by the training set, float64, then float32 once (the definition's precision)."""
    axes = (0, 2, 3)
    mean = x_train.mean(axis=axes, keepdims=True)
    sd = np.sqrt(((x_train - mean) ** 2).mean(axis=axes, keepdims=True))
    return ((x_train - mean) / sd).astype(np.float32), ((x_test - mean) / sd).astype(np.float32)


def split(x, y):
    test = np.arange(len(y)) % 5 == 4
    return x[~test], y[~test], x[test], y[test]


def draw(seed, channels, classes):
    """The draw of version 1 without x: seed, then each weighted layer in file order (weight, then bias),
    kaiming: randn * sqrt(2 / fan_in) for weights, 0 for biases."""
    torch.manual_seed(seed)
    shapes = [("w0", (4, channels, 3, 3)), ("w1", (4, 4, 3, 3)), ("w2", (4, 4, 3, 3)), ("b2", (4,)),
              ("wl", (classes, 4)), ("bl", (classes,))]
    params = {}
    for name, shape in shapes:
        fan_in = math.prod(shape[1:]) if name.startswith("w") else 1
        scale = math.sqrt(2 / fan_in) if name.startswith("w") else 0.0
        params[name] = (scale * torch.randn(shape, dtype=torch.float32)).double()
    for i in (0, 1, 2):  # batch norms: weight 1, bias 0; running mean 0, var 1
        params[f"g{i}"], params[f"h{i}"] = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    stats = {i: [torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)] for i in (0, 1, 2)}
    return params, stats


def batch_norm(x, i, p, stats, training):
    if training:
        mean = x.mean(dim=(0, 2, 3))
        var = ((x - mean[None, :, None, None]) ** 2).mean(dim=(0, 2, 3))
        n = x.numel() / x.shape[1]
        with torch.no_grad():
            stats[i][0] = 0.9 * stats[i][0] + 0.1 * mean.detach()
            stats[i][1] = 0.9 * stats[i][1] + 0.1 * var.detach() * n / (n - 1)
    else:
        mean, var = stats[i]
    shape = (1, -1, 1, 1)
    return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-5) * p[f"g{i}"].view(shape) + p[f"h{i}"].view(shape)


def forward(x, p, stats, training, skip):
    h = torch.relu(batch_norm(F.conv2d(x, p["w0"], padding=1), 0, p, stats, training))
    f = torch.relu(batch_norm(F.conv2d(h, p["w1"], padding=1), 1, p, stats, training))
    f = batch_norm(F.conv2d(f, p["w2"], p["b2"], padding=1), 2, p, stats, training)
    h = torch.relu(h + f if skip else f)
    return h.mean(dim=(2, 3)) @ p["wl"].T + p["bl"]


def cross_entropy(out, y):
    return (torch.logsumexp(out, dim=1) - out[torch.arange(len(y)), y]).mean()


def reference(x_train, y_train, x_test, y_test, *, seed, epochs, batch, lr, momentum, weight_decay, schedule,
              eval_every, fit_acc, skip, classes):
    """Version 2, in float64: the curve rows and the results row."""
    params, stats = draw(seed, x_train.shape[1], classes)
    x_train, x_test = torch.from_numpy(x_train).double(), torch.from_numpy(x_test).double()
    y_train, y_test = torch.from_numpy(y_train), torch.from_numpy(y_test)
    velocity = {k: None for k in params}
    order = torch.Generator().manual_seed(seed)
    n = len(y_train)
    per_epoch = -(-n // batch)
    total = epochs * per_epoch
    curve, best, fit, last = [], None, None, None
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=order)
        loss_sum, correct = 0.0, 0
        for i in range(per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            t = (epoch - 1) * per_epoch + i
            rate = lr if schedule == "constant" else lr * (1 + math.cos(math.pi * t / total)) / 2
            xb = x_train[idx].clone().requires_grad_(True)
            leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
            out = forward(xb, leaves, stats, True, skip)
            loss = cross_entropy(out, y_train[idx])
            grads = torch.autograd.grad(loss, [xb, *leaves.values()])
            g_x, g_p = grads[0], dict(zip(leaves, grads[1:]))
            grad_norm = math.sqrt(sum(float((g ** 2).sum()) for g in g_p.values()))
            x_norm = float(g_x.norm())
            for k in params:
                d = g_p[k] + weight_decay * params[k]
                velocity[k] = d if velocity[k] is None else momentum * velocity[k] + d
                params[k] = params[k] - rate * velocity[k]
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == y_train[idx]).sum())
        point = {"epoch": epoch, "running_loss": loss_sum / n, "running_acc": correct / n,
                 "running_error": (n - correct) / n, "param_grad_norm": grad_norm, "x_grad_norm": x_norm,
                 "train_loss": None, "train_acc": None, "test_loss": None, "test_acc": None}
        if epoch % eval_every == 0 or epoch == epochs:
            with torch.no_grad():
                for part, (x, y) in (("train", (x_train, y_train)), ("test", (x_test, y_test))):
                    out = forward(x, params, stats, False, skip)
                    point[f"{part}_loss"] = float(cross_entropy(out, y))
                    point[f"{part}_acc"] = int((out.argmax(1) == y).sum()) / len(y)
            best = point["test_acc"] if best is None else max(best, point["test_acc"])
            last = point
        if fit is None and correct / n >= fit_acc:
            fit = epoch
        curve.append(point)
    result = {**{k: last[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
              "best_test_acc": best, "epochs_to_fit": fit}
    return curve, result


# --- the checks ----------------------------------------------------------------------------------------------

def npz_data(tmp_path, n=90, classes=3, seed=7):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, 1, 6, 6)) + y[:, None, None, None] * 0.7  # learnable, not trivially
    np.savez(tmp_path / "d.npz", x=(x * 50).astype(np.int16), y=y.astype(np.int64))
    return (x * 50).astype(np.int16).astype(np.float64), y


def sweep_file(tmp_path, data, input, classes, **axes):
    (tmp_path / "tiny.yaml").write_text(NET.format(input=input, classes=classes))
    values = {"data": data, "init": "kaiming", "dtype": "float64", **axes}
    body = "\n".join(f"  {k}: {v}" for k, v in values.items())
    path = tmp_path / "s.yaml"
    path.write_text(f"net: tiny.yaml\nsweep:\n{body}\n")
    return path


def run(path, tmp_path, **outputs):
    plan = plan_sweep(load_sweep(path), SweepOutputs(out=tmp_path / "r.csv", curve=tmp_path / "c.csv", **outputs))
    run_sweep(plan)
    return pd.read_csv(tmp_path / "r.csv"), pd.read_csv(tmp_path / "c.csv")


def assert_matches(found: dict, expected: dict, where: str):
    for key, want in expected.items():
        got = found[key]
        if want is None:
            assert pd.isna(got), f"{where} {key}: {got} where none was expected"
        elif key.endswith("acc") or key.endswith("error") or key in ("epoch", "epochs_to_fit"):
            assert got == want, f"{where} {key}: {got} != {want}"
        else:
            assert got == pytest.approx(want, rel=1e-6), f"{where} {key}"


SETTINGS = [
    dict(epochs=3, batch=16, lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="cosine", eval_every=2, fit_acc=0.5),
    dict(epochs=2, batch=25, lr=0.1, momentum=0.5, weight_decay=0.0, schedule="constant", eval_every=1, fit_acc=0.9),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_an_npz_data_set_trains_exactly_as_version_2_defines(tmp_path, settings):
    x, y = npz_data(tmp_path)
    path = sweep_file(tmp_path, "npz:d.npz", "1x6x6", 3, seed=5, **settings)
    results, curve = run(path, tmp_path)
    x_train, y_train, x_test, y_test = split(x, y)
    x_train, x_test = normalised(x_train, x_test)
    for block, skip in (("plain", False), ("residual", True)):
        want_curve, want = reference(x_train, y_train, x_test, y_test, seed=5, skip=skip, classes=3, **settings)
        rows = curve[curve.block == block].to_dict("records")
        assert len(rows) == settings["epochs"]
        for row, point in zip(rows, want_curve):
            assert_matches(row, point, f"{block} epoch {point['epoch']}")
        assert_matches(results[results.block == block].iloc[0].to_dict(), want, block)


def test_digits_train_exactly_as_version_2_defines(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x_train, y_train, x_test, y_test = split(digits.images[:, None] / 16.0, digits.target)
    x_train, x_test = normalised(x_train, x_test)
    settings = dict(epochs=2, batch=100, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine", eval_every=1,
                    fit_acc=0.3)
    path = sweep_file(tmp_path, "digits", "1x8x8", 10, seed=3, **settings)
    results, curve = run(path, tmp_path)
    for block, skip in (("plain", False), ("residual", True)):
        want_curve, want = reference(x_train, y_train, x_test, y_test, seed=3, skip=skip, classes=10, **settings)
        for row, point in zip(curve[curve.block == block].to_dict("records"), want_curve):
            assert_matches(row, point, f"{block} epoch {point['epoch']}")
        assert_matches(results[results.block == block].iloc[0].to_dict(), want, block)


def test_data_at_epochs_0_is_the_study_on_the_first_batch_with_cross_entropy(tmp_path):
    x, y = npz_data(tmp_path)
    path = sweep_file(tmp_path, "npz:d.npz", "1x6x6", 3, seed=2, batch=20)
    plan = plan_sweep(load_sweep(path), SweepOutputs(out=tmp_path / "r.csv"))
    run_sweep(plan)
    results = pd.read_csv(tmp_path / "r.csv")
    x_train, y_train, x_test, _ = split(x, y)
    x_train, _ = normalised(x_train, x_test)
    for block, skip in (("plain", False), ("residual", True)):
        params, stats = draw(2, 1, 3)
        xb = torch.from_numpy(x_train[:20]).double().requires_grad_(True)
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        loss = cross_entropy(forward(xb, leaves, stats, True, skip), torch.from_numpy(y_train[:20]))
        grads = torch.autograd.grad(loss, [xb, *leaves.values()])
        row = results[results.block == block].iloc[0]
        assert row["loss"] == pytest.approx(float(loss.detach()), rel=1e-9)
        assert row["x_grad_norm"] == pytest.approx(float(grads[0].norm()), rel=1e-9)
        assert row["param_grad_norm"] == pytest.approx(math.sqrt(sum(float((g ** 2).sum()) for g in grads[1:])),
                                                       rel=1e-9)
        assert pd.isna(row["train_loss"]) and pd.isna(row["epochs_to_fit"])


def test_flip_crop_pads_crops_and_flips_each_image_by_its_own_draw():
    from cnnexp.engine.train_net import flip_crop

    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float64).reshape(2, 1, 3, 3)
    out = flip_crop(x, torch.tensor([False, True]), torch.tensor([[4, 4], [5, 3]]))
    assert torch.equal(out[0], x[0])  # offset (4, 4) = the image itself
    padded = F.pad(x[1], (4, 4, 4, 4))
    assert torch.equal(out[1], padded[:, 5:8, 3:6].flip(-1))


def test_a_checkpoint_of_another_run_is_refused_by_name(tmp_path):
    from cnnexp.engine.result import checkpoint_file
    from cnnexp.errors import ResultsError

    npz_data(tmp_path)
    path = sweep_file(tmp_path, "npz:d.npz", "1x6x6", 3, epochs=2, batch=16, seed="[1, 2]")
    plan = plan_sweep(load_sweep(path), SweepOutputs(out=tmp_path / "r.csv"))
    folder = tmp_path / "r.csv.ckpt"
    # a run of seed 1 leaves its checkpoint; copied over seed 2's, it must not be used for seed 2
    from cnnexp.engine.net import networks
    from cnnexp.engine.train_net import train

    one, two = plan.configs
    [net], _ = networks(one, ["plain"])
    train(one, "plain", net, checkpoints=folder)
    shutil.copy(checkpoint_file(folder, "plain", one), checkpoint_file(folder, "plain", two))
    [net], _ = networks(two, ["plain"])
    with pytest.raises(ResultsError, match="a checkpoint of another run"):
        train(two, "plain", net, checkpoints=folder)


def test_a_run_stopped_after_an_epoch_continues_from_its_checkpoint_to_the_same_bits(tmp_path, monkeypatch):
    from cnnexp.engine import train_net
    from cnnexp.engine.net import networks
    from cnnexp.engine.result import checkpoint_file

    npz_data(tmp_path)
    path = sweep_file(tmp_path, "npz:d.npz", "1x6x6", 3, epochs=3, batch=16, dtype="float32", weight_decay=1e-3,
                      schedule="cosine", augment="flip_crop")
    [config] = plan_sweep(load_sweep(path), SweepOutputs(out=tmp_path / "r.csv")).configs
    [net], _ = networks(config, ["residual"])
    whole = train_net.train(config, "residual", net)
    saved = train_net._save

    def save_then_stop(*args):
        saved(*args)
        raise KeyboardInterrupt  # as if killed once the first epoch's checkpoint is written

    monkeypatch.setattr(train_net, "_save", save_then_stop)
    folder = tmp_path / "ck"
    [net], _ = networks(config, ["residual"])
    with pytest.raises(KeyboardInterrupt):
        train_net.train(config, "residual", net, checkpoints=folder)
    monkeypatch.undo()
    assert torch.load(checkpoint_file(folder, "residual", config), weights_only=True)["epoch"] == 1
    [net], _ = networks(config, ["residual"])
    assert train_net.train(config, "residual", net, checkpoints=folder) == whole  # every number, to the bit


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL of a child process, as on the machines tested")
def test_a_sweep_killed_during_an_epoch_resumes_to_the_same_rows_bit_for_bit(tmp_path):
    from sklearn.datasets import load_digits  # noqa: F401  (the data extra is there)

    (tmp_path / "tiny.yaml").write_text(NET.format(input="1x8x8", classes=10))
    (tmp_path / "s.yaml").write_text("net: tiny.yaml\nsweep:\n  data: digits\n  epochs: 6\n  batch: 32\n"
                                     "  init: kaiming\n  lr: 0.05\n  schedule: cosine\n  weight_decay: 1e-4\n")
    command = [sys.executable, "-m", "cnnexp", "sweep", "s.yaml", "--workers", "1", "--threads", "1"]
    whole = tmp_path / "whole"
    whole.mkdir()
    for name in ("tiny.yaml", "s.yaml"):
        shutil.copy(tmp_path / name, whole / name)
    subprocess.run([*command, "--curve", "c.csv"], cwd=whole, check=True, capture_output=True)
    killed = subprocess.Popen([*command, "--curve", "c.csv"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    folder = tmp_path / "results" / "s.csv.ckpt"
    deadline = time.monotonic() + 120
    while not (folder.is_dir() and any(f.suffix == ".pt" for f in folder.iterdir())):  # an epoch is done
        assert killed.poll() is None and time.monotonic() < deadline, "the sweep ended before any checkpoint"
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert any(f.suffix == ".pt" for f in folder.iterdir()), "the kill came after the sweep was done"
    resumed = subprocess.run([*command, "--curve", "c.csv"], cwd=tmp_path, check=True, capture_output=True,
                             text=True)
    assert "continues from its checkpoint in s.csv.ckpt/" in resumed.stderr  # not a fresh start that agrees
    for name in ("results/s.csv", "c.csv"):
        assert (tmp_path / name).read_text() == (whole / name).read_text()
    assert not folder.exists()  # every run is in the results: the folder is gone


def test_a_checkpoint_of_another_definition_or_torn_is_refused_by_name(tmp_path):
    from typer.testing import CliRunner

    from cnnexp.cli import app
    from cnnexp.engine.net import networks
    from cnnexp.engine.result import checkpoint_file
    from cnnexp.engine.train_net import train
    from cnnexp.errors import ResultsError

    npz_data(tmp_path)
    path = sweep_file(tmp_path, "npz:d.npz", "1x6x6", 3, epochs=2, batch=16)
    plan = plan_sweep(load_sweep(path), SweepOutputs(out=tmp_path / "r.csv"))
    [config] = plan.configs
    folder = tmp_path / "r.csv.ckpt"
    [net], _ = networks(config, ["plain"])
    train(config, "plain", net, checkpoints=folder)
    where = checkpoint_file(folder, "plain", config)
    saved = torch.load(where, weights_only=True)
    torch.save({**saved, "definition": 1}, where)
    [net], _ = networks(config, ["plain"])
    with pytest.raises(ResultsError, match="training definition version 1"):
        train(config, "plain", net, checkpoints=folder)
    where.write_bytes(b"torn")
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "r.csv"), "--workers", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{where.name}: not a checkpoint cnnexp can read" in result.output
    assert (tmp_path / "r.csv").read_text().count("\n") == 1  # the header; the residual row is not run yet either
