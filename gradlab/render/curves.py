"""Charts of a training run, made from its step records: curves, a heatmap, overlays.

Plain functions from :class:`~gradlab.train.records.StepRecord` lists to Plotly
figures (or the numbers behind them), so that the Training page only places
them. Gradient norms are drawn on a log scale: they span many decades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import plotly.graph_objects as go

from gradlab.core.graph import Graph
from gradlab.train.records import StepRecord

HEIGHT = 300
MAX_POINTS = 2000  # a curve or heatmap shows at most this many steps (evenly spread)


def thin(count: int, limit: int = MAX_POINTS) -> list[int]:
    """At most ``limit`` indices spread evenly over ``range(count)``, the last one included.

    Examples
    --------
    >>> thin(10, 4)
    [0, 3, 6, 9]
    """
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def series(records: Sequence[StepRecord], name: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``loss``, ``lr`` or a metric, where the records have it."""
    steps, values = [], []
    for r in records:
        value = r.loss if name == "loss" else r.lr if name == "lr" else r.metrics.get(name)
        if value is not None:
            steps.append(r.step)
            values.append(value)
    return steps, values


def metric_groups(records: Sequence[StepRecord]) -> dict[str, list[str]]:
    """The metrics to plot, grouped by chart: ``loss_*`` together, ``weight``/``bias`` together."""
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(k for r in records for k in r.metrics):
        groups.setdefault(_group(name), []).append(name)
    return groups


def _group(name: str) -> str:
    if name.startswith("loss_rank"):
        return "Loss of each rank"
    if name.startswith("loss_point"):
        return "Loss of each point"
    if name.startswith("loss_"):
        return "Loss of each optimizer"
    if name in ("weight", "bias"):
        return "Weight and bias"
    return name.replace("_", " ").capitalize()


