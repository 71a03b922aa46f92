"""Fuzzing the inputs a user hands cnnexp: sweep files (the YAML reader, also behind conv-shape --from),
`--set`, provenance files and results CSVs.

Whatever the input, the promise is the same: exit 0 or 2, at most one line on stderr, no traceback, and a
refusal writes nothing. Runs in process through Typer's CliRunner, with bounded examples (CNNEXP_FUZZ=N
raises them for a longer hunt).
"""
import json
import os
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cnnexp.cli import app
from cnnexp.schema import AXES

runner = CliRunner(env={"COLUMNS": "120"})
EXAMPLES = int(os.environ.get("CNNEXP_FUZZ", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TINY = "name: tiny\nsweep:\n  d: 4\n  batch: 2\n  small_init: [1.0e-2, 1.0e-3]\n  seed: [0, 1]\n"


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check(result, before: dict, folder: Path) -> None:
    """The promise: exit 0 or 2, at most one stderr line, no traceback; a refusal changes no file."""
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    if result.exit_code == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert snapshot(folder) == before
    else:
        assert all(not line.startswith("error") for line in lines), result.stderr


def run_in(folder: Path, *commands: list[str]) -> list:
    """Run each command in `folder`, checking each against the promise; a refusal must leave every file as
    it was before the first. Returns the results."""
    before = snapshot(folder)
    results = []
    with runner.isolated_filesystem(temp_dir=folder.parent):
        os.chdir(folder)
        for args in commands:
            results.append(runner.invoke(app, args))
            check(results[-1], before, folder)
    return results


# --- sweep files ------------------------------------------------------------------------------------

AXIS_NAMES = [a.name for a in AXES]
scalars = st.one_of(
    st.integers(-3, 300).map(str), st.sampled_from(["1e-3", "1.0e-2", ".inf", ".nan", "-0", "0x1F", "1_000", "~",
                                                     "true", "null", "2020-01-01", "relu", "float64", "''", '"\\0"',
                                                     "1" * 50, "9" * 500, "!!python/object:os.system x", "*a", "&a 1"]),
    st.text(string.printable, max_size=8).map(json.dumps),
)


def values(depth: int = 0):
    if depth > 2:
        return scalars
    inner = values(depth + 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(st.sampled_from(["range", "logspace", "linspace", "seed"]), st.lists(scalars, max_size=4))
        .map(lambda kv: "{" + kv[0] + ": [" + ", ".join(kv[1]) + "]}"),
    )


sweep_files = st.one_of(
    st.builds(lambda name, blocks, axes: "\n".join([f"name: {name}", f"blocks: {blocks}", "sweep:",
                                                    *(f"  {k}: {v}" for k, v in axes)]) + "\n",
              scalars, values(), st.lists(st.tuples(st.sampled_from(AXIS_NAMES + ["sed", "1", "? [1]"]), values()),
                                          max_size=4)),
    st.text(string.printable, max_size=120),
    st.builds(lambda n, fan: "sweep:\n  a: &a [" + ", ".join(["x"] * fan) + "]\n"
              + "".join(f"  b{i}: &b{i} [" + ", ".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * fan) + "]\n"
                        for i in range(n)), st.integers(0, 12), st.integers(1, 12)),
    st.integers(1, 400).map(lambda n: "sweep: " + "[" * n + "]" * n + "\n"),
)


@FUZZ
@given(text=sweep_files)
def test_fuzzed_sweep_files(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "s.yaml").write_text(text)
    before = snapshot(folder)
    run_in(folder, ["sweep", "s.yaml", "--dry-run"], ["conv-shape", "--from", "s.yaml"])
    assert snapshot(folder) == before  # a dry run and a calculator write nothing


# --- --set --------------------------------------------------------------------------------------------

overrides = st.lists(st.builds(lambda k, v: f"{k}={v}",
                               st.sampled_from(AXIS_NAMES + ["blocks", "small-init", "sed", "", " seed"]),
                               st.one_of(st.text(string.printable, max_size=12),
                                         st.sampled_from(["0:3", "0:10:2", "5:0:-1", "0:0", "1:2:0", "a:b", "0:3,4",
                                                          "0:99999999999999999999", "1e-2,1e-3", "plain,plain",
                                                          "rezero", ":", "0:", "::"]))),
                     max_size=3)


@FUZZ
@given(sets=overrides)
def test_fuzzed_set(tmp_path_factory, sets):
    folder = tmp_path_factory.mktemp("set")
    (folder / "tiny.yaml").write_text(TINY)
    run_in(folder, ["sweep", "tiny.yaml", "--dry-run", *(a for s in sets for a in ("--set", s))])


# --- provenance files and results CSVs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A folder with a finished tiny sweep: tiny.yaml, results/tiny.csv and its provenance."""
    folder = tmp_path_factory.mktemp("finished")
    (folder / "tiny.yaml").write_text(TINY)
    [result] = run_in(folder, ["sweep", "tiny.yaml"])
    assert result.exit_code == 0
    return folder


def copy_of(folder: Path, tmp_path_factory) -> Path:
    """A fresh copy of a folder, for one example to damage."""
    return Path(shutil.copytree(folder, tmp_path_factory.mktemp("copy") / "f"))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=8)


