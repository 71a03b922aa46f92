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
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from cnnexp import examples
from cnnexp.data import RANDOM, DataSpec, check_fits, load_data, parse_data
from cnnexp.errors import ConfigError, param
from cnnexp.nets import Block, NetSpec, Node, check_net, lay_out, load_net, one_value_norm, out_shape, walk
from cnnexp.schema import (
    AXES,
    AXIS,
    BLOCKS,
    DATA_AXES,
    DATA_NET_AXES,
    DEFAULT_BLOCKS,
    MLP,
    NET,
    NET_AXES,
    TRAINING_AXES,
    Axis,
)
from cnnexp.shapes.types import parse_input
from cnnexp.yamlfile import MAX_INT_DIGITS, read_yaml

TOP_LEVEL_KEYS = ("name", "blocks", "net", "sweep")
NET_BLOCKS = ("plain", "residual")  # a network as its plain twin, and as written
MAX_CONFIGURATIONS = 1_000_000  # a sweep larger than this is surely a typo (and would not finish anyway)
GENERATORS = ("range", "logspace", "linspace")

# One configuration of the study: a value for every axis (the block is not part of it: every block of a
# configuration sees the same x and weights). Written out field by field, in schema.AXES order, with its names,
# types and defaults (tests/test_config.py holds the two equal): a new axis is an entry there and a field here.
@dataclass(frozen=True)
class RunConfig:
    d: int = 256
    batch: int = 64
    small_init: float | None = 1e-4  # (None: a network drawn by another init than small)
    seed: int = 123
    depth: int = 1
    activation: str = "relu"
    dtype: str = "float32"
    alpha_init: float = 0.0
    steps: int = 0
    lr: float = 0.1
    target: str = "zero"
    net: NetSpec | None = None  # (a whole network: docs/nets.md; None for the notebook's block)
    input: str = ""
    init: str = "small"
    bn: str = "on"
    zero_residual: bool = False
    data: DataSpec = RANDOM  # (a data set to train on: docs/data.md; RANDOM for the study's random x)
    epochs: int = 0
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    eval_every: int = 1
    fit_acc: float = 0.99
    augment: str = "none"

    @property
    def on_data(self) -> bool:
        """Whether this is a network on a data set (its inputs and labels), not on random x."""
        return self.data.kind != "random"

    @property
    def trains_on_data(self) -> bool:
        """Whether this configuration trains a network on its data set (epochs > 0)."""
        return self.on_data and self.epochs > 0

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """A network's input for one sample: the configuration's `input`, else its net file's."""
        if self.input:
            return parse_input(self.input)
        if self.net is None or self.net.input is None:
            raise ValueError("no input: not a network, or a net file without one")
        return self.net.input

    @property
    def weight_std(self) -> float:
        """small_init, where the configuration has one: every one of the notebook's block, and each network
        drawn by init small."""
        if self.small_init is None:
            raise ValueError(f"init {self.init} has no small_init")
        return self.small_init


RunConfig.__doc__ = "One configuration of the study: " + ", ".join(f"{a.name} ({a.help})" for a in AXES) + "."


class Task(NamedTuple):
    """A configuration and the blocks to run on it: a unit of work."""

    config: RunConfig
    blocks: tuple[str, ...]


