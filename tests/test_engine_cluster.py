"""A sweep on a real Dask cluster (LocalCluster: 2 worker processes, 1 thread each, on 127.0.0.1 only).

Rows equal the local engine's; a worker killed mid-sweep or a client killed mid-sweep (and rerun) loses and
repeats no row; a bad address, a bad scheduler file, a worker with other versions and a missing Dask are each
one line, exit 2, with no file written.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

distributed = pytest.importorskip("distributed")

from cnnexp import load_results  # noqa: E402
from cnnexp.cli import app  # noqa: E402
from cnnexp.config import RunConfig, load_sweep, parse_sweep  # noqa: E402
from cnnexp.engine import Execution, RunError, WorkUnit  # noqa: E402
from cnnexp.engine import cluster as cluster_module  # noqa: E402
from cnnexp.engine.execute import _collect  # noqa: E402
from cnnexp.results import meta_path  # noqa: E402
from cnnexp.schema import STEP_METRICS as METRICS  # noqa: E402
from cnnexp.schema import columns  # noqa: E402

CONFIG_COLUMNS = columns(training=False).config  # these sweeps do not train
from cnnexp.sweep import SweepOutputs, plan_sweep, run_sweep  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use")  # the scheduler takes another
runner = CliRunner()
# one shape, many seeds: about 4 units per worker thread, each a fraction of a second
RAW = {"name": "dask", "sweep": {"d": 48, "batch": 8, "small_init": [1e-2, 1e-4], "seed": {"range": [0, 60]}}}
ROWS = 2 * 60 * 2


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=50) as local:
        with distributed.Client(local, set_as_default=False) as client:
            client.run(__import__, "torch")  # warm the workers: the first unit should not pay for the import
            yield local, client


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    """The same sweep run by the local engine in this process: the reference."""
    path = tmp_path_factory.mktemp("local") / "dask.csv"
    run_sweep(plan_sweep(parse_sweep(RAW, source="dask.yaml"), SweepOutputs(path)), command="local")
    return load_results(path)


def assert_same_rows(path, reference):
    """Every row of the sweep once, each metric equal to the reference's to rel 1e-6."""
    got = load_results(path)
    key = list(CONFIG_COLUMNS)
    assert not got.duplicated(key).any(), "a row was written twice"
    assert len(got) == len(reference) == ROWS
    merged = reference.merge(got, on=key, suffixes=("_local", "_cluster"), validate="one_to_one")
    assert len(merged) == ROWS
    for m in METRICS:
        np.testing.assert_allclose(merged[f"{m}_cluster"], merged[f"{m}_local"], rtol=1e-6, atol=0)


def test_rows_equal_the_local_engine_and_the_provenance_names_the_cluster(cluster, local_rows, tmp_path):
    local, _ = cluster
    execution = Execution(scheduler=local.scheduler_address)
    plan = plan_sweep(parse_sweep(RAW, source="dask.yaml"), SweepOutputs(tmp_path / "dask.csv"), execution=execution)
    report = run_sweep(plan,
                       command="cluster")
    assert report.ran == ROWS
    assert_same_rows(tmp_path / "dask.csv", local_rows)
    where = json.loads(meta_path(tmp_path / "dask.csv").read_text())["environment"]
    assert where["scheduler"] == local.scheduler_address
    assert where["worker_hosts"] == [socket.gethostname()]
    assert list(where["worker_torch"].values()) == [torch.__version__] * 2
    assert where["threads_total"] == 2 and where["window"] == 4 and where["allowed_failures"] == 3


def test_a_worker_killed_mid_sweep_loses_nothing(cluster, local_rows, tmp_path):
    local, client = cluster
    killed = []

    def kill_a_busy_worker(result):
        if killed:
            return
        busy = [w for w, tasks in client.processing().items() if tasks]
        if busy:
            [pid] = client.run(os.getpid, workers=busy[:1]).values()
            os.kill(pid, signal.SIGKILL)  # the nanny starts a new worker; the scheduler reruns its unit elsewhere
            killed.append(pid)

    execution = Execution(scheduler=local.scheduler_address)
    plan = plan_sweep(parse_sweep(RAW, source="dask.yaml"), SweepOutputs(tmp_path / "dask.csv"), execution=execution)
    report = run_sweep(plan,
                       command="cluster", on_result=kill_a_busy_worker)
    assert killed, "no worker was busy to kill"
    assert report.ran == ROWS
    assert_same_rows(tmp_path / "dask.csv", local_rows)
    client.wait_for_workers(2, timeout=30)  # the nanny's new worker, for the tests after this one


