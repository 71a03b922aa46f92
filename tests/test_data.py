"""Data sets (cnnexp/data.py): the split and normalisation against numpy computed here, and every kind of
malformed data refused before anything runs: one line naming the file and the problem, exit 2, nothing written."""
import pickle

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnexp.cli import app
from cnnexp.data import CIFAR_FILES, DataSpec, _read, load_data, parse_data

runner = CliRunner(env={"COLUMNS": "120"})

NET = """input: {input}
layers:
  - conv:out=4,k=3,p=1
  - relu
  - adaptiveavgpool:out=1
  - flatten
  - linear:out={classes}
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_text(NET.format(input="1x6x6", classes=3))
    return tmp_path


def good(n=40, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 1, 6, 6)), "y": rng.integers(0, classes, n)}


def sweep(folder, data="npz:d.npz", extra=""):
    (folder / "s.yaml").write_text(f"net: net.yaml\nsweep:\n  data: {data}\n  epochs: 1\n  batch: 8\n{extra}")
    return runner.invoke(app, ["sweep", "s.yaml"])


def refused(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_an_npz_without_a_test_set_is_split_and_normalised_by_its_training_set(tmp_path):
    arrays = good(23)
    arrays["x"] = arrays["x"][:, 0] * 3 + 5  # (N, H, W): one channel
    np.savez(tmp_path / "d.npz", **arrays)
    data = load_data(parse_data("npz:d.npz", tmp_path, "here"))
    test = np.arange(23) % 5 == 4
    train = arrays["x"][~test]
    mean, sd = train.mean(), train.std()
    assert data.x_train.dtype == np.float32 and data.x_train.shape == (19, 1, 6, 6)
    assert np.array_equal(data.x_train[:, 0], ((train - mean) / sd).astype(np.float32))
    assert np.array_equal(data.x_test[:, 0], ((arrays["x"][test] - mean) / sd).astype(np.float32))
    assert np.array_equal(data.y_test, arrays["y"][test])


def test_features_are_channels_and_a_test_set_of_the_file_is_used_as_given(tmp_path):
    rng = np.random.default_rng(1)
    x, x_test = rng.normal(size=(30, 5)) * [1, 2, 3, 4, 5], rng.normal(size=(7, 5))
    y, y_test = np.arange(30) % 4, np.arange(7) % 4
    np.savez(tmp_path / "f.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    data = load_data(parse_data("npz:f.npz", tmp_path, "here"))
    mean, sd = x.mean(axis=0), x.std(axis=0)
    assert np.array_equal(data.x_train, ((x - mean) / sd).astype(np.float32))
    assert np.array_equal(data.x_test, ((x_test - mean) / sd).astype(np.float32))
    assert data.classes == 4 and data.shape == (5,)


def test_digits_split_as_the_issue_says():
    from sklearn.datasets import load_digits

    data = load_data(DataSpec("digits", "digits"))
    digits = load_digits()
    assert len(data.y_train) == 1438 and len(data.y_test) == 359
    assert np.array_equal(data.y_test, digits.target[4::5])
    train = digits.images[np.arange(1797) % 5 != 4] / 16.0
    assert np.array_equal(data.x_train[:, 0], ((train - train.mean()) / train.std()).astype(np.float32))


def write_cifar(folder, n=10, broken=None):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for name in CIFAR_FILES:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    if broken is not None:
        path = folder / broken
        path.write_bytes(path.read_bytes()[:100])


def test_cifar10_batch_files_are_read_in_order(tmp_path):
    write_cifar(tmp_path / "c", n=6)
    data = load_data(parse_data("cifar10:c", tmp_path, "here"))
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    with open(tmp_path / "c" / "data_batch_2", "rb") as f:
        second = pickle.load(f, encoding="bytes")
    assert np.array_equal(data.y_train[6:12], second[b"labels"])


@pytest.mark.parametrize("change, words", [
    (lambda a: {**a, "x": a["x"][..., None, None]}, ["d.npz", "x has shape"]),
    (lambda a: {**a, "y": a["y"][:, None]}, ["y has shape"]),
    (lambda a: {**a, "y": a["y"].astype(float)}, ["y has dtype float64", "integers"]),
    (lambda a: {**a, "y": a["y"][:-1]}, ["40 samples", "39 labels"]),
    (lambda a: {"x": a["x"]}, ["no array 'y'"]),
    (lambda a: {**a, "x": np.where(np.arange(40)[:, None, None, None] == 7, np.nan, a["x"])}, ["NaN or inf",
                                                                                               "sample 7"]),
    (lambda a: {**a, "x": np.where(np.arange(40)[:, None, None, None] == 3, np.inf, a["x"])}, ["NaN or inf"]),
    (lambda a: {**a, "y": a["y"] - 1}, ["the label -1"]),
    (lambda a: {**a, "y": a["y"] * 0 + 5}, ["1 class"]),
    (lambda a: {**a, "y": a["y"] + 3}, ["labels up to 5", "output 3 classes"]),
    (lambda a: {**a, "x_test": a["x"][:5]}, ["x_test but no y_test"]),
    (lambda a: {**a, "x": a["x"] * 0 + 1}, ["channel 0 of x is constant"]),
    (lambda a: {**a, "x": a["x"][:, :, :4]}, ["samples are 1x4x6", "input is 1x6x6"]),
])
def test_malformed_npz_data_is_refused_before_anything_runs(folder, change, words):
    np.savez(folder / "d.npz", **change(good()))
    line = refused(sweep(folder), *words)
    assert "s.yaml" in line
    assert not (folder / "results").exists()


def test_a_truncated_or_missing_npz_is_refused(folder):
    np.savez(folder / "d.npz", **good())
    (folder / "d.npz").write_bytes((folder / "d.npz").read_bytes()[:300])
    refused(sweep(folder), "d.npz", "not an npz file")
    refused(sweep(folder, "npz:gone.npz"), "gone.npz", "no such file")
    assert not (folder / "results").exists()


def test_a_bad_data_set_anywhere_in_a_grid_refuses_the_sweep(folder):
    np.savez(folder / "d.npz", **good())
    np.savez(folder / "bad.npz", **{**good(), "y": good()["y"].astype(np.float32)})
    refused(sweep(folder, "[npz:d.npz, npz:bad.npz]"), "bad.npz", "integers")
    assert not (folder / "results").exists()


@pytest.mark.parametrize("broken", [None, "data_batch_3"])
def test_missing_or_truncated_cifar_files_are_refused(folder, broken):
    (folder / "net.yaml").write_text(NET.format(input="3x32x32", classes=10))
    write_cifar(folder / "c", broken=broken)
    if broken is None:
        (folder / "c" / "test_batch").unlink()
    line = refused(sweep(folder, "cifar10:c"), broken or "test_batch")
    assert ("no such file" if broken is None else "not a CIFAR-10 python batch file") in line
    assert not (folder / "results").exists()


def test_a_pickle_that_asks_for_more_than_arrays_is_not_run(folder):
    (folder / "net.yaml").write_text(NET.format(input="3x32x32", classes=10))
    write_cifar(folder / "c")
    marker = folder / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "c" / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    refused(sweep(folder, "cifar10:c"), "data_batch_1", "it asks for io.open")
    assert not marker.exists()


@pytest.mark.parametrize("text, words", [
    ("data: random\n  epochs: 2", ["epochs trains a network on a data set"]),
    ("lr: 0.1", ["lr trains a network on a data set"]),
    ("data: mnist", ["'mnist' is not a data set"]),
])
def test_training_without_data_and_unknown_data_sets_are_refused(folder, text, words):
    (folder / "s.yaml").write_text(f"net: net.yaml\nsweep:\n  {text}\n")
    refused(runner.invoke(app, ["sweep", "s.yaml"]), *words)


def test_training_axes_belong_to_networks(folder):
    (folder / "s.yaml").write_text("sweep:\n  data: digits\n")
    refused(runner.invoke(app, ["sweep", "s.yaml"]), "data is an axis of whole networks")


def test_a_last_minibatch_of_one_sample_before_a_flat_batch_norm_is_refused(folder):
    (folder / "net.yaml").write_text(NET.format(input="1x6x6", classes=3).replace("  - flatten\n",
                                                                                  "  - flatten\n  - bn\n"))
    np.savez(folder / "d.npz", **good(41))  # 33 training samples: 33 % 8 == 1
    refused(sweep(folder), "batch 8", "1 of the 33 training samples", "batch norm")


def test_dropout_is_refused_for_training(folder):
    (folder / "net.yaml").write_text(NET.format(input="1x6x6", classes=3).replace("  - relu\n", "  - dropout\n"))
    np.savez(folder / "d.npz", **good())
    refused(sweep(folder), "dropout")


def test_digits_without_scikit_learn_name_the_extra(folder, monkeypatch):
    import sys

    _read.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    (folder / "net.yaml").write_text(NET.format(input="1x8x8", classes=10))
    refused(sweep(folder, "digits"), "scikit-learn", "cnnexp[data]")
    _read.cache_clear()


def test_a_data_set_given_by_set_is_read_from_the_working_folder(folder):
    np.savez(folder / "d.npz", **good())
    (folder / "s.yaml").write_text("net: net.yaml\nsweep:\n  epochs: 1\n  batch: 8\n  data: digits\n")
    result = runner.invoke(app, ["sweep", "s.yaml", "--set", "data=npz:d.npz,npz:d.npz", "--dry-run"])
    assert result.exit_code == 2 and "appears twice" in result.output
    result = runner.invoke(app, ["sweep", "s.yaml", "--set", "data=npz:d.npz"])
    assert result.exit_code == 0, result.output
    assert "npz:d.npz" in (folder / "results" / "s.csv").read_text()