@dataclass(frozen=True)
class Sweep:
    """A checked sweep: its name, the blocks to run and the values of every axis (defaults filled in)."""

    name: str
    blocks: tuple[str, ...]
    axes: dict[str, tuple[Any, ...]]  # axis name -> values, in AXES order
    warnings: tuple[str, ...] = ()  # what a user should hear about this sweep (the CLI prints them once)

    @property
    def net(self) -> bool:
        """Whether this is a sweep of whole networks (a `net:` key) rather than of the notebook's block."""
        return self.axes["net"] != (None,)

    @property
    def size(self) -> int:
        """Number of configurations (each runs once per block)."""
        if not self.net:
            return math.prod(len(v) for v in self.axes.values())
        inits = self.axes["init"]
        per_init = len(self.axes["small_init"]) * ("small" in inits) + len(inits) - ("small" in inits)
        return per_init * math.prod(len(v) for k, v in self.axes.items() if k not in ("init", "small_init"))

    @property
    def training(self) -> bool:
        """Whether any configuration trains: a training axis (steps, lr, target) off its default."""
        return any(self.axes[name] != (AXIS[name].default,) for name in TRAINING_AXES)

    @property
    def on_data(self) -> bool:
        """Whether this is a sweep of networks on a data set (docs/data.md): its files have the data axes."""
        return self.axes["data"] != (RANDOM,)

    def to_dict(self) -> dict[str, Any]:
        """The resolved sweep as plain data, in the sweep-file shape (for provenance and fingerprints).

        A sweep that does not train leaves the training axes out, so its fingerprint is the one it had before
        they existed and its old files resume.
        """
        if self.net:  # (in the order of NET_AXES: the grid's)
            nets = self.axes["net"]
            names = DATA_NET_AXES if self.on_data else NET_AXES
            axes = {k: [str(v) if k == "data" else v for v in self.axes[k]] for k in names if k != "net"}
            digests = {str(d): d.digest for d in self.axes["data"] if d.digest}
            files = {"data_files": digests} if digests else {}
            return {"name": self.name, "blocks": list(self.blocks), "net": [str(n) for n in nets],
                    "nets": {str(n): n.digest for n in nets}, **files, "sweep": axes}
        axes = {k: list(v) for k, v in self.axes.items()
                if AXIS[k].study != NET and (self.training or k not in TRAINING_AXES)}
        return {"name": self.name, "blocks": list(self.blocks), "sweep": axes}


AXIS_NAMES: tuple[str, ...] = tuple(a.name for a in AXES)


def config_dict(config: RunConfig) -> dict[str, Any]:
    """A RunConfig as a plain mapping, axis name -> value, in AXES order (its values are scalars: no copies
    needed, unlike dataclasses.asdict, which costs 30x more and shows in planning a large sweep)."""
    return {name: getattr(config, name) for name in AXIS_NAMES}


def shown_dict(config: RunConfig) -> dict[str, Any]:
    """The axes a results file of this configuration has: all of them, or, when it does not train, all but
    the training axes (the columns the study at init has always had)."""
    if config.net is not None:
        return {k: getattr(config, k) for k in (DATA_NET_AXES if config.on_data else NET_AXES)}
    return {k: v for k, v in config_dict(config).items()
            if AXIS[k].study != NET and (k not in TRAINING_AXES or trains(config))}


def trains(config: RunConfig) -> bool:
    """Whether a configuration trains (a training axis off its default), as `Sweep.training` for one."""
    return any(getattr(config, name) != AXIS[name].default for name in TRAINING_AXES)


# --------------------------------------------------------------------------------------------------
# Reading


