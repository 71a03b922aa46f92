"""The cnnexp command line: exit codes, stdout/stderr, and answers checked against torch."""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from typer.testing import CliRunner

from cnnexp.cli import app

runner = CliRunner()


# --- CNN shapes and convolution ---

from test_shapes import chains, torch_chain  # noqa: E402  (the random chains of the shapes tests)


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
    assert list(data) == ["input", "layers", "output", "params", "macs"]
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
        (["--from", "/nonexistent/net.yaml"], ["/nonexistent/net.yaml", "cannot read"]),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(args, words):
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
                                    "maxpool, avgpool, convT"


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


def test_fast_path_flags_match_the_typer_command():
    import typer.main

    from cnnexp.cli import _CONV_SHAPE_FLAGS

    params = typer.main.get_command(app).commands["conv-shape"].params
    valued = {p.opts[0]: (p.name, p.multiple) for p in params if p.opts[0].startswith("--") and not p.is_flag}
    assert valued == {flag: (name, kind is list) for flag, (name, kind) in _CONV_SHAPE_FLAGS.items()}
    assert {p.opts[0] for p in params if getattr(p, "is_flag", False)} == {"--json"}


@pytest.mark.parametrize(
    "args",
    [
        ["224", "--kernel", "3", "--stride", "2", "--padding", "1", "--dilation", "1"],
        ["64x48", "--kernel", "3x5", "--padding", "same", "--in-channels", "3", "--out-channels", "8", "--json"],
        ["--input", "3x224x224", "--layer", "conv:out=64,k=7,s=2,p=3", "--layer", "maxpool:k=3,s=2,p=1"],
        ["--input", "3x8x8", "--layer", "maxpool:k=3,p=2"],
        ["--input", "3x8x8", "--layer", "conv:out=4,k=3,zz=1", "--json"],
        ["224"],
        ["--from", "/nonexistent/net.yaml"],
    ],
)
def test_fast_path_answers_exactly_as_typer(args, monkeypatch, capsys):
    from cnnexp import cli

    monkeypatch.setattr(sys, "argv", ["cnnexp", "conv-shape", *args])
    assert cli._parse_conv_shape(args) is not None  # the fast path takes these
    with pytest.raises(SystemExit) as caught:
        cli.main()
    fast = capsys.readouterr()
    typer_result = conv_shape(*args)
    assert (caught.value.code, fast.out, fast.err) == (typer_result.exit_code, typer_result.stdout,
                                                       typer_result.stderr)


@pytest.mark.parametrize(
    "args",
    [["--help"], ["224", "--kernel=3"], ["224", "--kernel"], ["224", "--in-channels", "x", "--kernel", "3"],
     ["224", "--kernel", "3", "--kernel", "5"], ["224", "225"], ["--bogus"], ["224", "--padding", "-1"]],
)
def test_fast_path_leaves_anything_unusual_to_typer(args):
    from cnnexp import cli

    assert cli._parse_conv_shape(args) is None


def test_plain_conv_shape_skips_typer_parsing_and_pydantic():
    code = (
        "import sys\nsys.argv = ['cnnexp', 'conv-shape', '224', '--kernel', '3']\nfrom cnnexp.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted({'pydantic', 'torch', 'numpy', 'pandas'} & set(sys.modules)), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "H_out = " in result.stdout and result.stderr.strip().splitlines()[-1] == "[]", result.stderr
