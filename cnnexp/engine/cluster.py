"""The Dask cluster (`--scheduler ADDRESS` or `--scheduler-file PATH`): units computed by a cluster's workers.

The cluster is reached through Dask's concurrent.futures executor (`Client.get_executor`), so the units run
through the same loop as the local pool (cnnexp.engine.execute.execute): a bounded window of units in flight, each
unit's rows written by this process alone as it arrives. A worker that dies mid-unit has its unit run again
on another worker by the scheduler (up to its `allowed-failures`, 3 by default); a rerun of a killed client
resumes from the rows already written.

    execution = Execution(scheduler="tcp://127.0.0.1:8786")
    with cluster_executor(execution) as (executor, info):
        for results in execute(plan_units(tasks, workers=info["threads_total"]), executor, info["window"]):
            ...

Needs the optional extra: pip install 'cnnexp[dask]'.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from cnnexp import __version__
from cnnexp.engine.runtime import first_line
from cnnexp.errors import ConfigError, param

if TYPE_CHECKING:
    from cnnexp.engine.plan import Execution

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0  # seconds to reach the scheduler before giving up
WORKERS_TIMEOUT = 60.0  # seconds to wait for a first worker to join a scheduler that has none
UNITS_PER_THREAD = 2  # units in flight per worker thread: every thread busy, few futures held


class VersionMismatch(ConfigError):
    """A worker runs another torch or cnnexp than this client: its numbers could differ."""


def versions() -> dict[str, str]:
    """What must match between the client and every worker: the torch and cnnexp versions, and the host."""
    import socket

    import torch

    return {"torch": torch.__version__, "cnnexp": __version__, "host": socket.gethostname()}


@contextmanager
def cluster_executor(execution: Execution) -> Iterator[tuple[Executor, dict[str, Any]]]:
    """Connect to a Dask scheduler, check its workers, and yield its executor and what the provenance records.

    Args:
        execution: an Execution with `scheduler` (an address) or `scheduler_file` (a JSON file with "address").

    Yields:
        (executor, info): a concurrent.futures executor whose units run on the workers, one torch thread per
        task; info has the scheduler address, the workers' hosts, each worker's torch version, the total
        worker threads and the window of units in flight.

    Raises:
        ConfigError: Dask is not installed, the scheduler file is missing or not a scheduler file, the scheduler
            does not answer, no worker joins it, or a worker runs another torch or cnnexp (VersionMismatch).
    """
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"{param('scheduler')} needs Dask, which is not installed: "
                          "pip install 'cnnexp[dask]'") from None
    if execution.scheduler and execution.scheduler_file:
        raise ConfigError(f"{param('scheduler')} {execution.scheduler} and {param('scheduler_file')} "
                          f"{execution.scheduler_file}: "
                          "give one of them")
    if execution.workers is not None:
        raise ConfigError(f"{param('workers')} {execution.workers}: is for processes on this machine; with a "
                          "scheduler the "
                          "cluster's workers compute (start more with `dask worker`)")
    address = execution.scheduler or scheduler_address(execution.scheduler_file or "")
    with _quiet_dask_logs():
        client = _connect(distributed, address)
        try:
            info = _check_workers(client, address)
            # retries=0: a unit that raises fails in its data (seeded, so it would fail again elsewhere); a
            # worker that dies is the scheduler's to handle, up to its allowed-failures
            yield _Checked(client.get_executor(retries=0), versions()), info
        finally:
            client.close(timeout=CONNECT_TIMEOUT)


@contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Silence Dask's loggers and those of the event loop under it (tornado, asyncio) in this process, each of
    which has its own level, restoring them after.

    Their lines would come before cnnexp's one line: a lost worker ("rescheduling") is the normal course, and
    a lost scheduler ends the sweep with a RunError that says so.
    """
    roots = ("distributed", "tornado", "asyncio")
    loggers = [logging.getLogger(name) for name in [*roots, *logging.root.manager.loggerDict]
               if name in roots or name.startswith(tuple(f"{r}." for r in roots))]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def scheduler_address(path: str) -> str:
    """The address in a scheduler file (as `dask scheduler --scheduler-file`, dask-jobqueue and dask-mpi write).

    Raises:
        ConfigError: the file is missing, unreadable or has no address.
    """
    try:
        with open(path, encoding="utf-8") as f:
            address = json.load(f).get("address")
    except FileNotFoundError:
        raise ConfigError(f"{param('scheduler_file')} {path}: no such file; start the scheduler with "
                          f"`dask scheduler --scheduler-file {path}` first") from None
    except OSError as e:
        raise ConfigError(f"{param('scheduler_file')} {path}: cannot read it: {e.strerror or e}") from None
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        address = None
    if not isinstance(address, str) or not address:
        raise ConfigError(f"{param('scheduler_file')} {path}: not a Dask scheduler file (expected JSON with an "
                          "\"address\")")
    return address


