"""The command line, through Typer's CliRunner and once through the installed `cnnexp` script."""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from typer.testing import CliRunner

from cnnexp.cli import app
from tests.test_engine_reference import NOTEBOOK

runner = CliRunner(env={"COLUMNS": "120"})
TINY = "name: tiny\nsweep:\n  d: 8\n  batch: 2\n  small_init: [1.0e-2, 1e-3]\n  seed: [0, 1]\n"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def test_sweep_writes_csv_meta_and_a_side_by_side_table(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml"])
    assert result.exit_code == 0, result.output
    lines = (in_tmp / "results" / "tiny.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 2
    assert (in_tmp / "results" / "tiny.csv.meta.json").exists()
    assert "ratio" in result.stdout and "x_grad_norm" in result.stdout
    assert "wrote 8 rows" in result.stderr


def test_sweep_plot_draws_the_default_figure_beside_the_csv(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--plot"])
    assert result.exit_code == 0, result.output
    png = in_tmp / "results" / "tiny.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


def test_per_layer_rows_and_their_resume(in_tmp):
    args = ["sweep", "tiny.yaml", "--set", "depth=1,3", "--per-layer", "layers.csv"]
    assert runner.invoke(app, args).exit_code == 0
    import pandas as pd

    from cnnexp import load_results

    layers, rows = load_results("layers.csv"), load_results("results/tiny.csv")
    assert len(layers) == rows["depth"].sum()  # one row per run and block index
    first = layers[layers["block_index"] == 0].drop(columns="block_index").reset_index(drop=True)
    pd.testing.assert_series_equal(first["a1_grad_norm"], rows["a1_grad_norm"], check_names=False)
    # a torn per-layer file resumes to the same bytes
    full = (in_tmp / "layers.csv").read_bytes()
    csv_lines = (in_tmp / "results" / "tiny.csv").read_bytes().splitlines(keepends=True)
    (in_tmp / "results" / "tiny.csv").write_bytes(b"".join(csv_lines[:5]))
    assert runner.invoke(app, args).exit_code == 0
    assert (in_tmp / "layers.csv").read_bytes() == full
    # asking for per-layer rows only on a resume runs again the runs that lack them
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "depth=1,3", "--per-layer", "other.csv"])
    assert result.exit_code == 0 and "lack their per-layer rows; they run again" in result.stderr
    assert (in_tmp / "other.csv").read_bytes() == full


def test_sweep_resume_says_how_many_were_skipped(in_tmp):
    runner.invoke(app, ["sweep", "tiny.yaml"])
    result = runner.invoke(app, ["sweep", "tiny.yaml"])
    assert result.exit_code == 0 and "8 of 8 rows already there, skipped" in result.stderr


def test_set_and_out(in_tmp):
    (in_tmp / "x").mkdir()
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "seed=0,1,2", "--set", "d=4", "--out", "x/y.csv"])
    assert result.exit_code == 0, result.output
    lines = (in_tmp / "x" / "y.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3 * 2 and all(line.split(",")[1] == "4" for line in lines[1:])
    assert (in_tmp / "x" / "y.csv.meta.json").exists()


def test_dry_run_lists_runs_and_writes_nothing(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--dry-run"])
    assert result.exit_code == 0
    assert "4 configurations x 2 blocks = 8 rows" in result.stdout
    assert not (in_tmp / "results").exists()


def test_a_foreign_csv_is_refused_and_left_alone(in_tmp):
    runner.invoke(app, ["sweep", "tiny.yaml"])
    before = (in_tmp / "results" / "tiny.csv").read_bytes()
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "seed=5"])
    assert result.exit_code == 2 and "different sweep definition" in result.stderr
    assert (in_tmp / "results" / "tiny.csv").read_bytes() == before
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "seed=5", "--overwrite"])
    assert result.exit_code == 0 and len((in_tmp / "results" / "tiny.csv").read_text().splitlines()) == 5


