"""Data sets to train whole networks on (docs/data.md): scikit-learn's digits, npz files and CIFAR-10 batches.

A sweep's `data` names one; it is read, checked and normalised before anything runs (numpy only, no torch;
scikit-learn is imported when digits are asked for). What every run then sees, exactly:

    x: (N, C, H, W) images or (N, F) features (an (N, H, W) array is one channel: (N, 1, H, W))
    y: (N,) integer labels from 0
    split: the file's x_test/y_test, else test = the samples whose index % 5 == 4, train = the rest
    mean and sd (population) of each channel over the training set, in float64 (an (N, F) array: of each
    feature); x <- (x - mean) / sd in float64, then rounded once to float32

    >>> spec = parse_data("digits", None, "demo.yaml: sweep.data")
    >>> data = load_data(spec)
    >>> data.x_train.shape, data.x_test.shape, data.classes
    ((1438, 1, 8, 8), (359, 1, 8, 8), 10)
"""
from __future__ import annotations

import functools
import hashlib
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnexp.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

KINDS = ("random", "digits", "npz", "cifar10")
TEST_EVERY = 5  # without a test set of its own: test = the samples whose index % 5 == 4
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class DataSpec:
    """A data set as a sweep names it (its `data` cell): random, digits, npz:PATH or cifar10:DIR.

    Attributes:
        name: as written in the sweep file (the CSV cell).
        kind: one of KINDS.
        path: the file (npz) or folder (cifar10), resolved against the sweep file's folder.
        digest: a hash of the file's bytes, part of the sweep's fingerprint: an edited file is noticed.
        sizes: (training samples, test samples), once read (for the cost of a run; not part of its identity).
    """

    name: str
    kind: str
    path: str = ""
    digest: str = ""
    sizes: tuple[int, int] = field(default=(0, 0), compare=False)

    def __str__(self) -> str:
        return self.name


RANDOM = DataSpec("random", "random")  # the study's own random x: no data set, no training


@dataclass(frozen=True)
class DataSet:
    """A data set as the runs see it: normalised float32 inputs and int64 labels, split in two."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape: (C, H, W) or (F,)."""
        return tuple(self.x_train.shape[1:])

    @property
    def classes(self) -> int:
        """The labels' count, as the largest label + 1."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def parse_data(text: Any, base: Path | None, where: str) -> DataSpec:
    """A sweep's `data` value, its file or folder resolved against `base` (the sweep file's folder) and read
    once to check it (`load_data`).

    Raises:
        ConfigError: an unknown kind, a missing or malformed file, naming `where` and the file.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: {text!r} is not a data set; expected random, digits, npz:PATH or cifar10:DIR")
    text = text.strip()
    kind, sep, rest = text.partition(":")
    if text in ("random", "digits"):
        spec = DataSpec(text, text)
    elif sep and kind in ("npz", "cifar10") and rest.strip():
        path = Path(rest.strip())
        path = path if path.is_absolute() or base is None else base / path
        spec = DataSpec(text, kind, str(path), _digest(path, kind, where))
    else:
        raise ConfigError(f"{where}: {text!r} is not a data set; expected random, digits, npz:PATH (an .npz file "
                          "with x and y) or cifar10:DIR (CIFAR-10's python batch files)")
    if spec.kind == "random":
        return spec
    data = load_data(spec, where)
    return replace(spec, sizes=(len(data.y_train), len(data.y_test)))


def _digest(path: Path, kind: str, where: str) -> str:
    files = [path] if kind == "npz" else [path / name for name in CIFAR_FILES]
    if kind == "cifar10" and not path.is_dir():
        raise ConfigError(f"{where}: {path}: no such folder (cifar10: names the folder of CIFAR-10's python batch "
                          f"files, {', '.join(CIFAR_FILES)}; nothing is downloaded)")
    digest = hashlib.sha256()
    for file in files:
        try:
            with open(file, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            raise ConfigError(f"{where}: {file}: no such file" + (
                " (cifar10: needs the python version's batch files; nothing is downloaded)"
                if kind == "cifar10" else "")) from None
        except OSError as e:
            raise ConfigError(f"{where}: {file}: cannot read: {e.strerror or e}") from None
    return digest.hexdigest()[:16]


def load_data(spec: DataSpec, where: str = "data") -> DataSet:
    """The data set a spec names, checked, split and normalised (cached: a process reads each once, whoever
    asks: the sweep's check and then the runs).

    Raises:
        ConfigError: the data is malformed (shapes, NaN or inf, labels that are not integers from 0, fewer
            than two classes, a constant channel) or its extra is not installed, naming `where` and the file.
    """
    try:
        return _read(spec)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e.args[0]}") from None


@functools.lru_cache(maxsize=4)
def _read(spec: DataSpec) -> DataSet:
    """`load_data`, its messages naming the file (not yet the sweep's key)."""
    import numpy as np  # deferred: the CLI imports this module (config does), and starts without numpy

    if spec.kind == "digits":
        x, y = _digits()
        x_test = y_test = None
        source = "digits"
    elif spec.kind == "npz":
        x, y, x_test, y_test = _npz(Path(spec.path))
        source = spec.path
    elif spec.kind == "cifar10":
        x, y, x_test, y_test = _cifar10(Path(spec.path))
        source = spec.path
    else:
        raise ValueError(f"{spec.name}: no data set to load")
    if x_test is None or y_test is None:
        test = np.arange(len(y)) % TEST_EVERY == TEST_EVERY - 1
        if not test.any() or test.all():
            raise ConfigError(f"{source}: {len(y)} samples and no x_test: the split (test = index % 5 == 4) "
                              "needs at least 5")
        x, y, x_test, y_test = x[~test], y[~test], x[test], y[test]
    if len(np.unique(y)) < 2:
        raise ConfigError(f"{source}: the training labels hold {len(np.unique(y))} class; training needs "
                          "at least 2")
    x_train, x_test = normalise(x, x_test, source)
    return DataSet(x_train, y.astype(np.int64), x_test, y_test.astype(np.int64))


