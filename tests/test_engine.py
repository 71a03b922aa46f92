"""The engine seam: units planned by shape, memory and cost; one execute loop for every executor."""
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import pytest
import torch

from cnnexp.config import RunConfig
from cnnexp.engine import (UNIT_BYTES, UNIT_COST, Execution, RunError, WorkUnit, compute, execute, plan_units,
                           resolve_device, run_cost, unit_bytes, worker_count)
from cnnexp.engine.pool import process_pool
from cnnexp.errors import ConfigError

BOTH = ("plain", "residual")


def tasks_of(*configs, blocks=BOTH):
    return [(c, blocks) for c in configs]


def test_units_group_configurations_of_one_shape_in_grid_order():
    tasks = tasks_of(*(RunConfig(d=d, batch=2, seed=s) for d in (4, 8) for s in range(3)))
    units = plan_units(tasks)
    assert [[t[0].d for t in u.tasks] for u in units] == [[4, 4, 4], [8, 8, 8]]
    assert sum(u.rows for u in units) == 12
    assert units[0].engine == "batched" and not units[0].layers


def test_the_reference_engine_gets_one_configuration_per_unit():
    units = plan_units(tasks_of(*(RunConfig(d=4, seed=s) for s in range(3))), engine="reference")
    assert [len(u.tasks) for u in units] == [1, 1, 1]


def test_units_are_cut_by_memory_and_cost():
    big = RunConfig(d=512, batch=64)
    per_config = unit_bytes(big, 2)
    n = UNIT_BYTES // per_config + 2
    units = plan_units(tasks_of(*(replace(big, seed=s) for s in range(n))))
    assert len(units) >= 2 and all(sum(unit_bytes(c, 2) for c, _ in u.tasks) <= UNIT_BYTES for u in units)
    assert n * per_config > UNIT_BYTES > 4 * per_config
    costly = RunConfig(d=1024, batch=64, depth=40)
    assert run_cost(costly, 2) > UNIT_COST / 2
    assert [len(u.tasks) for u in plan_units(tasks_of(costly, replace(costly, seed=1)))] == [1, 1]


def test_with_several_workers_units_are_smaller_and_largest_first():
    tasks = tasks_of(*(RunConfig(d=d, batch=8, seed=s) for d in (16, 128) for s in range(40)))
    one, two = plan_units(tasks), plan_units(tasks, workers=2)
    assert len(two) > len(one)
    costs = [u.cost for u in two]
    assert costs == sorted(costs, reverse=True)
    assert sorted(map(repr, (t for u in two for t in u.tasks))) == sorted(map(repr, tasks))  # every task once


def test_execute_in_process_and_in_a_pool_give_the_same_rows():
    tasks = tasks_of(*(RunConfig(d=8, batch=3, seed=s, small_init=si) for s in range(4) for si in (1e-2, 1e-5)))
    here = [r for results in execute(plan_units(tasks)) for r in results]
    with process_pool(2) as pool:
        there = [r for results in execute(plan_units(tasks, workers=2), pool, window=2) for r in results]
    key = lambda r: (r.config.seed, r.config.small_init, r.block)  # noqa: E731
    assert sorted(((key(r), r.metrics) for r in there), key=lambda kv: kv[0]) == \
        sorted(((key(r), r.metrics) for r in here), key=lambda kv: kv[0])


def test_execute_keeps_at_most_window_units_in_flight():
    class Counting(ThreadPoolExecutor):
        in_flight = most = 0

        def submit(self, fn, *args):
            Counting.in_flight += 1
            Counting.most = max(Counting.most, Counting.in_flight)
            future = super().submit(fn, *args)
            future.add_done_callback(lambda f: setattr(Counting, "in_flight", Counting.in_flight - 1))
            return future

    units = plan_units(tasks_of(*(RunConfig(d=d, batch=2) for d in range(1, 13))))
    with Counting(2) as pool:
        results = list(execute(units, pool, window=3))
    assert len(results) == 12 and Counting.most <= 3


def test_a_unit_that_fails_in_its_data_is_one_error_naming_it():
    class Failing:
        def submit(self, fn, unit):
            future = Future()
            future.set_exception(RuntimeError("not enough memory: you tried to allocate 9 GB\nmore detail"))
            return future

    unit = WorkUnit(tuple(tasks_of(RunConfig(d=64, batch=8, small_init=0.5, seed=3))))
    with pytest.raises(RunError, match=r"^d=64, batch=8, depth=1, relu, float32, small_init=0.5, seed=3: "
                                       r"RuntimeError: not enough memory: you tried to allocate 9 GB$"):
        list(execute([unit], Failing()))


def test_compute_runs_the_named_engine():
    tasks = tuple(tasks_of(RunConfig(d=4, batch=2, seed=1)))
    batched, reference = compute(WorkUnit(tasks)), compute(WorkUnit(tasks, engine="reference"))
    assert [r.block for r in batched] == [r.block for r in reference] == list(BOTH)
    for b, r in zip(batched, reference):
        assert b.metrics == pytest.approx(r.metrics, rel=1e-6)


def test_worker_count():
    assert worker_count(Execution(workers=3), 0) == 3
    assert worker_count(Execution(), 1.0) == 1  # too little work to gain from processes
    assert worker_count(Execution(device="cuda"), 1e15) == 1
    assert worker_count(Execution(), 1e15) >= 1


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="--device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no cuda device"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rows_equal_cpu_rows():  # pragma: no cover - not run where there is no GPU
    tasks = tuple(tasks_of(RunConfig(d=64, batch=8, seed=s, dtype="float64") for s in range(3)))
    cpu, cuda = compute(WorkUnit(tasks)), compute(WorkUnit(tasks, device="cuda"))
    for a, b in zip(cpu, cuda):
        assert b.metrics == pytest.approx(a.metrics, rel=1e-6, nan_ok=True)


def test_import_torch_pauses_the_collector_then_restores_it_and_freezes_torchs_objects():
    """In a fresh interpreter (torch is already imported in this one): the collector is back on after the
    import, torch's objects are frozen (not traversed by later collections), and a second call is a no-op."""
    import subprocess
    import sys

    code = ("import gc, sys; from cnnexp.engine import import_torch; t = import_torch(); "
            "assert gc.isenabled() and t is sys.modules['torch']; n = gc.get_freeze_count(); "
            "assert n > 100_000, n; assert import_torch() is t and gc.get_freeze_count() == n; "
            "gc.disable(); import_torch(); assert not gc.isenabled(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
