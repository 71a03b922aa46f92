"""Memory checks made before anything is allocated: a run too big for this machine is refused up front.

    >>> refuse_beyond_memory(10**30, "this sweep", "lower d")      # doctest: +SKIP
    ConfigError: this sweep needs about 931322574615.5 GiB, more than the 22.9 GiB available; lower d
"""
from __future__ import annotations

import os

from cnnexp.errors import ConfigError


def available_bytes() -> int | None:
    """Memory available to a new allocation now: the machine's (/proc/meminfo), and no more than this
    process's address-space limit leaves (`ulimit -v`, RLIMIT_AS). None where neither is known."""
    limits = [v for v in (_machine_available(), _address_space_left()) if v is not None]
    return min(limits) if limits else None


def _address_space_left() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        used = 0
    return max(soft - used, 0)


def _machine_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def refuse_beyond_memory(need: int, what: str, hint: str) -> None:
    """Raise ConfigError when `need` bytes exceed the memory available now.

    Args:
        need: the estimate, in bytes.
        what: what needs it, as the start of the message (e.g. "init: the configuration d=..., batch=...").
        hint: how to need less (e.g. "lower d, batch or depth").
    """
    have = available_bytes()
    if have is not None and need > have:
        raise ConfigError(f"{what} needs about {need / 2**30:,.1f} GiB, more than the {have / 2**30:.1f} GiB "
                          f"available; {hint}")