def load_sweep(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Sweep:
    """Read a sweep file with PyYAML's safe loader, apply `--set` overrides and check everything.

    Args:
        path: the YAML file.
        overrides: strings like "seed=0,1,2" (comma-separated values replace the axis' values) or
            "seed=0:10" (a range, start:stop[:step] as in Python's range).

    Returns:
        The checked Sweep.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, or holds a bad key or value.
    """
    path = Path(path)
    if not path.exists() and examples.is_name(str(path)) and str(path) in examples.sweeps():
        path = examples.sweeps()[str(path)]  # `cnnexp sweep init`: the shipped configs/init.yaml
    if path.suffix.lower() in (".csv", ".json") and path.is_file():
        raise ConfigError(f"{path}: is a results file, not a sweep file; cnnexp sweep takes a YAML file such as "
                          f"configs/init.yaml (to look at these results: cnnexp summary {path})")
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping with a 'sweep' key")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (name, blocks, sweep), not a {_kind(raw)}")
    overridden = {text.partition("=")[0].strip().replace("-", "_") for text in overrides}
    return parse_sweep(apply_overrides(raw, overrides), source=str(path), overridden=overridden)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return `raw` with each "key=v1,v2" or "key=start:stop[:step]" override replacing that axis' values
    (or the blocks).

    The values stay strings (a range becomes a {range: [...]} generator); `parse_sweep` converts and checks
    them like values from the file. An axis set twice is refused: which one was meant?
    """
    raw = dict(raw)
    given: dict[str, str] = {}
    sweep = raw.get("sweep")
    sweep = dict(sweep) if isinstance(sweep, dict) else ({} if sweep is None else sweep)
    for text in overrides:
        key, sep, value = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise ConfigError(f"{param('overrides')} {_clip(text)!r}: expected KEY=VALUE[,VALUE...], e.g. "
                              f"{param('overrides')} seed=0,1,2")
        if key in given:
            raise ConfigError(f"{param('overrides')} {_clip(text)}: {key} is already set by {param('overrides')} "
                              f"{_clip(given[key])}; give "
                              f"each axis once, with all its values (e.g. {param('overrides')} {key}=1,2)")
        given[key] = text
        values: list[str] | dict[str, Any] = [v.strip() for v in value.split(",")]
        if ":" in value and key in AXIS and AXIS[key].kind in (int, float):  # (data: npz:PATH is a value)
            values = _range_override(key, value, text)
        if key in ("blocks", "net"):
            raw[key] = values
        elif key in AXIS:
            if not isinstance(sweep, dict):
                raise ConfigError(f"{param('overrides')} {_clip(text)}: the file's 'sweep' is not a mapping")
            sweep[key] = values
        else:
            raise ConfigError(f"{param('overrides')} {_clip(text)}: unknown axis "
                              f"{_short(key)}{_suggest(key, [*AXIS, 'blocks'])}")
        if key == "net" and isinstance(values, list) and len(values) == 1:
            raw["net"] = values[0]
    if overrides:
        raw["sweep"] = sweep
    return raw


def _range_override(key: str, value: str, text: str) -> dict[str, Any]:
    """"start:stop[:step]" as a {range: [start, stop, step]} generator, and "logspace:a:b:n" or
    "linspace:a:b:n" as those generators (each checked by `_generate`, as from the file)."""
    parts = [p.strip() for p in value.split(":")]
    if parts[0] in ("logspace", "linspace"):
        numbers = parts[1:]
        if "," in value or len(numbers) != 3 or not all(_is_number_text(p) for p in numbers):
            example = "-6:-1:6" if parts[0] == "logspace" else "0.1:0.5:5"
            raise ConfigError(f"{param('overrides')} {_clip(text)}: {parts[0]} takes start:stop:num "
                              f"(e.g. {param('overrides')} {key}={parts[0]}:{example})")
        return {parts[0]: [_number(p) for p in numbers]}
    if AXIS[key].kind is float:
        raise ConfigError(f"{param('overrides')} {_clip(text)}: {key} takes numbers: a start:stop range is for "
                          f"integer axes; give a list ({param('overrides')} {key}=0.01,0.001) or a logspace or "
                          f"linspace ({param('overrides')} {key}=logspace:-4:-2:3)")
    if "," in value or not 2 <= len(parts) <= 3 or not all(_is_int_text(p) for p in parts):
        raise ConfigError(f"{param('overrides')} {_clip(text)}: a range is start:stop[:step] in integers, as in "
                          "Python's range "
                          f"(e.g. {param('overrides')} {key}=0:10 for 0, 1, ..., 9)")
    return {"range": [int(p) for p in parts]}


def _is_number_text(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _number(text: str) -> int | float:
    return int(text) if _is_int_text(text) else float(text)


def _is_int_text(text: str) -> bool:
    return 0 < len(text.lstrip("+-")) <= MAX_INT_DIGITS and text.lstrip("+-").isdigit()


def parse_sweep(raw: dict[str, Any], source: str = "<sweep>", overridden: AbstractSet[str] = frozenset()) -> Sweep:
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
            raise ConfigError(f"{source}: unknown key {_short(key)}{_suggest(str(key), TOP_LEVEL_KEYS)}")
    name = raw.get("name", Path(source).stem)
    if (not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.startswith(".")
            or not name.isprintable() or len(name) > 200):
        raise ConfigError(f"{source}: name: {_short(name)} is not a usable file name (a plain word, e.g. 'init')")

    def where(key: str) -> str:
        if key == "net":
            return f"{param('overrides')} net" if key in overridden else f"{source}: net"
        return f"{param('overrides')} {key}" if key in overridden else f"{source}: sweep.{key}"

    blocks_from = param("overrides") if "blocks" in overridden else source
    blocks = parse_blocks(raw.get("blocks", list(DEFAULT_BLOCKS)), blocks_from)
    sweep = raw.get("sweep")
    if sweep is None:
        raise ConfigError(f"{source}: missing key 'sweep' (a mapping of axis -> values, e.g. sweep: {{seed: [0, 1]}})")
    if not isinstance(sweep, dict):
        raise ConfigError(f"{source}: sweep: must be a mapping of axis -> values, not a {_kind(sweep)}")
    for key in sweep:
        if key not in AXIS:
            raise ConfigError(f"{source}: sweep: unknown axis {_short(key)}{_suggest(str(key), AXIS)}")
    _check_study(raw, sweep, source, where)
    axes = {a.name: _parse_axis(a, sweep.get(a.name, a.default), where(a.name)) for a in AXES if a.name != "net"}
    axes = {"net": (None,), **axes}
    data_base = None if "data" in overridden else Path(source).parent
    axes["data"] = tuple(parse_data(v, data_base, where("data")) for v in axes["data"])
    if "net" in raw:
        base = None if "net" in overridden else Path(source).parent
        axes["net"] = _parse_nets(raw["net"], param("overrides") + " net" if "net" in overridden else source, base)
        other = [b for b in blocks if b not in NET_BLOCKS]
        if other:
            raise ConfigError(f"{blocks_from}: blocks: a network runs as written (residual) and as its plain twin "
                              f"(plain), not as {', '.join(other)}")
        _check_nets(axes, sweep, where)
    axes = {a.name: axes[a.name] for a in AXES}  # in AXES order, as RunConfig's fields
    warnings = []
    for a in AXES:  # an axis no block of this sweep reads would only repeat identical runs
        if a.name in sweep and a.used_by and not set(a.used_by) & set(blocks):
            first = axes[a.name][0]
            warnings.append(f"{where(a.name)}: only the {', '.join(a.used_by)} block{'s' * (len(a.used_by) > 1)} "
                            f"use{'s' * (len(a.used_by) == 1)} it and this sweep runs {', '.join(blocks)}; "
                            f"running {a.name}={first!r} only" + (f" (not {len(axes[a.name])} identical copies)"
                                                                if len(axes[a.name]) > 1 else ""))
            axes[a.name] = (first,)
    checked = Sweep(name=name, blocks=blocks, axes=axes, warnings=tuple(warnings))
    if checked.size > MAX_CONFIGURATIONS:
        raise ConfigError(f"{source}: sweep: {' x '.join(str(len(v)) for v in axes.values())} = {checked.size:,} "
                          f"configurations, more than the {MAX_CONFIGURATIONS:,} a sweep may have")
    return checked


def _check_study(raw: dict[str, Any], sweep: dict[str, Any], source: str, where: Any) -> None:
    """Refuse axes of one study in a sweep of the other: d, depth, ... beside a net, or init, bn, ... without."""
    if "net" in sweep:
        raise ConfigError(f"{source}: sweep: net is a top-level key, beside name and blocks (e.g. net: resnet20)")
    if "net" not in raw:
        for key in sweep:
            if AXIS[key].study == NET:
                raise ConfigError(f"{where(key)}: {key} is an axis of whole networks; name one with a top-level "
                                  "net: (docs/nets.md)")
        return
    mixed = [k for k in sweep if AXIS[k].study == MLP]
    if mixed:
        keys = ", ".join(mixed)
        raise ConfigError(f"{source}: net and {keys}: a sweep of whole networks has no {keys} (the net file sets "
                          "its layers; steps and target train the notebook's block, a network trains on data: "
                          "docs/data.md); remove " + ("them" if len(mixed) > 1 else "it"))


def _parse_nets(value: Any, source: str, base: Path | None) -> tuple[NetSpec, ...]:
    """A sweep's `net`: one name or a list of them, each a net file (relative to `base`) or a shipped name."""
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError(f"{source}: net: {_short(value)} must be a net file or a shipped name (e.g. resnet20), "
                          "or a list of them")
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: net: {_short(names)} names a network twice")
    nets = []
    for name in names:
        try:
            nets.append(load_net(name.strip(), base))
        except ConfigError as e:
            raise ConfigError(f"{source}: {e.args[0]}") from None
    return tuple(nets)


def _check_nets(axes: dict[str, tuple[Any, ...]], sweep: dict[str, Any], where: Any) -> None:
    """Refuse what no configuration of these networks could run: small_init without init small, a bad input,
    a layer PyTorch refuses on the input, a batch norm that would see one value per channel."""
    if "small_init" in sweep and "small" not in axes["init"]:
        raise ConfigError(f"{where('small_init')}: small_init is the scale of init small, and this sweep's init is "
                          f"{', '.join(axes['init'])}; remove small_init or add small to init")
    inputs = [parse_input(v, where("input")) if v else None for v in axes["input"]]
    for net in axes["net"]:
        for shape in inputs:
            check_net(net, shape, min(axes["batch"]), "on" in axes["bn"], f"{where('net')} {net.name}")
    _check_data(axes, sweep, where)


def _check_data(axes: dict[str, tuple[Any, ...]], sweep: dict[str, Any], where: Any) -> None:
    """Refuse what training on data could not run (docs/data.md): training axes without a data set, epochs on
    random x, data a network cannot take, dropout (version 2 defines no draw for it), augmentation of what is not
    an image, a last minibatch that would give a batch norm one value per channel."""
    data = [d for d in axes["data"] if d.kind != "random"]
    given = [k for k in DATA_AXES[1:] if k in sweep]
    if not data and given:
        raise ConfigError(f"{where(given[0])}: {given[0]} trains a network on a data set, and this sweep has none; "
                          "add data: digits (or npz:PATH, cifar10:DIR) to its sweep")
    if not data:
        return
    if RANDOM in axes["data"] and max(axes["epochs"]) > 0:
        raise ConfigError(f"{where('epochs')}: epochs {max(axes['epochs'])} with data random: random x has no labels "
                          "to train on; use a data set (digits, npz:PATH, cifar10:DIR) or epochs 0")
    trains = max(axes["epochs"]) > 0
    for spec in data:
        loaded = load_data(spec, where("data"))
        for net in axes["net"]:
            place = f"{where('data')} {spec} and net {net.name}"
            for given_input in axes["input"]:
                shape = parse_input(given_input) if given_input else net.input
                assert shape is not None  # (check_net refused a net without one)
                check_fits(loaded, shape, out_shape(net.items, shape), place)
                laid_out = lay_out(net.items, shape)
                if trains and any(isinstance(n, Node) and n.layer.kind == "dropout" for n in walk(laid_out)):
                    raise ConfigError(f"{place}: the network has dropout, whose draw training version 2 does "
                                      "not define; remove it, or use epochs 0")
                if trains and "flip_crop" in axes["augment"] and len(shape) != 3:
                    raise ConfigError(f"{where('augment')}: flip_crop crops and flips images; {spec} holds "
                                      f"samples of shape {'x'.join(map(str, shape))}")
                if trains and "on" in axes["bn"]:
                    _check_last_batch(len(loaded.y_train), axes["batch"], laid_out, place)


