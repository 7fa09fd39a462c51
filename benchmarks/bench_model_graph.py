"""The Model graph page's server time from a click to a figure, against torchviz.

Run: python benchmarks/bench_model_graph.py [--repeat 7]

A click on the page reruns it: the model's facts are held in the session,
:func:`gradlab.core.collapse.collapse` builds the view,
:func:`gradlab.render.layout.layered_layout` places it,
:func:`gradlab.render.plotly.to_figure` draws it and Streamlit serialises the
figure to JSON. The first view in a new session also unpickles the facts from
``st.cache_data`` (shown apart). Each step is timed on

* ResNet-18-like (195 autograd graph nodes) at full detail, and collapsed
  with one stage open, and
* the 1,000-layer MLP (7,008 nodes: 5,001 ops plus leaves), folded (what the
  page shows first) and at full detail (the fold opened: every node drawn).

The baseline, timed in the same run, is torchviz's ``make_dot`` on the same
live graph (DOT text only, recursion limit raised; the browser still has to
lay it out). Medians; ratios matter more than absolute times.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass

import plotly.io
import torch

from gradlab.core.collapse import collapse
from gradlab.core.graph import Graph
from gradlab.core.memory import inspect_model
from gradlab.render.layout import layered_layout
from gradlab.render.plotly import to_figure
from gradlab.zoo import presets


@dataclass(frozen=True)
class View:
    """One view of one model, as the page would show it after a click."""

    title: str
    preset: str
    params: dict[str, int]
    depth: int
    expanded: Collection[str]


VIEWS = (
    View("ResNet-18, full detail", "resnet18", {}, 9, ()),
    View("ResNet-18, stages.3 open", "resnet18", {}, 1, ("stages.3",)),
    View("MLP ×1000, folded", "mlp", {"depth": 1000}, 1, ()),
    View("MLP ×1000, full detail", "mlp", {"depth": 1000}, 9, ("0-1999",)),
)
STEPS = ("collapse", "layout", "figure", "to JSON")


def median_seconds(work: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``work`` over ``repeat`` calls, after one warm-up call."""
    work()
    samples = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def click_to_figure(cached: bytes, view: View, repeat: int) -> tuple[int, dict[str, float]]:
    """Nodes shown and the median seconds of each step of a rerun."""
    run = pickle.loads(cached)
    C = collapse(run.graph, view.depth, view.expanded)
    pos = layered_layout(C)
    fig = to_figure(C, pos=pos)
    times = {
        "collapse": median_seconds(lambda: collapse(run.graph, view.depth, view.expanded), repeat),
        "layout": median_seconds(lambda: layered_layout(C), repeat),
        "figure": median_seconds(lambda: to_figure(C, pos=pos), repeat),
        "to JSON": median_seconds(lambda: plotly.io.to_json(fig, validate=False), repeat),
    }
    return C.number_of_nodes(), times


def torchviz_seconds(view: View, repeat: int) -> float:
    """torchviz's make_dot on the same model's live graph."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchviz import make_dot
    case = presets.get(view.preset).build(0, **view.params)
    loss = case.loss()
    params = dict(case.model.named_parameters())
    return median_seconds(lambda: make_dot(loss, params=params), repeat)


def facts(view: View) -> tuple[Graph, bytes]:
    case = presets.get(view.preset).build(0, **view.params)
    run = inspect_model(case.model, [case.inputs], lambda out: case.loss_fn(out, case.target))
    return run.graph, pickle.dumps(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sys.setrecursionlimit(100_000)  # torchviz walks recursively
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {args.repeat} repeats, medians in ms\n")
    header = [
        "view", "nodes", "shown", *STEPS, "click to figure", "torchviz make_dot",
        "new session: unpickle",
    ]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    built: dict[str, tuple[Graph, bytes]] = {}
    for view in VIEWS:
        key = f"{view.preset}{view.params}"
        if key not in built:
            built[key] = facts(view)
        G, cached = built[key]
        shown, times = click_to_figure(cached, view, args.repeat)
        total = sum(times.values())
        baseline = torchviz_seconds(view, args.repeat)
        cells = [view.title, f"{G.number_of_nodes():,}", f"{shown:,}"]
        cells += [f"{times[s] * 1000:.1f}" for s in STEPS]
        unpickle = median_seconds(lambda: pickle.loads(cached), args.repeat)  # noqa: B023
        cells += [f"**{total * 1000:.0f}**", f"{baseline * 1000:.0f}", f"{unpickle * 1000:.0f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
