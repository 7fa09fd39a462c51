"""Interleaved timings shared by the benchmark scripts (run them from the repo root)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import networkx as nx
import torch

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


def bare_walk(root: torch.Tensor) -> nx.MultiDiGraph:
    """The baseline: next_functions into networkx, op names only."""
    G = nx.MultiDiGraph()
    ids = {root.grad_fn: 0}
    G.add_node(0, op=type(root.grad_fn).__name__)
    stack = [root.grad_fn]
    while stack:
        fn = stack.pop()
        for slot, (child, _) in enumerate(fn.next_functions):
            if child is None:
                continue
            if child not in ids:
                ids[child] = len(ids)
                G.add_node(ids[child], op=type(child).__name__)
                stack.append(child)
            G.add_edge(ids[child], ids[fn], slot=slot)
    return G
