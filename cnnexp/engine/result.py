"""What an engine gives back: one RunResult per block kind and configuration (torch-free, the engines' leaf).

    >>> curve_steps(10, 0), curve_steps(10, 3), curve_steps(0, 0), curve_steps(5, None)
    ([0, 1, 2, 4, 8, 10], [0, 1, 2, 3, 4, 6, 8, 9, 10], [0], [])
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnexp.config import RunConfig, config_dict, trains

Metrics = dict[str, Any]  # metric name -> float (steps_to_fit: int or None; a curve point's "step": int)


@dataclass(frozen=True)
class RunResult:
    """The metrics of one block kind on one configuration: one row of the results CSV, plus one row per
    block index for the per-layer file."""

    block: str
    config: RunConfig
    metrics: Metrics
    layers: tuple[Metrics, ...] = ()  # per block index, 0 next to the input (at the last step)
    curve: tuple[Metrics, ...] = ()  # per recorded step: {"step": s, metric: value, ...}

    def row(self) -> dict[str, Any]:
        """The results CSV row: block, the configuration's axes, then the metrics (a run at init, in the file of
        a sweep that trains others, has initial_loss = loss and no steps_to_fit, by the definition)."""
        at_init = {"initial_loss": self.metrics["loss"], "steps_to_fit": None}
        return {"block": self.block, **config_dict(self.config), **at_init, **self.metrics}

    def layer_rows(self) -> list[dict[str, Any]]:
        """The per-layer rows: block, the configuration's axes, block_index, then the layer metrics."""
        head = {"block": self.block, **config_dict(self.config)}
        return [{**head, "block_index": i, **layer} for i, layer in enumerate(self.layers)]

    def curve_rows(self) -> list[dict[str, Any]]:
        """The curve rows: block, the configuration's axes, step, then the metrics at that step."""
        head = {"block": self.block, **config_dict(self.config)}
        return [{**head, **point} for point in self.curve]


def run_metrics(config: RunConfig, last: Mapping[str, float], initial_loss: float | None,
                steps_to_fit: int | None) -> Metrics:
    """A run's metrics, as every engine reports them: those at its last step and, for a configuration that
    trains, its initial loss and steps_to_fit (a configuration at init has exactly the study's metrics)."""
    if not trains(config):
        return dict(last)
    return {**last, "initial_loss": initial_loss, "steps_to_fit": steps_to_fit}


def curve_steps(steps: int, every: int | None) -> list[int]:
    """The steps a curve file records for a run of `steps` updates: none without a curve (every=None); else
    0, 1, 2, 4, 8, ... and the last, and with every=N > 0 each N-th step as well."""
    if every is None:
        return []
    powers = {1 << k for k in range(steps.bit_length())}  # 1, 2, 4, ... <= steps
    regular = set(range(0, steps + 1, every)) if every > 0 else set()
    return sorted({0, steps} | powers | regular)


# Who hears of each training step in this process (`cnnexp run --steps N` shows a bar): (step done, steps).
STEP_PROGRESS: ContextVar[Callable[[int, int], None] | None] = ContextVar("step_progress", default=None)


def report_step(step: int, steps: int) -> None:
    """Tell the listener of STEP_PROGRESS, if any, that `step` of `steps` updates is done."""
    listener = STEP_PROGRESS.get()
    if listener is not None:
        listener(step, steps)


def run_id(block: str, config: RunConfig) -> str:
    """A run's identity as text: its block, every axis value as a CSV cell holds it, and the digests of its net
    and data files (a checkpoint holds it, and is named by its hash: `checkpoint_file`)."""
    cells = {k: repr(v) if isinstance(v, float) else str(v) for k, v in config_dict(config).items()}
    digests = {"net_digest": getattr(config.net, "digest", ""), "data_digest": config.data.digest}
    return json.dumps({"block": block, **cells, **digests})


def checkpoint_file(folder: str | os.PathLike[str], block: str, config: RunConfig) -> Path:
    """Where a run's checkpoint is kept in a sweep's checkpoint folder (`<results file>.ckpt/`)."""
    return Path(folder) / f"{block}-{hashlib.sha256(run_id(block, config).encode()).hexdigest()[:20]}.pt"
