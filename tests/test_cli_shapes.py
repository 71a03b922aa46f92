"""`cnnexp conv-shape` on whole networks and on anything a user might type or write in a chain file: it exits
0 with an answer or 2 with one line on stderr, never a traceback, and in bounded time (issue 12's fuzz)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cnnexp.cli import app
from cnnexp.shapes import KINDS

runner = CliRunner(env={"COLUMNS": "120"})
NETS = Path(__file__).resolve().parent.parent / "configs" / "nets"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])


def conv_shape(*args: str):
    started = time.perf_counter()
    result = runner.invoke(app, ["conv-shape", *map(str, args)])
    # a generous bound, not a timing: a malformed chain must be refused up front, not after a long walk
    assert time.perf_counter() - started < 30, args
    return result


def assert_answer_or_one_line(result) -> None:
    """Exit 0 with an answer on stdout, or exit 2 with exactly one line on stderr; never a crash."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert result.stdout.strip() and not result.stderr
        return
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert result.stdout == "" and len(lines) == 1 and lines[0].startswith("error: "), result.stderr


# --------------------------------------------------------------------------------------- strategies

KEYS = sorted({key for keys in KINDS.values() for key in keys} | {"K", "q", ""})
VALUES = st.one_of(
    st.integers(-3, 12).map(str),
    st.tuples(st.integers(-1, 9), st.integers(-1, 9)).map(lambda p: f"{p[0]}x{p[1]}"),
    st.sampled_from(["same", "valid", "true", "False", "0.5", "1.5", "1e-3", "x", "", "9" * 30, str(2**63),
                     "\u00b2", "3x", "nan", "-0"]),
)
KIND_NAMES = st.sampled_from([*KINDS, "Conv", "pool", "batchnorm", "", "relu ", "linear:"])


@st.composite
def specs(draw):
    kind = draw(KIND_NAMES)
    items = draw(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=5))
    body = ",".join(f"{k}={v}" for k, v in items)
    if draw(st.integers(0, 9)) == 0:
        body += draw(st.sampled_from([",", ",,", "=", ":", " "]))
    return f"{kind}:{body}" if body or draw(st.booleans()) else kind


def items(depth: int = 2):
    """Chain items: specs, repeats and residual blocks, and now and then something that is neither."""
    leaf = st.one_of(specs(), specs(), st.sampled_from(["relu", "bn", "flatten", "conv:out=3,k=3,p=1"]),
                     st.integers(), st.none(), st.floats(allow_nan=False), st.lists(st.just("relu"), max_size=2))
    if depth == 0:
        return leaf
    inner = st.lists(items(depth - 1), max_size=3)
    times = st.one_of(st.integers(-1, 4), st.sampled_from([True, "2", 2.5, 10**6, 10**30]))
    repeat = st.fixed_dictionaries({"repeat": times, "layers": inner},
                                   optional={"times": st.just(2)})
    residual = st.fixed_dictionaries({"residual": st.one_of(inner, st.just("relu"), st.none())},
                                     optional={"shortcut": st.one_of(inner, st.none(), st.just("relu")),
                                               "skip": st.just([])})
    return st.one_of(leaf, repeat, residual)


INPUTS = st.one_of(st.sampled_from(["3x16x16", "1x8x8", "3x224x224", "4x5x7", "3x8", "0x8x8", "axbxc",
                                    f"1x{2**31}x{2**31}"]), st.none(), st.integers(), st.lists(st.just(3)))


# ------------------------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.lists(specs(), min_size=1, max_size=4), st.sampled_from(["3x16x16", "1x9x9", "2x3x3"]), st.booleans())
def test_any_layer_flags_exit_0_or_one_line(layers, shape, as_json):
    args = ["--input", shape, *(a for s in layers for a in ("--layer", s))]
    result = conv_shape(*args, *(["--json"] if as_json else []))
    assert_answer_or_one_line(result)
    if as_json and result.exit_code == 0:
        assert json.loads(result.stdout)["input"] == [int(n) for n in shape.split("x")]


@FUZZ
@given(st.fixed_dictionaries({"layers": st.lists(items(), max_size=4)},
                             optional={"input": INPUTS, "stride": st.just(2)}),
       st.sampled_from(["float32", "float16", "bfloat16", "float8"]))
def test_any_chain_file_exits_0_or_one_line(tmp_path, data, dtype):
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(data))
    result = conv_shape("--from", path, "--dtype", dtype, "--input", "3x16x16") if "input" not in data else \
        conv_shape("--from", path, "--dtype", dtype)
    assert_answer_or_one_line(result)
    if result.exit_code == 2:
        assert str(path) in result.stderr or "--dtype" in result.stderr or "--input" in result.stderr


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("- :[]{},\n\"'#&*!|>%@`xXrelu=0123456789residualshortcutrepeat")),
               max_size=80))
def test_any_text_in_a_chain_file_exits_0_or_one_line(tmp_path, text):
    """Raw text, YAML or not (no aliases: the YAML reader's own guard is tested with the reader)."""
    path = tmp_path / "net.yaml"
    path.write_text("input: 3x16x16\n" + text.replace("*", "").replace("&", ""))
    assert_answer_or_one_line(conv_shape("--from", path))


# ------------------------------------------------------------------------------------- whole networks


def test_resnet18_file_gives_torchvisions_count():
    result = conv_shape("--from", NETS / "resnet18.yaml")
    assert result.exit_code == 0, result.output
    assert "11,689,512" in result.stdout and "1,814,073,344" in result.stdout
    assert "residual (total)" in result.stdout and "17.shortcut.1" in result.stdout


def test_dtype_sets_the_bytes_of_every_figure():
    wide = json.loads(conv_shape("--from", NETS / "mobilenet_v2.yaml", "--json").stdout)
    half = json.loads(conv_shape("--from", NETS / "mobilenet_v2.yaml", "--json", "--dtype", "bfloat16").stdout)
    assert (wide["dtype"], half["dtype"]) == ("float32", "bfloat16")
    for key in ("activation_bytes", "peak_bytes", "forward_backward_bytes"):
        assert wide[key] == 2 * half[key] > 0
    assert [row["bytes"] for row in wide["layers"]] == [4 * row["activations"] for row in wide["layers"]]
    bad = conv_shape("--from", NETS / "mobilenet_v2.yaml", "--dtype", "float8")
    assert bad.exit_code == 2 and "--dtype 'float8': use one of float32, float16, bfloat16" in bad.stderr


def test_malformed_block_file_through_python_m_has_no_traceback(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("input: 3x8x8\nlayers:\n  - residual: [conv:out=4,k=3,p=1]\n")
    result = subprocess.run([sys.executable, "-m", "cnnexp", "conv-shape", "--from", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (f"error: {path}: block 1 (residual): the residual branch gives 4 x 8 x 8 but "
                                     "the identity shortcut gives 3 x 8 x 8; they must match to be added")


def test_network_file_imports_no_torch_numpy_or_pandas():
    code = ("import sys\nfrom cnnexp.cli import app\n"
            f"try:\n    app(['conv-shape', '--from', {str(NETS / 'resnet50.yaml')!r}, '--json'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted({'torch', 'numpy', 'pandas'} & set(sys.modules)), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr

