"""Net files for the study: finding them, their layout (twin, bn off, repeats), the rows a run gives, and
what is refused before anything runs; then whole sweeps of networks through the CLI (a hidden grid's every
row against the engine, resume byte for byte, and each refusal: one line, exit 2, nothing written)."""
import csv

import pytest
from typer.testing import CliRunner

from cnnexp.cli import app
from cnnexp.errors import ConfigError, ShapeError
from cnnexp.nets import SHIPPED, check_net, find_net, lay_out, layer_rows, load_net, net_from_items
from cnnexp.shapes import chain_shape

runner = CliRunner(env={"COLUMNS": "120"})

BLOCK = {"residual": ["conv:out=4,k=3,p=1", "bn", "relu"], "shortcut": ["conv:out=4,k=1", "bn"]}
LAYERS = ["conv:out=4,k=3,p=1", "bn", {"repeat": 2, "layers": [BLOCK, "relu"]}, "adaptiveavgpool:out=1",
          "flatten", "linear:out=3"]


def test_the_layout_is_conv_shapes_rows_without_repeat_totals():
    net = net_from_items("n", "3x8x8", LAYERS)
    rows = [(r.path, r.layer) for r in layer_rows(lay_out(net.items, net.input))]
    expected = [(r.path, r.layer if r.kind != "residual" else "residual")
                for r in chain_shape("3x8x8", LAYERS).rows if r.kind != "repeat"]
    assert rows == expected


def test_the_twin_drops_shortcuts_and_bn_off_drops_every_bn_keeping_paths():
    net = net_from_items("n", "3x8x8", LAYERS)
    twin = [r.path for r in layer_rows(lay_out(net.items, net.input, skips=False, bn=False))]
    assert twin == ["1", "3.1.1.residual.1", "3.1.1.residual.3", "3.1.1", "3.1.2", "3.2.1.residual.1",
                    "3.2.1.residual.3", "3.2.1", "3.2.2", "4", "5", "6"]


def test_find_net_takes_a_path_beside_the_sweep_or_a_shipped_name(tmp_path):
    (tmp_path / "mine.yaml").write_text("input: 4\nlayers: [linear:out=2]\n")
    assert find_net("mine.yaml", tmp_path) == tmp_path / "mine.yaml"
    assert find_net("resnet20", tmp_path) == SHIPPED / "resnet20.yaml"
    with pytest.raises(ConfigError, match=r"net 'nope': no such file .*shipped: .*resnet18"):
        find_net("nope", tmp_path)


def test_shipped_cifar_resnets_have_the_papers_depth_and_size():
    for name, n in (("resnet20", 3), ("resnet56", 9)):
        net = load_net(name)
        shape = chain_shape("3x32x32", [r for r in _written(name)])
        weighted = [r for r in shape.layers if r.kind in ("conv", "linear") and ".shortcut." not in r.path]
        assert len(weighted) == 6 * n + 2 and shape.output == (10,) and net.input == (3, 32, 32)


def _written(name):
    import yaml

    return yaml.safe_load((SHIPPED / f"{name}.yaml").read_text())["layers"]


def test_a_batch_norm_that_would_see_one_value_per_channel_is_refused_naming_it():
    net = net_from_items("n", "3x8x8", ["conv:out=4,k=3", "adaptiveavgpool:out=1", "bn"])
    with pytest.raises(ShapeError, match=r"here: layer 3 'bn': batch norm would see 1 value per channel"):
        check_net(net, None, 1, True, "here")
    check_net(net, None, 2, True, "here")  # two samples: fine
    check_net(net, None, 1, False, "here")  # no batch norm: fine


def test_a_branch_and_shortcut_of_different_shapes_are_refused():
    net = net_from_items("n", "3x8x8", [{"residual": ["conv:out=4,k=3,p=1"], "shortcut": ["conv:out=5,k=1"]}])
    with pytest.raises(ShapeError, match=r"block 1 \(residual\): the residual branch gives 4 x 8 x 8 but the "
                                         r"shortcut gives 5 x 8 x 8"):
        check_net(net, None, 2, True, "here")


