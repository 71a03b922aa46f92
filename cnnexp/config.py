"""Sweep files and run configurations: read, check, expand. Pure Python, no torch.

A sweep file names the axes to vary; the runs are the Cartesian product of their values:

    name: init                     # optional; defaults to the file's stem
    blocks: [plain, residual]      # optional; default both
    sweep:
      d: [256]
      batch: [64]
      small_init: {logspace: [-6, -2, 3]}   # 1e-6, 1e-4, 1e-2
      seed: {range: [0, 2]}                 # 0, 1

gives 1 * 1 * 3 * 2 = 6 configurations, each run for both blocks:

    >>> sweep = parse_sweep({"sweep": {"small_init": [1e-2, 1e-4], "seed": "0"}}, source="demo.yaml")
    >>> [(c.small_init, c.seed) for c in expand(sweep)]
    [(0.01, 0), (0.0001, 0)]

Every value is checked where it enters, and every message names the file, the key and the value.
"""
from __future__ import annotations

import difflib
import itertools
import math
import os
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path

from cnnexp.errors import ConfigError
from cnnexp.schema import AXES, AXIS, BLOCKS, DEFAULT_BLOCKS, TRAINING_AXES, Axis

TOP_LEVEL_KEYS = ("name", "blocks", "sweep")
MAX_CONFIGURATIONS = 1_000_000  # a sweep larger than this is surely a typo (and would not finish anyway)
GENERATORS = ("range", "logspace")

# One configuration of the study: a value for every axis (the block is not part of it: every block of a
# configuration sees the same x and weights). Built from the axis table, so a new axis is one entry there.
RunConfig = make_dataclass(
    "RunConfig",
    [(a.name, a.kind, field(default=a.default)) for a in AXES],
    frozen=True,
)
RunConfig.__module__ = __name__  # so it pickles by name, for worker processes and clusters
Task = tuple[RunConfig, tuple[str, ...]]  # a configuration and the blocks to run on it: a unit of work
RunConfig.__doc__ = "One configuration of the study: " + ", ".join(f"{a.name} ({a.help})" for a in AXES) + "."


@dataclass(frozen=True)
class Sweep:
    """A checked sweep: its name, the blocks to run and the values of every axis (defaults filled in)."""

    name: str
    blocks: tuple[str, ...]
    axes: dict[str, tuple]  # axis name -> values, in AXES order

    @property
    def size(self) -> int:
        """Number of configurations (each runs once per block)."""
        return math.prod(len(v) for v in self.axes.values())

    @property
    def training(self) -> bool:
        """Whether any configuration trains: a training axis (steps, lr, target) off its default."""
        return any(self.axes[name] != (AXIS[name].default,) for name in TRAINING_AXES)

    def to_dict(self) -> dict:
        """The resolved sweep as plain data, in the sweep-file shape (for provenance and fingerprints).

        A sweep that does not train leaves the training axes out, so its fingerprint is the one it had before
        they existed and its old files resume.
        """
        axes = {k: list(v) for k, v in self.axes.items() if self.training or k not in TRAINING_AXES}
        return {"name": self.name, "blocks": list(self.blocks), "sweep": axes}


def config_dict(config) -> dict:
    """A RunConfig as a plain mapping, axis name -> value, in AXES order."""
    return asdict(config)


def shown_dict(config) -> dict:
    """The axes a results file of this configuration has: all of them, or, when it does not train, all but
    the training axes (the columns the study at init has always had)."""
    return {k: v for k, v in config_dict(config).items() if k not in TRAINING_AXES or trains(config)}


def trains(config) -> bool:
    """Whether a configuration trains (a training axis off its default), as `Sweep.training` for one."""
    return any(getattr(config, name) != AXIS[name].default for name in TRAINING_AXES)


# --------------------------------------------------------------------------------------------------
# Reading


def load_sweep(path: str | os.PathLike, overrides: list[str] = ()) -> Sweep:
    """Read a sweep file with PyYAML's safe loader, apply `--set` overrides and check everything.

    Args:
        path: the YAML file.
        overrides: strings like "seed=0,1,2" (comma-separated values replace the axis' values).

    Returns:
        The checked Sweep.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, or holds a bad key or value.
    """
    path = Path(path)
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping with a 'sweep' key")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (name, blocks, sweep), not a {_kind(raw)}")
    overridden = {text.partition("=")[0].strip().replace("-", "_") for text in overrides}
    return parse_sweep(apply_overrides(raw, overrides), source=str(path), overridden=overridden)


