"""Interleaved timings shared by the benchmark scripts (run them from the repo root)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

Timing = Callable[[], float]


def timed(work: Callable[[], object]) -> Timing:
    """A timing of one call of ``work``."""

    def run() -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    return run


def compare(cases: dict[str, Timing], repeat: int) -> dict[str, tuple[float, float]]:
    """(median, minimum) seconds of each case, the cases interleaved round by round."""
    for timing in cases.values():
        timing()  # warm up
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, timing in cases.items():
            gc.collect()
            samples[name].append(timing())
    return {name: (statistics.median(v), min(v)) for name, v in samples.items()}