# ----------------------------------------------------------------------------------------------------------
# Whole sweeps of networks, through the CLI

NET_FILE = """input: 3x8x8
layers:
  - conv:out=4,k=3,p=1
  - bn
  - relu
  - residual: [conv:out=8,k=3,s=2,p=1,bias=false, bn, relu, conv:out=8,k=3,p=1,bias=false, bn]
    shortcut: [conv:out=8,k=1,s=2,bias=false, bn]
  - relu
  - maxpool:k=2
  - flatten
  - linear:out=5
"""
SWEEP = """name: nets
net: hidden.yaml
sweep:
  batch: [2, 3]
  init: [small, kaiming]
  small_init: [1.0e-1, 1.0e-2]
  bn: [on, off]
  zero_residual: [false, true]
  seed: [0, 1]
"""


@pytest.fixture
def nets_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hidden.yaml").write_text(NET_FILE)
    (tmp_path / "nets.yaml").write_text(SWEEP)
    return tmp_path


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_nets_sweep_writes_every_row_as_the_engine_computes_it(nets_dir):
    from cnnexp.config import RunConfig
    from cnnexp.engine.net import probe_net

    result = runner.invoke(app, ["sweep", "nets.yaml", "--per-layer", "layers.csv"])
    assert result.exit_code == 0, result.output
    rows = read(nets_dir / "results" / "nets.csv")
    # (small: 2 small_init, kaiming: once) x 2 batch x 2 bn x 2 zero_residual x 2 seeds, both blocks
    assert len(rows) == (2 + 1) * 2 * 2 * 2 * 2 * 2
    assert list(rows[0]) == ["block", "net", "input", "batch", "init", "small_init", "bn", "zero_residual", "dtype",
                             "seed", "loss", "x_grad_norm", "w_norm", "param_grad_norm"]
    assert {r["small_init"] for r in rows if r["init"] == "kaiming"} == {""}
    assert {r["input"] for r in rows} == {"3x8x8"} and {r["net"] for r in rows} == {"hidden.yaml"}
    layers = read(nets_dir / "layers.csv")
    net = load_net("hidden.yaml", nets_dir)
    for row in rows[::7]:  # a spread of configurations, each recomputed by the engine directly
        config = RunConfig(net=net, input=row["input"], batch=int(row["batch"]), seed=int(row["seed"]),
                           init=row["init"], small_init=float(row["small_init"]) if row["small_init"] else None,
                           bn=row["bn"], zero_residual=row["zero_residual"] == "True")
        [want] = probe_net(config, (row["block"],))
        for name in ("loss", "x_grad_norm", "w_norm", "param_grad_norm"):
            assert float(row[name]) == want.metrics[name]
        mine = [r for r in layers if all(r[k] == row[k] for k in list(rows[0])[:10])]
        assert [r["path"] for r in mine] == [w["path"] for w in want.layers]
        assert [r["weight_norm"] for r in mine] == ["" if w["weight_norm"] is None else repr(w["weight_norm"])
                                                    for w in want.layers]


def test_a_nets_sweep_resumes_byte_for_byte(nets_dir):
    args = ["sweep", "nets.yaml", "--per-layer", "layers.csv"]
    assert runner.invoke(app, args).exit_code == 0
    whole = (nets_dir / "results" / "nets.csv").read_bytes(), (nets_dir / "layers.csv").read_bytes()
    results = nets_dir / "results" / "nets.csv"
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-9]) + lines[-9][:7])  # killed mid-row
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert "wrote 9 rows (87 skipped)" in resumed.stderr
    assert (results.read_bytes(), (nets_dir / "layers.csv").read_bytes()) == whole


