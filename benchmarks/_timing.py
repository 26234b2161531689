"""Interleaved, repeated timing of several callables in one process."""

from __future__ import annotations

import statistics
import time


def interleaved(fns: dict, reps: int = 7, inner: int = 5, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each fn; the fns take turns every repetition."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for r in range(reps):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for k in order:
            t = time.perf_counter()
            for _ in range(inner):
                fns[k]()
            times[k].append((time.perf_counter() - t) / inner)
    return {k: statistics.median(v) for k, v in times.items()}
