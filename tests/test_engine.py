"""The engine seam: units planned by seed and cost, stacks by shape and memory; one execute loop for every
executor."""
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import pytest
import torch

from cnnexp.config import RunConfig
from cnnexp.engine import (
    DRAW_BYTES,
    UNIT_BYTES,
    UNIT_COST,
    Execution,
    RunError,
    WorkUnit,
    compute,
    draw_size,
    execute,
    plan_units,
    resolve_device,
    run_cost,
    stacks,
    unit_bytes,
    worker_count,
)
from cnnexp.engine.pool import process_pool
from cnnexp.errors import ConfigError

BOTH = ("plain", "residual")


def tasks_of(*configs, blocks=BOTH):
    return [(c, blocks) for c in configs]


def test_a_unit_holds_each_d_and_seeds_configurations_together_smaller_d_first():
    """The configurations of one d and one seed draw from one stream (batched.draw_stacks): kept together."""
    tasks = tasks_of(*(RunConfig(d=d, batch=b, seed=s) for s in range(3) for b in (2, 4) for d in (8, 4)))
    [unit] = plan_units(tasks)
    assert [(c.d, c.seed, c.batch) for c, _ in unit.tasks] == [(d, s, b) for d in (4, 8) for s in range(3)
                                                                for b in (2, 4)]
    assert unit.rows == 24 and unit.engine == "batched" and not unit.layers


def test_the_reference_engine_gets_one_configuration_per_unit():
    units = plan_units(tasks_of(*(RunConfig(d=4, seed=s) for s in range(3))), engine="reference")
    assert [len(u.tasks) for u in units] == [1, 1, 1]


def test_units_are_cut_at_seeds_by_cost_and_by_the_memory_of_their_draws():
    costly = RunConfig(d=1024, batch=64, depth=40)
    assert run_cost(costly, 2) > UNIT_COST / 2
    assert [len(u.tasks) for u in plan_units(tasks_of(costly, replace(costly, seed=1)))] == [1, 1]
    deep = RunConfig(d=512, batch=8, depth=3)  # 6.3 MiB of numbers, cheap to compute
    per_config = 4 * draw_size(deep)
    n = DRAW_BYTES // per_config + 3
    units = plan_units(tasks_of(*(replace(deep, seed=s) for s in range(n))))
    assert len(units) == 2 and all(len(u.tasks) * per_config <= DRAW_BYTES for u in units)


def test_a_seed_that_costs_more_than_a_unit_is_cut():
    family = tasks_of(*(RunConfig(d=1024, batch=64, depth=10, small_init=si) for si in (1e-1, 1e-2, 1e-3, 1e-4)))
    assert sum(run_cost(c, 2) for c, _ in family) > UNIT_COST
    units = plan_units(family)
    assert len(units) > 1 and all(u.cost <= UNIT_COST for u in units)
    assert [t for u in units for t in u.tasks] == family


def test_a_family_whose_draw_is_bigger_than_a_unit_may_hold_is_cut():
    """d=1 with a huge batch: cheap to compute, but each configuration draws 4 MiB."""
    family = tasks_of(*(RunConfig(d=1, batch=2**20, small_init=(i + 1) * 1e-3) for i in range(100)))
    units = plan_units(family)
    assert len(units) > 1 and [t for u in units for t in u.tasks] == family
    assert all(sum(4 * draw_size(c) for c, _ in u.tasks) <= DRAW_BYTES for u in units)


def test_with_several_workers_a_sweep_of_one_seed_is_cut_to_balance():
    """Training over 40 learning rates, one seed: with 4 workers no unit holds more than an eighth of the work."""
    tasks = tasks_of(*(RunConfig(d=64, batch=16, steps=200, lr=0.01 * (i + 1), target="identity")
                       for i in range(40)))
    units = plan_units(tasks, workers=4)
    total = sum(u.cost for u in units)
    assert len(units) >= 16 and max(u.cost for u in units) <= total / 8


def test_stacks_are_one_shape_each_and_cut_by_memory():
    big = RunConfig(d=512, batch=64)
    per_config = unit_bytes(big, 2)
    n = UNIT_BYTES // per_config + 2
    assert n * per_config > UNIT_BYTES > 4 * per_config
    tasks = tasks_of(*(replace(big, seed=s) for s in range(n)), RunConfig(d=4), RunConfig(d=4, seed=1))
    found = stacks(tasks)
    assert sorted(i for stack in found for i in stack) == list(range(len(tasks)))
    assert found[-1] == [n, n + 1] and len(found) >= 3
    assert all(sum(unit_bytes(tasks[i][0], 2) for i in stack) <= UNIT_BYTES for stack in found[:-1])


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

    units = plan_units(tasks_of(*(RunConfig(d=d, batch=2) for d in range(1, 13))), engine="reference")
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


@pytest.mark.parametrize("configs, said", [
    ([RunConfig(d=64, seed=3), RunConfig(d=64, seed=4)], "d=64, batch=64, depth=1, relu, float32 (2 configurations)"),
    ([RunConfig(d=16, seed=3), RunConfig(d=256, seed=3)], "2 configurations of 2 shapes (d=16..256), seed 3"),
    ([RunConfig(d=16, seed=s, batch=b) for s in (0, 9) for b in (8, 64)],
     "4 configurations of 2 shapes (d=16), seeds 0..9"),
])
def test_a_unit_describes_its_configurations(configs, said):
    assert WorkUnit(tuple(tasks_of(*configs))).describe() == said


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
    with pytest.raises(ConfigError, match="device 'tpu'"):
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


def test_a_network_training_on_data_is_a_unit_per_block_with_its_checkpoints_and_threads():
    from dataclasses import replace

    from cnnexp.config import RunConfig, Task
    from cnnexp.data import DataSpec
    from cnnexp.engine import plan_units
    from cnnexp.nets import net_from_items

    net = net_from_items("n", "4", ["linear:out=3"])
    trains = RunConfig(net=net, input="4", data=DataSpec("npz:d.npz", "npz", "/d.npz", "0", sizes=(10, 2)), epochs=2)
    at_init = replace(trains, epochs=0)
    units = plan_units([Task(trains, ("plain", "residual")), Task(at_init, ("plain", "residual"))],
                       checkpoints="/ckpt", threads=2)
    assert [(u.tasks[0].config.epochs, u.tasks[0].blocks) for u in units] == [
        (2, ("plain",)), (2, ("residual",)), (0, ("plain", "residual"))]  # two trainings side by side
    assert [(u.engine, u.checkpoints, u.threads) for u in units] == [("net", "/ckpt", 2)] * 2 + [("net", None, None)]
    assert "(plain)" in units[0].describe() and "data npz:d.npz, epochs=2" in units[0].describe()