def read_yaml(path: Path):
    """The one reader of YAML files in cnnexp: PyYAML's safe loader (tags that build Python objects are
    refused, never run), refusing a key given twice.

    Raises:
        ConfigError: the file is missing, unreadable or not valid YAML; the message names the file and line.
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        return yaml.load(text, Loader=_unique_keys_loader())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(f"{path}: YAML error{where}: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML error: {e}") from None


def _unique_keys_loader():
    """yaml.SafeLoader, except that a mapping with a key given twice is an error (not: the last one wins)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return `raw` with each "key=v1,v2" override replacing that axis' values (or the blocks).

    The values stay strings; `parse_sweep` converts and checks them like values from the file.
    """
    raw = dict(raw)
    sweep = raw.get("sweep")
    sweep = dict(sweep) if isinstance(sweep, dict) else ({} if sweep is None else sweep)
    for text in overrides:
        key, sep, value = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise ConfigError(f"--set {text!r}: expected KEY=VALUE[,VALUE...], e.g. --set seed=0,1,2")
        values = [v.strip() for v in value.split(",")]
        if key == "blocks":
            raw["blocks"] = values
        elif key in AXIS:
            if not isinstance(sweep, dict):
                raise ConfigError(f"--set {text}: the file's 'sweep' is not a mapping")
            sweep[key] = values
        else:
            raise ConfigError(f"--set {text}: unknown axis {key!r}{_suggest(key, [*AXIS, 'blocks'])}")
    if overrides:
        raw["sweep"] = sweep
    return raw


def parse_sweep(raw: dict, source: str = "<sweep>", overridden: set[str] = frozenset()) -> Sweep:
    """Check a sweep mapping (as read from YAML) and fill in defaults.

    Args:
        raw: the mapping, as read from the file.
        source: the file, named in every message.
        overridden: the keys whose values came from --set, named as such in messages.

    Raises:
        ConfigError: naming `source`, the key and the offending value.
    """
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key, TOP_LEVEL_KEYS)}")
    name = raw.get("name", Path(source).stem)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ConfigError(f"{source}: name: {name!r} is not a usable file name (a plain word, e.g. 'init')")
    where = lambda key: f"--set {key}" if key in overridden else f"{source}: sweep.{key}"  # noqa: E731
    blocks = parse_blocks(raw.get("blocks", list(DEFAULT_BLOCKS)), "--set" if "blocks" in overridden else source)
    sweep = raw.get("sweep")
    if sweep is None:
        raise ConfigError(f"{source}: missing key 'sweep' (a mapping of axis -> values, e.g. sweep: {{seed: [0, 1]}})")
    if not isinstance(sweep, dict):
        raise ConfigError(f"{source}: sweep: must be a mapping of axis -> values, not a {_kind(sweep)}")
    for key in sweep:
        if key not in AXIS:
            raise ConfigError(f"{source}: sweep: unknown axis {key!r}{_suggest(str(key), AXIS)}")
    axes = {a.name: _parse_axis(a, sweep.get(a.name, a.default), where(a.name)) for a in AXES}
    checked = Sweep(name=name, blocks=blocks, axes=axes)
    if checked.size > MAX_CONFIGURATIONS:
        raise ConfigError(f"{source}: sweep: {' x '.join(str(len(v)) for v in axes.values())} = {checked.size:,} "
                          f"configurations, more than the {MAX_CONFIGURATIONS:,} a sweep may have")
    return checked


def parse_run(values: dict, source: str = "flags") -> "RunConfig":
    """Check one configuration given as axis -> scalar (e.g. from `cnnexp run` flags)."""
    checked = {}
    for name, value in values.items():
        if name not in AXIS:
            raise ConfigError(f"{source}: unknown axis {name!r}{_suggest(name, AXIS)}")
        checked[name] = _parse_value(AXIS[name], value, f"{source}: {name}")
    return RunConfig(**checked)


def expand(sweep: Sweep) -> list:
    """All configurations of a sweep, in grid order (the last axis varies fastest)."""
    names = list(sweep.axes)
    return [RunConfig(**dict(zip(names, values))) for values in itertools.product(*sweep.axes.values())]


# --------------------------------------------------------------------------------------------------
# Checking values


def parse_blocks(blocks, source: str) -> tuple[str, ...]:
    """The blocks to run, checked, in canonical order (so a CSV's row order never depends on it)."""
    if isinstance(blocks, str):
        blocks = [blocks]
    if not isinstance(blocks, list) or not blocks:
        raise ConfigError(f"{source}: blocks: must be a non-empty list of {list(BLOCKS)}, got {blocks!r}")
    for b in blocks:
        if b not in BLOCKS:
            raise ConfigError(f"{source}: blocks: unknown block {b!r}{_suggest(str(b), BLOCKS)}")
    if len(set(blocks)) != len(blocks):
        raise ConfigError(f"{source}: blocks: {blocks!r} lists a block twice")
    return tuple(b for b in BLOCKS if b in blocks)


def _parse_axis(axis: Axis, spec, where: str) -> tuple:
    """An axis' values from a scalar, a list, or a {range: [...]} / {logspace: [...]} generator."""
    if isinstance(spec, dict):
        values = _generate(axis, spec, where)
    elif isinstance(spec, list):
        values = spec
    else:
        values = [spec]
    if not values:
        raise ConfigError(f"{where}: the list of values is empty")
    parsed = [_parse_value(axis, v, where) for v in values]
    if len(set(parsed)) != len(parsed):
        dup = next(v for v in parsed if parsed.count(v) > 1)
        raise ConfigError(f"{where}: value {dup!r} appears twice")
    return tuple(parsed)


def _generate(axis: Axis, spec: dict, where: str) -> list:
    if len(spec) != 1 or next(iter(spec)) not in GENERATORS:
        keys = ", ".join(map(repr, spec)) or "nothing"
        raise ConfigError(f"{where}: a mapping must be {{range: [start, stop, step]}} or "
                          f"{{logspace: [start, stop, num]}}, got {keys}")
    kind, args = next(iter(spec.items()))
    if not isinstance(args, list) or not all(_is_number(a) for a in args):
        raise ConfigError(f"{where}: {kind}: expected a list of numbers, got {args!r}")
    if kind == "range":
        if axis.kind is not int:
            raise ConfigError(f"{where}: range gives integers, but {axis.name} is a {axis.kind.__name__}; use logspace or a list")
        if not 1 <= len(args) <= 3 or not all(isinstance(a, int) for a in args):
            raise ConfigError(f"{where}: range: expected 1 to 3 integers [start, stop, step] as in Python's range, got {args!r}")
        if len(args) == 3 and args[2] == 0:
            raise ConfigError(f"{where}: range: step must not be 0")
        values = range(*args)
    else:
        if axis.kind is not float:
            raise ConfigError(f"{where}: logspace gives floats, but {axis.name} is an {axis.kind.__name__}; use range or a list")
        if len(args) != 3 or not isinstance(args[2], int) or args[2] < 1:
            raise ConfigError(f"{where}: logspace: expected [start_exponent, stop_exponent, num] with num >= 1, got {args!r}")
        values = range(args[2])  # its length, checked before anything is generated
    if len(values) > MAX_CONFIGURATIONS:
        raise ConfigError(f"{where}: {kind} {args!r} gives {len(values):,} values, more than a whole sweep may have "
                          f"({MAX_CONFIGURATIONS:,} configurations)")
    if kind == "range":
        return list(values)
    try:
        return logspace(*args)
    except OverflowError:
        raise ConfigError(f"{where}: logspace {args!r}: 10**{max(args[:2])} is out of range for a float") from None


def logspace(start: float, stop: float, num: int) -> list[float]:
    """10**e for `num` exponents evenly spaced from start to stop, both included (like numpy.logspace)."""
    if num == 1:
        return [10.0 ** start]
    step = (stop - start) / (num - 1)
    exponents = [start + i * step for i in range(num - 1)] + [stop]
    return [10.0 ** e for e in exponents]


def _parse_value(axis: Axis, value, where: str):
    """One value of an axis: convert (numeric strings count as numbers) and check its rule."""
    if axis.kind is str:
        if not isinstance(value, str) or (axis.choices and value not in axis.choices):
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(axis.choices)}{_suggest(str(value), axis.choices)}")
        parsed = value
    elif axis.kind is int:
        parsed = _to_int(value, where)
    else:
        parsed = _to_float(value, where)
    problem = axis.check(parsed)
    if problem:
        raise ConfigError(f"{where}: {value!r} {problem}")
    return parsed


def _to_int(value, where: str) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: {value!r} is not an integer")


def _to_float(value, where: str) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())  # PyYAML reads 1e-4 (no dot) as a string; accept it as a number
        except ValueError:
            pass
    elif _is_number(value):
        return float(value)
    raise ConfigError(f"{where}: {value!r} is not a number")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), type(value).__name__)


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(options)}"
