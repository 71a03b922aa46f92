"""The process a unit runs in: its cores, torch (imported once, frozen), threads and device.

Every function here that needs torch imports it when called, so importing this module (and planning a
sweep) stays free of torch.
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from cnnexp.errors import ConfigError, param

DEVICES: tuple[str, ...] = ("cpu", "cuda", "mps", "auto")
DEFAULT_THREADS = 1  # torch threads in the writer's process: two were up to 9x slower under other load


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def import_torch() -> ModuleType:
    """`import torch`, with the garbage collector paused while it runs, then everything it made frozen.

    The import makes hundreds of thousands of objects, all kept for the life of the process: the collector's
    passes over them were 0.25 s of a 1.1 s import here (2026-11-29), and once frozen they are not traversed
    again, in this process or in the workers forked from it (nor copied on write by those passes).
    """
    import gc
    import sys

    if "torch" not in sys.modules:
        paused = gc.isenabled()
        gc.disable()
        try:
            import torch  # noqa: F401
        finally:
            if paused:
                gc.enable()
        gc.freeze()
    return sys.modules["torch"]


def resolve_device(name: str) -> str:
    """The device to compute on: cpu, cuda or mps; `auto` picks cuda, then mps, then cpu.

    Raises:
        ConfigError: the device is unknown or this machine does not have it.
    """
    if name not in DEVICES:
        raise ConfigError(f"{param('device')} {name!r}: expected one of {', '.join(DEVICES)}")
    if name == "cpu":
        return name  # (without torch: a dry run, or a sweep refused for its file, never waits for its import)
    torch = import_torch()  # (the first import of torch in a sweep or run)
    have = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if have[d])
    if not have[name]:
        raise ConfigError(f"{param('device')} {name}: this machine has no {name} device that torch can use "
                          f"(torch {torch.__version__}); use {param('device')} cpu or auto")
    return name


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None keeps torch's default) and return the count in force.

    The study's tensors are small: one thread is as fast as two or faster (bench/bench_sweep.py), and immune
    to other processes' load; workers run one thread each.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def device_info(device: str) -> dict[str, Any]:
    """What the provenance records of the device: its name and the torch/CUDA versions."""
    import torch

    info: dict[str, Any] = {"device": device, "torch": torch.__version__}
    if device == "cuda":
        info.update(device_name=torch.cuda.get_device_name(), cuda=torch.version.cuda)
    elif device == "mps":
        info.update(device_name="Apple MPS")
    return info