def _check_last_batch(n_train: int, batches: tuple[int, ...], nodes: tuple[Node | Block, ...], place: str) -> None:
    """Refuse a minibatch size whose last, partial minibatch would give a batch norm one value per channel."""
    for batch in batches:
        last = n_train % batch or batch
        found = one_value_norm(nodes, last)
        if found is not None:
            node, values = found
            raise ConfigError(f"{place}: batch {batch}: the last minibatch of each epoch holds {last} of the "
                              f"{n_train} training samples, and batch norm {node.path} would see {values} value "
                              "per channel; choose another batch")


def parse_run(values: dict[str, Any], source: str = "flags") -> RunConfig:
    """Check one configuration given as axis -> scalar (e.g. from `cnnexp run` flags)."""
    checked = {}
    for name, value in values.items():
        if name not in AXIS:
            raise ConfigError(f"{source}: unknown axis {name!r}{_suggest(name, AXIS)}")
        checked[name] = _parse_value(AXIS[name], value, f"{source}: {name}")
    return RunConfig(**checked)


def expand(sweep: Sweep) -> list[RunConfig]:
    """All configurations of a sweep, in grid order (the last axis varies fastest)."""
    return list(iter_configs(sweep))


def iter_configs(sweep: Sweep) -> Iterator[RunConfig]:
    """The configurations of a sweep one at a time, in grid order (for the first few of a large sweep).

    Of whole networks: the input is the net file's unless the sweep sets one, and an init other than small
    has no small_init (its cell empty): it runs once per remaining configuration."""
    if not sweep.net:
        yield from itertools.starmap(RunConfig, itertools.product(*sweep.axes.values()))
        return
    fixed = {name: values[0] for name, values in sweep.axes.items() if name not in DATA_NET_AXES}
    grid = itertools.product(*(sweep.axes[name] for name in DATA_NET_AXES))
    seen: set[RunConfig] = set()
    for values in grid:
        config = resolved(RunConfig(**fixed, **dict(zip(DATA_NET_AXES, values, strict=True))))
        if config not in seen:  # (inits other than small repeat over small_init's values)
            seen.add(config)
            yield config