@pytest.mark.parametrize("sweep, message", [
    ("net: hidden.yaml\nsweep: {d: [8], depth: 2}\n",
     "nets.yaml: net and d, depth: a sweep of whole networks has no d, depth"),
    ("net: missing.yaml\nsweep: {seed: 0}\n", "nets.yaml: net 'missing.yaml': no such file"),
    ("net: hidden.yaml\nsweep: {init: [he]}\n", "nets.yaml: sweep.init: 'he' is not one of small, kaiming, xavier"),
    ("net: hidden.yaml\nsweep: {bn: [maybe]}\n", "nets.yaml: sweep.bn: 'maybe' is not one of on, off"),
    ("net: hidden.yaml\nblocks: [rezero]\nsweep: {seed: 0}\n",
     "nets.yaml: blocks: a network runs as written (residual) and as its plain twin (plain), not as rezero"),
    ("net: hidden.yaml\nsweep: {init: kaiming, small_init: [0.1]}\n",
     "nets.yaml: sweep.small_init: small_init is the scale of init small, and this sweep's init is kaiming"),
    ("net: hidden.yaml\nsweep: {steps: 10}\n", "nets.yaml: net and steps"),
    ("sweep: {init: kaiming}\n", "nets.yaml: sweep.init: init is an axis of whole networks"),
    ("net: pooled.yaml\nsweep: {batch: 1}\n", "nets.yaml: net pooled.yaml: layer 3 'bn': batch norm would see 1 value"),
    ("net: mismatch.yaml\nsweep: {seed: 0}\n",
     "nets.yaml: net mismatch.yaml: block 1 (residual): the residual branch gives 4 x 8 x 8"),
])
def test_bad_net_input_is_one_line_exit_2_and_nothing_written(nets_dir, sweep, message):
    (nets_dir / "pooled.yaml").write_text("input: 3x8x8\nlayers: [conv:out=4,k=3, adaptiveavgpool:out=1, bn]\n")
    (nets_dir / "mismatch.yaml").write_text("input: 3x8x8\nlayers:\n  - residual: [conv:out=4,k=3,p=1]\n"
                                            "    shortcut: [conv:out=5,k=1]\n")
    (nets_dir / "nets.yaml").write_text(sweep)
    result = runner.invoke(app, ["sweep", "nets.yaml"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output and not (nets_dir / "results").exists()


def test_set_input_overrides_the_net_files(nets_dir):
    result = runner.invoke(app, ["sweep", "nets.yaml", "--set", "input=3x16x16", "--set", "init=kaiming",
                                 "--set", "small_init=", "--dry-run"])
    assert result.exit_code == 2 and "small_init" in result.stderr  # (an empty value is refused)
    (nets_dir / "nets.yaml").write_text("net: hidden.yaml\nsweep: {seed: 0}\n")
    result = runner.invoke(app, ["sweep", "nets.yaml", "--set", "input=3x16x16"])
    assert result.exit_code == 0, result.output
    assert {r["input"] for r in read(nets_dir / "results" / "nets.csv")} == {"3x16x16"}


def test_a_network_too_big_for_memory_is_refused_before_it_starts(nets_dir, monkeypatch):
    import yaml

    import cnnexp.memory
    from cnnexp.config import RunConfig
    from cnnexp.engine.cost import unit_bytes

    need = unit_bytes(RunConfig(net=load_net("hidden.yaml", nets_dir), input="3x8x8", batch=3), 2)
    # at least every activation of a sample, float32, with its gradient, for both block kinds, at batch 3
    activations = chain_shape("3x8x8", yaml.safe_load(NET_FILE)["layers"]).activations
    assert need > 3 * 2 * 4 * 2 * activations
    monkeypatch.setattr(cnnexp.memory, "available_bytes", lambda: need - 1)
    result = runner.invoke(app, ["sweep", "nets.yaml", "--workers", "1"])
    assert result.exit_code == 2 and "net hidden.yaml, input 3x8x8, batch=3 needs about" in result.stderr
    assert "lower batch" in result.stderr and not (nets_dir / "results").exists()
    monkeypatch.setattr(cnnexp.memory, "available_bytes", lambda: need)
    assert runner.invoke(app, ["sweep", "nets.yaml", "--workers", "1", "--dry-run"]).exit_code == 0
