"""Sweep files: parsing, generators, overrides, grid expansion, and every kind of bad input."""
import itertools

import pytest

from cnnexp.config import RunConfig, apply_overrides, expand, load_sweep, logspace, parse_run, parse_sweep
from cnnexp.data import RANDOM
from cnnexp.errors import CnnexpError, ConfigError, spell

INIT = """\
name: init
blocks: [plain, residual]
sweep:
  d: [256]
  batch: [64]
  small_init: [1.0e-2, 1.0e-4, 1.0e-6]
  seed: [123]
"""
# the axes added by the depth study, at their defaults
LATER = {"depth": (1,), "activation": ("relu",), "dtype": ("float32",), "alpha_init": (0.0,), "steps": (0,),
         "lr": (0.1,), "target": ("zero",),
         # and by whole networks (only a sweep with a net: reads them)
         "net": (None,), "input": ("",), "init": ("small",), "bn": ("on",), "zero_residual": (False,),
         # and by training networks on data
         "data": (RANDOM,), "epochs": (0,), "momentum": (0.9,), "weight_decay": (0.0,), "schedule": ("constant",),
         "eval_every": (1,), "fit_acc": (0.99,), "augment": ("none",)}


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_contract_shape(tmp_path):
    sweep = load_sweep(write(tmp_path, INIT))
    assert sweep.name == "init" and sweep.blocks == ("plain", "residual")
    assert sweep.axes == {"d": (256,), "batch": (64,), "small_init": (1e-2, 1e-4, 1e-6), "seed": (123,), **LATER}
    assert [c.small_init for c in expand(sweep)] == [1e-2, 1e-4, 1e-6]


def test_defaults_name_from_stem_blocks_and_axes(tmp_path):
    sweep = load_sweep(write(tmp_path, "sweep: {seed: 1}\n", name="mine.yaml"))
    assert sweep.name == "mine" and sweep.blocks == ("plain", "residual")
    assert sweep.axes == {"d": (256,), "batch": (64,), "small_init": (1e-4,), "seed": (1,), **LATER}


@pytest.mark.parametrize("axes, expected_size", [
    ({"d": [8, 16], "batch": [2, 3, 4]}, 6),
    ({"seed": {"range": [0, 10]}}, 10),
    ({"seed": {"range": [0, 10, 3]}, "small_init": {"logspace": [-3, -1, 3]}}, 12),
    ({"d": 4, "batch": 2, "small_init": 0.1, "seed": 0}, 1),
])
def test_expansion_is_the_cartesian_product(axes, expected_size):
    sweep = parse_sweep({"sweep": axes})
    configs = expand(sweep)
    assert len(configs) == sweep.size == expected_size
    assert configs == [RunConfig(**dict(zip(sweep.axes, v))) for v in itertools.product(*sweep.axes.values())]
    assert len(set(configs)) == len(configs)


def test_last_axis_varies_fastest():
    configs = expand(parse_sweep({"sweep": {"d": [1, 2], "seed": [5, 6]}}))
    assert [(c.d, c.seed) for c in configs] == [(1, 5), (1, 6), (2, 5), (2, 6)]


def test_generators():
    assert parse_sweep({"sweep": {"seed": {"range": [3]}}}).axes["seed"] == (0, 1, 2)
    assert parse_sweep({"sweep": {"seed": {"range": [10, 0, -5]}}}).axes["seed"] == (10, 5)
    values = parse_sweep({"sweep": {"small_init": {"logspace": [-6, -1, 6]}}}).axes["small_init"]
    assert values == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    assert logspace(-2, -2, 1) == [0.01]


def test_numeric_strings_are_numbers(tmp_path):
    # PyYAML reads 1e-4 (no dot) as the string "1e-4"
    sweep = load_sweep(write(tmp_path, "sweep: {small_init: [1e-4, 1e-2], d: '16'}\n"))
    assert sweep.axes["small_init"] == (1e-4, 1e-2) and sweep.axes["d"] == (16,)


def test_overrides_replace_axes_and_blocks(tmp_path):
    sweep = load_sweep(write(tmp_path, INIT), ["seed=0,1,2", "d=128", "small-init=1e-3", "blocks=residual"])
    assert sweep.axes["seed"] == (0, 1, 2) and sweep.axes["d"] == (128,) and sweep.axes["small_init"] == (1e-3,)
    assert sweep.blocks == ("residual",)
    assert apply_overrides({"sweep": {"d": 1}}, []) == {"sweep": {"d": 1}}