def resolved(config: RunConfig) -> RunConfig:
    """A configuration of a network as its rows hold it: its input written out (the net file's, unless set),
    and no small_init under an init other than small."""
    changes: dict[str, Any] = {}
    if not config.input and config.net is not None and config.net.input is not None:
        changes["input"] = "x".join(map(str, config.net.input))
    if config.init != "small":
        changes["small_init"] = None
    return replace(config, **changes) if changes else config


# --------------------------------------------------------------------------------------------------
# Checking values


def parse_blocks(blocks: Any, source: str) -> tuple[str, ...]:
    """The blocks to run, checked, in canonical order (so a CSV's row order never depends on it)."""
    if isinstance(blocks, str):
        blocks = [blocks]
    if not isinstance(blocks, list) or not blocks:
        raise ConfigError(f"{source}: blocks: must be a non-empty list of {list(BLOCKS)}, got {_short(blocks)}")
    for b in blocks:
        if not isinstance(b, str) or b not in BLOCKS:
            raise ConfigError(f"{source}: blocks: unknown block {_short(b)}{_suggest(str(b), BLOCKS)}")
    if len(set(blocks)) != len(blocks):
        raise ConfigError(f"{source}: blocks: {blocks!r} lists a block twice")
    return tuple(b for b in BLOCKS if b in blocks)


def _parse_axis(axis: Axis, spec: Any, where: str) -> tuple[Any, ...]:
    """An axis' values from a scalar, a list, or a {range: [...]} / {logspace: [...]} generator."""
    if isinstance(spec, dict):
        values = _generate(axis, spec, where)
    elif isinstance(spec, list):
        values = spec
    else:
        values = [spec]
    if not values:
        raise ConfigError(f"{where}: the list of values is empty")
    parsed, seen = [], set()
    for v in values:
        value = _parse_value(axis, v, where)
        if value in seen:
            raise ConfigError(f"{where}: value {_short(value)} appears twice")
        seen.add(value)
        parsed.append(value)
    return tuple(parsed)