def _connect(distributed: Any, address: str) -> Any:
    """A client of the scheduler at `address`, or one ConfigError line within about CONNECT_TIMEOUT seconds."""
    from distributed.comm import get_address_host_port

    try:
        get_address_host_port(address)  # before a Client exists: a half-made one lingers at exit
    except ValueError as e:  # an address Dask cannot parse (unknown protocol, no port, ...)
        raise ConfigError(f"{param('scheduler')} {address!r}: not a Dask scheduler address ({e}); "
                          "expected e.g. tcp://10.0.0.5:8786") from None
    try:
        # Dask's Client waits forever on a server that accepts the connection but never answers (a web
        # server, a worker's nanny): ask what is there first, within the timeout
        what = _identity(address).get("type")
        if what != "Scheduler":
            raise ConfigError(f"{param('scheduler')} {address}: a Dask {what or 'server'} answers there, not a "
                              "scheduler; "
                              "give the scheduler's address (dask scheduler prints it)")
        return distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as e:  # refused, unreachable, or silent
        reason = first_line(e) if str(e).strip() else ""
        reason = "" if not reason or reason.startswith("Timed out") else f" ({reason})"  # e.g. a name not found
        raise ConfigError(f"{param('scheduler')} {address}: no Dask scheduler answered within {CONNECT_TIMEOUT:g} s"
                          f"{reason}; check the address and that `dask scheduler` runs there") from None


def _identity(address: str) -> dict[str, Any]:
    """What the Dask server at `address` says it is ({"type": "Scheduler", ...}), within CONNECT_TIMEOUT."""
    import asyncio

    from distributed.core import rpc
    from distributed.security import Security

    async def identity() -> dict[str, Any]:
        args = Security().get_connection_args("client")  # type: ignore[no-untyped-call]  # TLS settings from the Dask configuration, if any
        async with rpc(address, timeout=CONNECT_TIMEOUT, connection_args=args) as server:  # type: ignore[no-untyped-call]
            found: dict[str, Any] = await server.identity()
            return found

    return asyncio.run(asyncio.wait_for(identity(), CONNECT_TIMEOUT))


def _check_workers(client: Any, address: str) -> dict[str, Any]:
    """Wait for a first worker; refuse a scheduler or worker whose torch or cnnexp differs from ours (the
    scheduler unpickles the units too); describe the cluster."""
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except TimeoutError:
        raise ConfigError(f"{param('scheduler')} {address}: no worker joined within {WORKERS_TIMEOUT:g} s; start some "
                          f"with `dask worker {address}`") from None
    mine = versions()
    try:
        scheduler = client.run_on_scheduler(_scheduler_facts)
        theirs = client.run(versions)
    except Exception as e:  # a scheduler or worker that cannot import cnnexp or torch cannot take a unit either
        raise ConfigError(f"{param('scheduler')} {address}: the scheduler or a worker cannot run cnnexp "
                          f"({type(e).__name__}: "
                          f"{first_line(e)}); install cnnexp {mine['cnnexp']} with torch {mine['torch']} on the "
                          "scheduler and every worker") from None
    _refuse_mismatch(mine, scheduler, f"the scheduler {address}")
    for worker, v in sorted(theirs.items()):
        _refuse_mismatch(mine, v, f"worker {worker}")
    threads = sum(client.nthreads().values())
    return {
        "scheduler": client.scheduler.address,
        "workers": len(theirs),
        "worker_hosts": sorted({v["host"] for v in theirs.values()}),
        "worker_torch": {worker: v["torch"] for worker, v in sorted(theirs.items())},
        "threads_total": threads,
        "window": UNITS_PER_THREAD * max(threads, 1),
        "allowed_failures": scheduler["allowed_failures"],  # the worker deaths a unit survives
    }


def _scheduler_facts(dask_scheduler: Any) -> dict[str, Any]:
    return {**versions(), "allowed_failures": dask_scheduler.allowed_failures}


def _refuse_mismatch(mine: dict[str, str], theirs: dict[str, str], who: str) -> None:
    for name in ("torch", "cnnexp"):
        if theirs[name] != mine[name]:
            raise VersionMismatch(f"{who} ({theirs['host']}) runs {name} {theirs[name]}, this client "
                                  f"{name} {mine[name]}: install the same version on the scheduler and every worker")


def run_checked(expected: dict[str, str], fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) on a worker with one torch thread, after checking the worker's versions against the
    client's (a worker that joined after the start has not been checked yet)."""
    import torch
    from distributed import get_worker

    _refuse_mismatch(expected, versions(), f"worker {get_worker().address}")
    torch.set_num_threads(1)
    return fn(*args)


class _Checked(Executor):
    """Dask's executor, with every unit run through `run_checked`."""

    def __init__(self, inner: Executor, expected: dict[str, str]):
        self.inner, self.expected = inner, expected

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self.inner.submit(run_checked, self.expected, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait)
