"""Planning and running sweeps: resume, refusal of foreign files, determinism, survival of SIGKILL."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnexp.config import parse_sweep
from cnnexp.engine import Execution
from cnnexp.engine.reference import probe
from cnnexp.errors import ConfigError, ResultsError
from cnnexp.schema import METRICS as ROW_METRICS
from cnnexp.schema import STEP_METRICS as METRICS
from cnnexp.sweep import SweepOutputs, plan_sweep, ratio, run_one, run_sweep, side_by_side

SMALL = {"name": "small", "sweep": {"d": [8, 16], "batch": 4, "small_init": [1e-2, 1e-3], "seed": [0, 1]}}


def sweep_of(raw=SMALL):
    return parse_sweep(raw, source="small.yaml")


def run(tmp_path, raw=SMALL, execution=Execution(), **outputs):
    return run_sweep(plan_sweep(sweep_of(raw), SweepOutputs(tmp_path / "r.csv", **outputs), execution=execution),
                     command="test")


def test_every_row_equals_a_direct_probe(tmp_path):
    report = run(tmp_path)
    assert report.ran == 16 and report.skipped == 0
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == ("block,d,batch,small_init,seed,depth,activation,dtype,alpha_init,"
                        "loss,x_grad_norm,a1_grad_norm,w_norm,param_grad_norm,cos_x_out")
    assert len(lines) == 17
    from cnnexp.config import expand

    expected = [r.row() for c in expand(sweep_of()) for r in probe(c, ("plain", "residual"))]
    assert [{k: v for k, v in r.items() if k not in ROW_METRICS} for r in report.rows] == \
        [{k: v for k, v in r.items() if k not in ROW_METRICS} for r in expected]
    for got, want in zip(report.rows, expected):  # the batched engine against the reference
        assert {m: got[m] for m in METRICS} == pytest.approx({m: want[m] for m in METRICS}, rel=1e-6)


def test_provenance_is_written_beside_the_csv(tmp_path):
    run(tmp_path)
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["sweep"]["sweep"]["small_init"] == [1e-2, 1e-3]
    assert meta["command"] == "test" and meta["finished"] >= meta["started"]
    for key in ("torch", "python", "host", "device", "dtype", "threads"):
        assert meta["environment"][key]


def test_rerun_skips_everything_and_changes_nothing(tmp_path):
    run(tmp_path)
    before = (tmp_path / "r.csv").read_bytes()
    plan = plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))
    assert plan.rows_skipped == 16 and plan.tasks == []
    report = run_sweep(plan, command="again")
    assert report.ran == 0 and report.skipped == 16 and len(report.rows) == 16
    assert (tmp_path / "r.csv").read_bytes() == before
    assert len(json.loads((tmp_path / "r.csv.meta.json").read_text())["invocations"]) == 2


def test_resume_runs_only_the_missing_rows_and_ends_byte_identical(tmp_path):
    run(tmp_path)
    full = (tmp_path / "r.csv").read_bytes()
    lines = full.splitlines(keepends=True)
    (tmp_path / "r.csv").write_bytes(b"".join(lines[:6]) + lines[6][:17])  # 5 rows and a torn one
    plan = plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))
    assert plan.rows_skipped == 5
    assert plan.tasks[0][1] == ("residual",)  # the torn row's configuration still has its plain row
    run_sweep(plan, command="resume")
    assert (tmp_path / "r.csv").read_bytes() == full


def test_same_command_same_bytes(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    run(tmp_path / "a"), run(tmp_path / "b")
    assert (tmp_path / "a" / "r.csv").read_bytes() == (tmp_path / "b" / "r.csv").read_bytes()


def test_a_different_sweep_is_refused_unless_overwrite(tmp_path):
    run(tmp_path)
    before = (tmp_path / "r.csv").read_bytes()
    other = {**SMALL, "sweep": {**SMALL["sweep"], "seed": [0, 1, 2]}}
    with pytest.raises(ResultsError, match="different sweep definition.*use overwrite"):
        plan_sweep(sweep_of(other), SweepOutputs(tmp_path / "r.csv"))
    assert (tmp_path / "r.csv").read_bytes() == before
    report = run(tmp_path, other, overwrite=True)
    assert report.ran == 24 and len((tmp_path / "r.csv").read_text().splitlines()) == 25


def test_a_csv_without_provenance_is_refused(tmp_path):
    run(tmp_path)
    (tmp_path / "r.csv.meta.json").unlink()
    with pytest.raises(ResultsError, match="no provenance"):
        plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))


def test_blocks_subset_and_side_by_side(tmp_path):
    report = run(tmp_path, {**SMALL, "blocks": ["residual"]})
    assert {r["block"] for r in report.rows} == {"residual"}
    pairs = side_by_side(report.rows)
    assert len(pairs) == 8 and all(p.ratios == {} for p in pairs)


def test_ratios_are_residual_over_plain():
    [pair] = side_by_side([r.row() for r in run_one({"d": 8, "batch": 2}, ["plain", "residual"])])
    for metric, value in pair.ratios.items():
        assert value == pair.metrics["residual"][metric] / pair.metrics["plain"][metric]
    assert ratio(1.0, 0.0) == float("inf") and ratio(0.0, 0.0) != ratio(0.0, 0.0)


def test_run_one_checks_its_input():
    with pytest.raises(ConfigError, match="unknown block 'foo'"):
        run_one({}, ["foo"])
    with pytest.raises(ConfigError, match="small_init"):
        run_one({"small_init": float("nan")}, ["plain"])


def test_a_sweep_killed_with_sigkill_resumes_to_the_rows_of_an_uninterrupted_run(tmp_path):
    raw = {"name": "kill", "sweep": {"d": 32, "batch": 8, "small_init": [1e-2, 1e-3], "seed": {"range": [0, 150]}}}
    (tmp_path / "kill.yaml").write_text(json.dumps(raw))  # JSON is YAML
    reference = tmp_path / "ref"
    reference.mkdir()
    run_sweep(plan_sweep(sweep_of(raw), SweepOutputs(reference / "kill.csv"),
                         execution=Execution("reference", workers=1)),
              command="ref")

    # the reference engine: one configuration per unit, so rows arrive one by one and the kill lands mid-sweep
    cmd = [sys.executable, "-m", "cnnexp", "sweep", str(tmp_path / "kill.yaml"), "--out", str(tmp_path / "kill.csv"),
           "--engine", "reference"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "kill.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 30):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_text().count("\n") - 1
    assert 0 < written < 600, "the kill should land mid-sweep"

    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{written} of 600 rows already there" in done.stderr
    # the reference engine runs one configuration per unit: the same units ran, so the same bytes
    assert out.read_bytes() == (reference / "kill.csv").read_bytes()


def test_a_second_sweep_on_the_same_file_is_refused_while_the_first_writes(tmp_path):
    from cnnexp.results import ResultsFile
    from cnnexp.schema import COLUMNS

    with ResultsFile(tmp_path / "r.csv", COLUMNS):  # another sweep holds the file
        with pytest.raises(ResultsError, match="another cnnexp sweep is writing it"):
            run(tmp_path)


def test_a_file_that_changed_since_planning_is_refused(tmp_path):
    plan = plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))
    run(tmp_path)  # someone else finished the sweep meanwhile
    with pytest.raises(ResultsError, match="changed since this sweep read it"):
        run_sweep(plan, command="stale")


def test_a_resume_with_another_thread_or_worker_count_warns_and_runs(tmp_path):
    run(tmp_path, execution=Execution(threads=1, workers=1))
    lines = (tmp_path / "r.csv").read_text().splitlines(keepends=True)
    (tmp_path / "r.csv").write_text("".join(lines[:5]))
    plan = plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"), execution=Execution(threads=2, workers=2))
    [warning] = plan.warnings
    assert "threads 1 -> 2" in warning and "workers 1 -> 2" in warning
    assert run_sweep(plan, command="x").ran == 12
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["environment"]["threads"] == 2 and meta["environment"]["workers"] == 2
    # nothing left to run: nothing to mix, nothing to say, and the recorded environment stays the one that ran
    idle = plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"), execution=Execution(threads=1, workers=1))
    assert idle.warnings == ()
    assert run_sweep(idle, command="y").ran == 0
    after = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert after["environment"] == meta["environment"]
    assert [i["command"] for i in after["invocations"]][-2:] == ["x", "y"]


def test_a_refused_per_layer_file_leaves_nothing_behind(tmp_path):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match="columns"):
        plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv", per_layer=tmp_path / "other.csv"))
    with pytest.raises(ResultsError, match="file of its own"):
        plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv", per_layer=tmp_path / "r.csv"))
    (tmp_path / "sub").write_text("")  # a file where the per-layer file's directory should be
    with pytest.raises(ResultsError, match="sub is not a folder"):
        plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv", per_layer=tmp_path / "sub" / "layers.csv"))


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc, where nobody can create files")
def test_an_unwritable_per_layer_file_leaves_no_results_csv_behind(tmp_path):
    plan = plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv", per_layer="/proc/cnnexp-test-layers.csv"))
    with pytest.raises(ResultsError, match="cannot write"):
        run_sweep(plan, command="x")
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "r.csv.meta.json").exists()


def test_overwrite_refused_by_a_foreign_per_layer_file_keeps_the_results_csv(tmp_path):
    run(tmp_path)
    before = (tmp_path / "r.csv").read_bytes()
    (tmp_path / "layers.csv").write_text("foo,bar\n1,2\n")
    plan = plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv", overwrite=True, per_layer=tmp_path / "layers.csv"))
    report = run_sweep(plan, command="x")  # --overwrite starts both files afresh
    assert report.ran == 16 and (tmp_path / "r.csv").read_bytes() == before
    assert (tmp_path / "layers.csv").read_text().startswith("block,")


# --- workers, faults, interrupts -------------------------------------------------------------------------

KILL = {"name": "kill", "sweep": {"d": 32, "batch": 8, "small_init": [1e-2, 1e-3], "seed": {"range": [0, 150]}}}


def start_sweep(tmp_path, *flags, preexec_fn=None):
    (tmp_path / "kill.yaml").write_text(json.dumps(KILL))  # JSON is YAML
    # the reference engine: one configuration per unit, so rows arrive one by one and a signal lands mid-sweep
    cmd = [sys.executable, "-m", "cnnexp", "sweep", str(tmp_path / "kill.yaml"), "--out", str(tmp_path / "kill.csv"),
           "--engine", "reference", *flags]
    return cmd, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=preexec_fn)


def wait_for_rows(path: Path, rows: int, proc) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and \
            (not path.exists() or path.read_text().count("\n") < rows):
        time.sleep(0.01)


def reference_rows(tmp_path) -> bytes:
    reference = tmp_path / "ref"
    reference.mkdir()
    run_sweep(plan_sweep(sweep_of(KILL), SweepOutputs(reference / "kill.csv"),
                         execution=Execution("reference", workers=1)),
              command="ref")
    return (reference / "kill.csv").read_text()


def assert_same_rows(got_text: str, want_text: str) -> None:
    """Every row once, in grid order, with the same configuration and metrics to rel 1e-6."""
    got = [line.split(",") for line in got_text.splitlines()]
    want = [line.split(",") for line in want_text.splitlines()]
    assert [r[:9] for r in got] == [r[:9] for r in want]
    for g, w in zip(got[1:], want[1:]):
        *norms, cosine = [float(v) for v in g[9:]]
        *want_norms, want_cosine = [float(v) for v in w[9:]]
        assert norms == pytest.approx(want_norms, rel=1e-6, nan_ok=True)
        assert cosine == pytest.approx(want_cosine, abs=1e-6, nan_ok=True)  # a cosine in [-1, 1]: absolute


def test_a_sweep_with_two_workers_killed_mid_way_resumes_to_the_uninterrupted_rows(tmp_path):
    cmd, proc = start_sweep(tmp_path, "--workers", "2")
    wait_for_rows(tmp_path / "kill.csv", 30, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = (tmp_path / "kill.csv").read_text().count("\n") - 1
    assert 0 < written < 600, "the kill should land mid-sweep"
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_rows((tmp_path / "kill.csv").read_text(), reference_rows(tmp_path))


def test_ctrl_c_says_how_many_rows_are_safe_and_a_rerun_resumes(tmp_path):
    # the sweep runs at the lowest priority, so on a loaded machine this test still wakes while rows arrive
    # (600 rows take about 1.5 s); should it finish first all the same, start again on an empty file
    for _ in range(3):
        for old in tmp_path.glob("kill.csv*"):  # the results and their side files
            old.unlink()
        cmd, proc = start_sweep(tmp_path, "--workers", "2", preexec_fn=lambda: os.nice(19))
        wait_for_rows(tmp_path / "kill.csv", 30, proc)
        if proc.poll() is None:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    written = (tmp_path / "kill.csv").read_text().count("\n") - 1
    assert lines[0] == (f"error: interrupted: {written} of 600 rows written to {tmp_path / 'kill.csv'}; "
                        "rerun the same command to resume")
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert_same_rows((tmp_path / "kill.csv").read_text(), reference_rows(tmp_path))


def test_a_file_size_limit_mid_sweep_is_one_line_and_a_rerun_resumes(tmp_path):
    import resource

    def limit_file_size():  # like a disk that fills: writes past 12 KiB fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (12 * 1024, 12 * 1024))

    cmd, proc = start_sweep(tmp_path, "--workers", "1", preexec_fn=limit_file_size)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "Traceback" not in err and "cannot write: File too large" in line and "rerun the same command" in line
    safe = int(line.split(" of 600 rows are safe")[0].rsplit(" ", 1)[1])
    assert (tmp_path / "kill.csv").read_text().count("\n") - 1 >= safe > 0
    assert subprocess.run(cmd, capture_output=True).returncode == 0  # the torn row is cut, the rest resumes
    assert_same_rows((tmp_path / "kill.csv").read_text(), reference_rows(tmp_path))


def test_a_closed_stdout_pipe_ends_quietly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "cnnexp", "run", "--d", "8"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is printed
    err = proc.stderr.read()
    assert proc.wait() in (0, -signal.SIGPIPE) and err == b""


@pytest.mark.parametrize("damage", ["truncate", "delete", "append"])
def test_a_results_file_changed_underneath_a_running_sweep_is_reported(tmp_path, damage):
    path = tmp_path / "r.csv"
    plan = plan_sweep(sweep_of(), SweepOutputs(path), execution=Execution(workers=1))
    calls = []

    def meddle(result):
        calls.append(result)
        if len(calls) == 3:
            {"truncate": lambda: path.write_text(""), "delete": path.unlink,
             "append": lambda: path.open("a").write("junk,1,2\n")}[damage]()

    with pytest.raises(ResultsError, match="while this sweep wrote it"):
        run_sweep(plan, command="x", on_result=meddle)


def test_a_resume_without_the_per_layer_file_is_refused_and_with_it_completes_both(tmp_path):
    raw = {"name": "pl", "sweep": {"d": 8, "batch": 2, "depth": [1, 3], "seed": [0, 1, 2]}}
    outputs = SweepOutputs(tmp_path / "ref.csv", per_layer=tmp_path / "refL.csv")
    full = run_sweep(plan_sweep(sweep_of(raw), outputs), command="x")
    assert full.ran == 12
    # a first run killed after 4 rows, resumed without --per-layer (refused: it would leave L.csv short), then
    # resumed with it
    run_sweep(plan_sweep(sweep_of(raw), SweepOutputs(tmp_path / "r.csv", per_layer=tmp_path / "L.csv")), command="x")
    lines = (tmp_path / "r.csv").read_text().splitlines(keepends=True)
    (tmp_path / "r.csv").write_text("".join(lines[:5]))
    kept = {line.split(",", 9)[:9].__repr__() for line in lines[1:5]}  # the 4 runs' configuration cells
    layer_lines = (tmp_path / "L.csv").read_text().splitlines(keepends=True)
    (tmp_path / "L.csv").write_text("".join([layer_lines[0], *(x for x in layer_lines[1:]
                                                                if x.split(",", 9)[:9].__repr__() in kept)]))
    with pytest.raises(ResultsError, match="its earlier runs wrote their per-layer rows to .*L.csv"):
        plan_sweep(sweep_of(raw), SweepOutputs(tmp_path / "r.csv"))
    plan = plan_sweep(sweep_of(raw), SweepOutputs(tmp_path / "r.csv", per_layer=tmp_path / "L.csv"))
    assert plan.rows_to_run == 8 and not plan.warnings
    run_sweep(plan, command="x")
    assert (tmp_path / "r.csv").read_text() == (tmp_path / "ref.csv").read_text()
    assert (tmp_path / "L.csv").read_text() == (tmp_path / "refL.csv").read_text()


# --- resume verifies what it keeps -------------------------------------------------------------------


def _edit(path: Path, line: int, old: str, new: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("".join(lines))


@pytest.mark.parametrize("edit, words", [
    (lambda p: _edit(p, 3, ",0,", ",99,"), ["line 3: seed '99' is not a value this sweep writes"]),
    (lambda p: _edit(p, 2, "plain", "PLAIN"), ["line 2: block 'PLAIN'"]),
    (lambda p: _edit(p, 2, "0.01", "1e-2"), ["line 2: small_init '1e-2'"]),
    (lambda p: p.write_text(p.read_text() + p.read_text().splitlines(keepends=True)[1]),
     ["line 18 repeats the configuration"]),
    (lambda p: p.write_text(p.read_text() + "junk\n"), ["line 18 has 1 cells"]),
])
def test_a_hand_edited_csv_is_refused_on_resume_and_left_alone(tmp_path, edit, words):
    run(tmp_path)
    edit(tmp_path / "r.csv")
    before = {f: f.read_bytes() for f in tmp_path.iterdir()}
    with pytest.raises(ResultsError) as e:
        plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))
    assert str(e.value).startswith(f"{tmp_path / 'r.csv'}: ") and all(w in str(e.value) for w in words), str(e.value)
    assert {f: f.read_bytes() for f in tmp_path.iterdir()} == before


def test_a_metric_cell_edited_to_text_is_refused_before_any_row_is_appended(tmp_path):
    run(tmp_path)
    lines = (tmp_path / "r.csv").read_text().splitlines(keepends=True)
    (tmp_path / "r.csv").write_text("".join(lines[:3]) + lines[3].rsplit(",", 1)[0] + ",oops\n")  # and 14 lost
    with pytest.raises(ResultsError, match="line 4: cos_x_out 'oops'"):
        plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))


def test_a_damaged_provenance_is_refused_on_resume(tmp_path):
    run(tmp_path)
    (tmp_path / "r.csv.meta.json").write_text('{"fingerprint": ["x"]}')
    with pytest.raises(ResultsError, match="damaged provenance file: fingerprint is a list, expected a string"):
        plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))


def test_a_file_with_provenance_under_the_old_name_resumes_and_moves_to_the_new_name(tmp_path):
    run(tmp_path)
    (tmp_path / "r.csv.meta.json").rename(tmp_path / "r.meta.json")  # as the previous release wrote it
    report = run_sweep(plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv")), command="again")
    assert report.ran == 0 and report.meta_path == tmp_path / "r.csv.meta.json"
    assert len(json.loads(report.meta_path.read_text())["invocations"]) == 2


# --- a dry run's plan never refuses; it says what a real run would do --------------------------------

from cnnexp.sweep import preview_sweep  # noqa: E402


def test_preview_of_a_resume_counts_the_rows_there(tmp_path):
    run(tmp_path)
    lines = (tmp_path / "r.csv").read_text().splitlines(keepends=True)
    (tmp_path / "r.csv").write_text("".join(lines[:6]))
    preview = preview_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))
    plan = plan_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))
    assert (preview.rows_total, preview.rows_skipped, preview.refusal) == (16, 5, None)
    assert preview.rows_to_run == plan.rows_to_run
    assert preview.first == [(c, blocks) for c, blocks in [(c, dict(plan.tasks).get(c, ())) for c in plan.configs]]


def test_preview_of_another_definitions_file_says_a_real_run_would_refuse(tmp_path):
    run(tmp_path)
    before = {f: f.read_bytes() for f in tmp_path.iterdir()}
    other = sweep_of({**SMALL, "sweep": {**SMALL["sweep"], "seed": [0, 1, 2]}})
    preview = preview_sweep(other, SweepOutputs(tmp_path / "r.csv"))
    assert "different sweep definition" in preview.refusal and preview.rows_to_run == 24
    assert {f: f.read_bytes() for f in tmp_path.iterdir()} == before


def test_preview_of_a_locked_file_says_so(tmp_path):
    from cnnexp.results import ResultsFile
    from cnnexp.schema import COLUMNS

    run(tmp_path)
    with ResultsFile(tmp_path / "r.csv", COLUMNS):  # as a running sweep holds it
        preview = preview_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv"))
    assert preview.refusal == f"{tmp_path / 'r.csv'}: another cnnexp sweep is writing it now"
    assert preview_sweep(sweep_of(), SweepOutputs(tmp_path / "r.csv")).refusal is None


def test_preview_of_a_million_configurations_lists_only_the_first(tmp_path):
    sweep = sweep_of({"name": "big", "sweep": {"seed": {"range": [0, 1000]}, "d": {"range": [1, 1001]}}})
    preview = preview_sweep(sweep, SweepOutputs(tmp_path / "big.csv"), shown=40)
    assert sweep.size == 1_000_000 and preview.rows_to_run == 2_000_000 and len(preview.first) == 40
    assert [(c.seed, c.d) for c, _ in preview.first[:3]] == [(0, 1), (1, 1), (2, 1)]  # d before seed: seed fastest
    assert not (tmp_path / "big.csv").exists()


# --- training sweeps and files written before the training axes existed -----------------------------------

# The results columns and the resolved sweep of a file written before steps, lr and target existed (release 1).
OLD_COLUMNS = ("block,d,batch,small_init,seed,depth,activation,dtype,alpha_init,loss,x_grad_norm,a1_grad_norm,"
               "w_norm,param_grad_norm,cos_x_out").split(",")
OLD_DEFINITION = {"name": "small", "blocks": ["plain", "residual"], "sweep": {
    "d": [8, 16], "batch": [4], "small_init": [0.01, 0.001], "seed": [0, 1], "depth": [1], "activation": ["relu"],
    "dtype": ["float32"], "alpha_init": [0.0]}}


def test_a_file_written_before_the_training_axes_loads_and_resumes_with_its_own_columns(tmp_path):
    import csv

    from cnnexp.analysis import load_results
    from cnnexp.results import fingerprint

    run(tmp_path)  # the same sweep, whole, for the bytes an old file would end with
    whole = (tmp_path / "r.csv").read_bytes()
    assert whole.splitlines()[0].decode().split(",") == OLD_COLUMNS
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["fingerprint"] == fingerprint(OLD_DEFINITION) and meta["sweep"] == OLD_DEFINITION
    # an old file: its header, 5 of its rows, and a provenance with the old columns and fingerprint
    rows = list(csv.reader(whole.decode().splitlines()))
    old = tmp_path / "old.csv"
    old.write_text("\n".join(",".join(r) for r in rows[:6]) + "\n")
    (tmp_path / "old.meta.json").write_text(json.dumps({"fingerprint": fingerprint(OLD_DEFINITION),
                                                        "columns": OLD_COLUMNS, "sweep": OLD_DEFINITION}))
    df = load_results(old)
    assert list(df.columns) == OLD_COLUMNS and len(df) == 5
    plan = plan_sweep(sweep_of(), SweepOutputs(old))
    assert plan.rows_skipped == 5 and not plan.fresh
    report = run_sweep(plan)
    assert report.ran == 11 and old.read_bytes() == whole


def test_a_training_sweep_has_the_training_columns_and_its_curve_resumes_consistent(tmp_path):
    from cnnexp.schema import COLUMNS, CURVE_COLUMNS

    training = {**SMALL, "sweep": {**SMALL["sweep"], "steps": 6, "lr": [0.1, 0.5], "target": "identity"}}
    report = run(tmp_path, training, curve=tmp_path / "c.csv")
    assert report.ran == 32
    full, curve = (tmp_path / "r.csv").read_bytes(), (tmp_path / "c.csv").read_bytes()
    assert full.decode().splitlines()[0].split(",") == list(COLUMNS)
    assert curve.decode().splitlines()[0].split(",") == list(CURVE_COLUMNS)
    assert len(curve.decode().splitlines()) == 1 + 32 * 5  # steps 0, 1, 2, 4, 6
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["training_definition"] == 1 and meta["curve_every"] == 0
    # a kill between a run's curve rows and its results row: the resume drops them and runs it again
    lines = full.splitlines(keepends=True)
    (tmp_path / "r.csv").write_bytes(b"".join(lines[:20]))
    run(tmp_path, training, curve=tmp_path / "c.csv")
    assert (tmp_path / "r.csv").read_bytes() == full and (tmp_path / "c.csv").read_bytes() == curve
    # the curve's steps may not change on a resume
    (tmp_path / "r.csv").write_bytes(b"".join(lines[:20]))
    with pytest.raises(ResultsError, match="curve_every 0"):
        plan_sweep(sweep_of(training), SweepOutputs(tmp_path / "r.csv", curve=tmp_path / "c.csv", curve_every=2))


def test_steps_at_its_default_written_out_is_the_study_at_init_byte_for_byte(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    run(tmp_path / "a")
    run(tmp_path / "b", {**SMALL, "sweep": {**SMALL["sweep"], "steps": 0, "lr": 0.1, "target": "zero"}})
    assert (tmp_path / "a" / "r.csv").read_bytes() == (tmp_path / "b" / "r.csv").read_bytes()


def test_a_sweep_that_trains_some_configurations_holds_the_others_as_the_study_at_init(tmp_path):
    from cnnexp.analysis import load_results

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    run(tmp_path / "a")
    run(tmp_path / "b", {**SMALL, "sweep": {**SMALL["sweep"], "steps": [0, 3]}})
    at_init, mixed = load_results(tmp_path / "a" / "r.csv"), load_results(tmp_path / "b" / "r.csv")
    still = mixed[mixed["steps"] == 0].reset_index(drop=True)
    for m in METRICS:
        assert still[m].tolist() == at_init[m].tolist() or m == "cos_x_out"  # exactly (cos may be NaN)
    assert still["initial_loss"].tolist() == still["loss"].tolist() and still["steps_to_fit"].isna().all()
    trained = mixed[mixed["steps"] == 3]
    assert (trained["loss"] < trained["initial_loss"]).all() and trained["steps_to_fit"].isna().all()


@pytest.mark.parametrize("dtypes, recorded", [(["float64"], "float64"), (["float32", "float64"],
                                                                          ["float32", "float64"])])
def test_provenance_records_the_runs_own_dtype(tmp_path, dtypes, recorded):
    raw = {"name": "dt", "sweep": {"d": 4, "batch": 2, "dtype": dtypes}}
    report = run_sweep(plan_sweep(sweep_of(raw), SweepOutputs(tmp_path / "r.csv")), command="x")
    assert json.loads(report.meta_path.read_text())["environment"]["dtype"] == recorded


# --- soak: kills at random points, with --per-layer, by every signal a sweep may meet ---------------------

SOAK = {"name": "soak", "sweep": {"d": 8, "batch": 4, "depth": [1, 2], "small_init": [1e-2, 1e-6],
                                  "seed": {"range": [0, 40]}}}


@pytest.mark.parametrize("sig, workers", [(signal.SIGKILL, "1"), (signal.SIGTERM, "2"), (signal.SIGINT, "2")])
def test_soak_kills_at_random_points_with_per_layer_end_with_every_row_once(tmp_path, sig, workers):
    """Kill a sweep with --per-layer at random points (CNNEXP_SOAK kills each; 2 by default), resume each
    time, and end with the rows of an uninterrupted run and every per-layer row present once."""
    import random

    (tmp_path / "soak.yaml").write_text(json.dumps(SOAK))
    ref = tmp_path / "ref"
    ref.mkdir()
    outputs = SweepOutputs(ref / "r.csv", per_layer=ref / "L.csv")
    run_sweep(plan_sweep(sweep_of(SOAK), outputs, execution=Execution("reference", workers=1)), command="ref")
    cmd = [sys.executable, "-m", "cnnexp", "sweep", str(tmp_path / "soak.yaml"), "--out", str(tmp_path / "r.csv"),
           "--per-layer", str(tmp_path / "L.csv"), "--workers", workers, "--engine", "reference"]
    rng = random.Random(sig)
    total = 2 * 2 * 2 * 40
    for _ in range(int(os.environ.get("CNNEXP_SOAK", "2"))):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for_rows(tmp_path / "r.csv", rng.randrange(2, total // 2), proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_rows((tmp_path / "r.csv").read_text(), (ref / "r.csv").read_text())
    got_layers = (tmp_path / "L.csv").read_text().splitlines()
    want_layers = (ref / "L.csv").read_text().splitlines()
    assert [line.split(",")[:10] for line in got_layers] == [line.split(",")[:10] for line in want_layers]


@pytest.mark.parametrize("seeds, flags, cores, expected", [
    ([0], {}, 4, 2),  # 2 runs on 4 cores: two processes of two threads
    ([0, 1, 2], {}, 4, None),  # 6 runs: a process per core, one thread each (the workers' default)
    ([0, 1, 2], {"workers": 1}, 4, 4),  # one process asked for: it takes every core
    ([0, 1, 2], {"workers": 2}, 4, 2),
    ([0], {"threads": 3}, 4, None),  # --threads decides
    ([0], {"scheduler": "tcp://127.0.0.1:1"}, 4, None),  # a cluster's workers keep their own
])
def test_training_runs_share_the_cores_by_the_whole_sweep(tmp_path, monkeypatch, seeds, flags, cores, expected):
    import numpy as np

    from cnnexp import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "available_cores", lambda: cores)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(20, 4)), y=np.arange(20) % 2)
    (tmp_path / "n.yaml").write_text("input: 4\nlayers: [linear:out=2]\n")
    raw = {"net": "n.yaml", "sweep": {"data": "npz:d.npz", "epochs": 1, "batch": 4, "seed": seeds}}
    sweep = parse_sweep(raw, source=str(tmp_path / "s.yaml"))
    plan = plan_sweep(sweep, SweepOutputs(tmp_path / "r.csv"))
    assert sweep_module.training_threads(plan, Execution(**flags)) == expected
    if len(seeds) > 1:  # the count is the whole sweep's: a resume with one run left computes as the first run did
        import dataclasses

        one_left = dataclasses.replace(plan, tasks=plan.tasks[:1])
        assert sweep_module.training_threads(one_left, Execution(**flags)) == expected


def test_a_training_sweep_on_data_puts_each_blocks_final_errors_side_by_side():
    from cnnexp.schema import AXIS, columns

    config = {c: AXIS[c].default for c in columns(False, net=True, data=True).config[1:]}
    rows = [{**config, "block": b, "net": "n", "data": "digits", "epochs": 3, "train_acc": acc, "test_acc": 0.75,
             "train_loss": 0.5, "test_loss": 0.7, "epochs_to_fit": fit}
            for b, acc, fit in (("plain", 0.5, None), ("residual", 1.0, 2))]
    [pair] = side_by_side(rows)
    assert pair.metrics["plain"]["train_error"] == 0.5 and pair.metrics["residual"]["train_error"] == 0.0
    assert pair.metrics["residual"]["test_error"] == 0.25 and pair.metrics["residual"]["epochs_to_fit"] == 2
    assert math.isnan(pair.metrics["plain"]["epochs_to_fit"]) and pair.ratios == {}  # no gradient ratio here