Axis = Literal["step", "time"]
AXIS_TITLES: dict[Axis, str] = {"step": "step", "time": "training time (s)"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def curves(
    records: Sequence[StepRecord],
    names: Sequence[str],
    *,
    title: str = "",
    log: bool = False,
    smoothing: float = 0.0,
    x: Axis = "step",
) -> go.Figure:
    """One line per name (loss, lr or metric) against the step or the training time.

    ``smoothing`` (0 to below 1) draws TensorBoard's debiased moving average
    over a faint line of the raw values; ``log`` puts the values on a log scale
    (only positive values can be shown there).
    """
    figure = go.Figure()
    for i, name in enumerate(names):
        for trace in _lines(records, name, name, smoothing, x, PALETTE[i % len(PALETTE)]):
            figure.add_trace(trace)
    figure.update_layout(
        title=title, height=HEIGHT, xaxis_title=AXIS_TITLES[x], margin={"t": 40, "b": 10},
        showlegend=len(names) > 1,
    )  # fmt: skip
    if log:
        figure.update_yaxes(type="log")
    return figure


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start.

    NaN and infinite values are passed through and do not disturb the average.

    Examples
    --------
    >>> smooth([1.0, 2.0, 3.0], 0.0)
    [1.0, 2.0, 3.0]
    >>> [round(v, 3) for v in smooth([1.0, 1.0, 4.0], 0.5)]
    [1.0, 1.0, 2.714]
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing must be at least 0 and below 1, not {weight}")
    out, last, count = [], 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        count += 1
        out.append(last / (1 - weight**count))
    return out


def elapsed(records: Sequence[StepRecord]) -> dict[int, float]:
    """Step -> training seconds when it ended (the steps' own wall times, summed)."""
    total, out = 0.0, {}
    for r in records:
        total += r.seconds if math.isfinite(r.seconds) else 0.0
        out[r.step] = total
    return out


def _lines(
    records: Sequence[StepRecord], name: str, label: str, smoothing: float, x: Axis, color: str
) -> list[go.Scatter]:
    """One series as a line (and its smoothed line), thinned to at most ``MAX_POINTS`` points."""
    steps, values = series(records, name)
    keep = thin(len(steps))
    where: Sequence[float] = steps
    if x == "time":
        at = elapsed(records)
        where = [at[s] for s in steps]
    xs = [where[i] for i in keep]
    line = {"color": color}
    raw = go.Scatter(x=xs, y=[values[i] for i in keep], mode="lines", name=label, line=line)
    if smoothing <= 0:
        return [raw]
    raw.update(opacity=0.3, showlegend=False, hoverinfo="skip")
    smoothed = smooth(values, smoothing)  # over every value, then thinned
    ys = [smoothed[i] for i in keep]
    return [raw, go.Scatter(x=xs, y=ys, mode="lines", name=label, line=line)]


def latest_norms(records: Sequence[StepRecord]) -> dict[str, float]:
    """The gradient norm of every node on the last captured step (empty before one)."""
    for r in reversed(records):
        if r.nodes is not None:
            return r.nodes.as_dict()
    return {}


def log10_norms(norms: Mapping[str, float]) -> dict[str, float]:
    """log10 of each positive norm, for colouring a graph (a zero norm gets no colour).

    Examples
    --------
    >>> log10_norms({"fn0": 1.0, "fn1": 0.01, "fn2": 0.0})
    {'fn0': 0.0, 'fn1': -2.0}
    """
    return {n: math.log10(v) for n, v in norms.items() if v > 0 and math.isfinite(v)}


def node_history(records: Sequence[StepRecord], node: str) -> tuple[list[int], list[float]]:
    """Captured steps and the gradient norm of ``node`` on each."""
    steps, values = [], []
    for r in records:
        if r.nodes is not None:
            norms = r.nodes.as_dict()
            if node in norms:
                steps.append(r.step)
                values.append(norms[node])
    return steps, values


def history(records: Sequence[StepRecord], node: str) -> go.Figure:
    """The gradient norm of ``node`` over the captured steps, on a log scale."""
    steps, values = node_history(records, node)
    figure = go.Figure(go.Scatter(x=steps, y=values, mode="lines+markers", name=node))
    figure.update_layout(
        title=f"Gradient norm of {node} over the steps", height=HEIGHT, xaxis_title="step",
        margin={"t": 40, "b": 10},
    )  # fmt: skip
    figure.update_yaxes(type="log")
    return figure


def speed(records: Sequence[StepRecord], last: int = 50) -> tuple[float, float]:
    """Samples per second and seconds per step over the ``last`` steps (zeros before one).

    Examples
    --------
    >>> from gradlab.train.records import StepRecord
    >>> speed([StepRecord(0, 1.0, 0.1, 0.5, 100), StepRecord(1, 1.0, 0.1, 1.5, 100)])
    (100.0, 1.0)
    """
    recent = records[-last:]
    seconds = sum(r.seconds for r in recent)
    if not recent or seconds <= 0:
        return 0.0, 0.0
    return sum(r.samples for r in recent) / seconds, seconds / len(recent)


def layer_norms(records: Sequence[StepRecord]) -> tuple[list[int], list[str], list[list[float]]]:
    """Per layer (a parameter's module path) and captured step: the norm of its gradients.

    A layer's norm is ``sqrt(sum of its parameters' squared gradient norms)``;
    a frozen layer (no gradients) is NaN.
    """
    stats = [r for r in records if r.params]
    stats = [stats[i] for i in thin(len(stats))]
    steps = [r.step for r in stats]
    layers = list(dict.fromkeys(_layer(p.name) for r in stats for p in r.params))
    rows = {layer: [math.nan] * len(steps) for layer in layers}
    for j, r in enumerate(stats):
        sums: dict[str, float] = {}
        for p in r.params:
            if p.grad_norm is not None:
                sums[_layer(p.name)] = sums.get(_layer(p.name), 0.0) + p.grad_norm**2
        for layer, total in sums.items():
            rows[layer][j] = math.sqrt(total)
    return steps, layers, [rows[layer] for layer in layers]


def _layer(param: str) -> str:
    return param.rpartition(".")[0] or param


def node_norms(
    records: Sequence[StepRecord], G: Graph | None = None
) -> tuple[list[int], list[str], list[list[float]]]:
    """Per node (rows, labelled ``fn3 AddmmBackward0``) and captured step: its gradient norm."""
    captured = [r for r in records if r.nodes is not None]
    captured = [captured[i] for i in thin(len(captured))]
    ids = list(dict.fromkeys(n for r in captured if r.nodes for n in r.nodes.ids))
    matrix = []
    for n in ids:
        row = []
        for r in captured:
            assert r.nodes is not None
            row.append(r.nodes.as_dict().get(n, math.nan))
        matrix.append(row)
    labels = [_label(n, G) for n in ids]
    return [r.step for r in captured], labels, matrix


def _label(n: str, G: Graph | None) -> str:
    if G is None or n not in G:
        return n
    attrs = G.nodes[n]
    return f"{n} {attrs.get('op') or attrs.get('name') or attrs.get('kind', '')}".strip()


def heatmap(
    steps: Sequence[int], rows: Sequence[str], matrix: Sequence[Sequence[float]]
) -> go.Figure:
    """log10 of gradient norms, rows by node or layer, columns by captured step."""
    z = [[math.log10(v) if v > 0 and math.isfinite(v) else None for v in row] for row in matrix]
    figure = go.Figure(
        go.Heatmap(
            x=list(steps), y=list(rows), z=z, colorscale="Viridis",
            colorbar={"title": "log₁₀ ‖grad‖"},
            hovertemplate="step %{x}<br>%{y}<br>log10 norm %{z:.2f}<extra></extra>",
        )
    )  # fmt: skip
    figure.update_layout(
        height=max(HEIGHT, 14 * len(rows) + 80), xaxis_title="step", margin={"t": 10, "b": 10},
        yaxis={"autorange": "reversed"},
    )  # fmt: skip
    return figure


def overlay(
    runs: Mapping[str, Sequence[StepRecord]],
    name: str = "loss",
    *,
    log: bool = False,
    smoothing: float = 0.0,
    x: Axis = "step",
) -> go.Figure:
    """``name`` (loss, lr or a metric) of several runs on one chart, one line per run."""
    figure = go.Figure()
    for i, (label, records) in enumerate(runs.items()):
        for trace in _lines(records, name, label, smoothing, x, PALETTE[i % len(PALETTE)]):
            figure.add_trace(trace)
    figure.update_layout(
        height=HEIGHT, xaxis_title=AXIS_TITLES[x], yaxis_title=name, margin={"t": 10, "b": 10}
    )
    if log:
        figure.update_yaxes(type="log")
    return figure