def test_a_client_killed_mid_sweep_and_rerun_completes_every_row_once(cluster, local_rows, tmp_path):
    local, _ = cluster
    (tmp_path / "dask.yaml").write_text(json.dumps(RAW))  # JSON is YAML
    out = tmp_path / "dask.csv"
    cmd = [sys.executable, "-m", "cnnexp", "sweep", str(tmp_path / "dask.yaml"), "--out", str(out),
           "--scheduler", local.scheduler_address]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_text().count("\n") - 1
    assert 0 < written < ROWS, "the kill should land mid-sweep"

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{written} of {ROWS} rows already there" in done.stderr
    assert_same_rows(out, local_rows)


def assert_one_line_exit_2(result, *words):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dask.yaml").write_text(json.dumps(RAW))
    return tmp_path


@pytest.mark.parametrize("listening", [False, True], ids=["refused", "silent"])
def test_no_scheduler_at_the_address_is_one_line_exit_2_quickly(in_tmp, monkeypatch, listening):
    """Nothing there (refused), or a server that accepts and never answers (Dask's Client alone would hang)."""
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        if listening:
            server.listen()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        result = runner.invoke(app, ["sweep", "dask.yaml", "--scheduler", address])
        assert time.monotonic() - start < 10
    assert_one_line_exit_2(result, address, "no Dask scheduler answered within 1 s")
    assert not (in_tmp / "results").exists() or not any((in_tmp / "results").iterdir())


def test_a_worker_address_is_refused_as_not_a_scheduler(cluster, in_tmp):
    _, client = cluster
    worker = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
    result = runner.invoke(app, ["sweep", "dask.yaml", "--scheduler", worker])
    assert_one_line_exit_2(result, worker, "not a scheduler")


@pytest.mark.parametrize("flag, value, words", [
    ("--scheduler", "127.0.0.1", ["not a Dask scheduler address", "missing port"]),
    ("--scheduler", "foo://host:1", ["not a Dask scheduler address", "unknown address scheme"]),
    ("--scheduler-file", "absent.json", ["absent.json: no such file", "dask scheduler --scheduler-file"]),
    ("--scheduler-file", "garbled.json", ["garbled.json: not a Dask scheduler file"]),
    ("--scheduler-file", "list.json", ["list.json: not a Dask scheduler file"]),
    ("--scheduler", "tcp://127.0.0.1:8786 --scheduler-file list.json", ["give one of them"]),
    ("--scheduler", "tcp://127.0.0.1:8786 --workers 2", ["--workers 2: is for processes on this machine"]),
])
def test_a_bad_address_or_scheduler_file_is_one_line_exit_2(in_tmp, flag, value, words):
    (in_tmp / "garbled.json").write_text('{"address": ')
    (in_tmp / "list.json").write_text('["tcp://127.0.0.1:8786"]')
    result = runner.invoke(app, ["sweep", "dask.yaml", flag, *value.split()])
    assert_one_line_exit_2(result, *words)
    assert not (in_tmp / "results").exists() or not any((in_tmp / "results").iterdir())


def test_a_scheduler_without_workers_is_one_line_exit_2(in_tmp, monkeypatch):
    monkeypatch.setattr(cluster_module, "WORKERS_TIMEOUT", 0.5)
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None) as empty:
        result = runner.invoke(app, ["sweep", "dask.yaml", "--scheduler", empty.scheduler_address])
    assert_one_line_exit_2(result, empty.scheduler_address, "no worker joined within 0.5 s", "dask worker")


def test_a_scheduler_file_is_followed_to_its_scheduler(cluster, in_tmp):
    local, _ = cluster
    (in_tmp / "scheduler.json").write_text(json.dumps({"type": "Scheduler", "address": local.scheduler_address}))
    small = {**RAW, "sweep": {**RAW["sweep"], "seed": [0, 1]}}
    (in_tmp / "dask.yaml").write_text(json.dumps(small))
    result = runner.invoke(app, ["sweep", "dask.yaml", "--scheduler-file", "scheduler.json"])
    assert result.exit_code == 0, result.output
    meta = json.loads(meta_path(in_tmp / "results" / "dask.csv").read_text())
    assert meta["environment"]["scheduler"] == local.scheduler_address


def test_a_worker_with_another_cnnexp_is_refused_naming_it(cluster, in_tmp, monkeypatch):
    local, client = cluster
    monkeypatch.setattr(cluster_module, "__version__", "0.0.0-other")  # this client's version, not the workers'
    result = runner.invoke(app, ["sweep", "dask.yaml", "--scheduler", local.scheduler_address])
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    assert_one_line_exit_2(result, f"worker {workers[0]}", "cnnexp 0.1.0", "this client cnnexp 0.0.0-other")
    assert not (in_tmp / "results").exists() or not any((in_tmp / "results").iterdir())


