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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cnnexp.errors import ConfigError, param
from cnnexp.paths import read_text
from cnnexp.schema import AXES, AXIS, BLOCKS, DEFAULT_BLOCKS, TRAINING_AXES, Axis

TOP_LEVEL_KEYS = ("name", "blocks", "sweep")
MAX_CONFIGURATIONS = 1_000_000  # a sweep larger than this is surely a typo (and would not finish anyway)
GENERATORS = ("range", "logspace")

# One configuration of the study: a value for every axis (the block is not part of it: every block of a
# configuration sees the same x and weights). Written out field by field, in schema.AXES order, with its names,
# types and defaults (tests/test_config.py holds the two equal): a new axis is an entry there and a field here.
@dataclass(frozen=True)
class RunConfig:
    d: int = 256
    batch: int = 64
    small_init: float = 1e-4
    seed: int = 123
    depth: int = 1
    activation: str = "relu"
    dtype: str = "float32"
    alpha_init: float = 0.0
    steps: int = 0
    lr: float = 0.1
    target: str = "zero"


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
    def size(self) -> int:
        """Number of configurations (each runs once per block)."""
        return math.prod(len(v) for v in self.axes.values())

    @property
    def training(self) -> bool:
        """Whether any configuration trains: a training axis (steps, lr, target) off its default."""
        return any(self.axes[name] != (AXIS[name].default,) for name in TRAINING_AXES)

    def to_dict(self) -> dict[str, Any]:
        """The resolved sweep as plain data, in the sweep-file shape (for provenance and fingerprints).

        A sweep that does not train leaves the training axes out, so its fingerprint is the one it had before
        they existed and its old files resume.
        """
        axes = {k: list(v) for k, v in self.axes.items() if self.training or k not in TRAINING_AXES}
        return {"name": self.name, "blocks": list(self.blocks), "sweep": axes}


AXIS_NAMES: tuple[str, ...] = tuple(a.name for a in AXES)


def config_dict(config: RunConfig) -> dict[str, Any]:
    """A RunConfig as a plain mapping, axis name -> value, in AXES order (its values are scalars: no copies
    needed, unlike dataclasses.asdict, which costs 30x more and shows in planning a large sweep)."""
    return {name: getattr(config, name) for name in AXIS_NAMES}


def shown_dict(config: RunConfig) -> dict[str, Any]:
    """The axes a results file of this configuration has: all of them, or, when it does not train, all but
    the training axes (the columns the study at init has always had)."""
    return {k: v for k, v in config_dict(config).items() if k not in TRAINING_AXES or trains(config)}


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
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping with a 'sweep' key")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (name, blocks, sweep), not a {_kind(raw)}")
    overridden = {text.partition("=")[0].strip().replace("-", "_") for text in overrides}
    return parse_sweep(apply_overrides(raw, overrides), source=str(path), overridden=overridden)


MAX_YAML_BYTES = 1 << 20  # a sweep or chain file is a few hundred bytes; a megabyte is surely not one
MAX_YAML_NODES = 200_000  # values after every alias is expanded (an alias bomb expands to billions)
MAX_YAML_DEPTH = 50  # nesting of lists and mappings (a sweep file needs 4)
MAX_INT_DIGITS = 40  # an integer literal longer than this is no axis value (seeds end at 2**64, 20 digits)


def read_yaml(path: Path) -> Any:
    """The one reader of YAML files in cnnexp: PyYAML's safe loader (tags that build Python objects are
    refused, never run), refusing a key given twice, and bounded before anything is built: at most
    MAX_YAML_BYTES of text, MAX_YAML_DEPTH levels of nesting, MAX_YAML_NODES values with every alias
    expanded (an alias bomb is refused from its node graph, never expanded), integers of at most
    MAX_INT_DIGITS digits.

    Raises:
        ConfigError: the file is missing, not a regular file (a device, a FIFO: refused without reading),
            too large, unreadable or not valid YAML, or past a bound; the message names the file and line.
    """
    import yaml

    text = read_text(path, MAX_YAML_BYTES, "YAML file", error=ConfigError)
    loader = None
    try:
        loader = _BoundedLoader()(text)  # (its reader refuses unprintable characters at once)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(f"{path}: YAML error{where}: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML error: {' '.join(str(e).split())}") from None
    except RecursionError:  # a bound above should come first; this is the backstop
        raise ConfigError(f"{path}: YAML error: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_size(root: Any) -> None:
    """Refuse a node graph whose values, with every alias expanded, number more than MAX_YAML_NODES.

    Aliases make the graph a DAG (the same node under many parents): count each node once per path to it,
    by memoising each node's expanded size, so a bomb is counted in time linear in its text.
    """
    import yaml

    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if id(node) in sizes:
            if sizes[id(node)] < 0:
                raise yaml.composer.ComposerError(None, None, "an alias refers to the value that holds it",
                                                  node.start_mark)
            return sizes[id(node)]
        sizes[id(node)] = -1  # in progress: meeting it again is a cycle
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_NODES:,} values once its aliases are expanded "
                                "(an alias bomb?)", node.start_mark)
        sizes[id(node)] = total
        return total

    size(root)


