"""The interactive picture: a Plotly figure of the graph, for the app.

Nodes keep the DOT picture's colours (see :mod:`gradlab.render.dot`) and
shapes tell the kinds apart: squares are leaves, circles ops, diamonds
outputs, triangles saved tensors. With ``color="grad"`` (or a mapping of
per-node numbers) ops are coloured on a log scale instead. Each point's
``customdata`` is its node id, so a click in ``st.plotly_chart(...,
on_select="rerun")`` names the node. Graphs over ``WEBGL_FROM`` nodes are
drawn with WebGL.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Literal

import plotly.graph_objects as go

from gradlab.core.graph import Graph, NodeAttrs
from gradlab.core.text import shape, short
from gradlab.render.dot import node_fill
from gradlab.render.layout import Position, layered_layout

WEBGL_FROM = 1000
LABELS_UP_TO = 80
SYMBOL = {
    "leaf": "square",
    "op": "circle",
    "output": "diamond",
    "saved": "triangle-up",
    "module": "hexagon",
}
ColorBy = Literal["kind", "grad", "value"]


def to_figure(
    G: Graph,
    *,
    color: ColorBy | Mapping[str, float] = "kind",
    color_label: str = "",
    highlight: Collection[str] = (),
    selected: str | None = None,
    pos: Mapping[str, Position] | None = None,
    height: int | None = None,
) -> go.Figure:
    """A Plotly figure of ``G`` in a layered layout, leaves on top.

    ``color`` is ``"kind"`` (the DOT colours), ``"grad"`` or ``"value"``
    (log10 of each node's gradient or value norm), or a mapping from node id
    to a number (e.g. a gradient norm captured during training), drawn on a
    colour scale titled ``color_label``. ``highlight`` outlines nodes in red,
    ``selected`` enlarges one node and outlines it in blue.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> fig = to_figure(gradlab.trace((x ** 2).sum()))
    >>> sorted(n for trace in fig.data if trace.customdata for n in trace.customdata)
    ['fn0', 'fn1', 'fn2', 'leaf0', 'out0']
    """
    pos = pos if pos is not None else layered_layout(G)
    nodes = list(G.nodes)
    big = len(nodes) > WEBGL_FROM
    numbers = _numbers(G, color)
    fig = go.Figure()
    fig.add_trace(_edges(G, pos, big))
    multiple = _multiplicity(G, pos)
    if multiple is not None:
        fig.add_trace(multiple)
    if numbers is None:
        fig.add_trace(
            _points(G, nodes, pos, big, {"color": [node_fill(G.nodes[n]) for n in nodes]})
        )
    else:
        missing = [n for n in nodes if n not in numbers]
        present = [n for n in nodes if n in numbers]
        if missing:
            fig.add_trace(_points(G, missing, pos, big, {"color": "#e4e4e4"}))
        scale = {
            "color": [numbers[n] for n in present],
            "colorscale": "Viridis",
            "showscale": True,
            "colorbar": {"title": {"text": color_label or _default_label(color)}, "thickness": 12},
        }
        fig.add_trace(_points(G, present, pos, big, scale))
    _mark(fig, G, pos, highlight, "red", big)
    if selected is not None and selected in G:
        _mark(fig, G, pos, [selected], "royalblue", big)
        fig.data[-1].marker.size = 22
    rows = len({round(y) for _, y in pos.values()})
    fig.update_layout(
        height=height or max(320, min(1400, 70 * rows + 80)),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        showlegend=False,
        hovermode="closest",
        clickmode="event+select",
        plot_bgcolor="white",
        xaxis={"visible": False},
        yaxis={"visible": False},
        dragmode="pan",
    )
    return fig


def hover_text(n: str, attrs: NodeAttrs) -> str:
    """The hover box of a node: kind, op, shape, dtype, value and gradient."""
    kind = attrs["kind"]
    head = attrs.get("op") if kind == "op" else f"{kind}: {attrs.get('label')}"
    lines = [f"<b>{head}</b>  <i>{n}</i>"]
    if attrs.get("name"):
        lines.append(f"name: {attrs['name']}")
    if attrs.get("module") is not None:
        where = attrs["module"] or "(top module)"
        lines.append(f"module: {where} ({attrs.get('module_type')})")
    lines.append(f"shape {shape(attrs.get('shape'))} {attrs.get('dtype') or ''}")
    if attrs.get("value") is not None:
        lines.append(f"value: {short(attrs['value'])}")
    if attrs.get("grad") is not None:
        lines.append(f"grad: {short(attrs['grad'])}")
    if attrs.get("step") is not None:
        lines.append(f"backward step {attrs['step']}")
    return "<br>".join(lines)


def _numbers(G: Graph, color: ColorBy | Mapping[str, float]) -> dict[str, float] | None:
    """Per-node numbers to colour by, on a log10 scale; None colours by kind."""
    if isinstance(color, str):
        if color == "kind":
            return None
        out: dict[str, float] = {}
        for n, summary in G.nodes(data=color):
            norm = summary.get("norm") if summary else None
            if norm is not None:
                out[n] = math.log10(norm) if norm > 0 else -12.0
        return out
    return {n: float(v) for n, v in color.items() if n in G and math.isfinite(float(v))}


def _default_label(color: ColorBy | Mapping[str, float]) -> str:
    return (
        {"grad": "log₁₀ ‖grad‖", "value": "log₁₀ ‖value‖"}.get(color, "")
        if isinstance(color, str)
        else ""
    )


def _edges(G: Graph, pos: Mapping[str, Position], big: bool) -> go.Scatter:
    xs: list[float | None] = []
    ys: list[float | None] = []
    for u, v in G.edges():
        (x0, y0), (x1, y1) = pos[u], pos[v]
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    trace = go.Scattergl if big else go.Scatter
    return trace(x=xs, y=ys, mode="lines", line={"width": 1, "color": "#9a9a9a"}, hoverinfo="skip")


def _multiplicity(G: Graph, pos: Mapping[str, Position]) -> go.Scatter | None:
    """ "×2" at the middle of an edge drawn once but standing for parallel edges (y * y)."""
    counts: dict[tuple[str, str], int] = {}
    for u, v in G.edges():
        counts[u, v] = counts.get((u, v), 0) + 1
    many = [(u, v, k) for (u, v), k in counts.items() if k > 1]
    if not many:
        return None
    return go.Scatter(
        x=[(pos[u][0] + pos[v][0]) / 2 for u, v, _ in many],
        y=[(pos[u][1] + pos[v][1]) / 2 for u, v, _ in many],
        mode="text",
        text=[f"×{k}" for _, _, k in many],
        textposition="middle left",
        textfont={"size": 12, "color": "#b03030"},
        hovertext=[f"{k} edges: the gradient arrives {k} times and is summed" for *_, k in many],
        hoverinfo="text",
    )


def node_text(attrs: NodeAttrs) -> str:
    """A node's label in the picture: ``MulBackward0 → z`` when the op's output has a name."""
    label = str(attrs.get("label"))
    if attrs["kind"] == "op" and attrs.get("name"):
        return f"{label} → {attrs['name']}"
    return label


def _points(
    G: Graph, nodes: list[str], pos: Mapping[str, Position], big: bool, colour: dict[str, object]
) -> go.Scatter:
    attrs = [G.nodes[n] for n in nodes]
    marker: dict[str, object] = {
        "size": 9 if big else 16,
        "symbol": [SYMBOL.get(a["kind"], "circle") for a in attrs],
        "line": {"width": 1, "color": "#444444"},
        **colour,
    }
    show_text = G.number_of_nodes() <= LABELS_UP_TO
    trace = go.Scattergl if big else go.Scatter
    return trace(
        x=[pos[n][0] for n in nodes],
        y=[pos[n][1] for n in nodes],
        mode="markers+text" if show_text else "markers",
        text=[node_text(a) for a in attrs] if show_text else None,
        textposition="middle right",
        textfont={"size": 11},
        customdata=nodes,
        hovertext=[hover_text(n, a) for n, a in zip(nodes, attrs, strict=True)],
        hoverinfo="text",
        marker=marker,
        unselected={"marker": {"opacity": 0.75}},  # a click should not grey the picture out
    )


def _mark(
    fig: go.Figure,
    G: Graph,
    pos: Mapping[str, Position],
    nodes: Collection[str],
    colour: str,
    big: bool,
) -> None:
    marked = [n for n in nodes if n in G]
    if not marked:
        return
    trace = go.Scattergl if big else go.Scatter
    fig.add_trace(
        trace(
            x=[pos[n][0] for n in marked],
            y=[pos[n][1] for n in marked],
            mode="markers",
            customdata=marked,
            hovertext=[hover_text(n, G.nodes[n]) for n in marked],
            hoverinfo="text",
            marker={
                "size": 20 if not big else 14,
                "color": "rgba(0,0,0,0)",
                "line": {"width": 3, "color": colour},
                "symbol": [SYMBOL.get(G.nodes[n]["kind"], "circle") for n in marked],
            },
        )
    )