def _generate(axis: Axis, spec: dict[str, Any], where: str) -> list[Any]:
    if len(spec) != 1 or next(iter(spec)) not in GENERATORS:
        keys = ", ".join(map(repr, spec)) or "nothing"
        raise ConfigError(f"{where}: a mapping must be {{range: [start, stop, step]}}, "
                          f"{{logspace: [start, stop, num]}} or {{linspace: [start, stop, num]}}, got {keys}")
    kind, args = next(iter(spec.items()))
    if not isinstance(args, list) or not all(_is_number(a) for a in args):
        raise ConfigError(f"{where}: {kind}: expected a list of numbers, got {_short(args)}")
    if kind == "range":
        if axis.kind is not int:
            raise ConfigError(f"{where}: range gives integers, but {axis.name} is a {axis.kind.__name__}; "
                              "use logspace or a list")
        if not 1 <= len(args) <= 3 or not all(isinstance(a, int) for a in args):
            raise ConfigError(f"{where}: range: expected 1 to 3 integers [start, stop, step] as in Python's range, "
                              f"got {_short(args)}")
        if len(args) == 3 and args[2] == 0:
            raise ConfigError(f"{where}: range: step must not be 0")
        start, stop, step = ([0] + args + [1])[-3:] if len(args) == 1 else (args + [1])[:3]
        count = max(0, -(-(stop - start) // step))  # len(range(...)), without its C-size limit
    else:
        if axis.kind is not float:
            raise ConfigError(f"{where}: {kind} gives floats, but {axis.name} is an {axis.kind.__name__}; "
                              "use range or a list")
        ends = "start_exponent, stop_exponent" if kind == "logspace" else "start, stop"
        if len(args) != 3 or not isinstance(args[2], int) or args[2] < 1:
            raise ConfigError(f"{where}: {kind}: expected [{ends}, num] with num >= 1, got {_short(args)}")
        count = args[2]  # its length, checked before anything is generated
    if count > MAX_CONFIGURATIONS:
        raise ConfigError(f"{where}: {kind} {_short(args)} gives {count:,} values, more than a whole sweep may have "
                          f"({MAX_CONFIGURATIONS:,} configurations)")
    if kind == "range":
        return list(range(start, stop, step))
    if kind == "linspace":
        return linspace(*args)
    try:
        return logspace(*args)
    except OverflowError:
        raise ConfigError(f"{where}: logspace {_short(args)}: 10**{_short(max(args[:2]))} "
                          "is out of range for a float") from None


def linspace(start: float, stop: float, num: int) -> list[float]:
    """`num` values evenly spaced from start to stop, both included (like numpy.linspace)."""
    if num == 1:
        return [float(start)]
    step = (stop - start) / (num - 1)
    return [start + i * step for i in range(num - 1)] + [float(stop)]


def logspace(start: float, stop: float, num: int) -> list[float]:
    """10**e for `num` exponents evenly spaced from start to stop, both included (like numpy.logspace)."""
    if num == 1:
        return [10.0 ** start]
    step = (stop - start) / (num - 1)
    exponents = [start + i * step for i in range(num - 1)] + [stop]
    return [10.0 ** e for e in exponents]


def _parse_value(axis: Axis, value: Any, where: str) -> Any:
    """One value of an axis: convert (numeric strings count as numbers) and check its rule."""
    if axis.name == "bn" and isinstance(value, bool):
        value = "on" if value else "off"  # YAML reads on/off (and yes/no) as booleans
    if axis.kind is bool:
        text = str(value).strip().lower()
        if not isinstance(value, (bool, str)) or text not in ("true", "false"):
            raise ConfigError(f"{where}: {_short(value)} is not true or false")
        parsed: Any = text == "true"
    elif axis.kind is str:
        if not isinstance(value, str) or (axis.choices and value not in axis.choices):
            close = difflib.get_close_matches(str(value), list(axis.choices), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: {_short(value)} is not one of {', '.join(axis.choices)}{hint}")
        parsed = value
    elif axis.kind is int:
        parsed = _to_int(value, where)
    else:
        parsed = _to_float(value, where)
    problem = axis.check(parsed)
    if problem:
        raise ConfigError(f"{where}: {_short(value)} {problem}")
    return parsed


def _to_int(value: Any, where: str) -> int:
    if isinstance(value, str):
        if _is_int_text(value.strip()):
            return int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: {_short(value)} is not an integer")


def _to_float(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())  # PyYAML reads 1e-4 (no dot) as a string; accept it as a number
        except ValueError:
            pass
    elif _is_number(value):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{where}: {_short(value)} is too large for a float") from None
    raise ConfigError(f"{where}: {_short(value)} is not a number")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    """A value for a message: its repr, cut to `limit` characters (a message is one line, whatever the value)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str, limit: int = 60) -> str:
    """Text as given (a --set argument), cut to `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(options)}"
