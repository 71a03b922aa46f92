"""How runs execute: work units in, RunResults out, in any order. Only the writer process touches files.

Two layers, imported one way (docs/development.md draws them):

    running units     plan.py      tasks cut into work units by cost (pure, no torch)
                      execute.py   each unit computed here, in a local process pool (pool.py) or on a Dask
                                   cluster (cluster.py); runtime.py sets up the process (torch, threads, device)
    ------------------------------------------------------------------------------------------------------------
    computing a unit  registry.py  the engines by name (`--engine`), each an `Engine`
                      batched.py   the batched engine: a driver over kernels.py (the maths) and train.py
                      net.py       whole networks (docs/nets.md): a net file's modules, its draw, its metrics
                      reference.py the reference engine: the notebook's method, with modules and hooks
                      cost.py      shapes, multiply-adds and memory;  result.py  RunResult (torch-free leaves)

This package only re-exports the running layer's names (and RunResult); it imports no torch.
"""
from cnnexp.engine.cost import DRAW_BYTES, UNIT_BYTES, draw_size, run_cost, shape_of, stacks, unit_bytes
from cnnexp.engine.execute import Backend, RunError, compute, execute, open_executor
from cnnexp.engine.plan import UNIT_COST, Execution, WorkUnit, plan_units, worker_count
from cnnexp.engine.registry import ENGINES, Engine, engine
from cnnexp.engine.result import RunResult, curve_steps, run_metrics
from cnnexp.engine.runtime import (
                                   DEFAULT_THREADS,
                                   DEVICES,
                                   available_cores,
                                   device_info,
                                   first_line,
                                   import_torch,
                                   resolve_device,
                                   use_threads,
)

__all__ = [
    "DEFAULT_THREADS", "DEVICES", "DRAW_BYTES", "ENGINES", "UNIT_BYTES", "UNIT_COST", "Backend", "Engine",
    "Execution", "RunError", "RunResult", "WorkUnit", "available_cores", "compute", "curve_steps", "device_info",
    "draw_size", "engine", "execute", "first_line", "import_torch", "open_executor", "plan_units",
    "resolve_device", "run_cost", "run_metrics", "shape_of", "stacks", "unit_bytes", "use_threads",
    "worker_count",
]