@FUZZ
@given(data=st.data())
def test_fuzzed_provenance(finished, tmp_path_factory, data):
    folder = copy_of(finished, tmp_path_factory)
    meta_file = folder / "results" / "tiny.csv.meta.json"
    meta = json.loads(meta_file.read_text())
    how = data.draw(st.sampled_from(["field", "environment", "whole", "text"]))
    if how == "field":
        meta[data.draw(st.sampled_from(sorted(meta)))] = data.draw(json_values)
        meta_file.write_text(json.dumps(meta))
    elif how == "environment":
        meta["environment"][data.draw(st.sampled_from(sorted(meta["environment"])))] = data.draw(json_values)
        meta_file.write_text(json.dumps(meta))
    elif how == "whole":
        meta_file.write_text(json.dumps(data.draw(json_values)))
    else:
        meta_file.write_text(data.draw(st.text(max_size=40)))
    # (plot reads it through the same reader, tested in test_cli_analysis; matplotlib is slow for fuzzing)
    run_in(folder, ["summary", "results/tiny.csv"], ["compare", "results/tiny.csv", "results/tiny.csv"],
           ["sweep", "tiny.yaml", "--dry-run"], ["sweep", "tiny.yaml"])  # the last: a resume, all rows there


def mutate(text: str, data) -> str:
    """One hand edit of a results CSV: a cell changed, a line repeated, dropped, cut, or junk added."""
    lines = text.splitlines(keepends=True)
    i = data.draw(st.integers(1, len(lines) - 1))
    cells = lines[i].rstrip("\n").split(",")
    op = data.draw(st.sampled_from(["cell", "repeat", "drop", "cut", "junk", "blank"]))
    if op == "cell":
        j = data.draw(st.integers(0, len(cells) - 1))
        cells[j] = data.draw(st.one_of(st.sampled_from(["99", "PLAIN", "1e-2", "0.010", "nan", "oops", "", "1" * 400,
                                                        '"', "inf", "-0.0"]), st.text(string.printable, max_size=6)))
        lines[i] = ",".join(cells) + "\n"
    elif op == "repeat":
        lines.insert(data.draw(st.integers(1, len(lines))), lines[i])
    elif op == "drop":
        del lines[i]
    elif op == "cut":
        lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i]) - 1))]
        del lines[i + 1:]
    elif op == "junk":
        lines.insert(i, data.draw(st.text(string.printable, max_size=20)) + "\n")
    else:
        lines.insert(i, "\n")
    return "".join(lines)


@FUZZ
@given(data=st.data())
def test_fuzzed_results_csv(finished, tmp_path_factory, data):
    folder = copy_of(finished, tmp_path_factory)
    csv_file = folder / "results" / "tiny.csv"
    csv_file.write_text(mutate(csv_file.read_text(), data))
    _, _, resumed = run_in(folder, ["summary", "results/tiny.csv"], ["sweep", "tiny.yaml", "--dry-run"],
                           ["sweep", "tiny.yaml"])
    if resumed.exit_code == 0:  # what a resume accepted, it completed: every row once, as written
        lines = [line for line in csv_file.read_text().splitlines() if line]  # (blank lines are no rows)
        assert len(lines) == 9 and len(set(lines)) == 9
