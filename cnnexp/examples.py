"""The shipped examples, by name: the sweep files of configs/ and the networks of configs/nets/.

    >>> sorted(sweeps())[:2], "resnet18" in nets()
    (['degradation', 'depth'], True)

A built package holds them as cnnexp/configs/ (pyproject.toml maps configs/ there); a checkout of the
repository (and an editable install) reads configs/ itself. `cnnexp sweep init` and `conv-shape --from
resnet18` take these names where no such file exists; `cnnexp examples` lists them and copies one out.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from cnnexp.errors import ConfigError, param

_HERE = Path(__file__).resolve().parent
CANDIDATES = (_HERE / "configs", _HERE.parent / "configs")  # a built package's, then the repository's


def folder() -> Path | None:
    """Where the shipped sweep files are (None: neither place has them)."""
    return next((p for p in CANDIDATES if p.is_dir()), None)


def sweeps() -> dict[str, Path]:
    """Shipped sweep files by name (the file's stem)."""
    found = folder()
    return {p.stem: p for p in sorted(found.glob("*.yaml"))} if found else {}


def nets() -> dict[str, Path]:
    """Shipped networks by name."""
    found = folder()
    return {p.stem: p for p in sorted((found / "nets").glob("*.yaml"))} if found else {}


def is_name(text: str) -> bool:
    """Whether what a user wrote is a bare name (no folder, no extension), which may name an example."""
    return "/" not in text and "\\" not in text and not Path(text).suffix


def describe(path: Path) -> str:
    """An example's first comment line, without its '#'."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def copy_example(name: str, to: str | Path | None = None) -> Path:
    """Copy the example `name` (a sweep or a network) to `to` (default: NAME.yaml here), never over a file.

    Raises:
        ConfigError: no example of that name, or `to` exists.
    """
    path = sweeps().get(name) or nets().get(name)
    if path is None:
        known = ", ".join([*sweeps(), *nets()])
        raise ConfigError(f"{name!r}: no shipped example of that name (there are: {known})")
    dest = Path(to) if to is not None else Path(f"{name}.yaml")
    if dest.is_dir():
        dest = dest / path.name
    if dest.exists():
        raise ConfigError(f"{param('to')} {dest}: already exists; cnnexp never writes over it")
    shutil.copyfile(path, dest)
    return dest