def normalise(train: np.ndarray, test: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Both sets as (x - mean) / sd of each channel of the training set (population sd), in float64, then
    rounded once to float32. Channels: axis 1 (an (N, F) array: each feature)."""
    import numpy as np  # (deferred, as in load_data)

    out = []
    means, sds = [], []
    for c in range(train.shape[1]):
        channel = train[:, c].astype(np.float64)
        mean = channel.mean()
        sd = np.sqrt(np.square(channel - mean).mean())
        if not sd > 0:
            raise ConfigError(f"{where}: channel {c} of x is constant over the training set ({float(mean)!r}); "
                              "it cannot be normalised")
        means.append(mean)
        sds.append(sd)
    for x in (train, test):
        scaled = np.empty(x.shape, dtype=np.float32)
        for c in range(x.shape[1]):
            scaled[:, c] = (x[:, c].astype(np.float64) - means[c]) / sds[c]
        out.append(scaled)
    return out[0], out[1]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    import numpy as np  # (deferred, as in load_data)

    try:
        from sklearn.datasets import load_digits  # deferred: costs 0.8 s, and only digits need it
    except ImportError:
        raise ConfigError("digits needs scikit-learn, the data extra: pip install 'cnnexp[data]'") from None
    digits = load_digits()
    return digits.images.astype(np.float64)[:, None] / 16.0, digits.target  # (1797, 1, 8, 8), pixels 0..16


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    import numpy as np  # (deferred, as in load_data)

    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {k: arrays[k] for k in arrays.files}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as e:  # not a zip, a truncated one, an array of objects
        raise ConfigError(f"{path}: not an npz file numpy can read ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'unreadable'})") from None
    except Exception as e:  # zipfile.BadZipFile and the like
        raise ConfigError(f"{path}: not an npz file numpy can read ({type(e).__name__})") from None
    place = str(path)
    for name in ("x", "y"):
        if name not in found:
            raise ConfigError(f"{place}: has no array {name!r} (it holds {', '.join(sorted(found)) or 'none'}); "
                              "expected x (N, C, H, W), (N, H, W) or (N, F) and y (N,)")
    if ("x_test" in found) != ("y_test" in found):
        given, missing = ("x_test", "y_test") if "x_test" in found else ("y_test", "x_test")
        raise ConfigError(f"{place}: has {given} but no {missing}; give both, or neither (then test = index % 5 == 4)")
    x, y = _checked(found["x"], found["y"], "x", "y", place)
    if "x_test" not in found:
        return x, y, None, None
    x_test, y_test = _checked(found["x_test"], found["y_test"], "x_test", "y_test", place)
    if x_test.shape[1:] != x.shape[1:]:
        raise ConfigError(f"{place}: x_test has samples of shape {_dims(x_test.shape[1:])}, x of "
                          f"{_dims(x.shape[1:])}")
    return x, y, x_test, y_test


def _checked(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str, place: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of one split, checked: shapes, dtypes, finite values, integer labels from 0. Returns x with a
    channel axis (an (N, H, W) array as (N, 1, H, W))."""
    import numpy as np  # (deferred, as in load_data)

    if x.dtype.kind not in "iuf":
        raise ConfigError(f"{place}: {x_name} has dtype {x.dtype}; expected real or integer numbers")
    if x.ndim not in (2, 3, 4):
        raise ConfigError(f"{place}: {x_name} has shape {x.shape}; expected (N, C, H, W), (N, H, W) or (N, F)")
    if y.ndim != 1:
        raise ConfigError(f"{place}: {y_name} has shape {y.shape}; expected (N,) labels")
    if y.dtype.kind not in "iu":
        raise ConfigError(f"{place}: {y_name} has dtype {y.dtype}; labels must be integers (0, 1, 2, ...)")
    if len(y) != len(x):
        raise ConfigError(f"{place}: {x_name} has {len(x)} samples and {y_name} {len(y)} labels")
    if len(x) == 0 or 0 in x.shape:
        raise ConfigError(f"{place}: {x_name} has shape {x.shape}: no samples")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise ConfigError(f"{place}: {x_name} holds NaN or inf (first in sample {bad})")
    if y.min() < 0:
        raise ConfigError(f"{place}: {y_name} holds the label {int(y.min())}; labels count from 0")
    return (x[:, None] if x.ndim == 3 else x), y


def _cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np  # (deferred, as in load_data)

    parts = [_cifar_batch(folder / name) for name in CIFAR_FILES]
    x = np.concatenate([p[0] for p in parts[:-1]])
    y = np.concatenate([p[1] for p in parts[:-1]])
    return x, y, *parts[-1]


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, nothing else: a batch file is data."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # (bytes, by protocol 2)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR batch file never holds")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch file: a pickled dict with b'data' (n, 3072) uint8 and b'labels' (n)."""
    import numpy as np  # (deferred, as in load_data)

    place = str(path)
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
    except FileNotFoundError:
        raise ConfigError(f"{place}: no such file (cifar10: needs {', '.join(CIFAR_FILES)}; nothing is "
                          "downloaded)") from None
    except Exception as e:  # a truncated or foreign file: pickle raises many kinds
        raise ConfigError(f"{place}: not a CIFAR-10 python batch file ({type(e).__name__}: "
                          f"{(str(e).splitlines() or ['unreadable'])[0]})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ConfigError(f"{place}: not a CIFAR-10 python batch file (expected a dict with b'data' and b'labels')")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    size = int(np.prod(CIFAR_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        shape = getattr(data, "shape", None)
        raise ConfigError(f"{place}: b'data' has shape {shape} and dtype {getattr(data, 'dtype', type(data))}; "
                          f"expected (n, {size}) uint8")
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise ConfigError(f"{place}: b'labels' holds {labels.shape} {labels.dtype}; expected {len(data)} integers")
    if len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
        raise ConfigError(f"{place}: b'labels' holds {int(labels.min())}..{int(labels.max())}; CIFAR-10's are 0..9")
    return data.reshape(-1, *CIFAR_SHAPE).astype(np.float64) / 255.0, labels.astype(np.int64)


def check_fits(data: DataSet, shape: tuple[int, ...], outputs: tuple[int, ...], where: str) -> None:
    """Refuse a data set that a network cannot take: samples of another shape than its input, or labels its
    output (classes,) cannot hold."""
    if data.shape != tuple(shape):
        raise ConfigError(f"{where}: the data's samples are {_dims(data.shape)}, the network's input is "
                          f"{_dims(shape)}; set the sweep's input: {_dims(data.shape)} or use other data")
    if len(outputs) != 1:
        raise ConfigError(f"{where}: the network's output is {_dims(outputs)} per sample; training on labels "
                          "needs one score per class (end the net with a linear layer)")
    if data.classes > outputs[0]:
        raise ConfigError(f"{where}: the data has labels up to {data.classes - 1}, the network's output "
                          f"{outputs[0]} classes; give its last layer out={data.classes}")


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