def test_blocks_are_put_in_canonical_order():
    assert parse_sweep({"blocks": ["residual", "plain"], "sweep": {}}).blocks == ("plain", "residual")


def test_parse_run_checks_flags():
    assert parse_run({"d": 3, "seed": "4"}) == RunConfig(d=3, seed=4)
    with pytest.raises(ConfigError, match="batch"):
        parse_run({"batch": 0})


BAD = [
    # (file text, words the one-line message must contain)
    ("- 1\n- 2\n", ["top level must be a mapping", "list"]),
    ("", ["empty"]),
    ("name: x\nsweep:\n  d: [1, 2]\n   seed: 1\n", ["YAML error", "line 4"]),
    ("sweeps: {d: 1}\n", ["unknown key 'sweeps'", "did you mean 'sweep'"]),
    ("sweep: {dd: [1]}\n", ["unknown axis 'dd'", "did you mean 'd'"]),
    ("sweep: {small_int: [1]}\n", ["small_int", "did you mean 'small_init'"]),
    ("sweep: {d: true}\n", ["sweep.d", "True", "not an integer"]),
    ("sweep: {d: 0}\n", ["sweep.d", "at least 1"]),
    ("sweep: {batch: [4, -1]}\n", ["sweep.batch", "-1", "at least 1"]),
    ("sweep: {small_init: -1.0e-3}\n", ["sweep.small_init", "-0.001", "negative"]),
    ("sweep: {small_init: .inf}\n", ["sweep.small_init", "finite"]),
    ("sweep: {small_init: .nan}\n", ["sweep.small_init", "finite"]),
    ("sweep: {small_init: abc}\n", ["sweep.small_init", "'abc'", "not a number"]),
    ("sweep: {seed: 1.5}\n", ["sweep.seed", "1.5", "not an integer"]),
    ("sweep: {seed: []}\n", ["sweep.seed", "empty"]),
    ("sweep: {seed: [1, 1]}\n", ["sweep.seed", "twice"]),
    ("sweep: {seed: {range: [0.5, 3]}}\n", ["range", "integers"]),
    ("sweep: {seed: {geomspace: [0, 3]}}\n", ["range", "logspace", "linspace", "geomspace"]),
    ("sweep: {small_init: {range: [0, 3]}}\n", ["range gives integers"]),
    ("sweep: {d: {logspace: [0, 3, 4]}}\n", ["logspace gives floats"]),
    ("blocks: [plain, resid]\nsweep: {}\n", ["unknown block 'resid'", "did you mean 'residual'"]),
    ("blocks: []\nsweep: {}\n", ["blocks", "non-empty"]),
    ("name: x\n", ["missing key 'sweep'"]),
    ("sweep: [1, 2]\n", ["sweep", "mapping"]),
    ("name: ../evil\nsweep: {}\n", ["name", "../evil"]),
    ("sweep: !!python/object/apply:os.system ['echo hacked']\n", ["YAML error", "line 1"]),
    ("sweep: {d: 100000000, batch: 100000000}\n", ["needs about", "GiB"]),
    ("sweep: {d: 8, d: 16}\n", ["YAML error", "line 1", "key 'd' appears twice"]),
    ("sweep: {seed: 18446744073709551616}\n", ["sweep.seed", "2**64 - 1"]),
    ("sweep: {seed: -1}\n", ["sweep.seed", "-1", "between 0"]),
    ("sweep: {small_init: {logspace: [-6, 400, 3]}}\n", ["logspace", "out of range"]),
    ("sweep: {seed: {range: [0, 100000000]}}\n", ["100,000,000 values"]),
    ("sweep: {seed: {range: [0, 2000]}, d: {range: [1, 1000]}}\n", ["1,998,000 configurations"]),
    ("sweep: {depth: 0}\n", ["sweep.depth", "at least 1"]),
    ("sweep: {activation: sigmoid}\n", ["sweep.activation", "'sigmoid'", "relu, tanh, gelu"]),
    ("sweep: {dtype: float16}\n", ["sweep.dtype", "float16", "float32, float64"]),
    ("sweep: {alpha_init: .inf}\n", ["sweep.alpha_init", "finite"]),
    ("blocks: [rezero, prenrom]\nsweep: {}\n", ["unknown block 'prenrom'", "did you mean 'prenorm'"]),
]