@pytest.mark.parametrize("args, words", [
    (["sweep", "nope.yaml"], ["nope.yaml", "no such file"]),
    (["sweep", "tiny.yaml", "--set", "sed=1"], ["unknown axis 'sed'", "did you mean 'seed'"]),
    (["sweep", "tiny.yaml", "--set", "batch=0"], ["--set batch", "at least 1"]),
    (["run", "--d", "0"], ["d", "at least 1"]),
    (["run", "--small-init", "-1"], ["small_init", "negative"]),
    (["run", "--blocks", "plain,foo"], ["unknown block 'foo'"]),
    (["run", "--lr", "-0.1"], ["lr: -0.1", "greater than 0"]),
    (["run", "--steps", "-3"], ["steps: -3", "must not be negative"]),
    (["run", "--target", "teacher_residul"], ["'teacher_residul'", "did you mean 'teacher_residual'"]),
    (["run", "--steps", "2", "--curve", "c.csv", "--curve-every", "-1"], ["--curve-every -1"]),
    (["sweep", "tiny.yaml", "--set", "target=idenity"], ["--set target", "did you mean 'identity'"]),
    (["sweep", "tiny.yaml", "--set", "lr=0"], ["--set lr", "greater than 0"]),
    (["sweep", "tiny.yaml", "--set", "steps=-1"], ["--set steps", "must not be negative"]),
    (["sweep", "tiny.yaml", "--out", "r.csv", "--curve", "r.csv"], ["--curve must name a file of its own"]),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(in_tmp, args, words):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr
    assert not (in_tmp / "results").exists()


def test_file_names_with_brackets_are_printed_as_they_are(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--out", "res[v2].csv"])
    assert result.exit_code == 0 and "to res[v2].csv" in result.stderr
    result = runner.invoke(app, ["sweep", "no[/pe].yaml"])
    assert result.exit_code == 2 and "no[/pe].yaml: no such file" in result.stderr


def test_bad_yaml_file_names_the_line(in_tmp):
    (in_tmp / "bad.yaml").write_text("sweep:\n  d: [1, 2]\n   seed: 1\n")
    result = runner.invoke(app, ["sweep", "bad.yaml"])
    assert result.exit_code == 2 and "bad.yaml: YAML error (line 3" in result.stderr


def test_run_prints_the_notebooks_numbers():
    result = runner.invoke(app, ["run", "--d", "256", "--batch", "64", "--small-init", "1e-4", "--seed", "123"])
    assert result.exit_code == 0
    assert "1.02284e-13" in result.stdout and "0.0156599" in result.stdout


def test_run_json_is_for_scripts():
    result = runner.invoke(app, ["run", "--json"])
    data = json.loads(result.stdout)
    assert data["config"] == {"d": 256, "batch": 64, "small_init": 1e-4, "seed": 123, "depth": 1,
                              "activation": "relu", "dtype": "float32", "alpha_init": 0.0}
    for block, expected in NOTEBOOK.items():
        assert data[block]["x_grad_norm"] == pytest.approx(expected["x_grad_norm"], rel=1e-5)


def test_run_json_is_strict_json_even_when_a_metric_overflows():
    result = runner.invoke(app, ["run", "--json", "--small-init", "1e30", "--d", "8", "--batch", "2"])
    data = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["plain"]["loss"] is None  # (1e30)^4 overflows float32


def test_installed_script_runs_a_sweep(tmp_path):
    script = shutil.which("cnnexp") or str(Path(__import__("sys").executable).parent / "cnnexp")
    (tmp_path / "tiny.yaml").write_text(TINY)
    done = subprocess.run([script, "sweep", "tiny.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "results" / "tiny.csv").read_text().splitlines()) == 9
    bad = subprocess.run([script, "sweep", "missing.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "missing.yaml" in bad.stderr
    # an --out nobody can create (Linux /proc) is found only when writing starts
    bad = subprocess.run([script, "sweep", "tiny.yaml", "--out", "/proc/cnnexp-test.csv"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "cannot write" in bad.stderr, bad.stderr
    # Typer's own usage errors are one line too
    for args, words in ((["sweep", "tiny.yaml", "--threads", "0"], "--threads"), (["sweep"], "Missing argument"),
                        (["run", "--d", "abc"], "'--d'"), (["nosuch"], "No such command")):
        bad = subprocess.run([script, *args], cwd=tmp_path, capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and words in bad.stderr, bad.stderr
        assert bad.stdout == "" and "Traceback" not in bad.stderr
    assert subprocess.run([script, "--help"], capture_output=True).returncode == 0



def test_an_output_that_cannot_be_written_is_one_line_exit_1(tmp_path):
    """stdout on a full disk (a /dev/full node made here): one line, no traceback, exit 1."""
    try:
        os.mknod(tmp_path / "full", 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("making a device node needs root")
    with open(tmp_path / "full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "cnnexp", "run", "--d", "8", "--batch", "2"], stdout=full,
                              stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot write the output: No space left on device" in done.stderr

# --- CNN shapes and convolution ---

from tests.test_shapes import chains, torch_chain  # noqa: E402  (the random chains of the shapes tests)


def conv_shape(*args: str):
    return runner.invoke(app, ["conv-shape", *args])


def assert_one_line_error(result, *words: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr that says why, and no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)  # not a crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.output


def test_single_layer_prints_the_formula_and_torch_size():
    y = nn.Conv2d(1, 1, 3, stride=2, padding=1)(torch.zeros(1, 1, 224, 224))
    result = conv_shape("224", "--kernel", "3", "--stride", "2", "--padding", "1", "--dilation", "1")
    assert result.exit_code == 0, result.output
    assert f"H_out = floor((224 + 2*1 - 1*(3-1) - 1) / 2) + 1 = {y.shape[2]}" in result.stdout
    assert "fully-connected" in result.stdout


def test_single_layer_json_uses_channel_flags():
    conv = nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    y = conv(torch.zeros(1, 3, 64, 48))
    result = conv_shape("64x48", "--kernel", "3x5", "--stride", "2x1", "--padding", "1x2", "--dilation", "1x2",
                        "--in-channels", "3", "--out-channels", "8", "--json")
    data = json.loads(result.stdout)
    assert data["input"] == [3, 64, 48] and data["output"] == list(y.shape[1:])
    assert data["params"] == sum(p.numel() for p in conv.parameters())
    assert data["layers"][0]["layer"] == "conv:out=8,k=3x5,s=2x1,p=1x2,d=1x2"


def test_chain_json_matches_torch_modules():
    stem = [nn.Conv2d(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1), nn.Conv2d(64, 64, 3, padding=1, bias=False),
            nn.AvgPool2d(2, ceil_mode=True), nn.ConvTranspose2d(64, 16, 4, 2, 1, output_padding=1, dilation=1)]
    specs = ["conv:out=64,k=7,s=2,p=3", "maxpool:k=3,s=2,p=1", "conv:out=64,k=3,p=1,bias=false",
             "avgpool:k=2,ceil=true", "convT:out=16,k=4,s=2,p=1,op=1"]
    result = conv_shape("--input", "3x57x57", *(a for s in specs for a in ("--layer", s)), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data)[:5] == ["input", "layers", "output", "params", "macs"]  # then the memory keys (issue 11)
    x = torch.zeros(1, 3, 57, 57)
    for row, spec, module in zip(data["layers"], specs, stem):
        x = module(x)
        assert row["layer"] == spec and row["output"] == list(x.shape[1:])
        assert row["params"] == sum(p.numel() for p in module.parameters())
    assert data["output"] == list(x.shape[1:])


def test_chain_table_has_a_row_per_layer_and_totals():
    result = conv_shape("--input", "3x224x224", "--layer", "conv:out=64,k=7,s=2,p=3", "--layer", "maxpool:k=3,s=2,p=1")
    assert result.exit_code == 0
    for text in ("64 x 112 x 112", "64 x 56 x 56", "9,472", "total", "fully-connected"):
        assert text in result.stdout


def test_from_yaml_equals_layer_flags(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("input: 3x32x32\nlayers:\n  - conv:out=8,k=3,p=1\n  - maxpool:k=2\n")
    from_file = conv_shape("--from", str(path), "--json")
    from_flags = conv_shape("--input", "3x32x32", "--layer", "conv:out=8,k=3,p=1", "--layer", "maxpool:k=2", "--json")
    assert from_file.exit_code == 0 and from_file.stdout == from_flags.stdout
    # --input overrides the file's input
    assert json.loads(conv_shape("--from", str(path), "--input", "1x16x16", "--json").stdout)["input"] == [1, 16, 16]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--input", "3x8x8", "--layer", "maxpool:k=3,p=2"], ["layer 1 'maxpool:k=3,p=2'", "half the kernel"]),
        (["--input", "3x8x8", "--layer", "conv:out=4,k=3,s=2,p=same"], ["'same' needs stride 1"]),
        (["--input", "3x8x8", "--layer", "conv:out=4,k=3,zz=1"], ["unknown key 'zz'"]),
        (["--input", "3x8", "--layer", "conv:out=4,k=3"], ["--input", "'3x8'"]),
        (["--layer", "conv:out=4,k=3"], ["--layer needs --input"]),
        (["224"], ["SIZE needs --kernel"]),
        (["224", "--kernel", "3", "--layer", "conv:out=4,k=3"], ["not both"]),
        (["4", "--kernel", "7"], ["larger than the padded input"]),
        (["224", "--kernel", "3", "--in-channels", "0"], ["--in-channels"]),
        ([], ["nothing to compute"]),
        (["--from", "/nonexistent/net.yaml"], ["/nonexistent/net.yaml", "no such file"]),
    ],
)
def test_conv_shape_bad_input_is_one_line_on_stderr_and_exit_2(args, words):
    assert_one_line_error(conv_shape(*args), *words)


def test_bad_yaml_names_file_and_key(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("input: 3x8x8\nlayers: [conv:out=1,k=1]\nstride: 2\n")
    assert_one_line_error(conv_shape("--from", str(path)), str(path), "unknown key 'stride'")


@settings(max_examples=40, deadline=None)
@given(chains())
def test_cli_accepts_and_refuses_what_torch_does(chain):
    shape, specs, makers = chain
    expected = torch_chain(shape, makers)
    result = conv_shape("--input", "x".join(map(str, shape)), *(a for s in specs for a in ("--layer", s)), "--json")
    if expected is None:
        assert_one_line_error(result)
    else:
        assert result.exit_code == 0, result.output
        assert [tuple(row["output"]) for row in json.loads(result.stdout)["layers"]] == [o for o, _ in expected]


@pytest.mark.parametrize(
    "args",
    [
        ["224", "--kernel", "3"],
        ["--input", "3x224x224", "--layer", "conv:out=64,k=7,s=2,p=3", "--json"],
        ["--input", "3x8x8", "--layer", "maxpool:k=3,p=2"],  # the error path too
    ],
)
def test_conv_shape_imports_no_torch_numpy_or_pandas(args):
    code = (
        "import sys\nfrom cnnexp.cli import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted({'torch', 'numpy', 'pandas'} & set(sys.modules)), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr


def test_python_m_cnnexp_error_has_no_traceback():
    result = subprocess.run([sys.executable, "-m", "cnnexp", "conv-shape", "--input", "3x8x8", "--layer", "pool:k=2"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "error: layer 1 'pool:k=2': unknown layer kind 'pool'; use one of conv, " \
                                    "maxpool, avgpool, convT, adaptiveavgpool, adaptivemaxpool, upsample, bn, " \
                                    "identity, " \
                                    "relu, relu6, gelu, sigmoid, tanh, silu, hardswish, leakyrelu, dropout, flatten, " \
                                    "linear"


def test_conv_check_agrees_and_exits_0():
    result = runner.invoke(app, ["conv-check", "--batch", "2", "--in-channels", "3", "--out-channels", "4",
                                 "--size", "8", "--kernel", "3", "--padding", "1", "--seed", "0", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert all(m in result.stdout for m in ("loop", "fast", "torch", "agree"))


def test_conv_check_exits_1_when_it_finds_a_difference():
    result = runner.invoke(app, ["conv-check", "--in-channels", "8", "--repeats", "1", "--tolerance", "1e-30"])
    assert result.exit_code == 1 and "DIFFER" in result.stdout


@pytest.mark.parametrize(
    "args, words",
    [(["--kernel", "11"], ["layer 1", "larger than the padded input"]), (["--padding", "same"], ["--padding same"])],
)
def test_conv_check_bad_geometry_exits_2(args, words):
    assert_one_line_error(runner.invoke(app, ["conv-check", "--repeats", "1", *args]), *words)


@pytest.mark.parametrize(
    "args, words",
    [
        (["32", "--kernel", "3", "--input", "5x100x100"], ["either SIZE", "not both"]),
        (["0", "--kernel", "3"], ["SIZE '0'"]),
        (["99999999999999999999999", "--kernel", "3"], ["SIZE", "beyond int64"]),
        (["8", "--kernel", "3", "--in-channels", str(2**63)], ["--in-channels", "int64"]),
        (["--input", "3x8x8", "--layer", "conv:out=8,,k=3"], ["an empty item"]),
        (["--input", "3x8x8", "--layer", "conv:out=8,k=3,"], ["a trailing comma"]),
        (["--input", "3x8x8", "--layer", "Conv:out=8,k=3"], ["unknown layer kind 'Conv'", "did you mean 'conv'?"]),
    ],
)
def test_conv_shape_loose_or_mixed_input_is_refused(args, words):
    result = conv_shape(*args)
    assert_one_line_error(result, *words)
    assert "--input" in args or "--input" not in result.stderr  # never a flag the user did not give


def test_a_files_bad_layer_names_the_file(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("input: 3x8x8\nlayers:\n  - conv:out=4,k=3,bias=no\n")
    assert_one_line_error(conv_shape("--from", str(path)), f"{path}: layer 1 'conv:out=4,k=3,bias=no': bias='no'")


def test_huge_chain_ratio_is_exact():
    """Near PyTorch's size limit the counts are exact integers, and so is the rounded ratio (no float noise)."""
    from fractions import Fraction

    conv = nn.Conv2d(1, 1, 3, device="meta")
    y = conv(torch.empty(1, 1, 2**30, 2**30, device="meta"))
    n_in, n_out, params = 2**60, y.numel(), sum(p.numel() for p in conv.parameters())
    result = conv_shape("--input", f"1x{2**30}x{2**30}", "--layer", "conv:out=1,k=3")
    assert result.exit_code == 0, result.output
    ratio = round(Fraction(n_in * n_out + n_out, params))
    assert f"would need {n_in * n_out + n_out:,} weights and biases, {ratio:,}x the {params:,} here." in result.stdout


def _conv_check(*args: str):
    return runner.invoke(app, ["conv-check", "--repeats", "1", *args])


def test_conv_check_skips_the_loop_over_the_limit_and_says_so():
    result = _conv_check("--loop-limit", "0")
    assert result.exit_code == 0, result.output
    loop_row = next(line for line in result.stdout.splitlines() if line.strip().startswith("loop "))
    assert "skipped" in loop_row
    assert "loop skipped: its work" in result.stdout and "is over --loop-limit 0" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("fast and torch agree")
    assert "loop skipped (over --loop-limit)" in result.stdout.strip().splitlines()[-1]
    # and the default keeps the loop for a small check
    assert "skipped" not in _conv_check().stdout


def test_conv_check_with_the_loop_skipped_still_exits_1_when_fast_differs():
    result = _conv_check("--in-channels", "8", "--tolerance", "1e-30", "--loop-limit", "0")
    assert result.exit_code == 1 and "fast and torch DIFFER" in result.stdout


def test_conv_check_too_big_for_memory_is_one_line_before_any_work():
    result = _conv_check("--size", "5000", "--batch", "64", "--in-channels", "64", "--out-channels", "64")
    assert_one_line_error(result, "GiB", "more than the", "lower --size, --batch or the channels")


@pytest.mark.parametrize(
    "args, words",
    [(["--seed", "-1"], ["--seed", "-1"]), (["--loop-limit", "-1"], ["--loop-limit"]),
     (["--size", "0"], ["--size '0'"]), (["--size", str(2**63)], ["--size", "int64"])],
)
def test_conv_check_bad_numbers_are_one_line_through_the_script(args, words):
    script = shutil.which("cnnexp") or str(Path(sys.executable).parent / "cnnexp")
    result = subprocess.run([script, "conv-check", "--repeats", "1", *args], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines
    assert "--input" not in lines[0]


# --- conventions: --version, -h, completion, narrow terminals ------------------------------------------


def test_version_and_short_help():
    from cnnexp import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"cnnexp {__version__}\n"
    for args in (["-h"], ["sweep", "-h"], ["conv-shape", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage: " in result.stdout and "--help" in result.stdout


def test_shell_completion_is_offered(monkeypatch):
    import shellingham

    help_text = runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text
    # Typer detects the shell from the parent process, which a test does not control: say it is bash
    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("bash", "/bin/bash"))
    script = runner.invoke(app, ["--show-completion"], prog_name="cnnexp")
    assert script.exit_code == 0 and "complete -o default -F _cnnexp_completion cnnexp" in script.stdout


def test_tables_fit_columns_and_keep_every_number(in_tmp):
    wide = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "blocks=plain,residual,rezero,prenorm"],
                         env={"COLUMNS": "60"})
    assert wide.exit_code == 0, wide.output
    assert max(map(len, wide.stdout.splitlines())) <= 60
    import pandas as pd

    rows = pd.read_csv(in_tmp / "results" / "tiny.csv")
    config = [c for c in rows.columns[: list(rows.columns).index("loss")] if c != "seed"]
    means = rows.groupby(config)["x_grad_norm"].mean()  # the table shows each configuration's mean over seeds
    for value in means:  # every number is on screen, whole, in one of the split tables
        assert f"{value:.4g}" in wide.stdout
    natural = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "blocks=plain,residual,rezero,prenorm"],
                            env={"COLUMNS": None})  # a pipe without COLUMNS: the natural width
    assert max(map(len, natural.stdout.splitlines())) > 60


# --- dry run: the plan, and one line on what a real run would do ---------------------------------------


def test_dry_run_says_what_a_real_run_would_do(in_tmp):
    first = runner.invoke(app, ["sweep", "tiny.yaml", "--dry-run"])
    assert first.stdout.splitlines()[-1] == "a real run would write results/tiny.csv: 8 rows to run"
    runner.invoke(app, ["sweep", "tiny.yaml", "--set", "seed=0"])  # 4 rows
    other = runner.invoke(app, ["sweep", "tiny.yaml", "--dry-run"])
    assert other.exit_code == 0 and other.stderr == ""
    assert other.stdout.splitlines()[-1].startswith("a real run would refuse: results/tiny.csv: was written by a "
                                                    "different sweep definition")
    assert "4 configurations x 2 blocks = 8 rows (8 to run)" in other.stdout


def test_dry_run_of_a_resume_and_of_a_large_sweep(in_tmp):
    runner.invoke(app, ["sweep", "tiny.yaml"])
    lines = (in_tmp / "results" / "tiny.csv").read_text().splitlines(keepends=True)
    (in_tmp / "results" / "tiny.csv").write_text("".join(lines[:4]))
    resume = runner.invoke(app, ["sweep", "tiny.yaml", "--dry-run"])
    assert resume.stdout.splitlines()[-1] == "a real run would resume results/tiny.csv: 3 of 8 rows are there, 5 to run"
    big = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "seed=0:1000", "--set", "d=1:101", "--out", "big.csv",
                              "--dry-run"])
    assert big.exit_code == 0 and "200,000 configurations x 2 blocks = 400,000 rows" in big.stdout
    assert "... and 199,960 more configurations" in big.stdout
    assert len([line for line in big.stdout.splitlines() if line.strip().endswith("plain, residual")]) == 40


def test_a_refusal_says_nothing_before_it(in_tmp):
    from cnnexp.results import ResultsFile
    from cnnexp.schema import COLUMNS

    runner.invoke(app, ["sweep", "tiny.yaml"])
    lines = (in_tmp / "results" / "tiny.csv").read_text().splitlines(keepends=True)
    (in_tmp / "results" / "tiny.csv").write_text("".join(lines[:4]))
    with ResultsFile(in_tmp / "results" / "tiny.csv", COLUMNS):  # another sweep is writing it
        locked = runner.invoke(app, ["sweep", "tiny.yaml"])
    assert locked.exit_code == 2 and locked.stdout == ""
    assert locked.stderr.splitlines() == ["error: results/tiny.csv: another cnnexp sweep is writing it now; wait "
                                          "for it, or use --out for another file"]
    resumed = runner.invoke(app, ["sweep", "tiny.yaml"])
    assert resumed.stderr.splitlines()[0] == "resuming results/tiny.csv: 3 of 8 rows already there, skipped"


def test_an_unused_axis_is_warned_once_and_run_once(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "alpha_init=0,1,2"])
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: --set alpha_init: only the rezero block uses it and this sweep runs plain, "
                        "residual; running alpha_init=0.0 only (not 3 identical copies)"]
    assert len((in_tmp / "results" / "tiny.csv").read_text().splitlines()) == 1 + 8


# --- odd paths: devices, FIFOs, missing folders, other formats (nodes made here, never /dev/null) ------


def make_device(path):
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


@pytest.mark.parametrize("args, words", [
    (["sweep", "tiny.yaml", "--out", "<dev>"], ["--out <dev>: is a character device"]),
    (["sweep", "tiny.yaml", "--per-layer", "<dev>"], ["--per-layer <dev>: is a character device"]),
    (["sweep", "tiny.yaml", "--out", "<fifo>"], ["--out <fifo>: is a FIFO"]),
    (["sweep", "<dev>"], ["<dev>: is a character device, not a regular file"]),
    (["sweep", "<fifo>"], ["<fifo>: is a FIFO (named pipe), not a regular file"]),
    (["conv-shape", "--from", "<fifo>"], ["<fifo>: is a FIFO"]),
    (["sweep", "tiny.yaml", "--out", "no/such/dir/x.csv"], ["the folder no/such/dir does not exist"]),
    (["sweep", "tiny.yaml", "--out", "r.parquet"], ["--out r.parquet: unknown or unwritten format '.parquet'"]),
    (["sweep", "tiny.yaml", "--out", "r.txt"], ["--out r.txt: unknown or unwritten format '.txt'"]),
])
def test_odd_paths_are_one_line_and_touch_nothing(in_tmp, args, words):
    device = make_device(in_tmp / "dev.csv")
    os.mkfifo(in_tmp / "fifo.csv")
    names = {"<dev>": "dev.csv", "<fifo>": "fifo.csv"}
    args = [names.get(a, a) for a in args]
    words = [w.replace("<dev>", "dev.csv").replace("<fifo>", "fifo.csv") for w in words]
    before = sorted(p.name for p in in_tmp.iterdir())
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert len(result.stderr.splitlines()) == 1 and all(w in result.stderr for w in words), result.stderr
    assert sorted(p.name for p in in_tmp.iterdir()) == before and stat.S_ISCHR(device.stat().st_mode)


def test_a_training_sweep_shows_losses_and_steps_to_fit_and_its_curve_plots(in_tmp):
    args = ["sweep", "tiny.yaml", "--set", "steps=30", "--set", "lr=0.5", "--set", "target=identity,teacher_residual",
            "--curve", "curve.csv"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tiny: losses and steps to fit" in result.stdout
    for heading in ("initial loss", "final loss", "steps_to_fit"):
        assert heading in result.stdout
    assert "curve rows in curve.csv" in result.stderr
    from cnnexp import load_results

    rows = load_results("results/tiny.csv")
    assert {"steps", "lr", "target", "initial_loss", "steps_to_fit"} <= set(rows.columns)
    fit = rows[(rows["block"] == "residual") & (rows["target"] == "identity")]["steps_to_fit"]
    assert (fit == 0).all()  # y = x: the residual stack's output is x + F(x), F tiny: fitted at step 0
    result = runner.invoke(app, ["plot", "curve.csv", "--x", "step", "--y", "loss", "--out", "curve.png"])
    assert result.exit_code == 0, result.output
    assert (in_tmp / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_run_trains_and_writes_its_curve(in_tmp):
    result = runner.invoke(app, ["run", "--d", "6", "--batch", "4", "--steps", "9", "--target", "identity",
                                 "--dtype", "float64", "--json", "--curve", "c.csv", "--curve-every", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["config"]["steps"] == 9 and data["config"]["target"] == "identity"
    assert data["residual"]["steps_to_fit"] == 0 and data["plain"]["initial_loss"] > data["plain"]["loss"]
    from cnnexp import load_results

    curve = load_results("c.csv")
    assert list(curve["step"].unique()) == [0, 1, 2, 3, 4, 6, 8, 9]
    last = curve[(curve["step"] == 9) & (curve["block"] == "plain")]["loss"]
    assert last.item() == data["plain"]["loss"]


@pytest.mark.parametrize("args", [["sweep", "configs/init.yaml", "--dry-run"],
                                  ["sweep", "configs/init.yaml", "--set", "seed=x"],
                                  ["sweep", "configs/init.yaml", "--set", "nope=1"]])
def test_a_dry_run_and_a_refused_sweep_never_import_torch(args):
    """Reading, checking and planning come before torch: a dry run or a bad file answers at once."""
    root = Path(__file__).parents[1]
    code = ("import sys\nfrom cnnexp.cli import main\nsys.argv = ['cnnexp', *sys.argv[1:]]\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=root, capture_output=True, text=True)
    assert p.stderr.strip().splitlines()[-1] == "False", p.stderr


def _script(args, env=None, cwd=None):
    """The installed `cnnexp` script in a process of its own (COLUMNS is read when the consoles are made)."""
    script = str(Path(sys.executable).with_name("cnnexp"))
    return subprocess.run([script, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("columns", ["0", "1", "abc"])
def test_an_unusable_columns_is_ignored_and_an_error_line_never_disappears(tmp_path, columns):
    root = Path(__file__).parents[1]
    refused = _script(["sweep", str(root / "configs/init.yaml"), "--out", str(tmp_path / "nowhere/x.csv")],
                      env={"COLUMNS": columns})
    assert refused.returncode == 2 and "the folder" in refused.stderr and "nowhere" in refused.stderr
    shape = _script(["conv-shape", "8", "--kernel", "3"], env={"COLUMNS": columns})
    assert shape.returncode == 0 and "H_out = floor((8 + 2*0 - 1*(3-1) - 1) / 1) + 1 = 6" in shape.stdout


def test_bare_cnnexp_shows_its_help_and_succeeds():
    p = _script([])
    assert p.returncode == 0 and "Usage: cnnexp" in p.stdout and "sweep" in p.stdout


def test_dir_of_the_package_lists_its_public_names():
    import cnnexp

    assert {"load_results", "fit", "conv2d_numpy", "build_net", "__version__"} <= set(dir(cnnexp))


def test_more_workers_than_configurations_is_said(in_tmp):
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--workers", "8"])
    assert result.exit_code == 0 and "--workers 8: only 4 configurations to run, so 4 workers" in result.stderr


def test_redirected_tables_carry_no_trailing_spaces(tmp_path):
    p = _script(["run", "--d", "8", "--batch", "2"], env={"COLUMNS": "200"})
    assert p.returncode == 0 and p.stdout.count("\n") > 5
    assert not [line for line in p.stdout.splitlines() if line != line.rstrip()]


@pytest.mark.parametrize("flag", ["--per-layer", "--curve"])
def test_a_resume_without_a_side_file_of_the_first_run_is_refused_and_keeps_it_whole(in_tmp, flag):
    (in_tmp / "tiny.yaml").write_text(TINY + "  steps: 2\n")
    assert runner.invoke(app, ["sweep", "tiny.yaml", flag, "side.csv"]).exit_code == 0
    results = in_tmp / "results" / "tiny.csv"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-2]))  # killed before its last two rows
    side, meta = (in_tmp / "side.csv").read_bytes(), (in_tmp / "results" / "tiny.csv.meta.json").read_bytes()
    refused = runner.invoke(app, ["sweep", "tiny.yaml"])
    assert refused.exit_code == 2
    assert f"its earlier runs wrote their {'per-layer' if flag == '--per-layer' else 'curve'} rows to side.csv; " \
           f"resume with {flag} side.csv" in refused.stderr
    assert (in_tmp / "side.csv").read_bytes() == side
    assert (in_tmp / "results" / "tiny.csv.meta.json").read_bytes() == meta
    resumed = runner.invoke(app, ["sweep", "tiny.yaml", flag, "side.csv"])
    assert resumed.exit_code == 0 and "wrote 2 rows (6 skipped)" in resumed.stderr


@pytest.mark.parametrize("args, message", [
    (["plot", "results/tiny.csv", "--x", "activation"],
     "--x activation: not a numeric axis of results/tiny.csv (numeric axes: d, batch, small_init, seed, depth, "
     "alpha_init); to give each of its values panels of their own, use --facet activation"),
    (["plot", "tiny.yaml"], "tiny.yaml: is a YAML file (a sweep?), not a results CSV; run it with cnnexp sweep"),
    (["summary", "yaml-ish.csv"], "yaml-ish.csv: not a results CSV: line 3 has 2 cells, more than its header"),
    (["sweep", "results/tiny.csv"], "results/tiny.csv: is a results file, not a sweep file"),
    (["sweep", "tiny.yaml", "--set", "small_init=1e-2:1e-4"],
     "small_init takes numbers: a start:stop range is for integer axes; give a list (--set small_init=0.01,0.001)"),
    (["compare", "results/tiny.csv", "results/tiny.csv", "--rtol", "-1"],
     "--rtol -1: must be a finite non-negative number"),
    (["sweep", "tiny.yaml", "--out", "results"], "--out results: is a directory; --out takes a file path (e.g. "),
    (["sweep", "tiny.yaml", "--set", "seed=0:5"],
     "results/tiny.csv: was written by a different sweep definition (seed: file [0, 1], now [0, 1, 2, 3, 4]; "),
])
def test_messages_name_the_real_problem(in_tmp, args, message):
    assert runner.invoke(app, ["sweep", "tiny.yaml"]).exit_code == 0
    (in_tmp / "yaml-ish.csv").write_text("name: x\nsweep: {seed: 0}\nblocks: [plain, residual]\n")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_float_ranges_in_set_as_in_the_file(in_tmp):
    from cnnexp.config import load_sweep

    (in_tmp / "f.yaml").write_text("sweep:\n  small_init: {logspace: [-6, -1, 6]}\n  lr: {linspace: [0.1, 0.5, 5]}\n"
                                   "  steps: 2\n")
    by_file = load_sweep(in_tmp / "f.yaml")
    by_set = load_sweep(in_tmp / "tiny.yaml", ["small_init=logspace:-6:-1:6", "lr=linspace:0.1:0.5:5", "steps=2"])
    assert by_set.axes["small_init"] == by_file.axes["small_init"] == tuple(10.0 ** e for e in range(-6, 0))
    assert by_set.axes["lr"] == by_file.axes["lr"] == (0.1, 0.2, 0.30000000000000004, 0.4, 0.5)
    bad = runner.invoke(app, ["sweep", "tiny.yaml", "--set", "lr=linspace:0.1:0.5"])
    assert bad.exit_code == 2 and "linspace takes start:stop:num (e.g. --set lr=linspace:0.1:0.5:5)" in bad.stderr


def test_enumerated_options_name_their_values_in_help_and_complete_them():
    from cnnexp.cli import DEVICE_NAMES, ENGINE_NAMES, _completer
    from cnnexp.engine import DEVICES, ENGINES
    from cnnexp.schema import AXIS

    assert ENGINE_NAMES == tuple(ENGINES) and DEVICE_NAMES == DEVICES  # the CLI's copies stay the engine's
    shown = " ".join(runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout.split())
    for axis in ("target", "activation", "dtype"):
        assert " | ".join(AXIS[axis].choices) in shown
    assert "plain, residual, rezero, prenorm" in shown
    assert _completer(AXIS["target"].choices)("teacher") == ["teacher_plain", "teacher_residual"]


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_run_hears_every_training_step(engine):
    from cnnexp.engine import Execution
    from cnnexp.sweep import run_one

    heard = []
    run_one({"d": 8, "batch": 2, "steps": 5, "target": "identity"}, ["plain"], Execution(engine=engine),
            on_step=lambda s, n: heard.append((s, n)))
    assert heard == [(s, 5) for s in range(6)]


def test_an_interrupted_run_says_the_step_it_reached(monkeypatch):
    import cnnexp.sweep

    def interrupted(*args, on_step, **kwargs):
        for s in range(4):
            on_step(s, 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(cnnexp.sweep, "run_one", interrupted)
    result = runner.invoke(app, ["run", "--steps", "100"])
    assert result.exit_code == 130 and "interrupted at step 3 of 100; nothing was written" in result.stderr


def test_extend_keeps_the_rows_of_a_narrower_sweep_and_runs_only_the_new_ones(in_tmp):
    assert runner.invoke(app, ["sweep", "tiny.yaml"]).exit_code == 0  # seeds 0, 1
    wider = ["--set", "seed=0,1,2", "--set", "small_init=0.1,0.01,0.001"]
    refused = runner.invoke(app, ["sweep", "tiny.yaml", *wider])
    assert refused.exit_code == 2 and "--extend keeps its rows and runs only the new ones" in refused.stderr
    extended = runner.invoke(app, ["sweep", "tiny.yaml", *wider, "--extend"])
    assert extended.exit_code == 0 and "wrote 10 rows (8 skipped)" in extended.stderr
    fresh = runner.invoke(app, ["sweep", "tiny.yaml", *wider, "--out", "results/fresh.csv"])
    assert fresh.exit_code == 0
    assert (in_tmp / "results/tiny.csv").read_bytes() == (in_tmp / "results/fresh.csv").read_bytes()
    meta = json.loads((in_tmp / "results/tiny.csv.meta.json").read_text())
    assert meta["extends"][0]["sweep"]["seed"] == [0, 1] and meta["sweep"]["sweep"]["seed"] == [0, 1, 2]
    narrower = runner.invoke(app, ["sweep", "tiny.yaml", "--extend"])  # fewer values: not an extension
    assert narrower.exit_code == 2 and "different sweep definition" in narrower.stderr
