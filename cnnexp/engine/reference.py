"""The reference engine (`--engine reference`): one configuration after another, with modules and hooks.

This is the notebook's method line by line (cnnexp/probe.py); the batched engine is proved equal to it.

    >>> from cnnexp.config import RunConfig
    >>> [r.block for r in run_reference([(RunConfig(d=4, batch=2), ("plain",))])]
    ['plain']
"""
from __future__ import annotations

from typing import Sequence

from cnnexp.config import Task
from cnnexp.probe import RunResult, probe


def run_reference(tasks: Sequence[Task], device: str = "cpu", layers: bool = True,
                  curve: int | None = None) -> list[RunResult]:
    """Probe (and train, for steps > 0) each task in turn; one RunResult per configuration and block, in task
    order."""
    return [result for config, blocks in tasks for result in probe(config, blocks, device, curve)]