@pytest.mark.parametrize("text, words", BAD)
def test_bad_sweep_files_are_refused_naming_file_key_and_value(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(CnnexpError) as info:
        sweep = load_sweep(path)
        from cnnexp.sweep import SweepOutputs, plan_sweep  # the memory estimate is checked when planning

        plan_sweep(sweep, SweepOutputs(tmp_path / "out.csv"))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert str(path) in message or "needs about" in message
    assert not (tmp_path / "out.csv").exists()


def test_python_tags_never_execute(tmp_path):
    marker = tmp_path / "executed"
    path = write(tmp_path, f"sweep: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        load_sweep(path)
    assert not marker.exists()


@pytest.mark.parametrize("path_kind", ["missing", "directory", "binary"])
def test_unreadable_files(tmp_path, path_kind):
    path = tmp_path / "x.yaml"
    if path_kind == "directory":
        path.mkdir()
    elif path_kind == "binary":
        path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=str(path)):
        load_sweep(path)


@pytest.mark.parametrize("override, words", [
    ("seed", ["KEY=VALUE"]),
    ("seed=", ["KEY=VALUE"]),
    ("sed=1", ["unknown axis 'sed'", "did you mean 'seed'"]),
    ("d=0", ["overrides d", "'0'", "at least 1"]),
    ("seed=1,x", ["overrides seed", "'x'", "not an integer"]),
    ("blocks=plain,foo", ["overrides:", "unknown block 'foo'"]),
])
def test_bad_overrides(tmp_path, override, words):
    with pytest.raises(ConfigError) as info:
        load_sweep(write(tmp_path, INIT), [override])
    for word in words:
        assert word in str(info.value)


# --- bounds of the YAML reader and odd files: one clear error, found before anything is built ---------


def alias_bomb(levels: int = 9, fan: int = 9) -> str:
    """The classic billion-laughs file: each anchor repeats the one before `fan` times."""
    names = [f"l{i}" for i in range(levels + 1)]
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(["lol"] * fan) + "]"]
    lines += [f"{n}: &{n} [" + ", ".join([f"*{p}"] * fan) + "]" for p, n in zip(names, names[1:])]
    return "sweep:\n" + "".join(f"  {line}\n" for line in lines)


