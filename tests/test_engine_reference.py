"""The reference engine: every task's blocks, in order, equal to probing them directly."""
import torch

from cnnexp.config import RunConfig
from cnnexp.engine import use_threads
from cnnexp.engine.reference import run_reference
from cnnexp.engine.reference import probe


def test_run_reference_yields_each_tasks_blocks_in_order():
    tasks = [(RunConfig(d=4, batch=2, seed=1), ("plain", "residual")), (RunConfig(d=4, batch=2, seed=2), ("residual",))]
    got = [(r.config.seed, r.block, r.metrics) for r in run_reference(tasks)]
    want = [(c.seed, r.block, r.metrics) for c, blocks in tasks for r in probe(c, blocks)]
    assert got == want


def test_use_threads_sets_and_reports_the_count():
    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 == torch.get_num_threads()
        assert use_threads(None) == 1  # None keeps what is in force
    finally:
        torch.set_num_threads(before)