def test_a_worker_that_joined_later_with_another_torch_refuses_its_units(cluster):
    _, client = cluster
    expected = {**cluster_module.versions(), "torch": "0.0.0-other"}
    future = client.submit(cluster_module.run_checked, expected, len, [1, 2], pure=False)
    with pytest.raises(cluster_module.VersionMismatch, match=r"worker tcp://127\.0\.0\.1:\d+ .* runs torch"):
        future.result(timeout=30)


def test_without_dask_the_scheduler_flag_says_what_to_install(in_tmp, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails as if absent
    result = runner.invoke(app, ["sweep", "dask.yaml", "--scheduler", "tcp://127.0.0.1:8786"])
    assert_one_line_exit_2(result, "pip install 'cnnexp[dask]'")


def test_a_unit_whose_workers_all_died_is_one_run_error_naming_it():
    unit = WorkUnit(((RunConfig(d=8, batch=4, seed=3), ("plain",)),))
    worker = type("WorkerState", (), {"address": "tcp://127.0.0.1:1"})()

    def lost():
        raise distributed.KilledWorker("compute-1", worker, 3)

    with pytest.raises(RunError) as e:
        _collect(unit, lost)
    message = str(e.value)
    assert message.startswith("d=8, batch=4, depth=1") and "seed=3" in message and "4 tries" in message
    assert "\n" not in message


def test_a_scheduler_lost_mid_sweep_is_one_run_error_and_the_rows_stay(tmp_path):
    """A scheduler of its own (killed with SIGKILL once rows arrive) and one worker of two threads without a nanny."""
    spec = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(spec)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + 30
        while not spec.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(spec),
                                   "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0", "--nthreads", "2",
                                   "--no-nanny"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        (tmp_path / "dask.yaml").write_text(json.dumps(RAW))
        out = tmp_path / "dask.csv"
        sweep = subprocess.Popen([sys.executable, "-m", "cnnexp", "sweep", str(tmp_path / "dask.yaml"), "--out",
                                  str(out), "--scheduler-file", str(spec)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sweep.poll() is None and (not out.exists() or
                                                                         out.read_text().count("\n") < 2):
            time.sleep(0.005)
        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait()
        _, stderr = sweep.communicate(timeout=60)
        assert sweep.returncode == 2, stderr
        assert "Traceback" not in stderr and "distributed" not in stderr  # Dask's log lines are kept quiet
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: d=48, batch=8") and "the cluster dropped it" in last, stderr
        kept = load_results(out)
        assert 0 < len(kept) < ROWS and not kept.duplicated(list(CONFIG_COLUMNS)).any()
    finally:
        for p in (scheduler, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_units_are_submitted_in_a_bounded_window_and_run_with_one_torch_thread(cluster):
    from concurrent.futures import Executor

    from cnnexp.config import expand
    from cnnexp.engine import execute, plan_units

    local, client = cluster
    client.run(torch.set_num_threads, 2)  # as a worker would start without OMP_NUM_THREADS=1 (this suite sets it)
    with cluster_module.cluster_executor(Execution(scheduler=local.scheduler_address)) as (executor, info):
        assert executor.submit(torch.get_num_threads).result(timeout=30) == 1

        submitted = []

        class Counting(Executor):
            def submit(self, fn, *args):
                submitted.append(fn)
                return executor.submit(fn, *args)

        tasks = [(config, ("plain", "residual")) for config in expand(parse_sweep(RAW, source="dask.yaml"))]
        units = plan_units(tasks, workers=info["threads_total"])
        assert len(units) > info["window"]
        collected, most, rows = 0, 0, 0
        for results in execute(units, Counting(), info["window"]):
            most = max(most, len(submitted) - collected)  # units submitted and not yet collected
            collected, rows = collected + 1, rows + len(results)
        assert most == info["window"] and len(submitted) == collected == len(units) and rows == ROWS


def test_networks_train_on_data_on_the_cluster_to_the_rows_of_one_local_thread(cluster, tmp_path):
    from tests.test_engine_train_net import npz_data, sweep_file

    local, _ = cluster
    npz_data(tmp_path)
    path = sweep_file(tmp_path, "npz:d.npz", "1x6x6", 3, epochs=2, batch=16, dtype="float32", seed="[0, 1]")
    here = plan_sweep(load_sweep(path), SweepOutputs(tmp_path / "here.csv"), execution=Execution(workers=1, threads=1))
    run_sweep(here, command="local")
    there = plan_sweep(load_sweep(path), SweepOutputs(tmp_path / "there.csv", curve=tmp_path / "curve.csv"),
                       execution=Execution(scheduler=local.scheduler_address))
    report = run_sweep(there, command="cluster")
    assert report.ran == 4
    assert (tmp_path / "there.csv").read_text() == (tmp_path / "here.csv").read_text()  # one thread each: same bits
    assert not (tmp_path / "there.csv.ckpt").exists()
    assert len(load_results(tmp_path / "curve.csv")) == 4 * 2