@pytest.mark.parametrize("text, words", [
    (alias_bomb(), ["more than 200,000 values once its aliases are expanded"]),
    ("sweep: " + "[" * 500 + "]" * 500 + "\n", ["nested more than 50 levels deep"]),
    ("sweep: &a {seed: *a}\n", ["an alias refers to the value that holds it"]),
    ("? [1]\n: 2\n", ["line 1", "a key must be a plain value, not a list"]),
    ("1: x\n", ["unknown key 1"]),
    ("~: x\n", ["unknown key None"]),
    ("2020-01-01: x\n", ["unknown key datetime.date(2020, 1, 1)"]),
    ("sweep: {seed: " + "1" * 5000 + "}\n", ["an integer of 5000 digits is too large"]),
    ("sweep: {small_init: " + "9" * 400 + "}\n", ["an integer of 400 digits is too large"]),
    ("sweep: {seed: {range: [100000000000000000000]}}\n", ["range [100000000000000000000] gives 100,000,000,000,"]),
    ("sweep: {small_init: {logspace: [0, 1, 100000000000000000000]}}\n", ["gives 100,000,000,000,000,000,000 values"]),
    ('name: "a\\0b"\nsweep: {seed: 1}\n', ["name: 'a\\x00b' is not a usable file name"]),
    ("sweep: {activation: [" + ", ".join(["x" * 50] * 2) + "]}\n", ["is not one of relu, tanh, gelu"]),
])
def test_odd_yaml_is_one_short_line(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        load_sweep(write(tmp_path, text))
    message = str(e.value)
    assert "\n" not in message and len(message) < 300, message
    assert all(w in message for w in words), message


def test_an_alias_bomb_is_refused_from_its_graph_without_expanding_it(tmp_path):
    import time

    path = write(tmp_path, alias_bomb(levels=30, fan=30))  # 30**30 values if expanded
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_sweep(path)
    assert time.perf_counter() - started < 5  # (linear in the text: milliseconds; generous for a busy machine)


def test_aliases_within_the_bound_are_fine(tmp_path):
    sweep = load_sweep(write(tmp_path, "sweep:\n  seed: &s [0, 1]\n  depth: [1, 2]\nname: &n x\n"))
    assert sweep.axes["seed"] == (0, 1) and sweep.name == "x"


def test_an_activation_error_lists_the_choices_once(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_sweep(write(tmp_path, "sweep: {activation: relux}\n"))
    assert str(e.value).count("gelu") == 1 and "did you mean 'relu'" in str(e.value)


def test_a_long_list_with_a_repeat_is_refused_in_linear_time(tmp_path):
    values = list(range(50_000)) + [49_999]
    with pytest.raises(ConfigError, match="value 49999 appears twice"):
        parse_sweep({"sweep": {"seed": values}})


# --- --set: ranges, and one --set per axis --------------------------------------------------------


@pytest.mark.parametrize("override, expected", [
    ("seed=0:3", (0, 1, 2)),
    ("seed=2:10:3", (2, 5, 8)),
    ("seed=5:0:-2", (5, 3, 1)),
    ("depth=1:3", (1, 2)),
    ("seed=0,4", (0, 4)),
])
def test_set_takes_ranges_as_pythons_range(tmp_path, override, expected):
    axis = override.partition("=")[0]
    assert load_sweep(write(tmp_path, INIT), [override]).axes[axis] == expected


@pytest.mark.parametrize("overrides, words", [
    (["seed=1", "seed=2"], ["overrides seed=2: seed is already set by overrides seed=1"]),
    (["small-init=1e-2", "small_init=1e-3"], ["small_init is already set"]),
    (["seed=0:x"], ["a range is start:stop[:step] in integers"]),
    (["seed=0:3,7"], ["a range is start:stop[:step]"]),
    (["small_init=0:3"], ["small_init takes numbers: a start:stop range is for integer axes", "logspace"]),
    (["seed=0:3:0"], ["step must not be 0"]),
    (["seed=3:0"], ["the list of values is empty"]),
    (["seed=0:2000000"], ["gives 2,000,000 values"]),
])
def test_bad_set_is_refused(tmp_path, overrides, words):
    with pytest.raises(ConfigError) as e:
        load_sweep(write(tmp_path, INIT), overrides)
    assert all(w in str(e.value) for w in words), str(e.value)


# --- an axis no block uses --------------------------------------------------------------------------


def test_an_axis_no_block_uses_runs_once_with_a_warning_as_data(tmp_path):
    sweep = load_sweep(write(tmp_path, INIT), ["alpha_init=0,0.5,1"])
    assert sweep.axes["alpha_init"] == (0.0,) and sweep.size == 3
    assert tuple(map(spell, sweep.warnings)) == (
        "overrides alpha_init: only the rezero block uses it and this sweep runs plain, residual; "
        "running alpha_init=0.0 only (not 3 identical copies)",)
    with_rezero = load_sweep(write(tmp_path, INIT), ["alpha_init=0,0.5,1", "blocks=plain,rezero"])
    assert with_rezero.axes["alpha_init"] == (0.0, 0.5, 1.0) and with_rezero.warnings == ()
    assert load_sweep(write(tmp_path, INIT)).warnings == ()  # an axis left at its default says nothing


def test_run_config_is_the_axis_table_field_by_field():
    import dataclasses
    import typing

    from cnnexp.config import RunConfig
    from cnnexp.schema import AXES

    fields = dataclasses.fields(RunConfig)
    hints = typing.get_type_hints(RunConfig)
    assert [f.name for f in fields] == [a.name for a in AXES]
    from cnnexp.data import DataSpec
    from cnnexp.nets import NetSpec
    from cnnexp.schema import AXIS

    # a net is written as its name (str); small_init is None (an empty cell) for a net drawn by another init
    # a data set is written as its name too (random, digits, npz:PATH, ...), RANDOM for the study's random x
    kinds = {"net": NetSpec | None, "small_init": float | None, "data": DataSpec}
    assert [hints[f.name] for f in fields] == [kinds.get(a.name, a.kind) for a in AXES]
    defaults = {"net": None, "data": RANDOM}
    assert [f.default for f in fields] == [defaults.get(a.name, a.default) for a in AXES]
    assert str(RunConfig().data) == AXIS["data"].default
    assert RunConfig.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().d = 3  # type: ignore[misc]