def _BoundedLoader() -> Any:
    """yaml.SafeLoader, except that a mapping with a key given twice is an error (not: the last one wins),
    nesting is bounded while composing, long integers are refused before int() sees them, and a key that is
    not hashable (`? [1]`) is an error."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > MAX_YAML_DEPTH:
                    raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                                      self.peek_event().start_mark)  # type: ignore[no-untyped-call]
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_yaml_int(self, node: Any) -> Any:
            digits = sum(c.isdigit() for c in str(node.value))
            if digits > MAX_INT_DIGITS:
                raise yaml.constructor.ConstructorError(None, None, f"an integer of {digits} digits is too large "
                                                        f"(at most {MAX_INT_DIGITS})", node.start_mark)
            return super().construct_yaml_int(node)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    hash(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value, not a "
                                                            f"{type(key).__name__}", key_node.start_mark) from None
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {_short(key)} appears twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
    return BoundedLoader


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
        if ":" in value and key in AXIS:
            values = _range_override(key, value, text)
        if key == "blocks":
            raw["blocks"] = values
        elif key in AXIS:
            if not isinstance(sweep, dict):
                raise ConfigError(f"{param('overrides')} {_clip(text)}: the file's 'sweep' is not a mapping")
            sweep[key] = values
        else:
            raise ConfigError(f"{param('overrides')} {_clip(text)}: unknown axis "
                              f"{_short(key)}{_suggest(key, [*AXIS, 'blocks'])}")
    if overrides:
        raw["sweep"] = sweep
    return raw


def _range_override(key: str, value: str, text: str) -> dict[str, Any]:
    """"start:stop[:step]" as a {range: [start, stop, step]} generator (checked by `_generate`)."""
    parts = [p.strip() for p in value.split(":")]
    if "," in value or not 2 <= len(parts) <= 3 or not all(_is_int_text(p) for p in parts):
        raise ConfigError(f"{param('overrides')} {_clip(text)}: a range is start:stop[:step] in integers, as in "
                          "Python's range "
                          f"(e.g. {param('overrides')} {key}=0:10 for 0, 1, ..., 9)")
    return {"range": [int(p) for p in parts]}


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
    axes = {a.name: _parse_axis(a, sweep.get(a.name, a.default), where(a.name)) for a in AXES}
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
    """The configurations of a sweep one at a time, in grid order (for the first few of a large sweep)."""
    return itertools.starmap(RunConfig, itertools.product(*sweep.axes.values()))


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
        raise ConfigError(f"{where}: a mapping must be {{range: [start, stop, step]}} or "
                          f"{{logspace: [start, stop, num]}}, got {keys}")
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
            raise ConfigError(f"{where}: logspace gives floats, but {axis.name} is an {axis.kind.__name__}; "
                              "use range or a list")
        if len(args) != 3 or not isinstance(args[2], int) or args[2] < 1:
            raise ConfigError(f"{where}: logspace: expected [start_exponent, stop_exponent, num] with num >= 1, "
                              f"got {_short(args)}")
        count = args[2]  # its length, checked before anything is generated
    if count > MAX_CONFIGURATIONS:
        raise ConfigError(f"{where}: {kind} {_short(args)} gives {count:,} values, more than a whole sweep may have "
                          f"({MAX_CONFIGURATIONS:,} configurations)")
    if kind == "range":
        return list(range(start, stop, step))
    try:
        return logspace(*args)
    except OverflowError:
        raise ConfigError(f"{where}: logspace {_short(args)}: 10**{_short(max(args[:2]))} "
                          "is out of range for a float") from None


def logspace(start: float, stop: float, num: int) -> list[float]:
    """10**e for `num` exponents evenly spaced from start to stop, both included (like numpy.logspace)."""
    if num == 1:
        return [10.0 ** start]
    step = (stop - start) / (num - 1)
    exponents = [start + i * step for i in range(num - 1)] + [stop]
    return [10.0 ** e for e in exponents]


def _parse_value(axis: Axis, value: Any, where: str) -> Any:
    """One value of an axis: convert (numeric strings count as numbers) and check its rule."""
    if axis.kind is str:
        if not isinstance(value, str) or (axis.choices and value not in axis.choices):
            close = difflib.get_close_matches(str(value), list(axis.choices), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: {_short(value)} is not one of {', '.join(axis.choices)}{hint}")
        parsed: Any = value
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
