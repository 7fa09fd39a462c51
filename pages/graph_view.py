"""Show a GradLab graph on a page: a Plotly/Graphviz switch, clicks, downloads. Not a page.

Pages import it as ``from graph_view import show_graph, download_row``.

* :func:`show_graph` draws a graph with a view switch above it: the
  interactive Plotly picture (WebGL past 1,000 nodes; a click selects a node)
  or the classic Graphviz one (laid out in the browser, no ``dot`` needed;
  module clusters when asked). It returns the id of the node selected by a
  click, which stays selected until another click or until the graph's set of
  nodes changes.
* :func:`chosen_view` tells which view the switch shows, for links.
* :func:`download_row` offers the graph as DOT, SVG, PNG, JSON and GraphML.
  Files are made only when a button is clicked. SVG and PNG need Graphviz's
  ``dot`` program; without it (or for a graph too big for it) the buttons are
  disabled and say why.

Widget keys start with the ``key`` given, so two graphs on one page need two keys.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from gradlab.export import dot_available, render
from gradlab.graph import Graph
from gradlab.render.dot import to_dot
from gradlab.render.plotly import LABELS_UP_TO, ColorBy, to_figure
from gradlab.share import View

#: How many layers (rows) a focused view shows at most, and how many node widths across.
FOCUS_LAYERS = 10
FOCUS_WIDTH = 12
#: Above this many nodes the Graphviz view (and SVG/PNG files) would take minutes.
GRAPHVIZ_UP_TO = 1500
_VIEWS: dict[View, str] = {"plotly": "Interactive", "graphviz": "Graphviz"}
_FILES = (
    ("dot", "DOT", "text/vnd.graphviz"),
    ("svg", "SVG", "image/svg+xml"),
    ("png", "PNG", "image/png"),
    ("json", "JSON", "application/json"),
    ("graphml", "GraphML", "application/xml"),
)


def show_graph(
    G: Graph,
    *,
    key: str,
    highlight: Collection[str] = (),
    selected: str | None = None,
    color: ColorBy | Mapping[str, float] = "kind",
    color_label: str = "",
    clusters: bool = False,
    view: View = "plotly",
    height: int | None = None,
    large: bool = False,
    focus: str | None = None,
) -> str | None:
    """Draw ``G`` under a view switch; return the node id selected by a click, else None.

    ``view`` is the switch's first position (later runs keep the person's
    choice). ``highlight`` outlines nodes in red and ``selected`` one node in
    blue; ``color`` and ``color_label`` are :func:`gradlab.render.plotly.to_figure`'s.
    ``clusters`` boxes each module in the Graphviz view; ``large`` draws
    bigger labels (presenter mode). ``focus`` centres the interactive view on
    that node (zoomed in to about :data:`FOCUS_LAYERS` layers when the graph
    is taller); the Graphviz picture stays as it is.
    """
    view_key = f"{key}.view"
    if st.session_state.get(view_key) not in _VIEWS:
        st.session_state[view_key] = view
    chosen = st.radio(
        "View",
        list(_VIEWS),
        format_func=_VIEWS.__getitem__,
        key=view_key,
        horizontal=True,
        label_visibility="collapsed",
    )
    if chosen == "graphviz":
        if G.number_of_nodes() <= GRAPHVIZ_UP_TO:
            st.graphviz_chart(to_dot(G, highlight=highlight, clusters=clusters))
            return None
        st.info(
            f"{G.number_of_nodes():,} nodes are too many for the Graphviz view "
            f"(over {GRAPHVIZ_UP_TO:,}: it would take minutes); showing the interactive view."
        )
    fig = to_figure(
        G, color=color, color_label=color_label, highlight=highlight, selected=selected,
        height=height,
    )  # fmt: skip
    _room_for_labels(fig, G)
    if focus is not None and focus in G:
        _centre_on(fig, focus)
    if large:
        _enlarge(fig)
    # The key changes with the node set, so a selection never outlives the graph it was in.
    chart_key = f"{key}.plotly.{_digest(G)}"
    event = st.plotly_chart(
        fig, key=chart_key, on_select="rerun", selection_mode="points", width="stretch"
    )
    return _clicked(event, G)


def chosen_view(key: str) -> View:
    """The view the switch of ``show_graph(..., key=key)`` shows now."""
    view = st.session_state.get(f"{key}.view")
    return "graphviz" if view == "graphviz" else "plotly"


def download_row(G: Graph, *, key: str, stem: str, clusters: bool = False) -> None:
    """Download buttons: ``G`` as ``{stem}.dot``, ``.svg``, ``.png``, ``.json``, ``.graphml``."""
    why_not = _no_layout_reason(G)
    for column, (fmt, label, mime) in zip(st.columns(len(_FILES)), _FILES, strict=True):
        needs_dot = fmt in ("svg", "png")
        column.download_button(
            label,
            data=_maker(G, fmt, clusters),
            file_name=f"{stem}.{fmt}",
            mime=mime,
            key=f"{key}.{fmt}",
            disabled=needs_dot and why_not is not None,
            help=why_not if needs_dot and why_not else f"the graph shown, as {label}",
            on_click="ignore",
            icon=":material/download:",
            width="stretch",
        )


def _maker(G: Graph, fmt: str, clusters: bool) -> Callable[[], bytes]:
    def make() -> bytes:
        return render(G, fmt, clusters=clusters)

    return make


def _no_layout_reason(G: Graph) -> str | None:
    if not dot_available():
        return (
            "SVG and PNG need Graphviz's `dot` program, which is not installed on the server "
            "(Debian: apt-get install graphviz). DOT opens in any Graphviz viewer."
        )
    if G.number_of_nodes() > GRAPHVIZ_UP_TO:
        return (
            f"{G.number_of_nodes():,} nodes would take Graphviz minutes to lay out: "
            "collapse the graph further, or download DOT or JSON."
        )
    return None


def _room_for_labels(fig: go.Figure, G: Graph) -> None:
    """Widen the x range so that labels (drawn right of their node) are not cut off."""
    if G.number_of_nodes() > LABELS_UP_TO:
        return
    xs = [x for trace in fig.data for x in (trace.x or ()) if x is not None]
    if xs:
        fig.update_xaxes(range=[min(xs) - 0.6, max(xs) + 1.8])


def _centre_on(fig: go.Figure, n: str) -> None:
    """Axis ranges centred on node ``n``: the whole graph if it fits, else a window round it."""
    where = next(
        ((t.x[i], t.y[i]) for t in fig.data if t.customdata
         for i, m in enumerate(t.customdata) if m == n),
        None,
    )  # fmt: skip
    if where is None:
        return
    cx, cy = float(where[0]), float(where[1])
    points = [(x, y) for t in fig.data if t.customdata for x, y in zip(t.x, t.y, strict=True)]
    xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
    # Half-widths that reach the farthest node (and the labels on the right), at most a window.
    half_x = min(max(cx - min(xs) + 0.6, max(xs) - cx + 1.8), FOCUS_WIDTH / 2)
    half_y = min(max(cy - min(ys), max(ys) - cy) + 0.5, FOCUS_LAYERS / 2)
    fig.update_xaxes(range=[cx - half_x, cx + half_x])
    fig.update_yaxes(range=[cy - half_y, cy + half_y])
    # A window of layers at the figure's own 70 px a layer, so it fits on the screen.
    window = int(max(320, 70 * 2 * half_y + 80))
    fig.update_layout(height=min(int(fig.layout.height or window), window))


def _enlarge(fig: go.Figure) -> None:
    """Labels and hover text a room can read from the back (presenter mode)."""
    fig.update_layout(font={"size": 18}, hoverlabel={"font": {"size": 18}})
    for trace in fig.data:
        if getattr(trace, "textfont", None) is not None:
            trace.textfont.size = 18
        if getattr(trace, "mode", "") and "markers" in trace.mode and trace.marker.size:
            size = trace.marker.size
            trace.marker.size = [v * 1.4 for v in size] if isinstance(size, tuple) else size * 1.4


def _digest(G: Graph) -> str:
    return format(zlib.crc32("\n".join(map(str, G.nodes)).encode()), "08x")


def _clicked(event: Any, G: Graph) -> str | None:
    """The node id of the first selected point that is a node of ``G``."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points:
        data = point.get("customdata")
        if isinstance(data, list | tuple):
            data = data[0] if data else None
        if isinstance(data, str) and data in G:
            return data
    return None
