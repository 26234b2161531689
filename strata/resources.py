"""How much memory this process may still allocate, so strata can refuse a job
that cannot fit before it starts allocating (a 70B spec compiled on a laptop's
CPU should be a one-line error, not the OOM killer).

    >>> available_memory() > 0
    True
"""

from __future__ import annotations

import os

from strata.errors import UsageError


class TooLargeError(UsageError, MemoryError):
    """The model does not fit in the memory this process can use; the message
    names its size and what to do instead."""


def available_memory() -> int:
    """Bytes this process can still allocate: the system's available memory
    (MemAvailable, else physical memory), less when an address-space or data
    rlimit (`ulimit -v`, `resource.setrlimit`) allows less."""
    avail = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 2 ** 62  # unknown: do not refuse
    try:
        import resource  # lazy: optional
    except ImportError:  # pragma: no cover - not POSIX
        return avail
    # statm fields: 0 the whole address space, 5 data + stack (what RLIMIT_DATA counts)
    for limit, field in ((resource.RLIMIT_AS, 0), (getattr(resource, "RLIMIT_DATA", None), 5)):
        if limit is None:
            continue
        soft, _ = resource.getrlimit(limit)
        if soft != resource.RLIM_INFINITY:
            avail = min(avail, max(0, soft - _statm(field)))
    return avail


def _statm(field: int) -> int:
    """One /proc/self/statm field, in bytes (0 when unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[field]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def check_fits(nbytes: int, what: str, hint: str) -> None:
    """Raise TooLargeError when `nbytes` more would not fit in available memory."""
    avail = available_memory()
    if nbytes > avail:
        raise TooLargeError(f"{what} needs {format_bytes(nbytes)}, more than the "
                            f"{format_bytes(avail)} of memory available; {hint}")


def format_bytes(n: int) -> str:
    """`1.5 GB`-style (powers of 1000, as the summary prints sizes)."""
    for unit, scale in (("TB", 10 ** 12), ("GB", 10 ** 9), ("MB", 10 ** 6), ("KB", 10 ** 3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
